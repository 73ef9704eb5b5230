"""OpenTelemetry: a span per run, a child span per step attempt, user spans under those.

The SDK's in-memory exporter collects the spans. The global tracer provider is swapped
in per test with ``monkeypatch`` (and taken out after), so no other test pays for
tracing. Until the scheduler calls the observers, the observer is driven directly,
inside trio tasks and worker threads as the scheduler will; the end-to-end tests
through ``run()`` wait for that wiring.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowfn import RunFailed, Span, current_span, each, graph, run, step, subflow
from flowfn._observe import observers
from flowfn.otel import TracingObserver


class Traced:
    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter
        self.tracer = provider.get_tracer("app")

    def spans(self) -> dict[str, ReadableSpan]:
        return {s.name: s for s in self.exporter.get_finished_spans()}

    def observer(self) -> TracingObserver:
        (found,) = [o for o in observers() if isinstance(o, TracingObserver)]
        return found


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield Traced(provider, exporter)
    provider.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


# --- when the observer is active -------------------------------------------------------


def test_inactive_without_an_sdk_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # the API's proxy: not configured
    assert not [o for o in observers() if isinstance(o, TracingObserver)]
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", trace.NoOpTracerProvider())
    assert not [o for o in observers() if isinstance(o, TracingObserver)]


def test_active_with_an_sdk_provider(traced: Traced) -> None:
    assert traced.observer().provider is traced.provider
    assert traced.observer() is traced.observer()  # made once per provider


# --- driving the observer as the scheduler does ------------------------------------------


def test_spans_nest_run_step_and_what_the_step_opens(traced: Traced) -> None:
    observer, tracer = traced.observer(), traced.tracer

    def in_thread() -> None:
        with tracer.start_as_current_span("query in a thread"):
            pass

    async def attempt(span: Span) -> None:
        with observer.attempt(span, 1, "r1"):
            with tracer.start_as_current_span(f"call in {span.path}"):
                await trio.sleep(0)
            await trio.to_thread.run_sync(in_thread) if span.name == "load" else None

    async def main() -> None:
        with observer.run("etl", "r1"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt, Span("extract", "extract"))
                nursery.start_soon(attempt, Span("load", "load"))

    trio.run(main)
    spans = traced.spans()
    root = spans["run etl"]
    assert parent_of(root) is None
    assert dict(root.attributes or {}) == {"flowfn.run_id": "r1", "flowfn.graph": "etl",
                                           "flowfn.status": "succeeded"}
    for name in ("extract", "load"):
        assert parent_of(spans[name]) == span_id(root)
        assert parent_of(spans[f"call in {name}"]) == span_id(spans[name])
        assert dict(spans[name].attributes or {}) == {
            "flowfn.run_id": "r1", "flowfn.path": name, "flowfn.attempt": 1,
            "flowfn.status": "succeeded"}
    assert parent_of(spans["query in a thread"]) == span_id(spans["load"])


def test_parents_follow_paths_not_the_task_that_started_a_step(traced: Traced) -> None:
    """A map item under its map, a sub-workflow's step under the sub-workflow — even
    when started from another step's task; an item without a map span under the run."""
    observer = traced.observer()

    async def main() -> None:
        with observer.run("g", "r2"):
            with (observer.attempt(Span("branch", "branch"), 1, "r2"),
                  observer.attempt(Span("fetch", "other"), 1, "r2"),  # unrelated, open
                  observer.attempt(Span("fetch[0]", "branch/fetch[0]"), 1, "r2")):
                pass
            with observer.attempt(Span("items[3]", "items[3]"), 1, "r2"):
                pass

    trio.run(main)
    spans = traced.spans()
    assert parent_of(spans["fetch[0]"]) == span_id(spans["branch"])
    assert parent_of(spans["fetch"]) == span_id(spans["run g"])
    assert parent_of(spans["items[3]"]) == span_id(spans["run g"])


