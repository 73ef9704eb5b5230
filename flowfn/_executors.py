"""Calling a step's function: on the loop, awaited, or in a worker thread.

Thread work is real work: under a ``MockClock`` with autojump, virtual time would leap
forward while a thread computes, and a ``timeout=`` would fire although no real time
passed. So while any flowfn thread is in flight, autojump is paused on that clock.
"""

from __future__ import annotations

import functools
import math
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

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


async def call(fn: Callable[..., Any], kwargs: dict[str, Any], executor: str, *,
               abandon: bool = False) -> Any:
    """Run one attempt of a step function with the given executor."""
    if executor == "async":
        return await fn(**kwargs)
    if executor == "inline":
        result = fn(**kwargs)
        if hasattr(result, "__await__"):
            return await result
        return result
    return await in_thread(fn, kwargs, abandon=abandon)
