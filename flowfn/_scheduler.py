"""The scheduler: runs a :class:`Graph` on one trio nursery by readiness counting.

Life of a step::

    pending --(last dependency settles)--> started as a task --> running --> settled
                                                              \\-> skipped / cancelled

Each node keeps a count of unsettled dependencies. When a node settles, it decrements
the counts of its dependents and spawns, with ``nursery.start_soon``, exactly those that
reach zero: no task waits parked for its inputs and there are no level barriers. A
failure that nothing handles cancels the nursery: every running step is cancelled (its
``finally`` blocks run) and no further step starts.

Everything else plugs in at one of three places: ``_body`` (what running a node means:
a function, a map, a race, a sub-workflow), ``_attempts`` (retries, per-attempt
timeouts, capacity slots) and ``_settle`` / ``_wake`` (results, failure policy, waking
dependents; a plain step that succeeds stores its result inline and calls ``_wake``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import outcome
import trio

from ._errors import MapLengthError, StepTimeout, exc_line
from ._executors import call
from ._graph import Binding, Graph, Node
from ._inputs import structure_inputs
from ._patterns import SubflowSpec
from ._result import (
    Attempt,
    Event,
    EventKind,
    RunView,
    Span,
    current_run_var,
    current_span_var,
)
from ._step import MISSING, BackoffError, BackoffLike, backoff_delay
from ._wiring import Mode

checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled

#: Limits whose slot an enclosing container holds: name -> the one-slot limiter its
#: members take turns on instead of the run's limiter (see ``Runner._attempts``).
Held = Mapping[str, trio.CapacityLimiter]
_NOTHING_HELD: Held = {}


class _Skip:
    """A node settled without output; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Failed:
    """A node's failure as kept in ``Runner.results``.

    Successful outputs are stored bare (no wrapper object per step on the hot path), so a
    slot of ``results`` holds an output, a ``_Failed`` or a ``_Skip``; user code never
    sees either class, so no step can return one by accident. ``where`` says which part
    failed when it was not the step's own function ("in item [3]").
    """

    __slots__ = ("error", "where")

    def __init__(self, error: BaseException, where: str = "") -> None:
        self.error = error
        self.where = where


_PENDING = _Skip("it has not run")  # the result of a node that has not settled
IN_PREDICATE = "in its when= predicate"  # where a failure came from, for RunFailed


class _Skipped(BaseException):
    """Raised by a container that turned out to have nothing to output: every contestant
    of a race, or a sub-workflow's output step, was skipped. The container is skipped
    too (it is not a failure); the message is the reason."""


class UnhandledFailure:
    """The first failure nothing handled: it stops the run (and is what RunFailed says)."""

    def __init__(self, path: str, location: str, attempt: int, attempts: int,
                 exc: BaseException, where: str = "") -> None:
        self.path = path
        self.location = location
        self.attempt = attempt
        self.attempts = attempts
        self.exc = exc
        self.where = where


class Shared:
    """State shared by a run and all its sub-workflow runs."""

    def __init__(self, limiters: dict[str, trio.CapacityLimiter],
                 global_limiter: trio.CapacityLimiter | None,
                 on_event: Callable[[Event], object] | None) -> None:
        self.limiters = limiters
        self.global_limiter = global_limiter
        self.on_event = on_event
        self.failures: dict[str, BaseException] = {}


