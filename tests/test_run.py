"""run() / arun() semantics (DESIGN §2). Time-dependent checks run in virtual time."""

import threading
import uuid
from typing import Annotated, Any

import pytest
import trio
import trio.testing

from flowfn import (
    Event,
    RunFailed,
    RunResult,
    Span,
    arun,
    current_span,
    graph,
    run,
    step,
    step_span,
)


def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def sleeper(name: str, seconds: float, value: Any = None, **options: Any) -> Any:
    async def body() -> Any:
        await trio.sleep(seconds)
        return value

    body.__name__ = body.__qualname__ = name
    return step(name=name, **options)(body)


# --- parallelism and readiness ----------------------------------------------------------


def test_independent_steps_run_in_parallel(flow_run: Any, flow_clock: Any) -> None:
    left = sleeper("left", 1, 1)
    right = sleeper("right", 1, 2)

    @step
    async def join(a: Annotated[int, left], b: Annotated[int, right]) -> int:
        await trio.sleep(1)
        return a + b

    result = flow_run(graph(join))
    assert result.output == 3
    assert flow_clock.current_time() == 2  # not 3: left and right overlap
    spans = result.spans
    assert spans["left"].started == spans["right"].started == 0
    assert spans["join"].started == 1
    assert spans["join"].ended == 2


def test_a_step_starts_when_its_last_dependency_finishes(flow_run: Any, flow_clock: Any) -> None:
    # fast (1s) -> c (1s) -> d (1s) -> e, while slow (3s) -> e.
    # A level-by-level scheduler would start c at 3, d at 4 and e at 5.
    fast = sleeper("fast", 1, 1)
    slow = sleeper("slow", 3, 10)

    @step
    async def c(x: Annotated[int, fast]) -> int:
        await trio.sleep(1)
        return x + 1

    @step
    async def d(x: Annotated[int, c]) -> int:
        await trio.sleep(1)
        return x + 1

    @step
    async def e(x: Annotated[int, d], y: Annotated[int, slow]) -> int:
        return x + y

    result = flow_run(graph(e))
    assert result.output == 13
    starts = {name: span.started for name, span in result.spans.items()}
    assert starts == {"fast": 0, "slow": 0, "c": 1, "d": 2, "e": 3}
    assert flow_clock.current_time() == 3


def test_no_barrier_across_unequal_branches(flow_run: Any) -> None:
    # Two chains of different speed; each link starts right after its own predecessor.
    a1, b1 = sleeper("a1", 1), sleeper("b1", 5)

    @step
    async def a2(x: Annotated[None, a1]) -> None:
        await trio.sleep(1)

    @step
    async def a3(x: Annotated[None, a2]) -> None:
        await trio.sleep(1)

    @step
    async def b2(x: Annotated[None, b1]) -> None:
        await trio.sleep(1)

    result = flow_run(graph(a3, b2))
    starts = {name: span.started for name, span in result.spans.items()}
    assert starts == {"a1": 0, "a2": 1, "a3": 2, "b1": 0, "b2": 5}


def test_each_step_runs_once_even_with_many_dependents(flow_run: Any) -> None:
    calls: list[str] = []

    @step
    async def root() -> int:
        calls.append("root")
        return 1

    leaves = []
    for i in range(20):
        async def leaf(r: Annotated[int, root], i: int = i) -> int:
            calls.append("leaf")
            return r + i

        leaf.__name__ = f"leaf{i}"
        leaves.append(step(name=f"leaf{i}")(leaf))

    result = flow_run(graph(*leaves))
    assert result.output == {f"leaf{i}": 1 + i for i in range(20)}
    assert calls.count("root") == 1 and calls.count("leaf") == 20


# --- executors --------------------------------------------------------------------------


