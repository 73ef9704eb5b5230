"""Module-level steps for tests/test_step_options.py: importable, so picklable by reference."""

import functools
from typing import Any

from flowfn import step


@step
def double(x: int) -> int:
    return 2 * x


def _triple_impl(x: int) -> int:
    return 3 * x


triple = step(_triple_impl, name="triple")  # held under another name than its function's


class AsyncAdder:
    """A callable object whose ``__call__`` is ``async def``."""

    async def __call__(self, x: int) -> int:
        return x + 1


def plain_add(x: int, y: int) -> int:
    return x + y


async def async_add(x: int, y: int) -> int:
    return x + y


def async_wrapper(fn: Any) -> Any:
    """An async wrapper around a plain def, made with functools.wraps."""

    @functools.wraps(fn)
    async def wrapper(**kwargs: Any) -> Any:
        return fn(**kwargs)

    return wrapper


class FakeExecutor:
    """The duck type executor= accepts: async run, open and close."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, call: Any) -> Any:
        return call()
