"""A pool of long-lived worker threads for sync steps, cheap enough for tiny functions.

``trio.to_thread.run_sync`` costs one thread hand-off and one trio wake-up per call, and
trio caps it at 40 threads by default. A flow of plain ``def`` steps pays that on every
step. Here, instead:

- Threads live in one process-wide pool and outlive runs (an idle thread exits after
  :data:`IDLE_SECONDS`). A thread that finishes a job takes the next queued one without
  going to sleep, so a burst of cheap jobs is drained by the few threads already awake.
- Results go back to trio in batches: the first result of a batch asks the trio loop for
  one wake-up (``TrioToken.run_sync_soon``); results finished before it runs ride along.
- The pool grows when queued work stops moving: when every thread awake has been inside
  its job for over :data:`STALL_SECONDS`, they block (sleeping, waiting on I/O), so a
  watcher thread wakes idle threads, or starts new ones, for the jobs waiting. Cheap jobs
  do not trigger it;
  100 jobs that each block for 0.1 s finish in about 0.1 s. There is no fixed cap:
  ``max_concurrency=`` and limits bound a run's steps.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import outcome
import trio

IDLE_SECONDS = 10.0  # an idle thread exits after this long
STALL_SECONDS = 0.0005  # queued jobs not moving for this long: wake or start threads
# Thread names say whether a thread works, like trio's idle "Trio thread N" workers.
BUSY_NAME = "flowfn worker"
IDLE_NAME = "flowfn idle worker"

_QUEUED, _RUNNING, _DROPPED = 0, 1, 2


class Job:
    """One function call on its way through the pool."""

    __slots__ = ("ctx", "fn", "inbox", "kwargs", "may_abandon", "result", "state", "task")

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any], inbox: Inbox,
                 may_abandon: Callable[[], bool] = bool) -> None:
        self.fn = fn
        self.kwargs = kwargs
        self.ctx = contextvars.copy_context()  # current_span & co. inside the function
        self.inbox = inbox
        self.may_abandon = may_abandon
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        self.state = _QUEUED
        self.result: outcome.Outcome[Any] | None = None

    def abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        """trio's question on cancellation: can the waiting task go now?"""
        if POOL.drop(self) or self.may_abandon():
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED
        return trio.lowlevel.Abort.FAILED


