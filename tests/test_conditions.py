"""Conditional steps (``when=``), skipped upstreams, ``step_span(default=)`` and ``after=``.

DESIGN §3 rows *order without data*, *conditional step* and *skipped upstream*, plus the
Timbal seed scenario validate → process_valid | process_invalid → merge_results.
Every step here is defined inside its test (names stay local), wired to step objects
with ``Annotated`` or found by name among the steps given to ``graph()``.
"""

from typing import Annotated, Any

import pytest
import trio
import trio.testing

from flowfn import (
    Error,
    Event,
    GraphError,
    Outcome,
    RunFailed,
    graph,
    run,
    step,
    step_span,
)

# --- when= ------------------------------------------------------------------------------


def test_false_predicate_skips_the_step_with_a_reason(flow_run):
    ran: list[str] = []

    @step
    async def validate_data() -> dict[str, bool]:
        return {"valid": False}

    @step(when=lambda validate_data: validate_data["valid"])
    async def process(checked: Annotated[dict[str, bool], validate_data]) -> str:
        ran.append("process")
        return "processed"

    result = flow_run(graph(process))
    span = result.spans["process"]
    assert ran == []
    assert span.status == "skipped"
    assert span.reason == "its when= predicate was false"
    assert span.started is None
    assert result.status == "succeeded"
    assert result.output is None
    with pytest.raises(KeyError, match="skipped"):
        result["process"]


def test_true_predicate_runs_the_step(flow_run):
    @step
    async def validate_data() -> dict[str, bool]:
        return {"valid": True}

    @step(when=lambda validate_data: validate_data["valid"])
    async def process(checked: Annotated[dict[str, bool], validate_data]) -> str:
        return "processed"

    result = flow_run(graph(process))
    assert result.output == "processed"
    assert result.spans["process"].status == "succeeded"
    assert result.spans["process"].reason is None


@pytest.mark.parametrize(("threshold", "expected"), [(3, "succeeded"), (30, "skipped")])
def test_predicate_is_wired_by_its_own_signature_to_steps_and_inputs(
    flow_run, threshold, expected
):
    """The predicate takes a step the function does not use, and a graph input."""
    seen: list[Any] = []

    @step
    async def score() -> int:
        await trio.sleep(2)
        return 10

    def predicate(score, threshold):
        seen.append((score, threshold))
        return score > threshold

    @step(when=predicate)
    async def alert() -> str:
        return "alert!"

    flow = graph(alert, score)
    assert "threshold" in flow.inputs
    result = flow_run(flow, {"threshold": threshold})
    assert seen == [(10, threshold)]
    assert result.spans["alert"].status == expected
    if expected == "succeeded":
        # the predicate's dependency is a dependency of the step: it waited for score
        assert result.spans["alert"].started == 2.0
        assert result["alert"] == "alert!"


def test_predicate_is_evaluated_only_when_its_dependencies_are_ready(flow_run):
    calls: list[float] = []

    @step
    async def slow_flag() -> bool:
        await trio.sleep(5)
        return True

    @step
    async def fast() -> int:
        await trio.sleep(1)
        return 1

    def predicate(slow_flag: bool) -> bool:
        calls.append(trio.current_time())
        return slow_flag

    @step(when=predicate)
    async def guarded(x: Annotated[int, fast]) -> int:
        return x + 1

    result = flow_run(graph(guarded, slow_flag))
    assert calls == [5.0]
    span = result.spans["guarded"]
    assert (span.started, span.ended) == (5.0, 5.0)
    assert result["guarded"] == 2


def test_predicate_with_a_skipped_dependency_skips_the_step(flow_run):
    @step(when=lambda: False)
    async def never() -> bool:
        return True

    @step(when=lambda never: never)
    async def guarded() -> str:
        return "ran"

    result = flow_run(graph(guarded, never))
    span = result.spans["guarded"]
    assert span.status == "skipped"
    assert "'never'" in (span.reason or "")


