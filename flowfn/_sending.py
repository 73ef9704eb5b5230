"""Sending a step's function to another process, and calling it there.

A function goes by reference (module and qualified name) when the receiving process can
import it: small, and the worker runs the very code of the module. ``@step`` replaces
the function in its module by the ``Step``, so plain pickle cannot find ``step.fn``
under its name; a reference to the step is resolved and unwrapped on arrival. Anything
else (closures, functions of a notebook) goes by value with cloudpickle.

:func:`invoke` is what runs in the worker: it calls the function, and when it raises,
attaches the worker's traceback as text (a note) and makes sure the exception can travel
back; a value that cannot is replaced by :class:`RemoteError` with the same text.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import io
import os
import pickle
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from ._errors import Problem, def_line
from ._step import Step

try:
    import cloudpickle  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - both extras that send functions depend on it
    cloudpickle = None


class RemoteError(Exception):
    """An exception from a worker process or cluster that could not be sent back as
    itself; the message has its type, text and remote traceback."""

    __module__ = "flowfn"


@dataclass(frozen=True)
class Ref:
    """A function named by its module and qualified name (a step is unwrapped)."""

    module: str
    qualname: str

    def resolve(self) -> Any:
        obj: Any = sys.modules.get(self.module) or importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj.fn if isinstance(obj, Step) else obj


def reference(step: Step[Any, Any] | None, fn: Any, *, main_ok: bool) -> Ref | None:
    """A :class:`Ref` to ``fn`` if it is importable as itself or as ``step``.

    ``main_ok``: a function of the ``__main__`` script may be sent by reference (worker
    processes started by spawn run the script as their own ``__main__``; a cluster's
    workers do not).
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module == "__main__" and not (main_ok and getattr(sys.modules["__main__"], "__file__",
                                                         None)):
        return None
    obj: Any = sys.modules.get(module)
    if obj is None or (module != "__main__" and not _importable(module, obj)):
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return Ref(module, qualname) if obj is fn or (obj is step and obj is not None) else None


_importable_cache: dict[str, bool] = {}


def _importable(name: str, module: Any) -> bool:
    """Whether another process finds module ``name`` on ``sys.path`` (a module loaded
    from a file under a made-up name would not be)."""
    known = _importable_cache.get(name)
    if known is None:
        if "." in name:
            known = True  # part of a package, found through the package's own path
        else:
            spec = importlib.machinery.PathFinder.find_spec(name)
            known = spec is not None and spec.origin == getattr(module, "__file__", None)
        _importable_cache[name] = known
    return known


def dumps(obj: Any, *, main_ok: bool = True) -> bytes:
    """``obj`` pickled with cloudpickle, a step inside it (in a function's annotations,
    say) by reference when another process can import it, else by value."""
    buffer = io.BytesIO()
    _StepPickler(buffer, main_ok=main_ok).dump(obj)
    return buffer.getvalue()


def _by_value(state: dict[str, Any]) -> Step[Any, Any]:
    s: Step[Any, Any] = Step.__new__(Step)
    s.__dict__.update(state)
    return s


if cloudpickle is not None:
    class _StepPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def __init__(self, file: io.BytesIO, *, main_ok: bool) -> None:
            super().__init__(file)
            self.main_ok = main_ok

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Step) and reference(obj, obj.fn, main_ok=self.main_ok) is None:
                return _by_value, (dict(obj.__dict__),)
            return super().reducer_override(obj)


def target(step: Step[Any, Any] | None, fn: Any, *, main_ok: bool) -> Any:
    """What to pickle for ``fn``: a reference, or the function itself (by value)."""
    return reference(step, fn, main_ok=main_ok) or fn


def sendable_problem(step: Step[Any, Any], executor: str, where: str) -> Problem | None:
    """A :class:`Problem` naming ``step`` if its function cannot be sent to ``where``."""
    fn = step.fn
    if reference(step, fn, main_ok=where == "process") is not None:
        return None
    if cloudpickle is None:  # pragma: no cover
        reason = "it is not importable by name, and cloudpickle is not installed"
    else:
        try:
            dumps(fn, main_ok=where == "process")
        except Exception as exc:  # any failure means: it cannot be sent
            reason = f"pickling it by value failed: {type(exc).__name__}: {exc}"
        else:
            return None
    place = "a worker process" if where == "process" else "the cluster's workers"
    return Problem(def_line(fn, step.name), (
        f"step {step.name!r} runs on executor {executor!r}, but its function cannot be sent "
        f"to {place}: {reason}.",
        "Define it at the top level of an importable module, or keep unpicklable objects "
        "(locks, open files, connections) out of what it closes over.",
    ), step=step.name)


def invoke(fn: Any, kwargs: dict[str, Any]) -> Any:
    """Call ``fn(**kwargs)`` in a worker; exceptions come back with the worker's traceback."""
    if isinstance(fn, Ref):
        fn = fn.resolve()
    try:
        return fn(**kwargs)
    except Exception as exc:
        ready = travel_ready(exc)
        if ready is exc:
            raise
        raise ready from None


def travel_ready(exc: BaseException) -> BaseException:
    """``exc`` with the remote traceback as a note, or a :class:`RemoteError` if ``exc``
    would not survive pickling."""
    text = "".join(traceback.format_exception(exc))
    where = f"process {os.getpid()} on {socket.gethostname()}"
    exc.add_note(f"Traceback in {where}:\n{text.rstrip()}")
    try:
        pickle.loads((cloudpickle or pickle).dumps(exc))
    except Exception:  # whatever fails, send the text instead
        return RemoteError(f"{type(exc).__name__}: {exc} (in {where})\n{text.rstrip()}")
    return exc
