"""Misused arguments of run() get one flowfn message naming the argument (DESIGN §2)."""

from typing import Any

import pytest

from flowfn import GraphError, graph, run, step, subflow


@step
def echo(x: int = 0) -> int:
    return x


@step(name="a/b")
def slashed() -> str:
    return "real"


@step
def inner() -> str:
    return "inner"


FLOW = graph(echo)


def message(exc_type: type[Exception], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(exc_type) as info:
        run(*args, **kwargs)
    return str(info.value)


# --- inputs ------------------------------------------------------------------------------


def test_inputs_as_a_list_of_pairs() -> None:
    assert message(TypeError, FLOW, [("x", 1)]) == (
        "run(echo): inputs must be a mapping of input names to values, like "
        "{'order_id': 'A1'}, got [('x', 1)] (a list). A list of pairs becomes one with "
        "dict(...): inputs=dict(pairs)."
    )


def test_inputs_as_text() -> None:
    assert message(TypeError, FLOW, "x=1") == (
        "run(echo): inputs must be a mapping of input names to values, like "
        "{'order_id': 'A1'}, got 'x=1' (a str). To pass 'x=1', write {'x': '1'}."
    )


def test_input_names_that_are_not_text() -> None:
    assert message(TypeError, FLOW, {1: 2}) == (
        "run(echo): the keys of inputs must be names (str), got 1 (an int)."
    )


def test_inputs_as_a_set() -> None:
    assert message(TypeError, FLOW, {"x"}).startswith(
        "run(echo): inputs must be a mapping of input names to values")


# --- the checks run() already made keep their messages --------------------------------------


def test_timeout_zero_and_max_concurrency_zero() -> None:
    assert message(ValueError, FLOW, timeout=0) == (
        "run(echo, timeout=0): the deadline must be a number of seconds > 0, or None for no "
        "deadline."
    )
    assert message(ValueError, FLOW, max_concurrency=0) == (
        "run(echo, max_concurrency=0): the cap must be a whole number >= 1, or None for no "
        "cap."
    )


def test_an_override_of_no_step() -> None:
    assert message(GraphError, FLOW, overrides={"ecko": 1}) == (
        "1 problem in run(echo, overrides=...)\n"
        "  overrides names 'ecko', but no step in this graph has that name.\n"
        "  Did you mean 'echo'? Overridable steps: echo."
    )


# --- the rest, once run() calls check_run_args -----------------------------------------------


def test_timeout_as_text() -> None:
    assert message(ValueError, FLOW, timeout="5") == (
        "run(echo, timeout='5'): the deadline must be a number of seconds > 0, or None for "
        "no deadline."
    )


def test_limits_as_a_list() -> None:
    assert message(TypeError, FLOW, limits=[("api", 5)]) == (
        "run(echo, limits=...): limits must be a mapping of limit names to capacities, like "
        "{'api': 5}, got [('api', 5)] (a list). A list of pairs becomes one with dict(...): "
        "limits=dict(pairs)."
    )


def test_overrides_as_a_list() -> None:
    assert message(TypeError, FLOW, overrides=[echo]).startswith(
        "run(echo, overrides=...): overrides must be a mapping of steps (or their names) to "
        "values, functions or exceptions, like {fetch_users: ['x']}, got a list."
    )


def test_run_id_that_is_not_text() -> None:
    assert message(TypeError, FLOW, run_id=5) == (
        "run(echo, run_id=5): run_id must be a non-empty str (your own id for the run), got "
        "5 (an int). Leave it out for a random one."
    )


def test_unknown_run_executor() -> None:
    assert message(ValueError, FLOW, executor="gpu") == (
        "run(echo, executor='gpu'): the default executor of the run's sync steps must be one "
        "of 'thread', 'inline', 'process' or an executor object (with an async run() method "
        "and open()/close()), got 'gpu' (a str)."
    )


def test_override_of_a_step_whose_name_has_a_slash() -> None:
    assert run(graph(slashed), overrides={"a/b": "fake"}).output == "fake"
    assert run(graph(slashed), overrides={slashed: "fake"}).output == "fake"


def test_override_inside_a_subflow_still_works() -> None:
    branch = subflow(graph(inner), name="branch")
    assert run(graph(branch), overrides={"branch/inner": "fake"}).output == "fake"
