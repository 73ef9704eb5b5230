"""A run's state, and the one place every result of every step goes through.

A step's state is data, kept in ``RunState.results`` (by node index) and in the span:

* a bare output value — the step succeeded (no wrapper object per step: most steps do);
* :class:`Failed` — it failed (``error``, and ``where`` when not its own function);
* :class:`Skip` — it settled without output (``reason``);
* :class:`Waiting` — it waits for something outside the run (a person's answer);
* ``PENDING`` — it has not settled yet.

User code never sees these classes, so no step can return one by accident.

**The settle point.** :meth:`RunState.settle` receives every result — a plain step, a map
item, a race contestant, a sub-workflow, a skip, a failure, a stored result fed in by a
resumed run — records it on the span, emits its event and tells the settle hooks (where a
store writes). For a node of this run it then applies the failure policy and wakes the
dependents (:meth:`RunState.release`); a race contestant is released when its race
settles, a map item by its map.

**Why something was cancelled** is data too: a :class:`CancelReason`, rendered into text
only for spans and messages.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import outcome
import trio

from ._aioexec import asyncio_hint
from ._codec import answer_schema
from ._errors import exc_line
from ._executors import Executors
from ._graph import Binding, Graph, Node, plain_path
from ._observe import Observer
from ._result import Event, EventKind, Form, RunView, Span
from ._step import MISSING
from ._wiring import Mode

#: Limits whose slot an enclosing container holds: name -> the one-slot limiter its
#: members take turns on instead of the run's limiter (see ``_attempt.attempts``).
Held = Mapping[str, trio.CapacityLimiter]
NOTHING_HELD: Held = {}


class Skip:
    """A node settled without output; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Failed:
    """A failure; ``where`` says which part failed when it was not the step's own
    function (``"in item [3]"``)."""

    __slots__ = ("error", "where")

    def __init__(self, error: BaseException, where: str = "") -> None:
        self.error = error
        self.where = where


class Waiting:
    """A step waiting for something outside the run, e.g. a person's answer."""

    __slots__ = ("what",)

    def __init__(self, what: Any) -> None:
        self.what = what


PENDING = Skip("it has not run")  # the result of a node that has not settled
IN_PREDICATE = "in its when= predicate"  # where a failure came from, for RunFailed


def is_output(result: Any) -> bool:
    """The result is a step's output (not a failure, skip, wait or nothing yet)."""
    kind = type(result)
    return kind is not Failed and kind is not Skip and kind is not Waiting


def as_outcome(result: Any) -> outcome.Outcome[Any]:
    return outcome.Error(result.error) if type(result) is Failed else outcome.Value(result)


def argument(b: Binding, up: Node, res: Any, handed: list[int],
             collected_items: Mapping[int, list[Any]]) -> Any:
    """One parameter's value from an upstream's result, by the parameter's mode; a
    ``Skip`` when the step cannot run with it. A failed upstream handed over as an
    ``Outcome`` is appended to ``handed``."""
    kind = type(res)
    mode = b.mode
    if mode is Mode.OUTCOME_LIST:
        items = collected_items.get(up.index)
        if items is not None:
            handed.append(up.index)
            return [as_outcome(r) for r in items]
        if kind is Skip:
            return Skip(f"upstream {up.name!r} was skipped")
        if kind is Failed:
            handed.append(up.index)
            return [as_outcome(res)]
        return [outcome.Value(v) for v in res]
    if kind is Failed:
        if mode is not Mode.OUTCOME:
            return Skip(f"upstream {up.name!r} failed")
        handed.append(up.index)
        return outcome.Error(res.error)
    if kind is Skip:
        if mode is not Mode.OPTIONAL or b.each:  # a skipped list has no items to map over
            return Skip(f"upstream {up.name!r} was skipped ({res.reason})")
        return None
    return outcome.Value(res) if mode is Mode.OUTCOME else res


class Skipped(BaseException):
    """Raised by a container that turned out to have nothing to output: every contestant
    of a race, or a sub-workflow's output step, was skipped. The container is skipped
    too (it is not a failure); the message is the reason."""


