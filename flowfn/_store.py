"""Where durable runs live: the Store protocol, MemoryStore, SQLiteStore and the writer.

A step counts as finished once its row is committed. Committing each row on its own would
cost a transaction per step (17 µs with ``synchronous=NORMAL`` on the reference machine,
300 µs with FULL), so one :class:`Writer` per run commits *everything settled since its
last commit* in one transaction, from a worker thread, while the run goes on: the batches
grow with the load and no timer is involved. Rows are committed in the order they were
added, which is settle order, so the stored set is always a valid partial run: a step's
row never lands before the rows of the steps it depended on.

Everything stored is JSON text (see ``_codec``); nothing is ever pickled, so a store can
be read by ``sqlite3`` or by another process while a run writes it (WAL mode). The
schema is documented in docs/durable.md and versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, Protocol

import trio

#: ``PRAGMA user_version`` of the files this flowfn writes; other versions are refused.
FORMAT_VERSION = 1
RUN_STATUSES = ("running", "waiting", "succeeded", "failed", "cancelled")
STEP_STATUSES = ("succeeded", "failed", "skipped", "cancelled")
Durability = Literal["app-crash", "power-loss"]
_CRASH_ENV = "FLOWFN_STORE_CRASH"  # test hook: "before-commit:N" / "after-commit:N"


class StoreError(Exception):
    """The store could not read or write: names the run and, for a write, the step."""

    __module__ = "flowfn"  # tracebacks show flowfn.StoreError (DESIGN §8)

    def __init__(self, message: str, *, run_id: str | None = None, path: str | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.path = path


class StepRow(NamedTuple):
    """One settled step (or map item) as stored: ``path`` is its graph path.

    ``started_at``/``ended_at`` are UTC wall-clock times as Unix seconds; ``seq`` is the
    commit order within the run (filled in by the store, ignored by ``Writer.add``).
    A named tuple because one is made at the settle point of every step: it is the
    cheapest record Python has (a third of a slotted dataclass's cost).
    """

    path: str
    status: str
    output_json: str | None = None
    code_hash: str = ""
    attempts: int = 1
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    seq: int = 0


@dataclass(frozen=True)
class Form:
    """A human step waiting for (or holding) its answer; ``deadline`` is an aware UTC time."""

    name: str
    title: str
    schema: dict[str, Any]
    deadline: dt.datetime | None = None
    answer_json: str | None = None
    asked_at: float = 0.0


@dataclass(frozen=True)
class StoredRun:
    """A run as the store holds it: its row, its step rows by path, its forms by name."""

    run_id: str
    graph_name: str
    flow_ref: str | None
    inputs_json: str
    inputs_hash: str
    status: str
    created_at: float
    updated_at: float
    output_json: str | None = None
    steps: dict[str, StepRow] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)

    @property
    def waiting(self) -> list[Form]:
        """The forms that have no answer yet."""
        return [f for f in self.forms.values() if f.answer_json is None]


class Store(Protocol):
    """What the scheduler needs from a store. Calls are synchronous and short, except
    :meth:`write_batch`, which the :class:`Writer` runs in a worker thread when
    ``threaded`` is true."""

    threaded: bool

    def begin_run(self, run_id: str, *, graph_name: str, flow_ref: str | None,
                  inputs_json: str) -> StoredRun | None: ...
    def load_run(self, run_id: str) -> StoredRun | None: ...
    def finish_run(self, run_id: str, status: str, output_json: str | None = None) -> None: ...
    def list_runs(self, status: str | None = None) -> list[StoredRun]: ...
    def record_form(self, run_id: str, form: Form) -> None: ...
    def answer_form(self, run_id: str, name: str, answer_json: str) -> None: ...
    def cache_get(self, key: str) -> str | None: ...
    def cache_put(self, key: str, step_name: str, output_json: str) -> None: ...
    def next_seq(self, run_id: str) -> int: ...
    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow]) -> None: ...
    def close(self) -> None: ...


# --- shared rules -----------------------------------------------------------------------


def inputs_hash(inputs_json: str) -> str:
    """Hash of the inputs' canonical JSON (sorted keys): equal inputs, equal hash."""
    try:
        data = json.loads(inputs_json)
    except ValueError as exc:
        raise StoreError(f"the inputs to store are not JSON text ({exc})") from None
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_status(status: str, allowed: tuple[str, ...], what: str) -> None:
    if status not in allowed:
        raise StoreError(f"{what} status {status!r} is not one of: {', '.join(allowed)}")


def _other_inputs(run_id: str) -> StoreError:
    return StoreError(
        f"run {run_id!r} already exists in this store with other inputs.\n"
        "  A run id is an idempotency key: the same id always means the same inputs.\n"
        "  Use a new run_id, or resume() the stored run with its own inputs.", run_id=run_id)


def _no_run(run_id: str) -> StoreError:
    return StoreError(f"no run {run_id!r} in this store", run_id=run_id)


def _check_answer(run_id: str, form: Form | None, name: str, answer_json: str) -> bool:
    """True when the answer must be written (False: the same answer is already there)."""
    if form is None:
        raise StoreError(f"run {run_id!r} has no form {name!r} waiting for an answer",
                         run_id=run_id, path=name)
    if form.answer_json is None:
        return True
    if json.loads(form.answer_json) == json.loads(answer_json):
        return False
    raise StoreError(f"form {name!r} of run {run_id!r} already has another answer",
                     run_id=run_id, path=name)


def _deadline_out(deadline: dt.datetime | None) -> float | None:
    if deadline is None:
        return None
    if deadline.tzinfo is None:
        raise StoreError(f"a form's deadline must be an aware datetime (got {deadline!r})")
    return deadline.timestamp()


def _deadline_in(stamp: float | None) -> dt.datetime | None:
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC)


