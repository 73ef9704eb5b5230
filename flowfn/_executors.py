"""Calling a step's function: on the loop, awaited, or in a worker thread.

Thread work is real work: under a ``MockClock`` with autojump, virtual time would leap
forward while a thread computes, and a ``timeout=`` would fire although no real time
passed. So while any flowfn thread is in flight, autojump is paused on that clock.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

from ._result import Span
from ._step import Step

if TYPE_CHECKING:
    from trio.testing import MockClock

_paused: weakref.WeakKeyDictionary[MockClock, list[float]] = weakref.WeakKeyDictionary()


@contextmanager
def real_work() -> Iterator[None]:
    """Pause autojump on the current ``MockClock`` (if any) for the duration."""
    clock = trio.lowlevel.current_clock()
    # trio.testing is slow to import (it imports pytest): when nobody imported it, the
    # clock cannot be a MockClock.
    testing = sys.modules.get("trio.testing")
    if testing is None or not isinstance(clock, testing.MockClock):
        yield
        return
    state = _paused.get(clock)
    if state is None:
        if clock.autojump_threshold == math.inf:
            yield
            return
        state = _paused[clock] = [0, clock.autojump_threshold]
        clock.autojump_threshold = math.inf
    state[0] += 1
    try:
        yield
    finally:
        state[0] -= 1
        if state[0] == 0:
            del _paused[clock]
            clock.autojump_threshold = state[1]


async def in_thread(fn: Callable[..., Any], kwargs: dict[str, Any], *, abandon: bool) -> Any:
    """Run ``fn(**kwargs)`` in a worker thread (contextvars are copied by trio).

    ``abandon=True`` lets a cancelled step return at once while the thread runs on (a
    Python thread cannot be interrupted); otherwise cancellation waits for the thread,
    so no work outlives the run.
    """
    with real_work():
        return await trio.to_thread.run_sync(
            functools.partial(fn, **kwargs), abandon_on_cancel=abandon
        )


@dataclass(slots=True)
class Call:
    """One attempt of one step, as an executor receives it."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    step: Step[Any, Any]
    path: str
    span: Span
    own_deadline: trio.CancelScope | None


@runtime_checkable
class Executor(Protocol):
    """Runs step calls somewhere; opened once per run that uses it, closed after."""

    name: str

    async def open(self) -> None: ...

    async def run(self, call: Call) -> Any: ...

    async def close(self) -> None: ...


class _Builtin:
    name = "async"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass


class AsyncExecutor(_Builtin):
    """Await the coroutine on the run's own loop."""

    name = "async"

    async def run(self, call: Call) -> Any:
        return await call.fn(**call.kwargs)


class InlineExecutor(_Builtin):
    """Call the function on the loop itself: for cheap pure functions."""

    name = "inline"

    async def run(self, call: Call) -> Any:
        result = call.fn(**call.kwargs)
        if hasattr(result, "__await__"):
            return await result
        return result


class ThreadExecutor(_Builtin):
    """A worker thread per call (trio's)."""

    name = "thread"

    async def run(self, call: Call) -> Any:
        abandon = call.own_deadline is not None
        try:
            return await in_thread(call.fn, call.kwargs, abandon=abandon)
        except trio.Cancelled:
            if abandon:
                call.span.abandoned = True  # it runs on: the span says so
            raise


BUILTIN: dict[str, Callable[[], Executor]] = {
    "async": AsyncExecutor, "inline": InlineExecutor, "thread": ThreadExecutor,
}


class Executors:
    """The executors of one run: opened at first use, closed when the run ends."""

    def __init__(self, default_sync: str | Executor | None = None) -> None:
        self.default_sync = default_sync
        self.opened: dict[object, Executor] = {}

    def pick(self, step: Step[Any, Any], fn: Callable[..., Any]) -> str | Executor:
        executor: Any = step.executor
        if fn is not step.fn:  # an override function: run it the way it is written
            if _is_async(fn):
                return "async"
            if executor == "async":
                return "inline"  # a quick stand-in for an async step: on the loop
        elif (self.default_sync is not None and executor == "thread"
              and not getattr(step, "executor_given", True)):
            return self.default_sync
        return executor  # type: ignore[no-any-return]

    async def run(self, which: str | Executor, call: Call) -> Any:
        executor = self.opened.get(which)
        if executor is None:
            executor = BUILTIN[which]() if isinstance(which, str) else which
            await executor.open()
            self.opened[which] = executor
        return await executor.run(call)

    async def aclose(self) -> None:
        for executor in reversed(list(self.opened.values())):
            await executor.close()
        self.opened.clear()


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(inspect.unwrap(fn))
