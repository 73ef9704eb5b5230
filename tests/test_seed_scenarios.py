"""The litestar-workflows seed scenarios ("Parallel Execution" guide), flowfn's way.

Each litestar construct becomes plain functions wired by their signatures:
``ParallelGroup(..., callback=...)`` is a join step whose parameters name the branches,
``RaceGroup`` is ``race()``, ``ResilientFetch`` is an ``Outcome[T]`` parameter,
``ThrottledGroup`` is ``@step(limit=...)``, ``TimedFetch`` is ``@step(timeout=...)``.
The notification flow is written at module level, Hamilton style (parameters named after
steps); the other scenarios are local to their tests. Everything runs in virtual time.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
import trio

from flowfn import (
    Error,
    Outcome,
    Value,
    ask,
    current_span,
    graph,
    race,
    step,
    step_span,
)

# --- parallel notifications (fork / join) ------------------------------------------------


@step
async def process_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "order_status": "completed"}


@step
async def send_email(process_order: dict[str, str]) -> bool:
    await trio.sleep(0.1)  # simulate the API call
    current_span().email_timestamp = trio.current_time()
    return True


@step
async def send_slack(process_order: dict[str, str]) -> bool:
    await trio.sleep(0.1)
    current_span().slack_timestamp = trio.current_time()
    return True


@step
async def send_webhook(process_order: dict[str, str]) -> bool:
    await trio.sleep(0.1)
    current_span().webhook_timestamp = trio.current_time()
    return True


@step
def log_notifications(send_email: bool, send_slack: bool,
                      send_webhook: bool) -> dict[str, Any]:
    sent = [name for name, ok in (("email", send_email), ("slack", send_slack),
                                  ("webhook", send_webhook)) if ok]
    return {"notifications_sent": sent, "notification_count": len(sent)}


def test_parallel_notifications_fork_and_join(flow_run, flow_clock):
    flow = graph(log_notifications)
    assert {s.name for s in flow.steps} == {
        "process_order", "send_email", "send_slack", "send_webhook", "log_notifications"}
    result = flow_run(flow, {"order_id": "ORD-123"})
    assert result.output == {"notifications_sent": ["email", "slack", "webhook"],
                             "notification_count": 3}
    spans = result.spans
    branches = [spans[n] for n in ("send_email", "send_slack", "send_webhook")]
    # fork: all three start when process_order ends, and overlap completely
    assert [(s.started, s.ended) for s in branches] == [(0.0, 0.1)] * 3
    assert max(s.started for s in branches) < min(s.ended for s in branches)
    # join: the callback runs once, after all three
    assert spans["log_notifications"].status == "succeeded"
    assert spans["log_notifications"].started == 0.1
    assert flow_clock.current_time() == pytest.approx(0.1)
    assert spans["send_email"].attributes == {"email_timestamp": 0.1}
    assert result[process_order] == {"order_id": "ORD-123", "order_status": "completed"}


def test_parallel_notifications_without_data_edges(flow_run):
    """litestar's Edge("process", "send_email") ... as ``after=``: order, no data."""
    sent: list[tuple[str, float]] = []

    @step
    async def process() -> None:
        await trio.sleep(1)

    def notifier(channel: str):
        async def fn() -> None:
            await trio.sleep(0.5)
            sent.append((channel, trio.current_time()))

        return step(fn, name=f"notify_{channel}", after=[process])

    email, slack, sms = notifier("email"), notifier("slack"), notifier("sms")

    @step(after=[email, slack, sms])
    async def complete() -> list[str]:
        return sorted(c for c, _ in sent)

    result = flow_run(graph(complete))
    assert result.output == ["email", "slack", "sms"]
    assert sorted(sent) == [("email", 1.5), ("slack", 1.5), ("sms", 1.5)]
    assert result.spans["complete"].started == 1.5


# --- chord: parallel fetches with an aggregating callback ------------------------------------


def test_chord_aggregation_of_three_api_fetches(flow_run, flow_clock):
    @step
    async def fetch_api1() -> dict[str, int]:
        await trio.sleep(1)
        return {"a": 1}

    @step
    async def fetch_api2() -> dict[str, int]:
        await trio.sleep(2)
        return {"b": 2}

    @step
    async def fetch_api3() -> dict[str, int]:
        await trio.sleep(3)
        return {"c": 3}

    @step
    async def aggregate(
        api1: Annotated[dict[str, int], fetch_api1],
        api2: Annotated[dict[str, int], fetch_api2],
        api3: Annotated[dict[str, int], fetch_api3],
    ) -> dict[str, Any]:
        return {"combined_data": {"api1": api1, "api2": api2, "api3": api3}}

    result = flow_run(graph(aggregate))
    assert result.output == {"combined_data": {"api1": {"a": 1}, "api2": {"b": 2},
                                               "api3": {"c": 3}}}
    spans = result.spans
    assert [(spans[f"fetch_api{i}"].started, spans[f"fetch_api{i}"].ended)
            for i in (1, 2, 3)] == [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]
    assert (spans["aggregate"].started, spans["aggregate"].ended) == (3.0, 3.0)
    assert flow_clock.current_time() == 3.0  # the slowest fetch, not the sum


# --- race: fast vs reliable source --------------------------------------------------------------