@dataclass(frozen=True, slots=True)
class CancelReason:
    """Why steps are being cancelled, as data; ``str()`` is what spans and messages say.

    ``kind``: ``"failed"`` (step ``path`` failed), ``"timeout"`` (the run, or the
    container ``path`` of kind ``container``, ran out of its ``seconds``),
    ``"container"`` (container ``path`` stopped: ``detail`` says why), ``"item"``
    (item ``detail`` of a map failed), ``"skip"`` (``detail``), ``"outside"``.
    """

    kind: str
    path: str = ""
    container: str = ""
    seconds: float = 0.0
    detail: str = ""

    def __str__(self) -> str:
        kind = self.kind
        if kind == "failed":
            return f"cancelled because step {self.path!r} failed"
        if kind == "timeout" and not self.path:
            return f"cancelled: the run timed out after {self.seconds:g}s"
        if kind == "timeout":
            return f"cancelled: {self.container} {self.path!r} timed out after {self.seconds:g}s"
        if kind == "container":
            return f"cancelled because {self.container} {self.path!r} {self.detail}"
        if kind == "item":
            return f"cancelled because item [{self.detail}] failed"
        if kind == "skip":
            return f"cancelled because {self.detail}"
        return "cancelled from outside the run"


OUTSIDE = CancelReason("outside")


class UnhandledFailure:
    """The first failure nothing handled: it stops the run (and is what RunFailed says)."""

    def __init__(self, path: str, location: str, attempt: int, attempts: int,
                 exc: BaseException, where: str = "", hint: str | None = None) -> None:
        self.path = path
        self.location = location
        self.attempt = attempt
        self.attempts = attempts
        self.exc = exc
        self.where = where
        self.hint = hint  # what to change, when the failure says more than its error


#: Called with (span, result) for every settled result, before dependents wake.
SettleHook = Callable[[Span, Any], None]


class Caching(Protocol):
    """What ``@step(cache=True)`` needs from a run's store (``_durable.Durable``)."""

    def cached(self, node: Node, span: Span,
               kwargs: Mapping[str, Any]) -> tuple[str | None, Any]: ...

    def remember(self, key: str, node: Node, value: Any, path: str | None = None) -> None: ...

    def check_output(self, span: Span, result: Any) -> Any: ...


class Asks:
    """The answers and deadlines of a run's ``ask()`` steps, by path (or name).

    ``deadlines`` holds the wall-clock (UTC) instant of every question asked so far,
    stored ones included: a deadline is fixed when its question is first asked. Under a
    test clock (``virtual``), wall-clock time moves with the run's virtual time.
    """

    def __init__(self, answers: Mapping[str, Any] | None = None,
                 deadlines: Mapping[str, datetime] | None = None, *,
                 virtual: bool = False) -> None:
        self.answers = dict(answers or {})
        self.deadlines = dict(deadlines or {})
        self.virtual = virtual
        self.started = datetime.now(UTC)
        self.clock_start = trio.current_time() if virtual else 0.0

    def answer(self, path: str, name: str) -> Any:
        """The answer for the ask at ``path``: by its path, by its path without item
        indices (``per[2]/ok`` -> ``per/ok``: one answer for every item), or by name."""
        answers = self.answers
        if path in answers:
            return answers[path]
        plain = plain_path(path)
        return answers[plain] if plain in answers else answers.get(name, MISSING)

    def deadline(self, path: str, relative: timedelta | None) -> datetime | None:
        stored = self.deadlines.get(path)
        if stored is not None or relative is None:
            return stored
        self.deadlines[path] = instant = self.now() + relative
        return instant

    def now(self) -> datetime:
        if self.virtual:
            return self.started + timedelta(seconds=trio.current_time() - self.clock_start)
        return datetime.now(UTC)

    def schema(self, answer_type: Any) -> dict[str, Any]:
        return answer_schema(answer_type)


class Shared:
    """State shared by a run and all its sub-workflow runs."""

    def __init__(self, limiters: dict[str, trio.CapacityLimiter],
                 global_limiter: trio.CapacityLimiter | None,
                 on_event: Callable[[Event], object] | None,
                 executors: Executors,
                 settle_hooks: tuple[SettleHook, ...] = (),
                 asks: Asks | None = None, durable: Caching | None = None,
                 observers: tuple[Observer, ...] = (), run_id: str = "") -> None:
        self.limiters = limiters
        self.global_limiter = global_limiter
        self.on_event = on_event
        self.executors = executors
        self.settle_hooks = settle_hooks
        self.asks = asks if asks is not None else Asks()
        self.durable = durable
        self.observers = observers  # logging, OpenTelemetry (``_observe``)
        self.run_id = run_id
        self.failures: dict[str, BaseException] = {}
        self.epoch = time.time() - trio.current_time()  # wall-clock seconds at run-clock 0
        self.waiting: list[Form] = []  # the forms of ask() steps waiting for an answer


