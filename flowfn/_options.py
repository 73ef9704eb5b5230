"""Checking ``@step`` options when a step is decorated, not when it first runs.

A typo in an option (``retrys=3``), a value of the wrong kind (``timeout="5"``) or an
executor that cannot run this kind of function is a mistake in the flow's definition:
it is reported at the decorator, naming the step, the option, its ``file:line`` and the
fix, in flowfn's words rather than as a ``TypeError`` from deep inside a call.

It also decides what "async" means for a callable, because a step's executor depends on
it: an ``async def``, but also an object whose ``__call__`` is ``async def``, a
``functools.partial`` of one, or a ``functools.wraps`` wrapper that is itself async.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._errors import did_you_mean, location, type_name, with_article

EXECUTORS: tuple[str, ...] = ("async", "thread", "inline", "process", "asyncio")
MAP_MODES: tuple[str, ...] = ("zip", "product")
# Every keyword @step takes; the pattern helpers' own ones (container=, defined_at=) are
# internal and not offered as suggestions.
OPTIONS: tuple[str, ...] = (
    "after", "backoff", "cache", "checkpoint", "executor", "limit", "map", "name",
    "on_timeout", "resources", "retries", "retry_on", "timeout", "version", "when",
)


def callable_name(fn: Any) -> str:
    """The name a callable goes by: its ``__name__``, a partial's function's, or its class's."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def code_owner(fn: Any) -> Any:
    """The Python function whose source defines ``fn``: itself, a partial's function, or a
    callable object's ``__call__``; used for ``file:line`` locations."""
    for _ in range(100):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif (not inspect.isfunction(fn) and not inspect.ismethod(fn)
              and not hasattr(fn, "__wrapped__") and callable(fn)
              and not isinstance(fn, type)):
            call = _class_call(fn)
            return call if inspect.isfunction(call) else fn
        else:
            return fn
    return fn  # pragma: no cover - a partial of a partial of ... a hundred deep


def fn_location(fn: Any) -> str:
    return location(code_owner(fn))


def is_async_callable(fn: Any) -> bool:
    """Does calling ``fn`` return an awaitable that flowfn must await?

    The outermost layer that says decides: an ``async def`` (or a partial, a bound method
    or an object whose ``__call__`` is one) is async; a plain ``def`` that wraps another
    function (``functools.wraps``) is what it wraps, since such a wrapper usually hands
    the wrapped function's result back.
    """
    seen: set[int] = set()
    while id(fn) not in seen:
        seen.add(id(fn))
        if inspect.iscoroutinefunction(fn):
            return True
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        wrapped = getattr(fn, "__wrapped__", None)
        if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
            if wrapped is None or isinstance(fn, type):
                return False
            fn = wrapped
            continue
        if inspect.iscoroutinefunction(_class_call(fn)):
            return True
        if wrapped is None:
            return False
        fn = wrapped
    return False


def describe(value: Any) -> str:
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


def check_unknown(where: str, unknown: Mapping[str, Any]) -> None:
    """Options that ``@step`` does not have: the first one, with the nearest real one."""
    if not unknown:
        return
    bad = sorted(unknown)
    guess = did_you_mean(bad[0], OPTIONS)
    hint = f" Did you mean {guess}=?" if guess else ""
    names = ", ".join(f"{b}=" for b in bad)
    raise TypeError(
        f"{where}: @step has no option {names}.{hint} Its options: {', '.join(OPTIONS)}."
    )


def check_name(fn: Any, name: Any) -> None:
    if name is None or (isinstance(name, str) and name):
        return
    raise TypeError(
        f"step {callable_name(fn)!r} ({fn_location(fn)}): name= must be a non-empty str, got "
        f"{describe(name)}. Leave it out to use the function's name."
    )


def is_executor_object(value: Any) -> bool:
    """Duck-typed executor: an async ``run`` method plus ``open`` and ``close``."""
    return (is_async_callable(getattr(value, "run", None))
            and callable(getattr(value, "open", None))
            and callable(getattr(value, "close", None)))


