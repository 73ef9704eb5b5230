"""``subflow()``: a whole graph as one step (DESIGN §3, nested / parallel sub-workflows).

Everything runs in virtual time (``flow_run``), so overlap and cancellation are checked
on exact clock values. No ``from __future__ import annotations``: local steps are used in
``Annotated[...]`` metadata, which lazy annotations could not resolve.
"""

from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    Graph,
    GraphError,
    RunResult,
    Span,
    StepTimeout,
    graph,
    step,
    stub,
    subflow,
)


@step
async def shout(text: str) -> str:
    await trio.sleep(1)
    return text.upper()


@step
async def decorate(shout: str, suffix: str = "!") -> str:
    await trio.sleep(1)
    return shout + suffix


BRANCH = graph(decorate)  # text -> shout -> decorate: 2 s, inputs text and suffix="!"


def all_spans(spans: dict[str, Span]) -> list[Span]:
    out: list[Span] = []
    for s in spans.values():
        out.append(s)
        out.extend(all_spans(s.children))
    return out


def overlap(a: Span, b: Span) -> bool:
    assert None not in (a.started, a.ended, b.started, b.ended)
    return a.started < b.ended and b.started < a.ended  # type: ignore[operator]


def two_branches() -> Graph:
    b1 = subflow(BRANCH, name="branch1", inputs={"text": "a"})
    b2 = subflow(BRANCH, name="branch2", inputs={"text": "b"})

    @step
    def both(x: Annotated[str, b1], y: Annotated[str, b2]) -> str:
        return x + y

    return graph(both)


# --- inputs ---------------------------------------------------------------------------------


def test_inputs_come_from_parent_inputs_of_the_same_name(flow_run: Any) -> None:
    flow = graph(subflow(BRANCH, name="branch1"))
    assert set(flow.inputs) == {"text", "suffix"}
    assert flow.inputs["suffix"].default == "!"
    assert flow_run(flow, {"text": "hi"}).output == "HI!"
    assert flow_run(flow, {"text": "hi", "suffix": "?"}).output == "HI?"


def test_parent_input_shared_with_a_parent_step(flow_run: Any) -> None:
    @step
    def echo(text: str) -> str:
        return text

    sub = subflow(BRANCH, name="branch1")

    @step
    def pair(a: Annotated[str, echo], b: Annotated[str, sub]) -> tuple[str, str]:
        return a, b

    flow = graph(pair)
    assert set(flow.inputs) == {"text", "suffix"}  # one `text` for both
    assert flow_run(flow, {"text": "hi"}).output == ("hi", "HI!")


def test_fixed_values(flow_run: Any) -> None:
    flow = graph(subflow(BRANCH, name="branch1", inputs={"text": "fixed"}))
    assert set(flow.inputs) == {"suffix"}
    result = flow_run(flow)
    assert result.output == "FIXED!"
    assert result.spans["branch1"].children["shout"].input == {"text": "fixed"}


def test_inputs_wired_to_parent_steps(flow_run: Any, flow_clock: Any) -> None:
    @step
    async def greeting() -> str:
        await trio.sleep(1)
        return "hey"

    flow = graph(subflow(BRANCH, name="branch1", inputs={"text": greeting}))
    assert set(flow.inputs) == {"suffix"}
    result = flow_run(flow)
    assert result.output == "HEY!"
    assert result.spans["branch1"].started == 1  # after greeting
    assert flow_clock.current_time() == 3


def test_wired_input_is_type_checked() -> None:
    @step
    def number() -> int:
        return 1

    with pytest.raises(GraphError, match="text"):
        graph(subflow(BRANCH, name="branch1", inputs={"text": number}))


def test_unknown_input_lists_the_known_ones() -> None:
    with pytest.raises(TypeError) as info:
        subflow(BRANCH, name="branch1", inputs={"txt": "x"})
    assert str(info.value) == (
        "subflow 'branch1': inputs= names 'txt', which graph(decorate) does not take. "
        "Its inputs: suffix, text."
    )


def test_sub_inputs_are_converted_to_their_types(flow_run: Any) -> None:
    @step
    def double(n: int) -> int:
        return 2 * n

    flow = graph(subflow(graph(double), name="calc", inputs={"n": "21"}))
    assert flow_run(flow).output == 42


