"""Dynamic map / fan-out: ``def fetch(url: Annotated[str, each(list_urls)])``.

DESIGN §3 row *map / fan-out*: once per item, concurrently, a child span per item,
results in input order, empty input, zip of several ``each()``, broadcast parameters,
map over map without a barrier, fail-fast, ``list[Outcome[T]]`` collection, graph-time
checks. All timing in virtual time.
"""

import random
from collections.abc import Sequence
from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    Backoff,
    Error,
    GraphError,
    MapLengthError,
    Outcome,
    RunFailed,
    StepTimeout,
    Value,
    current_span,
    each,
    graph,
    step,
)


def source(name: str, items: list[Any]):
    async def fn() -> list[Any]:
        return list(items)

    fn.__name__ = fn.__qualname__ = name
    return step(fn, name=name)


def test_runs_once_per_item_concurrently_with_child_spans(flow_run, flow_clock):
    @step
    async def list_urls() -> list[str]:
        return [f"https://x/{i}" for i in range(5)]

    running = {"now": 0, "peak": 0}

    @step
    async def fetch(url: Annotated[str, each(list_urls)]) -> int:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await trio.sleep(2)
        running["now"] -= 1
        return len(url)

    result = flow_run(graph(fetch))
    assert result.output == [len(f"https://x/{i}") for i in range(5)]
    assert running["peak"] == 5
    assert flow_clock.current_time() == 2.0
    span = result.spans["fetch"]
    assert span.status == "succeeded"
    assert (span.started, span.ended) == (0.0, 2.0)
    assert list(span.children) == [f"fetch[{i}]" for i in range(5)]
    child = span.children["fetch[3]"]
    assert child.name == "fetch[3]"
    assert child.path == "fetch[3]"
    assert child.status == "succeeded"
    assert child.input == {"url": "https://x/3"}
    assert child.output == len("https://x/3")
    assert (child.started, child.ended) == (0.0, 2.0)
    assert result.span("fetch").children["fetch[0]"].attempts == 1


