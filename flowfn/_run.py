"""``run()`` and ``arun()``: validate everything, then hand the graph to the scheduler."""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import trio

from ._aioexec import arun_outside_trio_message, run_inside_trio_message
from ._answers import answer_json, check_answers
from ._codec import encode, storable
from ._durable import (
    Durable,
    check_storable,
    flow_ref,
    inputs_json,
    restore,
    slots,
    stored_answers,
    stored_result,
)
from ._errors import (
    GraphError,
    RunFailed,
    did_you_mean,
    exc_line,
)
from ._executors import Executor, Executors, check_sendable
from ._graph import Graph, graph
from ._inputs import structure_inputs
from ._observe import observers
from ._result import Event, RunResult, RunStatus, Span
from ._runargs import check_run_args
from ._scheduler import Runner
from ._state import IN_PREDICATE, Asks, CancelReason, Shared, UnhandledFailure
from ._step import Step
from ._store import Store, StoredRun, StoreError, store_writer


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
    store: Store | None = None,
    cache: str | None = None,
) -> RunResult:
    """Run ``flow`` inside the current trio program. See :func:`run`."""
    g = _as_graph(flow)
    wrong_place = arun_outside_trio_message(g.name)
    if wrong_place is not None:
        raise RuntimeError(wrong_place)
    context = f"run({g.name})"
    options = _options(g, max_concurrency, limits, timeout, overrides, on_event, executor,
                       inputs=inputs, run_id=run_id)
    values = structure_inputs(g.name, g.inputs, inputs or {}, context=context)
    given = check_answers(g, answers or {}, f"run({g.name}, answers=...)")
    rid = run_id if run_id is not None else uuid.uuid4().hex
    if store is None:
        if cache is not None:
            raise ValueError(f"run({g.name}, cache={cache!r}): caching keeps outputs in a "
                             "store; pass store=SQLiteStore(...) too.")
        return await _start(g, values, options, rid, Asks(given, virtual=_virtual_clock()))
    _check_cache(g, cache)
    _check_store(f"run({g.name}, store=...)", store)
    table = slots(g)
    check_storable(g, f"run({g.name}, store=...)", table)
    stored = store.begin_run(rid, graph_name=g.name, flow_ref=flow_ref(flow),
                             inputs_json=inputs_json(g.inputs, values, context))
    if stored is not None and stored.status == "waiting" and answers:
        return await aresume(flow, rid, store=store, answers=answers, cache=cache,
                             max_concurrency=max_concurrency, limits=limits,
                             timeout=timeout, overrides=overrides, on_event=on_event,
                             executor=executor)
    if stored is not None and stored.status == "failed":
        raise RunFailed(f"run {rid!r} failed before (it is in the store as failed); "
                        f"resume({g.name}, {rid!r}, store=...) runs its failed steps again.",
                        stored_result(g, stored))
    if stored is not None and stored.status != "running":
        return stored_result(g, stored)  # the same run, asked for again: nothing runs
    settled: dict[str, Any] = {}
    stale: list[str] = []
    if stored is not None:  # interrupted: go on from what was committed
        settled, stale = restore(g, stored, None, context)
    asks = Asks(given, virtual=_virtual_clock())
    durable = Durable(store, rid, g, cache=cache, table=table, restored=set(settled))
    return await _start(g, values, options, rid, asks, durable, stored, settled, stale)


