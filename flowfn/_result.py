"""What a run leaves behind: :class:`RunResult`, and how results pickle.

Spans, events and the step context live in ``_span``; this module adds the result of a
whole run and its views (report, JSON, Gantt chart, Chrome trace, drawn in ``_render``).
"""

from __future__ import annotations

import copy
import copyreg
import pickle
from collections.abc import Iterator, Mapping
from typing import Any

from ._errors import exc_line
from ._render import chrome_trace, gantt, result_json, run_report
from ._span import (
    _NO_INPUT,
    RARE,
    Attempt,
    Event,
    EventKind,
    Form,
    RunStatus,
    RunView,
    Span,
    SpanStatus,
    current_run_var,
    current_span,
    current_span_var,
    step_span,
)
from ._step import Step

__all__ = ["Attempt", "Event", "EventKind", "Form", "RunResult", "RunStatus", "RunView",
           "Span", "SpanStatus", "current_run_var", "current_span", "current_span_var",
           "step_span"]


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
        if not isinstance(name, str):
            raise TypeError(f"result.span({key!r}): give a step, or its name or path "
                            "(like 'fetch', 'fetch[3]' or 'branch/step')")
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

#: A span's slots (its input is pickled as a dict; the attributes in ``RARE`` and the
#: custom ones live in its ``__dict__``).
_SLOTS = tuple(name for name in Span.__slots__ if name not in ("__dict__", "_input"))
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
    own = span.__dict__  # custom attributes, and those of RARE that are set
    state = {name: _wrap(getattr(span, name)) for name in _SLOTS}
    state.update((name, _wrap(own[name])) for name in RARE if name in own)
    state["input"] = _wrap_map(span.input)
    state["children"] = dict(span.children)
    state["_log"] = tuple((a.number, a.started, a.ended, _wrap(a.error)) for a in span._log)
    state["__dict__"] = _wrap_map(span.attributes)
    return (_rebuild_span, (state,))


def _rebuild_span(state: dict[str, Any]) -> Span:
    span = object.__new__(Span)
    state = _unwrap_map(state)
    custom = _unwrap_map(state.pop("__dict__"))
    state["_input"] = _unwrap_map(state.pop("input")) or _NO_INPUT
    state["_log"] = tuple(Attempt(n, s, e, _unwrap(err)) for n, s, e, err in state["_log"])
    for name in ("children", "_log"):
        if not state[name]:
            del state[name]  # the shared empty default, as on a live span
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