@pytest.mark.parametrize(("fast_time", "fast_fails", "winner", "makespan"), [
    (0.2, False, "fast_source", 0.2),
    (0.2, True, "reliable_source", 2.0),
    (5.0, False, "reliable_source", 2.0),
])
def test_race_fast_vs_reliable(flow_run, flow_clock, fast_time, fast_fails, winner, makespan):
    @step
    async def fast_source() -> dict[str, str]:
        await trio.sleep(fast_time)
        if fast_fails:
            raise ConnectionError("fast api flaked")
        return {"data": "d1", "source": "fast"}

    @step
    async def reliable_source() -> dict[str, str]:
        await trio.sleep(2.0)
        return {"data": "d1", "source": "reliable"}

    data = race(fast_source, reliable_source, name="data")

    @step
    async def use(d: Annotated[dict[str, str], data]) -> str:
        return d["source"]

    result = flow_run(graph(use))
    assert result.output == winner.split("_")[0]
    assert result.spans["data"].winner == winner
    loser = "reliable_source" if winner == "fast_source" else "fast_source"
    assert result.spans[loser].status == ("failed" if fast_fails else "cancelled")
    assert result.spans["use"].started == makespan
    assert flow_clock.current_time() == makespan


# --- partial failures collected ---------------------------------------------------------------


def _resilient_fetches(failing: set[int]):
    def fetcher(i: int):
        async def fn() -> dict[str, int]:
            await trio.sleep(i)
            if i in failing:
                raise ConnectionError(f"api{i} unreachable")
            return {f"api{i}": i}

        return step(fn, name=f"fetch_api{i}")

    f1, f2, f3 = fetcher(1), fetcher(2), fetcher(3)

    @step
    async def handle_results(
        api1: Annotated[Outcome[dict[str, int]], f1],
        api2: Annotated[Outcome[dict[str, int]], f2],
        api3: Annotated[Outcome[dict[str, int]], f3],
    ) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for source, r in (("api1", api1), ("api2", api2), ("api3", api3)):
            if isinstance(r, Value):
                results[source] = r.value
            else:
                assert isinstance(r, Error)
                errors[source] = str(r.error)
        if not results:
            raise ValueError("All data fetches failed")
        return {"results": results, "errors": errors, "partial_success": bool(results)}

    return graph(handle_results)


def test_partial_failures_are_collected(flow_run):
    result = flow_run(_resilient_fetches({2}))
    assert result.status == "succeeded"
    assert result.output == {
        "results": {"api1": {"api1": 1}, "api3": {"api3": 3}},
        "errors": {"api2": "api2 unreachable"},
        "partial_success": True,
    }
    assert result.spans["fetch_api2"].status == "failed"
    assert list(result.failures) == ["fetch_api2"]
    assert result.spans["handle_results"].started == 3.0


def test_partial_failures_when_everything_fails(flow_run):
    result = flow_run(_resilient_fetches({1, 2, 3}), expect_failure=True)
    assert isinstance(result.error.__cause__, ValueError)
    assert "All data fetches failed" in str(result.error)
    assert set(result.failures) == {"fetch_api1", "fetch_api2", "fetch_api3",
                                    "handle_results"}


# --- throttled group --------------------------------------------------------------------------


def test_throttled_group_of_ten_calls_at_most_five_at_once(flow_run, flow_clock):
    state = {"now": 0, "peak": 0}

    def call(i: int):
        async def fn() -> int:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await trio.sleep(0.1)
            state["now"] -= 1
            return i

        return step(fn, name=f"call_{i}", limit="external_api")

    group = [call(i) for i in range(10)]

    result = flow_run(graph(*group), limits={"external_api": 5})
    assert state["peak"] == 5
    assert result.output == {f"call_{i}": i for i in range(10)}
    starts = sorted(result.spans[f"call_{i}"].started for i in range(10))
    assert starts == [0.0] * 5 + [pytest.approx(0.1)] * 5
    assert flow_clock.current_time() == pytest.approx(0.2)


# --- timeout handling (TimedFetch) ----------------------------------------------------------


def test_timed_fetch_returns_none_after_its_timeout(flow_run):
    @step(timeout=30, on_timeout=None)
    async def timed_fetch() -> dict[str, int] | None:
        await trio.sleep(3600)
        return {"data": 1}

    @step
    async def report(data: Annotated[dict[str, int] | None, timed_fetch]) -> str:
        timed_out = step_span("timed_fetch").reason is not None
        return f"data={data} timed_out={timed_out}"

    result = flow_run(graph(report))
    assert result.output == "data=None timed_out=True"
    assert result.spans["timed_fetch"].ended == 30.0


# --- not in scope -------------------------------------------------------------------------------


@dataclass
class Approval:
    approved: bool
    comments: str = ""


@dataclass
class SecurityReview:
    approved: bool
    risk_level: Literal["low", "medium", "high"]


legal_approval = ask("legal_approval", Approval, title="Legal Review Required")
finance_approval = ask("finance_approval", Approval, title="Finance Review Required")
security_approval = ask("security_approval", SecurityReview, title="Security Review Required")


@step
def check_approvals(legal_approval: Approval, finance_approval: Approval,
                    security_approval: SecurityReview) -> bool:
    return legal_approval.approved and finance_approval.approved and security_approval.approved


def test_parallel_human_approvals(flow_run):
    """litestar-workflows' parallel approvals: three forms at once, then a check of all."""
    flow = graph(check_approvals)
    waiting = flow_run(flow)
    assert waiting.status == "waiting"
    assert [f.name for f in waiting.waiting] == [
        "legal_approval", "finance_approval", "security_approval"]
    security = waiting.waiting[2]
    assert security.title == "Security Review Required"
    assert security.schema["required"] == ["approved", "risk_level"]
    assert sorted(security.schema["properties"]["risk_level"]["enum"]) == ["high", "low", "medium"]
    assert waiting.spans["check_approvals"].status == "pending"

    answered = flow_run(flow, answers={
        "legal_approval": {"approved": True},
        "finance_approval": {"approved": True, "comments": "within budget"},
        "security_approval": {"approved": True, "risk_level": "low"},
    })
    assert answered.status == "succeeded"
    assert answered.output is True