def test_a_failed_attempt_has_an_error_status(traced: Traced) -> None:
    observer = traced.observer()

    async def main() -> None:
        with observer.run("g", "r3"):
            span = Span("charge", "charge")
            span.user_status = "gold"
            for attempt in (1, 2):
                with pytest.raises(ValueError), observer.attempt(span, attempt, "r3"):
                    raise ValueError(f"declined {attempt}")

    trio.run(main)
    failed = [s for s in traced.exporter.get_finished_spans() if s.name == "charge"]
    assert [s.attributes["flowfn.attempt"] for s in failed if s.attributes] == [1, 2]
    last = failed[-1]
    assert last.status.status_code is StatusCode.ERROR
    assert last.status.description == "ValueError: declined 2"
    assert last.attributes is not None and last.attributes["flowfn.status"] == "failed"
    assert last.attributes["flowfn.user_status"] == "gold"
    assert [e.name for e in last.events] == ["exception"]


def test_cancelled_attempts_and_failed_runs(traced: Traced) -> None:
    observer = traced.observer()

    async def main() -> None:
        with (trio.move_on_after(1), observer.run("g", "r4"),
              observer.attempt(Span("slow", "slow"), 1, "r4")):
            await trio.sleep(10)
        with pytest.raises(RunFailed), observer.run("h", "r5"):
            raise RunFailed("step 'x' failed", None)  # type: ignore[arg-type]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    spans = traced.spans()
    slow = spans["slow"]
    assert slow.attributes is not None and slow.attributes["flowfn.status"] == "cancelled"
    assert slow.status.status_code is StatusCode.UNSET
    failed = spans["run h"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["flowfn.status"] == "failed"


def test_the_run_span_nests_under_the_callers_span(traced: Traced) -> None:
    observer = traced.observer()

    async def main() -> None:
        with observer.run("g", "r6"):
            pass

    with traced.tracer.start_as_current_span("http request"):
        trio.run(main)  # trio's main task starts with the caller's context
    spans = traced.spans()
    assert parent_of(spans["run g"]) == span_id(spans["http request"])


# --- through run() itself, once the scheduler calls the observers --------------------


def test_run_traces_steps_and_their_own_spans(traced: Traced) -> None:
    tracer = traced.tracer

    @step
    async def fetch() -> list[int]:
        with tracer.start_as_current_span("http get"):
            await trio.sleep(1)
        return [1, 2]

    @step
    def parse(rows: Annotated[list[int], fetch]) -> int:  # runs in a worker thread
        with tracer.start_as_current_span("parse rows"):
            current_span().rows = len(rows)
            return sum(rows)

    result = run(graph(parse), run_id="job-1",
                 clock=trio.testing.MockClock(autojump_threshold=0))
    spans = traced.spans()
    root = spans["run parse"]
    assert root.attributes is not None and root.attributes["flowfn.run_id"] == result.run_id
    assert parent_of(spans["fetch"]) == span_id(root)
    assert parent_of(spans["parse"]) == span_id(root)
    assert parent_of(spans["http get"]) == span_id(spans["fetch"])
    assert parent_of(spans["parse rows"]) == span_id(spans["parse"])
    assert dict(spans["parse"].attributes or {}) == {
        "flowfn.run_id": "job-1", "flowfn.path": "parse", "flowfn.attempt": 1,
        "flowfn.status": "succeeded", "flowfn.rows": 2}


def test_run_traces_retries_maps_and_subflows(traced: Traced) -> None:
    calls: list[int] = []

    @step(retries=1, backoff=0)
    async def flaky() -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return [1, 2]

    @step
    async def double(x: Annotated[int, each(flaky)]) -> int:
        return 2 * x

    branch = subflow(graph(double), name="branch")
    run(graph(branch), clock=trio.testing.MockClock(autojump_threshold=0))
    spans = traced.exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    first, second = by_name["flaky"]
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes is not None and second.attributes["flowfn.attempt"] == 2
    assert parent_of(second) == span_id(by_name["branch"][0])
    item = by_name["double[1]"][0]
    assert item.attributes["flowfn.path"] == "branch/double[1]"
    assert parent_of(item) in {span_id(by_name["branch"][0])} | {
        span_id(s) for s in by_name.get("double", [])}


def test_a_failed_run_is_an_error_span(traced: Traced) -> None:
    @step
    async def boom() -> int:
        raise ValueError("boom")

    with pytest.raises(RunFailed):
        run(graph(boom))
    spans = traced.spans()
    assert spans["run boom"].status.status_code is StatusCode.ERROR
    assert spans["boom"].status.status_code is StatusCode.ERROR
