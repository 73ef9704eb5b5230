"""Steps and map items that are ready run in turn in one task until one waits; then the
rest move on in another task. These tests pin down what that must never change: ready
work is concurrent, every step sees its own context, other tasks are not starved, and
work cancelled before it started is reported as cancelled."""

import contextvars
import random
from typing import Annotated, Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfn import arun, each, graph, step

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="clean")


def _run(flow: Any, **options: Any) -> Any:
    async def main() -> Any:
        with trio.fail_after(60):  # virtual: a lost handoff deadlocks, and fails here
            return await arun(flow, **options)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_item_that_waits_does_not_hold_back_the_items_after_it() -> None:
    ready = trio.Event()

    @step
    async def numbers() -> list[int]:
        return [0, 1, 2, 3]

    @step
    async def item(n: Annotated[int, each(numbers)]) -> int:
        if n == 0:
            await ready.wait()  # set by the last item: only if that one starts meanwhile
        if n == 3:
            ready.set()
        return n * 10

    assert _run(graph(item)).output == [0, 10, 20, 30]


def test_a_step_that_waits_does_not_hold_back_its_ready_siblings() -> None:
    ready = trio.Event()

    @step
    async def root() -> int:
        return 1

    @step
    async def waiter(r: Annotated[int, root]) -> str:
        await ready.wait()
        return "waited"

    @step
    async def quick(r: Annotated[int, root]) -> str:
        return "quick"

    @step
    async def setter(r: Annotated[int, root]) -> str:
        ready.set()
        return "set"

    out = _run(graph(waiter, quick, setter)).output
    assert out == {"waiter": "waited", "quick": "quick", "setter": "set"}


def test_each_step_and_item_starts_with_a_clean_context() -> None:
    @step
    async def numbers() -> list[int]:
        marker.set("leaked from numbers")
        return list(range(50))

    @step
    async def item(n: Annotated[int, each(numbers)]) -> str:
        before = marker.get()
        marker.set(f"leaked from item {n}")
        return before

    @step
    async def after(items: Annotated[list[str], item]) -> str:
        return marker.get()

    result = _run(graph(after))
    assert result.spans["item"].output == ["clean"] * 50
    assert result.output == "clean"


def test_steps_that_never_wait_do_not_starve_other_tasks() -> None:
    log: list[str] = []

    @step
    async def numbers() -> list[int]:
        return list(range(500))

    @step
    async def item(n: Annotated[int, each(numbers)]) -> int:
        log.append("item")
        return n

    @step
    async def ticker() -> None:
        for _ in range(20):
            log.append("tick")
            await trio.sleep(0)

    _run(graph(item, ticker))
    first, last = log.index("item"), len(log) - 1 - log[::-1].index("item")
    assert "tick" in log[first:last], "the map ran all its items without letting others run"


def test_items_stopped_before_they_started_are_cancelled(flow_run: Any) -> None:
    @step
    async def numbers() -> list[int]:
        return list(range(100))

    @step
    async def item(n: Annotated[int, each(numbers)]) -> int:
        if n == 3:
            raise ValueError("bad item")
        return n

    result = flow_run(graph(item), expect_failure=True)
    children = result.spans["item"].children
    assert [children[f"item[{i}]"].status for i in range(3)] == ["succeeded"] * 3
    assert children["item[3]"].status == "failed"
    later = [children[f"item[{i}]"] for i in range(4, 100)]
    assert {s.status for s in later} == {"cancelled"}
    assert all("item [3] failed" in (s.reason or "") for s in later), later[0].reason


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=120), st.integers(0, 2**32 - 1))
def test_items_that_wait_or_not_all_run_once_in_order(count: int, seed: int) -> None:
    rnd = random.Random(seed)
    waits = [rnd.choice([None, 0.0, 0.5, 2.0]) for _ in range(count)]
    runs: list[int] = []

    @step
    async def numbers() -> list[int]:
        return list(range(count))

    @step
    async def item(n: Annotated[int, each(numbers)]) -> int:
        runs.append(n)
        if waits[n] is not None:
            await trio.sleep(waits[n])
        return n * n

    result = _run(graph(item))
    assert result.output == [n * n for n in range(count)]
    assert sorted(runs) == list(range(count))
    # all items ran side by side: the map took as long as its longest item, in virtual time
    span = result.spans["item"]
    assert span.ended - span.started == pytest.approx(max(w or 0.0 for w in waits))
