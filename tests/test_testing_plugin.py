"""The pytest plugin: ``flow_run`` / ``flow_clock`` fixtures in virtual time (DESIGN §6)."""

import inspect
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
import trio
import trio.testing

from flowfn import RunFailed, StepTimeout, graph, step
from flowfn.testing import FlowFailed

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def test_flow_clock_is_an_autojumping_mock_clock(flow_clock: Any) -> None:
    assert isinstance(flow_clock, trio.testing.MockClock)
    assert flow_clock.autojump_threshold == 0
    assert flow_clock.current_time() == 0


def test_virtual_time_an_hour_takes_no_real_time(flow_run: Any, flow_clock: Any) -> None:
    @step
    async def wait_an_hour() -> str:
        await trio.sleep(3600)
        return "done"

    @step(timeout=7200)
    async def then_more(x: Annotated[str, wait_an_hour]) -> str:
        await trio.sleep(1800)
        return x + "!"

    real = time.monotonic()
    result = flow_run(graph(then_more))
    assert time.monotonic() - real < 2
    assert result.output == "done!"
    assert flow_clock.current_time() == 5400
    assert result.spans["then_more"].started == 3600


def test_inputs_and_overrides_are_passed_through(flow_run: Any) -> None:
    @step
    async def real_source() -> int:
        raise AssertionError("must be overridden")

    @step
    def scale(x: Annotated[int, real_source], factor: int) -> int:
        return x * factor

    result = flow_run(graph(scale), {"factor": "3"}, overrides={real_source: 7})
    assert result.output == 21


def test_expect_failure_returns_the_failed_result(flow_run: Any, flow_clock: Any) -> None:
    @step
    async def bad() -> None:
        await trio.sleep(30)
        raise ValueError("nope")

    result = flow_run(graph(bad), expect_failure=True)
    assert result.status == "failed"
    assert isinstance(result.error, RunFailed)
    assert isinstance(result.error.__cause__, ValueError)
    assert result.spans["bad"].status == "failed"
    assert flow_clock.current_time() == 30


def test_expect_failure_on_a_succeeding_flow_fails_the_test(flow_run: Any) -> None:
    @step
    def fine() -> int:
        return 1

    with pytest.raises(pytest.fail.Exception, match="expected to fail, but it succeeded"):
        flow_run(graph(fine), expect_failure=True)


@step
async def fetch_total() -> int:
    await trio.sleep(2)
    return 1


@step
async def slow_audit() -> int:
    await trio.sleep(10)
    return 1


@step(retries=1, backoff=0.5)
async def charge(x: Annotated[int, fetch_total]) -> int:
    await trio.sleep(1)
    raise ValueError("declined")


@step
def ship(x: Annotated[int, charge], y: Annotated[int, slow_audit]) -> int:
    return x


