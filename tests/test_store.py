"""The store layer on its own: runs, step rows through the group-commit writer, forms, cache.

The scheduler is not wired to it yet, so these tests drive the store the way the
scheduler will (``store_writer``/``StepRow`` from ``flowfn._store``). Every test runs
against both stores unless it is about SQLite itself.
"""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from flowfn import MemoryStore, SQLiteStore, StoreError
from flowfn._store import Form, StepRow, Store, store_writer

DOCS = Path(__file__).parent.parent / "docs" / "durable.md"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    yield made
    made.close()


def begin(store: Store, run_id: str = "job-1", inputs: str = '{"a": 1, "b": [2]}') -> None:
    assert store.begin_run(run_id, graph_name="flow", flow_ref="pkg.mod:flow",
                           inputs_json=inputs) is None


def write(store: Store, run_id: str, rows: list[StepRow], *, every: int = 1) -> int:
    async def main() -> int:
        async with store_writer(store, run_id) as writer:
            for i, row in enumerate(rows, 1):
                writer.add(row)
                if i % every == 0:
                    await trio.sleep(0)
        return writer.committed

    return trio.run(main)


# --- runs ------------------------------------------------------------------------------


def test_a_new_run_then_the_same_id_with_the_same_inputs(store: Store) -> None:
    begin(store)
    again = store.begin_run("job-1", graph_name="flow", flow_ref="pkg.mod:flow",
                            inputs_json='{"b":[2],"a":1}')  # same data, other key order
    assert again is not None
    assert (again.run_id, again.status, again.graph_name, again.flow_ref) == (
        "job-1", "running", "flow", "pkg.mod:flow")
    assert again.inputs_json == '{"a": 1, "b": [2]}'
    assert again.steps == {} and again.forms == {} and again.output_json is None


def test_a_run_id_reused_with_other_inputs_is_an_error_naming_the_run(store: Store) -> None:
    begin(store)
    with pytest.raises(StoreError) as info:
        store.begin_run("job-1", graph_name="flow", flow_ref=None, inputs_json='{"a": 2}')
    assert str(info.value) == (
        "run 'job-1' already exists in this store with other inputs.\n"
        "  A run id is an idempotency key: the same id always means the same inputs.\n"
        "  Use a new run_id, or resume() the stored run with its own inputs.")
    assert info.value.run_id == "job-1"


def test_finish_and_list_runs(store: Store) -> None:
    begin(store, "a")
    begin(store, "b")
    store.finish_run("a", "succeeded", '{"total": 3}')
    store.finish_run("b", "waiting")
    assert [r.run_id for r in store.list_runs()] == ["a", "b"]
    assert [r.run_id for r in store.list_runs("waiting")] == ["b"]
    assert store.list_runs("failed") == []
    loaded = store.load_run("a")
    assert loaded is not None and (loaded.status, loaded.output_json) == (
        "succeeded", '{"total": 3}')
    assert store.load_run("nope") is None


def test_finish_run_refuses_unknown_statuses_and_runs(store: Store) -> None:
    begin(store)
    with pytest.raises(StoreError, match=re.escape(
            "run status 'done' is not one of: running, waiting, succeeded, failed, cancelled")):
        store.finish_run("job-1", "done")
    with pytest.raises(StoreError, match=r"^no run 'other' in this store$"):
        store.finish_run("other", "failed")


# --- the writer ---------------------------------------------------------------------------


def rows(n: int, prefix: str = "s") -> list[StepRow]:
    return [StepRow(f"{prefix}{i}", "succeeded", f'{{"i":{i}}}', "h", 1, None,
                    1.0 * i, 1.0 * i + 0.5) for i in range(n)]


@pytest.mark.parametrize("every", [1, 7, 1000])
def test_rows_land_in_add_order_and_read_back(store: Store, every: int) -> None:
    begin(store)
    assert write(store, "job-1", rows(50), every=every) == 50
    run = store.load_run("job-1")
    assert run is not None
    assert list(run.steps) == [f"s{i}" for i in range(50)]
    assert [r.seq for r in run.steps.values()] == list(range(1, 51))
    assert run.steps["s3"] == StepRow("s3", "succeeded", '{"i":3}', "h", 1, None, 3.0, 3.5, 4)


