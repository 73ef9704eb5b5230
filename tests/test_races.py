"""``race(*steps, name=...)``: the first *successful* result wins, losers are cancelled.

DESIGN §3 row *race*; the litestar ``RaceGroup`` seed (fast vs reliable source).
All in virtual time: every start and end is asserted exactly.
"""

from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    Backoff,
    Event,
    GraphError,
    RunFailed,
    StepTimeout,
    graph,
    race,
    step,
)


def contestant(name: str, seconds: float, *, fail: BaseException | None = None,
               log: list[Any] | None = None, cleanup: float = 0, **options: Any):
    """An async step that sleeps ``seconds`` then returns its name (or raises ``fail``).

    Its ``finally`` block logs (name, time) after a shielded ``cleanup`` sleep, so the
    tests can see when a cancelled loser has really finished."""

    async def fn() -> str:
        try:
            await trio.sleep(seconds)
            if fail is not None:
                raise fail
            return name
        finally:
            if cleanup:
                with trio.CancelScope(shield=True):
                    await trio.sleep(cleanup)
            if log is not None:
                log.append(("finally", name, trio.current_time()))

    fn.__name__ = fn.__qualname__ = name
    return step(fn, name=name, **options)


def times(result, *names: str) -> list[tuple[float | None, float | None]]:
    return [(result.spans[n].started, result.spans[n].ended) for n in names]


