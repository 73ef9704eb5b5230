"""Helpers of the durable-run tests: a store that "dies" after a commit, virtual time."""

from typing import Any

import trio
import trio.testing

from flowfn import MemoryStore


class Stop(BaseException):
    """Stands for the process dying right after a commit."""


class StopAfter(MemoryStore):
    """A MemoryStore whose run stops right after the commit holding row number ``k``."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.rows = 0
        self.armed = True

    def write_batch(self, run_id: str, first_seq: int, rows: Any) -> None:
        super().write_batch(run_id, first_seq, rows)
        self.rows += len(rows)
        if self.armed and self.rows >= self.k:
            self.armed = False
            raise Stop


def virtual(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``await fn(*args, **kwargs)`` under a MockClock with autojump."""

    async def main() -> Any:
        return await fn(*args, **kwargs)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