def test_sync_steps_run_in_worker_threads_and_inline_on_the_loop() -> None:
    seen: dict[str, int] = {}

    @step
    async def on_loop() -> int:
        seen["async"] = threading.get_ident()
        return 1

    @step
    def in_thread(x: Annotated[int, on_loop]) -> int:
        seen["thread"] = threading.get_ident()
        return x

    @step(executor="inline")
    def inline(x: Annotated[int, in_thread]) -> int:
        seen["inline"] = threading.get_ident()
        return x

    assert in_thread.executor == "thread" and on_loop.executor == "async"
    assert run(graph(inline)).output == 1
    assert seen["async"] == seen["inline"]
    assert seen["thread"] != seen["async"]
    assert seen["async"] == threading.get_ident()  # trio.run runs the loop on this thread


def test_thread_steps_do_not_block_the_loop() -> None:
    """Two blocking sync steps overlap: each waits for the other to have started."""
    both_started = threading.Barrier(2, timeout=5)

    @step
    def one() -> str:
        both_started.wait()
        return "one"

    @step
    def two() -> str:
        both_started.wait()
        return "two"

    assert run(graph(one, two)).output == {"one": "one", "two": "two"}


# --- failures -----------------------------------------------------------------------------


class Boom(Exception):
    pass


def failing_flow(log: list[str]) -> Any:
    @step
    async def slow_sibling() -> int:
        try:
            await trio.sleep(100)
        finally:
            log.append("slow_sibling finally")
        return 1

    @step
    async def done_early() -> int:
        return 5

    @step
    async def explode() -> int:
        await trio.sleep(1)
        raise Boom("boom")

    @step
    def downstream(x: Annotated[int, explode], y: Annotated[int, done_early]) -> int:
        log.append("downstream ran")
        return x

    @step
    def top(a: Annotated[int, slow_sibling], b: Annotated[int, downstream]) -> int:
        log.append("top ran")
        return a + b

    return graph(top)


def test_failure_cancels_running_siblings(flow_run: Any, flow_clock: Any) -> None:
    log: list[str] = []
    result = flow_run(failing_flow(log), expect_failure=True)
    assert log == ["slow_sibling finally"]  # the finally ran, nothing downstream started
    assert flow_clock.current_time() == 1  # nobody waited for the 100 s sleep
    assert result.status == "failed"
    assert result.output is None
    spans = result.spans
    assert spans["explode"].status == "failed"
    assert isinstance(spans["explode"].error, Boom)
    assert spans["slow_sibling"].status == "cancelled"
    assert spans["slow_sibling"].reason == "cancelled because step 'explode' failed"
    assert (spans["slow_sibling"].started, spans["slow_sibling"].ended) == (0, 1)
    assert spans["done_early"].status == "succeeded"
    for name in ("downstream", "top"):
        assert spans[name].status == "cancelled"
        assert spans[name].started is None
        assert spans[name].reason == "never started: cancelled because step 'explode' failed"


def test_run_failed_carries_cause_result_and_failures() -> None:
    log: list[str] = []
    with pytest.raises(RunFailed) as info:
        run(failing_flow(log), clock=mock_clock())
    err = info.value
    assert isinstance(err.__cause__, Boom)
    assert err.__cause__ is err.result.spans["explode"].error
    assert isinstance(err.result, RunResult)
    assert err.result.failures == {"explode": err.__cause__}
    assert err.result["done_early"] == 5  # finished work is not lost
    assert err.step == "explode"
    assert str(err).startswith("step 'explode' failed on attempt 1: Boom: boom\n")


def test_failure_in_a_thread_step() -> None:
    @step
    def bad_sync() -> int:
        raise KeyError("missing")

    with pytest.raises(RunFailed) as info:
        run(graph(bad_sync))
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.result.spans["bad_sync"].status == "failed"
    assert str(info.value).startswith("step 'bad_sync' failed on attempt 1: KeyError: 'missing'")


def test_result_getitem_on_a_step_without_output() -> None:
    log: list[str] = []
    with pytest.raises(RunFailed) as info:
        run(failing_flow(log), clock=mock_clock())
    result = info.value.result
    with pytest.raises(KeyError, match="explode"):
        result["explode"]
    with pytest.raises(KeyError, match="nope"):
        result["nope"]


# --- spans ------------------------------------------------------------------------------


