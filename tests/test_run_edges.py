"""Run-level edge cases: deadlines that pass while nothing can be cancelled, failures
whose ``Outcome`` consumers never ran, what a failed run's message lists, overrides of
every kind, and definition-time checks of pattern helpers."""

import threading
import time
from typing import Annotated, Any

import pytest
import trio

from flowfn import (
    GraphError,
    InputError,
    Outcome,
    RunFailed,
    each,
    graph,
    race,
    run,
    shell,
    step,
    subflow,
)

# --- the run deadline ---------------------------------------------------------------------------


def test_deadline_passing_during_an_uninterruptible_thread_step_fails_the_run() -> None:
    @step
    def blocking() -> int:
        time.sleep(0.3)  # a thread cannot be interrupted: the run waits for it
        return 1

    @step
    def after(value: Annotated[int, blocking]) -> int:
        return value

    with pytest.raises(RunFailed) as info:
        run(graph(after), timeout=0.05)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert str(info.value) == (
        "run(after) timed out after 0.05s\n"
        "  never started: after"
    )
    spans = info.value.result.spans
    assert spans["blocking"].status == "succeeded"  # it did finish, after the deadline
    assert spans["after"].reason == "never started: cancelled: the run timed out after 0.05s"


@pytest.mark.parametrize("timeout", [0, -5, True])
def test_a_deadline_must_be_positive(timeout: Any) -> None:
    @step
    async def s() -> int:
        return 1

    with pytest.raises(ValueError) as info:
        run(graph(s), timeout=timeout)
    assert str(info.value) == (
        f"run(s, timeout={timeout!r}): the deadline must be a number of seconds > 0, or None "
        "for no deadline."
    )


# --- failures that Outcome parameters were to handle ----------------------------------------


@step
async def charge() -> int:
    raise ValueError("card declined")


def test_a_failure_whose_only_consumer_was_skipped_fails_the_run(flow_run: Any) -> None:
    @step(when=lambda: False)
    async def report(result: Annotated[Outcome[int], charge]) -> str:
        return "handled"

    result = flow_run(graph(report), expect_failure=True)
    assert str(result.error).startswith("step 'charge' failed on attempt 1: ValueError")
    assert result.spans["report"].status == "skipped"


def test_a_failure_consumed_by_a_when_predicate_is_handled(flow_run: Any) -> None:
    def charge_failed(charge: Outcome[int]) -> bool:
        return hasattr(charge, "error")

    @step(when=charge_failed)
    async def refund() -> str:
        return "refunded"

    result = flow_run(graph(refund, charge))
    assert result.output == {"refund": "refunded", "charge": None}
    assert isinstance(result.failures["charge"], ValueError)


def test_one_consumer_receiving_the_failure_is_enough(flow_run: Any) -> None:
    @step(when=lambda: False)
    async def skipped_report(result: Annotated[Outcome[int], charge]) -> str:
        return "never"

    @step
    async def audit(result: Annotated[Outcome[int], charge]) -> str:
        return "audited"

    result = flow_run(graph(skipped_report, audit))
    assert result.output == {"skipped_report": None, "audit": "audited"}


# --- what a failed run lists ------------------------------------------------------------------


def test_race_losers_are_not_listed_as_cancelled_by_the_failure(flow_run: Any) -> None:
    @step
    async def cache() -> str:
        await trio.sleep(1)
        return "cached"

    @step
    async def database() -> str:
        await trio.sleep(5)
        return "fresh"

    data = race(cache, database, name="data")

    @step
    async def pay(value: Annotated[str, data]) -> None:
        await trio.sleep(1)
        raise ValueError("card declined")

    @step
    async def audit() -> None:
        await trio.sleep(10)

    result = flow_run(graph(pay, audit), expect_failure=True)
    assert str(result.error).endswith("cancelled while running: audit")


def test_all_contestants_failing_are_in_failures(flow_run: Any) -> None:
    @step
    async def a() -> int:
        raise ValueError("a down")

    @step
    async def b() -> int:
        raise KeyError("b down")

    result = flow_run(graph(race(a, b, name="data")), expect_failure=True)
    assert set(result.failures) == {"data", "a", "b"}


# --- maps fed item by item, subflows with nothing to output ----------------------------------