# --- output, branches, spans --------------------------------------------------------------


def test_output_is_the_sub_graphs_output(flow_run: Any) -> None:
    @step
    def a() -> int:
        return 1

    @step
    def b() -> int:
        return 2

    multi = subflow(graph(a, b), name="multi")  # two targets: a dict
    assert flow_run(graph(multi)).output == {"a": 1, "b": 2}


def test_same_graph_as_two_independent_branches(flow_run: Any, flow_clock: Any) -> None:
    flow = two_branches()
    result = flow_run(flow)
    assert result.output == "A!B!"
    b1, b2 = result.spans["branch1"], result.spans["branch2"]
    assert overlap(b1, b2)
    assert (b1.started, b1.ended, b2.started, b2.ended) == (0, 2, 0, 2)
    assert flow_clock.current_time() == 2  # in parallel, not 4
    assert b1.children["shout"].output == "A"
    assert b2.children["shout"].output == "B"
    assert b1.children["shout"] is not b2.children["shout"]


def test_two_branches_then_a_stub(flow_run: Any) -> None:
    b1 = subflow(BRANCH, name="branch1", inputs={"text": "a"})
    b2 = subflow(BRANCH, name="branch2", inputs={"text": "b"})
    done = stub("continue_processing", after=[b1, b2])
    result = flow_run(graph(done))
    assert result.output is None
    assert result.spans["continue_processing"].started == 2
    assert result["branch1"] == "A!" and result["branch2"] == "B!"


def test_child_spans_hang_under_the_subflow(flow_run: Any) -> None:
    result = flow_run(two_branches())
    children = result.spans["branch1"].children
    assert list(children) == ["shout", "decorate"]
    assert [c.path for c in children.values()] == ["branch1/shout", "branch1/decorate"]
    assert all(c.status == "succeeded" for c in children.values())
    assert (children["shout"].started, children["shout"].ended) == (0, 1)
    assert (children["decorate"].started, children["decorate"].ended) == (1, 2)
    assert result.span("branch1/decorate") is children["decorate"]
    assert "shout" not in result.spans  # only the top level at the top


def test_nesting_twelve_levels(flow_run: Any, flow_clock: Any) -> None:
    flow = BRANCH
    for level in range(12):
        flow = graph(subflow(flow, name=f"level{level}"))
    result = flow_run(flow, {"text": "deep"})
    assert result.output == "DEEP!"
    assert flow_clock.current_time() == 2
    path = "/".join(f"level{i}" for i in reversed(range(12)))
    span = result.span(f"{path}/shout")
    assert span.path == f"{path}/shout"
    assert span.output == "DEEP"
    assert len(all_spans(result.spans)) == 12 + 2


def test_failure_deep_inside_names_the_full_path(flow_run: Any) -> None:
    flow = BRANCH
    for level in range(10):
        flow = graph(subflow(flow, name=f"level{level}"))
    path = "/".join(f"level{i}" for i in reversed(range(10))) + "/shout"
    result = flow_run(flow, {"text": "x"}, overrides={path: ValueError("boom")},
                      expect_failure=True)
    assert str(result.error).splitlines()[0] == (
        f"step '{path}' failed on attempt 1: ValueError: boom"
    )
    assert isinstance(result.error.__cause__, ValueError)
    assert set(result.failures) == {path}


# --- failures and cancellation ---------------------------------------------------------------


def test_failure_path_names_the_branch(flow_run: Any, flow_clock: Any) -> None:
    result = flow_run(two_branches(), overrides={"branch1/shout": ValueError("boom")},
                      expect_failure=True)
    err = result.error
    assert str(err).splitlines()[0] == "step 'branch1/shout' failed on attempt 1: ValueError: boom"
    assert err.step == "branch1/shout"
    assert isinstance(err.__cause__, ValueError)
    assert "branch1/shout" in result.failures
    assert result.spans["branch1"].children["shout"].status == "failed"
    # the other branch was running: cancelled, with the reason
    other = result.spans["branch2"].children["shout"]
    assert other.status == "cancelled"
    assert other.reason == "cancelled because step 'branch1/shout' failed"
    assert flow_clock.current_time() == 0


