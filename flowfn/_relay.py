"""Run many ready jobs with few trio tasks, without giving up any concurrency.

Spawning a trio task costs several microseconds, more than a no-op step. A
:class:`Relay` runs its queued jobs one after another in one task, and the moment a job
is about to wait (its coroutine yields to trio for the first time), hands the rest of
the queue to a new task. So every job still starts as soon as it could have in a task of
its own, while jobs that finish without waiting cost no task at all.

Each job runs in a context of its own (copied, as trio copies one for every task), so a
job that sets a context variable does not leak it into the jobs after it.
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
    """Jobs ``run_one(job)`` started in order, handed on to a new task whenever one waits.

    Jobs run in ``nursery`` (set it before the first ``push``); ``leftover()`` gives the
    jobs never started because the nursery was cancelled first.
    """

    nursery: trio.Nursery

    def __init__(self, run_one: Callable[[J], Coroutine[Any, Any, None]], name: str) -> None:
        self.run_one = run_one
        self.name = name
        self.queue: deque[J] = deque()
        self.runner: object | None = None  # the token of the task taking jobs, if any

    def push(self, job: J) -> None:
        self.queue.append(job)
        if self.runner is None:
            self._spawn()

    def leftover(self) -> list[J]:
        jobs = list(self.queue)
        self.queue.clear()
        return jobs

    def _spawn(self) -> None:
        token = self.runner = object()
        self.nursery.start_soon(self._take, token, name=self.name)

    def _blocked(self, token: object) -> None:
        """The job running in ``token``'s task is about to wait: the queue moves on."""
        if self.runner is token:
            if self.queue:
                self._spawn()
            else:
                self.runner = None

    async def _take(self, token: object) -> None:
        queue, run_one = self.queue, self.run_one
        taken = 0
        try:
            while queue and self.runner is token:
                taken += 1
                if taken % FAIR == 0:
                    await _yield_to_others()
                    if not queue:
                        break
                job = queue.popleft()
                await _watched(run_one(job), self._blocked, token)
        finally:
            if self.runner is token:
                self.runner = None


@types.coroutine
def _watched(coro: Coroutine[Any, Any, Any], blocked: Callable[[object], None],
             token: object) -> Generator[Any, Any, Any]:
    """Drive ``coro`` in a context of its own; call ``blocked(token)`` before its first
    yield to trio is passed on."""
    run = _copy_context().run
    try:
        message = run(coro.send, None)
    except StopIteration as done:
        return done.value
    blocked(token)
    while True:
        try:
            reply = yield message
        except BaseException as exc:  # thrown in by trio (or close()): pass it inward
            try:
                message = run(coro.throw, exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                message = run(coro.send, reply)
            except StopIteration as done:
                return done.value
