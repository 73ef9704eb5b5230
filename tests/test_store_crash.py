"""Real crashes of real processes: SIGKILL while the writer commits, then read the file.

A child process writes step rows through the run's writer and prints the last sequence
number after each ``flush()`` (everything up to it is committed). The parent kills it
with SIGKILL — at random moments from a seeded RNG, or at a deterministic point through
the store's test hook ``FLOWFN_STORE_CRASH`` — and then checks the file: it is intact,
the stored rows are exactly a prefix of the add order, and nothing printed as committed
is missing. ``FLOWFN_CRASH_ITERATIONS`` raises the number of random kills (default 12).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowfn import SQLiteStore

ROOT = Path(__file__).parent.parent
ITERATIONS = int(os.environ.get("FLOWFN_CRASH_ITERATIONS", "12"))

# argv: database, rows per flush, payload bytes, total rows, yield to the writer every n rows.
# With "--zygote" instead, it imports everything once and then forks one writer process
# per line read from stdin (same arguments, plus the file that receives its output): a
# forked child is ready in milliseconds, so a dozen real SIGKILLs take about a second.
CHILD = """
import os
import sys
import trio
from flowfn import SQLiteStore
from flowfn._store import StepRow, store_writer


def work(path, per_flush, size, total, every):
    store = SQLiteStore(path)
    payload = '"' + "x" * size + '"'

    async def main():
        async with store_writer(store, "run") as writer:
            print("ready", flush=True)
            for seq in range(1, total + 1):
                writer.add(StepRow(f"step{seq}", "succeeded", payload, "h"))
                if seq % per_flush == 0:
                    await writer.flush()
                    print(seq, flush=True)
                elif every and seq % every == 0:
                    await trio.sleep(0)
    try:
        trio.run(main)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return 3
    return 0


def zygote():
    for line in sys.stdin:
        path, *numbers, out = line.split()
        pid = os.fork()
        if pid == 0:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            sys.stdout = open(1, "w", closefd=False)
            os._exit(work(path, *map(int, numbers)))
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if sys.argv[1] == "--zygote":
    zygote()
else:
    sys.exit(work(sys.argv[1], *map(int, sys.argv[2:])))
"""


def fresh_store(path: Path) -> None:
    store = SQLiteStore(path)
    store.begin_run("run", graph_name="g", flow_ref=None, inputs_json="{}")
    store.close()


def child(path: Path, *args: int, env: dict[str, str] | None = None,
          preexec: object = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        preexec_fn=preexec)  # type: ignore[arg-type]


def stored_seqs(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT commit_seq, path FROM steps WHERE run_id = 'run' "
                          "ORDER BY commit_seq").fetchall()
    finally:
        db.close()
    assert all(p == f"step{s}" for s, p in rows)  # each row is the one added at that seq
    return [s for s, _ in rows]


def printed(out: str) -> list[int]:
    return [int(line) for line in out.split() if line.isdigit()]


def wait_for_ready(out: Path) -> None:
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text().startswith("ready")):
        assert time.monotonic() < deadline, "the writer process never got ready"
        time.sleep(0.001)


def test_random_sigkill_keeps_a_committed_prefix(tmp_path: Path) -> None:
    rng = random.Random(20261202)
    kept: list[int] = []
    zygote = child(Path("--zygote"))
    assert zygote.stdin is not None and zygote.stdout is not None
    try:
        for i in range(ITERATIONS):
            path, out = tmp_path / f"r{i}.db", tmp_path / f"out{i}.txt"
            fresh_store(path)
            args = (rng.choice([1, 5, 40]), rng.choice([10, 300]), 1_000_000, 3)
            zygote.stdin.write(f"{path} {' '.join(map(str, args))} {out}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            wait_for_ready(out)
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            seqs = stored_seqs(path)
            assert seqs == list(range(1, len(seqs) + 1)), f"iteration {i}: not a prefix"
            flushed = printed(out.read_text())
            assert not flushed or flushed[-1] <= len(seqs), f"iteration {i}: lost rows"
            kept.append(len(seqs))
    finally:
        zygote.communicate(timeout=30)  # closes its stdin: the zygote ends
    # the kills landed while rows were being written, not all before or after
    assert len(set(kept)) > ITERATIONS // 2, kept


@pytest.mark.parametrize(("point", "kept", "flushed"), [
    ("before-commit:3", 2, 2),
    ("after-commit:3", 3, 2),  # killed after the commit, before flush() returned
    ("before-commit:1", 0, 0),
])
def test_deterministic_crash_points(tmp_path: Path, point: str, kept: int, flushed: int) -> None:
    path = tmp_path / "r.db"
    fresh_store(path)
    proc = child(path, 4, 10, 40, 0, env={"FLOWFN_STORE_CRASH": point})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    # one flush per 4 rows, and nothing else was added meanwhile: 4 rows per commit
    assert stored_seqs(path) == list(range(1, 4 * kept + 1))
    assert printed(out) == [4 * n for n in range(1, flushed + 1)]


def test_a_second_process_reads_while_a_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    fresh_store(path)
    proc = child(path, 10, 10, 1_000_000, 3)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.stdout.readline()  # at least one commit
        reader = SQLiteStore(path)
        first = reader.load_run("run")
        time.sleep(0.05)
        second = reader.load_run("run")
        assert first is not None and second is not None
        assert 0 < len(first.steps) <= len(second.steps)
        reader.close()
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def _limit_file_size() -> None:  # pragma: no cover - runs in the child
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_fails_the_run_with_the_step_and_never_hangs(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    fresh_store(path)
    proc = child(path, 50, 2000, 100_000, 7, preexec=_limit_file_size)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("StoreError: could not store step 'step")
    assert "of run 'run' in" in last
    assert last.endswith(("database or disk is full", "disk I/O error"))
    seqs = stored_seqs(path)
    assert seqs == list(range(1, len(seqs) + 1))
    assert printed(out)[-1] <= len(seqs)
