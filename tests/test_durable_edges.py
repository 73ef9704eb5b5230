"""Edges of durable runs and human steps found by a review: races and maps with asks,
outputs that do not fit their annotation, reused ids, and misused arguments."""

from typing import Annotated

import pytest
import trio.testing

from flowfn import (
    MemoryStore,
    RunFailed,
    ask,
    each,
    graph,
    race,
    resume,
    run,
    step,
    subflow,
)

question = ask("q", int)


@step
def quick() -> int:
    return 1


quick_or_asked = race(question, quick, name="r")


def test_a_rival_beats_an_unanswered_ask_in_a_race() -> None:
    result = run(graph(quick_or_asked), store=MemoryStore())
    assert (result.status, result.output, result.waiting) == ("succeeded", 1, [])
    assert result.spans["q"].status == "skipped"
    assert result.spans["q"].reason == "lost the race 'r' to 'quick'"


ok = ask("ok", bool)


@step
def item(word: str, ok: bool) -> str:
    return word if ok else "-"


@step
def words() -> list[str]:
    return ["a", "b"]


per = subflow(graph(item), name="per", inputs={"word": each(words)})


def test_an_ask_inside_a_mapped_subflow_waits_and_one_answer_serves_every_item() -> None:
    store = MemoryStore()
    waiting = run(graph(per), store=store, run_id="m")
    assert waiting.status == "waiting"
    assert [f.path for f in waiting.waiting] == ["per[0]/ok", "per[1]/ok"]
    done = resume(graph(per), "m", store=store, answers={"ok": True})
    assert (done.status, done.output) == ("succeeded", ["a", "b"])
    stored = store.load_run("m")
    assert stored is not None and "per[1]/item" in stored.steps  # inner steps are stored


@step
def lie(x: int) -> int:
    return "oops"  # type: ignore[return-value]


def test_an_output_that_contradicts_its_annotation_fails_its_step_with_a_store() -> None:
    with pytest.raises(RunFailed) as info:
        run(graph(lie), {"x": 1}, store=MemoryStore())
    assert str(info.value).splitlines()[0] == (
        "step 'lie' failed on attempt 1: TypeError: step 'lie' returned str 'oops', but its "
        "return annotation says int; a store keeps outputs by their annotation, so fix the "
        "one or the other")


@step
def boom(x: int) -> int:
    raise ValueError("no")


def test_run_with_the_id_of_a_failed_run_raises_and_points_at_resume() -> None:
    store = MemoryStore()
    with pytest.raises(RunFailed):
        run(graph(boom), {"x": 1}, store=store, run_id="f")
    with pytest.raises(RunFailed) as info:
        run(graph(boom), {"x": 1}, store=store, run_id="f")
    assert str(info.value) == ("run 'f' failed before (it is in the store as failed); "
                               "resume(boom, 'f', store=...) runs its failed steps again.")


@step
def with_default(n: int = 5) -> int:
    return n


def test_a_default_given_explicitly_is_the_same_input() -> None:
    store = MemoryStore()
    run(graph(with_default), store=store, run_id="d")
    assert run(graph(with_default), {"n": 5}, store=store, run_id="d").output == 5


@pytest.mark.parametrize(("call", "message"), [
    (lambda: run(graph(quick), store="runs.db"),
     "run(quick, store=...): store= takes a store object, like SQLiteStore('runs.db') or "
     "MemoryStore(); got 'runs.db' (a str)."),
    (lambda: run(graph(quick), store=MemoryStore),
     "run(quick, store=...): store= takes a store object, like SQLiteStore('runs.db') or "
     "MemoryStore(); got the class MemoryStore."),
    (lambda: resume(graph(quick), "r", store="x.db"),
     "resume(quick, 'r', store=...): store= takes a store object, like "
     "SQLiteStore('runs.db') or MemoryStore(); got 'x.db' (a str)."),
    (lambda: resume(graph(quick), "r", store=MemoryStore(), answers=[1]),
     "resume(quick, 'r', answers=[1]): answers take a dict of ask() names to answers, like "
     "{'approve': {'ok': True}}"),
    (lambda: resume(graph(quick), "r", store=MemoryStore(), rerun=5),
     "resume(quick, 'r', rerun=5): rerun takes 'changed', or a list of steps (or their "
     "names)"),
    (lambda: run(graph(quick), clock=5),
     "run(clock=5): clock takes a trio clock, such as "
     "trio.testing.MockClock(autojump_threshold=0), or None"),
    (lambda: run(graph(quick), on_event=5),
     "run(quick, on_event=5): on_event takes a function called with each Event, or None"),
    (lambda: run(graph(quick)).span(5),
     "result.span(5): give a step, or its name or path (like 'fetch', 'fetch[3]' or "
     "'branch/step')"),
    (lambda: ask("a", int, deadline=0.3, on_deadline="many"),
     "ask('a', on_deadline='many') is not a valid answer: on_deadline: invalid value for "
     "type, expected int (got 'many')"),
    (lambda: ask("a", int, on_deadline=3),
     "ask('a', on_deadline=...): on_deadline applies after a deadline; give deadline= too "
     "(a timedelta or seconds)."),
])
def test_misused_arguments_say_what_they_take(call, message) -> None:
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value) == message


def test_on_deadline_is_converted_like_an_answer() -> None:
    late = ask("late", int, deadline=60, on_deadline="7")

    @step
    def use(n: Annotated[int, late]) -> int:
        return n + 1

    result = run(graph(use), clock=trio.testing.MockClock(autojump_threshold=0))
    assert result.output == 8
