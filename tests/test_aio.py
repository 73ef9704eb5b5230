"""flowfn inside asyncio: ``flowfn.aio.arun`` (trio as a guest of the asyncio loop), and the
messages that point asyncio users there. Plain ``asyncio.run`` in every test: no asyncio
pytest plugin. The ``"asyncio"`` executor has tests of its own (test_aio_executor.py).
"""

import asyncio
import contextvars
import inspect
import threading
import time
from typing import Annotated, Any

import pytest
import sniffio
import trio
import trio.testing

import flowfn
import flowfn.aio
from flowfn import GraphError, InputError, RunFailed, Step, graph, run, step
from flowfn._aioexec import (
    AsyncioExecutor,
    arun_outside_trio_message,
    asyncio_hint,
    run_inside_trio_message,
)

# flowfn.run()'s keyword options, as flowfn.aio.arun lists them
OPTIONS = [p for p in inspect.signature(flowfn.arun).parameters if p not in ("flow", "inputs")]


@step
async def double(x: int) -> int:
    await trio.sleep(0.001)
    return 2 * x


@step
def plus_one(double: int) -> int:
    return double + 1


@step
async def total(double: int, plus_one: int) -> int:
    return double + plus_one


FLOW = graph(total)


def guest_root() -> object:
    """Identifies the trio run a step runs in."""
    return trio.lowlevel.current_root_task()


# --- flowfn.aio.arun -----------------------------------------------------------------------


def test_results_equal_those_of_run() -> None:
    expected = run(FLOW, {"x": "4"})
    result = asyncio.run(flowfn.aio.arun(FLOW, {"x": "4"}))
    assert result.output == expected.output == 17
    assert result.status == "succeeded"
    assert {p: s.status for p, s in result.spans.items()} == {
        p: s.status for p, s in expected.spans.items()
    }
    assert result.spans["double"].input == {"x": 4}


def test_ten_concurrent_calls_share_one_guest_run() -> None:
    roots: list[object] = []

    @step
    async def where(x: int) -> int:
        roots.append(guest_root())
        await trio.sleep(0.01)
        return x

    async def main() -> list[int]:
        results = await asyncio.gather(
            *(flowfn.aio.arun(where, {"x": i}) for i in range(10))
        )
        return [r.output for r in results]

    assert asyncio.run(main()) == list(range(10))
    assert len(roots) == 10 and len(set(map(id, roots))) == 1


def test_the_host_loop_keeps_serving_while_flows_run() -> None:
    @step
    async def wait(x: int) -> int:
        await trio.sleep(0.06)
        return x

    @step
    def work(waited: Annotated[int, wait]) -> int:
        return sum(range(1000)) + waited

    flow = graph(work)

    async def main() -> float:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        for _ in range(2):
            await asyncio.gather(*(flowfn.aio.arun(flow, {"x": i}) for i in range(10)))
        stop.set()
        await tick
        assert len(gaps) > 10
        return max(gaps)

    # A blocking run() would stall the ticker for at least the 60 ms of one flow; guest
    # mode only for the moments trio's own tasks run (about 5 ms here, when idle).
    assert asyncio.run(main()) < 0.05


def test_caller_cancellation_cancels_the_flow_and_runs_finally_blocks() -> None:
    events: list[str] = []

    @step
    async def slow() -> int:
        events.append("started")
        try:
            await trio.sleep(10)
        finally:
            events.append("finally")
        return 1

    async def by_cancel() -> None:
        task = asyncio.create_task(flowfn.aio.arun(slow))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events[-1] == "finally"

    async def by_wait_for() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flowfn.aio.arun(slow), 0.02)
        assert events[-1] == "finally"

    async def by_timeout() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await flowfn.aio.arun(slow)
        assert events[-1] == "finally"
        # the loop is free of trio: a new call starts a fresh guest run
        assert (await flowfn.aio.arun(FLOW, {"x": 1})).output == 5

    for scenario in (by_cancel, by_wait_for, by_timeout):
        asyncio.run(scenario())
    assert events == ["started", "finally"] * 3