# --- the writer ---------------------------------------------------------------------------


class Writer:
    """Group commit for one run: ``add()`` at the settle point, ``await flush()`` to wait.

    Use through ``async with store_writer(store, run_id) as writer``, which runs the
    background task that commits.
    """

    def __init__(self, store: Store, run_id: str):
        self.run_id = run_id
        self.error: StoreError | None = None
        self.dead = False  # the commit loop ended with an exception not from the store
        self._store = store
        self._next_seq = store.next_seq(run_id)  # of the first pending row
        self._pending: list[StepRow] = []
        self._added = 0
        self._committed = 0
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._cancel = trio.CancelScope()

    def add(self, row: StepRow) -> None:
        """Queue a settled step's row; cheap and synchronous. Committed in add order, with
        ``seq`` numbers following the run's last stored one (``row.seq`` is ignored)."""
        self._pending.append(row)
        self._added += 1
        self._wake.set()

    @property
    def committed(self) -> int:
        """How many added rows are committed so far."""
        return self._committed

    async def flush(self) -> None:
        """Return once every row added so far is committed; :class:`StoreError` if not."""
        target = self._added
        while self._committed < target:
            if self.error is not None:
                raise self.error
            if self.dead:
                raise StoreError(f"run {self.run_id!r}: the writer stopped before committing "
                                 "every row", run_id=self.run_id)
            await self._progress.wait()
        if self.error is not None:
            raise self.error

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._pending = self._pending, []
            first, self._next_seq = self._next_seq, self._next_seq + len(batch)
            try:
                if self._store.threaded:
                    await trio.to_thread.run_sync(self._store.write_batch, self.run_id, first,
                                                  batch)
                else:
                    self._store.write_batch(self.run_id, first, batch)
            except StoreError as exc:
                self.error = exc
                self._progress.set()
                self._cancel.cancel()  # the run stops: it must not go on as if stored
                return
            except BaseException:  # not the store's doing (a bug, an interrupt): whoever
                self.dead = True    # waits in flush() must not wait forever
                self._progress.set()
                raise
            self._committed += len(batch)
            progress, self._progress = self._progress, trio.Event()
            progress.set()


@asynccontextmanager
async def store_writer(store: Store, run_id: str) -> AsyncIterator[Writer]:
    """The run's writer, committing in the background for the duration of the block.

    On a normal exit the block waits for every row. If a write fails, the block is
    cancelled and :class:`StoreError` is raised from it. If the block raises, the rows
    already added are still committed (shielded), and the block's exception propagates.
    """
    writer = Writer(store, run_id)
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer._commit_loop)
        try:
            with writer._cancel:
                yield writer
                await writer.flush()
        except BaseException as exc:  # re-raised below, outside the nursery (no group)
            failure = exc
            if writer.error is None:
                with trio.CancelScope(shield=True):
                    try:
                        await writer.flush()
                    except StoreError:
                        pass
        finally:
            nursery.cancel_scope.cancel()
    if writer.error is not None:
        raise writer.error
    if failure is not None:
        raise failure


# --- MemoryStore ---------------------------------------------------------------------------