def test_a_map_fed_by_a_map_starts_with_its_first_item(flow_run: Any) -> None:
    @step
    async def urls() -> list[int]:
        await trio.sleep(1)
        return [1, 2]

    @step
    async def fetch(u: Annotated[int, each(urls)]) -> int:
        await trio.sleep(u)
        return u

    @step
    async def parse(x: Annotated[int, each(fetch)]) -> int:
        return x

    result = flow_run(graph(parse))
    assert result.output == [1, 2]
    assert result.spans["parse"].started == 2  # when fetch[0] handed over its item


def test_a_subflow_whose_output_step_was_skipped_is_skipped(flow_run: Any) -> None:
    @step(when=lambda: False)
    async def maybe() -> int:
        return 1

    branch = subflow(graph(maybe), name="branch")

    @step
    async def needs(value: Annotated[int, branch]) -> int:
        return value

    result = flow_run(graph(needs))
    assert result.spans["branch"].status == "skipped"
    assert result.spans["branch"].reason == (
        "its output step 'branch/maybe' was skipped (its when= predicate was false)")
    assert result.spans["needs"].status == "skipped"


# --- overrides ---------------------------------------------------------------------------------


def test_an_exception_class_override_is_raised(flow_run: Any) -> None:
    @step
    async def fetch() -> int:
        return 1

    result = flow_run(graph(fetch), overrides={fetch: ConnectionError}, expect_failure=True)
    assert isinstance(result.failures["fetch"], ConnectionError)


def test_a_sync_override_of_a_thread_step_runs_in_a_thread(flow_run: Any) -> None:
    @step
    def load() -> str:
        return "real"

    def fake() -> str:
        return threading.current_thread().name

    result = flow_run(graph(load), overrides={load: fake})
    assert result.output != threading.main_thread().name


# --- pattern helpers check what they can when the flow is defined ----------------------------


def test_shell_placeholders_cannot_format_their_value() -> None:
    with pytest.raises(ValueError) as info:
        shell("printf '%s' {text!r}", name="echo")
    assert str(info.value) == (
        "shell command \"printf '%s' {text!r}\": placeholder {text!r} formats its value, "
        "which would undo its shell quoting. Write {text} and format the value in the step "
        "that produces it."
    )


def test_subflow_fixed_inputs_are_checked_when_it_is_defined() -> None:
    @step
    async def etl(limit: int) -> int:
        return limit

    with pytest.raises(InputError) as info:
        subflow(graph(etl), name="nightly", inputs={"limit": "lots"})
    assert str(info.value) == (
        "1 bad input for subflow 'nightly' (inputs=...)\n"
        "  limit: invalid value for type, expected int (got 'lots')"
    )


def test_one_input_asked_for_with_two_types() -> None:
    @step
    async def double(n: int) -> int:
        return n * 2

    @step
    async def shout(n: str) -> str:
        return n.upper()

    with pytest.raises(GraphError) as info:
        graph(double, shout)
    message = str(info.value)
    assert "parameter 'n' is the graph input 'n', which step 'double' also asks for as " \
        "int, not str." in message
    assert "give both parameters the same annotation, or rename one of them." in message


def test_a_thread_contestant_that_lost_says_it_ran_to_the_end() -> None:
    @step
    async def fast() -> str:
        return "fast"

    @step
    def slow() -> str:
        time.sleep(0.05)  # cannot be interrupted: the race waits for it
        return "slow"

    result = run(graph(race(fast, slow, name="r")))
    assert result.output == "fast"
    span = result.spans["slow"]
    if span.status == "succeeded":  # the thread had started before fast won
        assert span.reason == (
            "lost the race 'r' to 'fast'; it finished before the cancellation reached it")
    else:
        assert span.status == "cancelled"


def test_a_broken_backoff_function_fails_the_step(flow_run: Any) -> None:
    def backoff(attempt: int) -> float:
        raise ZeroDivisionError("oops")

    @step(retries=2, backoff=backoff)
    async def flaky() -> int:
        raise ConnectionError("reset")

    result = flow_run(graph(flaky), expect_failure=True)
    error = result.failures["flaky"]
    assert type(error).__name__ == "BackoffError"
    assert isinstance(error.__cause__, ZeroDivisionError)