def check_executor(where: str, executor: Any, is_async: bool) -> Any:
    """The executor a step runs on: the one given, checked, or the default for its kind."""
    if executor is None:
        return "async" if is_async else "thread"
    if not isinstance(executor, str):
        if is_executor_object(executor):
            return executor
        raise TypeError(
            f"{where}: executor= must be one of {_names()} or an executor object (with an "
            f"async run() method and open()/close()), got {describe(executor)}."
        )
    if executor not in EXECUTORS:
        guess = did_you_mean(executor, EXECUTORS)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise ValueError(f"{where}: executor={executor!r} is not known.{hint} Use one of: "
                         f"{_names()}.")
    if not is_async and executor in ("async", "asyncio"):
        raise ValueError(
            f"{where}: executor={executor!r} needs an 'async def' function. Use "
            "executor='thread' or 'inline' for a plain 'def'."
        )
    if is_async and executor in ("thread", "process"):
        place = "a worker thread" if executor == "thread" else "a worker process"
        raise ValueError(
            f"{where}: executor={executor!r} runs a plain 'def' in {place}, but this is an "
            "'async def' function. Leave executor= out to await it on the event loop, or "
            "use executor='asyncio' for asyncio libraries."
        )
    return executor


def _names() -> str:
    return ", ".join(repr(e) for e in EXECUTORS)


def check_timeout(where: str, timeout: Any) -> None:
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if timeout is None or (number and timeout > 0):
        return
    raise ValueError(
        f"{where}: timeout= must be a number of seconds > 0, got {timeout!r}. Leave it out "
        "for no timeout."
    )


def check_retries(where: str, retries: Any) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(
            f"{where}: retries= must be a whole number >= 0, got {retries!r}. It counts the "
            "tries after the first: retries=2 tries up to 3 times."
        )


def check_limit(where: str, limit: Any) -> None:
    if limit is not None and not (isinstance(limit, str) and limit):
        raise TypeError(
            f"{where}: limit= must be the name of a capacity limit (a str), got "
            f"{describe(limit)}. Write limit=\"api\" and run(..., limits={{\"api\": 5}})."
        )


def check_resources(where: str, resources: Any) -> dict[str, float] | None:
    """Dask-style resources, ``{"GPU": 1}``: names to amounts > 0."""
    if resources is None:
        return None
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"{where}: resources= must map resource names to amounts, got "
            f"{describe(resources)}. Write for example resources={{\"GPU\": 1}}."
        )
    for key, amount in resources.items():
        number = isinstance(amount, int | float) and not isinstance(amount, bool)
        if not isinstance(key, str) or not key or not number or not amount > 0:
            raise TypeError(
                f"{where}: resources= must map resource names (str) to amounts > 0, but it "
                f"has {key!r}: {amount!r}. Write for example resources={{\"GPU\": 1}}."
            )
    return dict(resources)


def check_flags(where: str, **flags: Any) -> None:
    """Options that are True or False (``cache=``, ``checkpoint=``)."""
    for option, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{where}: {option}= must be True or False, got {describe(value)}.")


def check_version(where: str, version: Any) -> None:
    if version is not None and not (isinstance(version, str) and version):
        raise TypeError(
            f"{where}: version= must be a non-empty str that you change when the step's "
            f"results change, got {describe(version)}. Write for example version=\"2\"."
        )


def check_map(where: str, mode: Any) -> None:
    if mode not in MAP_MODES or not isinstance(mode, str):
        raise ValueError(
            f"{where}: map= must be 'zip' (the items of the each() parameters side by side) "
            f"or 'product' (every combination), got {describe(mode)}."
        )


def check_backoff(where: str, backoff: Any, backoff_type: type) -> None:
    if backoff is None or (callable(backoff) and not isinstance(backoff, backoff_type)):
        return
    if isinstance(backoff, backoff_type):
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
        f"of the attempt number, got {describe(backoff)}. Use backoff=0 to retry at once."
    )


def check_retry_on(where: str, retry_on: Any) -> tuple[type[BaseException], ...]:
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
        f"{where}: retry_on= must be exception classes, but it {verb} {describe(bad)}. "
        "Write for example retry_on=(ConnectionError, TimeoutError)."
    )


def check_when(where: str, when: Callable[..., Any] | None) -> None:
    if when is not None and not callable(when):
        raise TypeError(
            f"{where}: when= must be a function (a predicate wired by its own signature, "
            f"like a step), but it is {describe(when)}. Write for example "
            "when=lambda validate: validate[\"ok\"], or leave it out to always run."
        )


def _class_call(obj: Any) -> Any:
    """``type(obj).__call__`` looked up along the class's MRO (not the metaclass's)."""
    for cls in type(obj).__mro__:
        if "__call__" in vars(cls):
            return vars(cls)["__call__"]
    return None
