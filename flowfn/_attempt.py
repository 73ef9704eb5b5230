"""One step's attempts: retries, the per-attempt deadline and capacity slots around a call.

``attempts()`` is the only place a step's function is called (the scheduler's hot path
for plain ``async def`` steps aside, which is this module's ``single`` written out). It
gets the call as a zero-argument coroutine function and returns the step's result as
data (an output, or a ``Failed``), having recorded every attempt on the span. A
per-attempt timeout is one ``trio.move_on_after`` scope; its expiry is told apart from
any outer cancellation by the scope itself, never by a string.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import trio

from ._errors import StepTimeout
from ._executors import Call
from ._graph import Node
from ._result import Attempt, Span
from ._state import Failed, Held, RunState
from ._step import MISSING, BackoffError, BackoffLike, backoff_delay

Thunk = Callable[[], Awaitable[Any]]
#: Builds one attempt's call from the attempt's own deadline scope (None: no timeout=).
Caller = Callable[[trio.CancelScope | None], Awaitable[Any]]


def caller(run: RunState, node: Node, span: Span, fn: Callable[..., Any],
           kwargs: dict[str, Any]) -> Caller:
    """One attempt of ``fn(**kwargs)`` through the executor this step uses."""
    executors = run.shared.executors
    which = executors.pick(node.step, fn)
    if which == "async":
        return lambda _deadline: fn(**kwargs)
    step = node.step
    return lambda deadline: executors.run(which, Call(fn, kwargs, step, span.path, span,
                                                      deadline))


async def single(run: RunState, span: Span, call: Caller) -> Any:
    """One try, no slot, no deadline: the path almost every step takes."""
    run.start(span)
    try:
        if run.shared.observers:
            with _observed(run, span, 1):
                return await call(None)
        return await call(None)
    except Exception as exc:
        return Failed(exc)


@contextmanager
def _observed(run: RunState, span: Span, attempt: int) -> Iterator[None]:
    """Each observer's context around one attempt (an OpenTelemetry span, say), entered
    in the step's own task so that what the step opens nests under it."""
    shared = run.shared
    with ExitStack() as stack:
        for observer in shared.observers:
            stack.enter_context(observer.attempt(span, attempt, shared.run_id))
        yield


async def attempts(run: RunState, node: Node, span: Span, call: Caller, held: Held, *,
                   container: bool = False) -> Any:
    """Run ``call`` with the step's retries, per-attempt timeout and capacity slots.

    Returns the output or a ``Failed`` (not yet settled: the caller settles it). A
    container (race, sub-workflow) takes no ``max_concurrency`` slot: it only waits for
    its members. With ``limit=`` it holds one slot of that limit for its whole run;
    members naming the same limit take turns on it (``held``) rather than wait for a
    slot their own container may be holding.
    """
    step = node.step
    total = step.retries + 1
    limit = step.limit
    shared = run.shared
    named = (held.get(limit) or shared.limiters.get(limit)) if limit else None
    glob = None if container else shared.global_limiter
    if total == 1 and named is None and glob is None and step.timeout is None:
        return await single(run, span, call)
    for attempt in range(1, total + 1):
        span.attempts = attempt
        try:
            async with _slots(named, glob):
                if shared.observers:
                    with _observed(run, span, attempt):
                        value = await _one(run, node, span, call, attempt)
                else:
                    value = await _one(run, node, span, call, attempt)
        except Exception as exc:
            now = run.now()
            begun = span.attempt_started
            span.log_attempt(Attempt(attempt, now if begun is None else begun, now, exc))
            if attempt < total and isinstance(exc, step.retry_on):
                span.error = exc
                run.emit("retrying", span)
                delay = _delay(step.backoff, attempt)
                if isinstance(delay, BackoffError):  # the user's backoff= is broken
                    return Failed(delay)
                await trio.sleep(delay)  # holds no slot
                continue
            return Failed(exc)
        now = run.now()
        begun = span.attempt_started
        span.log_attempt(Attempt(attempt, now if begun is None else begun, now))
        span.error = None
        return value
    raise AssertionError("unreachable")  # pragma: no cover


class _slots:
    """Hold a slot of the step's named limit, then of the run's ``max_concurrency``."""

    __slots__ = ("glob", "named")

    def __init__(self, named: trio.CapacityLimiter | None,
                 glob: trio.CapacityLimiter | None) -> None:
        self.named = named
        self.glob = glob

    async def __aenter__(self) -> None:
        if self.named is not None:
            await self.named.acquire()
        if self.glob is not None:
            try:
                await self.glob.acquire()
            except BaseException:
                if self.named is not None:
                    self.named.release()
                raise

    async def __aexit__(self, *exc: object) -> None:
        if self.glob is not None:
            self.glob.release()
        if self.named is not None:
            self.named.release()


async def _one(run: RunState, node: Node, span: Span, call: Caller, attempt: int) -> Any:
    now = run.now()
    span.attempt_started = now
    if span.started is None:
        span.started = now
        span.status = "running"
        run.emit("started", span)
    step = node.step
    timeout = step.timeout
    if timeout is None:
        return await call(None)
    with trio.move_on_after(timeout) as scope:
        if node.kind != "function":  # what it cancels will say why
            run.deadline_scopes[node.index] = (scope, timeout)
        return await call(scope)
    # Only our own deadline lands here: when an enclosing scope is cancelled too,
    # trio lets that cancellation propagate instead, so this is never a false timeout.
    note = ""
    if span.abandoned:  # the executor could not interrupt the call: it runs on
        note = "; its worker thread was abandoned and runs until the function returns"
    if step.on_timeout is not MISSING:
        span.reason = f"timed out after {timeout:g}s, returned on_timeout{note}"
        return step.on_timeout
    if note:
        span.reason = f"timed out after {timeout:g}s{note}"
    raise StepTimeout(f"step {span.path!r} timed out after {timeout:g}s (attempt {attempt}){note}")


def _delay(backoff: BackoffLike, attempt: int) -> float | BackoffError:
    try:
        return backoff_delay(backoff, attempt)
    except BackoffError as error:
        return error


def constant(value: Any) -> Caller:
    """An override by value (or by exception: the step raises it)."""
    async def give(_deadline: trio.CancelScope | None) -> Any:
        if raises(value):
            raise value
        return value

    return give


def raises(value: Any) -> bool:
    """An override that is an exception (instance or class): the step raises it."""
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException))


def thunk(fn: Thunk) -> Caller:
    """A container's body as a caller (containers have no executor)."""
    return lambda _deadline: fn()
