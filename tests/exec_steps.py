"""Steps for the executor tests, in an importable module so that worker processes and
Dask workers can import them by reference."""

import os
import time
from pathlib import Path
from typing import Annotated

from flowfn import current_span, each, step


@step
def numbers(n: int) -> list[int]:
    return list(range(n))


@step
def square(x: Annotated[int, each(numbers)]) -> int:
    return x * x


@step
def total(square: list[int]) -> int:
    return sum(square)


@step
def double(x: int) -> int:
    return 2 * x


@step
def fails(x: int) -> int:
    raise ValueError(f"bad value {x}")


@step
def exits(x: int) -> int:
    os._exit(3)


@step
def pid_then_spin(pid_file: str) -> int:
    """Write this process's id, then burn CPU until killed."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        pass


@step
def pid_then_sleep(pid_file: str, seconds: float) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@step
def span_name() -> str:
    return current_span().name


def cpu(n: int) -> int:
    """Pure-Python CPU work (for benchmarks and the process tests)."""
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1_000_003
    return acc


class Unpicklable:
    def __reduce__(self) -> str:
        raise TypeError("this object refuses to be pickled")


@step
def returns_unpicklable() -> object:
    return Unpicklable()