def test_a_loop_that_ends_with_a_flow_in_flight_cancels_it() -> None:
    events: list[str] = []

    @step
    async def slow() -> None:
        try:
            await trio.sleep(10)
        finally:
            events.append("finally")

    left: list[asyncio.Task[Any]] = []

    async def main() -> None:
        # never awaited: asyncio.run cancels it on the way out
        left.append(asyncio.create_task(flowfn.aio.arun(slow)))
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert events == ["finally"] and left[0].cancelled()
    assert run(FLOW, {"x": 1}).output == 5  # no trio run was left in this thread


def test_cancelling_one_call_leaves_the_others_running() -> None:
    @step
    async def nap(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    async def main() -> float:
        doomed = asyncio.create_task(flowfn.aio.arun(nap, {"seconds": 10}))
        kept = asyncio.create_task(flowfn.aio.arun(nap, {"seconds": 0.05}))
        await asyncio.sleep(0.01)
        doomed.cancel()
        return (await kept).output

    assert asyncio.run(main()) == 0.05


def test_failures_reach_the_caller_as_run_raises_them() -> None:
    @step
    async def broken() -> int:
        raise ValueError("no such user")

    async def main() -> None:
        with pytest.raises(RunFailed, match="no such user") as info:
            await flowfn.aio.arun(broken)
        assert isinstance(info.value.__cause__, ValueError)
        with pytest.raises(InputError):
            await flowfn.aio.arun(FLOW, {"x": "four"})
        with pytest.raises(GraphError):
            await flowfn.aio.arun(FLOW, overrides={"nope": 1})

    asyncio.run(main())


def test_a_second_asyncio_run_afterwards_works() -> None:
    for x in (1, 2, 3):
        assert asyncio.run(flowfn.aio.arun(FLOW, {"x": x})).output == 4 * x + 1
    assert run(FLOW, {"x": 1}).output == 5  # plain trio.run in this thread still works


def test_asyncio_runs_in_two_threads_at_once() -> None:
    outputs: list[int] = []

    def worker(x: int) -> None:
        outputs.append(asyncio.run(flowfn.aio.arun(FLOW, {"x": x})).output)

    threads = [threading.Thread(target=worker, args=(x,)) for x in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outputs) == [5, 9]


def test_the_callers_context_variables_reach_the_steps() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    @step
    async def who() -> str:
        return request_id.get()

    async def handle(rid: str) -> str:
        request_id.set(rid)
        return (await flowfn.aio.arun(who)).output

    async def main() -> list[str]:
        return await asyncio.gather(handle("a"), handle("b"))

    assert asyncio.run(main()) == ["a", "b"]


def test_steps_stay_trio_tasks_for_anyio_based_libraries() -> None:
    @step
    async def library() -> str:
        return sniffio.current_async_library()

    async def main() -> str:
        sniffio.current_async_library_cvar.set("asyncio")  # as some asyncio shims do
        return (await flowfn.aio.arun(library)).output

    assert asyncio.run(main()) == "trio"


# --- messages of flowfn.aio.arun ----------------------------------------------------------


def test_aio_arun_inside_trio_names_flowfn_arun() -> None:
    async def main() -> None:
        await flowfn.aio.arun(FLOW, {"x": 1})

    with pytest.raises(RuntimeError) as info:
        trio.run(main)
    assert str(info.value) == (
        "flowfn.aio.arun(total) was awaited inside a trio program, which flowfn runs on "
        "directly.\n"
        "  Use: await flowfn.arun(total, inputs, ...)"
    )


def test_aio_arun_without_an_event_loop() -> None:
    coro = flowfn.aio.arun(FLOW)
    with pytest.raises(RuntimeError) as info:
        coro.send(None)
    assert str(info.value) == (
        "flowfn.aio.arun(total) needs a running asyncio event loop: await it from asyncio "
        "code (a handler, asyncio.run(main())).\n"
        "  From plain code call flowfn.run(...) instead."
    )


def test_aio_arun_takes_no_clock_and_names_its_options() -> None:
    with pytest.raises(TypeError) as info:
        asyncio.run(flowfn.aio.arun(FLOW, {"x": 1}, clock=trio.testing.MockClock()))
    assert str(info.value) == (
        "flowfn.aio.arun(total, clock=...): a guest run of trio follows the asyncio loop's "
        "real time, so it takes no clock.\n"
        "  Test flows in virtual time with flowfn.run(..., clock=MockClock("
        "autojump_threshold=0)) or the flow_run fixture."
    )
    with pytest.raises(TypeError) as info:
        asyncio.run(flowfn.aio.arun(FLOW, {"x": 1}, max_concurrence=2))
    assert str(info.value) == (
        "flowfn.aio.arun(total) got an unknown option 'max_concurrence'. Did you mean "
        "'max_concurrency'?\n"
        "  It takes the options of flowfn.run() except clock=: "
        + ", ".join(OPTIONS) + "."
    )


def test_flowfn_arun_awaited_from_asyncio_message() -> None:
    async def main() -> str | None:
        return arun_outside_trio_message("total")

    assert asyncio.run(main()) == (
        "await flowfn.arun(total) was awaited from asyncio code, but arun() runs inside a "
        "trio program.\n"
        "  In an asyncio application use: await flowfn.aio.arun(total, inputs, ...)\n"
        "  It runs the flow with trio as a guest of your event loop, which keeps serving "
        "meanwhile."
    )
    assert arun_outside_trio_message("total") == (
        "await flowfn.arun(total) was awaited outside a trio program.\n"
        "  From plain code call flowfn.run(...); from asyncio code await "
        "flowfn.aio.arun(...)."
    )

    async def in_trio() -> str | None:
        return arun_outside_trio_message("total")

    assert trio.run(in_trio) is None


def test_flowfn_arun_awaited_from_asyncio_names_flowfn_aio() -> None:
    async def main() -> None:
        await flowfn.arun(FLOW, {"x": 1})

    with pytest.raises(RuntimeError, match=r"await flowfn\.aio\.arun\(total, inputs"):
        asyncio.run(main())


def test_run_inside_a_trio_run_message() -> None:
    assert run_inside_trio_message("total") is None

    async def in_trio() -> str | None:
        return run_inside_trio_message("total")

    assert trio.run(in_trio) == (
        "flowfn.run(total) was called inside a running trio program.\n"
        "  Use: await flowfn.arun(total, inputs, ...)"
    )

    @step
    async def hold(release: Any) -> None:
        await release.wait()

    async def while_hosting() -> str | None:
        release = trio.Event()
        flow = asyncio.create_task(flowfn.aio.arun(hold, {"release": release}))
        await asyncio.sleep(0.01)
        message = run_inside_trio_message("total")
        trio.lowlevel.current_trio_token().run_sync_soon(release.set)
        await flow
        return message

    assert asyncio.run(while_hosting()) == (
        "flowfn.run(total) was called from asyncio code while flowfn.aio runs flows on this "
        "event loop; run() would block the loop until the flow ends.\n"
        "  Use: await flowfn.aio.arun(total, inputs, ...)"
    )


def test_another_trio_guest_run_on_the_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio.sleep, 0.02, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=ended.set_result,
        )
        with pytest.raises(RuntimeError) as info:
            await flowfn.aio.arun(FLOW, {"x": 1})
        await ended
        return str(info.value)

    assert asyncio.run(main()) == (
        "flowfn.aio.arun() cannot start trio on this event loop: another trio run is active "
        "in this thread (Attempted to call run() from inside a run()).\n"
        "  A thread holds one trio run at a time; inside it, use await flowfn.arun(...) from "
        "a trio task."
    )


