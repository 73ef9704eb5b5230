"""Durable runs with every kind of step: maps resume per item, subflows by path, races by
their stored winner, retries, ``when=`` skips, ``Outcome`` consumers, ``checkpoint=False``
steps, and the idempotency key that stays the same across attempts and resumes.

A run is stopped in the middle by a store whose ``write_batch`` raises a ``BaseException``
right after the commit holding its k-th row: what the store holds then is exactly what a
process killed at that moment would leave behind.
"""

from datetime import datetime
from typing import Annotated, Any

import pytest
import trio
import trio.testing
from durable_help import Stop, StopAfter, virtual

from flowfn import (
    GraphError,
    MemoryStore,
    Outcome,
    RunFailed,
    Value,
    aresume,
    arun,
    current_span,
    each,
    graph,
    race,
    step,
    subflow,
)


def stop_then_resume(flow: Any, k: int, **options: Any) -> tuple[StopAfter, Any]:
    """Run ``flow`` until the commit holding row ``k``, then resume it: (store, result)."""
    store = StopAfter(k)
    with pytest.raises((Stop, BaseExceptionGroup)):
        virtual(arun, flow, store=store, run_id="job", **options)
    return store, virtual(aresume, flow, "job", store=store)


def stored_paths(store: MemoryStore) -> set[str]:
    stored = store.load_run("job")
    assert stored is not None
    return {p for p, row in stored.steps.items() if row.status == "succeeded"}


# --- maps -------------------------------------------------------------------------------

RAN: list[str] = []


@step
def twenty() -> list[int]:
    RAN.append("twenty")
    return list(range(20))


@step
async def cube(x: Annotated[int, each(twenty)]) -> int:
    await trio.sleep(0.01 * (x % 5 + 1))  # items finish out of order
    RAN.append(f"cube[{x}]")
    return x**3


@step
def added(cube: list[int]) -> int:
    RAN.append("added")
    return sum(cube)


def test_a_map_stopped_in_the_middle_reruns_only_its_unfinished_items() -> None:
    RAN.clear()
    store = StopAfter(9)  # `twenty` and 8 items
    with pytest.raises((Stop, BaseExceptionGroup)):
        virtual(arun, graph(added), store=store, run_id="job")
    before = stored_paths(store)
    assert "twenty" in before and len(before) == 9
    done_items = {p for p in before if p.startswith("cube[")}
    RAN.clear()
    result = virtual(aresume, graph(added), "job", store=store)
    assert result.output == sum(x**3 for x in range(20))
    assert sorted(RAN) == sorted({f"cube[{i}]" for i in range(20)} - done_items | {"added"})
    assert "twenty" not in RAN
    assert len(result.spans["cube"].children) == 20


def test_every_stop_point_of_a_map_runs_each_item_once_overall() -> None:
    for k in range(1, 22):
        RAN.clear()
        store = StopAfter(k)
        with pytest.raises((Stop, BaseExceptionGroup)):
            virtual(arun, graph(added), store=store, run_id="job")
        committed = stored_paths(store)
        RAN.clear()
        result = virtual(aresume, graph(added), "job", store=store)
        assert result.output == sum(x**3 for x in range(20)), k
        assert not set(RAN) & committed, k  # no committed item ran again
        assert set(RAN) | committed >= {f"cube[{i}]" for i in range(20)}


# --- subflows ---------------------------------------------------------------------------


@step
def shout(word: str) -> str:
    RAN.append("shout")
    return word.upper()


@step
def exclaim(shout: str) -> str:
    RAN.append("exclaim")
    return shout + "!"


left = subflow(graph(exclaim), name="left", inputs={"word": "hi"})
right = subflow(graph(exclaim), name="right", inputs={"word": "bye"})


@step
def both(left: str, right: str) -> str:
    RAN.append("both")
    return f"{left} {right}"


def test_subflow_steps_are_stored_by_path_and_not_run_again() -> None:
    store = MemoryStore()
    RAN.clear()
    result = virtual(arun, graph(both), store=store, run_id="job")
    assert result.output == "HI! BYE!"
    assert {"left/shout", "left/exclaim", "right/shout", "right/exclaim", "left",
            "right", "both"} <= stored_paths(store)
    for k in range(1, 7):
        store = StopAfter(k)
        with pytest.raises((Stop, BaseExceptionGroup)):
            virtual(arun, graph(both), store=store, run_id="job")
        committed = stored_paths(store)
        seen: list[str] = []
        resumed = virtual(aresume, graph(both), "job", store=store,
                          on_event=lambda e, seen=seen: seen.append(e.span.path)
                          if e.kind == "started" else None)
        assert resumed.output == "HI! BYE!"
        assert not set(seen) & committed, (k, seen, committed)


# --- races ------------------------------------------------------------------------------


@step
async def fast() -> str:
    await trio.sleep(1)
    RAN.append("fast")
    return "fast"


@step
async def slow() -> str:
    await trio.sleep(5)
    RAN.append("slow")
    return "slow"


data = race(fast, slow, name="data")


@step
async def after_race(data: str) -> str:
    await trio.sleep(1)
    RAN.append("after_race")
    return data + "!"


