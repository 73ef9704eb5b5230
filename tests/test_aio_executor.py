"""The ``"asyncio"`` executor: a step's coroutine as a real asyncio task, on a private loop
thread under plain trio and on the application's loop under flowfn.aio.

Tested directly (open/run/close with a call object inside trio) and, once the executor
registry maps ``executor="asyncio"`` to it, end to end through ``@step``. Plain
``asyncio.run``/``trio.run`` in every test: no async pytest plugin.
"""

import asyncio
import contextvars
import threading
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
import trio
import trio.testing

import flowfn.aio
from flowfn import RunFailed, graph, run, step
from flowfn._aioexec import AsyncioExecutor

# --- the asyncio executor, directly -----------------------------------------------------------


def call(fn: Any, path: str = "step", **kwargs: Any) -> Any:
    """What the scheduler hands an executor (flowfn._executors.Call), duck-typed."""
    return SimpleNamespace(fn=fn, kwargs=kwargs, step=None, path=path, span=None,
                           own_deadline=None)


async def asyncio_only(x: int) -> tuple[int, bool]:
    async with asyncio.timeout(1):
        await asyncio.sleep(0.001)
    return x, asyncio.current_task() is not None


def test_executor_runs_a_coroutine_as_an_asyncio_task_on_a_private_loop() -> None:
    threads: list[str] = []

    async def record() -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    async def main() -> None:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            assert await ex.run(call(asyncio_only, x=3)) == (3, True)
            assert await ex.run(call(lambda: 7)) == 7  # a plain def runs on the loop too
            assert await ex.run(call(record)) == "ok"
        finally:
            await ex.close()

    trio.run(main)
    assert threads == ["flowfn-asyncio"]
    assert "flowfn-asyncio" not in [t.name for t in threading.enumerate()]  # it has ended


def test_executor_raises_the_steps_exception() -> None:
    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    async def main() -> None:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            with pytest.raises(KeyError, match="missing"):
                await ex.run(call(broken))
        finally:
            await ex.close()

    trio.run(main)


def test_trio_cancellation_cancels_the_task_and_waits_for_it() -> None:
    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            await asyncio.sleep(0.01)  # cleanup takes a moment: trio waits for it
            events.append("cleaned up")
            raise

    async def main() -> None:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            with trio.move_on_after(0.02) as scope:
                await ex.run(call(slow))
            assert scope.cancelled_caught
            assert events == ["cancelled", "cleaned up"]
        finally:
            await ex.close()

    trio.run(main)


def test_a_task_cancelled_from_asyncio_fails_the_step() -> None:
    async def cancelled_by_someone() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    async def main() -> None:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            with pytest.raises(RuntimeError) as info:
                await ex.run(call(cancelled_by_someone, path="fetch"))
        finally:
            await ex.close()
        assert str(info.value) == (
            "step 'fetch': its asyncio task was cancelled from outside the flow (by the event "
            "loop shutting down, or by code that cancelled it), so the step has no result."
        )

    trio.run(main)


def test_executor_sees_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")

    async def read() -> str:
        return var.get()

    async def main() -> str:
        var.set("from trio")
        ex = AsyncioExecutor()
        await ex.open()
        try:
            value: str = await ex.run(call(read))
            return value
        finally:
            await ex.close()

    assert trio.run(main) == "from trio"


def test_autojump_waits_while_an_asyncio_task_is_in_flight() -> None:
    async def main() -> bool:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            with trio.move_on_after(1) as scope:  # virtual second: must not pass
                await ex.run(call(asyncio.sleep, delay=0.02))
            return scope.cancelled_caught
        finally:
            await ex.close()

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) is False


def test_open_and_close_nest() -> None:
    async def main() -> None:
        ex = AsyncioExecutor()
        await ex.open()
        await ex.open()
        assert await ex.run(call(asyncio_only, x=1)) == (1, True)
        await ex.close()
        assert await ex.run(call(asyncio_only, x=2)) == (2, True)  # still open once
        await ex.close()
        assert "flowfn-asyncio" not in [t.name for t in threading.enumerate()]
        with pytest.raises(RuntimeError) as info:
            await ex.run(call(asyncio_only, x=3))
        assert str(info.value) == (
            "AsyncioExecutor.run() was called before open(): open the executor for the run "
            "first, and close it when the run ends."
        )

    trio.run(main)


def test_hosted_executor_runs_on_the_applications_loop_and_reads_its_queue() -> None:
    async def read(queue: asyncio.Queue[str]) -> tuple[str, bool]:
        item = await queue.get()
        return item, asyncio.get_running_loop() is host

    @step
    async def consume(queue: Any) -> tuple[str, bool]:  # drives the executor itself
        ex = AsyncioExecutor()
        await ex.open()
        try:
            value: tuple[str, bool] = await ex.run(call(read, queue=queue))
            return value
        finally:
            await ex.close()

    host: asyncio.AbstractEventLoop | None = None

    async def main() -> tuple[str, bool]:
        nonlocal host
        host = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        flow = asyncio.create_task(flowfn.aio.arun(consume, {"queue": queue}))
        await asyncio.sleep(0.01)
        await queue.put("hello")
        return (await flow).output

    assert asyncio.run(main()) == ("hello", True)


def test_a_nested_run_in_a_worker_thread_of_a_hosted_run_uses_a_private_loop() -> None:
    async def where() -> str:
        return threading.current_thread().name

    async def nested() -> str:
        ex = AsyncioExecutor()
        await ex.open()
        try:
            name: str = await ex.run(call(where))
            return name
        finally:
            await ex.close()

    @step
    def in_a_thread() -> str:  # a plain def: a worker thread, with the run's context
        return trio.run(nested)

    assert asyncio.run(flowfn.aio.arun(in_a_thread)).output == "flowfn-asyncio"


# --- executor="asyncio" end to end (needs the executor registry) -------------------------------


def test_asyncio_step_reads_a_queue_fed_by_the_host() -> None:
    @step(executor="asyncio")  # type: ignore[call-overload]
    async def consume(queue: Any, n: int) -> list[str]:
        return [await queue.get() for _ in range(n)]

    async def main() -> list[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        flow = asyncio.create_task(flowfn.aio.arun(consume, {"queue": queue, "n": 2}))
        for item in ("a", "b"):
            await asyncio.sleep(0.01)
            await queue.put(item)
        return (await flow).output

    assert asyncio.run(main()) == ["a", "b"]


def test_asyncio_step_under_plain_run_uses_a_private_loop() -> None:
    @step(executor="asyncio")  # type: ignore[call-overload]
    async def fetch(x: int) -> tuple[int, bool]:
        return await asyncio_only(x)

    @step
    def after(fetch: Annotated[tuple[int, bool], fetch]) -> int:
        return fetch[0] + 1

    assert run(graph(after), {"x": 1}).output == 2


def test_asyncio_step_timeout() -> None:
    cleaned: list[bool] = []

    @step(executor="asyncio", timeout=0.02)  # type: ignore[call-overload]
    async def hangs() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)

    with pytest.raises(RunFailed, match=r"timed out after 0\.02s"):
        run(hangs)
    with pytest.raises(RunFailed, match=r"timed out after 0\.02s"):
        asyncio.run(flowfn.aio.arun(hangs))
    assert cleaned == [True, True]


def test_asyncio_step_cancelled_with_its_caller() -> None:
    cleaned: list[bool] = []

    @step(executor="asyncio")  # type: ignore[call-overload]
    async def hangs() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await flowfn.aio.arun(hangs)

    asyncio.run(main())
    assert cleaned == [True]
