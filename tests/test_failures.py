"""Partial failures (``Outcome[T]``), retries with backoff, and per-step timeouts.

DESIGN §3 rows *partial failure*, *per-step timeout* and *retries*; §8 message 7.
All timing is virtual (``flow_run`` + ``flow_clock``) except the one test that needs a
real worker thread to outlive its timeout, which uses a 50 ms real deadline.
"""

import itertools
import threading
from typing import Annotated, Any

import pytest
import trio
import trio.testing

from flowfn import (
    Attempt,
    Backoff,
    Error,
    Event,
    GraphError,
    Outcome,
    RunFailed,
    StepTimeout,
    Value,
    graph,
    run,
    step,
)

EXACT = Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0)


class Flaky:
    """Fails the first ``failures`` calls with ``exc``, then returns ``value``."""

    def __init__(self, failures: int, exc: type[BaseException] = ConnectionError,
                 value: Any = "ok") -> None:
        self.failures = failures
        self.exc = exc
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return self.value


# --- Outcome[T] -----------------------------------------------------------------------------


def test_outcome_parameter_receives_value_on_success(flow_run):
    @step
    async def fetch() -> int:
        return 41

    @step
    async def consume(r: Annotated[Outcome[int], fetch]) -> Any:
        return r

    result = flow_run(graph(consume))
    assert isinstance(result.output, Value)
    assert result.output.unwrap() == 41
    assert result.failures == {}


def test_outcome_parameter_receives_error_and_the_run_succeeds(flow_run):
    boom = ValueError("boom")

    @step
    async def fetch() -> int:
        await trio.sleep(1)
        raise boom

    @step
    async def consume(r: Annotated[Outcome[int], fetch]) -> str:
        assert isinstance(r, Error)
        return f"handled {r.error!r}"

    result = flow_run(graph(consume))
    assert result.status == "succeeded"
    assert result.output == "handled ValueError('boom')"
    assert result.failures == {"fetch": boom}
    span = result.spans["fetch"]
    assert span.status == "failed"
    assert span.error is boom
    assert (span.started, span.ended) == (0.0, 1.0)
    assert result.spans["consume"].started == 1.0


def test_outcome_parameter_by_name_in_a_thread_step(flow_run):
    @step
    def fetch() -> int:
        raise KeyError("k")

    @step
    def consume(fetch: Outcome[int]) -> str:
        return "error" if isinstance(fetch, Error) else "value"

    result = flow_run(graph(consume, fetch))
    assert result["consume"] == "error"
    assert result.spans["fetch"].status == "failed"
    assert isinstance(result.failures["fetch"], KeyError)


def test_consumed_failure_still_skips_a_plain_consumer(flow_run):
    """A failure that *some* Outcome parameter consumes does not fail the run; a plain
    parameter on the same upstream cannot get a value, so that step is skipped."""

    @step
    async def fetch() -> int:
        raise ValueError("boom")

    @step
    async def tolerant(r: Annotated[Outcome[int], fetch]) -> bool:
        return isinstance(r, Error)

    @step
    async def strict(x: Annotated[int, fetch]) -> int:
        return x

    result = flow_run(graph(tolerant, strict))
    assert result.status == "succeeded"
    assert result["tolerant"] is True
    span = result.spans["strict"]
    assert span.status == "skipped"
    assert "'fetch'" in (span.reason or "") and "failed" in (span.reason or "")
    assert list(result.failures) == ["fetch"]


def test_unconsumed_failure_fails_the_run(flow_run):
    @step
    async def fetch() -> int:
        raise ValueError("boom")

    @step
    async def strict(x: Annotated[int, fetch]) -> int:
        return x

    result = flow_run(graph(strict), expect_failure=True)
    assert result.status == "failed"
    assert isinstance(result.error.__cause__, ValueError)
    assert result.spans["strict"].status == "cancelled"
    assert result.spans["strict"].reason is not None


def test_outcome_inner_type_is_checked_at_graph_time():
    @step
    async def fetch() -> int:
        return 1

    @step
    async def consume(r: Annotated[Outcome[str], fetch]) -> None:
        return None

    with pytest.raises(GraphError, match="expects str, but step 'fetch' returns int"):
        graph(consume)


