"""What running a node means, one class per kind of step: function, map, race, subflow.

The scheduler calls every kind through the same two methods: ``run`` (the node's inputs
are gathered and its ``when=`` passed; produce its result) and ``release`` (the node
settled; give its members their results). It picks the kind with :func:`kind_of` and
knows none of them by name. A new kind (a human ``ask``) is a class here and a line in
``kind_of``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import trio

from ._attempt import attempts, caller, raises, thunk
from ._errors import MapLengthError, StepTimeout
from ._graph import Node
from ._inputs import structure_inputs
from ._items import Items, SendItem
from ._result import Form, Span, current_span_var
from ._state import (
    Failed,
    Held,
    RunState,
    Skip,
    Skipped,
    Waiting,
    is_output,
)
from ._step import MISSING

checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled


class Kind:
    """A kind of step. ``run`` returns the node's result as data (not yet settled)."""

    container = False  # runs other steps inside its span (no executor, no slot)

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        raise NotImplementedError

    def release(self, run: RunState, node: Node) -> None:
        """The node settled: settle what runs inside it (nothing, for most kinds)."""


class FunctionKind(Kind):
    """A plain step: its function, once per attempt, through its executor; with
    ``@step(cache=True)`` and a store, the stored output of an identical earlier call."""

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        durable = run.shared.durable
        if durable is None or not getattr(node.step, "cache", False) or fn is not node.step.fn:
            return await attempts(run, node, span, caller(run, node, span, fn, kwargs), held)
        key, value = durable.cached(node, span, kwargs)
        if value is not MISSING:
            run.start(span)
            span.cached = True
            return value
        result = await attempts(run, node, span, caller(run, node, span, fn, kwargs), held)
        if key is not None and is_output(result):
            durable.remember(key, node, result, span.path)
        return result


def holding(node: Node, held: Held) -> Held:
    """The limits held inside a container: with ``limit=`` it holds one slot of that
    limit, which its members naming the same limit take turns on."""
    limit = node.step.limit
    return {**held, limit: trio.CapacityLimiter(1)} if limit else held


# --- maps ---------------------------------------------------------------------------------


class MapKind(Kind):
    """``each()`` parameters: one item per element (zipped), run concurrently."""

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        mapped = [b.param for b in node.bindings if b.each]
        try:
            columns = [list(kwargs[p]) for p in mapped]
        except TypeError as exc:
            return Failed(exc)
        if node.map_mode == "product":  # one item per combination, in product order
            columns = [list(col) for col in zip(*itertools.product(*columns), strict=True)]
            if not columns:  # an empty list among them: no combination at all
                columns = [[] for _ in mapped]
        lengths = {p: len(c) for p, c in zip(mapped, columns, strict=True)}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{p}: {n} item{'' if n == 1 else 's'}"
                               for p, n in lengths.items())
            return Failed(MapLengthError(
                f"step {span.path!r} maps over lists of different lengths ({detail}); "
                "each() parameters are zipped item by item, so their lists must be equally long."
            ))

        async def source(send_item: SendItem) -> int:
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

        return await Items(run, node, span, fn, held, in_order=True).run(source)


class StreamMapKind(Kind):
    """A map fed item by item by an upstream map (a pipeline)."""

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        up = node.stream_from
        assert up is not None
        param = next(b.param for b in node.bindings if b.each)
        recv = run.stream_recv[node.index]

        def with_item(value: Any) -> dict[str, Any]:
            kw = kwargs.copy()
            kw[param] = value
            return kw

        async def source(send_item: SendItem) -> int | Skip:
            count: int | None = None
            async for msg in recv:
                if msg[0] == "count":
                    count = msg[1]
                else:
                    send_item(msg[1], with_item(msg[2]))
            res = run.results[up.index]
            if not is_output(res):
                why = "failed" if type(res) is Failed else "was skipped"
                return Skip(f"upstream {up.name!r} {why}")
            if count is None:  # the upstream produced its list at once (e.g. an override)
                count = len(res)
                for i, value in enumerate(res):
                    send_item(i, with_item(value))
            return count

        return await Items(run, node, span, fn, held, in_order=False).run(source)


# --- containers -------------------------------------------------------------------------


