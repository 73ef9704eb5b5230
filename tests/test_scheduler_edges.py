"""Edge cases of the scheduler found in review: containers that end in unusual ways
(timed out, overridden, skipped, retried), maps stopped half-way, and what the spans,
events and failures say afterwards. All in virtual time (``flow_run``).
"""

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    Backoff,
    Error,
    Event,
    Outcome,
    RunFailed,
    each,
    graph,
    race,
    run,
    step,
    subflow,
)


def contestant(name: str, delay: float, value: Any = None, fail: bool = False) -> Any:
    async def fn() -> Any:
        await trio.sleep(delay)
        if fail:
            raise ValueError(f"{name} failed")
        return value if value is not None else name

    fn.__name__ = fn.__qualname__ = name
    return step(fn)


def uses(upstream: Any, name: str, seen: list[Any]) -> Any:
    """A step taking ``upstream``'s output as ``T | None`` and recording what it got."""

    async def fn(value: Annotated[Any | None, upstream]) -> str:
        seen.append(value)
        return f"{name} got {value!r}"

    fn.__name__ = fn.__qualname__ = name
    return step(fn)


# --- races that end without running (all) their contestants ---------------------------------


def test_race_timing_out_with_on_timeout_settles_its_contestants(flow_run: Any) -> None:
    a, b = contestant("a", 5), contestant("b", 6)
    seen: list[Any] = []
    data = race(a, b, name="data", timeout=1, on_timeout="fallback")
    result = flow_run(graph(data, uses(a, "use_a", seen)))
    assert result.output == {"data": "fallback", "use_a": "use_a got None"}
    assert seen == [None]  # woken: the contestant settled (cancelled), not left pending
    for name in ("a", "b"):
        span = result.spans[name]
        assert span.status == "cancelled"
        assert span.reason == "cancelled: race 'data' timed out after 1s"
        assert span.ended == 1


def test_overridden_race_skips_its_contestants(flow_run: Any) -> None:
    a, b = contestant("a", 1), contestant("b", 2)
    seen: list[Any] = []
    data = race(a, b, name="data")
    result = flow_run(graph(data, uses(a, "use_a", seen)), overrides={"data": 99})
    assert result.output == {"data": 99, "use_a": "use_a got None"}
    assert result.spans["a"].status == "skipped"
    assert result.spans["a"].reason == "race 'data' did not run it (overridden)"


@pytest.mark.parametrize("kind", ["race", "subflow"])
def test_a_container_overridden_by_a_function_is_replaced(flow_run: Any, kind: str) -> None:
    a, b = contestant("a", 1, value=1), contestant("b", 2, value=2)
    data = race(a, b, name="data") if kind == "race" else subflow(graph(a), name="data")
    result = flow_run(graph(data), overrides={"data": lambda: 99})
    assert result.output == 99


def test_race_skipped_by_when_skips_its_contestants(flow_run: Any) -> None:
    a, b = contestant("a", 1), contestant("b", 2)
    seen: list[Any] = []
    data = race(a, b, name="data", when=lambda: False)
    result = flow_run(graph(data, uses(a, "use_a", seen)))
    assert result.spans["data"].status == "skipped"
    assert result.spans["b"].reason == (
        "race 'data' did not run it (its when= predicate was false)")
    assert seen == [None]


def test_race_whose_contestants_are_all_skipped_is_skipped(flow_run: Any) -> None:
    @step(when=lambda: False)
    async def a() -> int:
        return 1

    @step(when=lambda: False)
    async def b() -> int:
        return 2

    result = flow_run(graph(race(a, b, name="data")))
    span = result.spans["data"]
    assert (span.status, span.reason) == (
        "skipped", "every contestant of race 'data' was skipped")


def test_a_winner_returning_none_is_a_value(flow_run: Any) -> None:
    @step
    async def fast() -> None:
        await trio.sleep(1)

    slow = contestant("slow", 2)
    seen: list[Any] = []

    @step
    async def after_fast(fast: object) -> str:
        seen.append(fast)
        return "ran"

    result = flow_run(graph(race(fast, slow, name="data"), after_fast))
    assert result.spans["data"].winner == "fast"
    assert result.output["after_fast"] == "ran" and seen == [None]


def test_retried_race_wakes_contestant_dependents_once_with_the_final_result(
        flow_run: Any) -> None:
    calls = {"a": 0}

    @step
    async def a() -> int:
        calls["a"] += 1
        await trio.sleep(1)
        if calls["a"] == 1:
            raise ValueError("first try fails")
        return 1

    b = contestant("b", 2, fail=True)
    seen: list[Any] = []
    data = race(a, b, name="data", retries=1, backoff=Backoff(initial=1, jitter=0))
    result = flow_run(graph(data, uses(a, "use_a", seen)))
    assert seen == [1]  # once, after attempt 2: not skipped after the failed attempt 1
    assert result.spans["data"].attempts == 2
    a_span = result.spans["a"]
    # attempt 1 ended at 2 (both failed), backoff 1: attempt 2 started afresh at 3
    assert (a_span.status, a_span.error, a_span.started) == ("succeeded", None, 3)
    assert result.spans["b"].status == "cancelled"
    assert result.failures == {}  # attempt 1's errors did not survive the retry