def test_partial_failures_three_api_fetches(flow_run):
    """litestar seed: three fetches in parallel, one fails; the collector sees both."""

    @step
    async def fetch_api1() -> dict[str, int]:
        await trio.sleep(1)
        return {"users": 3}

    @step
    async def fetch_api2() -> dict[str, int]:
        await trio.sleep(2)
        raise ConnectionError("api2 is down")

    @step
    async def fetch_api3() -> dict[str, int]:
        await trio.sleep(3)
        return {"orders": 5}

    @step
    async def handle_results(
        api1: Annotated[Outcome[dict[str, int]], fetch_api1],
        api2: Annotated[Outcome[dict[str, int]], fetch_api2],
        api3: Annotated[Outcome[dict[str, int]], fetch_api3],
    ) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for source, r in (("api1", api1), ("api2", api2), ("api3", api3)):
            if isinstance(r, Value):
                results[source] = r.value
            else:
                errors[source] = str(r.error)
        if not results:
            raise ValueError("All data fetches failed")
        return {"results": results, "errors": errors, "partial_success": True}

    result = flow_run(graph(handle_results))
    assert result.output == {
        "results": {"api1": {"users": 3}, "api3": {"orders": 5}},
        "errors": {"api2": "api2 is down"},
        "partial_success": True,
    }
    spans = result.spans
    assert spans["fetch_api2"].status == "failed"
    assert [(spans[n].started, spans[n].ended) for n in ("fetch_api1", "fetch_api2",
                                                         "fetch_api3")] == [
        (0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]
    assert spans["handle_results"].started == 3.0
    assert list(result.failures) == ["fetch_api2"]


# --- retries --------------------------------------------------------------------------------


def test_retry_attempts_happen_at_exact_virtual_times(flow_run, flow_clock):
    flaky = Flaky(2)

    @step(retries=3, backoff=EXACT, retry_on=(ConnectionError,))
    async def fetch() -> str:
        await trio.sleep(1)
        return flaky()

    events: list[Event] = []
    result = flow_run(graph(fetch), on_event=events.append)
    assert result.output == "ok"
    span = result.spans["fetch"]
    assert span.attempts == 3
    # attempt 1: 0-1, wait 0.5; attempt 2: 1.5-2.5, wait 1.0; attempt 3: 3.5-4.5
    log = span.attempt_log
    assert [(a.number, a.started, a.ended) for a in log] == [
        (1, 0.0, 1.0), (2, 1.5, 2.5), (3, 3.5, 4.5)]
    assert [type(a.error) for a in log] == [ConnectionError, ConnectionError, type(None)]
    assert all(isinstance(a, Attempt) for a in log)
    assert (span.started, span.ended) == (0.0, 4.5)
    assert span.status == "succeeded" and span.error is None
    assert [(e.kind, e.time) for e in events] == [
        ("started", 0.0), ("retrying", 1.0), ("retrying", 2.5), ("finished", 4.5)]
    assert flow_clock.current_time() == 4.5


def test_retrying_event_carries_the_error(flow_run):
    flaky = Flaky(1)

    @step(retries=1, backoff=EXACT)
    async def fetch() -> str:
        return flaky()

    errors: list[Any] = []

    def on_event(e: Event) -> None:
        if e.kind == "retrying":
            errors.append(e.span.error)

    flow_run(graph(fetch), on_event=on_event)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError)


@pytest.mark.parametrize("executor", ["async", "thread", "inline"])
def test_retries_work_for_every_executor(flow_run, executor):
    flaky = Flaky(2)
    if executor == "async":
        async def fn() -> str:
            return flaky()
    else:
        def fn() -> str:
            return flaky()
    fetch = step(fn, name="fetch", retries=2, backoff=EXACT, executor=executor)

    result = flow_run(graph(fetch))
    assert result.output == "ok"
    assert flaky.calls == 3
    log = result.spans["fetch"].attempt_log
    assert [(a.number, a.started, a.ended) for a in log] == [
        (1, 0.0, 0.0), (2, 0.5, 0.5), (3, 1.5, 1.5)]


