"""What a span records is the same whichever way the scheduler ran the step: a plain step's
input read back from the run's results, the attributes a step set, the attempt log."""

import copy
import pickle

from flowfn import Outcome, current_span, graph, run, step


@step
async def load() -> list[int]:
    return [1, 2, 3]


@step
async def scale() -> int:
    return 10


@step
async def total(load: list[int], scale: int) -> int:
    current_span().rows = len(load)  # a custom attribute
    return sum(load) * scale


@step
async def broken() -> int:
    raise ValueError("no data")


@step
async def after_broken(broken: int) -> int:
    return broken


@step
async def report(broken: Outcome[int]) -> str:
    return "failed" if broken.error is not None else "ok"


def test_a_plain_step_input_is_what_it_was_called_with():
    result = run(graph(total))
    span = result.spans["total"]
    assert span.input == {"load": [1, 2, 3], "scale": 10}
    assert span.input["load"] is result.spans["load"].output  # the very object passed
    assert dict(span.input) == dict(span.input)  # read again, the same


def test_a_plain_step_input_survives_pickling_and_copies():
    span = run(graph(total)).spans["total"]
    for again in (pickle.loads(pickle.dumps(span)), copy.copy(span), copy.deepcopy(span)):
        assert again.input == {"load": [1, 2, 3], "scale": 10}
        assert again.attributes == {"rows": 3}
        assert again.output == 60


def test_attributes_are_only_the_custom_ones():
    result = run(graph(total, after_broken, report))
    assert result.spans["total"].attributes == {"rows": 3}
    skipped = result.spans["after_broken"]
    assert skipped.status == "skipped" and skipped.reason is not None
    assert skipped.attributes == {}
    assert result.spans["broken"].attributes == {}


def test_a_span_that_never_ran_has_the_defaults():
    result = run(graph(total, after_broken, report))
    span = result.spans["after_broken"]
    assert span.input == {} and span.children == {} and span.winner is None
    assert not span.cached and not span.abandoned and span.attempt_log == []


def test_an_input_fed_step_keeps_its_own_arguments():
    @step
    async def greet(name: str, scale: int) -> str:
        return f"{name} x{scale}"

    result = run(graph(greet), inputs={"name": "Ada"})
    assert result.spans["greet"].input == {"name": "Ada", "scale": 10}
