"""``shell()`` and ``stub()`` steps (DESIGN §3, shell command and placeholder).

Shell commands are real processes: most tests use ``run()`` in real time with commands
that take milliseconds; the cancellation tests are bounded to about a second.
"""

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from flowfn import (
    RunFailed,
    ShellError,
    StepTimeout,
    graph,
    race,
    run,
    shell,
    step,
    stub,
)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


# --- output and placeholders ------------------------------------------------------------------


def test_output_is_stdout() -> None:
    result = run(shell("echo 'Hello World!'", name="hello_shell"))
    assert result.output == "Hello World!\n"
    assert result.spans["hello_shell"].status == "succeeded"


def test_placeholders_are_graph_inputs() -> None:
    sh = shell("printf '%s-%s' {first} {second}", name="join")
    flow = graph(sh)
    assert set(flow.inputs) == {"first", "second"}
    assert run(flow, {"first": "a", "second": 2}).output == "a-2"


def test_same_placeholder_twice_is_one_input() -> None:
    flow = graph(shell("printf '%s%s' {x} {x}", name="twice"))
    assert list(flow.inputs) == ["x"]
    assert run(flow, {"x": "ab"}).output == "abab"


def test_placeholder_wired_to_an_upstream_step(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("one\ntwo\nthree\n")

    @step
    def data_file() -> str:
        return str(tmp_path / "data.txt")

    count = shell("wc -l < {data_file}", name="count")
    flow = graph(count, data_file)
    assert flow.inputs == {}
    result = run(flow)
    assert result.output["count"].strip() == "3"
    assert result.spans["count"].input == {"data_file": str(tmp_path / "data.txt")}


@step
def greeting() -> str:
    """A module-level step: shell placeholders find it by name, like parameters do."""
    return "hello from a step"


def test_placeholder_finds_a_step_of_the_callers_module_by_name() -> None:
    say = shell("echo {greeting}", name="say")
    flow = graph(say)  # `greeting` is not passed: found in this module, like a parameter
    assert flow.inputs == {}
    assert run(flow).output == "hello from a step\n"


def test_placeholder_values_are_shell_quoted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    attack = f"x'; touch {marker}; echo '$(touch {marker}) `touch {marker}` && rm -rf /nope"
    result = run(shell("printf '%s' {text}", name="echo"), {"text": attack})
    assert result.output == attack  # the whole value, literally
    assert not marker.exists()


def test_literal_braces_are_doubled() -> None:
    assert run(shell("echo {{a,b}} {x}", name="braces"), {"x": 1}).output == "{a,b} 1\n"


def test_placeholder_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError, match=r"placeholder \{0\} must be a plain name"):
        shell("echo {0}", name="bad")


# --- exit codes -----------------------------------------------------------------------------


def test_non_zero_exit_fails_with_code_and_stderr_tail() -> None:
    command = "echo partial; for i in $(seq 1 15); do echo line$i >&2; done; exit 3"
    with pytest.raises(RunFailed) as info:
        run(shell(command, name="fails"))
    message = str(info.value)
    assert message.splitlines()[0] == (
        f"step 'fails' failed on attempt 1: ShellError: command exited with code 3: {command}"
    )
    err = info.value.__cause__
    assert isinstance(err, ShellError)
    assert err.returncode == 3
    assert err.stdout == "partial\n"
    assert err.stderr.splitlines()[0] == "line1"
    assert str(err) == (
        f"command exited with code 3: {command}\n  stderr (last lines):\n"
        + "\n".join(f"    line{i}" for i in range(6, 16))
    )


def test_check_false_returns_stdout_anyway() -> None:
    result = run(shell("echo out; echo err >&2; exit 1", name="lenient", check=False))
    assert result.output == "out\n"


def test_command_not_found() -> None:
    with pytest.raises(RunFailed, match="command exited with code 127"):
        run(shell("no-such-command-flowfn", name="missing"))


# --- cwd and env ------------------------------------------------------------------------------


def test_cwd(tmp_path: Path) -> None:
    assert run(shell("pwd", name="where", cwd=tmp_path)).output.strip() == str(tmp_path)


def test_env_is_added_to_the_environment() -> None:
    result = run(shell("echo $FLOWFN_GREETING; command -v sh >/dev/null && echo path-ok",
                       name="env", env={"FLOWFN_GREETING": "hi"}))
    assert result.output == "hi\npath-ok\n"  # PATH still there: env= adds, not replaces


