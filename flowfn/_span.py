"""A step's record and what a running step can see: Span, Attempt, Event, Form, and the
context variables behind ``current_span()`` and ``step_span()``.

A :class:`Span` is created when a step is scheduled and is final when the step settles.
Inside a step, :func:`current_span` and :func:`step_span` read the run through context
variables, which trio copies into every task and flowfn's executors into every worker
thread, so they work in ``async def`` and ``def`` steps alike.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ._step import MISSING, Step

SpanStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled",
                     "waiting"]
RunStatus = Literal["succeeded", "failed", "waiting", "cancelled"]
EventKind = Literal["started", "finished", "failed", "skipped", "retrying", "cancelled",
                    "waiting"]


@dataclass(frozen=True)
class Attempt:
    """One try of a step: when it ran and how it ended (``error`` None on success)."""

    number: int
    started: float
    ended: float
    error: BaseException | None = None


@dataclass(frozen=True)
class Form:
    """A question an ``ask()`` step is waiting for a person to answer.

    ``schema`` is the JSON Schema of the answer (an object at the top level, so a form can
    be drawn from it); ``deadline`` the UTC instant after which ``on_deadline`` applies.
    """

    name: str
    path: str
    title: str
    schema: dict[str, Any]
    deadline: datetime | None = None


_NO_INPUT: Mapping[str, Any] = MappingProxyType({})
_NO_CHILDREN: Mapping[str, Span] = MappingProxyType({})


class LazyInput:
    """The arguments of one run's steps, read back from the run's results when asked for.

    A run keeps every step's output anyway; a step whose arguments are all upstream
    outputs (the scheduler's hot path) was called with exactly those, so its span points
    here (one object per run) instead of keeping a dict of them: at 100,000 steps, the
    dicts were a third of what a run added to memory.
    """

    __slots__ = ("nodes", "results")

    def __init__(self, nodes: Mapping[str, Any], results: list[Any]) -> None:
        self.nodes = nodes  # the graph's nodes by name
        self.results = results  # the run's results by node index

    def of(self, span: Span) -> dict[str, Any]:
        results = self.results
        return {b.param: results[b.node.index] for b in self.nodes[span.name].bindings}


class Span:
    """The record of one step (or one map item) in one run.

    Times are ``trio.current_time()`` values (virtual under a ``MockClock``). Any other
    attribute set on a span (``current_span().user_status = "active"``) is kept as a
    custom attribute and listed in :attr:`attributes`.
    """

    # A run creates one span per step up front, so spans are kept small: what every span
    # sets is a slot; what few spans set (a reason, a race's winner, a container's
    # children) is a class-level default below, stored in the span's ``__dict__`` only
    # when set -- the ``__dict__`` that also holds custom attributes (see ``attributes``).
    __slots__ = ("__dict__", "_input", "attempts", "ended", "epoch", "error", "name", "output",
                 "path", "started", "status")

    reason: str | None = None
    cancel: Any = None  # why it was cancelled, as data (a _state.CancelReason)
    # Containers (maps, sub-workflows) give their span a dict of its own; every other
    # span shares this empty, read-only one.
    children: Mapping[str, Span] = _NO_CHILDREN
    winner: str | None = None  # races only
    abandoned: bool = False  # a thread left running after a timeout
    cached: bool = False  # the output came from the store's cache
    # Set by retried, timed or limited steps only (a single try is the span itself).
    attempt_started: float | None = None
    _log: tuple[Attempt, ...] = ()

    def __init__(self, name: str, path: str, epoch: float | None = None) -> None:
        self.name = name
        self.path = path  # "branch1/shout" inside sub-workflows
        self.status: SpanStatus = "pending"
        self._input: Mapping[str, Any] | LazyInput = _NO_INPUT
        self.output: Any = None
        self.error: BaseException | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.attempts = 0
        self.epoch = epoch  # wall-clock seconds at run-clock 0, for started_at / ended_at

    @property
    def input(self) -> Mapping[str, Any]:
        """The keyword arguments the step was called with."""
        given = self._input
        return given.of(self) if type(given) is LazyInput else given  # type: ignore[return-value]

    @input.setter
    def input(self, value: Mapping[str, Any] | LazyInput) -> None:
        self._input = value

    if TYPE_CHECKING:  # custom attributes: ``current_span().user_status = "active"``
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    @property
    def attempt_log(self) -> list[Attempt]:
        """Every attempt, in order: when it started and ended, and its error if it failed."""
        if self._log or self.started is None or self.ended is None or self.attempts != 1:
            return list(self._log)
        # A single try is not logged while running (the hot path); it is the span itself.
        return [Attempt(1, self.started, self.ended, self.error)]

    def log_attempt(self, attempt: Attempt) -> None:
        self._log = (*self._log, attempt)

    @property
    def idempotency_key(self) -> str:
        """``"{run_id}/{path}"``: the same for every attempt and every resume of this step
        in this run — pass it to external calls that must not happen twice."""
        try:
            view = current_run_var.get()
        except LookupError:
            raise RuntimeError("idempotency_key is only known inside a running step") from None
        return f"{view.run_id}/{self.path}"

    @property
    def started_at(self) -> datetime | None:
        """When the step started, as a UTC ``datetime`` (wall clock; virtual under a
        test clock). Known once the run has ended."""
        return self._wall(self.started)

    @property
    def ended_at(self) -> datetime | None:
        """When the step ended, as a UTC ``datetime``. Known once the run has ended."""
        return self._wall(self.ended)

    def _wall(self, clock: float | None) -> datetime | None:
        if clock is None or self.epoch is None:
            return None
        return datetime.fromtimestamp(self.epoch + clock, UTC)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def attributes(self) -> dict[str, Any]:
        """The custom attributes a step set on its span."""
        return {k: v for k, v in self.__dict__.items() if k not in RARE}

    def __repr__(self) -> str:
        extra = f" reason={self.reason!r}" if self.reason else ""
        return f"<Span {self.path} {self.status}{extra}>"


#: The span's own attributes that live in its ``__dict__`` when set (not custom ones).
RARE = frozenset({"_log", "abandoned", "attempt_started", "cached", "cancel", "children",
                  "reason", "winner"})


class Event(NamedTuple):
    """A step changed state. ``step`` is the step's name (its path inside sub-workflows)."""

    kind: EventKind
    step: str
    time: float
    span: Span



# --- context inside steps ----------------------------------------------------------------


class RunView:
    """What a running step can see of its run: the spans, and the parent run's view."""

    def __init__(self, spans: dict[str, Span], parent: RunView | None,
                 run_id: str = "") -> None:
        self.spans = spans
        self.parent = parent
        self.run_id: str = parent.run_id if parent is not None else run_id


current_span_var: contextvars.ContextVar[Span] = contextvars.ContextVar("flowfn_span")
current_run_var: contextvars.ContextVar[RunView] = contextvars.ContextVar("flowfn_run")


def current_span() -> Span:
    """This step's span. Set custom attributes on it for other steps and for traces."""
    try:
        return current_span_var.get()
    except LookupError:
        raise RuntimeError(
            "current_span() was called outside a running step. It only works inside a "
            "function that run() is executing."
        ) from None


def step_span(step: Step[Any, Any] | str, default: Any = MISSING) -> Any:
    """The span of another step in this run (or an enclosing one).

    ``default`` is returned when that step was skipped or has not run; without it, that
    case raises ``LookupError``.
    """
    name = step.name if isinstance(step, Step) else step
    try:
        view: RunView | None = current_run_var.get()
    except LookupError:
        raise RuntimeError(
            "step_span() was called outside a running step. It only works inside a "
            "function that run() is executing."
        ) from None
    while view is not None:
        span = view.spans.get(name)
        if span is not None:
            if span.status in ("pending", "skipped"):
                break
            return span
        view = view.parent
    if default is not MISSING:
        return default
    raise LookupError(
        f"step_span({name!r}): that step was skipped or has not run. "
        f"Pass default=None to handle it: step_span({name!r}, default=None)."
    )
