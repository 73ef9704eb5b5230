"""How a batch of step rows is committed: in order, whatever the rows' shapes and sizes;
on the run's own thread when the store can do it without waiting, else in a worker
thread while the run goes on; and the WAL copied back by the store's checkpoint thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from flowfn import MemoryStore, SQLiteStore
from flowfn._store import StepRow, Store, store_writer


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    made.begin_run("job", graph_name="flow", flow_ref=None, inputs_json="{}")
    yield made
    made.close()


def mixed(n: int) -> list[StepRow]:
    """Rows of every shape, in stretches of varying length, and a path written twice."""
    out: list[StepRow] = []
    for i in range(n):
        kind = (i // 3 + i // 7) % 4
        if kind == 0:
            out.append(StepRow(f"s{i}", "succeeded", f"[{i}]", "h", 1))
        elif kind == 1:
            out.append(StepRow(f"s{i}", "succeeded", "null", "h", 2, None, 1.5, 2.5))
        elif kind == 2:
            out.append(StepRow(f"s{i}", "failed", None, "h", 3, "ValueError: boom"))
        else:
            out.append(StepRow(f"m[{i}]", "skipped", None, "", 1, "its when= was false"))
    if n > 2:
        out.append(StepRow("s0", "succeeded", '"again"', "h2", 1))  # the later row wins
    return out


def expected(rows: list[StepRow], first: int = 1) -> dict[str, StepRow]:
    steps: dict[str, StepRow] = {}
    for seq, row in enumerate(rows, first):
        steps.pop(row.path, None)
        steps[row.path] = row._replace(seq=seq)
    return steps


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 130, 300])
def test_one_batch_of_mixed_rows_lands_in_order(store: Store, n: int) -> None:
    rows = mixed(n)
    assert store.write_batch("job", 1, rows) is True
    stored = store.load_run("job")
    assert stored is not None
    assert stored.steps == expected(rows)
    assert list(stored.steps) == list(expected(rows))
    assert store.next_seq("job") == len(rows) + 1


def test_batches_through_the_writer_keep_the_add_order(store: Store) -> None:
    rows = mixed(500)

    async def main() -> None:
        async with store_writer(store, "job") as writer:
            for i, row in enumerate(rows, 1):
                writer.add(row)
                if i % 37 == 0:
                    await trio.sleep(0)

    trio.run(main)
    stored = store.load_run("job")
    assert stored is not None and stored.steps == expected(rows)


def test_an_empty_batch_writes_nothing(store: Store) -> None:
    assert store.write_batch("job", 1, []) is True
    stored = store.load_run("job")
    assert stored is not None and stored.steps == {}


# --- when the run's thread may write ---------------------------------------------------------


def test_without_waiting_a_locked_file_is_left_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    store.begin_run("job", graph_name="flow", flow_ref=None, inputs_json="{}")
    other = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert store.write_batch("job", 1, mixed(5), wait=False) is False
    other.execute("ROLLBACK")
    assert store.write_batch("job", 1, mixed(5), wait=False) is True
    stored = store.load_run("job")
    assert stored is not None and stored.steps == expected(mixed(5))
    store.close()
    other.close()


@pytest.mark.parametrize("kind", ["power-loss", "large"])
def test_without_waiting_no_fsync_and_no_large_write(tmp_path: Path, kind: str) -> None:
    durability = "power-loss" if kind == "power-loss" else "app-crash"
    store = SQLiteStore(tmp_path / "r.db", durability=durability)
    store.begin_run("job", graph_name="flow", flow_ref=None, inputs_json="{}")
    size = 10 if kind == "power-loss" else 2_000_000
    rows = [StepRow("big", "succeeded", '"' + "x" * size + '"', "h")]
    assert store.write_batch("job", 1, rows, wait=False) is False
    stored = store.load_run("job")
    assert stored is not None and stored.steps == {}
    assert store.write_batch("job", 1, rows) is True
    stored = store.load_run("job")
    assert stored is not None and stored.steps == expected(rows)
    store.close()


def test_a_batch_waits_for_the_lock_in_a_thread_while_the_run_goes_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", busy_timeout=10)
    store.begin_run("job", graph_name="flow", flow_ref=None, inputs_json="{}")
    other = sqlite3.connect(tmp_path / "r.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, other.execute, ("ROLLBACK",))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            async with store_writer(store, "job") as writer:
                release.start()
                for row in mixed(40):
                    writer.add(row)
                await writer.flush()
            nursery.cancel_scope.cancel()

    started = time.monotonic()
    trio.run(main)
    assert time.monotonic() - started >= 0.15  # it did wait for the other connection
    assert ticks >= 5  # ... and the event loop ran meanwhile
    stored = store.load_run("job")
    assert stored is not None and stored.steps == expected(mixed(40))
    store.close()
    other.close()


# --- the checkpoint thread ------------------------------------------------------------------


def test_the_wal_is_copied_back_while_the_store_stays_open(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = SQLiteStore(path)
    store.begin_run("job", graph_name="flow", flow_ref=None, inputs_json="{}")
    empty = os.path.getsize(path)
    payload = '"' + "x" * 4000 + '"'
    seq = 1
    for batch in range(12):  # about 1,200 pages: more than the checkpoint threshold
        rows = [StepRow(f"s{batch}-{i}", "succeeded", payload, "h") for i in range(100)]
        assert store.write_batch("job", seq, rows)
        seq += len(rows)
    deadline = time.monotonic() + 10
    while os.path.getsize(path) < empty + 1_000_000:
        assert time.monotonic() < deadline, "no checkpoint copied the WAL back"
        time.sleep(0.01)
    stored = store.load_run("job")
    assert stored is not None and len(stored.steps) == 1200
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_task_that_never_blocks_does_not_hold_rows_back_under_a_virtual_clock(
        store: Store) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async with store_writer(store, "job") as writer:

                async def spin() -> None:  # always ready to run: the clock stands still
                    while True:
                        await trio.sleep(0)

                nursery.start_soon(spin)
                writer.add(StepRow("a", "succeeded", "1", "h"))
                while writer.committed < 1:  # committed while spin() is still running
                    await trio.sleep(0)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    stored = store.load_run("job")
    assert stored is not None and list(stored.steps) == ["a"]
