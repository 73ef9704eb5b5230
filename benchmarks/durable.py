"""What a durable run costs, and what a resume after a crash runs again (issue #10).

    python benchmarks/durable.py                    # both parts (about a minute)
    python benchmarks/durable.py --repeat 11 --only w4
    python benchmarks/durable.py --only resume --items 10000

w4      W4 (benchmarks/workloads.py: 100 layers x 100 no-op async steps, 10,000 steps) run
        with ``store=SQLiteStore(<fresh file>)`` against the same graph run without a store,
        interleaved in one ``trio.run``, after one warm-up of each; and with a
        ``MemoryStore()`` (the settle hook and JSON encoding of every row, without SQLite).
        W4's steps are ``async def f(a: Annotated[Any, parent]) -> None``: the ``Any`` is
        on their parameters only, and a ``None`` output is something the store
        can hold, so W4 runs unchanged (no variant needed). The store is opened before the
        timer starts and closed after it stops (``close()``, which copies the WAL into the
        file, is timed and reported apart); the timed part is ``await arun(graph,
        store=...)``, which includes waiting for the last commit. Target: <= 2.0x.
        The warm-up is reported on its own ("first durable run in the process"): it also
        hashes the source of each of the 10,000 step functions, once per process.
resume  a map of ``--items`` ints (``def item(x: Annotated[int, each(src)]) -> int``, an async
        no-op that counts its calls). Per round: (1) the whole run with a store, timed;
        (2) the same run on a fresh file with a store whose ``write_batch`` commits rows
        only until half the items are stored, then raises a ``BaseException`` (the process
        "dies" there: later rows never reach the file); (3) ``resume()`` on a new
        ``SQLiteStore`` of that file, timed, counting the items that ran again. They must
        be exactly the items whose rows were not committed.

Times are best (median in brackets); ratios: of the best times, and [paired] the median
over rounds of the per-round ratio, each pair timed back to back (the robust number on a
shared machine).
"""

# No ``from __future__ import annotations``: ``map_flow``'s step names a local step in its
# annotation, which must be evaluated where the function is defined.
import argparse
import datetime
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import trio
from workloads import w4_layers

from flowfn import Graph, MemoryStore, SQLiteStore, Step, arun, each, graph, resume, run
from flowfn._store import StepRow

W4_TARGET = 2.0


class Crash(BaseException):
    """The simulated death of the process: not an Exception, so nothing handles it."""


