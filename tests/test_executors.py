"""Executors as objects: the registry a run holds, the thread pool, sendability checks.

The scheduler does not call ``Executors`` yet, so the executors are exercised directly
(``Call`` objects inside ``trio.run``) besides the end-to-end runs through ``run()``.
"""

import multiprocessing
import pickle
import threading
import time
from typing import Any

import pytest
import trio
import trio.testing
from exec_help import make_call, run_calls

import flowfn
from flowfn import Executor, current_span, graph, run, step
from flowfn import _executors as executors_module
from flowfn._executors import Call, Executors, check_sendable


@step
def add(a: int, b: int) -> int:
    return a + b


@step
async def add_async(a: int, b: int) -> int:
    return a + b


# --- the thread executor ----------------------------------------------------------------


def test_thread_executor_returns_values_and_raises_errors() -> None:
    def broken(a: int, b: int) -> int:
        raise KeyError(a)

    out = run_calls("thread", make_call(add, a=1, b=2), make_call(add, broken, a=3, b=4))
    assert out[0] == 3
    assert isinstance(out[1], KeyError) and out[1].args == (3,)


def test_thread_executor_runs_in_another_thread_with_the_context() -> None:
    @step
    def where() -> tuple[str, str]:
        return threading.current_thread().name, current_span().name

    result = run(graph(where))
    assert result.output[0] != threading.current_thread().name
    assert result.output[1] == "where"


def test_a_thousand_cheap_calls_come_back_in_order() -> None:
    async def main() -> list[int]:
        executors = Executors()
        out = [0] * 1000

        async def one(i: int) -> None:
            out[i] = await executors.run("thread", make_call(add, a=i, b=1))

        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(one, i)
        await executors.aclose()
        return out

    assert trio.run(main) == [i + 1 for i in range(1000)]


def test_sync_steps_are_not_capped_at_forty_threads() -> None:
    steps = []
    for i in range(100):
        def nap() -> int:
            time.sleep(0.1)
            return 1

        steps.append(step(nap, name=f"nap{i}"))

    def run_all() -> float:
        started = time.perf_counter()
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                for s in steps:
                    nursery.start_soon(Executors().run, "thread", make_call(s))
        trio.run(main)
        return time.perf_counter() - started

    run_all()  # the first run may start the threads
    # 40 threads would need three rounds (0.3 s); the pool runs all 100 at once
    assert run_all() < 0.25


def test_own_deadline_abandons_the_thread_and_says_so_on_the_span() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    async def main() -> Call:
        executors = Executors()
        with trio.move_on_after(0.02) as scope:
            c = make_call(add, slow, own_deadline=scope)
            await executors.run("thread", c)
        return c

    started = time.perf_counter()
    c = trio.run(main)
    assert time.perf_counter() - started < 0.15
    assert not finished.is_set()
    assert c.span.abandoned
    finished.wait(1)


def test_any_other_cancellation_waits_for_the_thread() -> None:
    finished = threading.Event()

    def slow() -> int:
        time.sleep(0.1)
        finished.set()
        return 1

    async def main() -> Call:
        executors = Executors()
        with trio.CancelScope() as own, trio.move_on_after(0.02):
            c = make_call(add, slow, own_deadline=own)
            await executors.run("thread", c)
        return c

    c = trio.run(main)
    assert finished.is_set()  # the run did not return before the function did
    assert not c.span.abandoned


def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    ran = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await Executors().run("thread", make_call(add, lambda: ran.append(1)))

    trio.run(main)
    assert ran == []


def _add_in_a_child() -> int:
    output: int = run(graph(add), {"a": 1, "b": 2}).output
    return output


def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    assert _add_in_a_child() == 3  # the parent's pool has threads now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_add_in_a_child).get(timeout=20) == 3


def test_thread_work_pauses_autojump(flow_run: Any) -> None:
    @step(timeout=5)
    def real() -> str:
        time.sleep(0.05)  # real time: virtual time must not leap past timeout=5
        return "done"

    assert flow_run(graph(real)).output == "done"


# --- the registry -----------------------------------------------------------------------