def test_failure_in_a_grandchild_cancels_its_cousins(flow_run: Any, flow_clock: Any) -> None:
    @step
    async def work(delay: float) -> str:
        await trio.sleep(delay)
        return "done"

    @step
    async def crash(delay: float) -> str:
        await trio.sleep(delay)
        raise RuntimeError("grandchild failed")

    inner_ok = graph(subflow(graph(work), name="inner", inputs={"delay": 5}))
    inner_bad = graph(subflow(graph(crash), name="inner", inputs={"delay": 1}))
    left = subflow(inner_bad, name="left")
    right = subflow(inner_ok, name="right")
    late = stub("late", after=[left, right])
    result = flow_run(graph(late), expect_failure=True)
    assert str(result.error).splitlines()[0] == (
        "step 'left/inner/crash' failed on attempt 1: RuntimeError: grandchild failed"
    )
    assert flow_clock.current_time() == 1  # not 5: the cousin did not run to its end
    cousin = result.span("right/inner/work")
    assert cousin.status == "cancelled"
    assert cousin.reason == "cancelled because step 'left/inner/crash' failed"
    assert result.span("right/inner").status == "cancelled"
    assert result.spans["right"].status == "cancelled"
    assert result.spans["late"].status == "cancelled"
    assert not [s.path for s in all_spans(result.spans) if s.status in ("pending", "running")]


def nested_slow_flow(timeout: float | None = 1.5) -> Graph:
    """outer (timeout) > inner > {slow_a -> after_a, slow_b}; the slow steps take 10 s."""

    @step
    async def slow_a() -> str:
        await trio.sleep(10)
        return "a"

    @step
    async def slow_b() -> str:
        await trio.sleep(10)
        return "b"

    @step
    async def after_a(a: Annotated[str, slow_a]) -> str:
        return a

    inner = subflow(graph(after_a, slow_b), name="inner")
    return graph(subflow(graph(inner), name="outer", timeout=timeout))


def test_timeout_on_a_subflow_cancels_its_whole_subtree(flow_run: Any, flow_clock: Any) -> None:
    result = flow_run(nested_slow_flow(), expect_failure=True)
    assert flow_clock.current_time() == 1.5
    assert isinstance(result.error.__cause__, StepTimeout)
    assert str(result.error).splitlines()[0] == (
        "step 'outer' failed on attempt 1: StepTimeout: step 'outer' timed out after 1.5s "
        "(attempt 1)"
    )
    subtree = all_spans(result.spans["outer"].children)
    assert {s.path: s.status for s in subtree} == {
        "outer/inner": "cancelled",
        "outer/inner/slow_a": "cancelled",
        "outer/inner/slow_b": "cancelled",
        "outer/inner/after_a": "cancelled",
    }
    assert result.span("outer/inner/after_a").started is None  # never started
    assert result.span("outer/inner/slow_a").ended == 1.5


def test_cancelled_subflow_span_records_its_end_and_event(flow_run: Any) -> None:
    # Every span that started and was cancelled has `ended` and a "cancelled" event —
    # subflow spans too, not only the leaf steps.
    events: list[tuple[str, str, float]] = []
    result = flow_run(nested_slow_flow(), expect_failure=True,
                      on_event=lambda e: events.append((e.kind, e.step, e.time)))
    started = [s for s in all_spans(result.spans["outer"].children) if s.started is not None]
    assert {s.path: s.ended for s in started} == {
        "outer/inner": 1.5, "outer/inner/slow_a": 1.5, "outer/inner/slow_b": 1.5}
    assert ("cancelled", "outer/inner", 1.5) in events


def test_steps_cancelled_by_a_subflow_timeout_say_why(flow_run: Any) -> None:
    result = flow_run(nested_slow_flow(), expect_failure=True)
    reason = result.span("outer/inner/slow_a").reason or ""
    assert "'outer'" in reason and "timed out" in reason, reason


# --- step options apply to the subflow as a whole -----------------------------------------------


def test_timeout_with_on_timeout_returns_the_default(flow_run: Any) -> None:
    sub = subflow(BRANCH, name="branch1", inputs={"text": "x"}, timeout=1.5,
                  on_timeout="fallback")
    result = flow_run(graph(sub))
    assert result.output == "fallback"
    assert result.spans["branch1"].children["decorate"].status == "cancelled"


