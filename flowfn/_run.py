"""``run()`` and ``arun()``: validate everything, then hand the graph to the scheduler."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ._errors import RunFailed
from ._graph import Graph, graph
from ._inputs import structure_inputs
from ._result import Event, RunResult, RunStatus
from ._scheduler import (
    Runner,
    Shared,
    cancelled_summary,
    check_limits,
    check_overrides,
    failure_message,
    finish_spans,
)
from ._step import Step


def _as_graph(flow: Graph | Step[Any, Any]) -> Graph:
    if isinstance(flow, Graph):
        return flow
    if isinstance(flow, Step):
        return graph(flow)
    raise TypeError(f"run() takes a graph (or a step), got {flow!r}. Build one with graph(...).")


async def arun(
    flow: Graph | Step[Any, Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    limits: Mapping[str, int] | None = None,
    timeout: float | None = None,
    overrides: Mapping[Any, Any] | None = None,
    on_event: Callable[[Event], object] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run ``flow`` inside the current trio program. See :func:`run`."""
    g = _as_graph(flow)
    context = f"run({g.name})"
    checked = check_overrides(g, overrides or {}, f"run({g.name}, overrides=...)")
    check_limits(g, limits or {}, f"run({g.name}, limits=...)")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(
            f"max_concurrency must be >= 1 (or None for no cap), got {max_concurrency}"
        )
    values = structure_inputs(g.name, g.inputs, inputs or {}, context=context)
    shared = Shared(
        {name: trio.CapacityLimiter(cap) for name, cap in (limits or {}).items()},
        trio.CapacityLimiter(max_concurrency) if max_concurrency else None,
        on_event,
    )
    runner = Runner(g, values, shared, overrides=checked)
    await runner.execute(timeout)
    timed_out = runner.timed_out
    if runner.stop_reason is not None:
        finish_spans(runner.spans, runner.stop_reason, trio.current_time())
    failed = timed_out or runner.failure is not None
    status: RunStatus = "failed" if failed else "succeeded"
    result = RunResult(
        run_id=run_id or uuid.uuid4().hex,
        status=status,
        output=None if failed else runner.output(),
        spans=runner.spans,
        failures=dict(shared.failures),
        graph_name=g.name,
    )
    if runner.failure is not None:
        f = runner.failure
        raise RunFailed(failure_message(f, runner.spans), result, step=f.path,
                        attempt=f.attempt, attempts=f.attempts) from f.exc
    if timed_out:
        error = TimeoutError(f"run({g.name}) timed out after {timeout:g}s")
        raise RunFailed(f"run({g.name}) timed out after {timeout:g}s"
                        + cancelled_summary(runner.spans), result) from error
    return result



def run(
    flow: Graph | Step[Any, Any],
    inputs: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    limits: Mapping[str, int] | None = None,
    timeout: float | None = None,
    overrides: Mapping[Any, Any] | None = None,
    on_event: Callable[[Event], object] | None = None,
    run_id: str | None = None,
    clock: trio.abc.Clock | None = None,
) -> RunResult:
    """Run ``flow`` to completion and return its :class:`RunResult`.

    Every step starts as soon as its inputs exist. Inputs are converted to the
    parameters' types first (``InputError`` lists every bad one before anything runs).
    An unhandled step failure cancels the rest and raises :class:`RunFailed`.

    Args:
      inputs: values for the graph's inputs, by name.
      max_concurrency: cap on steps (and map items) running at once.
      limits: named capacities used by ``@step(limit=...)``.
      timeout: deadline for the whole run, in seconds.
      overrides: replace steps (by object or name, ``branch/step`` inside sub-workflows)
        with a value, a function, or an exception instance to raise.
      on_event: called with every :class:`Event` (started, finished, failed, ...).
      run_id: your own id for the run (default: a random one).
      clock: a trio clock, e.g. ``trio.testing.MockClock`` for virtual time.
    """
    return trio.run(
        functools.partial(
            arun, flow, inputs, max_concurrency=max_concurrency, limits=limits,
            timeout=timeout, overrides=overrides, on_event=on_event, run_id=run_id,
        ),
        clock=clock,
    )