def test_non_matching_exception_is_not_retried(flow_run):
    flaky = Flaky(5, exc=ValueError)

    @step(retries=3, backoff=EXACT, retry_on=(ConnectionError,))
    async def fetch() -> str:
        return flaky()

    result = flow_run(graph(fetch), expect_failure=True)
    assert flaky.calls == 1
    span = result.spans["fetch"]
    assert span.attempts == 1
    assert len(span.attempt_log) == 1
    assert isinstance(span.error, ValueError)
    assert result.error.attempt == 1


def test_retry_on_matches_subclasses(flow_run):
    flaky = Flaky(1, exc=ConnectionRefusedError)

    @step(retries=1, backoff=0, retry_on=(OSError,))
    async def fetch() -> str:
        return flaky()

    assert flow_run(graph(fetch)).output == "ok"
    assert flaky.calls == 2


def test_exhausted_retries_fail_the_run_with_the_attempt_in_the_message(flow_run):
    class PaymentDeclined(Exception):
        pass

    @step(retries=2, backoff=EXACT)
    async def charge_card() -> None:
        raise PaymentDeclined("card declined")

    @step
    async def audit_log() -> None:
        await trio.sleep(100)

    @step
    async def ship(x: Annotated[None, charge_card]) -> None:
        return None

    result = flow_run(graph(ship, audit_log), expect_failure=True)
    err = result.error
    assert isinstance(err, RunFailed)
    assert str(err) == (
        f"step 'charge_card' failed on attempt 3 of 3 ({charge_card.location}):\n"
        "  PaymentDeclined: card declined\n"
        "  cancelled while running: audit_log; never started: ship"
    )
    assert isinstance(err.__cause__, PaymentDeclined)
    assert (err.step, err.attempt, err.attempts) == ("charge_card", 3, 3)
    span = result.spans["charge_card"]
    assert [(a.started, a.ended) for a in span.attempt_log] == [
        (0.0, 0.0), (0.5, 0.5), (1.5, 1.5)]
    assert result.spans["audit_log"].ended == 1.5


def test_backoff_is_exponential_and_capped():
    b = Backoff(initial=1, factor=3, maximum=5, jitter=0)
    assert [b(n) for n in (1, 2, 3, 4)] == [1, 3, 5, 5]


