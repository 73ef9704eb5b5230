"""Where durable runs live: the Store protocol, its records, MemoryStore and the writer.

(SQLiteStore, the durable one, is in ``_sqlite``.)

A step counts as finished once its row is committed. Committing each row on its own would
cost a transaction per step (17-100 µs with ``synchronous=NORMAL`` on the reference
machine, 300 µs with FULL), so one :class:`Writer` per run commits *everything settled
since its last commit* in one transaction, while the run goes on. While the run has
other work ready, the writer lets it go first (up to ``GROUP_ROWS`` rows, for
``GROUP_SECONDS`` at most), so that busy runs make large batches; once nothing else is ready, it
commits at once: no timer ever holds a row back. Rows are committed in the order they
were added, which is settle order, so the stored set is always a valid partial run: a
step's row never lands before the rows of the steps it depended on.

Where the commit runs: SQLite's is a few µs a row of CPU, and a worker thread would
wait up to 5 ms (the GIL's switch interval) for the GIL at every statement while the
run's thread computes, so the batch is committed on the run's own thread when the store
can do that without waiting (``write_batch(wait=False)``), and in a worker thread only
when it cannot (another process holds the lock, an fsync, a huge batch): the event loop
never waits for a lock or the disk.

Everything stored is JSON text (see ``_codec``); nothing is ever pickled, so a store can
be read by ``sqlite3`` or by another process while a run writes it (WAL mode). The
schema is documented in docs/durable.md and versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, Protocol

import trio

#: ``PRAGMA user_version`` of the files this flowfn writes; other versions are refused.
FORMAT_VERSION = 1
RUN_STATUSES = ("running", "waiting", "succeeded", "failed", "cancelled")
STEP_STATUSES = ("succeeded", "failed", "skipped", "cancelled")
Durability = Literal["app-crash", "power-loss"]


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
    A named tuple because one is made at the settle point of every step, and a named
    tuple is cheaper to make than a dataclass (and goes to JSON as an array as it is).
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
    :meth:`write_batch` when ``threaded`` is true: it may have to wait (for another
    process's lock, say), so the :class:`Writer` first calls it with ``wait=False`` —
    commit now if that needs no waiting, else return False without writing anything —
    and only then runs it in a worker thread."""

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
    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow], *,
                    wait: bool = True) -> bool: ...
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

#: While the run has work ready, a store whose commits cost (``threaded``) waits for this
#: many rows, this long, or this many turns of the event loop (a clock that stands still
#: while tasks are ready: trio's MockClock), before it commits (a commit costs 0.1-0.2 ms,
#: a row 2-4 µs).
GROUP_ROWS = 1024
GROUP_SECONDS = 0.02
GROUP_TURNS = 100


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
        self._asleep = True  # the commit loop waits for _wake (add() need not set it)
        self._progress = trio.Event()
        self._cancel = trio.CancelScope()
        # Shielded: a cancelled run (its deadline, a failure) still commits what settled;
        # store_writer() stops the loop itself once everything is flushed.
        self._loop_scope = trio.CancelScope(shield=True)

    def add(self, row: StepRow) -> None:
        """Queue a settled step's row; cheap and synchronous. Committed in add order, with
        ``seq`` numbers following the run's last stored one (``row.seq`` is ignored)."""
        self._pending.append(row)
        self._added += 1
        if self._asleep:
            self._asleep = False
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
        with self._loop_scope:
            await self._commit_batches()

    async def _commit_batches(self) -> None:
        while True:
            if not self._pending:
                self._asleep = True
                await self._wake.wait()
                self._wake = trio.Event()
            else:  # rows came while it was busy: the tasks they woke go first, once
                await trio.lowlevel.cancel_shielded_checkpoint()
            if self._store.threaded:
                await self._gather()
            batch, self._pending = self._pending, []
            try:
                await self._write(batch)
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

    async def _gather(self) -> None:
        """Let the run's other ready tasks go first while they settle more rows, so that
        one commit holds them all (see ``GROUP_ROWS``). Never waits for anything else:
        once no other task is ready to run, it returns."""
        statistics = trio.lowlevel.current_statistics
        until = trio.current_time() + GROUP_SECONDS
        added, quiet = -1, 0
        for _ in range(GROUP_TURNS):
            if self._added == added and not statistics().tasks_runnable:
                quiet += 1
            else:
                quiet = 0
            if len(self._pending) >= GROUP_ROWS or trio.current_time() >= until or quiet == 2:
                return
            added = self._added
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _write(self, batch: list[StepRow]) -> None:
        """Commit one batch: on this thread when the store can do it without waiting (it
        has the lock at once and no fsync to make: a few µs a row), else in a worker
        thread, so that a locked database never blocks the run's event loop."""
        store = self._store
        first, self._next_seq = self._next_seq, self._next_seq + len(batch)
        if not store.threaded:
            store.write_batch(self.run_id, first, batch)
        elif not store.write_batch(self.run_id, first, batch, wait=False):
            await trio.to_thread.run_sync(store.write_batch, self.run_id, first, batch)


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
            writer._loop_scope.cancel()
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
        self._seqs: dict[str, dict[str, int]] = {}  # run id -> path -> commit seq
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
        seqs = self._seqs.get(run_id, {})
        steps = {path: row._replace(seq=seqs[path]) for path, row in run.steps.items()}
        return replace(run, steps=steps, forms=dict(run.forms))

    def finish_run(self, run_id: str, status: str, output_json: str | None = None) -> None:
        _check_status(status, RUN_STATUSES, "run")
        run = self._run(run_id)
        self._runs[run_id] = replace(run, status=status, output_json=output_json,
                                     updated_at=time.time())

    def list_runs(self, status: str | None = None) -> list[StoredRun]:
        runs = sorted(self._runs.values(), key=lambda r: (r.created_at, r.run_id))
        return [replace(r, steps={}, forms=dict(r.forms)) for r in runs
                if status is None or r.status == status]

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
        return max(self._seqs.get(run_id, {}).values(), default=0) + 1

    def write_batch(self, run_id: str, first_seq: int, rows: Sequence[StepRow], *,
                    wait: bool = True) -> bool:
        run = self._run(run_id)
        for row in rows:
            if row.status not in STEP_STATUSES:
                _check_status(row.status, STEP_STATUSES, f"step {row.path!r}:")
        steps = run.steps
        seqs = self._seqs.setdefault(run_id, {})
        for seq, row in enumerate(rows, first_seq):  # in commit order, as SQLite reads them
            path = row.path
            if path in steps:
                del steps[path]  # a later row of a path goes last, as SQLite orders them
            steps[path] = row  # its seq is filled in by load_run
            seqs[path] = seq
        self._runs[run_id] = replace(run, updated_at=time.time())
        return True

    def close(self) -> None:
        pass
