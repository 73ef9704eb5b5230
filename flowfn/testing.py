"""pytest plugin: run flows in virtual time.

Registered through the ``pytest11`` entry point, so installing flowfn is enough:

    def test_retries(flow_run, flow_clock):
        result = flow_run(flow, {"order_id": "A1"})
        assert flow_clock.current_time() == 1.5

``flow_run`` runs the flow under a ``trio.testing.MockClock`` with autojump, so sleeps,
timeouts, backoff and races take no real time. While a step does real work in a worker
thread, autojump is paused so virtual time cannot leap past a ``timeout=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from ._errors import RunFailed
from ._graph import Graph
from ._result import RunResult
from ._run import arun
from ._step import Step

FlowRun = Callable[..., RunResult]


class FlowFailed(Exception):
    """A flow run inside a test failed; the message is the per-step report.

    ``__cause__`` is the failing step's own exception; ``run_failed`` the
    :class:`~flowfn.RunFailed` and ``result`` its :class:`~flowfn.RunResult`.
    """

    def __init__(self, message: str, run_failed: RunFailed) -> None:
        super().__init__(message)
        self.run_failed = run_failed
        self.result = run_failed.result


@pytest.fixture
def flow_clock() -> trio.testing.MockClock:
    """The virtual clock ``flow_run`` uses (``autojump_threshold=0``)."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def flow_run(flow_clock: trio.testing.MockClock) -> FlowRun:
    """Run a flow in virtual time: ``flow_run(flow, inputs, *, overrides=..., **options)``.

    Returns the :class:`~flowfn.RunResult`. A failed run fails the test with a per-step
    report; pass ``expect_failure=True`` to get the failed result back instead (the
    :class:`~flowfn.RunFailed` is on ``result.error``).
    """

    def run_flow(flow: Graph | Step[Any, Any], inputs: Mapping[str, Any] | None = None, *,
                 overrides: Mapping[Any, Any] | None = None, expect_failure: bool = False,
                 **options: Any) -> RunResult:
        __tracebackhide__ = True  # pytest shows the user's step, not this plumbing

        async def main() -> RunResult:
            return await arun(flow, inputs, overrides=overrides, **options)

        try:
            result = trio.run(main, clock=flow_clock)
        except RunFailed as exc:
            if expect_failure:
                failed: RunResult = exc.result
                failed.error = exc
                return failed
            # Chain to the step's own exception: its traceback is the one worth reading.
            raise FlowFailed(f"{exc}\n\n{exc.result.report()}", exc) from (exc.__cause__ or exc)
        if expect_failure:
            pytest.fail(f"the flow was expected to fail, but it succeeded:\n{result.report()}")
        return result

    return run_flow