def test_backoff_jitter_stays_within_bounds():
    b = Backoff(initial=2, factor=2, maximum=100, jitter=0.25)
    delays = [b(2) for _ in range(200)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 1


def test_jittered_backoff_is_what_the_attempts_waited(flow_run):
    flaky = Flaky(3)

    @step(retries=3, backoff=Backoff(initial=1, factor=2, jitter=0.5))
    async def fetch() -> str:
        return flaky()

    log = flow_run(graph(fetch)).spans["fetch"].attempt_log
    waits = [b.started - a.ended for a, b in itertools.pairwise(log)]
    for n, w in enumerate(waits, start=1):
        base = 2 ** (n - 1)
        assert 0.5 * base <= w <= 1.5 * base


@pytest.mark.parametrize(("backoff", "expected"), [
    (2.0, [0.0, 2.0, 4.0]),
    (lambda attempt: attempt * 10, [0.0, 10.0, 30.0]),
])
def test_backoff_as_a_number_or_a_callable(flow_run, backoff, expected):
    flaky = Flaky(2)

    @step(retries=2, backoff=backoff)
    async def fetch() -> str:
        return flaky()

    log = flow_run(graph(fetch)).spans["fetch"].attempt_log
    assert [a.started for a in log] == expected


def test_single_attempt_success_has_an_attempt_log(flow_run):
    @step
    async def fetch() -> int:
        await trio.sleep(2)
        return 1

    span = flow_run(graph(fetch)).spans["fetch"]
    assert span.attempts == 1
    assert span.attempt_log == [Attempt(1, 0.0, 2.0, None)]


def test_retries_must_not_be_negative():
    with pytest.raises(ValueError, match="retries"):
        @step(retries=-1)
        async def fetch() -> None:
            return None


# --- per-step timeouts ----------------------------------------------------------------------


def test_step_timeout_fails_with_step_timeout(flow_run):
    cleaned: list[float] = []

    @step(timeout=2)
    async def slow() -> int:
        try:
            await trio.sleep(10)
        finally:
            cleaned.append(trio.current_time())
        return 1

    result = flow_run(graph(slow), expect_failure=True)
    span = result.spans["slow"]
    assert span.status == "failed"
    assert isinstance(span.error, StepTimeout)
    assert isinstance(span.error, TimeoutError)
    assert (span.started, span.ended) == (0.0, 2.0)
    assert cleaned == [2.0]
    assert isinstance(result.error.__cause__, StepTimeout)
    assert "timed out after 2s" in str(result.error)


def test_step_timeout_deadline_starts_when_the_step_starts(flow_run):
    @step
    async def first() -> int:
        await trio.sleep(5)
        return 1

    @step(timeout=2, on_timeout=-1)
    async def second(x: Annotated[int, first]) -> int:
        await trio.sleep(1.5)
        return x + 1

    result = flow_run(graph(second))
    assert result.output == 2
    assert (result.spans["second"].started, result.spans["second"].ended) == (5.0, 6.5)


def test_on_timeout_returns_the_value(flow_run):
    @step(timeout=3, on_timeout={"data": None})
    async def slow() -> dict[str, Any]:
        await trio.sleep(10)
        return {"data": 1}

    @step
    async def after(x: Annotated[dict[str, Any], slow]) -> str:
        return repr(x)

    result = flow_run(graph(after))
    assert result.output == "{'data': None}"
    span = result.spans["slow"]
    assert span.status == "succeeded"
    assert span.output == {"data": None}
    assert (span.started, span.ended) == (0.0, 3.0)
    assert span.reason is not None and "timed out" in span.reason
    assert result.failures == {}


def test_on_timeout_none_is_a_value(flow_run):
    @step(timeout=1, on_timeout=None)
    async def slow() -> int | None:
        await trio.sleep(10)
        return 1

    result = flow_run(graph(slow))
    assert result.spans["slow"].status == "succeeded"
    assert result.output is None


def test_timeout_applies_per_attempt(flow_run):
    durations = iter([10, 10, 0.25])

    @step(timeout=1, retries=2, backoff=EXACT)
    async def slow() -> str:
        await trio.sleep(next(durations))
        return "finally"

    result = flow_run(graph(slow))
    assert result.output == "finally"
    log = result.spans["slow"].attempt_log
    assert [(a.number, a.started, a.ended) for a in log] == [
        (1, 0.0, 1.0), (2, 1.5, 2.5), (3, 3.5, 3.75)]
    assert [type(a.error) for a in log] == [StepTimeout, StepTimeout, type(None)]
    assert "attempt 2" in str(log[1].error)


def test_timeout_not_in_retry_on_is_not_retried(flow_run):
    calls: list[int] = []

    @step(timeout=1, retries=2, backoff=EXACT, retry_on=(ConnectionError,))
    async def slow() -> str:
        calls.append(1)
        await trio.sleep(10)
        return "never"

    result = flow_run(graph(slow), expect_failure=True)
    assert calls == [1]
    assert isinstance(result.spans["slow"].error, StepTimeout)


def test_timed_out_failure_can_be_consumed_as_an_outcome(flow_run):
    @step(timeout=1)
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    @step
    async def consume(r: Annotated[Outcome[int], slow]) -> str:
        return type(r.error).__name__ if isinstance(r, Error) else "value"

    result = flow_run(graph(consume))
    assert result.output == "StepTimeout"
    assert isinstance(result.failures["slow"], StepTimeout)


def test_sibling_failure_cancels_a_step_without_a_false_timeout(flow_run):
    @step(timeout=5)
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    @step
    async def boom() -> int:
        await trio.sleep(1)
        raise ValueError("boom")

    result = flow_run(graph(slow, boom), expect_failure=True)
    span = result.spans["slow"]
    assert span.status == "cancelled"
    assert not isinstance(span.error, StepTimeout)
    assert span.reason == "cancelled because step 'boom' failed"
    assert span.ended == 1.0
    assert list(result.failures) == ["boom"]
    assert isinstance(result.error.__cause__, ValueError)


def test_run_deadline_cancels_a_step_without_a_false_timeout(flow_run):
    @step(timeout=5, retries=3)
    async def slow() -> int:
        await trio.sleep(10)
        return 1

    result = flow_run(graph(slow), timeout=2, expect_failure=True)
    span = result.spans["slow"]
    assert span.status == "cancelled"
    assert span.attempts == 1
    assert span.ended == 2.0
    assert result.failures == {}
    cause = result.error.__cause__
    assert isinstance(cause, TimeoutError) and not isinstance(cause, StepTimeout)


def test_race_loser_with_a_timeout_is_cancelled_not_timed_out(flow_run):
    from flowfn import race

    @step
    async def fast() -> int:
        await trio.sleep(1)
        return 1

    @step(timeout=5)
    async def slow() -> int:
        await trio.sleep(10)
        return 2

    result = flow_run(graph(race(fast, slow, name="data")))
    assert result.output == 1
    assert result.spans["slow"].status == "cancelled"
    assert result.failures == {}


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout"):
        @step(timeout=0)
        async def fetch() -> None:
            return None


def test_thread_step_that_times_out_is_abandoned():
    """A Python thread cannot be interrupted: the step fails at its deadline and the span
    says the thread was abandoned. Real clock: the deadline is 50 ms, the thread is
    released by the test afterwards (no long sleep)."""
    release = threading.Event()
    finished = threading.Event()

    @step(timeout=0.05)
    def blocking() -> int:
        release.wait(10)
        finished.set()
        return 1

    try:
        with pytest.raises(RunFailed) as info:
            run(graph(blocking))
        span = info.value.result.spans["blocking"]
        assert span.status == "failed"
        assert isinstance(span.error, StepTimeout)
        assert span.abandoned is True
        assert "abandoned" in str(span.error)
        assert not finished.is_set()  # the step returned while the thread still ran
    finally:
        release.set()
    assert finished.wait(5)


def test_thread_step_on_timeout_is_abandoned_and_returns_the_value():
    release = threading.Event()

    @step(timeout=0.05, on_timeout="fallback")
    def blocking() -> str:
        release.wait(10)
        return "real"

    try:
        result = run(graph(blocking))
    finally:
        release.set()
    span = result.spans["blocking"]
    assert result.output == "fallback"
    assert span.abandoned is True
    assert "abandoned" in (span.reason or "")


def test_thread_step_that_finishes_in_time_is_not_abandoned(flow_run):
    @step(timeout=5)
    def quick() -> int:
        return 1

    result = flow_run(graph(quick))
    assert result.output == 1
    assert result.spans["quick"].abandoned is False


def test_async_step_timeout_is_not_abandoned(flow_run):
    @step(timeout=1, on_timeout=0)
    async def slow() -> int:
        await trio.sleep(5)
        return 1

    assert flow_run(graph(slow)).spans["slow"].abandoned is False


def test_thread_step_timeout_in_virtual_time_does_not_fire_falsely(flow_run):
    """Autojump is paused while a thread works: a 1 s virtual deadline cannot fire during
    a few milliseconds of real thread work."""
    import time

    @step(timeout=1)
    def work() -> int:
        time.sleep(0.02)
        return 1

    result = flow_run(graph(work))
    assert result.output == 1
    assert result.spans["work"].status == "succeeded"


def test_timeout_uses_a_mock_clock_through_run():
    clock = trio.testing.MockClock(autojump_threshold=0)

    @step(timeout=30, on_timeout="late")
    async def slow() -> str:
        await trio.sleep(3600)
        return "done"

    assert run(graph(slow), clock=clock).output == "late"
    assert clock.current_time() == 30.0


def test_cancel_during_backoff_stops_the_retries(flow_run):
    calls: list[float] = []

    @step(retries=3, backoff=Backoff(initial=5, jitter=0))
    async def flaky() -> int:
        calls.append(trio.current_time())
        raise ConnectionError("down")

    @step
    async def boom() -> int:
        await trio.sleep(1)
        raise ValueError("boom")

    result = flow_run(graph(flaky, boom), expect_failure=True)
    assert calls == [0.0]
    span = result.spans["flaky"]
    assert span.status == "cancelled"
    assert span.reason == "cancelled because step 'boom' failed"
    assert span.ended == 1.0
    assert len(span.attempt_log) == 1
    assert list(result.failures) == ["boom"]