def test_a_second_writer_continues_the_sequence_and_replaces_a_path(store: Store) -> None:
    begin(store)
    write(store, "job-1", [StepRow("fetch", "failed", None, "h", 3, "ValueError: boom"),
                           StepRow("fetch[0]", "succeeded", "1")])
    write(store, "job-1", [StepRow("fetch", "succeeded", "[1]", "h", 1)])
    run = store.load_run("job-1")
    assert run is not None
    assert run.steps["fetch"] == StepRow("fetch", "succeeded", "[1]", "h", 1, seq=3)
    assert list(run.steps) == ["fetch[0]", "fetch"]


def test_flush_returns_once_everything_added_is_committed(store: Store) -> None:
    begin(store)

    async def main() -> None:
        async with store_writer(store, "job-1") as writer:
            await writer.flush()  # nothing added: returns at once
            for row in rows(10):
                writer.add(row)
            assert writer.committed == 0
            await writer.flush()
            assert writer.committed == 10
            stored = store.load_run("job-1")
            assert stored is not None and len(stored.steps) == 10

    trio.run(main)


def test_rows_added_before_the_block_fails_are_still_committed(store: Store) -> None:
    begin(store)

    async def main() -> None:
        async with store_writer(store, "job-1") as writer:
            for row in rows(5):
                writer.add(row)
            raise KeyError("step failed")

    with pytest.raises(KeyError):
        trio.run(main)
    stored = store.load_run("job-1")
    assert stored is not None and len(stored.steps) == 5


def test_a_cancelled_block_still_commits_what_was_added(store: Store) -> None:
    begin(store)

    async def main() -> None:
        with trio.CancelScope() as scope:  # the run's own deadline, say
            async with store_writer(store, "job-1") as writer:
                for row in rows(5):
                    writer.add(row)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught

    trio.run(main)
    stored = store.load_run("job-1")
    assert stored is not None and len(stored.steps) == 5


def test_the_writer_under_a_virtual_clock(store: Store) -> None:
    begin(store)

    async def main() -> None:
        async with store_writer(store, "job-1") as writer:
            for row in rows(3):
                await trio.sleep(10)
                writer.add(row)
            await writer.flush()
            assert writer.committed == 3

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_bad_step_status_fails_the_block_naming_the_step(store: Store) -> None:
    begin(store)
    with pytest.raises(StoreError, match=re.escape(
            "step 'x': status 'weird' is not one of: succeeded, failed, skipped, cancelled")):
        write(store, "job-1", [StepRow("x", "weird")])


def test_a_locked_database_fails_the_run_with_the_step_and_never_hangs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", busy_timeout=0.05)
    begin(store)
    other = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    reached: list[str] = []

    async def main() -> None:
        with trio.fail_after(5):
            async with store_writer(store, "job-1") as writer:
                writer.add(StepRow("fetch[2]", "succeeded", "1"))
                writer.add(StepRow("merge", "succeeded", "1"))
                with pytest.raises(StoreError):
                    await writer.flush()
                await trio.sleep_forever()  # cancelled: the run must not go on
                reached.append("after")  # pragma: no cover

    with pytest.raises(StoreError) as info:
        trio.run(main)
    other.execute("ROLLBACK")
    assert reached == []
    assert str(info.value) == (
        f"could not store step 'fetch[2]' of run 'job-1' in {str(tmp_path / 'r.db')!r}: "
        "database is locked")
    assert (info.value.run_id, info.value.path) == ("job-1", "fetch[2]")
    stored = store.load_run("job-1")
    assert stored is not None and stored.steps == {}  # nothing half-written


def test_store_error_pickles_and_copies() -> None:
    err = StoreError("could not store step 'a'", run_id="r", path="a")
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is StoreError
        assert (str(clone), clone.run_id, clone.path) == (str(err), "r", "a")


# --- forms -----------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"approved": {"type": "boolean"}},
          "required": ["approved"]}


