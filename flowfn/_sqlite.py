"""SQLiteStore: durable runs in one SQLite file (stdlib ``sqlite3``, WAL, JSON text columns).

The schema below is the documented one (docs/durable.md, "Schema"; a test compares them).
One connection, guarded by a lock, serves the run's own calls, the writer's thread and
the checkpoint thread; every write is a ``BEGIN IMMEDIATE`` transaction, so a second
process waits for the lock (``busy_timeout``) instead of failing half-way through. Other
processes may read at any time (WAL). The test hook ``FLOWFN_STORE_CRASH`` is read here
and nowhere else.

A batch of step rows is committed on the run's own thread when that takes no waiting
(the lock is free at once, ``synchronous=NORMAL`` makes no fsync, the batch is not
huge): a few µs a row, where a worker thread would wait milliseconds for the GIL at
every statement while the run keeps it busy. Otherwise ``write_batch(wait=False)``
says so, and the writer runs it again in a thread, where it may wait (see ``_store``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._sqlwrite import STEP_COLUMNS, Checkpointer, insert_steps
from ._store import (
    FORMAT_VERSION,
    RUN_STATUSES,
    STEP_STATUSES,
    Durability,
    Form,
    StepRow,
    StoredRun,
    StoreError,
    _check_answer,
    _check_status,
    _deadline_in,
    _deadline_out,
    _no_run,
    _other_inputs,
    inputs_hash,
)

_CRASH_ENV = "FLOWFN_STORE_CRASH"  # test hook: "before-commit:N" / "after-commit:N"

_SCHEMA = """
CREATE TABLE runs (
  run_id      TEXT PRIMARY KEY,
  flow_ref    TEXT,
  graph_name  TEXT NOT NULL,
  inputs_json TEXT NOT NULL,
  inputs_hash TEXT NOT NULL,
  status      TEXT NOT NULL
              CHECK (status IN ('running','waiting','succeeded','failed','cancelled')),
  created_at  REAL NOT NULL,
  updated_at  REAL NOT NULL,
  output_json TEXT
);
CREATE TABLE steps (
  run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  path        TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status = 'succeeded' OR status = 'failed'
                                   OR status = 'skipped' OR status = 'cancelled'),
  output_json TEXT,
  code_hash   TEXT NOT NULL,
  attempts    INTEGER NOT NULL,
  error       TEXT,
  started_at  REAL,
  ended_at    REAL,
  commit_seq  INTEGER NOT NULL,
  PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