def test_predicate_raising_fails_the_step_and_the_run(flow_run):
    ran: list[str] = []

    @step
    async def validate_data() -> dict[str, bool]:
        return {}

    @step(when=lambda validate_data: validate_data["valid"])
    async def process(checked: Annotated[dict[str, bool], validate_data]) -> str:
        ran.append("process")
        return "processed"

    result = flow_run(graph(process), expect_failure=True)
    span = result.spans["process"]
    assert ran == []
    assert span.status == "failed"
    assert isinstance(span.error, KeyError)
    assert span.reason is not None and "when=" in span.reason
    assert isinstance(result.failures["process"], KeyError)
    err = result.error
    assert isinstance(err, RunFailed)
    assert isinstance(err.__cause__, KeyError)
    assert "step 'process' failed" in str(err)


def test_predicate_raising_is_an_error_for_an_outcome_consumer(flow_run):
    @step(when=lambda: 1 / 0)
    async def guarded() -> int:
        return 1

    @step
    async def report(r: Annotated[Outcome[int], guarded]) -> str:
        return type(r.error).__name__ if isinstance(r, Error) else "value"

    result = flow_run(graph(report))
    assert result.output == "ZeroDivisionError"
    assert result.spans["guarded"].status == "failed"
    assert "guarded" in result.failures


def test_predicate_raising_emits_a_failed_event(flow_run):
    events: list[Event] = []

    @step(when=lambda: 1 / 0)
    async def guarded() -> int:
        return 1

    @step
    async def report(r: Annotated[Outcome[int], guarded]) -> str:
        return "handled"

    flow_run(graph(report), on_event=events.append)
    assert ("failed", "guarded") in [(e.kind, e.step) for e in events]


def test_input_asked_for_by_a_step_and_its_predicate_is_listed_once(flow_run):
    from flowfn import InputError

    @step(when=lambda threshold: threshold > 0)
    async def alert(threshold: int) -> int:
        return threshold

    with pytest.raises(InputError) as info:
        flow_run(graph(alert))
    assert str(info.value).endswith(
        "threshold: required input missing (asked for by alert)")


def test_skipped_event_is_emitted(flow_run):
    events: list[Event] = []

    @step(when=lambda: False)
    async def guarded() -> int:
        return 1

    flow_run(graph(guarded), on_event=events.append)
    assert [(e.kind, e.step) for e in events] == [("skipped", "guarded")]
    assert events[0].span.reason == "its when= predicate was false"


# --- skipped upstreams --------------------------------------------------------------------


def _skipped_source(ran: list[str]):
    @step(when=lambda: False)
    async def maybe() -> int:
        ran.append("maybe")
        return 7

    return maybe


def test_optional_parameter_receives_none_for_a_skipped_upstream(flow_run):
    ran: list[str] = []
    maybe = _skipped_source(ran)

    @step
    async def consumer(x: Annotated[int | None, maybe]) -> str:
        return f"got {x!r}"

    result = flow_run(graph(consumer))
    assert ran == []
    assert result.output == "got None"
    assert result.spans["consumer"].input == {"x": None}


def test_optional_parameter_receives_the_value_when_the_upstream_ran(flow_run):
    @step(when=lambda: True)
    async def maybe() -> int:
        return 7

    @step
    async def consumer(x: Annotated[int | None, maybe]) -> str:
        return f"got {x!r}"

    assert flow_run(graph(consumer)).output == "got 7"


def test_non_optional_parameter_skips_the_step_naming_the_upstream(flow_run):
    ran: list[str] = []
    maybe = _skipped_source(ran)

    @step
    async def consumer(x: Annotated[int, maybe]) -> str:
        ran.append("consumer")
        return f"got {x!r}"

    @step
    async def further(y: Annotated[str, consumer]) -> str:
        ran.append("further")
        return y

    @step
    async def tolerant(y: Annotated[str | None, further]) -> str:
        return f"tolerant got {y!r}"

    result = flow_run(graph(tolerant))
    assert ran == []
    consumer_span = result.spans["consumer"]
    assert consumer_span.status == "skipped"
    assert "upstream 'maybe' was skipped" in (consumer_span.reason or "")
    further_span = result.spans["further"]
    assert further_span.status == "skipped"
    assert "upstream 'consumer' was skipped" in (further_span.reason or "")
    assert result.output == "tolerant got None"
    assert result.status == "succeeded"


