"""executor="process": trio-parallel workers, killed on cancellation, functions sent by
reference or by value.

Worker processes come from trio-parallel's default cache, which outlives trio runs: the
first test pays for spawning them (at most two, one per core), the others reuse them.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import exec_steps as steps
import pytest
import trio
import trio.testing
from exec_help import example_flow, make_call, run_calls

from flowfn import GraphError, RemoteError, RunFailed, WorkerDied, graph, run, step
from flowfn._executors import Executors

pytest.importorskip("trio_parallel")



def gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def test_importable_steps_and_closures_run_in_a_worker_process() -> None:
    offset = 5
    out = run_calls(
        "process",
        make_call(steps.double, x=21),
        make_call(steps.double, lambda x: x + offset, x=1),  # a closure, sent by value
        make_call(steps.pid_then_sleep, pid_file=os.devnull, seconds=0),
    )
    assert out[:2] == [42, 6]
    assert out[2] != os.getpid()


def test_a_remote_exception_keeps_its_type_and_brings_the_worker_traceback() -> None:
    (exc,) = run_calls("process", make_call(steps.fails, x=7))
    assert isinstance(exc, ValueError) and str(exc) == "bad value 7"
    (text,) = exc.__notes__
    assert text.startswith("Traceback in process ")
    assert 'exec_steps.py", line' in text and 'raise ValueError(f"bad value {x}")' in text


def test_an_exception_that_cannot_travel_back_becomes_a_remote_error() -> None:
    class Strange(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a} and {b}")

    def raises() -> None:
        raise Strange(1, 2)

    (exc,) = run_calls("process", make_call(steps.span_name, raises))
    assert isinstance(exc, RemoteError)
    assert str(exc).startswith("Strange: 1 and 2 (in process ")


def test_a_worker_that_dies_fails_its_step_with_the_exit_code() -> None:
    (exc,) = run_calls("process", make_call(steps.exits, x=1))
    assert isinstance(exc, WorkerDied)
    assert exc.exitcode == 3
    assert str(exc).startswith("step 'exits': its worker process (pid ")
    assert str(exc).endswith(") exited with code 3 before the step returned.")


def test_cancellation_kills_the_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def main() -> float:
        executors = Executors()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(executors.run, "process",
                               make_call(steps.pid_then_spin, pid_file=str(pid_file)))
            with trio.fail_after(20):  # a cold start spawns the worker first
                while not (pid_file.exists() and pid_file.read_text()):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        await executors.aclose()
        return time.perf_counter()

    returned = trio.run(main)
    assert time.perf_counter() - returned < 1
    assert gone(int(pid_file.read_text()))


def test_values_that_cannot_be_sent_fail_the_step_with_a_message() -> None:
    out = run_calls("process", make_call(steps.double, x=steps.Unpicklable()),
                    make_call(steps.returns_unpicklable))
    assert str(out[0]) == (
        "step 'double' cannot be sent to a worker process: pickling its function or "
        "arguments failed: TypeError: this object refuses to be pickled"
    )
    assert isinstance(out[1], TypeError)
    assert str(out[1]).startswith(
        "the step's return value (Unpicklable) cannot be sent back from the worker "
        "process: TypeError: this object refuses to be pickled"
    )


def test_steps_of_a_main_script_run_by_reference(tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent("""
        import os
        import trio
        from flowfn import step
        from flowfn._executors import Call, Executors
        from flowfn._result import Span

        @step
        def where(x: int) -> tuple[int, int]:
            return x + 1, os.getpid()

        async def main() -> None:
            executors = Executors()
            call = Call(where.fn, {"x": 1}, where, "where", Span("where", "where"))
            value, pid = await executors.run("process", call)
            await executors.aclose()
            print(value, pid != os.getpid())

        if __name__ == "__main__":
            trio.run(main)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.stdout == "2 True\n", done.stderr


# --- end to end, through run() (the scheduler calls Executors once wired) ---------------


def test_run_with_executor_process_gives_the_thread_result() -> None:
    flow = graph(steps.total)
    assert run(flow, {"n": 20}, executor="process").output == run(flow, {"n": 20}).output


def test_step_with_executor_process() -> None:
    far = step(steps.cpu, executor="process", name="far")
    assert run(graph(far), {"n": 1000}).output == steps.cpu(1000)


def test_a_step_timeout_kills_the_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    spin = step(steps.pid_then_spin.fn, executor="process", timeout=0.5, name="spin")
    run_calls("process", make_call(steps.double, x=1))  # a warm worker: no spawn in 0.5 s
    with pytest.raises(RunFailed, match="timed out"):
        run(graph(spin), {"pid_file": str(pid_file)})
    assert gone(int(pid_file.read_text()))


def test_a_step_that_cannot_be_sent_is_a_graph_error() -> None:
    lock = threading.Lock()

    @step(executor="process")
    def locked(x: int) -> int:
        with lock:
            return x

    with pytest.raises(GraphError, match="cannot be sent to a worker process"):
        run(graph(locked), {"x": 1})


@pytest.mark.parametrize(("name", "inputs"), [
    ("parallel_sum", {"value": 10}),
    ("conditional", {"data": {"email": "user@example.com"}}),
    ("data_loader", {}),
])
def test_examples_give_the_same_result_in_processes(name: str, inputs: dict[str, Any]) -> None:
    flow = example_flow(name)
    assert run(flow, inputs, executor="process").output == run(flow, inputs).output


def test_process_work_pauses_autojump() -> None:
    async def main() -> bool:
        executors = Executors()
        with trio.move_on_after(1) as scope:  # virtual time: autojump would leap to it
            await executors.run("process", make_call(steps.pid_then_sleep,
                                                     pid_file=os.devnull, seconds=0.2))
        await executors.aclose()
        return scope.cancelled_caught

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) is False