# --- cancellation kills the process and its children ---------------------------------------

BACKGROUND = "sleep 30 & echo $! > {pidfile}; echo $$ >> {pidfile}; wait"


def pids(pidfile: Path) -> list[int]:
    return [int(p) for p in pidfile.read_text().split()]


def test_timeout_kills_the_process_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    sh = shell(BACKGROUND, name="slow", timeout=0.5)
    began = time.monotonic()
    with pytest.raises(RunFailed) as info:
        run(sh, {"pidfile": str(pidfile)})
    assert time.monotonic() - began < 2
    assert isinstance(info.value.__cause__, StepTimeout)
    child, shell_pid = pids(pidfile)
    assert wait_gone(shell_pid)
    assert wait_gone(child)  # the background `sleep 30` is no orphan


def test_failure_elsewhere_kills_the_process_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    sh = shell(BACKGROUND, name="slow")

    @step
    async def boom() -> None:
        with trio.fail_after(5):
            while len(pidfile.read_text().split() if pidfile.exists() else []) < 2:
                await trio.sleep(0.01)
        raise ValueError("boom")

    began = time.monotonic()
    with pytest.raises(RunFailed, match="step 'boom' failed") as info:
        run(graph(sh, boom), {"pidfile": str(pidfile)})
    assert time.monotonic() - began < 2
    assert info.value.result.spans["slow"].status == "cancelled"
    child, shell_pid = pids(pidfile)
    assert wait_gone(shell_pid)
    assert wait_gone(child)


def test_losing_a_race_kills_the_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    sh = shell(BACKGROUND, name="slow")

    @step
    async def fast() -> str:
        with trio.fail_after(5):
            while len(pidfile.read_text().split() if pidfile.exists() else []) < 2:
                await trio.sleep(0.01)
        return "fast\n"

    result = run(race(sh, fast, name="first"), {"pidfile": str(pidfile)})
    assert result.output == "fast\n"
    assert result.spans["first"].winner == "fast"
    assert result.spans["slow"].status == "cancelled"
    child, shell_pid = pids(pidfile)
    assert wait_gone(shell_pid)
    assert wait_gone(child)


def test_shell_in_virtual_time_has_no_false_timeout(flow_run: Any) -> None:
    # A real process takes real time: under flow_run's MockClock, autojump must not leap
    # past the step's deadline while the process runs (DESIGN §6, like threads).
    result = flow_run(shell("sleep 0.2; echo done", name="real", timeout=5))
    assert result.output == "done\n"


# --- stub ------------------------------------------------------------------------------------


def test_stub_returns_none_and_has_a_span(flow_run: Any) -> None:
    placeholder = stub("continue_processing")
    assert placeholder() is None
    result = flow_run(placeholder)
    assert result.output is None
    span = result.spans["continue_processing"]
    assert span.status == "succeeded"
    assert span.output is None
    assert span.input == {}


def test_stub_after_orders_it(flow_run: Any) -> None:
    @step
    async def first() -> int:
        await trio.sleep(2)
        return 1

    @step
    async def second() -> int:
        await trio.sleep(3)
        return 2

    done = stub("continue_processing", after=[first, "second"])
    result = flow_run(graph(done, second))
    assert result.spans["continue_processing"].started == 3
    assert result.output["continue_processing"] is None


def test_stub_in_pictures() -> None:
    hello = stub("hello_stub")
    sh = shell("echo hi", name="hello_shell", after=[hello])
    done = stub("continue_processing", after=[sh])
    mermaid = graph(done).to_mermaid()
    assert "hello_stub[hello_stub]" in mermaid
    assert "continue_processing[continue_processing]" in mermaid
    assert "hello_stub -.->|after| hello_shell" in mermaid
    assert "hello_shell -.->|after| continue_processing" in mermaid
    assert '"hello_stub" [shape=box];' in graph(done).to_dot()


def test_stub_takes_step_options(flow_run: Any) -> None:
    skipped = stub("maybe", when=lambda enabled: enabled)
    result = flow_run(skipped, {"enabled": False})
    assert result.spans["maybe"].status == "skipped"


def test_stub_location_is_the_call_site() -> None:
    import sys

    s = stub("here")
    assert s.location.endswith(f"test_shell.py:{sys._getframe().f_lineno - 1}")