def test_span_fields(flow_run: Any) -> None:
    @step
    async def load(n: int) -> list[int]:
        await trio.sleep(2)
        return list(range(n))

    @step
    def total(items: Annotated[list[int], load], scale: int = 10) -> int:
        return sum(items) * scale

    @step(when=lambda: False)
    def never() -> int:
        return 0

    result = flow_run(graph(total, never), {"n": "3"})
    load_span = result.spans["load"]
    assert isinstance(load_span, Span)
    assert load_span.name == "load"
    assert load_span.status == "succeeded"
    assert load_span.reason is None
    assert load_span.input == {"n": 3}
    assert load_span.output == [0, 1, 2]
    assert load_span.error is None
    assert (load_span.started, load_span.ended, load_span.duration) == (0, 2, 2)
    assert load_span.attempts == 1
    assert load_span.children == {}
    total_span = result.spans["total"]
    assert total_span.input == {"items": [0, 1, 2], "scale": 10}
    assert total_span.output == 30
    assert (total_span.started, total_span.ended) == (2, 2)
    never_span = result.spans["never"]
    assert never_span.status == "skipped"
    assert never_span.reason == "its when= predicate was false"
    assert never_span.started is None and never_span.duration is None
    assert result.output == {"total": 30, "never": None}
    assert set(result.spans) == {"load", "total", "never"}


def test_custom_span_attributes_in_async_and_thread_steps() -> None:
    @step
    async def producer() -> int:
        current_span().user_status = "active"
        current_span().rows = 3
        return 1

    @step
    def thread_reader(x: Annotated[int, producer]) -> str:
        other = step_span("producer")
        current_span().copied = other.user_status
        return f"{other.user_status}:{other.rows}"

    @step
    async def async_reader(x: Annotated[int, producer]) -> str:
        other = step_span(producer)  # by step object too
        return f"{other.user_status}:{other.rows}:{current_span().name}"

    @step
    def missing_reader(x: Annotated[int, producer]) -> Any:
        return step_span("no_such_step", default="fallback")

    result = run(graph(thread_reader, async_reader, missing_reader))
    assert result.output == {
        "thread_reader": "active:3",
        "async_reader": "active:3:async_reader",
        "missing_reader": "fallback",
    }
    assert result.spans["producer"].attributes == {"user_status": "active", "rows": 3}
    assert result.spans["thread_reader"].attributes == {"copied": "active"}
    assert result.spans["async_reader"].attributes == {}


def test_current_span_is_each_steps_own_in_concurrent_steps() -> None:
    @step
    async def first() -> str:
        span = current_span()
        await trio.sleep(0.01)
        return span.name + "/" + current_span().name

    @step
    def second() -> str:
        return current_span().name

    assert run(graph(first, second)).output == {"first": "first/first", "second": "second"}


# --- events --------------------------------------------------------------------------------


def test_events_kinds_and_order(flow_run: Any) -> None:
    events: list[tuple[str, str, float]] = []

    def on_event(ev: Event) -> None:
        assert isinstance(ev.span, Span) and ev.span.name == ev.step
        events.append((ev.kind, ev.step, ev.time))

    a = sleeper("a", 1, 1)

    @step
    async def b(x: Annotated[int, a]) -> int:
        await trio.sleep(1)
        return x

    flow_run(graph(b), on_event=on_event)
    assert events == [
        ("started", "a", 0), ("finished", "a", 1), ("started", "b", 1), ("finished", "b", 2),
    ]