# --- sub-workflows stopped without stopping the run ------------------------------------------


def test_subflow_timing_out_with_on_timeout_finishes_its_spans(flow_run: Any) -> None:
    @step
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    @step
    async def later(value: Annotated[int, slow]) -> int:
        return value + 1

    branch = subflow(graph(later), name="branch", timeout=5, on_timeout=0)
    events: list[Event] = []
    result = flow_run(graph(branch), on_event=events.append)
    assert result.output == 0
    later_span = result.span("branch/later")
    assert later_span.status == "cancelled"
    assert later_span.reason == "never started: cancelled: subflow 'branch' timed out after 5s"
    assert ("cancelled", "branch/later") in [(e.kind, e.step) for e in events]


def test_subflow_failure_consumed_by_outcome_finishes_its_spans(flow_run: Any) -> None:
    @step
    async def boom() -> int:
        await trio.sleep(1)
        raise ValueError("boom")

    @step
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    @step
    async def after_boom(value: Annotated[int, boom]) -> int:
        return value

    branch = subflow(graph(after_boom, slow), name="branch")

    @step
    async def report(outcome: Annotated[Outcome[dict[str, int]], branch]) -> str:
        return "failed" if isinstance(outcome, Error) else "ok"

    result = flow_run(graph(report))
    assert result.output == "failed"
    assert result.span("branch/slow").status == "cancelled"
    assert result.span("branch/after_boom").reason == (
        "never started: cancelled because step 'branch/boom' failed")


def test_subflow_retried_to_success_keeps_no_stale_failure(flow_run: Any) -> None:
    calls: list[int] = []

    @step
    async def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first try")
        return 7

    result = flow_run(graph(subflow(graph(flaky), name="branch", retries=1)))
    assert result.output == 7
    assert result.failures == {}


# --- maps stopped half-way --------------------------------------------------------------------


@step
async def numbers() -> list[int]:
    return [1, 2, 3]


@step
async def fetch(n: Annotated[int, each(numbers)]) -> int:
    await trio.sleep(n)
    return n


@step
async def parse(x: Annotated[int, each(fetch)]) -> int:
    if x == 1:
        raise ValueError("bad item")
    return x


def test_map_over_map_item_failing_while_the_upstream_still_streams(flow_run: Any) -> None:
    result = flow_run(graph(parse), expect_failure=True)
    assert str(result.error).startswith(
        "step 'parse' failed in item [0] on attempt 1: ValueError: bad item")
    assert result.spans["parse"].reason == "item [0] failed"


def test_fail_fast_cancellation_events_carry_the_reason(flow_run: Any) -> None:
    @step
    async def six() -> list[int]:
        return list(range(6))

    @step
    async def work(i: Annotated[int, each(six)]) -> int:
        if i == 0:
            raise ValueError("item 0 broke")
        await trio.sleep(1)
        return i

    reasons: dict[str, str | None] = {}

    def on_event(event: Event) -> None:
        if event.kind == "cancelled":
            reasons[event.step] = event.span.reason  # at emit time, not fixed up later

    flow_run(graph(work), expect_failure=True, on_event=on_event)
    assert set(reasons) == {f"work[{i}]" for i in range(1, 6)}
    for reason in reasons.values():
        assert reason is not None and reason.endswith("cancelled because item [0] failed")


def test_no_map_item_starts_after_the_map_failed() -> None:
    @step
    async def four() -> list[int]:
        return list(range(4))

    @step
    async def work(i: Annotated[int, each(four)]) -> int:
        if i == 0:
            raise ValueError("item 0 broke")  # fails before any checkpoint
        await trio.sleep(1)
        return i

    kinds: list[tuple[str, str]] = []
    for _ in range(30):  # trio shuffles the order of a batch: try many orders
        kinds.clear()
        with pytest.raises(RunFailed):
            run(graph(work), on_event=lambda e: kinds.append((e.kind, e.step)),
                clock=trio.testing.MockClock(autojump_threshold=0))
        failed_at = kinds.index(("failed", "work[0]"))
        assert all(kind != "started" for kind, _ in kinds[failed_at:])


def test_no_contestant_starts_after_the_race_was_won() -> None:
    log: list[str] = []

    @step
    async def quick() -> int:
        log.append("quick")
        return 1  # wins without a checkpoint

    @step
    async def charge() -> int:
        log.append("charge")  # a side effect that must not happen once quick has won
        await trio.sleep(1)
        return 2

    for _ in range(30):
        log.clear()
        run(graph(race(quick, charge, name="pay")),
            clock=trio.testing.MockClock(autojump_threshold=0))
        assert log in (["quick"], ["charge", "quick"])