def test_fast_source_wins_and_reliable_source_is_cancelled(flow_run):
    fast = contestant("fast_source", 1)
    reliable = contestant("reliable_source", 5)
    data = race(fast, reliable, name="data")

    @step
    async def use(d: Annotated[str, data]) -> str:
        return f"got {d}"

    events: list[Event] = []
    result = flow_run(graph(use), on_event=events.append)
    assert result.output == "got fast_source"
    spans = result.spans
    assert spans["data"].winner == "fast_source"
    assert spans["data"].status == "succeeded"
    assert spans["data"].output == "fast_source"
    assert spans["fast_source"].status == "succeeded"
    assert spans["reliable_source"].status == "cancelled"
    assert spans["reliable_source"].reason == "lost the race 'data' to 'fast_source'"
    assert times(result, "data", "fast_source", "reliable_source", "use") == [
        (0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (1.0, 1.0)]
    assert ("cancelled", "reliable_source", 1.0) in [(e.kind, e.step, e.time) for e in events]
    assert result.failures == {}
    assert result.status == "succeeded"


def test_the_slower_source_wins_when_it_is_faster_this_time(flow_run):
    fast = contestant("fast_source", 4)
    reliable = contestant("reliable_source", 2)
    result = flow_run(graph(race(fast, reliable, name="data")))
    assert result.output == "reliable_source"
    assert result.spans["data"].winner == "reliable_source"
    assert result.spans["fast_source"].reason == "lost the race 'data' to 'reliable_source'"
    assert times(result, "data") == [(0.0, 2.0)]


def test_losers_finally_blocks_run_before_dependents_start(flow_run):
    log: list[Any] = []
    fast = contestant("fast", 1, log=log)
    slow = contestant("slow", 10, log=log, cleanup=2)
    slower = contestant("slower", 10, log=log, cleanup=3)
    winner = race(fast, slow, slower, name="winner")

    @step
    async def dependent(w: Annotated[str, winner]) -> str:
        log.append(("dependent", w, trio.current_time()))
        return w

    result = flow_run(graph(dependent))
    assert sorted(log[:3]) == [("finally", "fast", 1.0), ("finally", "slow", 3.0),
                               ("finally", "slower", 4.0)]
    assert log[3] == ("dependent", "fast", 4.0)
    assert result.spans["dependent"].started == 4.0
    assert result.spans["winner"].ended == 4.0


def test_first_finisher_failing_lets_the_other_win(flow_run):
    fast = contestant("fast_source", 1, fail=ConnectionError("fast is down"))
    reliable = contestant("reliable_source", 3)
    result = flow_run(graph(race(fast, reliable, name="data")))
    assert result.status == "succeeded"
    assert result.output == "reliable_source"
    spans = result.spans
    assert spans["data"].winner == "reliable_source"
    assert spans["fast_source"].status == "failed"
    assert isinstance(spans["fast_source"].error, ConnectionError)
    assert spans["reliable_source"].status == "succeeded"
    assert times(result, "data", "fast_source", "reliable_source") == [
        (0.0, 3.0), (0.0, 1.0), (0.0, 3.0)]
    assert isinstance(result.failures.get("fast_source"), ConnectionError)


def test_all_contestants_failing_fails_the_race_with_every_error(flow_run):
    e1, e2, e3 = ValueError("a"), KeyError("b"), ConnectionError("c")
    a = contestant("a", 1, fail=e1)
    b = contestant("b", 2, fail=e2)
    c = contestant("c", 3, fail=e3)
    both = race(a, b, c, name="both")

    @step
    async def after(x: Annotated[str, both]) -> str:
        return x

    result = flow_run(graph(after), expect_failure=True)
    err = result.error
    assert isinstance(err, RunFailed)
    group = err.__cause__
    assert isinstance(group, ExceptionGroup)
    assert sorted(map(id, group.exceptions)) == sorted(map(id, [e1, e2, e3]))
    assert err.step == "both"
    assert "race 'both'" in str(err)
    spans = result.spans
    assert spans["both"].status == "failed"
    assert spans["both"].winner is None
    assert times(result, "both") == [(0.0, 3.0)]
    assert [spans[n].status for n in "abc"] == ["failed"] * 3
    assert spans["after"].status == "cancelled"
    assert spans["after"].reason is not None


def test_race_failure_can_be_consumed_as_an_outcome(flow_run):
    from flowfn import Error, Outcome

    a = contestant("a", 1, fail=ValueError("a"))
    b = contestant("b", 2, fail=ValueError("b"))
    both = race(a, b, name="both")

    @step
    async def after(x: Annotated[Outcome[str], both]) -> int:
        assert isinstance(x, Error)
        return len(x.error.exceptions)

    assert flow_run(graph(after)).output == 2


def test_race_of_races_inner_race_wins(flow_run):
    a = contestant("a", 1)
    b = contestant("b", 2)
    c = contestant("c", 3)
    inner = race(a, b, name="inner")
    outer = race(inner, c, name="outer")
    result = flow_run(graph(outer))
    assert result.output == "a"
    spans = result.spans
    assert spans["outer"].winner == "inner"
    assert spans["inner"].winner == "a"
    assert spans["b"].status == "cancelled"
    assert spans["b"].reason == "lost the race 'inner' to 'a'"
    assert spans["c"].status == "cancelled"
    assert spans["c"].reason == "lost the race 'outer' to 'inner'"
    assert times(result, "outer", "inner", "a", "b", "c") == [(0.0, 1.0)] * 5


def test_race_of_races_outer_contestant_wins(flow_run):
    a = contestant("a", 1)
    b = contestant("b", 2)
    c = contestant("c", 0.5)
    inner = race(a, b, name="inner")
    outer = race(inner, c, name="outer")
    result = flow_run(graph(outer))
    assert result.output == "c"
    spans = result.spans
    assert spans["outer"].winner == "c"
    assert spans["inner"].status == "cancelled"
    assert spans["inner"].reason == "lost the race 'outer' to 'c'"
    assert spans["inner"].winner is None
    for name in ("a", "b"):
        assert spans[name].status == "cancelled"
        assert spans[name].ended == 0.5
        # the contestants of the losing inner race were cancelled by the outer race:
        # their reason must say so, not blame something outside the run
        assert "outside the run" not in (spans[name].reason or "")
        assert "'outer'" in (spans[name].reason or "")
    assert times(result, "outer", "c") == [(0.0, 0.5)] * 2


def test_losing_inner_race_span_has_an_end_time(flow_run):
    a = contestant("a", 1)
    b = contestant("b", 2)
    c = contestant("c", 0.5)
    outer = race(race(a, b, name="inner"), c, name="outer")
    events: list[Event] = []
    result = flow_run(graph(outer), on_event=events.append)
    inner = result.spans["inner"]
    assert inner.status == "cancelled"
    assert (inner.started, inner.ended) == (0.0, 0.5)
    assert ("cancelled", "inner", 0.5) in [(e.kind, e.step, e.time) for e in events]


def test_race_of_races_where_the_inner_race_fails(flow_run):
    a = contestant("a", 1, fail=ValueError("a"))
    b = contestant("b", 2, fail=ValueError("b"))
    c = contestant("c", 3)
    inner = race(a, b, name="inner")
    outer = race(inner, c, name="outer")
    result = flow_run(graph(outer))
    assert result.output == "c"
    assert result.spans["outer"].winner == "c"
    assert result.spans["inner"].status == "failed"
    assert times(result, "outer", "inner", "c") == [(0.0, 3.0), (0.0, 2.0), (0.0, 3.0)]


def test_race_waits_for_the_contestants_upstreams(flow_run):
    @step
    async def query() -> str:
        await trio.sleep(2)
        return "q"

    @step
    async def mirror_a(q: Annotated[str, query]) -> str:
        await trio.sleep(3)
        return f"a:{q}"

    @step
    async def mirror_b(q: Annotated[str, query]) -> str:
        await trio.sleep(1)
        return f"b:{q}"

    result = flow_run(graph(race(mirror_a, mirror_b, name="mirror")))
    assert result.output == "b:q"
    assert times(result, "query", "mirror", "mirror_a", "mirror_b") == [
        (0.0, 2.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0)]


def test_contestant_that_times_out_loses_to_the_other(flow_run):
    fast = contestant("fast", 10, timeout=1)
    reliable = contestant("reliable", 4)
    result = flow_run(graph(race(fast, reliable, name="data")))
    assert result.output == "reliable"
    assert isinstance(result.spans["fast"].error, StepTimeout)
    assert times(result, "data", "fast", "reliable") == [(0.0, 4.0), (0.0, 1.0), (0.0, 4.0)]


def test_contestant_with_retries_can_still_win(flow_run):
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        await trio.sleep(1)
        if len(calls) == 1:
            raise ConnectionError("first try fails")
        return "flaky"

    flaky_step = step(flaky, retries=1, backoff=Backoff(initial=0.5, jitter=0))
    slow = contestant("slow", 5)
    result = flow_run(graph(race(flaky_step, slow, name="data")))
    assert result.output == "flaky"
    assert calls == [0.0, 1.5]
    assert times(result, "data") == [(0.0, 2.5)]


def test_race_output_type_is_checked_at_graph_time():
    a = contestant("a", 1)  # returns str
    b = contestant("b", 2)
    either = race(a, b, name="either")

    @step
    async def needs_int(x: Annotated[int, either]) -> int:
        return x

    with pytest.raises(GraphError, match="'x' expects int, but step 'either' returns str"):
        graph(needs_int)


def test_optional_dependent_of_a_loser_receives_none(flow_run):
    fast = contestant("fast", 1)
    slow = contestant("slow", 2)
    either = race(fast, slow, name="either")

    @step
    async def about_slow(s: Annotated[str | None, slow],
                         w: Annotated[str, either]) -> str:
        return f"{s!r} {w}"

    result = flow_run(graph(about_slow))
    assert result.output == "None fast"


def test_race_cancelled_by_a_failing_sibling(flow_run):
    a = contestant("a", 5)
    b = contestant("b", 6)
    boom = contestant("boom", 1, fail=ValueError("boom"))
    result = flow_run(graph(race(a, b, name="ab"), boom), expect_failure=True)
    spans = result.spans
    for name in ("ab", "a", "b"):
        assert spans[name].status == "cancelled"
        assert spans[name].reason == "cancelled because step 'boom' failed"
        assert spans[name].ended == 1.0, name


def test_default_race_name_and_argument_checks():
    a = contestant("a", 1)
    b = contestant("b", 1)
    assert race(a, b).name == "a_or_b"
    with pytest.raises(TypeError, match="at least two"):
        race(a)
    with pytest.raises(TypeError, match="not one"):
        race(a, lambda: 1)  # type: ignore[arg-type]


def test_a_step_in_two_races_is_a_graph_error():
    a = contestant("a", 1)
    b = contestant("b", 1)
    c = contestant("c", 1)
    r1 = race(a, b, name="r1")
    r2 = race(a, c, name="r2")
    with pytest.raises(GraphError, match="two races"):
        graph(r1, r2)
