"""``run()`` and ``arun()``: validate everything, then hand the graph to the scheduler."""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ._errors import (
    GraphError,
    InputError,
    Problem,
    RunFailed,
    def_line,
    did_you_mean,
    exc_line,
)
from ._executors import Executor, Executors
from ._graph import Graph, graph
from ._inputs import structure, structure_inputs
from ._result import Event, RunResult, RunStatus, Span
from ._scheduler import Runner
from ._state import IN_PREDICATE, Asks, CancelReason, Shared, UnhandledFailure
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
    executor: str | Executor | None = None,
    answers: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run ``flow`` inside the current trio program. See :func:`run`."""
    g = _as_graph(flow)
    context = f"run({g.name})"
    checked = check_overrides(g, overrides or {}, f"run({g.name}, overrides=...)")
    check_limits(g, limits or {}, f"run({g.name}, limits=...)")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(
            f"run({g.name}, timeout={timeout!r}): the deadline must be a number of seconds "
            "> 0, or None for no deadline."
        )
    if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
            or max_concurrency < 1):
        raise ValueError(
            f"run({g.name}, max_concurrency={max_concurrency!r}): the cap must be a whole "
            "number >= 1, or None for no cap."
        )
    values = structure_inputs(g.name, g.inputs, inputs or {}, context=context)
    given = check_answers(g, answers or {}, f"run({g.name}, answers=...)")
    shared = Shared(
        {name: trio.CapacityLimiter(cap) for name, cap in (limits or {}).items()},
        trio.CapacityLimiter(max_concurrency) if max_concurrency else None,
        on_event,
        Executors(executor),
        asks=Asks(given, virtual=_virtual_clock()),
    )
    runner = Runner(g, values, shared, overrides=checked, run_id=run_id or uuid.uuid4().hex)
    return await execute(runner, timeout)


async def execute(runner: Runner, timeout: float | None) -> RunResult:
    """Run a prepared runner to its end; its result, or ``RunFailed``."""
    shared = runner.shared
    try:
        await runner.execute(timeout)
    finally:
        with trio.CancelScope(shield=True):
            await shared.executors.aclose()
    timed_out = runner.timed_out
    if runner.stop_reason is not None:
        runner.finish(runner.stop_reason)
    failed = timed_out or runner.failure is not None
    status: RunStatus = "failed" if failed else "waiting" if runner.waits else "succeeded"
    g = runner.graph
    result = RunResult(
        run_id=runner.view.run_id,
        status=status,
        output=None if status != "succeeded" else runner.output(),
        spans=runner.spans,
        failures=dict(shared.failures),
        graph_name=g.name,
    )
    order = {s.path: i for i, s in enumerate(result.walk())}  # graph order, not finish order
    result.waiting = sorted(shared.waiting, key=lambda form: order.get(form.path, 0))
    if runner.failure is not None:
        f = runner.failure
        raise RunFailed(failure_message(f, runner.spans, runner.why_stopped()), result,
                        step=f.path, attempt=f.attempt, attempts=f.attempts) from f.exc
    if timed_out:
        message = f"run({g.name}) timed out after {timeout:g}s"
        raise RunFailed(message + cancelled_summary(runner.spans, runner.why_stopped()),
                        result) from TimeoutError(message)
    return result


def _virtual_clock() -> bool:
    """The run is under a test clock (``MockClock``): ``ask()`` deadlines pass in
    virtual time."""
    testing = sys.modules.get("trio.testing")  # imported by whoever made a MockClock
    return testing is not None and isinstance(trio.lowlevel.current_clock(),
                                              testing.MockClock)


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
    executor: str | Executor | None = None,
    answers: Mapping[str, Any] | None = None,
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
      executor: where sync steps run unless their ``@step(executor=...)`` says otherwise:
        ``"thread"`` (the default), ``"inline"``, ``"process"``, or an executor object.
      answers: answers to ``ask()`` steps, by name (or ``branch/name`` path).
      clock: a trio clock, e.g. ``trio.testing.MockClock`` for virtual time.
    """
    return trio.run(
        functools.partial(
            arun, flow, inputs, max_concurrency=max_concurrency, limits=limits,
            timeout=timeout, overrides=overrides, on_event=on_event, run_id=run_id,
            executor=executor, answers=answers,
        ),
        clock=clock,
    )


# --- checks before a run, and the messages after a failed one -----------------------------


