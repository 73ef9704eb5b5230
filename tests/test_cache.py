"""``@step(cache=True)``: hits across runs and processes, misses on any change that could
matter (body, default, closure value), ``version=``, ``cache="refresh"``, and calls that
cannot be cached (the span says why)."""

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest

from flowfn import MemoryStore, SQLiteStore, each, graph, run, step

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "tests" / "flows_cache.py"


class Calls:
    """Counts calls. A plain object: its value is not part of a cache key (a list that
    grows would be — a step reading a changed closure value misses)."""

    def __init__(self) -> None:
        self.n = 0


def child(db: Path, run_id: str, n: int, log: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWFN_TEST_LOG": str(log)}
    done = subprocess.run([sys.executable, str(SCRIPT), str(db), run_id, str(n)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return reply


def test_a_cache_hit_across_processes(tmp_path: Path) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "log.txt"
    first = child(db, "a", 5, log)
    assert first == {"output": [0, 1, 4, 9, 16], "cached": False}
    second = child(db, "b", 5, log)  # another run, another process, the same file
    assert second == {"output": [0, 1, 4, 9, 16], "cached": True}
    assert log.read_text().split() == ["ran"]  # the body ran once
    other = child(db, "c", 3, log)  # another argument: a miss
    assert other == {"output": [0, 1, 4], "cached": False}
    assert log.read_text().split() == ["ran", "ran"]


def runs_of(*versions: Any, store: Any = None) -> list[bool]:
    """Run each version of a one-step flow against one store: was each a cache hit?"""
    store = store if store is not None else MemoryStore()
    hits = []
    for i, s in enumerate(versions):
        result = run(graph(s), store=store, run_id=f"r{i}")
        hits.append(result.spans[s.name].cached)
    return hits


def test_the_same_code_and_arguments_hit() -> None:
    calls = Calls()

    @step(cache=True, name="price")
    def price() -> float:
        calls.n += 1
        return 9.5

    store = MemoryStore()
    assert runs_of(price, price, store=store) == [False, True]
    assert calls.n == 1
    hit = run(graph(price), store=store, run_id="again")
    assert hit.output == 9.5 and hit.spans["price"].status == "succeeded"


def _body_versions() -> list[Any]:
    found = []

    @step(cache=True, name="price")
    def price() -> float:
        return 9.5

    found.append(price)

    @step(cache=True, name="price")
    def price() -> float:  # type: ignore[no-redef]
        """Now with a docstring."""
        return 9.5  # and a comment

    found.append(price)

    @step(cache=True, name="price")
    def price() -> float:  # type: ignore[no-redef]
        return 9.75

    found.append(price)
    return found


def test_body_changes_miss_and_cosmetic_changes_hit() -> None:
    v1, v1_commented, v2 = _body_versions()
    assert runs_of(v1, v1_commented, v2) == [False, True, False]


def _with_default(rate: float) -> Any:
    @step(cache=True, name="taxed")
    def taxed(amount: float = 100.0, *, rate: float = rate) -> float:
        return amount * rate

    return taxed


def _with_closure(rate: float) -> Any:
    @step(cache=True, name="taxed")
    def taxed() -> float:
        return 100.0 * rate

    return taxed


def test_a_changed_default_misses() -> None:
    assert runs_of(_with_default(0.2), _with_default(0.2), _with_default(0.25)) == [
        False, True, False]


def test_a_changed_closure_value_misses() -> None:
    store = MemoryStore()
    assert runs_of(_with_closure(0.2), _with_closure(0.2), _with_closure(0.25),
                   store=store) == [False, True, False]
    assert run(graph(_with_closure(0.25)), store=store, run_id="x").output == 25.0


def _versioned(version: str, value: float) -> Any:
    @step(cache=True, version=version, name="model")
    def model() -> float:
        return value  # the closure value changes, the version says it does not matter

    return model


def test_version_replaces_the_code_hash() -> None:
    store = MemoryStore()
    assert runs_of(_versioned("1", 1.0), _versioned("1", 2.0), _versioned("2", 3.0),
                   store=store) == [False, True, False]
    assert run(graph(_versioned("1", 9.0)), store=store, run_id="x").output == 1.0


def test_refresh_recomputes_and_overwrites() -> None:
    store = MemoryStore()
    counter = Calls()

    @step(cache=True, name="fresh")
    def fresh() -> int:
        counter.n += 1
        return counter.n

    assert run(graph(fresh), store=store, run_id="a").output == 1
    assert run(graph(fresh), store=store, run_id="b").output == 1  # a hit
    refreshed = run(graph(fresh), store=store, run_id="c", cache="refresh")
    assert refreshed.output == 2 and refreshed.spans["fresh"].cached is False
    assert run(graph(fresh), store=store, run_id="d").output == 2  # the new entry


def test_a_closure_list_that_grew_is_a_changed_value() -> None:
    seen: list[int] = []

    @step(cache=True, name="log")
    def log() -> int:
        seen.append(1)
        return 1

    assert runs_of(log, log) == [False, False]  # the list it reads changed in between


def test_cache_takes_refresh_or_none() -> None:
    @step(cache=True)
    def one() -> int:
        return 1

    with pytest.raises(ValueError, match=r"cache= takes 'refresh'"):
        run(graph(one), store=MemoryStore(), cache="yes")
    with pytest.raises(ValueError, match=r"caching keeps outputs in a store"):
        run(graph(one), cache="refresh")


class Client:
    """No JSON form: a call that receives it cannot be cached."""


def test_an_argument_that_cannot_be_hashed_is_not_cached_and_the_span_says_why() -> None:
    ran: list[int] = []

    @step(checkpoint=False)
    def client() -> Client:
        return Client()

    @step(cache=True)
    def fetch(client: Annotated[Client, client], n: int) -> int:
        ran.append(n)
        return n

    store = MemoryStore()
    for run_id in ("a", "b"):
        result = run(graph(fetch), {"n": 3}, store=store, run_id=run_id)
        span = result.spans["fetch"]
        assert span.cached is False
        assert span.reason == ("not cached: argument 'client' is a Client, which has no "
                               "JSON form to hash")
    assert ran == [3, 3]


def test_an_upstream_that_reran_with_equal_data_still_hits() -> None:
    @step
    def source(n: int) -> list[int]:
        return list(range(n))

    @step(cache=True)
    def summed(source: Annotated[list[int], source]) -> int:
        return sum(source)

    store = MemoryStore()
    run(graph(summed), {"n": 4}, store=store, run_id="a")
    again = run(graph(summed), {"n": 4}, store=store, run_id="b")
    assert again.spans["summed"].cached is True and again.output == 6
    assert again.spans["source"].cached is False


def test_cache_hits_are_in_the_sqlite_file(tmp_path: Path) -> None:
    @step(cache=True)
    def hello() -> str:
        return "hi"

    store = SQLiteStore(tmp_path / "runs.db")
    assert runs_of(hello, hello, store=store) == [False, True]
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        rows = conn.execute("SELECT step_name, output_json FROM cache").fetchall()
    assert rows == [("hello", '"hi"')]


@step
def numbers() -> list[int]:
    return [1, 2, 3]


MAPPED = Calls()


@step(cache=True)
def squared(x: Annotated[int, each(numbers)]) -> int:
    MAPPED.n += 1
    return x * x


def test_a_cached_map_step_is_cached_per_item() -> None:
    MAPPED.n = 0
    store = MemoryStore()
    run(graph(squared), store=store, run_id="a")
    again = run(graph(squared), store=store, run_id="b")
    assert again.output == [1, 4, 9]
    assert [s.cached for s in again.spans["squared"].children.values()] == [True] * 3
    assert MAPPED.n == 3


ASYNC = Calls()


@step(cache=True)
async def fetch_rates() -> dict[str, float]:
    ASYNC.n += 1
    return {"EUR": 1.08}


def test_an_async_cached_step_without_other_options_is_cached(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # as in a script with no logging set up: no observers, so the scheduler's fast path
    monkeypatch.setattr(logging.getLogger("flowfn"), "disabled", True)
    ASYNC.n = 0
    store = MemoryStore()
    run(graph(fetch_rates), store=store, run_id="a")
    again = run(graph(fetch_rates), store=store, run_id="b")
    assert again.spans["fetch_rates"].cached is True and ASYNC.n == 1
