"""Spans carry wall-clock times too; a step knows its idempotency key."""

from datetime import UTC, datetime, timedelta

import pytest
import trio

from flowfn import current_span, graph, run, step


@step
async def slow() -> str:
    await trio.sleep(60)
    return current_span().idempotency_key


def test_wall_clock_times_follow_the_run_clock(flow_run):
    before = datetime.now(UTC)
    result = flow_run(graph(slow), run_id="job-9")
    span = result.spans["slow"]
    assert span.started_at is not None and span.ended_at is not None
    assert span.started_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= span.started_at <= datetime.now(UTC)
    assert span.ended_at - span.started_at == timedelta(seconds=60)  # virtual minute


def test_idempotency_key_is_run_id_and_path(flow_run):
    assert flow_run(graph(slow), run_id="job-9").output == "job-9/slow"


def test_idempotency_key_outside_a_step_says_so():
    from flowfn import Span

    with pytest.raises(RuntimeError, match="only known inside a running step"):
        Span("x", "x").idempotency_key


def test_a_span_without_times_has_no_wall_clock_times():
    result = run(graph(slow), overrides={slow: "x"})
    assert result.spans["slow"].started_at is not None