def test_failure_report_text(flow_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    line = inspect.getsourcelines(charge.fn)[1] + 1
    with pytest.raises(FlowFailed) as info:
        flow_run(graph(ship))
    assert str(info.value) == (
        f"step 'charge' failed on attempt 2 of 2 (tests/test_testing_plugin.py:{line}):\n"
        "  ValueError: declined\n"
        "  cancelled while running: slow_audit; never started: ship\n"
        "\n"
        "step         status     time    tries  detail\n"
        "fetch_total  succeeded  2.000s  1\n"
        "charge       failed     2.500s  2      ValueError: declined\n"
        "slow_audit   cancelled  4.500s  1      cancelled because step 'charge' failed\n"
        "ship         cancelled                 never started: cancelled because step "
        "'charge' failed"
    )
    # chained to the step's own error (the traceback worth reading); the RunFailed, with
    # its result, stays reachable
    assert isinstance(info.value.__cause__, ValueError)
    assert isinstance(info.value.run_failed, RunFailed)
    assert info.value.result.status == "failed"


# --- autojump pauses while thread work is in flight -----------------------------------------


def test_thread_step_timeout_does_not_fire_falsely(flow_run: Any, flow_clock: Any) -> None:
    """A thread step with timeout=5 works 0.3 s real time while a sibling sleeps 10 virtual
    seconds: if autojump leapt during the thread's work, the clock would pass 5 first."""

    @step(timeout=5)
    def crunch() -> str:
        time.sleep(0.3)
        return "crunched"

    @step
    async def nap() -> str:
        await trio.sleep(10)
        return "rested"

    result = flow_run(graph(crunch, nap))
    assert result.output == {"crunch": "crunched", "nap": "rested"}
    assert result.spans["crunch"].status == "succeeded"
    assert result.spans["crunch"].ended == 0  # no virtual time passed during real work
    assert flow_clock.current_time() == 10  # and autojump came back afterwards
    assert flow_clock.autojump_threshold == 0


def test_async_timeout_not_fired_while_a_sibling_thread_works(flow_run: Any,
                                                            flow_clock: Any) -> None:
    """An async step (timeout=5) polls for a thread's real work; virtual time must stand
    still while the thread works, so its polling sleeps cannot add up to 5 s."""
    done = threading.Event()

    @step
    def real_work() -> int:
        time.sleep(0.3)
        done.set()
        return 1

    @step(timeout=5)
    async def watcher() -> str:
        while not done.is_set():
            await trio.sleep(0.01)
        return "saw it"

    @step
    async def long_nap() -> None:
        await trio.sleep(10)

    result = flow_run(graph(real_work, watcher, long_nap))
    assert result.spans["watcher"].status == "succeeded", result.report()
    assert result.output["watcher"] == "saw it"
    assert result.spans["watcher"].ended <= 0.05
    assert flow_clock.current_time() == 10


def test_a_real_thread_timeout_still_fires(flow_run: Any) -> None:
    """The pause does not hide real timeouts: a step that waits on virtual time does time out."""

    @step(timeout=5)
    async def too_slow() -> None:
        await trio.sleep(6)

    result = flow_run(graph(too_slow), expect_failure=True)
    assert isinstance(result.error.__cause__, StepTimeout)
    assert result.spans["too_slow"].ended == 5


@pytest.mark.trio
async def test_pytest_trio_autojump_clock_with_thread_step(
        autojump_clock: trio.testing.MockClock) -> None:
    """Works alongside pytest-trio: arun under its autojump clock pauses for threads too."""
    from flowfn import arun

    @step(timeout=5)
    def crunch() -> int:
        time.sleep(0.2)
        return 1

    @step
    async def nap() -> None:
        await trio.sleep(10)

    start = trio.current_time()
    result = await arun(graph(crunch, nap))
    assert result.spans["crunch"].status == "succeeded"
    assert trio.current_time() - start == 10


# --- the plugin as a user's test suite sees it -----------------------------------------------

USER_TESTS = '''
from typing import Annotated
import trio
from flowfn import graph, step


@step
async def fetch_users() -> list[str]:
    await trio.sleep(60)
    return ["Alice"]


@step
async def fetch_orders() -> list[int]:
    await trio.sleep(600)
    return [1]


@step
def merge(users: Annotated[list[str], fetch_users],
          orders: Annotated[list[int], fetch_orders]) -> int:
    return len(users) + len(orders)


@step
async def broken(users: Annotated[list[str], fetch_users]) -> int:
    raise ValueError("bad data")


def test_passes(flow_run, flow_clock):
    assert flow_run(graph(merge)).output == 2
    assert flow_clock.current_time() == 600


def test_fails(flow_run):
    flow_run(graph(merge, broken))
'''


def run_user_tests(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user_flow=USER_TESTS)  # no conftest, no plugin import
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_plugin_is_auto_registered_and_reports_per_step(pytester: pytest.Pytester) -> None:
    result = run_user_tests(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*FlowFailed: step 'broken' failed on attempt 1: ValueError: bad data",
        "*step defined at test_user_flow.py:25",
        "*cancelled while running: fetch_orders; never started: merge",
        "*",
        "*step          status     time     tries  detail",
    ])
    out = result.stdout.str()
    for row in (
        "fetch_users   succeeded  60.000s  1",
        "fetch_orders  cancelled  60.000s  1      cancelled because step 'broken' failed",
        "merge         cancelled                  never started: cancelled because step "
        "'broken' failed",
        "broken        failed     0.000s   1      ValueError: bad data",
    ):
        assert row in out, out
    assert "plugins:" in out and "flowfn" in out.split("plugins:")[1].splitlines()[0]


def test_failure_output_is_not_buried_in_flowfn_internals(pytester: pytest.Pytester) -> None:
    """The user's step traceback and the per-step report, without pages of flowfn source:
    the frames of run()/arun() and of the plugin itself should not be shown."""
    result = run_user_tests(pytester, "-k", "test_fails")
    out = result.stdout.str()
    assert 'raise ValueError("bad data")' in out  # the user's own frame stays visible
    assert "never started: cancelled because step 'broken' failed" in out  # and the report
    for internal in ("flowfn/_run.py:", "flowfn/testing.py:"):
        assert internal not in out, out


def test_plugin_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_ok(): pass")
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*flow_clock*", "*flow_run*"])
