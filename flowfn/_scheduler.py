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
timeouts, capacity slots) and ``_settle`` (results, failure policy, waking dependents).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import outcome
import trio

from ._errors import GraphError, MapLengthError, Problem, StepTimeout, exc_line
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
from ._step import MISSING, backoff_delay
from ._wiring import Mode


class _Skip:
    """A node settled without output; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Result = outcome.Value[Any] | outcome.Error | _Skip


class _Failure:
    """The first failure nothing handled: it stops the run."""

    def __init__(self, path: str, location: str, attempt: int, attempts: int,
                 exc: BaseException) -> None:
        self.path = path
        self.location = location
        self.attempt = attempt
        self.attempts = attempts
        self.exc = exc


class SubflowFailed(Exception):
    """Carries a sub-workflow's failure (with its full path) up to the parent run."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(f"step {failure.path!r} failed: {exc_line(failure.exc)}")
        self.failure = failure


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
                 parent_runner: Runner | None = None) -> None:
        self.graph = graph
        self.values = values
        self.shared = shared
        self.prefix = prefix
        self.overrides = {graph.by_name[k]: v for k, v in overrides.items() if "/" not in k}
        self.sub_overrides = {k: v for k, v in overrides.items() if "/" in k}
        self.spans = spans if spans is not None else {}
        for n in graph.nodes:
            self.spans[n.name] = Span(n.name, prefix + n.name)
        self.view = RunView(self.spans, parent)
        self.results: list[Result | None] = [None] * len(graph.nodes)
        self.item_results: dict[int, list[Result]] = {}
        self.pending = [len(n.deps) for n in graph.nodes]
        self.failure: _Failure | None = None
        self.stop_reason: str | None = None
        self.streams: dict[tuple[int, int], trio.MemorySendChannel[Any]] = {}
        self.stream_recv: dict[int, trio.MemoryReceiveChannel[Any]] = {}
        self.nursery: trio.Nursery
        self.timed_out = False
        self.timeout: float | None = None
        self.parent_runner = parent_runner

    # --- the run ---------------------------------------------------------------------

    async def execute(self, timeout: float | None = None) -> None:
        """Run the graph to the end (or until it fails or ``timeout`` seconds pass)."""
        for n in self.graph.nodes:
            for d in n.streams_to:
                send, recv = trio.open_memory_channel[Any](math.inf)
                self.streams[(n.index, d.index)] = send
                self.stream_recv[d.index] = recv
        token = current_run_var.set(self.view)  # inherited by every task spawned below
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if timeout is not None:
                    nursery.cancel_scope.deadline = trio.current_time() + timeout
                    self.timeout = timeout
                for n in self.graph.nodes:
                    if not n.deps and n.owner is None:
                        nursery.start_soon(self._run_node, n, name=n.name)
        finally:
            current_run_var.reset(token)
        if self.nursery.cancel_scope.cancelled_caught and self.stop_reason is None:
            self.timed_out = True
            self.stop_reason = f"cancelled: the run timed out after {timeout:g}s"
            finish_spans(self.spans, self.stop_reason)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.nursery.cancel_scope.cancel()

    def output(self) -> Any:
        def value(n: Node) -> Any:
            r = self.results[n.index]
            return r.value if isinstance(r, outcome.Value) else None

        targets = self.graph.targets
        if len(targets) == 1:
            return value(targets[0])
        return {t.name: value(t) for t in targets}

    # --- one node --------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        span = self.spans[node.name]
        if self.stop_reason is not None or self.nursery.cancel_scope.cancel_called:
            return  # the run is stopping (failure or deadline): never start anything new
        current_span_var.set(span)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # an outer cancel: don't start
            result = await self._body(node, span)
        except trio.Cancelled:
            self._cancelled(span)
            raise
        self._settle(node, result)

    def _cancelled(self, span: Span) -> None:
        if span.status in ("pending", "running"):
            span.status = "cancelled"
            if span.reason is None:
                why = self.why_stopped()
                span.reason = why if span.started is not None else f"never started: {why}"
            span.ended = trio.current_time()
            self._emit("cancelled", span)

    def why_stopped(self) -> str:
        """Why this run (or an enclosing one) is cancelling its steps."""
        if self.stop_reason is not None:
            return self.stop_reason
        if self.timeout is not None and self.nursery.cancel_scope.cancel_called:
            return f"cancelled: the run timed out after {self.timeout:g}s"
        if self.parent_runner is not None:
            return self.parent_runner.why_stopped()
        return "cancelled from outside the run"

    async def _body(self, node: Node, span: Span) -> Result:
        """Run a node whose dependencies have settled: skip it, or produce its result."""
        kwargs = self._gather(node, node.bindings, span)
        if isinstance(kwargs, _Skip):
            return self._skip(span, kwargs)
        if node.when is not None:
            verdict = await self._predicate(node, span)
            if verdict is not None:
                return verdict
        span.input = kwargs
        fn = node.step.fn
        if self.overrides:
            override = self.overrides.get(node, MISSING)
            if override is not MISSING:
                if isinstance(override, BaseException) or not callable(override):
                    return await self._attempts(node, span, lambda: _constant(override),
                                                slot=False)
                fn = override
        if node.kind == "race":
            return await self._attempts(node, span, lambda: self._race(node, span), slot=False)
        if node.kind == "subflow":
            spec = node.step.container
            assert isinstance(spec, SubflowSpec)
            return await self._attempts(
                node, span, lambda: self._subflow(node, span, spec, kwargs), slot=False
            )
        if node.stream_from is not None:
            return await self._stream_map(node, span, kwargs, fn)
        if node.mapped:
            return await self._map(node, span, kwargs, fn)
        return await self._attempts(node, span, self._caller(node, fn, kwargs))

    def _caller(self, node: Node, fn: Callable[..., Any],
                kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        """One attempt as a zero-argument coroutine function (the hot path: no wrappers
        around ``async def`` steps)."""
        step = node.step
        executor = step.executor
        if fn is not step.fn:  # an override function: run it the way it is written
            executor = "async" if _is_async(fn) else "inline"
        if executor == "async":
            return lambda: fn(**kwargs)
        abandon = step.timeout is not None
        return lambda: call(fn, kwargs, executor, abandon=abandon)

    def _gather(self, node: Node, bindings: list[Binding], span: Span) -> dict[str, Any] | _Skip:
        kwargs: dict[str, Any] = {}
        results = self.results
        for b in bindings:
            up = b.node
            if up is None:
                value = self.values.get(b.input, MISSING)  # type: ignore[arg-type]
                kwargs[b.param] = b.default if value is MISSING else value
                continue
            if up is node.stream_from and b.each:
                continue
            if b.mode is Mode.OUTCOME_LIST:
                items = self.item_results.get(up.index)
                if items is None:
                    res = results[up.index]
                    if isinstance(res, outcome.Value):
                        items = [outcome.Value(v) for v in res.value]
                    elif isinstance(res, outcome.Error):
                        items = [res]
                    else:
                        return _Skip(f"upstream {up.name!r} was skipped")
                kwargs[b.param] = list(items)
                continue
            res = results[up.index]
            if type(res) is outcome.Value:  # exact type: an ABC isinstance is slow here
                kwargs[b.param] = res if b.mode is Mode.OUTCOME else res.value
            elif type(res) is outcome.Error:
                if b.mode is Mode.OUTCOME:
                    kwargs[b.param] = res
                else:
                    return _Skip(f"upstream {up.name!r} failed")
            elif b.mode is Mode.OPTIONAL:
                kwargs[b.param] = None
            else:
                return _Skip(f"upstream {up.name!r} was skipped"
                             + (f" ({res.reason})" if isinstance(res, _Skip) else ""))
        return kwargs

    async def _predicate(self, node: Node, span: Span) -> Result | None:
        """Evaluate ``when=``: None to go on, or the node's result (skip or failure)."""
        predicate = node.step.when
        if predicate is None or node.when is None:
            return None
        args = self._gather(node, node.when, span)
        if isinstance(args, _Skip):
            return self._skip(span, args)
        try:
            verdict = predicate(**args)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
        except Exception as exc:
            span.status = "failed"
            span.error = exc
            span.reason = "its when= predicate raised"
            span.started = span.ended = trio.current_time()
            return outcome.Error(exc)
        if not verdict:
            return self._skip(span, _Skip("its when= predicate was false"))
        return None

    def _skip(self, span: Span, skip: _Skip) -> _Skip:
        span.status = "skipped"
        span.reason = skip.reason
        self._emit("skipped", span)
        return skip

    # --- attempts: retries, timeouts, slots --------------------------------------------

    async def _attempts(self, node: Node, span: Span, fn: Callable[[], Awaitable[Any]], *,
                        slot: bool = True) -> outcome.Value[Any] | outcome.Error:
        step = node.step
        total = step.retries + 1
        named = self.shared.limiters.get(step.limit) if step.limit else None
        glob = self.shared.global_limiter if slot else None
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
                now = trio.current_time()
                span.log_attempt(Attempt(attempt, span.attempt_started or now, now, exc))
                if attempt < total and isinstance(exc, step.retry_on):
                    span.error = exc
                    self._emit("retrying", span)
                    await trio.sleep(backoff_delay(step.backoff, attempt))
                    continue
                span.status = "failed"
                span.error = exc
                span.ended = now
                self._emit("failed", span)
                return outcome.Error(exc)
            now = trio.current_time()
            span.log_attempt(Attempt(attempt, span.attempt_started or now, now))
            span.status = "succeeded"
            span.error = None
            span.output = value
            span.ended = now
            self._emit("finished", span)
            return outcome.Value(value)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _single_attempt(self, span: Span, fn: Callable[[], Awaitable[Any]],
                              ) -> outcome.Value[Any] | outcome.Error:
        """``_attempts`` for the common step: one try, no slot, no deadline."""
        span.attempts = 1
        span.attempt_started = span.started = trio.current_time()
        span.status = "running"
        if self.shared.on_event is not None:
            self._emit("started", span)
        try:
            value = await fn()
        except Exception as exc:
            span.status = "failed"
            span.error = exc
            span.ended = trio.current_time()
            self._emit("failed", span)
            return outcome.Error(exc)
        span.status = "succeeded"
        span.output = value
        span.ended = trio.current_time()
        if self.shared.on_event is not None:
            self._emit("finished", span)
        return outcome.Value(value)

    async def _attempt(self, node: Node, span: Span, fn: Callable[[], Awaitable[Any]],
                       attempt: int) -> Any:
        now = trio.current_time()
        span.attempt_started = now
        if span.started is None:
            span.started = now
            span.status = "running"
            self._emit("started", span)
        timeout = node.step.timeout
        if timeout is None:
            return await fn()
        with trio.move_on_after(timeout) as scope:
            return await fn()
        # Only our own deadline lands here: when an enclosing scope is cancelled too,
        # trio lets that cancellation propagate instead, so this is never a false timeout.
        del scope
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

    def _item_span(self, span: Span, i: int) -> Span:
        child = Span(f"{span.name}[{i}]", f"{span.path}[{i}]")
        span.children[child.name] = child
        return child

    async def _map(self, node: Node, span: Span, kwargs: dict[str, Any],
                   fn: Callable[..., Any]) -> Result:
        mapped = [b.param for b in node.bindings if b.each]
        try:
            columns = [list(kwargs[p]) for p in mapped]
        except TypeError as exc:
            return self._fail_now(span, exc)
        lengths = {p: len(c) for p, c in zip(mapped, columns, strict=True)}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{p}: {n} items" for p, n in lengths.items())
            return self._fail_now(span, MapLengthError(
                f"step {span.path!r} maps over lists of different lengths ({detail}); "
                "each() parameters are zipped item by item, so their lists must be equally long."
            ))
        n = len(columns[0]) if columns else 0
        items = [dict(kwargs, **{p: col[i] for p, col in zip(mapped, columns, strict=True)})
                 for i in range(n)]
        return await self._run_items(node, span, fn, _from_list(items))

    async def _stream_map(self, node: Node, span: Span, kwargs: dict[str, Any],
                          fn: Callable[..., Any]) -> Result:
        up = node.stream_from
        assert up is not None
        param = next(b.param for b in node.bindings if b.each)
        recv = self.stream_recv[node.index]

        async def source(send_item: Callable[[int, dict[str, Any]], None]) -> int | _Skip:
            count: int | None = None
            async for msg in recv:
                if msg[0] == "count":
                    count = msg[1]
                else:
                    send_item(msg[1], dict(kwargs, **{param: msg[2]}))
            res = self.results[up.index]
            if not isinstance(res, outcome.Value):
                why = "failed" if isinstance(res, outcome.Error) else "was skipped"
                return _Skip(f"upstream {up.name!r} {why}")
            if count is None:  # the upstream produced its list at once (e.g. an override)
                count = len(res.value)
                for i, value in enumerate(res.value):
                    send_item(i, dict(kwargs, **{param: value}))
            return count

        return await self._run_items(node, span, fn, source)

    async def _run_items(self, node: Node, span: Span, fn: Callable[..., Any],
                         source: Callable[[Callable[[int, dict[str, Any]], None]],
                                          Awaitable[int | _Skip]]) -> Result:
        """Run map items as they become known; results in input order."""
        span.status = "running"
        span.started = trio.current_time()
        self._emit("started", span)
        results: dict[int, Result] = {}
        first_error: list[tuple[int, BaseException]] = []
        outlets = [self.streams[(node.index, d.index)] for d in node.streams_to]

        async def item(i: int, kw: dict[str, Any], ispan: Span) -> None:
            current_span_var.set(ispan)
            ispan.input = kw
            try:
                res = await self._attempts(node, ispan, self._caller(node, fn, kw))
            except trio.Cancelled:
                self._cancelled(ispan)
                raise
            results[i] = res
            if isinstance(res, outcome.Value):
                for out in outlets:
                    out.send_nowait(("item", i, res.value))
            elif not first_error:
                first_error.append((i, res.error))
                if not node.collect_items:
                    inner.cancel_scope.cancel()

        async with trio.open_nursery() as inner:
            def start(i: int, kw: dict[str, Any]) -> None:
                ispan = self._item_span(span, i)
                inner.start_soon(item, i, kw, ispan, name=ispan.path)

            count = await source(start)
            if isinstance(count, _Skip):
                inner.cancel_scope.cancel()
            else:
                for out in outlets:
                    out.send_nowait(("count", count))
        for out in outlets:
            out.close()
        span.children = dict(sorted(span.children.items(), key=lambda kv: _item_index(kv[0])))
        span.ended = trio.current_time()
        if isinstance(count, _Skip):
            return self._skip(span, count)
        if first_error:
            i, exc = first_error[0]
            if node.collect_items:
                self.item_results[node.index] = [results[k] for k in range(count)]
            for child in span.children.values():
                if child.status == "cancelled":
                    child.reason = f"cancelled because item [{i}] failed"
            span.status = "failed"
            span.error = exc
            span.reason = f"item [{i}] failed"
            span.attempts = span.children[f"{span.name}[{i}]"].attempts
            self._emit("failed", span)
            return outcome.Error(exc)
        values = [results[k].unwrap() for k in range(count)]  # type: ignore[union-attr]
        span.status = "succeeded"
        span.output = values
        span.attempts = 1
        self._emit("finished", span)
        return outcome.Value(values)

    def _fail_now(self, span: Span, exc: BaseException) -> outcome.Error:
        span.status = "failed"
        span.error = exc
        span.started = span.started or trio.current_time()
        span.ended = trio.current_time()
        self._emit("failed", span)
        return outcome.Error(exc)

    # --- containers ---------------------------------------------------------------------

    async def _race(self, node: Node, span: Span) -> Any:
        """First successful contestant wins; the others are cancelled before we return."""
        errors: list[Exception] = []
        member_results: dict[Node, Result] = {}

        async def contest(m: Node) -> None:
            mspan = self.spans[m.name]
            current_span_var.set(mspan)
            try:
                res = await self._body(m, mspan)
            except trio.Cancelled:
                self._cancelled(mspan)
                raise
            member_results[m] = res
            if isinstance(res, outcome.Value) and span.winner is None:
                span.winner = m.name
                for other in node.members:
                    ospan = self.spans[other.name]
                    if other is not m and ospan.status in ("pending", "running"):
                        ospan.reason = f"lost the race {node.name!r} to {m.name!r}"
                inner.cancel_scope.cancel()
            elif isinstance(res, outcome.Error) and isinstance(res.error, Exception):
                errors.append(res.error)

        async with trio.open_nursery() as inner:
            for m in node.members:
                inner.start_soon(contest, m, name=m.name)
        for m in node.members:
            res = member_results.get(m)
            if res is None:
                res = _Skip(self.spans[m.name].reason or "cancelled")
            self.results[m.index] = res
            if isinstance(res, outcome.Error):
                self.shared.failures[self.prefix + m.name] = res.error
        for m in node.members:
            self._wake(m)
        if span.winner is None:
            raise ExceptionGroup(
                f"all {len(node.members)} contestants of race {node.name!r} failed", errors
            ) if errors else RuntimeError(f"no contestant of race {node.name!r} could run")
        winner = member_results[self.graph.by_name[span.winner]]
        assert isinstance(winner, outcome.Value)
        return winner.value

    async def _subflow(self, node: Node, span: Span, spec: SubflowSpec,
                       kwargs: dict[str, Any]) -> Any:
        sub = spec.graph
        given = {**spec.fixed, **kwargs}
        values = structure_inputs(sub.name, sub.inputs, given,
                                  context=f"subflow {span.path!r}")
        prefix = span.path + "/"
        overrides = {k[len(node.name) + 1:]: v for k, v in self.sub_overrides.items()
                     if k.startswith(node.name + "/")}
        span.children.clear()
        child = Runner(sub, values, self.shared, overrides=overrides, prefix=prefix,
                       spans=span.children, parent=self.view, parent_runner=self)
        await child.execute()
        if child.failure is not None:
            raise SubflowFailed(child.failure)
        return child.output()

    # --- settling -----------------------------------------------------------------------

    def _settle(self, node: Node, result: Result) -> None:
        self.results[node.index] = result
        for d in node.streams_to:  # item-by-item consumers: no more items will come
            self.streams[(node.index, d.index)].close()
        if type(result) is outcome.Error:
            span = self.spans[node.name]
            exc = result.error
            inner = exc.failure if isinstance(exc, SubflowFailed) else None
            path = inner.path if inner else span.path
            self.shared.failures[path] = inner.exc if inner else exc
            if node.outcome_consumers == 0:
                self._fail(inner or _Failure(span.path, node.step.location, span.attempts,
                                             node.step.retries + 1, exc))
                return
        self._wake(node)

    def _wake(self, node: Node) -> None:
        if self.stop_reason is not None or self.nursery.cancel_scope.cancel_called:
            return
        pending = self.pending
        for d in node.dependents:
            pending[d.index] -= 1
            if pending[d.index] == 0 and d.owner is None:
                self.nursery.start_soon(self._run_node, d, name=d.name)

    def _fail(self, failure: _Failure) -> None:
        if self.failure is None:
            self.failure = failure
            self.stop(f"cancelled because step {failure.path!r} failed")

    def _emit(self, kind: EventKind, span: Span) -> None:
        on_event = self.shared.on_event
        if on_event is None:
            return
        try:
            on_event(Event(kind, span.path, trio.current_time(), span))
        except Exception as exc:  # a broken callback must not break the run
            warnings.warn(f"on_event callback raised {exc_line(exc)}", RuntimeWarning,
                          stacklevel=1)


def _item_index(name: str) -> int:
    return int(name.rpartition("[")[2].rstrip("]"))


async def _constant(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


def _is_async(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(inspect.unwrap(fn))


def _from_list(items: list[dict[str, Any]]) -> Callable[
        [Callable[[int, dict[str, Any]], None]], Awaitable[int]]:
    async def source(send_item: Callable[[int, dict[str, Any]], None]) -> int:
        for i, kw in enumerate(items):
            send_item(i, kw)
        return len(items)

    return source


# --- whole-run helpers used by the public API ----------------------------------------------


def check_overrides(graph: Graph, overrides: Mapping[Any, Any], context: str) -> dict[str, Any]:
    """Overrides keyed by name (``branch/step`` paths inside sub-workflows), validated."""
    from ._errors import did_you_mean
    from ._step import Step

    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in overrides.items():
        name = key.name if isinstance(key, Step) else str(key)
        names = _overridable(graph)
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
        spec = n.step.container
        if isinstance(spec, SubflowSpec):
            names.extend(_overridable(spec.graph, prefix + n.name + "/"))
    return names


def check_limits(graph: Graph, limits: Mapping[str, int], context: str) -> None:
    problems: list[Problem] = []
    from ._errors import did_you_mean

    def visit(g: Graph, prefix: str) -> None:
        for n in g.nodes:
            lim = n.step.limit
            if lim is not None and lim not in limits:
                guess = did_you_mean(lim, limits)
                hint = f" Did you mean {guess!r}?" if guess else ""
                problems.append(Problem(f"{n.step.location} in step {prefix + n.name!r}", (
                    f"@step(limit={lim!r}) names a limit that this run does not define.{hint}",
                    f"Pass it to the run: limits={{{lim!r}: 5}}"
                    + (f" (defined: {', '.join(sorted(limits))})." if limits else "."),
                )))
            spec = n.step.container
            if isinstance(spec, SubflowSpec):
                visit(spec.graph, prefix + n.name + "/")

    visit(graph, "")
    for name, cap in limits.items():
        if not isinstance(cap, int) or cap < 1:
            problems.append(Problem(f"limits[{name!r}] = {cap!r}", (
                "a capacity limit must be a whole number >= 1.",
            )))
    if problems:
        raise GraphError(context, problems)


def failure_message(failure: _Failure, spans: dict[str, Span]) -> str:
    exc = failure.exc
    if failure.attempts > 1:
        head = (f"step {failure.path!r} failed on attempt {failure.attempt} of "
                f"{failure.attempts} ({failure.location}):\n  {exc_line(exc)}")
    else:
        head = (f"step {failure.path!r} failed on attempt {failure.attempt}: {exc_line(exc)}"
                f"\n  step defined at {failure.location}")
    return head + cancelled_summary(spans)


def cancelled_summary(spans: dict[str, Span]) -> str:
    running: list[str] = []
    never: list[str] = []

    def visit(d: dict[str, Span]) -> None:
        for s in d.values():
            if s.status == "cancelled" and "[" not in s.name:
                (running if s.started is not None else never).append(s.path)
            visit(s.children)

    visit(spans)
    parts = []
    if running:
        parts.append("cancelled while running: " + ", ".join(sorted(running)))
    if never:
        parts.append("never started: " + ", ".join(sorted(never)))
    return ("\n  " + "; ".join(parts)) if parts else ""


def finish_spans(spans: dict[str, Span], reason: str | None) -> None:
    """Spans that never started, in a stopped run, become ``cancelled`` with a reason."""
    for s in spans.values():
        if s.status == "pending":
            s.status = "cancelled"
            s.reason = f"never started: {reason}" if reason else "never started"
        elif s.status == "running":
            s.status = "cancelled"
            s.reason = s.reason or reason
        finish_spans(s.children, reason)
