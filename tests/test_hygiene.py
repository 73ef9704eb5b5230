"""Cancellation hygiene: a stopped run leaves no trio task and no thread work behind."""

import signal
import threading
import time
from typing import Annotated, Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from flowfn import RunFailed, arun, graph, run, step


class Boom(Exception):
    pass


class TaskCounter(trio.abc.Instrument):
    """Every task spawned while installed, and whether it has exited."""

    def __init__(self) -> None:
        self.alive: set[trio.lowlevel.Task] = set()
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1
        self.alive.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.discard(task)


def busy_flow(log: list[str], *, fail_after: float = 1.0,
              error: BaseException | None = None) -> Any:
    """Two async siblings and one thread sibling running when ``explode`` fails."""

    @step
    async def sleepy_a() -> int:
        try:
            await trio.sleep(1000)
        finally:
            log.append("sleepy_a finally")
        return 1

    @step
    async def sleepy_b() -> int:
        try:
            async with trio.open_nursery() as inner:  # a step with tasks of its own
                inner.start_soon(trio.sleep, 1000)
                inner.start_soon(trio.sleep, 2000)
        finally:
            log.append("sleepy_b finally")
        return 2

    @step
    async def explode() -> int:
        await trio.sleep(fail_after)
        raise error if error is not None else Boom("boom")

    @step
    def never(a: Annotated[int, sleepy_a], b: Annotated[int, sleepy_b],
              c: Annotated[int, explode]) -> int:
        log.append("never ran")
        return a + b + c

    return graph(never)


def test_no_task_left_after_a_failed_run() -> None:
    counter = TaskCounter()
    log: list[str] = []

    async def main() -> None:
        trio.lowlevel.add_instrument(counter)
        try:
            with pytest.raises(RunFailed):
                await arun(busy_flow(log))
            # checked right when arun returns: nothing may still be alive
            assert counter.spawned >= 5  # 3 steps + 2 tasks inside sleepy_b
            assert counter.alive == set()
        finally:
            trio.lowlevel.remove_instrument(counter)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(log) == ["sleepy_a finally", "sleepy_b finally"]


def test_no_task_left_after_a_run_timeout() -> None:
    counter = TaskCounter()
    log: list[str] = []

    async def main() -> None:
        trio.lowlevel.add_instrument(counter)
        try:
            with pytest.raises(RunFailed) as info:
                await arun(busy_flow(log, fail_after=50), timeout=10)
            assert isinstance(info.value.__cause__, TimeoutError)
            assert trio.current_time() == 10
            assert counter.alive == set()
        finally:
            trio.lowlevel.remove_instrument(counter)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(log) == ["sleepy_a finally", "sleepy_b finally"]


def busy_threads() -> set[threading.Thread]:
    """Threads doing work: idle cached workers (trio's "Trio thread N", flowfn's pool
    "flowfn idle worker") are not (a trio worker
    is renamed after the function while it runs one)."""
    return {
        t for t in threading.enumerate()
        if t is not threading.main_thread()
        and not t.name.startswith(("Trio thread", "flowfn idle"))
    }


def new_busy_threads(before: set[threading.Thread]) -> list[str]:
    """Busy threads that were not busy before (threads other tests left may end meanwhile)."""
    return sorted(t.name for t in busy_threads() - before)


def test_thread_work_finishes_before_a_failed_run_returns() -> None:
    before = busy_threads()
    started = threading.Event()
    done: list[str] = []

    @step
    def crunch() -> int:
        started.set()
        try:
            time.sleep(0.1)  # real work that cannot be interrupted
            return 1
        finally:
            done.append("crunch")

    @step
    async def fail_once_crunching() -> int:
        while not started.is_set():
            await trio.sleep(0.001)
        raise Boom("while a thread works")

    @step
    def join(a: Annotated[int, crunch], b: Annotated[int, fail_once_crunching]) -> int:
        done.append("join")
        return a + b

    with pytest.raises(RunFailed) as info:
        run(graph(join))
    assert done == ["crunch"]  # the thread had finished when run() raised
    assert new_busy_threads(before) == []
    assert isinstance(info.value.__cause__, Boom)
    assert info.value.result.spans["join"].status == "cancelled"


def test_no_thread_left_after_many_failed_runs() -> None:
    before = busy_threads()

    @step
    def work(i: int) -> int:
        time.sleep(0.002)
        return i

    @step
    def bad(i: int) -> int:
        raise Boom(str(i))

    flow = graph(work, bad)
    for i in range(20):
        with pytest.raises(RunFailed):
            run(flow, {"i": i})
    assert new_busy_threads(before) == []


def test_keyboard_interrupt_from_a_step_propagates() -> None:
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run(busy_flow(log, error=KeyboardInterrupt()),
            clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(log) == ["sleepy_a finally", "sleepy_b finally"]


def test_keyboard_interrupt_from_a_thread_step_propagates() -> None:
    log: list[str] = []

    @step
    async def waiting() -> None:
        try:
            await trio.sleep(1000)
        finally:
            log.append("waiting finally")

    @step
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(graph(waiting, interrupted), clock=trio.testing.MockClock(autojump_threshold=0))
    assert log == ["waiting finally"]


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="needs Python's default SIGINT handler",
)
def test_real_sigint_during_a_run() -> None:
    log: list[str] = []

    @step
    async def waiting() -> None:
        try:
            await trio.sleep(1000)
        finally:
            log.append("waiting finally")

    @step
    async def ctrl_c() -> None:
        await trio.sleep(1)
        signal.raise_signal(signal.SIGINT)
        await trio.sleep(1000)

    with pytest.raises(KeyboardInterrupt):
        run(graph(waiting, ctrl_c), clock=trio.testing.MockClock(autojump_threshold=0))
    assert log == ["waiting finally"]


def test_outer_cancellation_propagates_and_cleans_up() -> None:
    log: list[str] = []
    counter = TaskCounter()

    async def main() -> None:
        trio.lowlevel.add_instrument(counter)
        try:
            with trio.move_on_after(0.5) as scope:
                await arun(busy_flow(log))
                log.append("arun returned")  # must not happen: arun is cancelled
            assert scope.cancelled_caught
            assert counter.alive == set()
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(0.5):
                    await arun(busy_flow(log))
        finally:
            trio.lowlevel.remove_instrument(counter)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(log) == ["sleepy_a finally", "sleepy_a finally",
                           "sleepy_b finally", "sleepy_b finally"]


def test_outer_cancellation_before_start_runs_nothing() -> None:
    ran: list[str] = []

    @step
    async def first() -> None:
        ran.append("first")

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await arun(graph(first))
        assert scope.cancelled_caught

    trio.run(main)
    assert ran == []
