"""flowfn.dask.DaskExecutor against real LocalClusters (in-process for most tests, worker
processes for the test that proves values and functions cross process boundaries)."""

import os
import threading
import time
from typing import Any

import exec_steps as steps
import pytest
import trio
import trio.testing
from exec_help import example_flow, make_call, run_calls

from flowfn import graph, run, step
from flowfn._executors import Executors

pytest.importorskip("distributed")

from flowfn.dask import DaskExecutor, ResourcesUnavailable

pytest_plugins = ["_exec_fixtures"]



def test_steps_and_closures_run_on_the_cluster(dask_client: Any) -> None:
    offset = 5
    dx = DaskExecutor(dask_client)
    out = run_calls(dx, make_call(steps.double, x=21),
                    make_call(steps.double, lambda x: x + offset, x=1))
    assert out == [42, 6]


def test_a_remote_exception_keeps_its_type_and_brings_the_worker_traceback(
        dask_client: Any) -> None:
    (exc,) = run_calls(DaskExecutor(dask_client), make_call(steps.fails, x=7))
    assert isinstance(exc, ValueError) and str(exc) == "bad value 7"
    assert any(n.startswith("Traceback in process ") and "exec_steps.py" in n
               for n in exc.__notes__)


def test_resources_no_worker_has_fail_at_once(dask_client: Any) -> None:
    gpu = step(steps.double.fn, name="train")
    gpu.resources = {"GPU": 1}  # what @step(resources={"GPU": 1}) records
    started = time.perf_counter()
    (exc,) = run_calls(DaskExecutor(dask_client), make_call(gpu, x=1))
    assert time.perf_counter() - started < 5
    assert isinstance(exc, ResourcesUnavailable)
    text = str(exc)
    assert text.startswith(
        "step 'train' asks for Dask resources GPU=1, but no worker of the cluster has them "
        "(Dask would wait forever). Workers' resources: inproc://"
    )
    assert text.endswith(': none. Start workers with --resources "GPU=1", or change the '
                         "step's resources=.")


def test_a_cancelled_running_task_is_noted_on_the_span(dask_client: Any) -> None:
    def slow(x: int) -> int:
        time.sleep(0.5)
        return x

    async def main() -> Any:
        executors = Executors()
        c = make_call(steps.double, slow, x=1)
        with trio.move_on_after(0.2):
            await executors.run(DaskExecutor(dask_client), c)
        await executors.aclose()
        return c.span

    started = time.perf_counter()
    span = trio.run(main)
    assert time.perf_counter() - started < 0.45
    assert span.abandoned
    assert span.reason.startswith("the Dask task was already running on inproc://")
    assert span.reason.endswith(" and runs to its end (Dask cannot interrupt a running task)")


def test_worker_processes_and_an_address(dask_processes: Any) -> None:
    offset = 5
    dx = DaskExecutor(dask_processes.scheduler_address)
    out = run_calls(dx, make_call(steps.double, x=21),
                    make_call(steps.double, lambda x: x + offset, x=1),
                    make_call(steps.pid_then_sleep, pid_file="/dev/null", seconds=0))
    assert out[:2] == [42, 6]
    assert out[2] != os.getpid()
    with pytest.raises(RuntimeError, match="is not connected"):
        dx.client  # closed with the run that opened it


def test_one_executor_serves_runs_in_two_threads_at_once(dask_client: Any) -> None:
    dx = DaskExecutor(dask_client.scheduler.address)
    results: list[list[Any]] = []

    def one(x: int) -> None:
        results.append(run_calls(dx, make_call(steps.double, x=x)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [[0], [2]]
    with pytest.raises(RuntimeError, match="is not connected"):
        dx.client  # the last run to end closed its connection


def test_a_bad_argument_is_explained() -> None:
    with pytest.raises(TypeError) as info:
        DaskExecutor(8786)  # type: ignore[arg-type]
    assert str(info.value) == (
        "DaskExecutor() takes a distributed.Client or a scheduler address such as "
        "'tcp://127.0.0.1:8786', got 8786."
    )


# --- end to end, through run() (the scheduler calls Executors once wired) ---------------


def test_run_on_dask_gives_the_thread_result(dask_client: Any) -> None:
    flow = graph(steps.total)
    expected = run(flow, {"n": 20}).output
    assert run(flow, {"n": 20}, executor=DaskExecutor(dask_client)).output == expected


def test_step_with_a_dask_executor(dask_client: Any) -> None:
    far = step(steps.cpu, executor=DaskExecutor(dask_client), name="far")
    assert run(graph(far), {"n": 1000}).output == steps.cpu(1000)


@pytest.mark.parametrize(("name", "inputs"), [
    ("parallel_sum", {"value": 10}),
    ("conditional", {"data": {"email": "user@example.com"}}),
])
def test_examples_give_the_same_result_on_dask(name: str, inputs: dict[str, Any],
                                               dask_client: Any) -> None:
    flow = example_flow(name)
    expected = run(flow, inputs).output
    assert run(flow, inputs, executor=DaskExecutor(dask_client)).output == expected


def test_dask_work_pauses_autojump(dask_client: Any) -> None:
    async def main() -> bool:
        executors = Executors()
        with trio.move_on_after(1) as scope:  # virtual time: autojump would leap to it
            await executors.run(DaskExecutor(dask_client), make_call(
                steps.pid_then_sleep, pid_file=os.devnull, seconds=0.2))
        await executors.aclose()
        return scope.cancelled_caught

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) is False