@step
async def slow_other() -> int:
    await trio.sleep(20)
    return 1


@step
def race_total(after_race: str, slow_other: int) -> str:
    return f"{after_race}{slow_other}"


def test_a_stored_winner_settles_the_race_and_no_contestant_runs_again() -> None:
    RAN.clear()
    store, resumed = stop_then_resume(graph(race_total), 2)
    assert "data" in stored_paths(store) or "fast" in stored_paths(store)
    assert resumed.output == "fast!1"
    assert RAN.count("fast") == 1 and "slow" not in RAN
    assert RAN.count("after_race") == 1


# --- retries, when= skips, Outcome consumers -------------------------------------------

TRIES: list[int] = []


@step(retries=3, backoff=0.1)
def flaky() -> int:
    TRIES.append(1)
    if len(TRIES) < 3:
        raise ConnectionError("try again")
    return 7


@step
async def later(flaky: int) -> int:
    await trio.sleep(10)
    return flaky * 2


def test_a_retried_step_is_stored_with_its_attempts_and_not_retried_on_resume() -> None:
    TRIES.clear()
    store, resumed = stop_then_resume(graph(later), 1)
    assert resumed.output == 14
    assert len(TRIES) == 3
    stored = store.load_run("job")
    assert stored is not None and stored.steps["flaky"].attempts == 3


@step
def check() -> bool:
    RAN.append("check")
    return False


@step(when=lambda check: check)
def only_if(check: bool) -> str:
    RAN.append("only_if")
    return "ran"


@step
async def waits() -> int:
    await trio.sleep(5)
    return 1


@step
def tail(only_if: str | None, waits: int) -> str:
    return f"{only_if}/{waits}"


def test_a_when_skip_is_decided_again_on_resume_and_the_step_still_skips() -> None:
    RAN.clear()
    _, resumed = stop_then_resume(graph(tail), 1)
    assert resumed.output == "None/1"
    assert resumed.spans["only_if"].status == "skipped"
    assert "only_if" not in RAN and RAN.count("check") == 1


# Both async, so both settle in the run's first turn and land in its first commit: as
# plain `def`s they ran in worker threads, and a commit holding only `breaks` (whichever
# thread finished first) left `fine` uncommitted at the stop, to run again on resume.
@step
async def breaks() -> int:
    RAN.append("breaks")
    raise ValueError("boom")


@step
async def fine() -> int:
    RAN.append("fine")
    return 2


@step
async def tolerant(breaks: Outcome[int], fine: int) -> str:
    await trio.sleep(1)
    RAN.append("tolerant")
    return "value" if isinstance(breaks, Value) else f"error: {breaks.error}"


@step
async def final(tolerant: str) -> str:
    await trio.sleep(1)
    return tolerant.upper()


def test_an_outcome_consumer_is_stored_and_its_failed_upstream_is_not_needed_again() -> None:
    store = MemoryStore()
    RAN.clear()
    whole = virtual(arun, graph(final), store=store, run_id="whole")
    assert whole.output == "ERROR: BOOM"
    for k in range(1, 3):
        RAN.clear()
        store, resumed = stop_then_resume(graph(final), k)
        assert resumed.output == "ERROR: BOOM", k
        assert RAN.count("tolerant") == 1 and RAN.count("fine") == 1, (k, RAN)
        assert "breaks" in resumed.failures or "tolerant" in stored_paths(store)


# --- checkpoint=False -------------------------------------------------------------------


class Client:
    """A connection-like object: no data shape, so a store cannot hold it."""

    def __init__(self) -> None:
        self.opened = True

    def get(self, key: str) -> str:
        return f"got {key}"


@step(checkpoint=False)
def client() -> Client:
    RAN.append("client")
    return Client()


@step
def first_call(client: Client) -> str:
    RAN.append("first_call")
    return client.get("a")


@step
async def second_call(client: Client, first_call: str) -> str:
    await trio.sleep(1)
    RAN.append("second_call")
    return first_call + " " + client.get("b")


def test_a_checkpoint_false_step_is_not_stored_and_runs_again_on_resume() -> None:
    RAN.clear()
    store, resumed = stop_then_resume(graph(second_call), 1)
    assert resumed.output == "got a got b"
    assert "client" not in stored_paths(store)
    assert RAN.count("client") == 2  # once per process: its output lived in memory
    assert RAN.count("first_call") == 1 and RAN.count("second_call") == 1


def test_without_checkpoint_false_the_client_is_one_graph_error_with_the_fix() -> None:
    @step(name="client")
    def stored_client() -> Client:
        return Client()

    @step
    def use(client: Annotated[Client, stored_client]) -> str:
        return "x"

    with pytest.raises(GraphError, match=r"step\(checkpoint=False\)") as info:
        virtual(arun, graph(use), store=MemoryStore())
    assert "step 'client': a store keeps every output as JSON" in str(info.value)
    assert virtual(arun, graph(second_call), store=MemoryStore()).output == "got a got b"


# --- idempotency keys -------------------------------------------------------------------

KEYS: list[str] = []


