"""Run many ready jobs with few trio tasks, without giving up any concurrency.

Spawning a trio task costs several microseconds, more than a no-op step. A
:class:`Relay` runs its queued jobs one after another in one task, and the moment a job
is about to wait (its coroutine yields to trio for the first time), hands the rest of
the queue on to new tasks. So every job still starts as soon as it could have in a task
of its own, while jobs that finish without waiting cost no task at all.

Each job runs in a context of its own, copied from the context the relay was opened in
(as trio copies one for every task), so a job that sets a context variable leaks it
neither into the jobs after it nor into the jobs it makes ready.
"""

from __future__ import annotations

import contextvars
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

import trio

J = TypeVar("J")

# Jobs that never wait: after this many in a row, let the other tasks run too.
FAIR = 32

_copy_context = contextvars.copy_context
_yield_to_others = trio.lowlevel.cancel_shielded_checkpoint


class Relay(Generic[J]):
    """Jobs ``run_one(job)`` started in order, handed on to new tasks whenever one waits.

    A task taking jobs is *active* until its job waits; ``push`` starts a task when none
    is. A job that waits hands the queue on to a new task. When that task's first job
    waits too, jobs are waiting one after another (I/O, say): then every queued job gets
    a task at once, as if each had been spawned, so that they all start in the same
    round of the trio scheduler. Jobs known to wait skip the queue: ``spawn``.

    Jobs run in the nursery given to ``open``; ``leftover()`` gives the jobs never
    started because the nursery was cancelled first.
    """

    nursery: trio.Nursery
    base: contextvars.Context  # what every job's context is copied from

    def __init__(self, run_one: Callable[[J], Coroutine[Any, Any, None]], name: str) -> None:
        self.run_one = run_one
        self.name = name
        self.queue: deque[J] = deque()
        self.active = 0  # tasks taking jobs whose current job has not waited

    def open(self, nursery: trio.Nursery) -> None:
        """Start jobs in ``nursery``, from a copy of the current context."""
        self.nursery = nursery
        self.base = _copy_context()

    def push(self, job: J) -> None:
        self.queue.append(job)
        if not self.active:
            self._spawn(1, after_wait=False)

    def spawn(self, job: J) -> None:
        """Run ``job`` in a task of its own at once: for jobs certain to wait (a ``def``
        step in a thread, a sub-workflow), which gain nothing from waiting in the queue."""
        self.base.run(self._start, self.run_one, job)

    def leftover(self) -> list[J]:
        jobs = list(self.queue)
        self.queue.clear()
        return jobs

    def _spawn(self, count: int, *, after_wait: bool) -> None:
        """Start tasks for up to ``count`` of the queued jobs no active task will take."""
        for _ in range(min(count, len(self.queue) - self.active)):
            self.active += 1
            self.base.run(self._start, self._take, after_wait)

    def _start(self, fn: Callable[[Any], Coroutine[Any, Any, None]], arg: Any) -> None:
        self.nursery.start_soon(fn, arg, name=self.name)  # in the base context

    def _waits(self, taker: _Taker, first: bool) -> None:
        """The current job of an active task is about to wait: others take the queue."""
        taker.waited = True
        self.active -= 1
        if self.queue:
            self._spawn(len(self.queue) if first and taker.after_wait else 1,
                        after_wait=True)

    async def _take(self, after_wait: bool) -> None:
        queue, run_one = self.queue, self.run_one
        me = _Taker(after_wait)
        taken = 0
        try:
            while queue:
                taken += 1
                if taken % FAIR == 0:
                    await _yield_to_others()
                    if not queue:
                        break
                await _watched(run_one(queue.popleft()), self._waits, me, taken == 1)
                if me.waited:
                    return  # its job waited: this task's place was handed on
        finally:
            if not me.waited:
                self.active -= 1


class _Taker:
    """One task taking jobs: whether its current job has waited, and whether the task
    was started because a job waited."""

    __slots__ = ("after_wait", "waited")

    def __init__(self, after_wait: bool) -> None:
        self.after_wait = after_wait
        self.waited = False


@types.coroutine
def _watched(coro: Coroutine[Any, Any, None], waits: Callable[[_Taker, bool], None],
             taker: _Taker, first: bool) -> Generator[Any, Any, None]:
    """Drive ``coro`` in a context of its own; call ``waits(taker, first)`` before its
    first yield to trio is passed on."""
    run = _copy_context().run
    try:
        message = run(coro.send, None)
    except StopIteration:
        return
    waits(taker, first)
    while True:
        try:
            reply = yield message
        except BaseException as exc:  # thrown in by trio (or close()): pass it inward
            try:
                message = run(coro.throw, exc)
            except StopIteration:
                return
        else:
            try:
                message = run(coro.send, reply)
            except StopIteration:
                return