class MemoryStore:
    """A store in this process's memory, with the same rules as SQLiteStore: for tests."""

    threaded = False

    def __init__(self) -> None:
        self._runs: dict[str, StoredRun] = {}
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs)"

    def begin_run(self, run_id: str, *, graph_name: str, flow_ref: str | None,
                  inputs_json: str) -> StoredRun | None:
        digest = inputs_hash(inputs_json)
        if run_id in self._runs:
            stored = self.load_run(run_id)
            if stored is not None and stored.inputs_hash != digest:
                raise _other_inputs(run_id)
            return stored
        now = time.time()
        self._runs[run_id] = StoredRun(run_id, graph_name, flow_ref, inputs_json, digest,
                                       "running", now, now)
        return None

    def _run(self, run_id: str) -> StoredRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise _no_run(run_id) from None

    def load_run(self, run_id: str) -> StoredRun | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        return replace(run, steps=dict(run.steps), forms=dict(run.forms))

    def finish_run(self, run_id: str, status: str, output_json: str | None = None) -> None:
        _check_status(status, RUN_STATUSES, "run")
        run = self._run(run_id)
        self._runs[run_id] = replace(run, status=status, output_json=output_json,
                                     updated_at=time.time())

    def list_runs(self, status: str | None = None) -> list[StoredRun]:
        runs = sorted(self._runs.values(), key=lambda r: (r.created_at, r.run_id))
        return [replace(r, steps={}) for r in runs if status is None or r.status == status]

    def record_form(self, run_id: str, form: Form) -> None:
        _deadline_out(form.deadline)
        forms = self._run(run_id).forms
        old = forms.get(form.name)
        forms[form.name] = replace(form, answer_json=old.answer_json if old else None,
                                   asked_at=form.asked_at or time.time())

    def answer_form(self, run_id: str, name: str, answer_json: str) -> None:
        forms = self._run(run_id).forms
        if _check_answer(run_id, forms.get(name), name, answer_json):
            forms[name] = replace(forms[name], answer_json=answer_json)

    def cache_get(self, key: str) -> str | None:
        return self._cache.get(key)

    def cache_put(self, key: str, step_name: str, output_json: str) -> None:
        self._cache[key] = output_json

    def next_seq(self, run_id: str) -> int:
        steps = self._run(run_id).steps
        return max((r.seq for r in steps.values()), default=0) + 1

    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow]) -> None:
        run = self._run(run_id)
        for row in rows:
            _check_status(row.status, STEP_STATUSES, f"step {row.path!r}:")
        for seq, row in enumerate(rows, first_seq):  # in commit order, as SQLite reads them
            run.steps.pop(row.path, None)
            run.steps[row.path] = row._replace(seq=seq)
        self._runs[run_id] = replace(run, updated_at=time.time())

    def close(self) -> None:
        pass


# --- SQLiteStore ---------------------------------------------------------------------------

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
  status      TEXT NOT NULL CHECK (status IN ('succeeded','failed','skipped','cancelled')),
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
_STEP_COLUMNS = ("path, status, output_json, code_hash, attempts, error, started_at, "
                 "ended_at, commit_seq")
# A whole batch is one statement over one JSON array: SQLite does the per-row work
# without holding the GIL, so the run's own thread keeps going meanwhile (executemany
# would take the GIL back for every row).
_INSERT_STEPS = (
    f"INSERT OR REPLACE INTO steps (run_id, {_STEP_COLUMNS}) SELECT ?1, "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(8))
    + ", ?2 + key FROM json_each(?3)")
_RUN_COLUMNS = ("run_id, graph_name, flow_ref, inputs_json, inputs_hash, status, "
                "created_at, updated_at, output_json")


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
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        sync = "FULL" if self.durability == "power-loss" else "NORMAL"
        db.execute(f"PRAGMA synchronous = {sync}")
        db.execute("PRAGMA foreign_keys = ON")
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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock up front)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._rollback()
                raise
            self._db.execute("COMMIT")

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
                return db.execute(sql, args).rowcount
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
        steps = self._read(f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? "
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
            (run_id, form.name, form.title, json.dumps(form.schema, sort_keys=True), deadline,
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

    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow]) -> None:
        """Commit ``rows`` (numbered from ``first_seq``) in one transaction, from the
        writer's thread."""
        if not rows:
            return
        for row in rows:
            _check_status(row.status, STEP_STATUSES, f"step {row.path!r}:")
        batch = json.dumps(rows)  # arrays of the fields, in order (seq: ignored)
        try:
            with self._tx() as db:
                db.execute(_INSERT_STEPS, (run_id, first_seq, batch))
                db.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?",
                           (time.time(), run_id))
                self._maybe_crash("before-commit", self._commits + 1)
        except sqlite3.Error as exc:
            first = rows[0].path
            raise StoreError(f"could not store step {first!r} of run {run_id!r} in "
                             f"{self.path!r}: {exc}", run_id=run_id, path=first) from None
        self._commits += 1
        self._maybe_crash("after-commit", self._commits)

    def _maybe_crash(self, where: str, count: int) -> None:
        if self._crash == (where, count):
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            self._db.close()
