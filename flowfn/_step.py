"""``@step``: a plain function plus the options that tell the scheduler how to run it.

The decorated object is still the function: calling it calls the function, so unit
tests need no flowfn at all. Steps compare by identity, because ``typing`` caches
``Annotated[T, meta]`` by equality and two equal-comparing steps would be confused.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from ._errors import location, type_name, with_article

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


class BackoffError(RuntimeError):
    """A ``backoff=`` function failed or returned something that is not a wait."""


def backoff_delay(backoff: BackoffLike, attempt: int, step: Step[Any, Any] | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    A user's ``backoff=`` function that raises, or returns anything but a number of
    seconds >= 0, raises :class:`BackoffError` naming the function (and ``step`` when
    given), with the function's own exception as ``__cause__``.
    """
    if isinstance(backoff, int | float):
        return float(backoff)
    if isinstance(backoff, Backoff):
        return backoff(attempt)
    who = f"step {step.name!r} ({step.location}): " if step is not None else ""
    what = f"backoff= function {_callable_name(backoff)!r}"
    try:
        result = backoff(attempt)
    except Exception as exc:
        raise BackoffError(
            f"{who}{what} raised {type(exc).__name__}: {exc} for attempt {attempt}. "
            "It must return the number of seconds to wait before the next attempt."
        ) from exc
    if isinstance(result, int | float) and not isinstance(result, bool) and result >= 0:
        return float(result)
    raise BackoffError(
        f"{who}{what} returned {_describe(result)} for attempt {attempt}, not a number of "
        "seconds >= 0. It must return the number of seconds to wait before the next attempt."
    )


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _describe(value: Any) -> str:
    """A short, stable description of a user's value: no ``<function at 0x...>``."""
    if inspect.isfunction(value):
        return f"the plain function {value.__name__!r} ({location(value)})"
    if isinstance(value, type):
        return f"the class {type_name(value)!r}"
    if inspect.iscoroutine(value):
        value.close()  # a called step, never awaited: silence the RuntimeWarning
        return "a coroutine object (a step called instead of referenced)"
    if value is None:
        return "None"
    if isinstance(value, BaseException):
        return f"the exception {value!r} (an instance, not a class)"
    kind = with_article(type_name(type(value)))
    text = repr(value)
    return f"{text} ({kind})" if len(text) <= 40 and not text.startswith("<") else kind


def _check_backoff(where: str, backoff: Any) -> None:
    if backoff is None or (callable(backoff) and not isinstance(backoff, Backoff)):
        return
    if isinstance(backoff, Backoff):
        bad = []
        for field, low in (("initial", 0), ("factor", None), ("maximum", 0), ("jitter", 0)):
            value = getattr(backoff, field)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not (value > 0 if low is None else value >= low) or (
                    field == "jitter" and value > 1):
                bad.append(f"{field}={value!r}")
        if bad:
            raise ValueError(
                f"{where}: backoff={backoff!r} has {' and '.join(bad)}. initial and maximum "
                "must be seconds >= 0, factor a number > 0 and jitter between 0 and 1."
            )
        return
    if isinstance(backoff, int | float) and not isinstance(backoff, bool) and backoff >= 0:
        return
    raise ValueError(
        f"{where}: backoff= must be a number of seconds >= 0, a Backoff(...) or a function "
        f"of the attempt number, got {_describe(backoff)}. Use backoff=0 to retry at once."
    )


def _check_retry_on(where: str, retry_on: Any) -> tuple[type[BaseException], ...]:
    def exception_class(x: Any) -> bool:
        return isinstance(x, type) and issubclass(x, BaseException)

    if exception_class(retry_on):
        return (retry_on,)
    bad: Any = retry_on
    verb = "is"
    if isinstance(retry_on, Iterable) and not isinstance(retry_on, str | bytes):
        items = tuple(retry_on)
        bad = next((x for x in items if not exception_class(x)), None)
        if bad is None:
            return items
        verb = "contains"
    raise TypeError(
        f"{where}: retry_on= must be exception classes, but it {verb} {_describe(bad)}. "
        "Write for example retry_on=(ConnectionError, TimeoutError)."
    )


def _check_after(where: str, after: Any) -> tuple[Step[Any, Any] | str, ...]:
    if after is None:
        return ()
    if isinstance(after, Step | str):
        return (after,)
    bad: Any = after
    verb = "is"
    if isinstance(after, Iterable) and not isinstance(after, bytes):
        items = tuple(after)
        bad = next((x for x in items if not isinstance(x, Step | str)), None)
        if bad is None:
            return items
        verb = "contains"
    hint = ("Decorate it with @step, or give a step's name." if inspect.isfunction(bad)
            else 'Pass steps or their names: after=[load] or after=["load"].')
    raise TypeError(
        f"{where}: after= must list steps or step names, but it {verb} {_describe(bad)}. "
        + hint
    )


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
        after: Sequence[Step[Any, Any] | str] | Step[Any, Any] | None = (),
        when: Callable[..., Any] | None = None,
        timeout: float | None = None,
        on_timeout: Any = MISSING,
        retries: int = 0,
        backoff: BackoffLike | None = None,
        retry_on: type[BaseException] | Iterable[type[BaseException]] = (Exception,),
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
        where = f"step {name or fn.__name__!r} ({defined_at or location(fn)})"
        _check_backoff(where, backoff)
        retry_on = _check_retry_on(where, retry_on)
        if when is not None and not callable(when):
            raise TypeError(
                f"{where}: when= must be a function (a predicate wired by its own signature, "
                f"like a step), but it is {_describe(when)}. Write for example "
                "when=lambda validate: validate[\"ok\"], or leave it out to always run."
            )
        self.fn: Callable[P, R] = fn
        self.name: str = name or fn.__name__
        self.after: tuple[Step[Any, Any] | str, ...] = _check_after(where, after)
        self.when = when
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.retries = retries
        self.backoff: BackoffLike = Backoff() if backoff is None else backoff
        self.retry_on: tuple[type[BaseException], ...] = retry_on
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
    after: Sequence[Step[Any, Any] | str] | Step[Any, Any] | None = (),
    when: Callable[..., Any] | None = None,
    timeout: float | None = None,
    on_timeout: Any = MISSING,
    retries: int = 0,
    backoff: BackoffLike | None = None,
    retry_on: type[BaseException] | Iterable[type[BaseException]] = (Exception,),
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