# --- limits held by a container ---------------------------------------------------------------


def test_members_of_a_limited_subflow_take_turns_on_its_slot(flow_run: Any) -> None:
    running = peak = 0

    @step
    async def ids() -> list[int]:
        return list(range(6))

    @step(limit="api")
    async def call(i: Annotated[int, each(ids)]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1
        return i

    branch = subflow(graph(call), name="branch", limit="api")
    result = flow_run(graph(branch), limits={"api": 2})
    assert result.output == list(range(6))
    assert peak == 1  # the subflow holds one 'api' slot; its items share it


# --- annotations are re-read by every graph() call --------------------------------------------


def test_a_reloaded_module_gets_its_new_classes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = (
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "from flowfn import step\n\n"
        "@dataclass\n"
        "class Order:\n"
        "    qty: int\n"
        "{extra}\n"
        "@step\n"
        "def total(order: Order) -> Order:\n"
        "    return order\n"
    )
    module = tmp_path / "reloaded_flow.py"
    module.write_text(source.format(extra=""))
    monkeypatch.syspath_prepend(str(tmp_path))
    flow_module = importlib.import_module("reloaded_flow")
    try:
        assert run(graph(flow_module.total), {"order": {"qty": 2}}).output.qty == 2
        module.write_text(source.format(extra="    price: float = 1.5\n"))
        flow_module = importlib.reload(flow_module)
        order = run(graph(flow_module.total), {"order": {"qty": 2}}).output
        assert type(order) is flow_module.Order and order.price == 1.5
    finally:
        sys.modules.pop("reloaded_flow", None)


# --- races retried, nested, or holding Outcome consumers -------------------------------------


def test_a_retried_outer_race_hands_the_inner_contestants_their_final_result(
        flow_run: Any) -> None:
    calls: list[int] = []

    @step
    async def a() -> int:
        calls.append(1)
        await trio.sleep(10 if len(calls) == 1 else 0.5)
        return 1

    b, c = contestant("b", 10), contestant("c", 10)
    inner = race(a, b, name="inner")
    outer = race(inner, c, name="outer", timeout=1, retries=1, backoff=0)
    seen: list[Any] = []
    result = flow_run(graph(outer, uses(a, "after_a", seen)))
    assert result.output["outer"] == 1
    assert seen == [1]  # not None from the cancelled first attempt
    assert result.spans["after_a"].started == 1.5


def test_an_outcome_consumer_losing_a_race_still_handles_the_failure(flow_run: Any) -> None:
    @step
    async def upstream() -> int:
        raise ValueError("boom")

    @step
    async def careful(value: Annotated[Outcome[int], upstream]) -> int:
        await trio.sleep(1)
        return 5

    @step
    async def quick() -> int:
        return 7

    for _ in range(10):  # whichever contestant trio starts first
        result = flow_run(graph(race(careful, quick, name="r")))
        assert result.output == 7
        assert isinstance(result.failures["upstream"], ValueError)


def test_a_failing_subflow_contestant_is_listed_once(flow_run: Any) -> None:
    @step
    async def shout() -> int:
        raise ValueError("inner boom")

    sf = subflow(graph(shout), name="sf")
    result = flow_run(graph(race(sf, contestant("w", 1, value=7), name="r")))
    assert result.output == 7
    assert list(result.failures) == ["sf/shout"]
    assert result.spans["sf"].reason == "step 'sf/shout' failed"


def test_a_retried_race_gives_list_outcome_consumers_the_last_attempts_items(
        flow_run: Any) -> None:
    attempt = {"n": 0}

    @step
    async def items() -> list[int]:
        return [1, 2]

    @step
    async def mapped(x: Annotated[int, each(items)]) -> int:
        if attempt["n"] == 0 and x == 2:
            raise ValueError("first attempt, item 2")
        return x * 10

    @step
    async def other() -> list[int]:
        await trio.sleep(0.1)
        attempt["n"] += 1
        if attempt["n"] == 1:
            raise KeyError("first attempt")
        await trio.sleep(5)
        return [0]

    data = race(mapped, other, name="data", retries=1, backoff=0)

    @step
    async def report(outcomes: Annotated[list[Outcome[int]], mapped]) -> list[str]:
        return [type(o).__name__ for o in outcomes]

    result = flow_run(graph(data, report))
    assert result.output == {"data": [10, 20], "report": ["Value", "Value"]}


def test_a_skipped_container_has_an_end_time(flow_run: Any) -> None:
    @step(when=lambda: False)
    async def maybe() -> int:
        return 1

    result = flow_run(graph(subflow(graph(maybe), name="branch")))
    span = result.spans["branch"]
    assert (span.status, span.started, span.ended) == ("skipped", 0, 0)