def test_skipped_steps_do_not_count_as_failures(flow_run):
    maybe = _skipped_source([])

    @step
    async def consumer(x: Annotated[int, maybe]) -> int:
        return x

    result = flow_run(graph(consumer))
    assert result.failures == {}
    assert result.status == "succeeded"


def test_mixed_optional_and_required_parameters(flow_run):
    """Optional first, required second: the required one still skips the step."""
    maybe = _skipped_source([])

    @step
    async def present() -> int:
        return 1

    @step
    async def consumer(a: Annotated[int | None, present],
                       b: Annotated[int, maybe]) -> int:
        return 0

    result = flow_run(graph(consumer))
    assert result.spans["consumer"].status == "skipped"
    assert "'maybe'" in (result.spans["consumer"].reason or "")


# --- step_span(name, default=None) ---------------------------------------------------------


def test_step_span_returns_the_default_for_a_skipped_step(flow_run):
    seen: dict[str, Any] = {}

    @step(when=lambda: False)
    async def skipped_one() -> int:
        return 1

    @step
    async def ran_one() -> int:
        return 2

    @step(after=[skipped_one, ran_one])
    async def inspect_them() -> None:
        seen["skipped"] = step_span("skipped_one", default=None)
        seen["sentinel"] = step_span(skipped_one, default="nope")
        seen["ran"] = step_span("ran_one", default=None)
        try:
            step_span("skipped_one")
        except LookupError as exc:
            seen["error"] = str(exc)

    flow_run(graph(inspect_them))
    assert seen["skipped"] is None
    assert seen["sentinel"] == "nope"
    assert seen["ran"] is not None and seen["ran"].output == 2
    assert "default=None" in seen["error"]


def test_step_span_default_in_a_thread_step(flow_run):
    seen: dict[str, Any] = {}

    @step(when=lambda: False)
    def skipped_one() -> int:
        return 1

    @step(after=[skipped_one])
    def inspect_them() -> None:
        seen["skipped"] = step_span("skipped_one", default=None)

    flow_run(graph(inspect_them))
    assert seen == {"skipped": None}


# --- after= -----------------------------------------------------------------------------------


def test_after_orders_steps_without_data(flow_run):
    @step
    async def init_database() -> None:
        await trio.sleep(2)

    @step
    async def warm_cache() -> str:
        await trio.sleep(3)
        return "warm"

    @step(after=[init_database, "warm_cache"])
    async def process_data() -> str:
        return "done"

    result = flow_run(graph(process_data, warm_cache))
    spans = result.spans
    assert (spans["init_database"].started, spans["init_database"].ended) == (0.0, 2.0)
    assert (spans["warm_cache"].started, spans["warm_cache"].ended) == (0.0, 3.0)
    assert (spans["process_data"].started, spans["process_data"].ended) == (3.0, 3.0)
    assert spans["process_data"].input == {}
    assert result.output == {"process_data": "done", "warm_cache": "warm"}


def test_after_a_single_step_not_in_a_list(flow_run):
    @step
    async def first() -> None:
        await trio.sleep(1)

    @step(after=first)
    async def second() -> str:
        return "ok"

    result = flow_run(graph(second))
    assert result.spans["second"].started == 1.0


def test_after_an_unknown_name_is_a_graph_error():
    @step(after=["init_databse"])
    async def process_data() -> str:
        return "done"

    with pytest.raises(GraphError, match="init_databse"):
        graph(process_data)


def test_after_a_skipped_step_still_runs(flow_run):
    @step(when=lambda: False)
    async def optional_setup() -> None:
        return None

    @step(after=[optional_setup])
    async def main_work() -> str:
        return "done"

    result = flow_run(graph(main_work))
    assert result.output == "done"
    assert result.spans["optional_setup"].status == "skipped"


