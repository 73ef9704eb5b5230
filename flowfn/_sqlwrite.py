"""How step rows get into an SQLite file fast, for ``_sqlite.SQLiteStore``.

A durable run writes a row per step; on W4 (10,000 no-op steps, ~10 µs each without a
store) every microsecond per row is a tenth of the run. Two things here keep that cost
low: the INSERTs (below), and the checkpoints, moved off the run's event loop
(:class:`Checkpointer`).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ._store import StepRow

STEP_COLUMNS = ("path, status, output_json, code_hash, attempts, error, started_at, "
                "ended_at, commit_seq")
_ROWS_PER_INSERT = 64  # a power of two (see insert_steps)


def _insert_sql(count: int, done: bool) -> str:
    """One INSERT of ``count`` step rows, ``?1`` being the run id. ``done``: rows of
    succeeded steps with no error or times, 5 values each (path, output_json, code_hash,
    attempts, commit_seq); else all 9 columns."""
    row = ("(?1, ?, 'succeeded', ?, ?, ?, NULL, NULL, NULL, ?)" if done
           else "(?1, " + ", ".join("?" * 9) + ")")
    return (f"INSERT OR REPLACE INTO steps (run_id, {STEP_COLUMNS}) VALUES "
            + ", ".join([row] * count))


# Rows go in as multi-row INSERTs rather than executemany(): then the per-row work is
# SQLite's alone (and done without the GIL). The common row, a step that succeeded, binds
# 5 values instead of 9, and the schema's status CHECK is an OR of comparisons, where
# IN (...) builds a temporary index for every row; together these take a row from ~8 to
# ~2.5 µs of CPU on the reference machine. Statements come in a few sizes, so that the
# sqlite3 module's statement cache keeps each one prepared.
_SIZES = [1 << k for k in range(_ROWS_PER_INSERT.bit_length())]
_INSERTS = {(n, done): _insert_sql(n, done) for n in _SIZES for done in (True, False)}


def _done(row: StepRow) -> bool:
    return (row[1] == "succeeded" and row[5] is None and row[6] is None
            and row[7] is None)


def insert_steps(db: sqlite3.Connection, run_id: str, seq: int,
                 rows: Sequence[StepRow]) -> None:
    """INSERT the rows in order: each stretch of rows of one shape (see
    :func:`_insert_sql`) ``_ROWS_PER_INSERT`` at a time, then in power-of-two
    statements."""
    start, end = 0, len(rows)
    while start < end:
        done = _done(rows[start])
        stop = start + 1
        while stop < end and _done(rows[stop]) is done:
            stop += 1
        size = _ROWS_PER_INSERT
        while start < stop:
            while size > stop - start:
                size >>= 1
            values: list[Any] = [run_id]
            for row in rows[start:start + size]:
                if done:
                    values += (row[0], row[2], row[3], row[4], seq)
                else:
                    values += row[:8]
                    values.append(seq)
                seq += 1
            db.execute(_INSERTS[size, done], values)
            start += size


class Checkpointer:
    """Runs ``work`` (a checkpoint) in a thread of its own whenever it is requested.

    SQLite would copy the WAL back into the database file inside whichever commit takes
    the WAL past 1,000 pages: 20-25 ms (the copy and two fsyncs) on the run's event loop,
    about once per 15,000 step rows. Instead the store's connection never checkpoints by
    itself, and asks this thread to once its commits add up to as many pages. The thread
    holds the store's lock meanwhile (so the checkpoint completes and the WAL starts over,
    which it cannot while writes go on): a batch that finds the lock taken is written by
    the run's writer thread instead (see ``write_batch(wait=False)``).
    """

    def __init__(self, work: Callable[[], None]) -> None:
        # weakly: a store that is dropped without close() is still collected, and
        # then its thread ends (see stop())
        self._work = weakref.WeakMethod(work)
        self._wanted = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()  # two runs of one store may ask at once

    def request(self) -> None:
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, daemon=True,
                                              name="flowfn-sqlite-checkpoint")
                    thread.start()
                    self._thread = thread
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            work = self._work()
            if self._stop or work is None:
                return
            work()
            del work

    def stop(self) -> None:
        self._stop = True
        self._wanted.set()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