async def aresume(
    flow: Graph | Step[Any, Any],
    run_id: str,
    *,
    store: Store,
    answers: Mapping[str, Any] | None = None,
    rerun: Sequence[str] | str | None = None,
    max_concurrency: int | None = None,
    limits: Mapping[str, int] | None = None,
    timeout: float | None = None,
    overrides: Mapping[Any, Any] | None = None,
    on_event: Callable[[Event], object] | None = None,
    executor: str | Executor | None = None,
    cache: str | None = None,
) -> RunResult:
    """Continue a stored run inside the current trio program. See :func:`resume`."""
    g = _as_graph(flow)
    context = f"resume({g.name}, {run_id!r})"
    options = _options(g, max_concurrency, limits, timeout, overrides, on_event, executor)
    _check_store(f"{context[:-1]}, store=...)", store)
    if not isinstance(run_id, str) or not run_id:
        raise TypeError(f"{context}: run_id must be the non-empty str id the run was "
                        f"started with, got {run_id!r}")
    if answers is not None and not isinstance(answers, Mapping):
        raise TypeError(f"{context[:-1]}, answers={answers!r}): answers take a dict of ask() "
                        "names to answers, like {'approve': {'ok': True}}")
    if rerun is not None and not (isinstance(rerun, str) or (
            isinstance(rerun, Sequence) and all(isinstance(r, str | Step) for r in rerun))):
        raise TypeError(f"{context[:-1]}, rerun={rerun!r}): rerun takes 'changed', or a list of "
                        "steps (or their names)")
    stored = store.load_run(run_id)
    if stored is None:
        raise StoreError(f"{context}: the store has no run {run_id!r}. Start it with "
                         f"run({g.name}, inputs, store=..., run_id={run_id!r}).", run_id=run_id)
    if stored.graph_name != g.name:
        raise StoreError(f"{context}: run {run_id!r} is a run of graph {stored.graph_name!r}"
                         f", not {g.name!r}; resume it with the flow it was started with"
                         + (f" ({stored.flow_ref})." if stored.flow_ref else "."),
                         run_id=run_id)
    if stored.status == "succeeded":
        return stored_result(g, stored)
    values = structure_inputs(g.name, g.inputs, json.loads(stored.inputs_json),
                              context=context)
    prior, deadlines = stored_answers(stored)
    given = check_answers(g, answers or {}, f"{context} answers")  # before any write
    again = _rerun(g, rerun, stored, context)
    settled, stale = restore(g, stored, again, context)
    stale = [path for path in stale if path not in again]  # run again: fresh, not stale
    _check_cache(g, cache)
    forms = stored.forms
    for path, value in given.items():
        if path in forms:  # the same answer again is a no-op; another one a StoreError
            store.answer_form(run_id, path, answer_json(g, path, value))
    asks = Asks({**check_answers(g, prior, context), **given}, deadlines,
                virtual=_virtual_clock())
    durable = Durable(store, run_id, g, cache=cache, restored=set(settled))
    return await _start(g, values, options, run_id, asks, durable, stored, settled, stale)


def _options(g: Graph, max_concurrency: int | None, limits: Mapping[str, int] | None,
             timeout: float | None, overrides: Mapping[Any, Any] | None,
             on_event: Callable[[Event], object] | None,
             executor: str | Executor | None, *, inputs: Any = None,
             run_id: Any = None) -> dict[str, Any]:
    """The run options, checked (``_runargs``), as the runner takes them."""
    if on_event is not None and not callable(on_event):
        raise TypeError(f"run({g.name}, on_event={on_event!r}): on_event takes a function "
                        "called with each Event, or None")
    checked = check_run_args(g, inputs=inputs, max_concurrency=max_concurrency,
                             limits=limits, timeout=timeout, overrides=overrides,
                             executor=executor, run_id=run_id)
    problems = check_sendable(_all_steps(g), executor) if executor or _sends(g) else []
    if problems:
        raise GraphError(f"run({g.name})", problems)
    return {"overrides": checked, "limits": limits or {}, "timeout": timeout,
            "max_concurrency": max_concurrency, "on_event": on_event, "executor": executor}


def _sends(g: Graph) -> bool:
    """Some step of the graph runs in another process or on a cluster."""
    return any(not isinstance(s.executor, str) or s.executor == "process"
               for s in _all_steps(g))


def _all_steps(g: Graph) -> list[Step[Any, Any]]:
    """The steps of a graph and of its sub-workflows."""
    return [node.step for _, node in g.walk()]


async def _start(g: Graph, values: dict[str, Any], options: dict[str, Any], run_id: str,
                 asks: Asks, durable: Durable | None = None, stored: StoredRun | None = None,
                 settled: dict[str, Any] | None = None,
                 stale: list[str] | None = None) -> RunResult:
    """Build the run's shared state and runner, run it, and (with a store) commit it."""
    cap = options["max_concurrency"]
    watching = observers()
    shared = Shared(
        {name: trio.CapacityLimiter(n) for name, n in options["limits"].items()},
        trio.CapacityLimiter(cap) if cap else None,
        options["on_event"],
        Executors(options["executor"]),
        settle_hooks=(durable.settled,) if durable is not None else (),
        asks=asks,
        durable=durable,
        observers=watching,
        run_id=run_id,
    )
    runner = Runner(g, values, shared, overrides=options["overrides"], run_id=run_id,
                    settled=settled)
    with ExitStack() as stack:  # the run's own span, when OpenTelemetry is configured
        for observer in watching:
            stack.enter_context(observer.run(g.name, run_id))
        return await _run_and_commit(runner, options["timeout"], durable, stored, stale)


async def _run_and_commit(runner: Runner, timeout: float | None, durable: Durable | None,
                          stored: StoredRun | None, stale: list[str] | None) -> RunResult:
    """Execute the runner; with a store, inside its writer, then record how it ended."""
    g, run_id = runner.graph, runner.view.run_id
    if durable is None:
        return await execute(runner, timeout)
    failed: RunFailed | None = None
    async with store_writer(durable.store, run_id) as writer:
        durable.writer = writer
        try:
            result = await execute(runner, timeout)
        except RunFailed as exc:
            failed, result = exc, exc.result
    result.stale = stale or []
    durable.record_forms(result.waiting, stored)
    output = None
    if result.status == "succeeded" and storable(g.output_type) is None:
        output = encode(result.output, g.output_type)
    durable.store.finish_run(run_id, result.status, output)
    if failed is not None:
        raise failed
    return result


