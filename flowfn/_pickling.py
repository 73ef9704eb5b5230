"""Pickling what a run leaves behind, so ``RunFailed.result`` crosses process boundaries.

A span holds whatever its step received and returned: a database client, an open file,
a lambda. One such value must not make the whole result (and so the ``RunFailed``
carrying it) impossible to send to another process. The rule: every value that survives
a pickle round trip is kept as it is; any other value arrives as the string
``"<not picklable: repr>"``, and an exception that does not round-trip as a plain
``Exception`` whose text is ``"Type: message"``. Statuses, times, attempts, reasons and
the tree of spans always arrive.

The reducers are registered with :mod:`copyreg`. Values travel wrapped in
:class:`_Portable`, which makes the check only when *pickled*: ``copy.copy`` and
``copy.deepcopy`` of a result keep (or deep-copy) every value as it is.
"""

from __future__ import annotations

import copy
import copyreg
import pickle
from collections.abc import Mapping
from typing import Any

from ._errors import exc_line
from ._result import _NO_CHILDREN, _NO_INPUT, Attempt, RunResult, Span

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
