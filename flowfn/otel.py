"""OpenTelemetry tracing of flowfn runs (``pip install "pyflowfn[otel]"``).

Nothing to call: once the application configures an OpenTelemetry SDK tracer provider,
every ``run()`` is a span (``run <graph>``) and every step attempt a child span named after
the step, with the attributes ``flowfn.run_id``, ``flowfn.path``, ``flowfn.attempt`` and
``flowfn.status``. A failed attempt has an error status and the exception as an event.

The step's span is the current OpenTelemetry context while its function runs — in
``async def`` steps, and in ``def`` steps too, since worker threads get a copy of the
step task's context variables — so spans that a step (or a library it calls) opens
nest under it.

Parents are chosen by path, not inherited from whichever task started a step: a step
is started by the task of the step that finished last, whose context has nothing to do
with it. ``branch/shout`` nests under the attempt of ``branch`` (the sub-workflow) and
``fetch[3]`` under ``fetch`` when those have spans of their own, else under the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio
from opentelemetry import context as otel_context
from opentelemetry import trace

from ._errors import exc_line

if TYPE_CHECKING:
    from ._result import Event, Span

__all__ = ["TracingObserver", "tracing_observer"]

_TRACER_NAME = "flowfn"
_PLAIN = (str, bool, int, float)  # attribute values OpenTelemetry accepts as they are


class _RunSpans:
    """The run's span and the step spans open right now, by path."""

    def __init__(self, root: trace.Span) -> None:
        self.root = root
        self.open: dict[str, trace.Span] = {}

    def parent(self, path: str) -> trace.Span:
        """The innermost open span enclosing ``path`` (a map or a sub-workflow), or the
        run's span."""
        while True:
            if path.endswith("]"):
                path = path[: path.rindex("[")]
            elif "/" in path:
                path = path[: path.rindex("/")]
            else:
                return self.root
            found = self.open.get(path)
            if found is not None:
                return found


class TracingObserver:
    """Spans for runs and step attempts, made with ``provider``'s ``"flowfn"`` tracer."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(_TRACER_NAME)
        self._runs: dict[str, _RunSpans] = {}

    @contextlib.contextmanager
    def run(self, graph_name: str, run_id: str) -> Iterator[None]:
        attributes = {"flowfn.run_id": run_id, "flowfn.graph": graph_name}
        with self.tracer.start_as_current_span(
                f"run {graph_name}", attributes=attributes, record_exception=False,
                set_status_on_exception=False) as span:
            self._runs[run_id] = _RunSpans(span)
            status = "succeeded"
            try:
                yield
            except BaseException as exc:
                status = _failed(span, exc)
                raise
            finally:
                span.set_attribute("flowfn.status", status)
                del self._runs[run_id]

    @contextlib.contextmanager
    def attempt(self, span: Span, attempt: int, run_id: str) -> Iterator[None]:
        spans = self._runs.get(run_id)
        parent = spans.parent(span.path) if spans is not None else trace.get_current_span()
        attributes: dict[str, str | int] = {"flowfn.run_id": run_id, "flowfn.path": span.path,
                                            "flowfn.attempt": attempt}
        otel_span = self.tracer.start_span(
            span.name, context=trace.set_span_in_context(parent), attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(otel_span))
        if spans is not None:
            spans.open[span.path] = otel_span
        status = "succeeded"
        try:
            yield
            if span.status == "failed":  # failed without raising through us
                status = _failed(otel_span, span.error)
        except BaseException as exc:
            status = _failed(otel_span, exc)
            raise
        finally:
            if spans is not None:
                spans.open.pop(span.path, None)
            otel_context.detach(token)
            otel_span.set_attribute("flowfn.status", status)
            _copy_attributes(span, otel_span)
            otel_span.end()

    def event(self, event: Event, run_id: str) -> None:
        """Events need nothing more: each attempt already is a span."""


def _failed(otel_span: trace.Span, exc: BaseException | None) -> str:
    """Mark the span for how ``exc`` ended it; returns the flowfn status word."""
    if exc is None:
        otel_span.set_status(trace.StatusCode.ERROR)
        return "failed"
    if _is_cancellation(exc):
        return "cancelled"
    otel_span.record_exception(exc)
    otel_span.set_status(trace.StatusCode.ERROR, exc_line(exc))
    return "failed"


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _copy_attributes(span: Span, otel_span: trace.Span) -> None:
    """Custom attributes the step set on its flowfn span, when they are plain values."""
    custom: dict[str, Any] = span.attributes
    for key, value in custom.items():
        if isinstance(value, _PLAIN):
            otel_span.set_attribute(f"flowfn.{key}", value)


_observers: dict[int, TracingObserver] = {}


def tracing_observer(provider: trace.TracerProvider) -> TracingObserver:
    """The observer for ``provider`` (one per provider, so its tracer is made once)."""
    observer = _observers.get(id(provider))
    if observer is None or observer.provider is not provider:
        observer = _observers[id(provider)] = TracingObserver(provider)
    return observer