def _check_clock(clock: Any) -> None:
    if clock is not None and not isinstance(clock, trio.abc.Clock):
        raise TypeError(f"run(clock={clock!r}): clock takes a trio clock, such as "
                        "trio.testing.MockClock(autojump_threshold=0), or None")


def _check_store(context: str, store: Any) -> None:
    """``store=`` is a store object (not a path, not the class)."""
    if isinstance(store, type) or not callable(getattr(store, "begin_run", None)):
        what = f"the class {store.__name__}" if isinstance(store, type) else (
            f"{store!r} (a {type(store).__name__})")
        raise TypeError(f"{context}: store= takes a store object, like "
                        f"SQLiteStore('runs.db') or MemoryStore(); got {what}.")


def _check_cache(g: Graph, cache: str | None) -> None:
    if cache not in (None, "refresh"):
        raise ValueError(f"run({g.name}, cache={cache!r}): cache= takes 'refresh' (recompute "
                         "cached steps and overwrite their entries), or None.")


def _rerun(g: Graph, rerun: Sequence[str] | str | None, stored: StoredRun,
           context: str) -> list[str]:
    if rerun is None:
        return []
    if rerun == "changed":
        return restore(g, stored, None, context)[1]
    if isinstance(rerun, str):
        rerun = [rerun]
    names = [r.name if isinstance(r, Step) else r for r in rerun]
    known = set(slots(g))
    unknown = [n for n in names if n not in known]
    if unknown:
        guess = did_you_mean(unknown[0], known)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise ValueError(f"{context}: rerun= names {', '.join(map(repr, unknown))}, but no "
                         f"step of this graph has that name.{hint}")
    return names




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
    if shared.waiting:  # in graph order, not finish order
        order = {s.path: i for i, s in enumerate(result.walk())}
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
    store: Store | None = None,
    cache: str | None = None,
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
      store: keep the run in a store (``SQLiteStore``, ``MemoryStore``): every step is
        committed as it finishes, and ``resume()`` continues the run after a crash or
        once its ``ask()`` steps are answered. With ``run_id``, the same id and inputs
        return the stored result and run nothing.
      cache: ``"refresh"`` recomputes ``@step(cache=True)`` steps and overwrites their
        cached outputs.
      clock: a trio clock, e.g. ``trio.testing.MockClock`` for virtual time.
    """
    wrong_place = run_inside_trio_message(_as_graph(flow).name)
    if wrong_place is not None:
        raise RuntimeError(wrong_place)
    _check_clock(clock)
    return trio.run(
        functools.partial(
            arun, flow, inputs, max_concurrency=max_concurrency, limits=limits,
            timeout=timeout, overrides=overrides, on_event=on_event, run_id=run_id,
            executor=executor, answers=answers, store=store, cache=cache,
        ),
        clock=clock,
    )


def resume(
    flow: Graph | Step[Any, Any],
    run_id: str,
    *,
    store: Store,
    answers: Mapping[str, Any] | None = None,
    rerun: Sequence[str] | str | None = None,
    max_concurrency: int | None = None,
    limits: Mapping[str, int] | None = None,
    timeout: float | None = None,
    overrides: Mapping[Any, Any] | None = None,
    on_event: Callable[[Event], object] | None = None,
    executor: str | Executor | None = None,
    cache: str | None = None,
    clock: trio.abc.Clock | None = None,
) -> RunResult:
    """Continue the stored run ``run_id``: after a crash, or with answers for its
    ``ask()`` steps.

    Steps whose success was committed are not run again: their outputs are read back
    into the current return types (one ``InputError`` lists every stored value that no
    longer fits). A step whose code changed since is reused and listed in
    ``result.stale``; ``rerun=["step", ...]`` (or ``"changed"``) runs those steps and
    everything after them again. Answers are validated before anything is written; a
    bad one raises ``InputError`` and the run stays waiting. A finished run is returned
    as stored. The other options are :func:`run`'s.
    """
    _check_clock(clock)
    return trio.run(
        functools.partial(
            aresume, flow, run_id, store=store, answers=answers, rerun=rerun,
            max_concurrency=max_concurrency, limits=limits, timeout=timeout,
            overrides=overrides, on_event=on_event, executor=executor, cache=cache,
        ),
        clock=clock,
    )


# --- checks before a run, and the messages after a failed one -----------------------------


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
    if failure.hint:
        head += "\n  " + failure.hint
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
