"""Wiring that does not surprise (DESIGN §1, §3 map row; issues 9 and 14): duplicate names
across modules, ``Input``, hints for inputs that are not inputs, forgotten ``@step``,
empty modules, bare step annotations, ``race(a, a)``, ``each()`` over a graph input and
``map="product"``."""

import itertools
import pickle
from typing import Annotated, Any

import flows_hamilton as fh
import flows_region_a as ra
import flows_region_b as rb
import flows_undecorated as fu
import pytest
from messages_help import at, graph_error, repo_root_cwd  # noqa: F401 (a fixture)

from flowfn import Input, InputError, each, graph, race, run, step

pytestmark = pytest.mark.usefixtures("repo_root_cwd")


def input_error(flow: Any, inputs: dict[str, Any] | None = None) -> str:
    with pytest.raises(InputError) as info:
        run(flow, inputs)
    return str(info.value)


# --- two steps, one name, two modules ---------------------------------------------------------


def test_same_name_in_two_modules_is_a_duplicate_whatever_the_order() -> None:
    for parts in [(ra.deploy_a, rb.deploy_b), (rb.deploy_b, ra.deploy_a)]:
        lines = graph_error(*parts).splitlines()
        assert lines[0] == f"1 problem in graph({parts[0].name}, {parts[1].name})"
        assert lines[3] == "    step name 'region' is used by 2 different steps:"
        assert sorted(lines[4:6]) == [f"      {at(ra.region)} in def region",
                                      f"      {at(rb.region)} in def region"]
        assert lines[6:] == ['    Give all but one another name: @step(name="...").']


def test_a_given_step_does_not_hide_the_module_step_of_that_name() -> None:
    message = graph_error(rb.deploy_b, ra.region)
    assert "step name 'region' is used by 2 different steps:" in message


def test_each_module_alone_wires_its_own_step() -> None:
    assert run(graph(ra.deploy_a)).output == "a in eu-west"
    assert run(graph(rb.deploy_b)).output == "b in us-east"


# --- Input ------------------------------------------------------------------------------------


def test_input_marker_makes_a_graph_input_despite_a_step_of_that_name() -> None:
    flow = graph(rb.deploy_to)
    assert list(flow.inputs) == ["region"] and flow.inputs["region"].type is str
    assert [s.name for s in flow.steps] == ["deploy_to"]
    assert run(flow, {"region": "ap-south"}).output == "to ap-south"


def test_input_marker_pickles_as_itself() -> None:
    assert pickle.loads(pickle.dumps(Input)) is Input
    assert repr(Input) == "Input"


def test_passing_an_input_that_was_wired_by_name_points_at_both() -> None:
    assert input_error(graph(ra.deploy_a), {"region": "x"}) == (
        "1 bad input for run(deploy_a)\n"
        "  region: unknown input. This graph's inputs: none. Parameter 'region' of step "
        f"'deploy_a' ({at(ra.deploy_a)}) is wired by name to step 'region' "
        f"({at(ra.region)}), so it is not an input. To make it one, annotate it "
        "Annotated[str, Input] (from flowfn import Input), or rename the step."
    )


# --- forgotten @step, modules without steps ------------------------------------------------


def test_required_input_named_like_a_plain_function_asks_about_step() -> None:
    assert input_error(graph(fh.total)) == (
        "1 bad input for run(total)\n"
        "  raw_data: required input missing (asked for by total). Did you forget @step on "
        f"def raw_data ({at(fh.raw_data)})?"
    )


def test_a_module_without_steps() -> None:
    assert graph_error(fu) == (
        "1 problem in graph(flows_undecorated)\n"
        "\n"
        "  argument 1 of graph(), module 'flows_undecorated' (tests/flows_undecorated.py), "
        "defines no steps.\n"
        "  It has plain functions (raw_data, total): decorate the ones that are steps with "
        "@step."
    )


def test_a_module_without_any_function() -> None:
    import flows_for_options  # has steps: fine
    import messages_help  # has plain functions but no steps

    assert graph(flows_for_options).name == "flows_for_options"
    assert "module 'messages_help'" in graph_error(messages_help)
    assert "defines no steps" in graph_error(pickle)


# --- a step where a type belongs -------------------------------------------------------------


@step
def numbers() -> list[int]:
    return [1, 2, 3]


