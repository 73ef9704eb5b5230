"""Helpers of the executor tests: calls built the way the scheduler builds them.

The scheduler does not hand ``Call`` objects to executors yet, so these tests build them
(from ``flowfn._executors``, the executor seam).
"""

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from flowfn import Graph, Step
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


def example_flow(name: str) -> Graph:
    """The ``flow`` of ``examples/<name>.py``, loaded under a name of its own (which a
    worker process cannot import: its functions travel by value)."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"flowfn_exec_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    flow: Graph = module.flow
    return flow