@pytest.mark.parametrize("seed", range(5))
def test_results_are_in_input_order_whatever_the_completion_order(flow_run, seed):
    rng = random.Random(seed)
    durations = [rng.choice([0.5, 1, 1.5, 2, 3, 5, 8]) for _ in range(20)]
    items = source("items", list(range(20)))

    @step
    async def slow_square(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(durations[n])
        return n * n

    @step
    async def collect(squares: Annotated[list[int], slow_square]) -> list[int]:
        return squares

    result = flow_run(graph(collect))
    assert result.output == [n * n for n in range(20)]
    children = result.spans["slow_square"].children
    assert [children[f"slow_square[{i}]"].ended for i in range(20)] == durations
    assert result.spans["collect"].started == max(durations)


def test_empty_input_gives_an_empty_list_without_running(flow_run):
    calls: list[Any] = []
    nothing = source("nothing", [])

    @step
    async def fetch(x: Annotated[int, each(nothing)]) -> int:
        calls.append(x)
        return x

    @step
    async def again(y: Annotated[int, each(fetch)]) -> int:
        calls.append(y)
        return y

    @step
    async def total(xs: Annotated[list[int], fetch], ys: Annotated[list[int], again]) -> str:
        return f"{xs} {ys}"

    result = flow_run(graph(total))
    assert calls == []
    assert result.output == "[] []"
    assert result.spans["fetch"].status == "succeeded"
    assert result.spans["fetch"].output == []
    assert result.spans["fetch"].children == {}


def test_several_each_parameters_zip(flow_run):
    names = source("names", ["ann", "bob", "cy"])
    ages = source("ages", [31, 42, 53])

    @step
    async def describe(name: Annotated[str, each(names)],
                       age: Annotated[int, each(ages)]) -> str:
        return f"{name}:{age}"

    result = flow_run(graph(describe))
    assert result.output == ["ann:31", "bob:42", "cy:53"]
    assert result.spans["describe"].children["describe[1]"].input == {"name": "bob",
                                                                      "age": 42}


def test_length_mismatch_is_a_clear_error(flow_run):
    calls: list[Any] = []
    names = source("names", ["ann", "bob", "cy"])
    ages = source("ages", [31, 42])

    @step
    async def describe(name: Annotated[str, each(names)],
                       age: Annotated[int, each(ages)]) -> str:
        calls.append(name)
        return f"{name}:{age}"

    result = flow_run(graph(describe), expect_failure=True)
    assert calls == []
    err = result.error.__cause__
    assert isinstance(err, MapLengthError)
    assert isinstance(err, ValueError)
    text = str(err)
    assert "'describe'" in text
    assert "name: 3 items" in text and "age: 2 items" in text
    assert result.spans["describe"].status == "failed"


def test_non_each_parameters_are_broadcast(flow_run):
    items = source("items", [1, 2, 3])

    @step
    async def factor() -> int:
        await trio.sleep(1)
        return 10

    @step
    async def scale(n: Annotated[int, each(items)], f: Annotated[int, factor],
                    offset: int, label: str = "x") -> str:
        return f"{label}{n * f + offset}"

    result = flow_run(graph(scale), {"offset": 5})
    assert result.output == ["x15", "x25", "x35"]
    children = result.spans["scale"].children
    assert [c.input for c in children.values()] == [
        {"n": n, "f": 10, "offset": 5, "label": "x"} for n in (1, 2, 3)]
    assert result.spans["scale"].started == 1.0


def test_map_over_map_pipelines_without_a_barrier(flow_run):
    """Item 0 reaches the second step before item 9 has finished the first."""
    items = source("items", list(range(10)))

    @step
    async def first(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(n + 1)
        return n

    @step
    async def second(n: Annotated[int, each(first)]) -> int:
        await trio.sleep(1)
        return n * 10

    result = flow_run(graph(second))
    assert result.output == [n * 10 for n in range(10)]
    first_items = result.spans["first"].children
    second_items = result.spans["second"].children
    assert second_items["second[0]"].started == 1.0
    assert first_items["first[9]"].ended == 10.0
    assert second_items["second[0]"].started < first_items["first[9]"].ended
    for i in range(10):
        assert (first_items[f"first[{i}]"].started, first_items[f"first[{i}]"].ended) == (
            0.0, i + 1.0)
        assert (second_items[f"second[{i}]"].started, second_items[f"second[{i}]"].ended) == (
            i + 1.0, i + 2.0)
        assert second_items[f"second[{i}]"].input == {"n": i}
    assert result.spans["second"].ended == 11.0


def test_three_stage_pipeline_in_order(flow_run):
    items = source("items", [3, 1, 2])

    @step
    async def a(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(n)
        return n

    @step
    async def b(n: Annotated[int, each(a)]) -> int:
        await trio.sleep(n)
        return n + 100

    @step
    async def c(n: Annotated[int, each(b)]) -> str:
        return str(n)

    result = flow_run(graph(c))
    assert result.output == ["103", "101", "102"]
    c_items = result.spans["c"].children
    assert [c_items[f"c[{i}]"].started for i in range(3)] == [6.0, 2.0, 4.0]


def test_a_failing_item_fails_the_step_fail_fast(flow_run):
    cleaned: list[tuple[int, float]] = []
    items = source("items", list(range(5)))

    @step
    async def fetch(n: Annotated[int, each(items)]) -> int:
        try:
            await trio.sleep(1 if n == 2 else 10)
            if n == 2:
                raise ConnectionError("item 2 broke")
            return n
        finally:
            cleaned.append((n, trio.current_time()))

    @step
    async def after(xs: Annotated[list[int], fetch]) -> int:
        return len(xs)

    result = flow_run(graph(after), expect_failure=True)
    assert sorted(cleaned) == [(n, 1.0) for n in range(5)]
    span = result.spans["fetch"]
    assert span.status == "failed"
    assert isinstance(span.error, ConnectionError)
    assert "[2]" in (span.reason or "")
    assert (span.started, span.ended) == (0.0, 1.0)
    children = span.children
    assert children["fetch[2]"].status == "failed"
    for i in (0, 1, 3, 4):
        assert children[f"fetch[{i}]"].status == "cancelled"
        assert children[f"fetch[{i}]"].reason == "cancelled because item [2] failed"
        assert children[f"fetch[{i}]"].ended == 1.0
    err = result.error
    assert isinstance(err, RunFailed)
    assert isinstance(err.__cause__, ConnectionError)
    assert "'fetch" in str(err)
    assert result.spans["after"].status == "cancelled"


def test_map_cancelled_by_a_failing_sibling_ends_cancelled(flow_run):
    """The map's own span (not only its items) ends at the cancellation, with a reason and
    a ``cancelled`` event."""
    from flowfn import Event

    items = source("items", [0, 1, 2])

    @step
    async def work(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(5)
        return n

    @step
    async def boom() -> None:
        await trio.sleep(1)
        raise ValueError("boom")

    events: list[Event] = []
    result = flow_run(graph(work, boom), on_event=events.append, expect_failure=True)
    span = result.spans["work"]
    assert [c.status for c in span.children.values()] == ["cancelled"] * 3
    assert [c.ended for c in span.children.values()] == [1.0] * 3
    assert span.status == "cancelled"
    assert span.reason == "cancelled because step 'boom' failed"
    assert (span.started, span.ended) == (0.0, 1.0)
    assert ("cancelled", "work", 1.0) in [(e.kind, e.step, e.time) for e in events]


def test_list_of_outcomes_collects_per_item_results(flow_run, flow_clock):
    items = source("items", list(range(5)))

    @step
    async def fetch(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(n + 1)
        if n in (1, 3):
            raise ValueError(f"bad {n}")
        return n * 10

    @step
    async def collect(results: Annotated[list[Outcome[int]], fetch]) -> dict[str, Any]:
        ok = [r.value for r in results if isinstance(r, Value)]
        bad = [str(r.error) for r in results if isinstance(r, Error)]
        return {"ok": ok, "bad": bad, "kinds": [type(r).__name__ for r in results]}

    result = flow_run(graph(collect))
    assert result.status == "succeeded"
    assert result.output == {
        "ok": [0, 20, 40],
        "bad": ["bad 1", "bad 3"],
        "kinds": ["Value", "Error", "Value", "Error", "Value"],
    }
    # no fail-fast: every item ran to its end
    children = result.spans["fetch"].children
    assert [children[f"fetch[{i}]"].ended for i in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [children[f"fetch[{i}]"].status for i in range(5)] == [
        "succeeded", "failed", "succeeded", "failed", "succeeded"]
    assert result.spans["fetch"].status == "failed"
    assert "fetch" in result.failures
    assert result.spans["collect"].started == 5.0
    assert flow_clock.current_time() == 5.0


def test_list_of_outcomes_when_every_item_succeeds(flow_run):
    items = source("items", ["a", "b"])

    @step
    async def up(s: Annotated[str, each(items)]) -> str:
        return s.upper()

    @step
    async def collect(results: Annotated[list[Outcome[str]], up]) -> list[str]:
        return [r.unwrap() for r in results]

    assert flow_run(graph(collect)).output == ["A", "B"]


def test_map_items_retry_individually(flow_run):
    tries: dict[int, int] = {}
    items = source("items", [0, 1, 2])

    @step(retries=2, backoff=Backoff(initial=1, factor=2, jitter=0))
    async def fetch(n: Annotated[int, each(items)]) -> int:
        tries[n] = tries.get(n, 0) + 1
        await trio.sleep(1)
        if tries[n] <= n:
            raise ConnectionError(f"{n} try {tries[n]}")
        return n

    result = flow_run(graph(fetch))
    assert result.output == [0, 1, 2]
    assert tries == {0: 1, 1: 2, 2: 3}
    children = result.spans["fetch"].children
    assert [c.attempts for c in children.values()] == [1, 2, 3]
    assert [(a.started, a.ended) for a in children["fetch[2]"].attempt_log] == [
        (0.0, 1.0), (2.0, 3.0), (5.0, 6.0)]
    assert result.spans["fetch"].ended == 6.0


def test_map_items_time_out_individually(flow_run):
    items = source("items", [1, 5, 2])

    @step(timeout=3, on_timeout=-1)
    async def fetch(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(n)
        return n

    result = flow_run(graph(fetch))
    assert result.output == [1, -1, 2]
    assert result.spans["fetch"].children["fetch[1]"].ended == 3.0


def test_map_item_timeout_without_default_fails_the_map(flow_run):
    items = source("items", [1, 5])

    @step(timeout=3)
    async def fetch(n: Annotated[int, each(items)]) -> int:
        await trio.sleep(n)
        return n

    result = flow_run(graph(fetch), expect_failure=True)
    assert isinstance(result.error.__cause__, StepTimeout)


def test_current_span_inside_an_item_is_the_item_span(flow_run):
    items = source("items", ["a", "b"])

    @step
    async def tag(s: Annotated[str, each(items)]) -> str:
        span = current_span()
        span.letter = s
        return span.name

    result = flow_run(graph(tag))
    assert result.output == ["tag[0]", "tag[1]"]
    assert result.spans["tag"].children["tag[1]"].attributes == {"letter": "b"}


def test_thread_and_inline_map_items(flow_run):
    items = source("items", [1, 2, 3])

    @step
    def in_thread(n: Annotated[int, each(items)]) -> int:
        return n + 1

    @step(executor="inline")
    def inline(n: Annotated[int, each(in_thread)]) -> int:
        return n * 2

    assert flow_run(graph(inline)).output == [4, 6, 8]


def test_map_over_a_tuple_and_a_sequence(flow_run):
    @step
    async def pair() -> tuple[int, ...]:
        return (1, 2)

    @step
    async def seq() -> Sequence[str]:
        return ["x", "y"]

    @step
    async def combine(n: Annotated[int, each(pair)], s: Annotated[str, each(seq)]) -> str:
        return f"{s}{n}"

    assert flow_run(graph(combine)).output == ["x1", "y2"]


def test_map_over_a_skipped_upstream_is_skipped(flow_run):
    @step(when=lambda: False)
    async def maybe() -> list[int]:
        return [1]

    @step
    async def fetch(n: Annotated[int, each(maybe)]) -> int:
        return n

    result = flow_run(graph(fetch))
    assert result.spans["fetch"].status == "skipped"
    assert "'maybe'" in (result.spans["fetch"].reason or "")


# --- graph-time checks ------------------------------------------------------------------------


def test_upstream_must_be_iterable():
    @step
    async def count() -> int:
        return 3

    @step
    async def fetch(n: Annotated[int, each(count)]) -> int:
        return n

    with pytest.raises(GraphError) as info:
        graph(fetch)
    text = str(info.value)
    assert "parameter 'n' maps over step 'count', but it returns int" in text
    assert "not a list of items" in text


def test_a_string_is_not_a_list_of_items():
    @step
    async def name() -> str:
        return "abc"

    @step
    async def letter(c: Annotated[str, each(name)]) -> str:
        return c

    with pytest.raises(GraphError, match="not a list of items"):
        graph(letter)


def test_element_type_is_checked():
    @step
    async def list_urls() -> list[str]:
        return []

    @step
    async def fetch(url: Annotated[int, each(list_urls)]) -> int:
        return url

    with pytest.raises(GraphError) as info:
        graph(fetch)
    assert "parameter 'url' expects int, but step 'list_urls' returns str items" in str(
        info.value)


def test_element_type_of_a_map_over_a_map_is_checked():
    @step
    async def list_urls() -> list[str]:
        return []

    @step
    async def fetch(url: Annotated[str, each(list_urls)]) -> bytes:
        return b""

    @step
    async def parse(body: Annotated[str, each(fetch)]) -> str:
        return body

    with pytest.raises(GraphError, match="expects str, but step 'fetch' returns bytes items"):
        graph(parse)


def test_mapped_output_type_is_a_list_for_consumers():
    @step
    async def list_urls() -> list[str]:
        return []

    @step
    async def fetch(url: Annotated[str, each(list_urls)]) -> int:
        return 1

    @step
    async def wrong(total: Annotated[list[str], fetch]) -> None:
        return None

    @step
    async def right(total: Annotated[list[int], fetch]) -> None:
        return None

    graph(right)
    with pytest.raises(GraphError, match="expects list\\[str\\], but step 'fetch' returns"):
        graph(wrong)


def test_list_of_outcomes_from_a_non_mapped_step_is_an_error():
    @step
    async def single() -> int:
        return 1

    @step
    async def collect(rs: Annotated[list[Outcome[int]], single]) -> None:
        return None

    with pytest.raises(GraphError, match="not a mapped step"):
        graph(collect)


def test_a_non_iterable_value_at_run_time_fails_the_step(flow_run):
    @step
    async def untyped():
        return 5

    @step
    async def fetch(n: Annotated[Any, each(untyped)]) -> Any:
        return n

    result = flow_run(graph(fetch), expect_failure=True)
    assert isinstance(result.error.__cause__, TypeError)
    assert result.spans["fetch"].status == "failed"