class CrashingStore(SQLiteStore):
    """An SQLiteStore that commits at most ``limit`` step rows in all, then "dies"."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path)
        self.left = limit

    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow], *,
                    wait: bool = True) -> bool:
        if len(rows) <= self.left:
            if not super().write_batch(run_id, first_seq, rows, wait=wait):
                return False  # (locked: retried with wait=True)
            self.left -= len(rows)
            return True
        if self.left:  # part of this batch reaches the file, the rest never does
            super().write_batch(run_id, first_seq, rows[: self.left])
            self.left = 0
        raise Crash


def fmt(times: Sequence[float], per: int = 1, unit: float = 1e3) -> str:
    return f"{min(times) / per * unit:.1f} ({statistics.median(times) / per * unit:.1f})"


def paired(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


# --- W4 with and without a store -------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def bench_w4(folder: Path, repeat: int) -> None:
    w = w4_layers()
    g = graph(*w.targets, name="W4")
    steps = len(g)

    times: dict[str, list[float]] = {"plain": [], "store": [], "memory": [], "first": [],
                                     "close": []}

    async def plain() -> None:
        result = await arun(g)
        assert result.status == "succeeded", result.status

    async def stored(into: list[float]) -> None:
        """A run with a store on a fresh file, timed; then the store closed, timed apart
        (``close()`` copies the WAL into the file: not part of any run)."""
        store = SQLiteStore(folder / f"w4-{uuid.uuid4().hex}.db")

        async def go() -> None:
            result = await arun(g, store=store, run_id="w4")
            assert result.status == "succeeded", result.status

        try:
            into.append(await timed(go))
        finally:
            start = time.perf_counter()
            store.close()
            times["close"].append(time.perf_counter() - start)

    async def memory() -> None:  # the settle hook and row encoding, without SQLite
        result = await arun(g, store=MemoryStore(), run_id="w4")
        assert result.status == "succeeded", result.status

    async def main() -> None:
        await plain()
        await stored(times["first"])  # warm-up: hashes every step's code
        for _ in range(repeat):
            times["plain"].append(await timed(plain))
            await stored(times["store"])
            times["memory"].append(await timed(memory))

    trio.run(main)
    rows = _check_rows(folder, steps)
    p, s, m = times["plain"], times["store"], times["memory"]
    ratio = min(s) / min(p)
    print(f"W4, {steps} steps, {repeat} rounds; ms per run, best (median):")
    print(f"  without a store          : {fmt(p)}  = {fmt(p, steps, 1e6)} µs/step")
    print(f"  SQLiteStore(fresh file)  : {fmt(s)}  = {fmt(s, steps, 1e6)} µs/step "
          f"({rows} rows stored)")
    print(f"  MemoryStore() (no SQLite): {fmt(m)}  = {fmt(m, steps, 1e6)} µs/step; "
          f"x{min(m) / min(p):.2f} best, x{paired(m, p):.2f} paired")
    print(f"  SQLiteStore.close() after each (untimed above): {fmt(times['close'])}")
    print(f"  first durable run in the process (hashes 10,000 step sources): "
          f"{times['first'][0] * 1e3:.0f} ms")
    print(f"  ratio store / no store: {ratio:.2f} best, {paired(s, p):.2f} paired; "
          f"target <= {W4_TARGET}: {'met' if ratio <= W4_TARGET else 'MISSED'}")
    closed = [run + close for run, close in zip(s, times["close"][1:], strict=True)]
    print(f"  the same with close() counted in: {min(closed) / min(p):.2f} best, "
          f"{paired(closed, p):.2f} paired")


def _check_rows(folder: Path, steps: int) -> int:
    """The step rows of one stored W4 run (every step must be there)."""
    last = max(folder.glob("w4-*.db"), key=lambda p: p.stat().st_mtime)
    store = SQLiteStore(last)
    try:
        stored = store.load_run("w4")
        n = len(stored.steps) if stored is not None else 0
    finally:
        store.close()
    if n != steps:
        raise RuntimeError(f"W4 with a store: {n} step rows stored, expected {steps}")
    return n


# --- a map, crashed at its middle and resumed -----------------------------------------------


def map_flow(n: int) -> tuple[Graph, list[int]]:
    """The map and a one-element counter of ``item`` calls."""
    calls = [0]
    items = list(range(n))

    async def source() -> list[int]:
        return items

    src = Step(source, name="items")

    async def item(x: Annotated[int, each(src)]) -> int:
        calls[0] += 1
        return x

    return graph(Step(item, name="item"), name="map"), calls


def bench_resume(folder: Path, n: int, repeat: int) -> None:
    g, calls = map_flow(n)
    full: list[float] = []
    again: list[float] = []
    for i in range(repeat + 1):  # round 0 is the warm-up
        store = SQLiteStore(folder / f"full-{i}.db")
        gc.collect()
        start = time.perf_counter()
        done = run(g, store=store, run_id="full")
        elapsed = time.perf_counter() - start
        store.close()
        assert done.output == list(range(n))

        path = folder / f"crash-{i}.db"
        crashing = CrashingStore(path, limit=1 + n // 2)  # the source's row + half the items
        calls[0] = 0
        try:
            run(g, store=crashing, run_id="crash")
        except BaseException as exc:  # a Crash, maybe inside a group
            if not _is_crash(exc):
                raise
        else:
            raise RuntimeError("the crashing store did not crash")
        crashing.close()
        ran_first = calls[0]

        reader = SQLiteStore(path)
        stored = reader.load_run("crash")
        reader.close()
        assert stored is not None
        committed = sum(1 for p in stored.steps if p.startswith("item["))
        store = SQLiteStore(path)
        calls[0] = 0
        gc.collect()
        start = time.perf_counter()
        result = resume(g, "crash", store=store)
        resumed = time.perf_counter() - start
        store.close()
        assert result.output == list(range(n)), "resume gave another result"
        if i == 0:
            continue
        full.append(elapsed)
        again.append(resumed)
        print(f"  round {i}: {ran_first} items ran before the crash, {committed} committed; "
              f"resume ran {calls[0]} again (the {n - committed} uncommitted: "
              f"{'exactly' if calls[0] == n - committed else 'NOT'}); "
              f"full {elapsed * 1e3:.0f} ms, resume {resumed * 1e3:.0f} ms")
    print(f"map of {n} items, {repeat} rounds; ms, best (median): full run with a store "
          f"{fmt(full)}, resume after the crash {fmt(again)}; resume / full "
          f"{min(again) / min(full):.2f} best, {paired(again, full):.2f} paired")


def _is_crash(exc: BaseException) -> bool:
    if isinstance(exc, Crash):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_crash(e) for e in exc.exceptions)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", default="w4,resume")
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    parts = {p.strip().lower() for p in args.only.split(",")}
    folder = Path(tempfile.mkdtemp(prefix="flowfn-durable-"))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{now}; trio {trio.__version__}; load average {os.getloadavg()[0]:.2f} at start")
    if "w4" in parts:
        bench_w4(folder, args.repeat)
    if "resume" in parts:
        bench_resume(folder, args.items, args.repeat)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
