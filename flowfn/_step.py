"""``@step``: a plain function plus the options that tell the scheduler how to run it.

The decorated object is still the function: calling it calls the function, so unit
tests need no flowfn at all. Steps compare by identity, because ``typing`` caches
``Annotated[T, meta]`` by equality and two equal-comparing steps would be confused.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from ._errors import location

P = ParamSpec("P")
R = TypeVar("R")

ExecutorName = Literal["async", "thread", "inline"]
EXECUTORS: tuple[str, ...] = ("async", "thread", "inline")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits
    ``min(maximum, initial * factor**(n-1))``, scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``. ``Backoff(jitter=0)`` gives exact, testable delays.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1

    def __call__(self, attempt: int) -> float:
        delay = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, delay)


BackoffLike = Backoff | float | Callable[[int], float]


def backoff_delay(backoff: BackoffLike, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if isinstance(backoff, int | float):
        return float(backoff)
    return float(backoff(attempt))


class Container(Protocol):
    """What a step built by a pattern helper (``race``, ``subflow``) tells ``graph()``."""

    kind: str  # "race" or "subflow": how the scheduler runs it

    def members(self) -> list[Step[Any, Any]]:
        """Steps that run inside this one (a race's contestants)."""
        ...

    def output_type(self, declared: Any) -> Any:
        """The type of this step's output, for the graph's type checks."""
        ...


class Step(Generic[P, R]):
    """A function that takes part in graphs. Create it with :func:`step`."""

    # Attribute names are public and read-only by convention; ``graph()`` reads them.
    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        after: Sequence[Step[Any, Any] | str] = (),
        when: Callable[..., Any] | None = None,
        timeout: float | None = None,
        on_timeout: Any = MISSING,
        retries: int = 0,
        backoff: BackoffLike | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        limit: str | None = None,
        executor: ExecutorName | None = None,
        container: Container | None = None,
        defined_at: str | None = None,
    ) -> None:
        if isinstance(fn, Step):
            fn = fn.fn
        if not callable(fn):
            raise TypeError(f"@step decorates functions, got {fn!r}")
        is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))
        if executor is None:
            executor = "async" if is_async else "thread"
        if executor not in EXECUTORS:
            raise ValueError(
                f"step {name or fn.__name__!r} ({location(fn)}): executor={executor!r} is not "
                f"known. Use one of: {', '.join(repr(e) for e in EXECUTORS)}."
            )
        if executor == "async" and not is_async:
            raise ValueError(
                f"step {name or fn.__name__!r} ({location(fn)}): executor='async' needs an "
                "'async def' function. Use executor='thread' or 'inline' for a plain 'def'."
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(
                f"step {name or fn.__name__!r} ({defined_at or location(fn)}): retries= must "
                f"be a whole number >= 0, got {retries!r}. It counts the tries after the "
                "first: retries=2 tries up to 3 times."
            )
        if timeout is not None and not timeout > 0:
            raise ValueError(
                f"step {name or fn.__name__!r} ({defined_at or location(fn)}): timeout= must "
                f"be a number of seconds > 0, got {timeout!r}. Leave it out for no timeout."
            )
        if isinstance(after, Step | str):
            after = [after]
        self.fn: Callable[P, R] = fn
        self.name: str = name or fn.__name__
        self.after: tuple[Step[Any, Any] | str, ...] = tuple(after)
        self.when = when
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.retries = retries
        self.backoff: BackoffLike = Backoff() if backoff is None else backoff
        self.retry_on = retry_on
        self.limit = limit
        self.executor: ExecutorName = executor
        self.is_async = is_async
        self.container = container
        self._defined_at = defined_at  # call site of a pattern helper such as race()
        functools.update_wrapper(self, fn)  # __doc__, __name__, __module__, __wrapped__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    # identity semantics, spelled out: typing's Annotated cache relies on them
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def location(self) -> str:
        """``path:line`` of the function's definition (or of the pattern helper's call)."""
        return self._defined_at or location(self.fn)

    def __repr__(self) -> str:
        return f"<step {self.name!r} at {self.location}>"


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    after: Sequence[Step[Any, Any] | str] = (),
    when: Callable[..., Any] | None = None,
    timeout: float | None = None,
    on_timeout: Any = MISSING,
    retries: int = 0,
    backoff: BackoffLike | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    limit: str | None = None,
    executor: ExecutorName | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make ``fn`` a step. Use bare (``@step``) or with options (``@step(retries=3)``).

    Options:
      name: the step's name in graphs, spans and errors (default: the function's name).
      after: steps (or names) that must finish first, without passing data.
      when: a predicate wired by its own signature; false skips the step.
      timeout / on_timeout: per-attempt deadline in seconds; ``on_timeout`` is returned
        instead of failing with :class:`StepTimeout`.
      retries / backoff / retry_on: extra attempts, the wait between them, and which
        exceptions are worth retrying.
      limit: the name of a capacity limit given to ``run(limits={...})``.
      executor: ``"async"`` (``async def``), ``"thread"`` (``def``), or ``"inline"``
        (a cheap ``def`` run on the event loop itself).
    """
    if fn is not None:
        return Step(fn, **options)

    def decorate(f: Callable[P, R]) -> Step[P, R]:
        return Step(f, **options)

    return decorate
