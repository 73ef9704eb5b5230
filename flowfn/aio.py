"""Run flows from asyncio applications: ``result = await flowfn.aio.arun(flow, inputs)``.

flowfn's engine is trio. Inside an asyncio program (FastAPI, Starlette, Jupyter, a script
ending in ``asyncio.run(main())``) trio runs as a *guest* of the asyncio loop
(``trio.lowlevel.start_guest_run``): trio's tasks run in the loop's thread between the
loop's own callbacks, only trio's wait for I/O moves to a helper thread, and the
application keeps serving while flows run.

A thread can host one guest run at a time, so all calls on one loop share ONE run: the
first call starts it, every call is a job in it with its own cancel scope, and the last
call to finish ends it and waits until trio has stopped completely. Nothing of trio
outlives the calls; a later ``asyncio.run`` starts afresh. Jobs enter trio through
``TrioToken.run_sync_soon``, never by touching a nursery from asyncio code (trio #2183).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sniffio
import trio

from ._aioexec import host_loop
from ._errors import did_you_mean
from ._result import RunResult
from ._run import aresume as _trio_aresume
from ._run import arun as _trio_arun

__all__ = ["arun"]

_LIBRARY = sniffio.current_async_library_cvar


async def arun(flow: Any, inputs: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
    """Run ``flow`` from asyncio code without blocking the event loop.

    Takes the arguments of :func:`flowfn.run` (except ``clock=``: a virtual clock cannot
    drive a guest run) and returns its :class:`~flowfn.RunResult`, or raises what it
    raises. Cancelling the caller (``task.cancel()``, ``asyncio.timeout``,
    ``asyncio.wait_for``) cancels the flow and waits until every step has finished
    cancelling, ``finally`` blocks included, before ``CancelledError`` propagates.
    """
    loop = _running_loop(flow)
    return await _host(loop, _bind(flow, inputs, options))


async def aresume(flow: Any, run_id: str, **options: Any) -> RunResult:
    """:func:`flowfn.resume` from asyncio code without blocking the event loop — for
    instance an endpoint that receives a person's answer: ``await flowfn.aio.aresume(flow,
    run_id, store=store, answers={"approve": {...}})``. Cancellation as for :func:`arun`.
    """
    loop = _running_loop(flow)
    if "clock" in options:
        raise TypeError(f"flowfn.aio.aresume({_name(flow)}, clock=...): a guest run of trio "
                        "follows the asyncio loop's real time, so it takes no clock.")
    return await _host(loop, functools.partial(_trio_aresume, flow, run_id, **options))


async def _host(loop: asyncio.AbstractEventLoop,
                call: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """Run ``call`` in this loop's shared trio guest run; its result, or its exception."""
    job = _Job(call, loop.create_future(), contextvars.copy_context())
    runtime = await _enter(loop)
    runtime.submit(job)
    try:
        await asyncio.shield(job.future)
    except asyncio.CancelledError:
        runtime.cancel(job)
        await _wait_out(job.future)
        job.future.exception()  # the outcome no longer matters: mark it seen
        raise
    finally:
        if job.ended_run:  # the last call: return only once trio has stopped
            await _wait_out(runtime.ended)
    result: RunResult = job.future.result()
    return result


def _name(flow: Any) -> str:
    name = getattr(flow, "name", None)
    return name if isinstance(name, str) else type(flow).__name__


def _running_loop(flow: Any) -> asyncio.AbstractEventLoop:
    """The caller's asyncio loop; a message that says what to use instead if there is none."""
    if trio.lowlevel.in_trio_task():
        raise RuntimeError(
            f"flowfn.aio.arun({_name(flow)}) was awaited inside a trio program, which "
            "flowfn runs on directly.\n"
            f"  Use: await flowfn.arun({_name(flow)}, inputs, ...)"
        )
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"flowfn.aio.arun({_name(flow)}) needs a running asyncio event loop: await it "
            "from asyncio code (a handler, asyncio.run(main())).\n"
            "  From plain code call flowfn.run(...) instead."
        ) from None


def _bind(flow: Any, inputs: Mapping[str, Any] | None,
          options: dict[str, Any]) -> Callable[[], Awaitable[RunResult]]:
    """``flowfn.arun`` with these arguments, checked here (in the caller's traceback)."""
    if "clock" in options:
        raise TypeError(
            f"flowfn.aio.arun({_name(flow)}, clock=...): a guest run of trio follows the "
            "asyncio loop's real time, so it takes no clock.\n"
            "  Test flows in virtual time with flowfn.run(..., clock=MockClock(autojump_"
            "threshold=0)) or the flow_run fixture."
        )
    params = _signature().parameters
    known = [p for p in params if p not in ("flow", "inputs")]
    unknown = [key for key in options if key not in params]
    if unknown:
        guess = did_you_mean(unknown[0], known)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise TypeError(
            f"flowfn.aio.arun({_name(flow)}) got an unknown option {unknown[0]!r}.{hint}\n"
            f"  It takes the options of flowfn.run() except clock=: {', '.join(known)}."
        )
    return functools.partial(_trio_arun, flow, inputs, **options)


