"""What does writing every step to an SQLiteStore cost? Per row, and per step of a W4-like run.

Three measurements, each the best of ``--repeat`` runs on a fresh file:

1. one commit per row: ``write_batch`` with a single row, in a loop (what a store without
   group commit pays);
2. group commit, rows as fast as possible: ``add()`` N rows, then ``await flush()``;
3. a W4-shaped run (100 layers x 100 no-op async steps, 1-3 random parents in the layer
   before, seed 20240601) on a minimal raw-trio scheduler, once without a store and once
   with every finishing step ``add()``-ing its row (path, status, output ``null``, code
   hash, times) to the run's writer, flushed at the end. The difference per step is what
   the writer adds to a 10,000-step run that settles rows at trio's own pace.

    python benchmarks/store.py [--repeat 5] [--durability app-crash|power-loss]

This measures the store layer alone, on a raw-trio scheduler (``durable.py`` measures
flowfn's own W4 with a store).

Results, 2026-12-02 23:01 UTC, SQLite 3.40.1, Python 3.11.7, 2 vCPUs shared with other
jobs (load average 0.7):

| | app-crash (NORMAL) | power-loss (FULL) |
| --- | --- | --- |
| one commit per row | 69.1 µs/row | 364 µs/row |
| group commit, 10,000 rows added at once | 3.3 µs/row | 4.0 µs/row |
| W4-shaped: wall clock, paired median with/without | x1.67 | x1.80 |

Reading: with ``app-crash`` a batch is committed on the run's own thread (no lock to wait
for, no fsync), so its cost is SQLite's CPU, ~2.5-3.5 µs a row (this benchmark's rows
carry start and end times, the 9-value INSERT shape; flowfn's rows of succeeded steps bind
5 values and cost less), plus ~0.1 ms per commit. With ``power-loss`` every commit
fsyncs, so batches go to a worker thread, which waits for the GIL at every statement while
the run computes. Earlier results (20:30 UTC, load 4-5, every batch in the worker thread,
one ``json_each`` INSERT per batch): 163 / 2,616 µs one commit per row, 20 / 18 µs a row
in group commit, x2.05 / x2.48 on W4-shaped.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from flowfn import SQLiteStore
from flowfn._store import StepRow, store_writer

SEED = 20240601


def fresh(folder: Path, durability: Any) -> SQLiteStore:
    path = folder / f"bench-{time.perf_counter_ns()}.db"
    store = SQLiteStore(path, durability=durability)
    store.begin_run("bench", graph_name="bench", flow_ref=None, inputs_json="{}")
    return store


def row(i: int) -> StepRow:
    return StepRow(f"step{i}", "succeeded", f'{{"id":{i},"name":"item","ok":true}}',
                   "0" * 64, 1, None, 1.0, 2.0)


def one_commit_per_row(store: SQLiteStore, n: int) -> float:
    rows = [row(i) for i in range(n)]
    start = time.perf_counter()
    for seq, r in enumerate(rows, 1):
        store.write_batch("bench", seq, [r])
    return time.perf_counter() - start


def group_commit(store: SQLiteStore, n: int) -> float:
    rows = [row(i) for i in range(n)]

    async def main() -> float:
        async with store_writer(store, "bench") as writer:
            start = time.perf_counter()
            for r in rows:
                writer.add(r)
            await writer.flush()
            return time.perf_counter() - start

    return trio.run(main)


def w4_graph() -> list[list[int]]:
    rng = random.Random(SEED)
    parents: list[list[int]] = [[] for _ in range(100)]
    for layer in range(1, 100):
        base = (layer - 1) * 100
        for _ in range(100):
            parents.append(sorted(rng.sample(range(base, base + 100), rng.randint(1, 3))))
    return parents


async def run_dag(parents: list[list[int]], done: Callable[[int, float], None]) -> None:
    """Raw trio readiness counting; ``done(i, started)`` is the settle point."""
    children: list[list[int]] = [[] for _ in parents]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    pending = [len(ps) for ps in parents]

    async with trio.open_nursery() as nursery:
        async def node(i: int) -> None:
            started = time.time()
            await trio.lowlevel.checkpoint()
            done(i, started)
            for c in children[i]:
                pending[c] -= 1
                if pending[c] == 0:
                    nursery.start_soon(node, c)

        for i, ps in enumerate(parents):
            if not ps:
                nursery.start_soon(node, i)


Times = tuple[float, float, float]  # wall clock, the run's thread CPU, whole process CPU


def w4(store: SQLiteStore | None, parents: list[list[int]]) -> Times:
    async def main() -> Times:
        start = (time.perf_counter(), time.thread_time(), time.process_time())
        if store is None:
            await run_dag(parents, lambda i, t: None)
        else:
            async with store_writer(store, "bench") as writer:
                def settle(i: int, started: float) -> None:
                    writer.add(StepRow(f"s{i}", "succeeded", "null", "0" * 64, 1, None,
                                       started, time.time()))

                await run_dag(parents, settle)
        end = (time.perf_counter(), time.thread_time(), time.process_time())
        return (end[0] - start[0], end[1] - start[1], end[2] - start[2])

    return trio.run(main)


def best(fn: Callable[[], float], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        times.append(fn())
    return min(times)


def paired_w4(folder: Path, durability: Any, repeat: int) -> None:
    """W4 without and with a store, interleaved; per step: best and median of each."""
    parents = w4_graph()
    n = len(parents)
    plain: list[Times] = []
    stored: list[Times] = []
    for _ in range(repeat):
        gc.collect()
        plain.append(w4(None, parents))
        gc.collect()
        stored.append(w4(fresh(folder, durability), parents))
    for k, what in enumerate(("wall clock", "run thread CPU", "process CPU")):
        p = sorted(t[k] / n * 1e6 for t in plain)
        s = sorted(t[k] / n * 1e6 for t in stored)
        ratios = sorted(b[k] / a[k] for a, b in zip(plain, stored, strict=True))
        print(f"W4-shaped, {what:15s}: {p[0]:6.1f} µs/step without a store, {s[0]:6.1f} with "
              f"one (best); the writer adds {s[0] - p[0]:5.1f} µs/step; paired median "
              f"x{ratios[len(ratios) // 2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--durability", default="app-crash", choices=["app-crash", "power-loss"])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flowfn-bench-"))
    single_n = 2000 if args.durability == "app-crash" else 300
    print(f"SQLite {sqlite3.sqlite_version}, durability={args.durability}, "
          f"best of {args.repeat}, load average {os.getloadavg()[0]:.2f}")
    single = best(lambda: one_commit_per_row(fresh(folder, args.durability), single_n),
                  args.repeat)
    print(f"one commit per row        : {single / single_n * 1e6:7.1f} µs/row ({single_n} rows)")
    grouped = best(lambda: group_commit(fresh(folder, args.durability), 10_000), args.repeat)
    print(f"group commit, 10,000 rows : {grouped / 10_000 * 1e6:7.1f} µs/row")
    paired_w4(folder, args.durability, args.repeat)


if __name__ == "__main__":
    main()