def check_overrides(graph: Graph, overrides: Mapping[Any, Any], context: str) -> dict[str, Any]:
    """Overrides keyed by name (``branch/step`` paths inside sub-workflows), validated."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    names = _overridable(graph) if overrides else []
    for key, value in overrides.items():
        name = key.name if isinstance(key, Step) else str(key)
        if name not in names:
            guess = did_you_mean(name, names)
            lines = [f"overrides names {name!r}, but no step in this graph has that name."]
            hint = f"Did you mean {guess!r}? " if guess else ""
            lines.append(f"{hint}Overridable steps: {', '.join(sorted(names))}.")
            problems.append(Problem("", tuple(lines)))
            continue
        out[name] = value
    if problems:
        raise GraphError(context, problems, blank=False)
    return out


def _overridable(graph: Graph, prefix: str = "") -> list[str]:
    names: list[str] = []
    for n in graph.nodes:
        names.append(prefix + n.name)
        spec: Any = n.step.container
        if n.kind == "subflow":
            names.extend(_overridable(spec.graph, prefix + n.name + "/"))
    return names


def check_answers(graph: Graph, answers: Mapping[str, Any], context: str) -> dict[str, Any]:
    """Every answer converted to its ``ask()`` step's answer type, or one ``InputError``
    with every bad data path; an answer naming no ``ask()`` step is one of them."""
    if not answers:
        return {}
    asks = _asks(graph)
    by_name = {path.rpartition("/")[2]: path for path in asks}
    problems: list[str] = []
    out: dict[str, Any] = {}
    for key, value in answers.items():
        path = key if key in asks else by_name.get(key)
        if path is None:
            guess = did_you_mean(str(key), list(asks) + list(by_name))
            hint = f" Did you mean {guess!r}?" if guess else ""
            known = ", ".join(sorted(asks)) or "none"
            problems.append(f"{key}: no ask() step has that name.{hint} Asks: {known}.")
            continue
        converted, bad = structure(value, asks[path].answer_type, key)
        problems.extend(bad)
        if not bad:
            out[key] = converted
    if problems:
        raise InputError(context, problems, noun="answer")
    return out


def _asks(graph: Graph, prefix: str = "") -> dict[str, Any]:
    """The ``ask()`` steps of a graph and its sub-workflows, by path."""
    found: dict[str, Any] = {}
    for n in graph.nodes:
        spec: Any = n.step.container
        if n.kind == "ask":
            found[prefix + n.name] = spec
        elif n.kind == "subflow":
            found.update(_asks(spec.graph, prefix + n.name + "/"))
    return found


def check_limits(graph: Graph, limits: Mapping[str, int], context: str) -> None:
    """Every ``limit=`` used in the graph (sub-workflows included) is defined, and every
    capacity is a whole number >= 1."""
    problems: list[Problem] = []

    def visit(g: Graph, prefix: str) -> None:
        for n in g.limit_checks:
            lim = n.step.limit
            if lim is not None and lim not in limits:
                guess = did_you_mean(lim, limits)
                hint = f" Did you mean {guess!r}?" if guess else ""
                problems.append(Problem(def_line(n.step.fn, n.name, at=n.step.location), (
                    f"step {prefix + n.name!r}: @step(limit={lim!r}) names a limit that this "
                    f"run does not define.{hint}",
                    f"Pass it to the run: limits={{{lim!r}: 5}}"
                    + (f" (defined: {', '.join(sorted(limits))})." if limits else "."),
                )))
            spec: Any = n.step.container
            if n.kind == "subflow":
                visit(spec.graph, prefix + n.name + "/")

    visit(graph, "")
    for name, cap in limits.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            problems.append(Problem(f"limits[{name!r}] = {cap!r}", (
                "a capacity limit must be a whole number >= 1.",
            )))
    if problems:
        raise GraphError(context, problems)


def failure_message(failure: UnhandledFailure, spans: Mapping[str, Span],
                    stop: CancelReason) -> str:
    exc = failure.exc
    where = f" {failure.where}" if failure.where else ""
    if failure.attempts > 1:
        head = (f"step {failure.path!r} failed{where} on attempt {failure.attempt} of "
                f"{failure.attempts} ({failure.location}):\n  {exc_line(exc)}")
    else:
        attempt = "" if failure.where == IN_PREDICATE else f" on attempt {failure.attempt}"
        head = (f"step {failure.path!r} failed{where}{attempt}: {exc_line(exc)}"
                f"\n  step defined at {failure.location}")
    return head + cancelled_summary(spans, stop)


def cancelled_summary(spans: Mapping[str, Span], stop: CancelReason) -> str:
    """Which steps the run's stop (``stop``: the reason it gave them) cancelled; not, for
    instance, the losers of a race that was over before."""
    running: list[str] = []
    never: list[str] = []

    def visit(d: Mapping[str, Span]) -> None:
        for s in d.values():
            if s.status == "cancelled" and "[" not in s.name and s.cancel == stop:
                (never if s.started is None else running).append(s.path)
            visit(s.children)

    visit(spans)
    parts = []
    if running:
        parts.append("cancelled while running: " + ", ".join(sorted(running)))
    if never:
        parts.append("never started: " + ", ".join(sorted(never)))
    return ("\n  " + "; ".join(parts)) if parts else ""

