"""Maps: one run of a sub-graph per item (``subflow(flow, inputs={"x": each(xs)})``), and
a map over a skipped list."""

from typing import Annotated

import pytest
import trio

from flowfn import RunFailed, each, graph, step, subflow


@step
async def shout(word: str) -> str:
    await trio.sleep(1)
    if word == "boom":
        raise ValueError("cannot shout boom")
    return word.upper()


@step
async def exclaim(shout: str) -> str:
    return shout + "!"


@step
def words() -> list[str]:
    return ["hi", "yo", "hey"]


cheer = subflow(graph(exclaim), name="cheer", inputs={"word": each(words)})


@step
def joined(cheer: list[str]) -> str:
    return " ".join(cheer)


def test_one_run_per_item_concurrently_with_paths_of_their_own(flow_run, flow_clock):
    result = flow_run(graph(joined))
    assert result.output == "HI! YO! HEY!"
    assert flow_clock.current_time() == 1  # the three runs at once
    assert [s.path for s in result.span("cheer").children.values()] == [
        "cheer[0]", "cheer[1]", "cheer[2]"]
    assert result.span("cheer[2]/exclaim").output == "HEY!"
    assert result.span("cheer[1]").children["shout"].path == "cheer[1]/shout"


def test_a_failing_item_names_its_path(flow_run):
    result = flow_run(graph(joined), overrides={words: ["a", "boom", "c"]},
                      expect_failure=True)
    error = result.error
    assert isinstance(error, RunFailed)
    assert str(error).startswith(
        "step 'cheer[1]/shout' failed on attempt 1: ValueError: cannot shout boom")
    assert isinstance(error.__cause__, ValueError)
    assert result.span("cheer[1]/shout").status == "failed"


def test_each_over_a_graph_input_and_fixed_values(flow_run):
    @step
    async def greet(name: str, greeting: str) -> str:
        return f"{greeting}, {name}"

    greetings = subflow(graph(greet), name="greetings",
                        inputs={"name": each("names"), "greeting": "hello"})

    @step
    def count(g: Annotated[list[str], greetings]) -> int:
        return len(g)

    result = flow_run(graph(count, greetings), {"names": ["ann", "bob"]})
    assert result.output == {"count": 2, "greetings": ["hello, ann", "hello, bob"]}


@pytest.mark.parametrize("items", [[], ["x"]])
def test_empty_and_single_item_lists(flow_run, items):
    result = flow_run(graph(joined), overrides={words: items})
    assert result.output == " ".join(w.upper() + "!" for w in items)


@step(when=lambda: False)
def maybe_items() -> list[int]:
    return [1, 2]


@step
def twice(x: Annotated[int | None, each(maybe_items)]) -> int:
    return 2 * (x or 0)


@step
def summed(twice: list[int] | None) -> int:
    return sum(twice or [])


def test_a_map_over_a_skipped_list_is_skipped_even_with_an_optional_item(flow_run):
    result = flow_run(graph(summed))
    assert result.output == 0
    span = result.spans["twice"]
    assert (span.status, span.reason) == (
        "skipped", "upstream 'maybe_items' was skipped (its when= predicate was false)")