class RunState:
    """One execution of one graph: its results, spans, and the settle point.

    The scheduler (``_scheduler.Runner``) subclasses this with what drives the run; step
    kinds and attempts (``_kinds``, ``_attempt``) work on a ``RunState``.
    """

    nursery: trio.Nursery

    def __init__(self, graph: Graph, values: dict[str, Any], shared: Shared, *,
                 prefix: str, spans: dict[str, Span] | None,
                 parent: RunView | None, run_id: str = "") -> None:
        self.graph = graph
        self.values = values
        self.shared = shared
        self.prefix = prefix
        names = graph.names
        # by node index: the hot path avoids dict lookups
        epoch = self.epoch = shared.epoch
        self.span_list = ([Span(name, prefix + name, epoch) for name in names] if prefix
                          else [Span(name, name, epoch) for name in names])
        self.spans = spans if spans is not None else {}
        self.spans.update(zip(names, self.span_list, strict=True))
        self.view = RunView(self.spans, parent, run_id)
        self.results: list[Any] = [PENDING] * len(graph.nodes)
        self.clean = True  # nothing failed or was skipped yet: arguments need no checks
        self.waits = 0  # steps waiting for something outside the run (ask() answers)
        self.failure: UnhandledFailure | None = None
        self.stop_reason: CancelReason | None = None
        # Set by stop(). Checked instead of the nursery's cancel scope, whose
        # ``cancel_called`` reads the clock; a run deadline is checked on its own.
        self.stopping = False
        self.emits = shared.on_event is not None or bool(shared.observers)
        self.hooks = shared.settle_hooks
        self.durable = shared.durable
        self.now: Callable[[], float] = trio.current_time
        # The failure inside each failed sub-workflow (by node index): the subflow step
        # fails with the inner step's own exception, so ``retry_on=`` and ``Outcome``
        # consumers see what really went wrong, and the run names the inner step's path.
        self.subflow_failures: dict[int, UnhandledFailure] = {}
        # The deadline scope of each running container step (race, sub-workflow), so that
        # the steps it cancels can say why.
        self.deadline_scopes: dict[int, tuple[trio.CancelScope, float]] = {}

        # Failed maps read as list[Outcome]: every item's result, by map node index.
        self.collected_items: dict[int, list[Any]] = {}
        # Pipelined maps: item channels by (upstream, downstream) node index.
        self.streams: dict[tuple[int, int], trio.MemorySendChannel[Any]] = {}
        self.stream_recv: dict[int, trio.MemoryReceiveChannel[Any]] = {}
        self.settled: Mapping[str, Any] = {}  # set by the scheduler (a resumed run)

    # --- what the scheduler provides ----------------------------------------------------

    async def execute(self, timeout: float | None = None) -> None:
        """Run the graph to the end (or until it fails or ``timeout`` seconds pass)."""
        raise NotImplementedError

    async def body(self, node: Node, span: Span, held: Held) -> Any:
        """Run a node whose dependencies have settled: its result, not yet settled."""
        raise NotImplementedError

    def child(self, node: Node, graph: Graph, values: dict[str, Any],
              spans: dict[str, Span], held: Held, path: str) -> RunState:
        """A run of ``graph`` inside ``node`` (a sub-workflow) whose span is at ``path``."""
        raise NotImplementedError

    def release(self, node: Node, result: Any, *, member: bool = False) -> None:
        """Keep a node's result, apply the failure policy, wake its dependents
        (``member``: a race contestant, whose failure is its race's story)."""
        raise NotImplementedError

    def why_stopped(self) -> CancelReason:
        """Why this run (or an enclosing one) is cancelling its steps."""
        raise NotImplementedError

    def output(self) -> Any:
        """The targets' output."""
        raise NotImplementedError

    def record_failure(self, node: Node, result: Failed) -> UnhandledFailure:
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
                                result.where, asyncio_hint(exc, node.step.executor))

    # --- the settle point ----------------------------------------------------------------

    def start(self, span: Span) -> None:
        """A step (or item) begins its first attempt."""
        span.attempts = 1
        span.started = self.now()
        span.status = "running"
        if self.emits:
            self.emit("started", span)

    def settle(self, span: Span, result: Any, node: Node | None = None) -> Any:
        """Record ``result`` on ``span``, emit its event, tell the hooks; for a ``node``
        of this run, release it (failure policy, dependents). Returns ``result``."""
        kind = type(result)
        if self.durable is not None and kind is not Failed and kind is not Skip and (
                kind is not Waiting):
            result = self.durable.check_output(span, result)  # can the store hold it?
            kind = type(result)
        if kind is not Failed and kind is not Skip and kind is not Waiting:
            span.status = "succeeded"
            span.output = result
            span.ended = self.now()
            if self.emits:
                self.emit("finished", span)
        elif kind is Failed:
            self._failed(span, result.error)
        elif kind is Skip:
            self._skipped(span, result.reason)
        else:
            span.status = "waiting"
            self.clean = False
            self.waits += 1
            if type(result.what) is Form:
                self.shared.waiting.append(result.what)
            self.emit("waiting", span)
        if self.hooks:
            for hook in self.hooks:
                hook(span, result)
        if node is not None:
            self.release(node, result)
        return result

    def _failed(self, span: Span, exc: BaseException) -> None:
        self.clean = False
        now = self.now()
        span.status = "failed"
        span.error = exc
        span.attempts = span.attempts or 1
        if span.started is None:
            span.started = now
        span.ended = now
        self.emit("failed", span)

    def _skipped(self, span: Span, reason: str) -> None:
        self.clean = False
        if span.started is not None and span.ended is None:  # a container found nothing
            span.ended = self.now()
        span.status = "skipped"
        span.reason = reason
        self.emit("skipped", span)

    def cancelled(self, span: Span, reason: CancelReason) -> None:
        """A step (or item) was cancelled: running, or before it could start."""
        if span.status not in ("pending", "running"):
            return
        span.status = "cancelled"
        if span.reason is None:
            span.cancel = reason
            span.reason = str(reason) if span.started is not None else (
                f"never started: {reason}")
        span.ended = self.now()
        self.emit("cancelled", span)

    def emit(self, kind: EventKind, span: Span) -> None:
        if not self.emits:
            return
        shared = self.shared
        event = Event(kind, span.path, self.now(), span)
        for observer in shared.observers:
            try:
                observer.event(event, shared.run_id)
            except Exception as exc:  # a broken exporter must not break the run
                warnings.warn(f"flowfn observer raised {exc_line(exc)}", RuntimeWarning,
                              stacklevel=1)
        on_event = shared.on_event
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception as exc:  # a broken callback must not break the run
            warnings.warn(f"on_event callback raised {exc_line(exc)}", RuntimeWarning,
                          stacklevel=1)

    # --- stopping --------------------------------------------------------------------

    def stop(self, reason: CancelReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopping = True
        self.nursery.cancel_scope.cancel()

    def fail(self, failure: UnhandledFailure) -> None:
        if self.failure is None:
            self.failure = failure
            self.stop(CancelReason("failed", failure.path))

    def why_cancelled(self, owner: Node | None) -> CancelReason:
        """Why a step running inside ``owner`` (a race, a map or a sub-workflow node of
        this run; None for the run itself) is being cancelled."""
        while owner is not None:
            ospan = self.span_list[owner.index]
            deadline = self.deadline_scopes.get(owner.index)
            if deadline is not None and deadline[0].cancel_called:
                return CancelReason("timeout", ospan.path, owner.kind, deadline[1])
            if ospan.reason is not None and ospan.status in ("running", "cancelled"):
                return CancelReason("container", ospan.path, owner.kind, detail=ospan.reason)
            owner = owner.owner
        return self.why_stopped()

    def finish(self, reason: CancelReason) -> None:
        """After a stopped run: spans still pending or running become ``cancelled``."""
        now = self.now()

        def visit(spans: Mapping[str, Span]) -> None:
            for span in spans.values():
                if span.status in ("pending", "running"):
                    span.status = "cancelled"
                    if span.started is None:
                        span.cancel = reason
                        span.reason = f"never started: {reason}"
                    else:
                        if span.reason is None:
                            span.cancel = reason
                            span.reason = str(reason)
                        span.ended = now if span.ended is None else span.ended
                    self.emit("cancelled", span)
                visit(span.children)

        visit(self.spans)