class Runner:
    """One execution of one graph (sub-workflows get a child runner)."""

    def __init__(self, graph: Graph, values: dict[str, Any], shared: Shared, *,
                 overrides: Mapping[str, Any], prefix: str = "",
                 spans: dict[str, Span] | None = None, parent: RunView | None = None,
                 parent_runner: Runner | None = None, parent_node: Node | None = None,
                 held: Held = _NOTHING_HELD) -> None:
        self.graph = graph
        self.values = values
        self.shared = shared
        self.prefix = prefix
        self.overrides = {graph.by_name[k]: v for k, v in overrides.items() if "/" not in k}
        self.sub_overrides = {k: v for k, v in overrides.items() if "/" in k}
        # Plain steps skip ``_body`` unless something run-wide changes how steps are called.
        self.fast = not self.overrides and shared.global_limiter is None
        names = graph.names
        # by node index: the hot path avoids dict lookups
        self.span_list = ([Span(name, prefix + name) for name in names] if prefix
                          else [Span(name, name) for name in names])
        self.spans = spans if spans is not None else {}
        self.spans.update(zip(names, self.span_list, strict=True))
        self.view = RunView(self.spans, parent)
        self.results: list[Any] = [_PENDING] * len(graph.nodes)
        self.clean = True  # nothing failed or was skipped yet: arguments need no checks
        self.collected_items: dict[int, list[Any]] = {}  # failed maps read as list[Outcome]
        self.contests: dict[int, dict[Node, Any]] = {}  # race index -> contestants' results
        self.settled_races: set[int] = set()
        self.pending = list(graph.dep_counts)
        self.nodes, self.names = graph.nodes, graph.names
        self.failure: UnhandledFailure | None = None
        self.stop_reason: str | None = None
        # Set by stop(). Checked instead of the nursery's cancel scope, whose
        # ``cancel_called`` reads the clock; a run deadline is checked on its own.
        self.stopping = False
        self.streams: dict[tuple[int, int], trio.MemorySendChannel[Any]] = {}
        self.stream_recv: dict[int, trio.MemoryReceiveChannel[Any]] = {}
        self.nursery: trio.Nursery
        self.timed_out = False
        self.timeout: float | None = None
        # The deadline scope of each running container step (race, sub-workflow), so that
        # the steps it cancels can say why.
        self.deadline_scopes: dict[int, tuple[trio.CancelScope, float]] = {}
        # The failure inside each failed sub-workflow (by node index): the subflow step
        # fails with the inner step's own exception, so ``retry_on=`` and ``Outcome``
        # consumers see what really went wrong, and the run names the inner step's path.
        self.subflow_failures: dict[int, UnhandledFailure] = {}
        # Failures that Outcome parameters may still consume, by node index: [the failure,
        # how many consumers have not settled]. A failure no consumer received (they were
        # all skipped) fails the run after all, when the last consumer settles.
        self.unconsumed: dict[int, list[Any]] = {}
        self.parent_runner = parent_runner
        self.parent_node = parent_node
        self.emits = shared.on_event is not None
        self.held = held
        self.now: Callable[[], float] = trio.current_time

    # --- the run ---------------------------------------------------------------------

    async def execute(self, timeout: float | None = None) -> None:
        """Run the graph to the end (or until it fails or ``timeout`` seconds pass)."""
        self.now = trio.lowlevel.current_clock().current_time  # what trio.current_time calls
        for up, down in self.graph.stream_edges:
            send, recv = trio.open_memory_channel[Any](math.inf)
            self.streams[(up, down)] = send
            self.stream_recv[down] = recv
        token = current_run_var.set(self.view)  # inherited by every task spawned below
        escaped: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if timeout is not None:
                    nursery.cancel_scope.deadline = trio.current_time() + timeout
                    self.timeout = timeout
                for n in self.graph.roots:
                    nursery.start_soon(self._run_node, n, name=n.name)
        except BaseExceptionGroup as group:
            # Step failures never get here (they are results); only what must not be
            # swallowed does, e.g. a KeyboardInterrupt. Give it back bare, as raised.
            escaped = _sole_exception(group)
            if escaped is None:
                raise
        finally:
            current_run_var.reset(token)
        if escaped is not None:
            raise escaped
        scope = self.nursery.cancel_scope
        if self.stop_reason is None and self.timeout is not None and (
                scope.cancelled_caught or trio.current_time() >= scope.deadline):
            # the deadline passed: also when nothing was left to cancel (a thread step
            # that outlived it, steps that never started)
            self.timed_out = True
            self.stop_reason = self._timed_out()

    def _timed_out(self) -> str:
        return f"cancelled: the run timed out after {self.timeout:g}s"

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopping = True
        self.nursery.cancel_scope.cancel()

    def finish(self, reason: str) -> None:
        """After a stopped run: spans still pending or running become ``cancelled``."""
        now = self.now()

        def visit(spans: Mapping[str, Span]) -> None:
            for span in spans.values():
                if span.status in ("pending", "running"):
                    span.status = "cancelled"
                    if span.started is None:
                        span.reason = f"never started: {reason}"
                    else:
                        span.reason = span.reason or reason
                        span.ended = now if span.ended is None else span.ended
                    self._emit("cancelled", span)
                visit(span.children)

        visit(self.spans)

    def output(self) -> Any:
        def value(n: Node) -> Any:
            r = self.results[n.index]
            return None if type(r) is _Failed or type(r) is _Skip else r

        targets = self.graph.targets
        if len(targets) == 1:
            return value(targets[0])
        return {t.name: value(t) for t in targets}

    # --- one node --------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        if self.stopping or (self.timeout is not None and self.nursery.cancel_scope.cancel_called):
            return  # the run is stopping (failure or deadline): never start anything new
        span = self.span_list[node.index]
        current_span_var.set(span)
        try:
            await checkpoint_if_cancelled()  # an outer cancel: don't start
            if node.plain and self.fast:
                # An async step with no options: the hot path, written out in full (no
                # helper calls) because it is most of what a large run does.
                args = node.args
                kwargs: dict[str, Any] | _Skip
                if args is not None and self.clean:
                    results = self.results
                    kwargs = values = {}
                    for param, i in args:
                        values[param] = results[i]
                else:
                    kwargs = self._gather(node, node.bindings)
                if isinstance(kwargs, _Skip):
                    result: Any = self._skip(span, kwargs)
                else:
                    span.input = kwargs
                    span.attempts = 1
                    span.started = self.now()
                    span.status = "running"
                    if self.emits:
                        self._emit("started", span)
                    try:
                        result = await node.step.fn(**kwargs)
                    except Exception as exc:
                        result = self._failed(span, exc)
                    else:
                        span.status = "succeeded"
                        span.output = result
                        span.ended = self.now()
                        if self.emits:
                            self._emit("finished", span)
            else:
                result = await self._body(node, span, self.held)
        except BaseException:  # Cancelled, or a group of them from a container's nursery
            self._cancelled(span, node.owner)
            raise
        if type(result) is _Failed or node.streams_to:
            self._settle(node, result)
        else:
            self.results[node.index] = result  # all _settle does for this result
            self._wake(node)

    def _cancelled(self, span: Span, owner: Node | None) -> None:
        if span.status in ("pending", "running"):
            span.status = "cancelled"
            if span.reason is None:
                why = self.why_cancelled(owner)
                span.reason = why if span.started is not None else f"never started: {why}"
            span.ended = self.now()
            self._emit("cancelled", span)

    def why_cancelled(self, owner: Node | None) -> str:
        """Why a step running inside ``owner`` (a race, a map or a sub-workflow node of
        this run; None for the run itself) is being cancelled."""
        while owner is not None:
            ospan = self.span_list[owner.index]
            deadline = self.deadline_scopes.get(owner.index)
            if deadline is not None and deadline[0].cancel_called:
                return f"cancelled: {owner.kind} {ospan.path!r} timed out after {deadline[1]:g}s"
            if ospan.reason is not None and ospan.status in ("running", "cancelled"):
                return f"cancelled because {owner.kind} {ospan.path!r} {ospan.reason}"
            owner = owner.owner
        return self.why_stopped()

    def why_stopped(self) -> str:
        """Why this run (or an enclosing one) is cancelling its steps."""
        if self.stop_reason is not None:
            return self.stop_reason
        if self.timeout is not None and self.nursery.cancel_scope.cancel_called:
            return self._timed_out()
        if self.parent_runner is not None:
            return self.parent_runner.why_cancelled(self.parent_node)
        return "cancelled from outside the run"

    async def _body(self, node: Node, span: Span, held: Held) -> Any:
        """Run a node whose dependencies have settled: skip it, or produce its result.

        ``held``: the limits whose slot an enclosing container holds.
        """
        handed: list[int] = []
        kwargs = self._gather(node, node.bindings, handed)
        if isinstance(kwargs, _Skip):
            return self._skip(span, kwargs)
        if node.when is not None:
            verdict = await self._predicate(node, node.when, span)
            if verdict is not None:
                return verdict
        self._consume(handed)  # the step runs: the failures it takes are handled
        span.input = kwargs
        fn = node.step.fn
        override = self.overrides.get(node, MISSING) if self.overrides else MISSING
        if override is not MISSING:  # replaces the whole step, a container included
            if node.kind != "function":
                span.reason = "overridden"  # what its members' spans will say
            if _raises(override) or not callable(override):
                return await self._attempts(node, span, lambda: _constant(override), held,
                                            container=True)
            fn = override
            if node.kind != "function":
                return await self._attempts(node, span, self._caller(node, fn, kwargs), held,
                                            container=True)
        if node.kind == "race":
            inside = self._holding(node, held)
            try:
                return await self._attempts(
                    node, span, lambda: self._race(node, span, inside), held, container=True)
            except _Skipped as skipped:
                return self._skip(span, _Skip(str(skipped)))
        if node.kind == "subflow":
            spec = node.step.container
            assert isinstance(spec, SubflowSpec)
            inside = self._holding(node, held)
            try:
                return await self._attempts(
                    node, span, lambda: self._subflow(node, span, spec, kwargs, inside), held,
                    container=True,
                )
            except _Skipped as skipped:
                return self._skip(span, _Skip(str(skipped)))
        if node.stream_from is not None:
            return await self._stream_map(node, span, kwargs, fn, held)
        if node.mapped:
            return await self._map(node, span, kwargs, fn, held)
        return await self._attempts(node, span, self._caller(node, fn, kwargs), held)

    def _holding(self, node: Node, held: Held) -> Held:
        """The limits held inside a container: with ``limit=`` it holds one slot of that
        limit, which its members naming the same limit take turns on."""
        limit = node.step.limit
        return {**held, limit: trio.CapacityLimiter(1)} if limit else held

    def _caller(self, node: Node, fn: Callable[..., Any],
                kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        """One attempt as a zero-argument coroutine function."""
        step = node.step
        executor = step.executor
        if fn is not step.fn:  # an override function: run it the way it is written
            if _is_async(fn):
                executor = "async"
            elif executor == "async":
                executor = "inline"  # a quick stand-in for an async step: on the loop
        if executor == "async":
            return lambda: fn(**kwargs)
        abandon = step.timeout is not None
        return lambda: call(fn, kwargs, executor, abandon=abandon)

    def _gather(self, node: Node, bindings: list[Binding],
                consumed: list[int] | None = None) -> dict[str, Any] | _Skip:
        """The keyword arguments of a node, or why it must be skipped.

        Failed upstreams handed over as ``Outcome`` count as handled (``unconsumed``) at
        once, or, given a ``consumed`` list, once the caller knows the step will run.
        """
        kwargs: dict[str, Any] = {}
        results = self.results
        handed: list[int] = []
        for b in bindings:
            up = b.node
            if up is None:
                value = self.values.get(b.input, MISSING)  # type: ignore[arg-type]
                kwargs[b.param] = b.default if value is MISSING else value
                continue
            if b.each and up is node.stream_from:
                continue  # items arrive one by one
            res = results[up.index]
            kind = type(res)
            mode = b.mode
            if mode is Mode.OUTCOME_LIST:
                items = self.collected_items.get(up.index)
                if items is not None:
                    kwargs[b.param] = [_as_outcome(r) for r in items]
                    handed.append(up.index)
                elif kind is _Skip:
                    return _Skip(f"upstream {up.name!r} was skipped")
                elif kind is _Failed:
                    kwargs[b.param] = [_as_outcome(res)]
                    handed.append(up.index)
                else:
                    kwargs[b.param] = [outcome.Value(v) for v in res]
            elif kind is _Failed:
                if mode is not Mode.OUTCOME:
                    return _Skip(f"upstream {up.name!r} failed")
                kwargs[b.param] = outcome.Error(res.error)
                handed.append(up.index)
            elif kind is _Skip:
                if mode is not Mode.OPTIONAL:
                    return _Skip(f"upstream {up.name!r} was skipped ({res.reason})")
                kwargs[b.param] = None
            else:
                kwargs[b.param] = outcome.Value(res) if mode is Mode.OUTCOME else res
        if consumed is None:
            self._consume(handed)
        else:
            consumed.extend(handed)
        return kwargs

    def _consume(self, handed: list[int]) -> None:
        for i in handed:  # handled: it no longer fails the run
            self.unconsumed.pop(i, None)

    async def _predicate(self, node: Node, bindings: list[Binding], span: Span) -> Any:
        """Evaluate ``when=``: None to go on, or the node's result (skip or failure)."""
        predicate = node.step.when
        assert predicate is not None
        args = self._gather(node, bindings)
        if isinstance(args, _Skip):
            return self._skip(span, args)
        try:
            verdict = predicate(**args)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
        except Exception as exc:
            span.reason = "its when= predicate raised"
            return self._failed(span, exc, IN_PREDICATE)
        if not verdict:
            return self._skip(span, _Skip("its when= predicate was false"))
        return None

    def _skip(self, span: Span, skip: _Skip) -> _Skip:
        self.clean = False
        if span.started is not None and span.ended is None:  # a container found nothing
            span.ended = self.now()
        span.status = "skipped"
        span.reason = skip.reason
        self._emit("skipped", span)
        return skip

    def _failed(self, span: Span, exc: BaseException, where: str = "") -> _Failed:
        """Settle a span as failed (its last attempt's error) and emit the event."""
        self.clean = False
        now = self.now()
        span.status = "failed"
        span.error = exc
        span.attempts = span.attempts or 1
        if span.started is None:
            span.started = now
        span.ended = now
        self._emit("failed", span)
        return _Failed(exc, where)

    # --- attempts: retries, timeouts, slots --------------------------------------------

    async def _attempts(self, node: Node, span: Span, fn: Callable[[], Awaitable[Any]],
                        held: Held, *, container: bool = False) -> Any:
        """Run ``fn`` with the step's retries, per-attempt timeout and capacity slots.

        A container (race, sub-workflow) takes no ``max_concurrency`` slot: it only waits
        for its members. With ``limit=`` it holds one slot of that limit for its whole
        run; members naming the same limit take turns on it (``held``) rather than wait
        for a slot their own container may be holding.
        """
        step = node.step
        total = step.retries + 1
        limit = step.limit
        named = (held.get(limit) or self.shared.limiters.get(limit)) if limit else None
        glob = None if container else self.shared.global_limiter
        if total == 1 and named is None and glob is None and step.timeout is None:
            return await self._single_attempt(span, fn)
        for attempt in range(1, total + 1):
            span.attempts = attempt
            try:
                if named is not None:
                    await named.acquire()
                try:
                    if glob is not None:
                        await glob.acquire()
                    try:
                        value = await self._attempt(node, span, fn, attempt)
                    finally:
                        if glob is not None:
                            glob.release()
                finally:
                    if named is not None:
                        named.release()
            except Exception as exc:
                now = self.now()
                begun = span.attempt_started
                span.log_attempt(Attempt(attempt, now if begun is None else begun, now, exc))
                if attempt < total and isinstance(exc, step.retry_on):
                    span.error = exc
                    self._emit("retrying", span)
                    delay = _delay(step.backoff, attempt)
                    if isinstance(delay, BackoffError):  # the user's backoff= is broken
                        return self._failed(span, delay)
                    await trio.sleep(delay)  # holds no slot
                    continue
                return self._failed(span, exc)
            now = self.now()
            begun = span.attempt_started
            span.log_attempt(Attempt(attempt, now if begun is None else begun, now))
            span.error = None
            return self._succeeded(span, value)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _single_attempt(self, span: Span, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One try, no slot, no deadline: the path almost every step takes."""
        self._start(span)
        try:
            value = await fn()
        except Exception as exc:
            return self._failed(span, exc)
        return self._succeeded(span, value)

    def _start(self, span: Span) -> None:
        span.attempts = 1
        span.started = self.now()
        span.status = "running"
        if self.emits:
            self._emit("started", span)

    def _succeeded(self, span: Span, value: Any) -> Any:
        span.status = "succeeded"
        span.output = value
        span.ended = self.now()
        if self.emits:
            self._emit("finished", span)
        return value

    async def _attempt(self, node: Node, span: Span, fn: Callable[[], Awaitable[Any]],
                       attempt: int) -> Any:
        now = self.now()
        span.attempt_started = now
        if span.started is None:
            span.started = now
            span.status = "running"
            self._emit("started", span)
        timeout = node.step.timeout
        if timeout is None:
            return await fn()
        with trio.move_on_after(timeout) as scope:
            if node.kind != "function":  # what it cancels will say why
                self.deadline_scopes[node.index] = (scope, timeout)
            return await fn()
        # Only our own deadline lands here: when an enclosing scope is cancelled too,
        # trio lets that cancellation propagate instead, so this is never a false timeout.
        note = ""
        if node.step.executor == "thread":
            span.abandoned = True  # Python threads cannot be interrupted: it runs on
            note = "; its worker thread was abandoned and runs until the function returns"
        if node.step.on_timeout is not MISSING:
            span.reason = f"timed out after {timeout:g}s, returned on_timeout{note}"
            return node.step.on_timeout
        if note:
            span.reason = f"timed out after {timeout:g}s{note}"
        raise StepTimeout(
            f"step {span.path!r} timed out after {timeout:g}s (attempt {attempt}){note}"
        )

    # --- maps --------------------------------------------------------------------------

    async def _map(self, node: Node, span: Span, kwargs: dict[str, Any],
                   fn: Callable[..., Any], held: Held) -> Any:
        mapped = [b.param for b in node.bindings if b.each]
        try:
            columns = [list(kwargs[p]) for p in mapped]
        except TypeError as exc:
            return self._failed(span, exc)
        lengths = {p: len(c) for p, c in zip(mapped, columns, strict=True)}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{p}: {n} items" for p, n in lengths.items())
            return self._failed(span, MapLengthError(
                f"step {span.path!r} maps over lists of different lengths ({detail}); "
                "each() parameters are zipped item by item, so their lists must be equally long."
            ))

        async def source(send_item: Callable[[int, dict[str, Any]], None]) -> int:
            if len(mapped) == 1:  # the usual case, without a zip per item
                param = mapped[0]
                for i, value in enumerate(columns[0]):
                    kw = kwargs.copy()
                    kw[param] = value
                    send_item(i, kw)
            else:
                for i, row in enumerate(zip(*columns, strict=True)):
                    kw = kwargs.copy()
                    kw.update(zip(mapped, row, strict=True))
                    send_item(i, kw)
            return len(columns[0])

        return await self._run_items(node, span, fn, source, held, in_order=True)

    async def _stream_map(self, node: Node, span: Span, kwargs: dict[str, Any],
                          fn: Callable[..., Any], held: Held) -> Any:
        up = node.stream_from
        assert up is not None
        param = next(b.param for b in node.bindings if b.each)
        recv = self.stream_recv[node.index]

        def with_item(value: Any) -> dict[str, Any]:
            kw = kwargs.copy()
            kw[param] = value
            return kw

        async def source(send_item: Callable[[int, dict[str, Any]], None]) -> int | _Skip:
            count: int | None = None
            async for msg in recv:
                if msg[0] == "count":
                    count = msg[1]
                else:
                    send_item(msg[1], with_item(msg[2]))
            res = self.results[up.index]
            if type(res) is _Failed or type(res) is _Skip:
                why = "failed" if type(res) is _Failed else "was skipped"
                return _Skip(f"upstream {up.name!r} {why}")
            if count is None:  # the upstream produced its list at once (e.g. an override)
                count = len(res)
                for i, value in enumerate(res):
                    send_item(i, with_item(value))
            return count

        return await self._run_items(node, span, fn, source, held, in_order=False)

    async def _run_items(self, node: Node, span: Span, fn: Callable[..., Any],
                         source: Callable[[Callable[[int, dict[str, Any]], None]],
                                          Awaitable[int | _Skip]],
                         held: Held, *, in_order: bool) -> Any:
        """Run map items as they become known; results in input order.

        ``in_order``: the source sends items by index, so the child spans need no sort.
        """
        def begin() -> None:
            if span.started is None:
                span.status = "running"
                span.started = self.now()
                self._emit("started", span)

        if in_order:
            begin()
        # else: a map fed item by item starts with its first item (or its end)
        children: dict[str, Span] = {}
        span.children = children
        self.collected_items.pop(node.index, None)  # a retried container runs it afresh
        results: dict[int, Any] = {}
        first_error: list[tuple[int, BaseException]] = []
        stopped: list[str] = []  # why the items still running are being cancelled
        outlets = [self.streams[(node.index, d.index)] for d in node.streams_to]
        simple = node.simple and self.shared.global_limiter is None and fn is node.step.fn
        name, path = span.name, span.path

        async def item(i: int, kw: dict[str, Any], ispan: Span) -> None:
            current_span_var.set(ispan)
            ispan.input = kw
            try:
                await checkpoint_if_cancelled()  # the map was stopped: don't start
                if simple:  # _single_attempt, written out: one coroutine less per item
                    self._start(ispan)
                    try:
                        res = await fn(**kw)
                    except Exception as exc:
                        res = self._failed(ispan, exc)
                    else:
                        self._succeeded(ispan, res)
                else:
                    res = await self._attempts(node, ispan, self._caller(node, fn, kw), held)
            except BaseException:
                if stopped and ispan.reason is None:
                    ispan.reason = (stopped[0] if ispan.started is not None
                                    else f"never started: {stopped[0]}")
                self._cancelled(ispan, node)
                raise
            results[i] = res
            if type(res) is not _Failed:
                for out in outlets:
                    out.send_nowait(("item", i, res))
            elif not first_error:
                first_error.append((i, res.error))
                if not node.collect_items:
                    stopped.append(f"cancelled because item [{i}] failed")
                    inner.cancel_scope.cancel()

        count: int | _Skip | None = None
        async with trio.open_nursery() as inner:
            def start(i: int, kw: dict[str, Any]) -> None:
                if not in_order:
                    begin()
                label = f"{name}[{i}]"
                ispan = Span(label, label if path is name else f"{path}[{i}]")
                children[label] = ispan
                inner.start_soon(item, i, kw, ispan, name=ispan.path)

            count = await source(start)  # a failed item cancels this (count stays None)
            if not isinstance(count, _Skip):
                begin()
            if isinstance(count, _Skip):
                stopped.append(f"cancelled because {count.reason}")
                inner.cancel_scope.cancel()
            else:
                for out in outlets:
                    out.send_nowait(("count", count))
        for out in outlets:
            out.close()
        if not in_order:
            span.children = dict(sorted(children.items(), key=lambda kv: _item_index(kv[0])))
        span.ended = self.now()
        if first_error:
            i, exc = first_error[0]
            if node.collect_items and isinstance(count, int):
                self.collected_items[node.index] = [results[k] for k in range(count)]
            span.reason = f"item [{i}] failed"
            span.attempts = children[f"{name}[{i}]"].attempts
            return self._failed(span, exc, f"in item [{i}]")
        if isinstance(count, _Skip):
            return self._skip(span, count)
        assert count is not None
        values = [results[k] for k in range(count)]
        span.status = "succeeded"
        span.output = values
        span.attempts = 1
        self._emit("finished", span)
        return values

    # --- containers ---------------------------------------------------------------------

    async def _race(self, node: Node, span: Span, held: Held) -> Any:
        """First successful contestant wins; the others are cancelled before we return.

        The contestants' results are kept in ``self.contests`` and given to them only
        when the race settles (``_settle_contestants``): a retried race runs them again.
        """
        if span.attempts > 1:  # a retry: the contestants start afresh
            self._renew_spans(node.members)
        got: dict[Node, Any] = {}
        self.contests[node.index] = got
        errors: list[Exception] = []

        async def contest(m: Node) -> None:
            mspan = self.span_list[m.index]
            current_span_var.set(mspan)
            try:
                await checkpoint_if_cancelled()  # the race is over: don't start
                res = await self._body(m, mspan, held)
            except BaseException:
                self._cancelled(mspan, node)  # (an inner race's contestants settle with
                raise                         # this race: it may yet be retried)
            got[m] = res
            kind = type(res)
            if (span.winner is not None and kind is not _Failed and kind is not _Skip
                    and mspan.reason is not None):  # it lost, but was not interrupted
                mspan.reason += "; it finished before the cancellation reached it"
            if kind is _Failed:
                if isinstance(res.error, Exception):
                    errors.append(res.error)
            elif kind is not _Skip and span.winner is None:
                span.winner = m.name
                for other in node.members:
                    ospan = self.span_list[other.index]
                    if other is not m and ospan.status in ("pending", "running"):
                        ospan.reason = f"lost the race {node.name!r} to {m.name!r}"
                inner.cancel_scope.cancel()

        span.winner = None
        async with trio.open_nursery() as inner:
            for m in node.members:
                inner.start_soon(contest, m, name=m.name)
        if span.winner is not None:
            return got[self.graph.by_name[span.winner]]
        if errors:
            raise ExceptionGroup(
                f"all {len(node.members)} contestants of race {node.name!r} failed", errors)
        raise _Skipped(f"every contestant of race {node.name!r} was skipped")

    def _renew_spans(self, nodes: Sequence[Node]) -> None:
        for m in nodes:
            old = self.span_list[m.index]
            self.span_list[m.index] = self.spans[m.name] = Span(old.name, old.path)
            if m.kind == "race":
                self._renew_spans(m.members)

    def _settle_contestants(self, race: Node) -> None:
        """Give each contestant its final result and wake what waits for it.

        Called once, however the race ended: won, failed, skipped, overridden or
        cancelled (then the run or an enclosing race is stopping it).
        """
        if race.index in self.settled_races:
            return
        self.settled_races.add(race.index)
        got = self.contests.pop(race.index, {})
        rspan = self.span_list[race.index]
        for m in race.members:
            res = got.get(m, MISSING)
            if res is MISSING:
                mspan = self.span_list[m.index]
                if mspan.status == "pending" and not self.stopping:  # never started by it
                    why = f" ({rspan.reason})" if rspan.reason else ""
                    res = self._skip(mspan, _Skip(f"race {race.name!r} did not run it{why}"))
                else:  # cancelled (or, if the run is stopping, left for finish())
                    res = _Skip(mspan.reason or "it was cancelled")
                    self.clean = False
            elif type(res) is _Failed:
                self._record_failure(m, res)
            self.results[m.index] = res
        for m in race.members:
            self._wake(m)

    async def _subflow(self, node: Node, span: Span, spec: SubflowSpec,
                       kwargs: dict[str, Any], held: Held) -> Any:
        sub = spec.graph
        given = {**spec.fixed, **kwargs}
        values = structure_inputs(sub.name, sub.inputs, given,
                                  context=f"subflow {span.path!r}")
        prefix = span.path + "/"
        failures = self.shared.failures
        for key in [k for k in failures if k.startswith(prefix)]:
            del failures[key]  # a retry starts afresh: only the last attempt's failures
        overrides = {k[len(node.name) + 1:]: v for k, v in self.sub_overrides.items()
                     if k.startswith(node.name + "/")}
        children: dict[str, Span] = {}
        span.children = children
        child = Runner(sub, values, self.shared, overrides=overrides, prefix=prefix,
                       spans=children, parent=self.view, parent_runner=self,
                       parent_node=node, held=held)
        try:
            await child.execute()
        except BaseException:
            child.finish(child.why_stopped())
            raise
        if child.stop_reason is not None:
            child.finish(child.stop_reason)
        if child.failure is not None:
            self.subflow_failures[node.index] = child.failure
            raise child.failure.exc
        targets = sub.targets
        if len(targets) == 1:
            res = child.results[targets[0].index]
            if type(res) is _Skip:
                raise _Skipped(f"its output step {span.path + '/' + targets[0].name!r} was "
                               f"skipped ({res.reason})")
        return child.output()

    # --- settling -----------------------------------------------------------------------

    def _settle(self, node: Node, result: Any) -> None:
        self.results[node.index] = result
        for d in node.streams_to:  # item-by-item consumers: no more items will come
            self.streams[(node.index, d.index)].close()
        if type(result) is _Failed:
            failure = self._record_failure(node, result)
            if node.kind == "race":
                self._settle_contestants(node)  # their failures are the race's story
            if node.outcome_consumers == 0:
                self._fail(failure)
                return
            self.unconsumed[node.index] = [failure, node.outcome_consumers]
        self._wake(node)

    def _record_failure(self, node: Node, result: _Failed) -> UnhandledFailure:
        """List a failure in ``result.failures`` (a sub-workflow's under the inner step's
        path) and describe it the way RunFailed will."""
        span = self.span_list[node.index]
        exc = result.error
        inner = self.subflow_failures.get(node.index)
        if inner is not None and inner.exc is exc:  # not, e.g., the subflow's timeout
            span.reason = f"step {inner.path!r} failed"
            self.shared.failures[inner.path] = exc
            return inner
        self.shared.failures[span.path] = exc
        attempts = 1 if result.where == IN_PREDICATE else node.step.retries + 1
        return UnhandledFailure(span.path, node.step.location, span.attempts, attempts, exc,
                                result.where)

    def _wake(self, node: Node) -> None:
        if node.kind == "race":
            self._settle_contestants(node)
        if node.outcome_sources and self.unconsumed:
            self._unconsumed_failures(node)
        if self.stopping:
            return
        pending = self.pending
        start, run_node = self.nursery.start_soon, self._run_node
        for i in node.wakes:
            pending[i] -= 1
            if pending[i] == 0:
                start(run_node, self.nodes[i], name=self.names[i])

    def _unconsumed_failures(self, consumer: Node) -> None:
        """``consumer`` settled: a failure it was to consume and none of its consumers
        did (they were skipped) fails the run after all. A consumer cancelled before it
        could run (a race's loser) still counts as handling it: the flow was built to
        go on without that step, and which loser had started is down to timing."""
        declined = self.span_list[consumer.index].status == "skipped"
        for up in consumer.outcome_sources:
            entry = self.unconsumed.get(up.index)
            if entry is not None and not declined:
                del self.unconsumed[up.index]
            elif entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del self.unconsumed[up.index]
                    self._fail(entry[0])

    def _fail(self, failure: UnhandledFailure) -> None:
        if self.failure is None:
            self.failure = failure
            self.stop(f"cancelled because step {failure.path!r} failed")

    def _emit(self, kind: EventKind, span: Span) -> None:
        on_event = self.shared.on_event
        if on_event is None:
            return
        try:
            on_event(Event(kind, span.path, self.now(), span))
        except Exception as exc:  # a broken callback must not break the run
            warnings.warn(f"on_event callback raised {exc_line(exc)}", RuntimeWarning,
                          stacklevel=1)


def _delay(backoff: BackoffLike, attempt: int) -> float | BackoffError:
    try:
        return backoff_delay(backoff, attempt)
    except BackoffError as error:
        return error


def _as_outcome(result: Any) -> outcome.Outcome[Any]:
    return outcome.Error(result.error) if type(result) is _Failed else outcome.Value(result)


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside (possibly nested) groups, unless it is a ``Cancelled``."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
        return leaves[0]
    return None


def _item_index(name: str) -> int:
    return int(name.rpartition("[")[2].rstrip("]"))


def _raises(value: Any) -> bool:
    """An override that is an exception (instance or class): the step raises it."""
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException))


async def _constant(value: Any) -> Any:
    if _raises(value):
        raise value
    return value


def _is_async(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(inspect.unwrap(fn))