@functools.cache
def _signature() -> inspect.Signature:
    return inspect.signature(_trio_arun)


class _Job:
    """One ``arun`` call: what to run, where its outcome goes, and its cancel scope."""

    def __init__(self, call: Callable[[], Awaitable[RunResult]], future: asyncio.Future[Any],
                 context: contextvars.Context) -> None:
        self.call = call
        self.future = future
        self.context = context  # the caller's contextvars (e.g. OTel), seen by the steps
        self.scope: trio.CancelScope | None = None
        self.cancelled = False
        self.ended_run = False  # it was the last job of its trio run

    def cancel(self) -> None:  # in trio, through run_sync_soon
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    async def run(self, loop: asyncio.AbstractEventLoop) -> None:
        for var, value in self.context.items():
            if var is not _LIBRARY:  # which async library runs: trio, here
                var.set(value)
        host_loop.set(loop)
        try:
            with trio.CancelScope() as self.scope:
                if self.cancelled:
                    self.scope.cancel()
                try:
                    self.future.set_result(await self.call())
                except BaseException as exc:
                    if _only_cancelled(exc):
                        raise  # the scope above takes it
                    self.future.set_exception(exc)  # the caller gets it, whatever it is
        finally:
            if not self.future.done():  # cancelled: the caller raises its CancelledError
                self.future.set_exception(_cancelled())

    def settle(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _cancelled() -> BaseException:
    return RuntimeError("the flow was cancelled before it ended")


class _Runtime:
    """The guest trio run shared by every ``arun`` call on one asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.closing = False
        self.jobs: set[_Job] = set()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.send, receive = trio.open_memory_channel[_Job](math.inf)
        try:
            trio.lowlevel.start_guest_run(
                self._main, receive,
                run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=loop.call_soon,
                done_callback=self._done,
                host_uses_signal_set_wakeup_fd=True,
            )
        except RuntimeError as exc:  # another trio run lives in this thread
            raise RuntimeError(
                "flowfn.aio.arun() cannot start trio on this event loop: another trio run is "
                f"active in this thread ({exc}).\n  A thread holds one trio run at a time; "
                "inside it, use await flowfn.arun(...) from a trio task."
            ) from exc
        self.token = trio.lowlevel.current_trio_token()

    async def _main(self, receive: trio.MemoryReceiveChannel[_Job]) -> None:
        async with trio.open_nursery() as nursery, receive:
            async for job in receive:
                nursery.start_soon(self._run_job, job)

    async def _run_job(self, job: _Job) -> None:
        try:
            await job.run(self.loop)
        finally:
            self.jobs.discard(job)
            # The last job ends the run right here, in trio: no round trip through the
            # loop (and trio's I/O thread) to learn that its caller has gone.
            self.users -= 1
            if self.users == 0:
                self.closing = job.ended_run = True
                self.send.close()

    def submit(self, job: _Job) -> None:
        self.jobs.add(job)
        self.token.run_sync_soon(self.send.send_nowait, job)

    def cancel(self, job: _Job) -> None:
        if not job.future.done():
            self.token.run_sync_soon(job.cancel)

    def _done(self, outcome: Any) -> None:
        """trio's done_callback: the guest run is over (on the loop's thread)."""
        if _runtimes.get(self.loop) is self:
            del _runtimes[self.loop]
        self.closing = True
        error = getattr(outcome, "error", None)
        for job in self.jobs:  # only if trio itself failed
            job.settle(error or _cancelled())
        self.ended.set_result(None)
        if error is not None:
            self.loop.call_exception_handler({
                "message": "flowfn.aio: the shared trio run ended with an error",
                "exception": error,
            })


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Runtime] = (
    weakref.WeakKeyDictionary()
)


async def _enter(loop: asyncio.AbstractEventLoop) -> _Runtime:
    """The loop's runtime, started if needed, with one more user."""
    while True:
        runtime = _runtimes.get(loop)
        if runtime is None:
            runtime = _runtimes[loop] = _Runtime(loop)
        if not runtime.closing:
            runtime.users += 1
            return runtime
        await _wait_out(runtime.ended)  # the last run is winding down: then start anew


async def _wait_out(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` even through cancellation; re-raise the cancellation after."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))  # unlike awaiting it, never cancels it
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