def test_events_on_failure_and_skip(flow_run: Any) -> None:
    events: list[tuple[str, str, float]] = []
    slow = sleeper("slow", 10)

    @step
    async def bad() -> None:
        await trio.sleep(1)
        raise Boom("x")

    @step(when=lambda: False)
    def off() -> None:
        return None

    @step
    def never(x: Annotated[None, bad]) -> None:
        return None

    flow_run(graph(slow, never, off), expect_failure=True,
             on_event=lambda ev: events.append((ev.kind, ev.step, ev.time)))
    by_step: dict[str, list[tuple[str, float]]] = {}
    for kind, name, time in events:
        by_step.setdefault(name, []).append((kind, time))
    assert by_step == {
        "slow": [("started", 0), ("cancelled", 1)],
        "bad": [("started", 0), ("failed", 1)],
        "off": [("skipped", 0)],
        "never": [("cancelled", 1)],  # never started: told once the run has stopped
    }
    assert events.index(("failed", "bad", 1)) < events.index(("cancelled", "slow", 1))
    assert events[-1] == ("cancelled", "never", 1)


def test_a_broken_event_callback_does_not_break_the_run() -> None:
    @step
    def fine() -> int:
        return 1

    def broken(ev: Event) -> None:
        raise RuntimeError("callback bug")

    with pytest.warns(RuntimeWarning, match="callback bug"):
        assert run(graph(fine), on_event=broken).output == 1


# --- overrides ----------------------------------------------------------------------------


def override_flow(calls: list[str]) -> tuple[Any, Any, Any]:
    @step
    async def fetch_users() -> list[str]:
        calls.append("fetch_users")
        return ["real"]

    @step
    def fetch_prices(region: str) -> dict[str, float]:
        calls.append("fetch_prices")
        return {"a": 1.0}

    @step
    def merge(users: Annotated[list[str], fetch_users],
              prices: Annotated[dict[str, float], fetch_prices]) -> str:
        return f"{users}|{sorted(prices)}"

    return graph(merge), fetch_users, fetch_prices


def test_override_by_value_function_and_name(flow_run: Any) -> None:
    calls: list[str] = []
    flow, fetch_users, _ = override_flow(calls)
    result = flow_run(flow, {"region": "eu"}, overrides={
        fetch_users: ["fake"],
        "fetch_prices": lambda region: {region: 2.0},
    })
    assert result.output == "['fake']|['eu']"
    assert calls == []
    assert result.spans["fetch_users"].status == "succeeded"
    assert result.spans["fetch_users"].output == ["fake"]


def test_override_by_async_function(flow_run: Any) -> None:
    calls: list[str] = []
    flow, fetch_users, _ = override_flow(calls)

    async def fake_users() -> list[str]:
        await trio.sleep(5)
        return ["async fake"]

    result = flow_run(flow, {"region": "eu"}, overrides={fetch_users: fake_users})
    assert result.output == "['async fake']|['a']"
    assert calls == ["fetch_prices"]
    assert result.spans["fetch_users"].ended == 5


def test_override_by_exception_instance() -> None:
    calls: list[str] = []
    flow, fetch_users, _ = override_flow(calls)
    error = ConnectionError("api down")
    with pytest.raises(RunFailed) as info:
        run(flow, {"region": "eu"}, overrides={fetch_users: error})
    assert info.value.__cause__ is error
    assert info.value.result.spans["fetch_users"].status == "failed"
    assert "fetch_users" not in calls


def test_override_none_is_a_value() -> None:
    @step
    def maybe() -> int | None:
        return 1

    assert run(graph(maybe), overrides={maybe: None}).output is None


def test_overrides_are_per_run() -> None:
    calls: list[str] = []
    flow, fetch_users, _ = override_flow(calls)
    assert run(flow, {"region": "eu"}, overrides={fetch_users: ["x"]}).output == "['x']|['a']"
    assert run(flow, {"region": "eu"}).output == "['real']|['a']"
    assert calls.count("fetch_users") == 1


# --- timeouts, ids, arun -------------------------------------------------------------------


