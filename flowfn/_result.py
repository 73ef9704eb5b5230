"""What a run leaves behind: spans, the result object, events, and the step context.

A :class:`Span` is created when a step is scheduled and is final when the step settles.
Inside a step, :func:`current_span` and :func:`step_span` read the run through
context variables, which trio copies into every task and ``trio.to_thread`` into every
worker thread, so they work in ``async def`` and ``def`` steps alike.
"""

from __future__ import annotations

import contextvars
import copy
import copyreg
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ._errors import exc_line
from ._render import chrome_trace, gantt, result_json, run_report
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


class Span:
    """The record of one step (or one map item) in one run.

    Times are ``trio.current_time()`` values (virtual under a ``MockClock``). Any other
    attribute set on a span (``current_span().user_status = "active"``) is kept as a
    custom attribute and listed in :attr:`attributes`.
    """

    # Slots keep a span small (a run creates one per step up front, and small objects
    # are what keeps a 10,000-step run in the CPU cache); ``__dict__`` is only created
    # when a step sets a custom attribute on its span.
    __slots__ = ("__dict__", "_log", "abandoned", "attempt_started", "attempts", "cached",
                 "cancel", "children", "ended", "epoch", "error", "input", "name", "output",
                 "path", "reason", "started", "status", "winner")

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path  # "branch1/shout" inside sub-workflows
        self.status: SpanStatus = "pending"
        self.reason: str | None = None
        self.cancel: Any = None  # why it was cancelled, as data (a _state.CancelReason)
        self.input: Mapping[str, Any] = _NO_INPUT
        self.output: Any = None
        self.error: BaseException | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.attempts = 0
        # Containers (maps, sub-workflows) give their span a dict of its own; every other
        # span shares this empty, read-only one.
        self.children: Mapping[str, Span] = _NO_CHILDREN
        self.winner: str | None = None  # races only
        self.abandoned = False  # a thread left running after a timeout
        self.cached = False  # the output came from the store's cache
        self.epoch: float | None = None  # wall-clock seconds at run-clock 0 (set at the end)
        self.attempt_started: float | None = None
        self._log: tuple[Attempt, ...] = ()

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
        return dict(self.__dict__)

    def __repr__(self) -> str:
        extra = f" reason={self.reason!r}" if self.reason else ""
        return f"<Span {self.path} {self.status}{extra}>"


class Event(NamedTuple):
    """A step changed state. ``step`` is the step's name (its path inside sub-workflows)."""

    kind: EventKind
    step: str
    time: float
    span: Span


class RunResult:
    """The outcome of :func:`run`: the targets' output and every step's span."""

    def __init__(self, *, run_id: str, status: RunStatus, output: Any, spans: dict[str, Span],
                 failures: dict[str, BaseException], graph_name: str,
                 waiting: list[Form] | None = None, stale: list[str] | None = None) -> None:
        self.run_id = run_id
        self.status = status
        self.output = output
        self.spans = spans
        self.failures = failures
        self.graph_name = graph_name
        #: The forms of the ``ask()`` steps this run is waiting for (status "waiting").
        self.waiting: list[Form] = waiting or []
        #: Steps reused from a store although their code changed since (see ``resume``).
        self.stale: list[str] = stale or []
        #: The ``RunFailed`` of a failed run, on results handed back by
        #: ``flow_run(..., expect_failure=True)`` (``RunFailed.result`` is the other way).
        self.error: BaseException | None = None

    def span(self, key: Step[Any, Any] | str) -> Span:
        """The span of a step, by step object, name, or path (``branch/step``, a map
        item ``fetch[3]``, a step inside one run of a mapped sub-workflow
        ``branch[2]/step``)."""
        name = key.name if isinstance(key, Step) else key
        span = self.spans.get(name)
        if span is None:
            level: Mapping[str, Span] = self.spans
            for part in name.split("/"):
                found = level.get(part)
                if found is None and part.endswith("]") and "[" in part:
                    owner = level.get(part[:part.rindex("[")])  # an item of a map
                    found = owner.children.get(part) if owner is not None else None
                if found is None:
                    break
                span, level = found, found.children
            else:
                return span  # type: ignore[return-value]
            span = None
        if span is None:
            raise KeyError(f"no step {name!r} in this run; steps: {', '.join(self.spans)}")
        return span

    def __getitem__(self, key: Step[Any, Any] | str) -> Any:
        span = self.span(key)
        if span.status != "succeeded":
            why = f" ({span.reason})" if span.reason else ""
            raise KeyError(f"step {span.path!r} has no output: its status is "
                           f"{span.status!r}{why}")
        return span.output

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans.values())

    def walk(self) -> Iterator[Span]:
        """Every span, children after their parent."""
        stack = list(reversed(self.spans.values()))
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(list(span.children.values())))

    def report(self) -> str:
        """A per-step table: status, duration, attempts and why. A map gets a summary line
        (items per status, median and longest item); a large one lists only failed items."""
        return run_report(self)

    def to_json(self) -> str:
        return result_json(self)

    def to_mermaid_gantt(self) -> str:
        return gantt(self)

    def to_chrome_trace(self) -> str:
        return chrome_trace(self)

    def __repr__(self) -> str:
        return f"<RunResult {self.graph_name} {self.status} run_id={self.run_id!r}>"


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