class Inbox:
    """Where one trio run collects finished jobs; one loop wake-up per batch."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._lock = threading.Lock()
        self._done: list[Job] = []

    def deliver(self, job: Job) -> None:
        """Called by a worker thread: hand a finished job back."""
        with self._lock:
            self._done.append(job)
            if len(self._done) > 1:
                return  # a wake-up is already on its way and will take this one too
        try:
            self._token.run_sync_soon(self._flush)
        except trio.RunFinishedError:  # an abandoned job outlived its run
            pass

    def _flush(self) -> None:
        with self._lock:
            batch, self._done = self._done, []
        for job in batch:
            if job.task is not None:  # None: abandoned, nobody waits for it
                assert job.result is not None
                trio.lowlevel.reschedule(job.task, job.result)


class _Worker:
    __slots__ = ("job", "since", "wake")

    def __init__(self, job: Job | None) -> None:
        self.job = job
        self.since = 0.0  # when the job it runs started (0: between jobs, or idle)
        self.wake = threading.Lock()
        self.wake.acquire()


class Pool:
    """The process-wide worker threads, and the queue they take jobs from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Job] = deque()
        self._queued = 0  # jobs in the queue that still want to run
        self._idle: list[_Worker] = []  # LIFO: the most recently busy thread is warm
        self._awake = 0  # threads running a job or about to take one
        self._taken = 0  # jobs taken so far: the watcher's measure of progress
        self._watch = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None
        self._to_start = 0  # threads wanted but not started yet
        self._workers: list[_Worker] = []  # every live thread
        self.threads = 0

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._awake == 0 and self._idle:
                self._hand(self._idle.pop(), job)
                return
            self._queue.append(job)
            self._queued += 1
            if self._awake > 0:  # a busy thread takes it next, unless they all block
                if self._queued == 1:
                    self._watch.notify()
                return
            self._awake += 1
        self._start(1)

    def drop(self, job: Job) -> bool:
        """Take a job back if no thread has started it (it will never run)."""
        with self._lock:
            if job.state != _QUEUED:
                return False
            job.state = _DROPPED
            self._queued -= 1
            return True

    def _hand(self, worker: _Worker, job: Job | None) -> None:
        """Wake an idle thread, with a job or to take one from the queue (holding the lock)."""
        if job is not None:
            job.state = _RUNNING
            self._taken += 1
        worker.job = job
        self._awake += 1
        worker.wake.release()

    def _next(self) -> Job | None:
        """The next queued job, now running (holding the lock)."""
        queue = self._queue
        while queue:
            job = queue.popleft()
            if job.state == _QUEUED:
                job.state = _RUNNING
                self._queued -= 1
                self._taken += 1
                return job
        return None

    def _start(self, n: int) -> None:
        """Start ``n`` threads, already counted as awake (without holding the lock)."""
        if self._watcher is None:
            with self._lock:
                if self._watcher is None:
                    self._watcher = threading.Thread(
                        target=self._watch_loop, name=f"{IDLE_NAME}s' watcher", daemon=True
                    )
                    self._watcher.start()
        with self._lock:
            self._to_start += n
        self._spawn()

    def _spawn(self) -> None:
        """Start up to two of the threads wanted. Each new thread starts two more before
        it takes a job (``Thread.start`` waits until the thread runs), so 100 threads
        start in a few rounds rather than one after the other."""
        for _ in range(2):
            with self._lock:
                if not self._to_start:
                    return
                self._to_start -= 1
            try:
                threading.Thread(target=self._work, args=(_Worker(None),),
                                 name=BUSY_NAME, daemon=True).start()
            except RuntimeError:  # "can't start new thread": make do with those there are
                with self._lock:
                    self._awake -= 1 + self._to_start
                    self._to_start = 0
                return

    def _work(self, me: _Worker) -> None:
        thread = threading.current_thread()
        self._spawn()
        lock = self._lock
        with lock:
            self.threads += 1
            self._workers.append(me)
            job = self._next()
        while True:
            if job is not None:
                me.since = time.monotonic()
                try:
                    job.result = outcome.Value(job.ctx.run(job.fn, **job.kwargs))
                except BaseException as exc:
                    job.result = outcome.Error(exc)
                me.since = 0.0
                job.fn = job.kwargs = job.ctx = None  # type: ignore[assignment]
                job.inbox.deliver(job)
            with lock:
                job = self._next()
                if job is not None:
                    continue
                self._awake -= 1
                self._idle.append(me)
            thread.name = IDLE_NAME
            if not me.wake.acquire(timeout=IDLE_SECONDS):
                with lock:
                    if me in self._idle:
                        self._idle.remove(me)
                        self._workers.remove(me)
                        self.threads -= 1
                        return
                me.wake.acquire()  # handed work just as the wait timed out
            thread.name = BUSY_NAME
            with lock:
                job = me.job if me.job is not None else self._next()
                me.job = None

    def _stalled(self) -> bool:
        """Every thread awake is inside a job that started over STALL_SECONDS ago: they
        block (a thread between two jobs, or one that did not get the GIL yet, will take
        a queued job soon). Holding the lock."""
        horizon = time.monotonic() - STALL_SECONDS
        running = 0
        for w in self._workers:
            since = w.since
            if since:
                if since > horizon:
                    return False
                running += 1
        return running >= self._awake

    def _watch_loop(self) -> None:
        """Wake or start threads when queued jobs stop moving (every thread blocks)."""
        while True:
            with self._lock:
                while not self._queued:
                    self._queue.clear()  # only dropped jobs left, if any
                    self._watch.wait()
                self._watch.wait(STALL_SECONDS)
                missing = self._queued if self._stalled() else 0
                while missing and self._idle:
                    self._hand(self._idle.pop(), None)
                    missing -= 1
                self._awake += missing
            if missing:
                self._start(missing)


POOL = Pool()


def _forget_threads_after_fork() -> None:
    """A forked child has none of the parent's threads: start over with an empty pool."""
    global POOL
    POOL = Pool()


os.register_at_fork(after_in_child=_forget_threads_after_fork)


async def run_sync(inbox: Inbox, fn: Callable[..., Any], kwargs: dict[str, Any],
                   may_abandon: Callable[[], bool]) -> Any:
    """Run ``fn(**kwargs)`` on the pool and wait for it.

    Cancelled before a thread took it, the job never runs. Cancelled while it runs: if
    ``may_abandon()`` says so the caller returns at once and the thread runs on unseen;
    otherwise the caller waits for the function to return and gets its outcome, like
    ``trio.to_thread.run_sync`` (the cancellation surfaces at the caller's next
    checkpoint), so work that finished is not thrown away.
    """
    await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: never start it
    job = Job(fn, kwargs, inbox, may_abandon)
    POOL.submit(job)
    return await trio.lowlevel.wait_task_rescheduled(job.abort)