class Recording:
    """An executor object that records its lifetime."""

    name = "recording"

    def __init__(self) -> None:
        self.log: list[str] = []

    async def open(self) -> None:
        self.log.append("open")

    async def run(self, call: Call) -> Any:
        self.log.append(f"run {call.path}")
        return call.fn(**call.kwargs)

    async def close(self) -> None:
        self.log.append("close")


def test_an_executor_object_is_opened_once_per_run_and_closed_at_the_end() -> None:
    rec = Recording()
    assert isinstance(rec, Executor)
    assert run_calls(rec, make_call(add, a=1, b=1), make_call(add, a=2, b=2)) == [2, 4]
    assert rec.log == ["open", "run add", "run add", "close"]


def test_builtin_names_get_fresh_instances_per_run() -> None:
    assert run_calls("inline", make_call(add, a=1, b=2)) == [3]
    assert run_calls("async", make_call(add_async, a=1, b=2)) == [3]


def test_pick_follows_the_step_overrides_and_the_run_default() -> None:
    rec = Recording()
    executors = Executors(rec)

    async def stand_in(a: int, b: int) -> int:
        return 0

    assert executors.pick(add_async, add_async.fn) == "async"
    assert executors.pick(add_async, lambda a, b: 0) == "inline"  # sync override
    assert executors.pick(add, stand_in) == "async"  # async override
    assert Executors().pick(add, add.fn) == "thread"
    inline = step(add.fn, executor="inline", name="inline_add")
    assert executors.pick(inline, inline.fn) == "inline"  # given explicitly: kept
    default = step(add.fn, name="default_add")
    default.executor_given = False  # what @step records when executor= is left out
    assert executors.pick(default, default.fn) is rec
    assert executors.pick(add_async, add_async.fn) == "async"  # async steps keep theirs


def test_unknown_executor_names_and_bad_defaults_are_explained() -> None:
    out = run_calls("proces", make_call(add, a=1, b=2))
    assert str(out[0]) == (
        "executor='proces' is not known. Use one of: 'async', 'inline', 'thread', "
        "'process', 'asyncio', or an executor object."
    )
    with pytest.raises(TypeError) as info:
        Executors(5)  # type: ignore[arg-type]
    assert str(info.value) == (
        "executor= must be the name of an executor ('async', 'inline', 'thread', "
        "'process', 'asyncio') or an executor object such as "
        "flowfn.dask.DaskExecutor(...), got 5."
    )


# --- sendability ------------------------------------------------------------------------


def test_check_sendable_names_steps_that_cannot_reach_a_worker() -> None:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    s = step(locked)
    s.executor_given = False  # what @step records when executor= is left out
    problems = check_sendable([s, add], default_sync="process")
    assert len(problems) == 1
    text = problems[0].render()
    assert problems[0].step == "locked"
    assert "in def locked(x)" in text.splitlines()[0]
    assert text.splitlines()[1:] == [
        "    step 'locked' runs on executor 'process', but its function cannot be sent to a "
        "worker process: pickling it by value failed: TypeError: cannot pickle "
        "'_thread.lock' object.",
        "    Define it at the top level of an importable module, or keep unpicklable objects "
        "(locks, open files, connections) out of what it closes over.",
    ]
    assert check_sendable([s]) == []  # threads need no sending


def test_exports() -> None:
    assert flowfn.Executor is Executor
    assert issubclass(flowfn.WorkerDied, RuntimeError)


def test_an_executor_whose_extra_is_missing_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(executors_module._BUILTIN, "process",
                        ("flowfn_not_installed_here", "ProcessExecutor", "pyflowfn[process]"))
    (exc,) = run_calls("process", make_call(add, a=1, b=2))
    assert str(exc) == (
        "executor='process' needs a package that is not installed "
        "(flowfn_not_installed_here). Install it with: pip install 'pyflowfn[process]'"
    )


def test_worker_died_and_remote_error_pickle() -> None:
    died = pickle.loads(pickle.dumps(flowfn.WorkerDied("step 'x': gone", -9)))
    assert str(died) == "step 'x': gone" and died.exitcode == -9
    remote = pickle.loads(pickle.dumps(flowfn.RemoteError("Strange: 1")))
    assert str(remote) == "Strange: 1"
