"""Helpers of the executor tests: calls built the way the scheduler builds them.

The scheduler does not hand ``Call`` objects to executors yet, so these tests build them
(from ``flowfn._executors``, the executor seam).
"""

from collections.abc import Callable
from typing import Any

import trio

from flowfn import Step
from flowfn._executors import Call, Executors
from flowfn._result import Span


def make_call(step: Step[Any, Any], fn: Callable[..., Any] | None = None,
              own_deadline: trio.CancelScope | None = None, **kwargs: Any) -> Call:
    """A Call the way the scheduler builds one for ``step``."""
    return Call(fn or step.fn, kwargs, step, step.name, Span(step.name, step.name),
                own_deadline)


def run_calls(which: Any, *calls: Call) -> list[Any]:
    """Run calls one after the other on ``which`` inside one trio run; values or errors."""
    async def main() -> list[Any]:
        executors = Executors()
        out: list[Any] = []
        try:
            for c in calls:
                try:
                    out.append(await executors.run(which, c))
                except Exception as exc:
                    out.append(exc)
        finally:
            await executors.aclose()
        return out

    return trio.run(main)