def test_blocking_run_while_hosting_names_flowfn_aio() -> None:
    @step
    async def hold(release: Any) -> None:
        await release.wait()

    async def main() -> None:
        release = trio.Event()
        flow = asyncio.create_task(flowfn.aio.arun(hold, {"release": release}))
        await asyncio.sleep(0.01)
        try:
            with pytest.raises(RuntimeError, match=r"await flowfn\.aio\.arun\(total"):
                run(FLOW, {"x": 1})
        finally:
            trio.lowlevel.current_trio_token().run_sync_soon(release.set)
            await flow

    asyncio.run(main())


# --- a step that touches asyncio on trio ----------------------------------------------------

ON_TRIO_HINT = (
    "Hint: this step used asyncio, but flowfn ran it on trio, where no asyncio task "
    "exists. Give it @step(executor=\"asyncio\") to run it as an asyncio task."
)


async def uses_sleep() -> None:
    await asyncio.sleep(0.01)


async def uses_queue() -> None:
    await asyncio.Queue[int]().get()


async def uses_timeout() -> None:
    async with asyncio.timeout(1):
        pass


def failure_of(fn: Any, host: bool) -> BaseException:
    flow = Step(fn)
    if host:
        with pytest.raises(RunFailed) as info:
            asyncio.run(flowfn.aio.arun(flow))
    else:
        with pytest.raises(RunFailed) as info:
            run(flow)
    assert info.value.__cause__ is not None
    return info.value.__cause__