def test_a_step_used_as_a_bare_annotation() -> None:
    @step
    def doubled(xs: numbers) -> list[int]:  # type: ignore[valid-type]
        return [2 * x for x in xs]

    assert graph_error(doubled) == (
        "1 problem in graph(doubled)\n"
        "\n"
        f"  {at(doubled)} in def doubled(xs)\n"
        "    parameter 'xs' is annotated with the step 'numbers' itself, which is not a type.\n"
        "    To take its output, write xs: Annotated[list[int], numbers]; or name the "
        "parameter numbers to wire it by name."
    )


# --- race(a, a) -------------------------------------------------------------------------------


def test_a_step_twice_in_one_race_is_refused() -> None:
    @step
    async def fast() -> int:
        return 1

    both = race(fast, fast, name="both")
    message = graph_error(both)
    assert message.startswith("1 problem in graph(both)\n\n")
    assert message.endswith(
        "    race 'both' lists step 'fast' more than once.\n"
        "    Each contestant runs once: list every step one time, or race a copy made with "
        'step(fast, name="...") under another name.'
    )


# --- each() over a graph input ----------------------------------------------------------------


def test_each_naming_a_graph_input_maps_over_it() -> None:
    @step
    def square(n: Annotated[int, each("values")]) -> int:
        return n * n

    flow = graph(square)
    assert flow.node("square").mapped
    binding = flow.node("square").bindings[0]
    assert (binding.node, binding.input, binding.each) == (None, "values", True)
    assert flow.inputs["values"].type == list[int] and flow.inputs["values"].required
    result = run(flow, {"values": ["1", 2, 3]})
    assert result.output == [1, 4, 9]
    assert result.spans["square"].children["square[1]"].input == {"n": 2}


def test_each_input_is_shared_and_checked_like_any_input() -> None:
    @step
    def inc(n: Annotated[int, each("values")]) -> int:
        return n + 1

    @step
    def total(values: list[int]) -> int:
        return sum(values)

    assert run(graph(inc, total), {"values": [1, 2]}).output == {"inc": [2, 3], "total": 3}
    assert input_error(graph(inc), {"values": [1, "x"]}) == (
        "1 bad input for run(inc)\n"
        "  values[1]: invalid value for type, expected int (got 'x')"
    )


def test_each_naming_a_step_still_maps_over_the_step() -> None:
    @step
    def half(n: Annotated[int, each("numbers")]) -> float:
        return n / 2

    assert run(graph(half, numbers)).output["half"] == [0.5, 1.0, 1.5]


# --- map="product" ----------------------------------------------------------------------------


def test_product_without_two_each_parameters_is_refused() -> None:
    @step(map="product")
    def one(n: Annotated[int, each(numbers)]) -> int:
        return n

    @step(map="product")
    def none(x: int) -> int:
        return x

    assert graph_error(one).endswith(
        "    @step(map='product') runs once per combination of the each() parameters, but "
        "step 'one' has only one ('n').\n"
        "    Give it two or more each() parameters, or leave map= out."
    )
    assert "step 'none' has none." in graph_error(none)


def test_product_node_records_its_mode() -> None:
    @step(map="product")
    def grid(a: Annotated[int, each("xs")], b: Annotated[str, each("ys")]) -> str:
        return f"{a}{b}"

    @step
    def zipped(a: Annotated[int, each("xs")], b: Annotated[str, each("ys")]) -> str:
        return f"{a}{b}"

    assert graph(grid).node("grid").map_mode == "product"
    assert graph(zipped).node("zipped").map_mode == "zip"
    assert run(graph(zipped), {"xs": [1, 2], "ys": ["a", "b"]}).output == ["1a", "2b"]


def test_product_runs_every_combination_in_product_order() -> None:
    @step(map="product")
    def grid(a: Annotated[int, each("xs")], b: Annotated[str, each("ys")]) -> str:
        return f"{a}{b}"

    result = run(graph(grid), {"xs": [1, 2, 3], "ys": ["a", "b"]})
    assert result.output == [f"{a}{b}" for a, b in itertools.product([1, 2, 3], "ab")]


def test_product_over_steps_and_inputs() -> None:
    @step(map="product")
    def grid(a: Annotated[int, each(numbers)], b: Annotated[str, each("ys")]) -> str:
        return f"{a}{b}"

    result = run(graph(grid), {"ys": ["a"]})
    assert result.output == ["1a", "2a", "3a"]