def test_retries_rerun_the_whole_subflow(flow_run: Any, flow_clock: Any) -> None:
    calls: list[float] = []

    @step
    async def first() -> int:
        await trio.sleep(1)
        return 1

    @step
    async def flaky(one: Annotated[int, first]) -> int:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise ConnectionError("try again")
        return one + 1

    sub = subflow(graph(flaky), name="sub", retries=2, backoff=0.5)
    result = flow_run(graph(sub))
    assert result.output == 2
    assert result.spans["sub"].attempts == 2
    assert calls == [1, 2.5]  # the second attempt re-ran `first` too (1 + 0.5 + 1)
    assert flow_clock.current_time() == 2.5


def test_retry_on_sees_the_inner_steps_own_exception(flow_run: Any) -> None:
    """A subflow fails with its failing step's exception, so retry_on= filters on it."""
    calls: list[str] = []

    @step
    async def flaky_fetch() -> str:
        calls.append("fetch")
        if len(calls) == 1:
            raise ConnectionError("reset by peer")
        raise KeyError("no such user")

    sub = subflow(graph(flaky_fetch), name="sub", retries=3, retry_on=(ConnectionError,))
    result = flow_run(graph(sub), expect_failure=True)
    assert calls == ["fetch", "fetch"]  # retried the ConnectionError, not the KeyError
    span = result.spans["sub"]
    assert span.attempts == 2
    assert isinstance(span.error, KeyError)
    assert span.reason == "step 'sub/flaky_fetch' failed"
    assert str(result.error).startswith("step 'sub/flaky_fetch' failed on attempt 1: KeyError")


def test_when_false_skips_the_subflow(flow_run: Any) -> None:
    sub = subflow(BRANCH, name="branch1", inputs={"text": "x"},
                  when=lambda enabled: enabled)
    result = flow_run(graph(sub), {"enabled": False})
    span = result.spans["branch1"]
    assert span.status == "skipped"
    assert span.reason == "its when= predicate was false"
    assert not [c for c in all_spans(span.children) if c.status == "succeeded"]
    assert flow_run(graph(sub), {"enabled": True}).output == "X!"


def test_limit_serialises_subflows(flow_run: Any, flow_clock: Any) -> None:
    b1 = subflow(BRANCH, name="branch1", inputs={"text": "a"}, limit="one")
    b2 = subflow(BRANCH, name="branch2", inputs={"text": "b"}, limit="one")
    result = flow_run(graph(b1, b2), limits={"one": 1})
    assert result.output == {"branch1": "A!", "branch2": "B!"}
    assert flow_clock.current_time() == 4
    assert not overlap(result.spans["branch1"], result.spans["branch2"])


def test_after_orders_the_subflow(flow_run: Any) -> None:
    @step
    async def prepare() -> None:
        await trio.sleep(3)

    sub = subflow(BRANCH, name="branch1", inputs={"text": "a"}, after=[prepare])
    result = flow_run(graph(sub))
    assert result.spans["branch1"].started == 3
    assert result.spans["branch1"].children["shout"].started == 3


# --- overrides reach inside -----------------------------------------------------------------


def test_overrides_reach_inside_one_branch_only(flow_run: Any) -> None:
    result = flow_run(two_branches(), overrides={"branch1/shout": "X"})
    assert result.output == "X!B!"
    assert result.spans["branch2"].children["shout"].output == "B"


def test_override_inside_by_function(flow_run: Any) -> None:
    result = flow_run(two_branches(),
                      overrides={"branch2/decorate": lambda shout, suffix: shout + "?"})
    assert result.output == "A!B?"


def test_override_naming_no_inner_step_is_a_graph_error(flow_run: Any) -> None:
    with pytest.raises(GraphError) as info:
        flow_run(two_branches(), overrides={"branch1/shuot": "X"})
    assert "Did you mean 'branch1/shout'?" in str(info.value)


def test_overrides_do_not_leak_between_runs(flow_run: Any) -> None:
    flow = two_branches()
    assert flow_run(flow, overrides={"branch1/shout": "X"}).output == "X!B!"
    assert flow_run(flow).output == "A!B!"


def test_result_lookup_by_path(flow_run: Any) -> None:
    result: RunResult = flow_run(two_branches())
    assert result["branch2/shout"] == "B"
    with pytest.raises(KeyError):
        result.span("branch3/shout")