CREATE TABLE forms (
  run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  name        TEXT NOT NULL,
  title       TEXT NOT NULL,
  schema_json TEXT NOT NULL,
  deadline    REAL,
  asked_at    REAL NOT NULL,
  answer_json TEXT,
  answered_at REAL,
  PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE cache (
  key         TEXT PRIMARY KEY,
  step_name   TEXT NOT NULL,
  output_json TEXT NOT NULL,
  created_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_by_status ON runs(status, created_at);
"""
_INLINE_BYTES = 1 << 20  # more output text than this in one batch: written in the thread
_CHECKPOINT_PAGES = 1000  # SQLite's own default (wal_autocheckpoint)

_RUN_COLUMNS = ("run_id, graph_name, flow_ref, inputs_json, inputs_hash, status, "
                "created_at, updated_at, output_json")


class _Busy(Exception):
    """A write that was not to wait found the database locked (nothing was written)."""


def _crash_point() -> tuple[str, int] | None:
    """The test hook: ``FLOWFN_STORE_CRASH=before-commit:3`` kills this process (SIGKILL)
    just before the 3rd batch commit of a writer in this process; ``after-commit:3`` just
    after it."""
    spec = os.environ.get(_CRASH_ENV, "")
    where, _, count = spec.partition(":")
    if where in ("before-commit", "after-commit") and count.isdigit():
        return where, int(count)
    return None


class SQLiteStore:
    """Runs, steps, forms and the step cache in one SQLite file (stdlib ``sqlite3``, WAL).

    ``durability="app-crash"`` (``synchronous=NORMAL``) survives the process being killed;
    ``"power-loss"`` (``synchronous=FULL``) also survives the machine losing power.
    ``busy_timeout``: seconds to wait for another process's lock before failing.
    One process writes a file at a time; any number may read it meanwhile. Local disks
    only (WAL needs shared memory between the processes).
    """

    threaded = True

    def __init__(self, path: str | os.PathLike[str], *,
                 durability: Durability = "app-crash", busy_timeout: float = 5.0):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"SQLiteStore(path=...) takes a file path, not {path!r}")
        if durability not in ("app-crash", "power-loss"):
            raise ValueError(f"SQLiteStore(durability=...) takes 'app-crash' or 'power-loss', "
                             f"not {durability!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or (
                busy_timeout < 0):
            raise TypeError("SQLiteStore(busy_timeout=...) takes a number of seconds >= 0, "
                            f"not {busy_timeout!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self._lock = threading.Lock()
        self._commits = 0
        self._crash = _crash_point()
        self._checkpointer = Checkpointer(self._checkpoint)
        weakref.finalize(self, self._checkpointer.stop)
        self._pages = 0  # about how many pages the commits since the last checkpoint wrote
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._setup(busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, durability={self.durability!r})"

    def _setup(self, busy_timeout: float) -> None:
        db = self._db
        self._busy_ms = int(busy_timeout * 1000)
        db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        db.execute("PRAGMA journal_mode = WAL")
        sync = "FULL" if self.durability == "power-loss" else "NORMAL"
        db.execute(f"PRAGMA synchronous = {sync}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # see Checkpointer
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with self._tx():
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        elif version != FORMAT_VERSION:
            raise StoreError(f"store {self.path!r} has format {version}; this flowfn reads "
                             f"and writes format {FORMAT_VERSION} only")

    @contextmanager
    def _tx(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock up front). With
        ``wait=False``, :class:`_Busy` instead of waiting for a lock."""
        if not self._lock.acquire(blocking=wait):
            raise _Busy
        try:
            self._begin(wait)
            try:
                yield self._db
            except BaseException:
                self._rollback()
                raise
            self._db.execute("COMMIT")
        finally:
            self._lock.release()

    def _begin(self, wait: bool) -> None:
        db = self._db
        if wait:
            db.execute("BEGIN IMMEDIATE")
            return
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise _Busy from None
            raise
        finally:
            db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing to undo (the failure was BEGIN itself)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store {self.path!r}: {exc}") from None

    def _write(self, what: str, sql: str, args: Sequence[Any], **names: str) -> int:
        try:
            with self._tx() as db:
                count = db.execute(sql, args).rowcount
            self._wrote(1)
            return count
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {what} to store {self.path!r}: {exc}",
                             **names) from None

    # --- runs ---

    def begin_run(self, run_id: str, *, graph_name: str, flow_ref: str | None,
                  inputs_json: str) -> StoredRun | None:
        digest = inputs_hash(inputs_json)
        now = time.time()
        inserted = self._write(
            f"run {run_id!r}",
            f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL)",
            (run_id, graph_name, flow_ref, inputs_json, digest, "running", now, now),
            run_id=run_id)
        if inserted:
            return None
        stored = self.load_run(run_id)
        if stored is None:  # pragma: no cover - deleted by another process in between
            raise _no_run(run_id)
        if stored.inputs_hash != digest:
            raise _other_inputs(run_id)
        return stored

    def _run_row(self, row: Sequence[Any]) -> StoredRun:
        return StoredRun(*row)

    def load_run(self, run_id: str) -> StoredRun | None:
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        steps = self._read(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? "
                           "ORDER BY commit_seq", (run_id,))
        run = self._run_row(rows[0])
        run.steps.update((r[0], StepRow(*r)) for r in steps)
        run.forms.update((f.name, f) for f in self._forms(run_id))
        return run

    def finish_run(self, run_id: str, status: str, output_json: str | None = None) -> None:
        _check_status(status, RUN_STATUSES, "run")
        changed = self._write(
            f"run {run_id!r}",
            "UPDATE runs SET status = ?, output_json = ?, updated_at = ? WHERE run_id = ?",
            (status, output_json, time.time(), run_id), run_id=run_id)
        if not changed:
            raise _no_run(run_id)

    def list_runs(self, status: str | None = None) -> list[StoredRun]:
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs {where} "
                          "ORDER BY created_at, run_id", args)
        runs = {r[0]: self._run_row(r) for r in rows}
        for run_id, form in self._all_forms(status):
            if run_id in runs:
                runs[run_id].forms[form.name] = form
        return list(runs.values())

    # --- forms ---

    _FORM_COLUMNS = "name, title, schema_json, deadline, answer_json, asked_at"

    @staticmethod
    def _form(row: Sequence[Any]) -> Form:
        name, title, schema_json, deadline, answer_json, asked_at = row
        return Form(name, title, json.loads(schema_json), _deadline_in(deadline),
                    answer_json, asked_at)

    def _forms(self, run_id: str) -> list[Form]:
        rows = self._read(f"SELECT {self._FORM_COLUMNS} FROM forms WHERE run_id = ? "
                          "ORDER BY asked_at, name", (run_id,))
        return [self._form(r) for r in rows]

    def _all_forms(self, status: str | None) -> list[tuple[str, Form]]:
        where, args = ("WHERE r.status = ?", (status,)) if status is not None else ("", ())
        rows = self._read(f"SELECT f.run_id, {self._FORM_COLUMNS.replace('name', 'f.name')} "
                          f"FROM forms f JOIN runs r USING (run_id) {where} "
                          "ORDER BY f.asked_at, f.name", args)
        return [(r[0], self._form(r[1:])) for r in rows]

    def record_form(self, run_id: str, form: Form) -> None:
        deadline = _deadline_out(form.deadline)
        self._write(
            f"form {form.name!r}",
            "INSERT INTO forms (run_id, name, title, schema_json, deadline, asked_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (run_id, name) DO UPDATE SET "
            "title = excluded.title, schema_json = excluded.schema_json, "
            "deadline = excluded.deadline",
            (run_id, form.name, form.title, json.dumps(form.schema), deadline,
             form.asked_at or time.time()), run_id=run_id, path=form.name)

    def answer_form(self, run_id: str, name: str, answer_json: str) -> None:
        forms = {f.name: f for f in self._forms(run_id)}
        if _check_answer(run_id, forms.get(name), name, answer_json):
            self._write(f"the answer to form {name!r}",
                        "UPDATE forms SET answer_json = ?, answered_at = ? "
                        "WHERE run_id = ? AND name = ? AND answer_json IS NULL",
                        (answer_json, time.time(), run_id, name), run_id=run_id, path=name)

    # --- cache ---

    def cache_get(self, key: str) -> str | None:
        rows = self._read("SELECT output_json FROM cache WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def cache_put(self, key: str, step_name: str, output_json: str) -> None:
        self._write(f"the cached output of {step_name!r}",
                    "INSERT OR REPLACE INTO cache (key, step_name, output_json, created_at) "
                    "VALUES (?,?,?,?)", (key, step_name, output_json, time.time()),
                    path=step_name)

    # --- steps (the writer) ---

    def next_seq(self, run_id: str) -> int:
        rows = self._read("SELECT max(commit_seq) FROM steps WHERE run_id = ?", (run_id,))
        return (rows[0][0] or 0) + 1

    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow], *,
                    wait: bool = True) -> bool:
        """Commit ``rows`` (numbered from ``first_seq``) in one transaction. With
        ``wait=False``, only if that means no waiting: not for another process's (or
        thread's) lock, not for an fsync (``"power-loss"``), not for a large write; else
        False, and nothing is written."""
        if not rows:
            return True
        for row in rows:
            if row.status not in STEP_STATUSES:
                _check_status(row.status, STEP_STATUSES, f"step {row.path!r}:")
        size = sum(len(r.output_json) for r in rows if r.output_json)
        if not wait and (self.durability == "power-loss" or size > _INLINE_BYTES):
            return False
        try:
            with self._tx(wait) as db:
                insert_steps(db, run_id, first_seq, rows)
                db.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?",
                           (time.time(), run_id))
                self._maybe_crash("before-commit", self._commits + 1)
        except _Busy:
            return False  # another writer has the lock: the writer retries in its thread
        except sqlite3.Error as exc:
            first = rows[0].path
            raise StoreError(f"could not store step {first!r} of run {run_id!r} in "
                             f"{self.path!r}: {exc}", run_id=run_id, path=first) from None
        self._commits += 1
        self._maybe_crash("after-commit", self._commits)
        self._wrote(len(rows) // 16 + size // 4096 + 1)
        return True

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file (from the checkpoint thread)."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:  # pragma: no cover - closed, or I/O: tried again later
                pass

    def _wrote(self, pages: int) -> None:
        """Count the pages a commit wrote (a guess: rows are ~100 bytes, and each commit
        rewrites its pages); ask for a checkpoint once they add up."""
        self._pages += pages
        if self._pages >= _CHECKPOINT_PAGES:
            self._pages = 0
            self._checkpointer.request()

    def _maybe_crash(self, where: str, count: int) -> None:
        if self._crash == (where, count):
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()