# --- pickling: RunFailed.result crosses process boundaries ------------------------------
#
# Pickling what a run leaves behind, so ``RunFailed.result`` crosses process boundaries.
#
# A span holds whatever its step received and returned: a database client, an open file,
# a lambda. One such value must not make the whole result (and so the ``RunFailed``
# carrying it) impossible to send to another process. The rule: every value that survives
# a pickle round trip is kept as it is; any other value arrives as the string
# ``"<not picklable: repr>"``, and an exception that does not round-trip as a plain
# ``Exception`` whose text is ``"Type: message"``. Statuses, times, attempts, reasons and
# the tree of spans always arrive.
#
# The reducers are registered with :mod:`copyreg`. Values travel wrapped in
# :class:`_Portable`, which makes the check only when *pickled*: ``copy.copy`` and
# ``copy.deepcopy`` of a result keep (or deep-copy) every value as it is.

_SLOTS = tuple(name for name in Span.__slots__ if name != "__dict__")
_PLAIN = (str, int, float, bool, type(None))


def _same(value: Any) -> Any:
    return value


def stand_in(value: Any) -> Any:
    """What travels instead of a value that does not survive pickling."""
    if isinstance(value, BaseException):
        return Exception(exc_line(value))
    try:
        text = repr(value)
    except Exception:
        text = f"{type(value).__name__} object"
    return f"<not picklable: {text}>"


class _Portable:
    """A value on its way into a pickle: itself if it round-trips, else its stand-in."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        try:
            pickle.loads(pickle.dumps(self.value))
        except Exception:
            return (_same, (stand_in(self.value),))
        return (_same, (self.value,))

    def __copy__(self) -> _Portable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Portable:
        return _Portable(copy.deepcopy(self.value, memo))


def _wrap(value: Any) -> Any:
    return value if type(value) in _PLAIN else _Portable(value)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _Portable) else value


def _wrap_map(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _wrap(v) for k, v in values.items()}


def _unwrap_map(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _unwrap(v) for k, v in values.items()}


def _reduce_span(span: Span) -> tuple[Any, ...]:
    state = {name: _wrap(getattr(span, name, None)) for name in _SLOTS}
    state["input"] = _wrap_map(span.input)
    state["children"] = dict(span.children)
    state["_log"] = tuple((a.number, a.started, a.ended, _wrap(a.error)) for a in span._log)
    state["__dict__"] = _wrap_map(span.__dict__)
    return (_rebuild_span, (state,))


def _rebuild_span(state: dict[str, Any]) -> Span:
    span = object.__new__(Span)
    state = _unwrap_map(state)
    custom = _unwrap_map(state.pop("__dict__"))
    state["input"] = _unwrap_map(state["input"]) or _NO_INPUT
    state["children"] = state["children"] or _NO_CHILDREN  # shared, as on a live span
    state["_log"] = tuple(Attempt(n, s, e, _unwrap(err)) for n, s, e, err in state["_log"])
    for name, value in state.items():
        object.__setattr__(span, name, value)
    span.__dict__.update(custom)
    return span


def _reduce_result(result: RunResult) -> tuple[Any, ...]:
    state = dict(result.__dict__)
    # The error goes last, as state: it is the RunFailed whose .result is this result.
    error = {"error": state.pop("error", None)}
    state["output"] = _wrap(result.output)
    state["failures"] = _wrap_map(result.failures)
    return (_rebuild_result, (state,), error)


def _rebuild_result(state: dict[str, Any]) -> RunResult:
    result = object.__new__(RunResult)
    result.__dict__.update(state)
    result.output = _unwrap(state["output"])
    result.failures = _unwrap_map(state["failures"])
    return result


copyreg.pickle(Span, _reduce_span)
copyreg.pickle(RunResult, _reduce_result)