class RaceKind(Kind):
    """First successful contestant wins; the others are cancelled before it returns.

    The contestants' results are kept (``contests``) and given to them only when the race
    settles (``release``): a retried race runs them again.
    """

    container = True

    def __init__(self) -> None:
        self.contests: dict[tuple[int, int], dict[Node, Any]] = {}
        self.released: set[tuple[int, int]] = set()

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        inside = holding(node, held)
        try:
            return await attempts(run, node, span,
                                  thunk(lambda: self._race(run, node, span, inside)),
                                  held, container=True)
        except Skipped as skipped:
            return Skip(str(skipped))

    async def _race(self, run: RunState, node: Node, span: Span, held: Held) -> Any:
        if span.attempts > 1:  # a retry: the contestants start afresh
            _renew_spans(run, node.members)
        got: dict[Node, Any] = {}
        self.contests[(id(run), node.index)] = got
        errors: list[Exception] = []

        async def contest(m: Node) -> None:
            mspan = run.span_list[m.index]
            current_span_var.set(mspan)
            try:
                await checkpoint_if_cancelled()  # the race is over: don't start
                res = await run.body(m, mspan, held)
                if type(res) is Waiting:  # asked, not answered: settled once the race is over
                    waiting.append((m, mspan, res))
                    got[m] = res
                    return
                res = run.settle(mspan, res)
            except BaseException:
                run.cancelled(mspan, run.why_cancelled(node))  # (an inner race's contestants
                raise                                          # settle with this race)
            got[m] = res
            if span.winner is not None and is_output(res) and mspan.reason is not None:
                mspan.reason += "; it finished before the cancellation reached it"
            if type(res) is Failed:
                if isinstance(res.error, Exception):
                    errors.append(res.error)
            elif type(res) is not Skip and span.winner is None:
                span.winner = m.name
                for other in node.members:
                    ospan = run.span_list[other.index]
                    if other is not m and ospan.status in ("pending", "running"):
                        ospan.reason = f"lost the race {node.name!r} to {m.name!r}"
                inner.cancel_scope.cancel()

        span.winner = None
        waiting: list[tuple[Node, Span, Any]] = []
        async with trio.open_nursery() as inner:
            for m in node.members:
                inner.start_soon(contest, m, name=m.name)
        if span.winner is not None:
            for m, mspan, _ in waiting:  # a rival won: the question need not be asked
                got[m] = run.settle(mspan, Skip(f"lost the race {node.name!r} to "
                                                f"{span.winner!r}"))
            return got[run.graph.by_name[span.winner]]
        if waiting:  # no winner yet, and someone still has to answer: the race waits too
            for m, mspan, res in waiting:
                got[m] = run.settle(mspan, res)
            return Waiting(None)
        if errors:
            raise ExceptionGroup(
                f"all {len(node.members)} contestants of race {node.name!r} failed", errors)
        raise Skipped(f"every contestant of race {node.name!r} was skipped")

    def release(self, run: RunState, node: Node) -> None:
        """Give each contestant its final result and wake what waits for it.

        Called once, however the race ended: won, failed, skipped, overridden or
        cancelled (then the run or an enclosing race is stopping it).
        """
        key = (id(run), node.index)
        if key in self.released:
            return
        self.released.add(key)
        got = self.contests.pop(key, {})
        rspan = run.span_list[node.index]
        for m in node.members:
            res = got.get(m, MISSING)
            if res is MISSING:
                mspan = run.span_list[m.index]
                if mspan.status == "pending" and not run.stopping:  # never started by it
                    why = f" ({rspan.reason})" if rspan.reason else ""
                    res = run.settle(mspan, Skip(f"race {node.name!r} did not run it{why}"))
                else:  # cancelled (or, if the run is stopping, left for finish())
                    res = Skip(mspan.reason or "it was cancelled")
                    run.clean = False
            elif type(res) is Failed:
                run.record_failure(m, res)
            run.results[m.index] = res
        for m in node.members:
            run.release(m, run.results[m.index], member=True)


def _renew_spans(run: RunState, nodes: tuple[Node, ...]) -> None:
    for m in nodes:
        old = run.span_list[m.index]
        run.span_list[m.index] = run.spans[m.name] = Span(old.name, old.path, old.epoch)
        if m.members:
            _renew_spans(run, m.members)


