"""Executors: where a step's function runs — on the loop, in threads, in processes, on a
cluster — behind one small protocol the scheduler talks to.

The scheduler holds one :class:`Executors` per run. It asks :meth:`Executors.pick` which
executor a call uses and hands the call over with :meth:`Executors.run`; an executor is
opened at its first call in the run and closed when the run ends (:meth:`Executors.aclose`).
Built-in executors are named (``"thread"``, ``"process"``, ...); an executor object such
as ``flowfn.dask.DaskExecutor`` may serve several runs at once, so its open/close nest.

Work off the trio loop is real work: under a ``MockClock`` with autojump, virtual time
would leap forward while a thread or a worker process computes, and a ``timeout=`` would
fire although no real time passed. So while any such work is in flight, autojump is
paused on that clock (:func:`real_work`).
"""

from __future__ import annotations

import importlib
import math
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

from . import _threads
from ._errors import Problem
from ._options import is_async_callable
from ._result import Span
from ._sending import sendable_problem
from ._step import Step

if TYPE_CHECKING:
    from trio.testing import MockClock

# per paused clock: [calls in flight, the threshold to restore, the clock]
_paused: weakref.WeakKeyDictionary[MockClock, list[Any]] = weakref.WeakKeyDictionary()


class real_work:  # used like a function: ``with real_work():``
    """Pause autojump on the current ``MockClock`` (if any) while the block runs.

    A class rather than a generator: it wraps every thread call, so it must be cheap.
    """

    __slots__ = ("_state",)

    def __enter__(self) -> None:
        self._state: list[Any] | None = None
        # trio.testing is slow to import (it imports pytest): when nobody imported it, the
        # clock cannot be a MockClock.
        testing = sys.modules.get("trio.testing")
        if testing is None:
            return
        clock = trio.lowlevel.current_clock()
        if not isinstance(clock, testing.MockClock):
            return
        state = _paused.get(clock)
        if state is None:
            if clock.autojump_threshold == math.inf:
                return
            state = _paused[clock] = [0, clock.autojump_threshold, clock]
            clock.autojump_threshold = math.inf
        state[0] += 1
        self._state = state

    def __exit__(self, *exc_info: object) -> None:
        state = self._state
        if state is None:
            return
        state[0] -= 1
        if state[0] == 0:
            clock = state[2]
            del _paused[clock]
            clock.autojump_threshold = state[1]


@dataclass(slots=True)
class Call:
    """One attempt of one step, as an executor receives it."""

    fn: Callable[..., Any]  # the step's function, or an override function
    kwargs: dict[str, Any]  # bound arguments
    step: Step[Any, Any]  # its name, location, resources; sent by reference when possible
    path: str  # the step's graph path ("branch/fetch[3]"), for messages
    span: Span  # an executor may note facts on it (abandoned, a reason suffix)
    # The attempt's own timeout= scope, or None. Only when *it* fired may a thread be
    # abandoned; any other cancellation waits for the thread to return.
    own_deadline: trio.CancelScope | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs step calls somewhere: ``await run(call)`` returns the value or raises.

    Opened once per run that uses it (at its first call) and closed when that run ends.
    One object may serve several runs at once, so ``open``/``close`` must nest.
    """

    name: str

    async def open(self) -> None: ...

    async def run(self, call: Call) -> Any: ...

    async def close(self) -> None: ...


def note(span: Span, text: str) -> None:
    """Add a fact to a span's reason (``"...; the Dask task ran on to its end"``)."""
    span.reason = text if span.reason is None else f"{span.reason}; {text}"


class AsyncExecutor:
    """``async def`` steps: awaited on the trio loop."""

    name = "async"

    async def open(self) -> None:
        pass

    async def run(self, call: Call) -> Any:
        return await call.fn(**call.kwargs)

    async def close(self) -> None:
        pass


class InlineExecutor:
    """Cheap ``def`` steps called on the loop itself (awaited if they return an awaitable)."""

    name = "inline"

    async def open(self) -> None:
        pass

    async def run(self, call: Call) -> Any:
        result = call.fn(**call.kwargs)
        if hasattr(result, "__await__"):
            return await result
        return result

    async def close(self) -> None:
        pass


class ThreadExecutor:
    """Plain ``def`` steps in flowfn's pool of worker threads (see ``_threads``).

    A cancelled call whose thread has not started never runs. One that is running is
    abandoned only when its own ``timeout=`` fired (recorded on its span); any other
    cancellation waits for the function to return, so no work outlives the run.
    """

    name = "thread"

    def __init__(self) -> None:
        self._inbox: _threads.Inbox | None = None

    @property
    def inbox(self) -> _threads.Inbox:
        """Where results come back: bound to the trio run that first used it."""
        if self._inbox is None:
            self._inbox = _threads.Inbox()
        return self._inbox

    async def open(self) -> None:
        self.inbox  # noqa: B018 - bind to this run now

    async def run(self, call: Call) -> Any:
        with real_work():
            return await _threads.run_sync(self.inbox, call.fn, call.kwargs,
                                           lambda: _abandon(call))

    async def run_sync(self, fn: Callable[..., Any], kwargs: dict[str, Any],
                       may_abandon: Callable[[], bool] = lambda: False) -> Any:
        """``fn(**kwargs)`` in a pool thread, contextvars copied, autojump paused."""
        with real_work():
            return await _threads.run_sync(self.inbox, fn, kwargs, may_abandon)

    async def close(self) -> None:
        pass