def test_run_timeout() -> None:
    started: list[str] = []
    log: list[str] = []

    @step
    async def long_step() -> int:
        started.append("long_step")
        try:
            await trio.sleep(10)
        finally:
            log.append("long_step finally")
        return 1

    @step
    async def after_long(x: Annotated[int, long_step]) -> int:
        started.append("after_long")
        return x

    @step
    async def quick() -> int:
        started.append("quick")
        return 2

    clock = mock_clock()
    with pytest.raises(RunFailed) as info:
        run(graph(after_long, quick), timeout=5, clock=clock)
    err = info.value
    assert isinstance(err.__cause__, TimeoutError)
    assert clock.current_time() == 5
    assert sorted(started) == ["long_step", "quick"]
    assert log == ["long_step finally"]
    assert str(err) == (
        "run(after_long, quick) timed out after 5s\n"
        "  cancelled while running: long_step; never started: after_long"
    )
    spans = err.result.spans
    assert err.result.status == "failed"
    assert spans["quick"].status == "succeeded"
    assert spans["long_step"].status == "cancelled"
    assert spans["long_step"].reason == "cancelled: the run timed out after 5s"
    assert spans["after_long"].status == "cancelled"
    assert spans["after_long"].reason == "never started: cancelled: the run timed out after 5s"


def test_run_timeout_not_reached() -> None:
    @step
    async def short() -> int:
        await trio.sleep(1)
        return 1

    assert run(graph(short), timeout=5, clock=mock_clock()).output == 1


def test_run_id() -> None:
    @step
    def one() -> int:
        return 1

    flow = graph(one)
    assert run(flow, run_id="order-42").run_id == "order-42"
    ids = {run(flow).run_id for _ in range(3)}
    assert len(ids) == 3
    for run_id in ids:
        assert isinstance(run_id, str) and run_id


def test_result_indexing_by_step_and_name() -> None:
    @step
    def base() -> int:
        return 4

    @step
    def square(x: Annotated[int, base]) -> int:
        return x * x

    result = run(graph(square))
    assert result.status == "succeeded"
    assert result.output == 16
    assert result[base] == result["base"] == 4
    assert result[square] == result["square"] == 16
    assert result.failures == {}
    assert [s.name for s in result] == list(result.spans)


@pytest.mark.trio
async def test_arun_inside_a_trio_test(autojump_clock: trio.testing.MockClock) -> None:
    a = sleeper("a", 2, 20)
    b = sleeper("b", 3, 30)

    @step
    def add(x: Annotated[int, a], y: Annotated[int, b]) -> int:
        return x + y

    start = trio.current_time()
    result = await arun(graph(add), run_id=str(uuid.UUID(int=1)))
    assert result.output == 50
    assert trio.current_time() - start == 3
    assert result.run_id == str(uuid.UUID(int=1))


@pytest.mark.trio
async def test_arun_failure_inside_a_trio_test() -> None:
    @step
    async def bad() -> None:
        raise Boom("inside trio")

    with pytest.raises(RunFailed) as info:
        await arun(graph(bad))
    assert isinstance(info.value.__cause__, Boom)


@pytest.mark.trio
async def test_two_aruns_concurrently_do_not_mix_spans() -> None:
    @step
    async def who(tag: str) -> str:
        await trio.sleep(0.01)
        return current_span().name + ":" + tag

    flow = graph(who)
    results: dict[str, Any] = {}

    async def one(tag: str) -> None:
        results[tag] = (await arun(flow, {"tag": tag})).output

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "x")
        nursery.start_soon(one, "y")
    assert results == {"x": "who:x", "y": "who:y"}


# --- capacity -------------------------------------------------------------------------------


def test_max_concurrency_and_named_limits(flow_run: Any, flow_clock: Any) -> None:
    steps = [sleeper(f"s{i}", 1, i) for i in range(5)]
    flow_run(graph(*steps), max_concurrency=2)
    assert flow_clock.current_time() == 3  # 5 one-second steps, 2 at a time

    api_steps = [sleeper(f"api{i}", 1, i, limit="api") for i in range(4)]
    start = flow_clock.current_time()
    result = flow_run(graph(*api_steps), limits={"api": 4})
    assert flow_clock.current_time() - start == 1
    assert result.output == {f"api{i}": i for i in range(4)}


def test_max_concurrency_must_be_positive() -> None:
    @step
    def one() -> int:
        return 1

    with pytest.raises(ValueError, match="max_concurrency"):
        run(graph(one), max_concurrency=0)