@step(retries=2, backoff=0.1)
def charge() -> str:
    KEYS.append(current_span().idempotency_key)
    if KEYS.count("order-7/charge") == 1:
        raise ConnectionError("payment provider timed out")
    return "charged"


@step
async def slow_step() -> int:
    await trio.sleep(5)
    return 1


@step
async def inner_key() -> str:
    KEYS.append(current_span().idempotency_key)
    return "k"


sub = subflow(graph(inner_key), name="sub")


@step
async def keyed_item(x: Annotated[int, each(twenty)]) -> str:
    return current_span().idempotency_key


@step
def receipt(charge: str, slow_step: int, sub: str, keyed_item: list[str]) -> list[str]:
    return keyed_item[:2]


def test_the_idempotency_key_is_run_id_and_path_across_attempts_and_resumes() -> None:
    KEYS.clear()
    store = StopAfter(1)
    with pytest.raises((Stop, BaseExceptionGroup)):
        virtual(arun, graph(receipt), store=store, run_id="order-7",
                overrides={"twenty": [1, 2]})
    # the stop came before `charge` committed (or right after): resume runs the rest
    result = virtual(aresume, graph(receipt), "order-7", store=store,
                     overrides={"twenty": [1, 2]})
    assert result.output == ["order-7/keyed_item[0]", "order-7/keyed_item[1]"]
    assert set(KEYS) <= {"order-7/charge", "order-7/sub/inner_key"}
    assert KEYS.count("order-7/charge") >= 2  # the failed attempt and the retry: one key
    assert "order-7/sub/inner_key" in KEYS


def test_a_step_killed_before_its_commit_runs_again_with_the_same_key() -> None:
    seen: list[str] = []

    @step
    async def side_effect() -> str:
        seen.append(current_span().idempotency_key)
        await trio.sleep(1)
        return "done"

    @step
    async def quick() -> int:
        return 1

    @step
    def end(side_effect: Annotated[str, side_effect], quick: Annotated[int, quick]) -> str:
        return side_effect

    _, resumed = stop_then_resume(graph(end), 1)  # `quick` committed, `side_effect` not
    assert resumed.output == "done"
    assert seen == ["job/side_effect", "job/side_effect"]


def test_an_interrupted_run_is_continued_by_run_with_the_same_id() -> None:
    RAN.clear()
    store = StopAfter(5)
    with pytest.raises((Stop, BaseExceptionGroup)):
        virtual(arun, graph(added), store=store, run_id="job")
    RAN.clear()
    result = virtual(arun, graph(added), store=store, run_id="job")
    assert result.output == sum(x**3 for x in range(20))
    assert "twenty" not in RAN and "added" in RAN
    assert len(RAN) < 21  # the committed items did not run again


def test_a_failed_run_resumes_from_its_failed_step() -> None:
    calls: list[str] = []

    @step
    def good() -> int:
        calls.append("good")
        return 1

    @step
    def bad(good: Annotated[int, good]) -> int:
        calls.append("bad")
        if calls.count("bad") == 1:
            raise RuntimeError("first time")
        return good + 1

    store = MemoryStore()
    with pytest.raises(RunFailed):
        virtual(arun, graph(bad), store=store, run_id="job")
    result = virtual(aresume, graph(bad), "job", store=store)
    assert result.output == 2
    assert calls == ["good", "bad", "bad"]


# --- stored rows are not rewritten on resume -------------------------------------------


def test_a_stale_step_stays_stale_across_resumes_and_keeps_its_attempts() -> None:
    """A resumed run reads stored rows back; it must not write them again (that would
    replace the row's code hash by the current one and its attempts by 1)."""
    store = MemoryStore()
    tries: list[int] = []

    @step(name="fetch", retries=2, backoff=0.1)
    def fetch_v1() -> int:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("again")
        return 1

    @step(name="wait_here")
    def wait_v1(fetch: Annotated[int, fetch_v1]) -> int:
        raise RuntimeError("not yet")

    with pytest.raises(RunFailed):
        virtual(arun, graph(wait_v1), store=store, run_id="job")

    @step(name="fetch")
    def fetch_v2() -> int:
        return 2  # changed code

    @step(name="wait_here")
    def wait_v2(fetch: Annotated[int, fetch_v2]) -> int:
        raise RuntimeError("still not")

    for _ in range(2):
        with pytest.raises(RunFailed) as info:
            virtual(aresume, graph(wait_v2), "job", store=store)
        assert info.value.result.stale == ["fetch"]
    stored = store.load_run("job")
    assert stored is not None and stored.steps["fetch"].attempts == 2
    assert stored.steps["fetch"].output_json == "1"


# --- a value that does not serialise at run time ----------------------------------------


@step
def loose() -> dict:  # type: ignore[type-arg]
    return {"when": datetime(2026, 1, 1), "n": 1}  # in a bare dict: not plain JSON data


@step
def keep(loose: dict) -> int:  # type: ignore[type-arg]
    return 1


def test_an_output_that_fails_to_serialise_fails_its_step_with_the_data_path() -> None:
    with pytest.raises(RunFailed, match=r"loose.*when") as info:
        virtual(arun, graph(keep), store=MemoryStore(), run_id="job")
    assert "when" in str(info.value)