def _abandon(call: Call) -> bool:
    deadline = call.own_deadline
    if deadline is None or not deadline.cancel_called:
        return False
    call.span.abandoned = True  # Python threads cannot be interrupted: it runs on
    return True


# Built-in executors by name; the optional ones live in modules that import their extra.
_BUILTIN: dict[str, Callable[[], Executor] | tuple[str, str, str]] = {
    "async": AsyncExecutor,
    "inline": InlineExecutor,
    "thread": ThreadExecutor,
    "process": ("flowfn._process", "ProcessExecutor", "pyflowfn[process]"),
    "asyncio": ("flowfn._aioexec", "AsyncioExecutor", "flowfn"),
}


class WorkerDied(RuntimeError):
    """The worker process running a step ended without returning (it crashed, was
    killed, or called ``os._exit``). Retries apply."""

    __module__ = "flowfn"

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.exitcode))


class ExecutorMissing(RuntimeError):
    """A step names an executor whose optional dependencies are not installed."""


def make_executor(name: str) -> Executor:
    """A fresh instance of the built-in executor ``name``."""
    factory = _BUILTIN.get(name)
    if factory is None:
        raise ValueError(
            f"executor={name!r} is not known. Use one of: "
            f"{', '.join(repr(n) for n in _BUILTIN)}, or an executor object."
        )
    if isinstance(factory, tuple):
        module, cls, extra = factory
        try:
            factory = getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            raise ExecutorMissing(
                f"executor={name!r} needs a package that is not installed ({exc.name}). "
                f"Install it with: pip install '{extra}'"
            ) from exc
    executor: Executor = factory()
    return executor


class Executors:
    """The executors of one run: picked per call, opened at first use, closed at the end."""

    def __init__(self, default_sync: str | Executor | None = None) -> None:
        if default_sync is not None and not isinstance(default_sync, str | Executor):
            raise TypeError(
                f"executor= must be the name of an executor ({', '.join(map(repr, _BUILTIN))})"
                f" or an executor object such as flowfn.dask.DaskExecutor(...), got "
                f"{default_sync!r}."
            )
        self.default_sync = default_sync
        self._ready: dict[object, Executor] = {}
        self._order: list[Executor] = []
        self._opening = trio.Lock()

    def pick(self, step: Step[Any, Any], fn: Callable[..., Any]) -> str | Executor:
        """Which executor runs ``fn`` for ``step`` (``fn`` differs for an override)."""
        chosen: str | Executor = step.executor
        if fn is not step.fn:  # an override function: run it the way it is written
            if is_async_callable(fn):
                return "async"
            if chosen == "async":
                return "inline"
        if (self.default_sync is not None and not step.is_async
                and not getattr(step, "executor_given", True)):
            return self.default_sync
        return chosen

    async def run(self, which: str | Executor, call: Call) -> Any:
        """Run ``call`` on ``which``, opening it first if this run has not yet."""
        if which == "async":
            return await call.fn(**call.kwargs)
        executor = self._ready.get(which if isinstance(which, str) else id(which))
        if executor is None:
            executor = await self._open(which)
        return await executor.run(call)

    async def _open(self, which: str | Executor) -> Executor:
        key = which if isinstance(which, str) else id(which)
        async with self._opening:
            executor = self._ready.get(key)
            if executor is None:
                executor = make_executor(which) if isinstance(which, str) else which
                await executor.open()
                self._ready[key] = executor
                self._order.append(executor)
        return executor

    async def aclose(self) -> None:
        """Close every executor this run opened, last opened first."""
        first: BaseException | None = None
        with trio.CancelScope(shield=True):
            while self._order:
                executor = self._order.pop()
                try:
                    await executor.close()
                except Exception as exc:
                    first = first or exc
        self._ready.clear()
        if first is not None:
            raise first

    def check_sendable(self, steps: Iterable[Step[Any, Any]]) -> list[Problem]:
        """Problems with steps that run in other processes but cannot be sent there."""
        problems = []
        for s in steps:
            if s.container is not None:
                continue
            which = self.pick(s, s.fn)
            where = _sends_to(which)
            if where is not None:
                problem = sendable_problem(s, which if isinstance(which, str) else which.name,
                                           where)
                if problem is not None:
                    problems.append(problem)
        return problems


def _sends_to(which: str | Executor) -> str | None:
    """``"process"``/``"cluster"`` for executors that pickle functions, else None."""
    if which == "process":
        return "process"
    if isinstance(which, str):
        return None
    sends = getattr(which, "sends_functions", None)
    return sends if isinstance(sends, str) else None


def check_sendable(steps: Iterable[Step[Any, Any]],
                   default_sync: str | Executor | None = None) -> list[Problem]:
    """Problems with steps that must be sent to a worker process or a cluster but cannot
    be (not importable, not picklable): one :class:`Problem` naming each."""
    return Executors(default_sync).check_sendable(steps)
