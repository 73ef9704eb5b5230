"""The ``"asyncio"`` executor: a step's coroutine runs as a real asyncio task.

flowfn's scheduler is trio. An ``async def`` step runs as a trio task, where asyncio-only
code (asyncpg, aiohttp, an application's ``asyncio.Queue``) finds no asyncio task and
fails. ``@step(executor="asyncio")`` hands the coroutine to an asyncio loop instead and
waits for it from trio, carrying cancellation both ways:

* under :func:`flowfn.aio.arun` the loop is the application's own (trio runs as its
  guest, in the same thread), so the step shares the app's pools and queues;
* under plain ``run()``/``arun()`` there is no asyncio loop: the executor starts one
  private loop in a thread, on first use, and stops it when the run closes it.

This module also words the two messages that send asyncio users the right way: one for
``await flowfn.arun()`` awaited from asyncio, one for an ``async def`` step that touched
asyncio while running on trio.
"""

from __future__ import annotations

import contextvars
import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._executors import real_work

if TYPE_CHECKING:
    import asyncio

# asyncio itself is imported only where a loop is made: importing it costs tens of
# milliseconds, and the scheduler imports this module for its messages.

#: The application's loop, while a flow runs under flowfn.aio.arun (set in the job's task,
#: inherited by every task of the run). Not merely "an asyncio loop is running in this
#: thread": a blocking ``flowfn.run()`` inside an asyncio handler also sees one, a loop
#: that cannot serve tasks until the run returns.
host_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "flowfn_host_loop", default=None
)


class _Raised:
    """A KeyboardInterrupt or SystemExit of the step, carried out of its asyncio task: an
    asyncio task re-raises those into the loop itself, which would stop the loop."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _drive(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """The body of the asyncio task: call the step (a plain ``def`` too) and await it."""
    try:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
    except (KeyboardInterrupt, SystemExit) as exc:
        return _Raised(exc)
    return result


class _Slot:
    """The asyncio task of one call, once the loop has created it."""

    task: asyncio.Task[Any] | None = None
    cancelled = False

    def cancel(self) -> None:  # on the loop's thread
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


class AsyncioExecutor:
    """Runs step calls as asyncio tasks: on the host loop under flowfn.aio, otherwise on a
    private loop thread. Open/close nest, so one object may serve several runs."""

    name = "asyncio"

    def __init__(self) -> None:
        self._opened = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def open(self) -> None:
        # The private loop starts at the first call that needs it: a hosted run never does.
        self._opened += 1

    async def close(self) -> None:
        self._opened -= 1
        if self._opened > 0 or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            with trio.CancelScope(shield=True), real_work():
                await trio.to_thread.run_sync(thread.join)

    async def run(self, call: Any) -> Any:
        """Run ``call.fn(**call.kwargs)`` as an asyncio task and return its value."""
        loop = host_loop.get()
        hosted = loop is not None and _running_here(loop)
        if loop is None or not hosted:  # also a nested run in a hosted run's worker thread
            loop = self._private_loop()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        slot = _Slot()
        context = contextvars.copy_context()  # current_span, the OTel context, ...

        def start() -> None:
            if slot.cancelled:  # cancelled before the loop got to it
                token.run_sync_soon(done.set)
                return
            slot.task = loop.create_task(_drive(call.fn, call.kwargs),
                                         name=f"flowfn step {call.path}", context=context)
            slot.task.add_done_callback(lambda _: token.run_sync_soon(done.set))

        # Hosted, trio runs in the loop's own thread: touch the loop directly.
        schedule = _now if hosted else loop.call_soon_threadsafe
        with real_work():
            schedule(start)
            try:
                await done.wait()
            except trio.Cancelled:
                schedule(slot.cancel)
                with trio.CancelScope(shield=True):
                    await done.wait()
                raise
        return _outcome(slot.task, call.path)

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        if self._opened <= 0:
            raise RuntimeError(
                "AsyncioExecutor.run() was called before open(): open the executor for the "
                "run first, and close it when the run ends."
            )
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=_serve, args=(self._loop,), name="flowfn-asyncio", daemon=True
            )
            self._thread.start()
        return self._loop


def _running_here(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is the asyncio loop running in this thread."""
    asyncio = sys.modules["asyncio"]  # imported: a loop exists
    try:
        return bool(asyncio.get_running_loop() is loop)
    except RuntimeError:
        return False


def _now(fn: Callable[[], object]) -> None:
    fn()


