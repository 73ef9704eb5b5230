"""Throttling: ``@step(limit="api")`` + ``run(limits={"api": n})``, and ``max_concurrency=``.

DESIGN §3 row *throttling*; the litestar ``ThrottledGroup`` seed (10 calls, at most 5 at
once). Concurrency is tracked by the steps themselves; makespans are exact virtual times.
"""

from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    Backoff,
    GraphError,
    each,
    graph,
    race,
    step,
    subflow,
)


class Gauge:
    """Counts how many tracked sections run at once, and remembers the maximum."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.starts: list[float] = []

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.starts.append(trio.current_time())
        try:
            await trio.sleep(seconds)
        finally:
            self.now -= 1


def calls(gauge: Gauge, n: int, seconds: float = 1, **options: Any) -> list[Any]:
    out = []
    for i in range(n):
        async def call(i: int = i) -> int:
            await gauge.hold(seconds)
            return i

        out.append(step(call, name=f"call_{i}", **options))
    return out


def test_throttled_group_of_ten_runs_at_most_five_at_once(flow_run, flow_clock):
    gauge = Gauge()
    group = calls(gauge, 10, limit="api")

    result = flow_run(graph(*group), limits={"api": 5})
    assert gauge.peak == 5
    assert sorted(gauge.starts) == [0.0] * 5 + [1.0] * 5
    assert flow_clock.current_time() == 2.0
    assert sorted(result.spans[f"call_{i}"].started for i in range(10)) == [0.0] * 5 + [1.0] * 5
    assert result.output == {f"call_{i}": i for i in range(10)}


def test_limit_makespan_with_uneven_capacity(flow_run, flow_clock):
    gauge = Gauge()
    group = calls(gauge, 7, limit="db")
    flow_run(graph(*group), limits={"db": 3})
    assert gauge.peak == 3
    assert flow_clock.current_time() == 3.0


def test_only_steps_with_the_limit_are_throttled(flow_run, flow_clock):
    limited = Gauge()
    free = Gauge()
    steps = calls(limited, 4, limit="api")
    for i in range(4):
        async def other(i: int = i) -> int:
            await free.hold(1)
            return i

        steps.append(step(other, name=f"free_{i}"))
    flow_run(graph(*steps), limits={"api": 1})
    assert limited.peak == 1
    assert free.peak == 4
    assert flow_clock.current_time() == 4.0


def test_two_named_limits_are_independent(flow_run, flow_clock):
    a, b = Gauge(), Gauge()
    steps = [*calls(a, 4, limit="a")]
    for i in range(4):
        async def call_b(i: int = i) -> int:
            await b.hold(1)
            return i

        steps.append(step(call_b, name=f"b_{i}", limit="b"))
    flow_run(graph(*steps), limits={"a": 2, "b": 4})
    assert (a.peak, b.peak) == (2, 4)
    assert flow_clock.current_time() == 2.0


def test_map_items_count_against_a_named_limit(flow_run, flow_clock):
    gauge = Gauge()

    @step
    async def urls() -> list[str]:
        return [f"u{i}" for i in range(10)]

    @step(limit="api")
    async def fetch(url: Annotated[str, each(urls)]) -> str:
        await gauge.hold(1)
        return url.upper()

    result = flow_run(graph(fetch), limits={"api": 2})
    assert gauge.peak == 2
    assert flow_clock.current_time() == 5.0
    assert result.output == [f"U{i}" for i in range(10)]


def test_max_concurrency_counts_running_steps(flow_run, flow_clock):
    gauge = Gauge()
    group = calls(gauge, 7)
    flow_run(graph(*group), max_concurrency=3)
    assert gauge.peak == 3
    assert flow_clock.current_time() == 3.0


def test_max_concurrency_counts_map_items(flow_run, flow_clock):
    gauge = Gauge()

    @step
    async def numbers() -> list[int]:
        return list(range(6))

    @step
    async def work(n: Annotated[int, each(numbers)]) -> int:
        await gauge.hold(1)
        return n * 2

    @step
    async def side() -> None:
        await gauge.hold(1)

    result = flow_run(graph(work, side), max_concurrency=2)
    assert gauge.peak == 2
    # 6 items + 1 step, 1 s each, 2 at a time; `numbers` takes a slot for no time
    assert flow_clock.current_time() == 4.0
    assert result["work"] == [0, 2, 4, 6, 8, 10]


def test_max_concurrency_one_with_a_map_does_not_deadlock(flow_run, flow_clock):
    gauge = Gauge()

    @step
    async def numbers() -> list[int]:
        return list(range(5))

    @step
    async def work(n: Annotated[int, each(numbers)]) -> int:
        await gauge.hold(1)
        return n

    result = flow_run(graph(work), max_concurrency=1, timeout=1000)
    assert result.output == [0, 1, 2, 3, 4]
    assert gauge.peak == 1
    assert flow_clock.current_time() == 5.0
    span = result.spans["work"]
    assert (span.started, span.ended) == (0.0, 5.0)


def test_max_concurrency_one_with_a_map_over_a_map_does_not_deadlock(flow_run, flow_clock):
    @step
    async def numbers() -> list[int]:
        return list(range(3))

    @step
    async def first(n: Annotated[int, each(numbers)]) -> int:
        await trio.sleep(1)
        return n

    @step
    async def second(n: Annotated[int, each(first)]) -> int:
        await trio.sleep(1)
        return n * 10

    result = flow_run(graph(second), max_concurrency=1, timeout=1000)
    assert result.output == [0, 10, 20]
    assert flow_clock.current_time() == 6.0


def test_max_concurrency_one_with_a_race_does_not_deadlock(flow_run, flow_clock):
    @step
    async def fast() -> str:
        await trio.sleep(1)
        return "fast"

    @step
    async def slow() -> str:
        await trio.sleep(2)
        return "slow"

    result = flow_run(graph(race(fast, slow, name="data")), max_concurrency=1, timeout=1000)
    # one slot: the contestants run one at a time, whichever got the slot first wins
    winner = result.output
    assert result.spans["data"].winner == winner
    assert flow_clock.current_time() == {"fast": 1.0, "slow": 2.0}[winner]
    loser = result.spans["slow" if winner == "fast" else "fast"]
    assert loser.status == "cancelled"


def test_max_concurrency_one_with_a_subflow_does_not_deadlock(flow_run, flow_clock):
    @step
    async def inner_a() -> int:
        await trio.sleep(1)
        return 1

    @step
    async def inner_b(a: Annotated[int, inner_a]) -> int:
        await trio.sleep(1)
        return a + 1

    branch = subflow(graph(inner_b), name="branch")

    @step
    async def outer(x: Annotated[int, branch]) -> int:
        return x * 10

    result = flow_run(graph(outer), max_concurrency=1, timeout=1000)
    assert result.output == 20
    assert flow_clock.current_time() == 2.0


def test_a_limited_race_does_not_deadlock_its_limited_contestants(flow_run, flow_clock):
    """A race is a container: it holds no slot, even when given ``limit=``; otherwise
    its contestants (same limit) could never start."""

    @step(limit="api")
    async def fast() -> str:
        await trio.sleep(1)
        return "fast"

    @step(limit="api")
    async def slow() -> str:
        await trio.sleep(2)
        return "slow"

    data = race(fast, slow, name="data", limit="api")
    result = flow_run(graph(data), limits={"api": 1}, timeout=1000)
    # One slot: whichever contestant trio schedules first takes it and wins, the other
    # is cancelled while it waits for the slot (trio does not promise a start order).
    assert result.output in ("fast", "slow")
    assert flow_clock.current_time() == {"fast": 1.0, "slow": 2.0}[result.output]


def test_a_limited_subflow_does_not_deadlock_its_limited_steps(flow_run, flow_clock):
    @step(limit="api")
    async def inner() -> int:
        await trio.sleep(1)
        return 1

    branch = subflow(graph(inner), name="branch", limit="api")
    result = flow_run(graph(branch), limits={"api": 1}, timeout=1000)
    assert result.output == 1
    assert flow_clock.current_time() == 1.0


def test_limit_and_max_concurrency_together(flow_run, flow_clock):
    limited = Gauge()
    steps = calls(limited, 6, limit="api")
    flow_run(graph(*steps), limits={"api": 3}, max_concurrency=2)
    assert limited.peak == 2
    assert flow_clock.current_time() == 3.0


def test_a_step_waiting_for_its_slot_has_not_started(flow_run):
    @step(limit="api")
    async def first() -> None:
        await trio.sleep(3)

    @step(limit="api", timeout=2)
    async def second() -> None:
        await trio.sleep(1)

    result = flow_run(graph(first, second), limits={"api": 1})
    spans = result.spans
    # whichever ran first, the other's start (and its timeout's deadline) came later
    a, b = sorted([spans["first"], spans["second"]], key=lambda s: s.started)
    assert a.started == 0.0
    assert b.started == a.ended
    assert spans["second"].status == "succeeded"
    assert spans["second"].duration == 1.0


def test_retry_backoff_does_not_hold_the_slot(flow_run):
    attempts: list[float] = []

    @step(limit="api", retries=1, backoff=Backoff(initial=5, jitter=0))
    async def flaky() -> str:
        attempts.append(trio.current_time())
        await trio.sleep(1)
        if len(attempts) == 1:
            raise ConnectionError("once")
        return "ok"

    @step(limit="api")
    async def other(x: Annotated[None, "starter"]) -> str:
        await trio.sleep(1)
        return "other"

    @step
    async def starter() -> None:
        await trio.sleep(0.5)

    result = flow_run(graph(flaky, other, starter), limits={"api": 1})
    assert attempts == [0.0, 6.0]
    # `other` wanted the slot at 0.5 and got it when flaky's first attempt ended
    assert (result.spans["other"].started, result.spans["other"].ended) == (1.0, 2.0)
    assert result.spans["flaky"].ended == 7.0


def test_skipped_step_takes_no_slot(flow_run, flow_clock):
    gauge = Gauge()

    @step(limit="api", when=lambda: False)
    async def skipped() -> None:
        await gauge.hold(100)

    group = calls(gauge, 2, limit="api")
    result = flow_run(graph(skipped, *group), limits={"api": 1})
    assert result.spans["skipped"].status == "skipped"
    assert flow_clock.current_time() == 2.0


def test_thread_steps_respect_the_limit(flow_run):
    import threading

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def make(i: int):
        def work() -> int:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            import time

            time.sleep(0.005)
            with lock:
                state["now"] -= 1
            return i

        return step(work, name=f"work_{i}", limit="cpu")

    steps = [make(i) for i in range(6)]
    result = flow_run(graph(*steps), limits={"cpu": 2})
    assert state["peak"] <= 2
    assert result.output == {f"work_{i}": i for i in range(6)}


def test_unknown_limit_name_is_an_error_naming_the_step(flow_run):
    ran: list[str] = []

    @step(limit="apii")
    async def fetch_users() -> list[str]:
        ran.append("fetch_users")
        return []

    with pytest.raises(GraphError) as info:
        flow_run(graph(fetch_users), limits={"api": 5})
    text = str(info.value)
    assert "'fetch_users'" in text
    assert "'apii'" in text
    assert "Did you mean 'api'?" in text
    assert fetch_users.location in text
    assert ran == []


def test_limit_without_any_limits_given_is_an_error(flow_run):
    @step(limit="api")
    async def fetch_users() -> list[str]:
        return []

    with pytest.raises(GraphError, match="fetch_users"):
        flow_run(graph(fetch_users))


def test_unknown_limit_inside_a_subflow_names_the_path(flow_run):
    @step(limit="db")
    async def load() -> int:
        return 1

    branch = subflow(graph(load), name="branch")
    with pytest.raises(GraphError, match="'branch/load'"):
        flow_run(graph(branch), limits={"api": 1})


@pytest.mark.parametrize("cap", [0, -1, 1.5])
def test_limit_capacity_must_be_a_positive_integer(flow_run, cap):
    @step(limit="api")
    async def fetch_users() -> list[str]:
        return []

    with pytest.raises(GraphError, match="whole number"):
        flow_run(graph(fetch_users), limits={"api": cap})


def test_max_concurrency_must_be_positive(flow_run):
    @step
    async def a() -> int:
        return 1

    with pytest.raises(ValueError, match="max_concurrency"):
        flow_run(graph(a), max_concurrency=0)
