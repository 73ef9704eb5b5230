"""Observers: what the outside world (logging, OpenTelemetry) learns about a run.

The scheduler asks :func:`observers` once per run and, when the tuple is not empty,
enters ``run()`` around the run, ``attempt()`` around every step attempt and calls
``event()`` for every :class:`~flowfn.Event`. When nobody listens (no logging handler,
no OpenTelemetry SDK), the tuple is empty and a run pays for one probe, not per step:
that is why the probe checks for handlers and providers instead of just importability.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import exc_line

if TYPE_CHECKING:
    from ._result import Event, Span

logger = logging.getLogger("flowfn")
# Silent unless the application configures logging (the library convention): with a
# handler here, logging never falls back to printing warnings on stderr by itself.
logger.addHandler(logging.NullHandler())

_NOTHING = contextlib.nullcontext()  # stateless: one instance serves every caller


class Observer(Protocol):
    """Something told about every run: its lifetime, each attempt, each event."""

    def run(self, graph_name: str, run_id: str) -> contextlib.AbstractContextManager[None]:
        """Entered around the whole run, in the run's own task."""
        ...

    def attempt(self, span: Span, attempt: int,
                run_id: str) -> contextlib.AbstractContextManager[None]:
        """Entered in the step's own task around one attempt; the step runs inside it."""
        ...

    def event(self, event: Event, run_id: str) -> None:
        """Every event of the run (started, finished, failed, retrying, ...)."""
        ...


class LoggingObserver:
    """Log records on the ``"flowfn"`` logger, with ``run_id`` and ``step`` (the path).

    Starts and finishes are DEBUG, retries WARNING, failures ERROR (with the exception,
    so handlers print its traceback); skips, cancellations and waits are DEBUG/INFO.
    """

    def run(self, graph_name: str, run_id: str) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def attempt(self, span: Span, attempt: int,
                run_id: str) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def event(self, event: Event, run_id: str) -> None:
        kind, span = event.kind, event.span
        extra = {"run_id": run_id, "step": event.step, "attempt": span.attempts}
        if kind == "started":
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("step %r started", event.step, extra=extra)
        elif kind == "finished":
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("step %r finished in %s", event.step, _seconds(span),
                             extra=extra)
        elif kind == "retrying":
            logger.warning("step %r failed on attempt %d, retrying: %s", event.step,
                           span.attempts, _error(span), extra=extra)
        elif kind == "failed":
            error = span.error
            logger.error("step %r failed on attempt %d: %s", event.step, span.attempts,
                         _error(span), extra=extra,
                         exc_info=(type(error), error, error.__traceback__)
                         if error is not None else None)
        elif kind == "waiting":
            logger.info("step %r is waiting for an answer", event.step, extra=extra)
        elif logger.isEnabledFor(logging.DEBUG):  # skipped, cancelled
            logger.debug("step %r %s: %s", event.step, kind, span.reason or "no reason given",
                         extra=extra)


def _seconds(span: Span) -> str:
    duration = span.duration
    return "?" if duration is None else f"{duration:.3f}s"


def _error(span: Span) -> str:
    return exc_line(span.error) if span.error is not None else "unknown error"


_logging_observer = LoggingObserver()


def _logging_active() -> bool:
    """Would a flowfn record reach a handler that prints it somewhere?"""
    if not logger.isEnabledFor(logging.ERROR):  # the highest level flowfn uses
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not isinstance(handler, logging.NullHandler) and handler.level <= logging.ERROR:
                return True
        if not current.propagate:
            break
        current = current.parent
    return False


def _otel_observer() -> Observer | None:
    """The OpenTelemetry observer, when an SDK (not the API's no-op) is configured.

    An application that configured OpenTelemetry has imported it, so the module table
    answers "not installed or not used" without importing anything; only the
    environment variable that names a provider makes us import the API ourselves.
    """
    trace: Any = sys.modules.get("opentelemetry.trace")
    if trace is None:
        if "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
            return None
        try:
            trace = importlib.import_module("opentelemetry.trace")
        except ImportError:
            return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    from .otel import tracing_observer  # imports OpenTelemetry: only when it is in use

    return tracing_observer(provider)


def observers() -> tuple[Observer, ...]:
    """The observers a run should call now (often none: then it calls nothing)."""
    otel = _otel_observer()
    if _logging_active():
        return (_logging_observer,) if otel is None else (_logging_observer, otel)
    return () if otel is None else (otel,)