@pytest.mark.parametrize("host", [False, True], ids=["run", "aio"])
@pytest.mark.parametrize("fn", [uses_sleep, uses_queue, uses_timeout])
def test_asyncio_code_on_trio_gets_a_hint(fn: Any, host: bool) -> None:
    assert asyncio_hint(failure_of(fn, host)) == ON_TRIO_HINT


def test_no_hint_for_ordinary_failures_or_asyncio_steps() -> None:
    assert asyncio_hint(KeyError("x")) is None
    assert asyncio_hint(RuntimeError("boom")) is None
    assert asyncio_hint(RuntimeError("no running event loop"), "asyncio") is None
    assert asyncio_hint(RuntimeError("no running event loop"), "thread") == ON_TRIO_HINT
    wrapped = ConnectionError("request failed")
    wrapped.__cause__ = RuntimeError("Timeout context manager should be used inside a task")
    assert asyncio_hint(wrapped) == ON_TRIO_HINT


def test_an_asyncio_step_of_plain_run_using_another_loops_object_gets_a_hint() -> None:
    error = RuntimeError("<Queue at 0x1 maxsize=0> is bound to a different event loop")
    assert asyncio_hint(error, "asyncio") == (
        "Hint: without flowfn.aio, executor=\"asyncio\" steps run on a private event loop "
        "of the run, not your application's. Start the flow with await flowfn.aio.arun(...) "
        "to share the application's loop objects."
    )
    assert asyncio_hint(error, AsyncioExecutor()) is not None


def test_the_run_failed_message_carries_the_hint() -> None:
    with pytest.raises(RunFailed) as info:
        run(Step(uses_sleep))
    assert ON_TRIO_HINT in str(info.value)


def test_a_waiting_run_is_answered_from_asyncio_without_blocking_the_loop() -> None:
    from flowfn import MemoryStore, ask

    approve = ask("approve", bool)

    @step
    def decision(ok: Annotated[bool, approve]) -> str:
        return "ship" if ok else "hold"

    async def main() -> tuple[str, str, object]:
        store = MemoryStore()
        first = await flowfn.aio.arun(graph(decision), store=store, run_id="w")
        done = await flowfn.aio.aresume(graph(decision), "w", store=store,
                                        answers={"approve": True})
        return first.status, done.status, done.output

    assert asyncio.run(main()) == ("waiting", "succeeded", "ship")
