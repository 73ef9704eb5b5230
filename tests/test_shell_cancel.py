"""A cancelled ``shell()`` step is killed even when its process ignores SIGTERM.

The SIGKILL grace period is real time: under ``flow_run``'s ``MockClock`` autojump is
paused while a process runs, so a virtual grace period would never end. The grace period
is shortened here so that the test stays fast.
"""

import time
from pathlib import Path
from typing import Any

import pytest

import flowfn._patterns
from flowfn import graph, shell, step

STUBBORN = "trap '' TERM; echo $$ > {pidfile}; sleep 3 & wait; sleep 3"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flowfn._patterns, "KILL_GRACE", 0.2)


def failing_once_started(pidfile: Path) -> Any:
    @step
    def boom() -> None:  # a thread: real time, while the process runs
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "the shell step never started"
            time.sleep(0.01)
        raise ValueError("boom")

    return boom


def test_process_ignoring_sigterm_is_killed_under_flow_run(
        flow_run: Any, tmp_path: Path, short_grace: None) -> None:
    pidfile = tmp_path / "pid"
    sh = shell(STUBBORN, name="stubborn")
    began = time.monotonic()
    result = flow_run(graph(sh, failing_once_started(pidfile)), {"pidfile": str(pidfile)},
                      expect_failure=True)
    assert time.monotonic() - began < 1.5  # not the 3 s the process would take
    assert result.spans["stubborn"].status == "cancelled"
    assert not alive(int(pidfile.read_text()))


def test_process_exiting_on_sigterm_is_not_waited_for(flow_run: Any, tmp_path: Path) -> None:
    # The default grace period (5 s) is not waited out once the process has exited.
    pidfile = tmp_path / "pid"
    sh = shell("echo $$ > {pidfile}; sleep 3", name="polite")
    began = time.monotonic()
    result = flow_run(graph(sh, failing_once_started(pidfile)), {"pidfile": str(pidfile)},
                      expect_failure=True)
    assert time.monotonic() - began < 1.5
    assert result.spans["polite"].status == "cancelled"
    assert not alive(int(pidfile.read_text()))