# --- the Timbal seed scenario -----------------------------------------------------------------


def _timbal_flow(calls: list[str]):
    @step
    async def validate_data(data: dict[str, str]) -> dict[str, bool]:
        calls.append("validate_data")
        await trio.sleep(1)
        return {"valid": "@" in data.get("email", "")}

    @step(when=lambda validate_data: validate_data["valid"])
    async def process_valid(data: dict[str, str]) -> str:
        calls.append("process_valid")
        await trio.sleep(2)
        return f"welcome {data['email']}"

    @step(when=lambda validate_data: not validate_data["valid"])
    async def process_invalid(data: dict[str, str]) -> str:
        calls.append("process_invalid")
        await trio.sleep(3)
        return f"rejected {data.get('email')!r}"

    @step
    async def merge_results(
        data: dict[str, str],
        validated: Annotated[dict[str, bool], validate_data],
        valid: Annotated[str | None, process_valid],
        invalid: Annotated[str | None, process_invalid],
    ) -> dict[str, Any]:
        calls.append("merge_results")
        return {"order": data, "validated": validated,
                "processed": valid if valid is not None else invalid}

    return graph(merge_results)


def test_timbal_seed_valid_data(flow_run):
    calls: list[str] = []
    result = flow_run(_timbal_flow(calls), {"data": {"email": "user@example.com"}})
    assert calls == ["validate_data", "process_valid", "merge_results"]
    assert result.output == {
        "order": {"email": "user@example.com"},
        "validated": {"valid": True},
        "processed": "welcome user@example.com",
    }
    spans = result.spans
    assert spans["process_invalid"].status == "skipped"
    assert spans["process_invalid"].reason == "its when= predicate was false"
    assert (spans["process_valid"].started, spans["process_valid"].ended) == (1.0, 3.0)
    assert (spans["merge_results"].started, spans["merge_results"].ended) == (3.0, 3.0)


def test_timbal_seed_invalid_data(flow_run):
    calls: list[str] = []
    result = flow_run(_timbal_flow(calls), {"data": {"email": "nobody"}})
    assert calls == ["validate_data", "process_invalid", "merge_results"]
    assert result.output["processed"] == "rejected 'nobody'"
    assert result.output["validated"] == {"valid": False}
    spans = result.spans
    assert spans["process_valid"].status == "skipped"
    assert (spans["process_invalid"].started, spans["process_invalid"].ended) == (1.0, 4.0)
    assert spans["merge_results"].started == 4.0


@pytest.mark.parametrize(("email", "expected"), [
    ("user@example.com", ("process_valid", "ok user@example.com")),
    ("nobody", ("process_invalid", "bad nobody")),
])
def test_timbal_seed_with_step_span_default(flow_run, email, expected):
    """The seed's own spelling: merge_results orders itself after both branches and asks
    ``step_span(name, default=None)`` which one ran."""

    @step
    def validate_data(data: dict[str, str]) -> dict[str, bool]:
        return {"valid": "@" in data["email"]}

    @step(when=lambda validate_data: validate_data["valid"])
    def process_valid(data: dict[str, str]) -> str:
        return f"ok {data['email']}"

    @step(when=lambda validate_data: not validate_data["valid"])
    def process_invalid(data: dict[str, str]) -> str:
        return f"bad {data['email']}"

    @step(after=[process_valid, process_invalid])
    def merge_results() -> tuple[str, str] | None:
        for name in ("process_valid", "process_invalid"):
            span = step_span(name, default=None)
            if span is not None:
                return name, span.output
        return None

    result = flow_run(graph(merge_results, validate_data), {"data": {"email": email}})
    assert result["merge_results"] == expected


def test_timbal_seed_with_plain_run():
    """The same flow through ``run()`` with a virtual clock of its own."""
    calls: list[str] = []
    clock = trio.testing.MockClock(autojump_threshold=0)
    result = run(_timbal_flow(calls), {"data": {"email": "a@b"}}, clock=clock)
    assert result.output["processed"] == "welcome a@b"
    assert clock.current_time() == 3.0
