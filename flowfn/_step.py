"""``@step``: a plain function plus the options that tell the scheduler how to run it.

The decorated object is still the function: calling it calls the function, so unit
tests need no flowfn at all. Steps compare by identity, because ``typing`` caches
``Annotated[T, meta]`` by equality and two equal-comparing steps would be confused.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pickle
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from ._options import (
    EXECUTORS,
    callable_name,
    check_backoff,
    check_executor,
    check_flags,
    check_limit,
    check_map,
    check_name,
    check_resources,
    check_retries,
    check_retry_on,
    check_timeout,
    check_unknown,
    check_version,
    check_when,
    describe,
    fn_location,
    is_async_callable,
)

P = ParamSpec("P")
R = TypeVar("R")

ExecutorName = Literal["async", "thread", "inline", "process", "asyncio"]
MapMode = Literal["zip", "product"]
__all__ = ["EXECUTORS", "MISSING", "Backoff", "BackoffError", "Step", "backoff_delay", "step"]


class ExecutorObject(Protocol):
    """What ``executor=`` accepts besides a name (e.g. ``flowfn.dask.DaskExecutor``): an
    async ``run`` of one call, and ``open``/``close`` around the runs that use it."""

    async def open(self) -> None: ...

    async def run(self, call: Any) -> Any: ...

    async def close(self) -> None: ...


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
    what = f"backoff= function {callable_name(backoff)!r}"
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
        f"{who}{what} returned {describe(result)} for attempt {attempt}, not a number of "
        "seconds >= 0. It must return the number of seconds to wait before the next attempt."
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
        f"{where}: after= must list steps or step names, but it {verb} {describe(bad)}. "
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
        executor: ExecutorName | ExecutorObject | None = None,
        resources: Mapping[str, float] | None = None,
        cache: bool = False,
        version: str | None = None,
        checkpoint: bool = True,
        map: MapMode = "zip",
        container: Container | None = None,
        defined_at: str | None = None,
        **unknown: Any,
    ) -> None:
        if isinstance(fn, Step):
            fn = fn.fn
        if not callable(fn):
            raise TypeError(f"@step decorates functions, got {describe(fn)}.")
        check_name(fn, name)
        where = f"step {name or callable_name(fn)!r} ({defined_at or fn_location(fn)})"
        check_unknown(where, unknown)
        is_async = is_async_callable(fn)
        resolved = check_executor(where, executor, is_async)
        check_retries(where, retries)
        check_timeout(where, timeout)
        check_backoff(where, backoff, Backoff)
        retry_on = check_retry_on(where, retry_on)
        check_when(where, when)
        check_limit(where, limit)
        check_flags(where, cache=cache, checkpoint=checkpoint)
        check_version(where, version)
        check_map(where, map)
        self.fn: Callable[P, R] = fn
        self.name: str = name or callable_name(fn)
        self.after: tuple[Step[Any, Any] | str, ...] = _check_after(where, after)
        self.when = when
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.retries = retries
        self.backoff: BackoffLike = Backoff() if backoff is None else backoff
        self.retry_on: tuple[type[BaseException], ...] = retry_on
        self.limit = limit
        # The resolved executor: a name, or an executor object. ``executor_given`` is
        # False when it is the default for the function's kind, which run(executor=...)
        # may replace for sync steps.
        self.executor: ExecutorName | Any = resolved
        self.executor_given: bool = executor is not None
        self.is_async = is_async
        self.resources: dict[str, float] | None = check_resources(where, resources)
        self.cache: bool = cache
        self.version: str | None = version
        self.checkpoint: bool = checkpoint
        self.map: MapMode = map
        self.container = container
        self._defined_at = defined_at  # call site of a pattern helper such as race()
        functools.update_wrapper(self, fn)  # __doc__, __name__, __module__, __wrapped__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    # identity semantics, spelled out: typing's Annotated cache relies on them
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __copy__(self) -> Step[P, R]:
        return self  # a step is one thing, wherever it is referenced

    def __deepcopy__(self, memo: dict[int, Any]) -> Step[P, R]:
        return self

    def __reduce__(self) -> tuple[Callable[[str, str], Any], tuple[str, str]]:
        """Pickled by reference (module and qualified name), so that a worker process
        gets *this* step back, and unpickling in this process returns the same object."""
        module, qualname = reference(self)
        return _import_step, (module, qualname)

    @property
    def location(self) -> str:
        """``path:line`` of the function's definition (or of the pattern helper's call)."""
        return self._defined_at or fn_location(self.fn)

    def __repr__(self) -> str:
        return f"<step {self.name!r} at {self.location}>"


def reference(s: Step[Any, Any]) -> tuple[str, str]:
    """``(module, qualname)`` under which ``s`` can be imported, or a PicklingError."""
    module = getattr(s, "__module__", None)
    qualname = getattr(s, "__qualname__", None)
    why = ""
    if not isinstance(module, str) or not isinstance(qualname, str):
        why = "its function has no module and qualified name"
    elif "<locals>" in qualname or "<lambda>" in qualname:
        why = f"it is defined inside a function or is a lambda ({qualname!r})"
    elif module == "__main__":
        why = "it is defined in __main__, which a worker cannot import"
    elif _lookup(module, qualname) is not s:
        qualname = _top_level_name(module, s) or qualname
        if _lookup(module, qualname) is not s:
            why = f"{module}.{qualname} is not this step (no top-level name holds it)"
    if why:
        raise pickle.PicklingError(
            f"step {s.name!r} ({s.location}) cannot be pickled by reference: {why}. Define "
            "it with @step at the top level of an importable module, or send its function "
            "by value (cloudpickle)."
        )
    assert isinstance(module, str) and isinstance(qualname, str)
    return module, qualname


def _lookup(module: str, qualname: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def _top_level_name(module: str, s: Step[Any, Any]) -> str | None:
    """The module-level name holding ``s`` (``fetch = step(fetch_impl)``), if any."""
    namespace = getattr(sys.modules.get(module), "__dict__", {})
    return next((k for k, v in list(namespace.items()) if v is s), None)


def _import_step(module: str, qualname: str) -> Any:
    """Unpickling: the step found at ``module.qualname``."""
    obj = _lookup(module, qualname)
    if not isinstance(obj, Step):
        raise pickle.UnpicklingError(
            f"no step at {module}.{qualname} in this process (is the same code installed?)"
        )
    return obj


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
    executor: ExecutorName | ExecutorObject | None = None,
    resources: Mapping[str, float] | None = None,
    cache: bool = False,
    version: str | None = None,
    checkpoint: bool = True,
    map: MapMode = "zip",
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
      executor: ``"async"`` (``async def``), ``"thread"`` (``def``), ``"inline"`` (a
        cheap ``def`` run on the event loop itself), ``"process"``, ``"asyncio"``, or an
        executor object.
      resources: Dask resources the step needs, ``{"GPU": 1}``.
      cache / version: reuse the stored output while code and inputs are unchanged;
        ``version`` replaces the code hash.
      checkpoint: ``False`` keeps the output out of the store (clients, connections).
      map: ``"zip"`` (default) or ``"product"``: how several ``each()`` parameters combine.
    """
    if fn is not None:
        return Step(fn, **options)

    def decorate(f: Callable[P, R]) -> Step[P, R]:
        return Step(f, **options)

    return decorate