def test_forms_wait_then_take_one_answer(store: Store) -> None:
    begin(store)
    deadline = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)
    store.record_form("job-1", Form("legal", "Legal Review Required", SCHEMA, deadline))
    store.record_form("job-1", Form("finance", "Finance Review", SCHEMA))
    run = store.load_run("job-1")
    assert run is not None
    assert [f.name for f in run.waiting] == ["legal", "finance"]
    legal = run.forms["legal"]
    assert (legal.title, legal.schema, legal.deadline, legal.answer_json) == (
        "Legal Review Required", SCHEMA, deadline, None)
    assert legal.deadline is not None and legal.deadline.utcoffset() == dt.timedelta(0)
    store.answer_form("job-1", "legal", '{"approved": true}')
    store.answer_form("job-1", "legal", '{"approved":true}')  # the same again: no-op
    with pytest.raises(StoreError, match=r"^form 'legal' of run 'job-1' already has another "
                                         r"answer$"):
        store.answer_form("job-1", "legal", '{"approved": false}')
    store.record_form("job-1", Form("legal", "Legal Review Required", SCHEMA, deadline))
    run = store.load_run("job-1")
    assert run is not None and [f.name for f in run.waiting] == ["finance"]
    assert run.forms["legal"].answer_json == '{"approved": true}'  # kept on re-ask
    assert [f.name for f in store.list_runs()[0].waiting] == ["finance"]


def test_answering_a_form_that_does_not_exist(store: Store) -> None:
    begin(store)
    with pytest.raises(StoreError, match=r"^run 'job-1' has no form 'legal' waiting for an "
                                         r"answer$"):
        store.answer_form("job-1", "legal", "{}")


def test_a_deadline_must_be_an_aware_time(store: Store) -> None:
    begin(store)
    with pytest.raises(StoreError, match="must be an aware datetime"):
        store.record_form("job-1", Form("legal", "t", {}, dt.datetime(2026, 1, 1)))


# --- cache -----------------------------------------------------------------------------------


def test_cache_entries_are_shared_by_every_store_on_the_file(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "c.db"), SQLiteStore(tmp_path / "c.db")
    assert first.cache_get("k") is None
    first.cache_put("k", "fetch", '{"rows": 3}')
    assert second.cache_get("k") == '{"rows": 3}'
    second.cache_put("k", "fetch", '{"rows": 4}')  # refresh overwrites
    assert first.cache_get("k") == '{"rows": 4}'


def test_memory_cache() -> None:
    store = MemoryStore()
    store.cache_put("k", "fetch", "1")
    assert (store.cache_get("k"), store.cache_get("j")) == ("1", None)


# --- the SQLite file -----------------------------------------------------------------------


def test_the_file_is_plain_sqlite_with_the_documented_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    begin(store)
    write(store, "job-1", rows(3))
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA user_version").fetchone() == (1,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT json_extract(output_json, '$.i') FROM steps "
                      "ORDER BY commit_seq").fetchall() == [(0,), (1,), (2,)]
    documented = " ".join(DOCS.read_text().split())
    for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
        assert " ".join(sql.split()) + ";" in documented


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "r.db")
    db.execute("PRAGMA user_version = 7")
    db.close()
    with pytest.raises(StoreError) as info:
        SQLiteStore(tmp_path / "r.db")
    assert str(info.value) == (f"store {str(tmp_path / 'r.db')!r} has format 7; this flowfn "
                               "reads and writes format 1 only")


def test_a_file_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^cannot open store .*: unable to open database file"):
        SQLiteStore(tmp_path / "missing" / "r.db")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"path": 5}, "SQLiteStore(path=...) takes a file path, not 5"),
    ({"durability": "disk"},
     "SQLiteStore(durability=...) takes 'app-crash' or 'power-loss', not 'disk'"),
    ({"busy_timeout": "1"}, "SQLiteStore(busy_timeout=...) takes a number of seconds >= 0, "
                            "not '1'"),
])
def test_misused_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args = {"path": tmp_path / "r.db", **kwargs}
    with pytest.raises((TypeError, ValueError)) as info:
        SQLiteStore(**args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_power_loss_durability(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db", durability="power-loss")
    assert repr(store) == f"SQLiteStore({str(tmp_path / 'r.db')!r}, durability='power-loss')"
    begin(store)
    assert write(store, "job-1", rows(4)) == 4
