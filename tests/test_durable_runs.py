"""Durable runs end to end: stop or kill a run anywhere, resume it, get the same result.

The kill tests SIGKILL real child processes at random moments (seeded; at least a dozen
in CI, ``FLOWFN_CRASH_ITERATIONS`` for more), then resume in a fresh process and check
that no committed step ran again, the result equals an uninterrupted run, the file is
intact, and every stored step's dependencies are stored too.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import flows_durable as fd
import pytest
from durable_help import Stop, StopAfter
from durable_help import virtual as in_virtual_time

from flowfn import (
    GraphError,
    InputError,
    MemoryStore,
    RunFailed,
    SQLiteStore,
    StoreError,
    aresume,
    arun,
    graph,
    resume,
    run,
    step,
)

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "tests" / "flows_durable.py"
ITERATIONS = int(os.environ.get("FLOWFN_CRASH_ITERATIONS", "12"))


class Client:
    """A connection-like object: it has no data shape, so a store cannot hold it."""




def committed_rows() -> int:
    store = MemoryStore()
    fd.COMPLETED.clear()
    in_virtual_time(arun, fd.flow, store=store, run_id="whole")
    stored = store.load_run("whole")
    assert stored is not None
    return len(stored.steps)


def test_every_step_recovery_runs_each_body_once() -> None:
    """Stop after the k-th commit, for every k, then resume: same result, and every step
    body completed exactly once over the two processes' worth of work."""
    total = committed_rows()
    assert total == 15  # numbers, 8 items and their map, slow_sibling, 2 inner steps, branch, total
    for k in range(1, total):
        store = StopAfter(k)
        fd.COMPLETED.clear()
        with pytest.raises((Stop, BaseExceptionGroup)):
            in_virtual_time(arun, fd.flow, store=store, run_id="job")
        result = in_virtual_time(aresume, fd.flow, "job", store=store)
        assert result.output == fd.EXPECTED, k
        assert sorted(fd.COMPLETED) == sorted(set(fd.COMPLETED)), (k, fd.COMPLETED)


def _child(db: Path, command: str, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FLOWFN_TEST_LOG": str(log), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(SCRIPT), command, str(db), "job"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def _stored(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT path FROM steps WHERE run_id = 'job' AND "
                            "status = 'succeeded'").fetchall()
    return {path for (path,) in rows}


def _has_run(db: Path) -> bool:
    """The killed process got as far as recording the run."""
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT 1 FROM runs WHERE run_id = 'job'").fetchone() is not None


def test_sigkill_at_random_moments_then_resume_in_a_fresh_process(tmp_path: Path) -> None:
    rng = random.Random(20261202)
    kills_mid_run = 0
    for i in range(ITERATIONS):
        db, log = tmp_path / f"runs{i}.db", tmp_path / f"log{i}.txt"
        proc = _child(db, "run", log)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.12))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        stored = _stored(db) if db.exists() else set()
        for path in stored:  # a row never lands before its dependencies' rows
            assert set(fd.DEPENDS.get(path, [])) <= stored, (path, stored)
        kills_mid_run += 0 < len(stored) < 15
        log.write_text("")
        resumed = _child(db, "resume" if _has_run(db) else "run", log)
        out, err = resumed.communicate(timeout=30)
        assert resumed.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == fd.EXPECTED
        ran_again = set(log.read_text().split()) & stored
        assert not ran_again, f"committed steps ran again: {ran_again}"
        assert _stored(db) >= stored
    assert kills_mid_run >= 3  # the kills did land while the run was writing


def test_a_finished_run_is_returned_as_stored_and_nothing_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    fd.COMPLETED.clear()
    first = in_virtual_time(arun, fd.flow, store=store, run_id="job-1")
    ran = list(fd.COMPLETED)
    again = in_virtual_time(arun, fd.flow, store=store, run_id="job-1")
    resumed = in_virtual_time(aresume, fd.flow, "job-1", store=store)
    assert first.output == again.output == resumed.output == fd.EXPECTED
    assert ran == fd.COMPLETED  # nothing ran the second and third time
    assert again.status == resumed.status == "succeeded"


def test_a_run_id_reused_with_other_inputs_is_refused() -> None:
    @step
    def double(x: int) -> int:
        return 2 * x

    store = MemoryStore()
    run(graph(double), {"x": 1}, store=store, run_id="job-7")
    assert run(graph(double), {"x": 1}, store=store, run_id="job-7").output == 2
    with pytest.raises(StoreError, match="job-7"):
        run(graph(double), {"x": 2}, store=store, run_id="job-7")


RAN: list[str] = []


@step
def connect() -> Client:
    RAN.append("connect")
    return Client()


@step
def untyped(c: Annotated[Client, connect]):  # type: ignore[no-untyped-def]
    RAN.append("untyped")
    return 1


def test_outputs_a_store_cannot_hold_are_one_graph_error_before_anything_runs() -> None:
    with pytest.raises(GraphError) as info:
        run(graph(untyped), store=MemoryStore())
    text = str(info.value)
    assert text.startswith("2 problems in run(untyped, store=...)")
    assert "step 'connect': a store keeps every output as JSON" in text
    assert "step 'untyped': a store keeps every output as JSON, but it has no return" in text
    assert "@step(checkpoint=False)" in text
    assert RAN == []


def test_stored_values_that_no_longer_fit_are_one_report_and_nothing_runs() -> None:
    store = MemoryStore()

    @step
    def count() -> int:
        return 3

    @step
    def label() -> str:
        return "x"

    @step
    def both(c: Annotated[int, count], s: Annotated[str, label]) -> str:
        raise RuntimeError("stop here")

    with pytest.raises(RunFailed):
        run(graph(both), store=store, run_id="r")

    @step(name="count")
    def count2() -> list[int]:
        return [1]

    @step(name="label")
    def label2() -> int:
        return 1

    @step(name="both")
    def both2(c: Annotated[list[int], count2], s: Annotated[int, label2]) -> str:
        return "ran"

    with pytest.raises(InputError) as info:
        resume(graph(both2), "r", store=store)
    assert str(info.value).splitlines()[0] == "2 bad stored values for resume(both, 'r')"
    assert "count:" in str(info.value) and "label:" in str(info.value)


def test_changed_code_is_reused_and_listed_as_stale_unless_rerun() -> None:
    store = MemoryStore()
    calls: list[str] = []

    @step(name="fetch")
    def fetch_v1() -> int:
        calls.append("v1")
        return 1

    @step
    def wait(f: Annotated[int, fetch_v1]) -> int:
        raise RuntimeError("crash after fetch")

    with pytest.raises(RunFailed):
        run(graph(wait), store=store, run_id="r")

    @step(name="fetch")
    def fetch_v2() -> int:
        calls.append("v2")
        return 2

    @step(name="wait")
    def wait2(f: Annotated[int, fetch_v2]) -> int:
        return f * 10

    reused = resume(graph(wait2), "r", store=store)
    assert reused.output == 10 and reused.stale == ["fetch"]
    store2 = MemoryStore()
    with pytest.raises(RunFailed):
        run(graph(wait), store=store2, run_id="r")
    rerun = resume(graph(wait2), "r", store=store2, rerun="changed")
    assert rerun.output == 20
    assert calls == ["v1", "v1", "v2"]


def test_resume_of_an_unknown_run_names_it() -> None:
    with pytest.raises(StoreError, match="no run 'nope'"):
        resume(fd.flow, "nope", store=MemoryStore())