def _outcome(task: asyncio.Task[Any] | None, path: str) -> Any:
    """The value of a finished step task, or its exception raised here."""
    if task is None or task.cancelled():
        raise RuntimeError(
            f"step {path!r}: its asyncio task was cancelled from outside the flow (by the "
            "event loop shutting down, or by code that cancelled it), so the step has no "
            "result."
        )
    exc = task.exception()
    if exc is not None:
        raise exc
    value = task.result()
    if isinstance(value, _Raised):
        raise value.exc
    return value


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The private loop's thread: serve until stopped, then clean up like asyncio.run."""
    import asyncio

    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        leftover = asyncio.all_tasks(loop)  # tasks a step started and left behind
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# --- messages ------------------------------------------------------------------------------


def arun_outside_trio_message(flow_name: str) -> str | None:
    """Why ``await flowfn.arun(flow)`` cannot run here, or None when it can (in a trio task).

    ``_run.arun`` raises ``RuntimeError(message)`` with it before touching trio.
    """
    if trio.lowlevel.in_trio_task():
        return None
    if _asyncio_running():
        return (
            f"await flowfn.arun({flow_name}) was awaited from asyncio code, but arun() runs "
            "inside a trio program.\n"
            f"  In an asyncio application use: await flowfn.aio.arun({flow_name}, inputs, "
            "...)\n"
            "  It runs the flow with trio as a guest of your event loop, which keeps serving "
            "meanwhile."
        )
    return (
        f"await flowfn.arun({flow_name}) was awaited outside a trio program.\n"
        "  From plain code call flowfn.run(...); from asyncio code await flowfn.aio.arun(...)."
    )


def run_inside_trio_message(flow_name: str) -> str | None:
    """Why ``flowfn.run(flow)`` cannot start trio here, or None when it can.

    A thread holds one trio run at a time: inside a trio program, or while flowfn.aio
    runs flows as a guest of this thread's asyncio loop, ``trio.run`` would fail with
    trio's own "Attempted to call run() from inside a run()". ``_run.run`` raises
    ``RuntimeError(message)`` with this instead.
    """
    if not trio.lowlevel.in_trio_run():
        return None
    if not trio.lowlevel.in_trio_task() and _asyncio_running():
        return (
            f"flowfn.run({flow_name}) was called from asyncio code while flowfn.aio runs "
            "flows on this event loop; run() would block the loop until the flow ends.\n"
            f"  Use: await flowfn.aio.arun({flow_name}, inputs, ...)"
        )
    return (
        f"flowfn.run({flow_name}) was called inside a running trio program.\n"
        f"  Use: await flowfn.arun({flow_name}, inputs, ...)"
    )


def _asyncio_running() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # nobody imported asyncio: no loop can be running
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# What asyncio code says when it runs in a trio task (text of the exception).
_SIGNS = (
    "no running event loop",  # asyncio.sleep, get_running_loop, create_task under trio.run
    "no current event loop",  # asyncio.get_event_loop() in a worker thread
    "should be used inside a task",  # asyncio.timeout, aiohttp's timeout: no asyncio task
    "unrecognized yield message",  # an asyncio future awaited by trio (guest mode)
)
_OTHER_LOOP = ("is bound to a different event loop", "attached to a different loop")


def asyncio_hint(exc: BaseException, executor: object = "async") -> str | None:
    """A hint for a step that failed because it used asyncio in the wrong place, or None.

    ``executor`` is the step's executor (name or object). A step on trio that touched
    asyncio is pointed at ``executor="asyncio"``; an asyncio step of a plain ``run()``
    that used an object of another loop is pointed at flowfn.aio.
    """
    asyncio_step = executor == "asyncio" or isinstance(executor, AsyncioExecutor)
    for e in _chain(exc):
        text = str(e)
        if asyncio_step:
            if any(sign in text for sign in _OTHER_LOOP):
                return (
                    "Hint: without flowfn.aio, executor=\"asyncio\" steps run on a private "
                    "event loop of the run, not your application's. Start the flow with "
                    "await flowfn.aio.arun(...) to share the application's loop objects."
                )
        elif _sniffio_error(e) or any(sign in text for sign in _SIGNS) or (
                isinstance(e, AttributeError | RuntimeError) and _raised_in_asyncio(e)):
            return (
                "Hint: this step used asyncio, but flowfn ran it on trio, where no asyncio "
                "task exists. Give it @step(executor=\"asyncio\") to run it as an asyncio "
                "task."
            )
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts (a library may wrap asyncio's error)."""
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(seen) < 5 and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _sniffio_error(exc: BaseException) -> bool:
    sniffio = sys.modules.get("sniffio")
    return sniffio is not None and isinstance(exc, sniffio.AsyncLibraryNotFoundError)


def _raised_in_asyncio(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is asyncio's own code."""
    asyncio = sys.modules.get("asyncio")
    where = getattr(asyncio, "__file__", None)
    tb = exc.__traceback__
    if not isinstance(where, str) or tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(os.path.dirname(where) + os.sep)