class SubflowKind(Kind):
    """A whole graph run as one step, in a child run that shares this run's limits."""

    container = True

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        inside = holding(node, held)
        try:
            return await attempts(
                run, node, span, thunk(lambda: self.body(run, node, span, kwargs, inside)),
                held, container=True)
        except Skipped as skipped:
            return Skip(str(skipped))

    async def body(self, run: RunState, node: Node, span: Span,
                   kwargs: dict[str, Any], held: Held) -> Any:
        """One run of the sub-graph, its spans under ``span``."""
        spec: Any = node.step.container
        sub = spec.graph
        given = {**spec.fixed, **kwargs}
        values = structure_inputs(sub.name, sub.inputs, given,
                                  context=f"subflow {span.path!r}")
        prefix = span.path + "/"
        failures = run.shared.failures
        for key in [k for k in failures if k.startswith(prefix)]:
            del failures[key]  # a retry starts afresh: only the last attempt's failures
        children: dict[str, Span] = {}
        span.children = children
        child = run.child(node, sub, values, children, held, span.path)
        try:
            await child.execute()
        except BaseException:
            child.finish(child.why_stopped())
            raise
        if child.stop_reason is not None:
            child.finish(child.stop_reason)
        if child.failure is not None:
            run.subflow_failures[node.index] = child.failure
            raise child.failure.exc
        if child.waits:
            return Waiting(None)  # an ask() inside waits: so does the subflow
        targets = sub.targets
        if len(targets) == 1:
            res = child.results[targets[0].index]
            if type(res) is Skip:
                raise Skipped(f"its output step {span.path + '/' + targets[0].name!r} was "
                              f"skipped ({res.reason})")
        return child.output()


class AskKind(Kind):
    """A person's answer: given (``answers=``, or stored), defaulted after the deadline,
    or — without either — the step waits and the run returns ``"waiting"``."""

    container = True

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        spec: Any = node.step.container
        asks = run.shared.asks
        run.start(span)
        answer = asks.answer(span.path, node.name)
        if answer is not MISSING:
            return answer
        deadline = asks.deadline(span.path, spec.deadline)
        if deadline is not None and asks.virtual:
            # a test clock: wait for the deadline in virtual time (no real time passes)
            await trio.sleep(max(0.0, (deadline - asks.now()).total_seconds()))
        if deadline is not None and asks.now() >= deadline:
            return _deadline_passed(span, spec)
        return Waiting(Form(node.name, span.path, spec.title, asks.schema(spec.answer_type),
                            deadline))


def _deadline_passed(span: Span, spec: Any) -> Any:
    value = spec.on_deadline
    span.reason = "its deadline passed without an answer"
    if value is MISSING:
        return Failed(StepTimeout(
            f"ask {span.path!r} passed its deadline without an answer (no on_deadline=)"))
    if raises(value):
        return Failed(value if isinstance(value, BaseException) else value())
    return value


class MappedSubflowKind(MapKind):
    """``subflow(flow, inputs={"x": each(xs)})``: the sub-graph once per item, each
    item's steps under its own path (``name[3]/step``)."""

    container = True

    async def run(self, run: RunState, node: Node, span: Span, kwargs: dict[str, Any],
                  fn: Callable[..., Any], held: Held) -> Any:
        inside = holding(node, held)

        async def one(**item: Any) -> Any:
            ispan = current_span_var.get()
            try:
                return await _SUBFLOW.body(run, node, ispan, item, inside)
            except Skipped as skipped:  # an item has no output to put in the list
                raise LookupError(f"subflow item {ispan.path!r} has no output: {skipped}") \
                    from None

        return await super().run(run, node, span, kwargs, one, held)


_FUNCTION, _MAP, _STREAM, _SUBFLOW = FunctionKind(), MapKind(), StreamMapKind(), SubflowKind()
_MAPPED_SUBFLOW = MappedSubflowKind()
_ASK = AskKind()


def kind_of(node: Node, races: RaceKind) -> Kind:
    """The runtime of a node (``races``: the run's race bookkeeping)."""
    if node.kind == "race":
        return races
    if node.kind == "subflow":
        return _MAPPED_SUBFLOW if node.mapped else _SUBFLOW
    if node.kind == "ask":
        return _ASK
    if node.stream_from is not None:
        return _STREAM
    if node.mapped:
        return _MAP
    return _FUNCTION
