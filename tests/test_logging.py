"""Log records on the "flowfn" logger: one per step start, finish, retry and failure.

Until the scheduler calls the observers itself, the logging observer is driven here
through ``on_event=``, which hands it the very events the scheduler will; the tests at
the end go through plain ``run()`` and wait for that wiring.
"""

import logging
from typing import Annotated, Any

import pytest
import trio
import trio.testing

from flowfn import RunFailed, each, graph, run, step, subflow
from flowfn._observe import LoggingObserver, observers


def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@step
async def fetch() -> int:
    await trio.sleep(1)
    return 1


@step(retries=1, backoff=0)
async def flaky(fetch: int) -> int:
    if flaky.calls == 0:  # type: ignore[attr-defined]
        flaky.calls += 1  # type: ignore[attr-defined]
        raise ConnectionError("reset by peer")
    return fetch + 1


@step
async def broken(flaky: int) -> int:
    raise ValueError(f"cannot use {flaky}")


def records(caplog: pytest.LogCaptureFixture,
            run_id: str | None = None) -> list[tuple[str, str, str, str]]:
    """(level, run_id, step, message) of flowfn's records (of one run, with ``run_id``:
    once run() logs by itself too, a test's own observer is told apart by its id)."""
    return [(r.levelname, getattr(r, "run_id", "-"), getattr(r, "step", "-"), r.getMessage())
            for r in caplog.records
            if r.name == "flowfn" and run_id in (None, getattr(r, "run_id", None))]


def observe(run_id: str) -> Any:
    observer = LoggingObserver()
    return lambda event: observer.event(event, run_id)


def test_records_per_step_with_run_id_and_path(caplog: pytest.LogCaptureFixture) -> None:
    flaky.calls = 0  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG, logger="flowfn")
    with pytest.raises(RunFailed):
        run(graph(broken), on_event=observe("r1"), clock=clock())
    assert records(caplog, "r1") == [
        ("DEBUG", "r1", "fetch", "step 'fetch' started"),
        ("DEBUG", "r1", "fetch", "step 'fetch' finished in 1.000s"),
        ("DEBUG", "r1", "flaky", "step 'flaky' started"),
        ("WARNING", "r1", "flaky",
         "step 'flaky' failed on attempt 1, retrying: ConnectionError: reset by peer"),
        ("DEBUG", "r1", "flaky", "step 'flaky' finished in 0.000s"),
        ("DEBUG", "r1", "broken", "step 'broken' started"),
        ("ERROR", "r1", "broken", "step 'broken' failed on attempt 1: ValueError: cannot use 2"),
    ]
    failure = [r for r in caplog.records if getattr(r, "run_id", None) == "r1"][-1]
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], ValueError)
    assert failure.attempt == 1  # type: ignore[attr-defined]


def test_warning_level_keeps_only_retries_and_failures(
        caplog: pytest.LogCaptureFixture) -> None:
    flaky.calls = 0  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING, logger="flowfn")
    with pytest.raises(RunFailed):
        run(graph(broken), on_event=observe("r2"), clock=clock())
    assert [(level, path) for level, _, path, _ in records(caplog, "r2")] == [
        ("WARNING", "flaky"), ("ERROR", "broken"),
    ]


def test_map_items_and_subflow_steps_log_their_paths(caplog: pytest.LogCaptureFixture) -> None:
    @step
    async def items() -> list[int]:
        return [1, 2]

    @step
    async def double(x: Annotated[int, each(items)]) -> int:
        return 2 * x

    branch = subflow(graph(double), name="branch")
    caplog.set_level(logging.DEBUG, logger="flowfn")
    run(graph(branch), on_event=observe("r3"), clock=clock())
    paths = {path for _, _, path, _ in records(caplog, "r3")}
    assert {"branch", "branch/items", "branch/double", "branch/double[0]",
            "branch/double[1]"} <= paths


def test_skips_and_cancellations_are_debug(caplog: pytest.LogCaptureFixture) -> None:
    @step
    async def gate() -> bool:
        return False

    @step(when=lambda gate: gate)
    async def guarded() -> int:
        return 1

    caplog.set_level(logging.DEBUG, logger="flowfn")
    run(graph(gate, guarded), on_event=observe("r4"), clock=clock())
    (skip,) = [r for r in records(caplog, "r4") if r[2] == "guarded"]
    assert skip[0] == "DEBUG" and skip[3].startswith("step 'guarded' skipped: ")


# --- when the logging observer is active -------------------------------------------


def test_the_logger_is_silent_by_default() -> None:
    handlers = logging.getLogger("flowfn").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_active_only_when_a_handler_would_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.root, "handlers", [])  # what an unconfigured program has
    assert not [o for o in observers() if isinstance(o, LoggingObserver)]
    handler = logging.StreamHandler()
    monkeypatch.setattr(logging.root, "handlers", [handler])
    assert [o for o in observers() if isinstance(o, LoggingObserver)]
    logging.disable(logging.CRITICAL)
    try:
        assert not [o for o in observers() if isinstance(o, LoggingObserver)]
    finally:
        logging.disable(logging.NOTSET)
    flowfn_logger = logging.getLogger("flowfn")
    monkeypatch.setattr(flowfn_logger, "propagate", False)
    assert not [o for o in observers() if isinstance(o, LoggingObserver)]


# --- through run() itself, once the scheduler calls the observers --------------------


def test_run_logs_by_itself(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowfn")
    result = run(graph(fetch), clock=clock())
    assert records(caplog) == [
        ("DEBUG", result.run_id, "fetch", "step 'fetch' started"),
        ("DEBUG", result.run_id, "fetch", "step 'fetch' finished in 1.000s"),
    ]


def test_run_logs_failures_with_the_run_id(caplog: pytest.LogCaptureFixture) -> None:
    flaky.calls = 0  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING, logger="flowfn")
    with pytest.raises(RunFailed) as info:
        run(graph(broken), run_id="job-7", clock=clock())
    assert info.value.result.run_id == "job-7"
    assert [(level, run_id, path) for level, run_id, path, _ in records(caplog)] == [
        ("WARNING", "job-7", "flaky"), ("ERROR", "job-7", "broken"),
    ]
