"""The ``flowfn`` command, run the way users run it: real files, subprocesses, a terminal.

Subprocesses are slow to start (~0.5 s each), so only what needs a real process (exit
status, pipes, a pseudo-terminal, ``python -m flowfn``) uses one; the many error
messages are checked in-process through click's runner, with the same command object.
"""

import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Annotated, Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from rich.console import Console

import flowfn
from flowfn import Outcome, Step, arun, each, graph, run, step
from flowfn._progress import Progress, summary_table
from flowfn.cli import cli, execute

ROOT = Path(flowfn.__file__).resolve().parent.parent
ESC = "\x1b"

FLOWS = '''
import time
from typing import Annotated
from flowfn import each, graph, step


@step
def numbers(n: int) -> list[int]:
    return list(range(n))


@step
def square(x: Annotated[int, each(numbers)]) -> int:
    time.sleep(0.002)
    return x * x


@step
def total(square: list[int], label: str = "sum") -> dict:
    return {label: sum(square)}


flow = graph(total)
'''

FAILING = '''
from flowfn import graph, step


@step(retries=1, backoff=0)
async def charge(amount: int) -> int:
    raise ValueError(f"card declined for {amount}")


flow = graph(charge)
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def env() -> dict[str, str]:
    """The child imports the flowfn under test, whatever is installed."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "120"}


def flowfn_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowfn", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=60)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="flowfn")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts the flow's folder first
    return tmp_path


# --- as a user runs it: subprocesses -------------------------------------------------


def test_run_through_pipes_prints_the_output_alone_on_stdout(tmp_path: Path) -> None:
    write(tmp_path, "flows.py", FLOWS)
    done = flowfn_cmd("run", "flows.py:flow", "-i", "n=4", "-i", "label=total",
                      "--trace", "trace.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"total": 14}
    assert ESC not in done.stdout + done.stderr  # pipes get plain text
    assert "running total (3 steps)" in done.stderr
    assert re.search(r"done +square +4/4 items", done.stderr)
    assert re.search(r"square +succeeded .* 4 items · p50 ", done.stderr)
    assert "total succeeded in" in done.stderr
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"numbers", "square", "square[3]", "total"} <= names


def test_a_failed_run_prints_its_message_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path, "billing.py", FAILING)
    done = flowfn_cmd("run", "billing.py:flow", "-i", "amount=5", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "retry     charge  attempt 1: ValueError: card declined for 5" in done.stderr
    assert done.stderr.endswith(
        "step 'charge' failed on attempt 2 of 2 (billing.py:6):\n"
        "  ValueError: card declined for 5\n"
    )
    assert "Traceback" not in done.stderr


def test_an_import_error_shows_the_users_own_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.py", """
        from flowfn import step

        rate = 3
        total = rate * undefined_price
    """)
    done = flowfn_cmd("run", "broken.py:flow", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == (
        "could not import 'broken.py': NameError: name 'undefined_price' is not defined\n"
        "  broken.py:5\n"
        "    total = rate * undefined_price\n"
        "Run with --debug for the full traceback.\n"
    )
    debug = flowfn_cmd("run", "broken.py:flow", "--debug", cwd=tmp_path)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "could not import 'broken.py'" in debug.stderr


def test_show_draws_the_graph(tmp_path: Path) -> None:
    write(tmp_path, "flows.py", FLOWS)
    done = flowfn_cmd("show", "flows.py:flow", "--format", "mermaid", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == graph_of(tmp_path).to_mermaid() + "\n"


def graph_of(folder: Path) -> flowfn.Graph:
    namespace: dict[str, Any] = {}
    exec((folder / "flows.py").read_text(), namespace)
    flow: flowfn.Graph = namespace["flow"]
    return flow


def test_a_terminal_gets_the_live_display(tmp_path: Path) -> None:
    """Through a pseudo-terminal: the progress display draws (escape codes, the map's
    item counts), then the table and the output."""
    write(tmp_path, "flows.py", FLOWS.replace("time.sleep(0.002)", "time.sleep(0.02)"))
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowfn", "run", "flows.py:flow", "-i", "n=30"],
        stdin=child, stdout=child, stderr=child, cwd=tmp_path,
        env={**env(), "TERM": "xterm-256color"},
    )
    os.close(child)
    seen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=30) == 0
    text = seen.decode()
    assert ESC + "[" in text  # drawn, with cursor control and colours
    assert "steps done" in text
    assert "/30 items" in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"square +succeeded .* 30 items · p50", plain)
    assert plain.rstrip().endswith('"sum": 8555\r\n}')


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["flowfn"] == "flowfn.cli:main"


# --- messages, in-process ------------------------------------------------------------


def test_missing_file(in_tmp: Path) -> None:
    result = invoke("run", "nowhere.py:flow")
    assert result.exit_code == 2
    assert result.stderr == "file 'nowhere.py' does not exist.\n"


def test_missing_module(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows:flow", "-i", "n=1")  # a module of the cwd works...
    assert result.exit_code == 0, result.stderr
    result = invoke("run", "flowz:flow")
    assert result.exit_code == 2
    assert result.stderr == (
        "no file or module named 'flowz'. Give a path (flows.py:flow) or an importable "
        "module (package.flows:flow).\n"
    )


def test_missing_attribute_says_what_the_module_has(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:flw")
    assert result.exit_code == 2
    assert result.stderr == (
        "'flows.py' has no attribute 'flw'. Did you mean 'flow'?\n"
        "  It defines graphs: flow; steps: numbers, square, total.\n"
    )


def test_a_target_that_is_not_a_graph(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:time")
    assert result.exit_code == 2
    assert result.stderr == (
        "'flows.py:time' is a module, not a graph or a step.\n"
        "  It defines graphs: flow; steps: numbers, square, total.\n"
    )


def test_a_step_target_runs_its_graph(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:numbers", "-i", "n=3")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [0, 1, 2]


def test_unknown_input_and_bad_value(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:flow", "-i", "m=3")
    assert result.exit_code == 2
    assert result.stderr == (
        "2 bad inputs for run(total)\n"
        "  m: unknown input. This graph's inputs: label, n.\n"
        "  n: required input missing (asked for by numbers)\n"
    )
    result = invoke("run", "flows.py:flow", "-i", "n=four")
    assert result.exit_code == 2
    assert result.stderr == (
        "1 bad input for run(total)\n"
        "  n: invalid value for type, expected int (got 'four')\n"
    )


def test_inputs_from_a_file_and_json_values(in_tmp: Path) -> None:
    write(in_tmp, "shapes.py", """
        from dataclasses import dataclass
        from flowfn import graph, step

        @dataclass
        class Box:
            width: int
            height: int

        @step
        def area(box: Box, scale: list[int]) -> dict:
            return {"area": box.width * box.height, "scale": scale}

        flow = graph(area)
    """)
    (in_tmp / "inputs.json").write_text('{"box": {"width": 2, "height": 3}, "scale": [9]}')
    result = invoke("run", "shapes.py:flow", "--inputs", "inputs.json", "-i", "scale=[1, 2]")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"area": 6, "scale": [1, 2]}


@pytest.mark.parametrize(("args", "message"), [
    (["-i", "n"], "-i 'n': write an input as key=value (e.g. -i order_id=42).\n"),
    (["-i", "n={1"], "-i n=...: the value looks like JSON but does not parse: Expecting "
                     "property name enclosed in double quotes at character 1.\n"),
    (["--inputs", "none.json"], "--inputs 'none.json': cannot read the file (No such file "
                                "or directory).\n"),
    (["--inputs", "flows.py"], "--inputs 'flows.py': not valid JSON: Expecting value at "
                               "line 2.\n"),
])
def test_command_line_mistakes(in_tmp: Path, args: list[str], message: str) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:flow", *args)
    assert (result.exit_code, result.stderr) == (2, message)


def test_a_graph_error_while_importing(in_tmp: Path) -> None:
    write(in_tmp, "wrong.py", """
        from flowfn import graph, step

        @step
        def merge(fetch_order: int, fetch_orders: str) -> str:
            return fetch_orders

        @step
        def fetch_orders() -> int:
            return 1

        flow = graph(merge)
    """)
    result = invoke("run", "wrong.py:flow")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "could not import 'wrong.py': GraphError: 1 problem in graph(merge)\n\n"
        "  wrong.py:5 in def merge(fetch_order: int, fetch_orders: str) -> str\n"
    )


def test_a_syntax_error_shows_its_line(in_tmp: Path) -> None:
    write(in_tmp, "typo.py", "from flowfn import step\n\ndef f(:\n    pass\n")
    result = invoke("run", "typo.py:flow")
    assert result.exit_code == 1
    assert result.stderr == (
        "could not import 'typo.py': SyntaxError: invalid syntax (typo.py, line 3)\n"
        "  typo.py:3\n"
        "    def f(:\n"
        "Run with --debug for the full traceback.\n"
    )


def test_the_only_graph_needs_no_name_and_show_text(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("show", "flows.py")
    assert result.exit_code == 0
    assert result.stdout == (
        "graph(total): 3 steps; inputs: label: str = 'sum', n: int\n"
        "  numbers\n"
        "  square   <- numbers (each)\n"
        "  total    <- square\n"
    )
    assert invoke("show", "flows.py:flow", "--format", "dot").stdout.startswith(
        'digraph "total" {')


def test_output_that_is_not_json_is_printed_as_its_repr(in_tmp: Path) -> None:
    write(in_tmp, "objects.py", """
        from flowfn import graph, step

        class Thing:
            def __repr__(self) -> str:
                return "<Thing>"

        @step
        def make() -> object:
            return Thing()

        flow = graph(make)
    """)
    result = invoke("run", "objects.py:flow")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "<Thing>\n"


# --- the display, through rich's own console capture ---------------------------------


def test_progress_display_mid_run() -> None:
    """What the live display shows while a map is half done (virtual time)."""
    console = Console(record=True, force_terminal=True, width=100)

    @step
    async def numbers() -> list[int]:
        return list(range(10))

    @step
    async def wait(x: Annotated[int, each(numbers)]) -> int:
        await trio.sleep(x)
        return x

    @step
    async def total(waited: Annotated[list[int], wait]) -> int:
        return sum(waited)

    @step
    async def watcher() -> None:
        await trio.sleep(4.5)
        console.print(progress)

    flow = graph(total, watcher)
    progress = Progress(flow)
    trio.run(arun, flow, instruments=[progress.finder()],
             clock=trio.testing.MockClock(autojump_threshold=0))
    text = console.export_text()
    assert re.search(r"1/4 steps done · 2 running · 1 waiting", text), text
    assert re.search(r"wait [━╺╸]+ 5/10 items, 5 running", text), text
    assert "running: wait, watcher" in text


def test_execute_on_a_terminal_console(tmp_path: Path) -> None:
    """The live path in-process: the final table and the output after it."""
    console = Console(record=True, force_terminal=True, width=100)
    out = tmp_path / "out.txt"

    @step
    def hello(name: str) -> str:
        return f"hello {name}"

    with out.open("w") as stream:
        execute(graph(hello), {"name": "Ada"}, console=console, out=stream)
    text = console.export_text()
    assert re.search(r"hello +succeeded", text)
    assert out.read_text() == '"hello Ada"\n'


def test_the_table_sums_up_a_large_map() -> None:
    @step
    async def items() -> list[int]:
        return list(range(1000))

    @step
    async def check(x: Annotated[int, each(items)]) -> int:
        await trio.sleep(1 + x % 10)
        if x in (7, 700):
            raise ValueError(f"bad item {x}")
        return x

    @step
    async def count(checked: Annotated[list[Outcome[int]], check]) -> int:
        return len(checked)

    result = run(graph(count), clock=trio.testing.MockClock(autojump_threshold=0))
    console = Console(record=True, width=120)
    console.print(summary_table(result))
    lines = console.export_text().splitlines()
    assert len(lines) == 4
    assert re.match(r"check +failed +10.00s +1 +1,000 items · 2 failed · p50 5.50s · max 10.00s"
                    r" · attempt 1: ValueError: bad item 7", lines[2]), lines[2]


def test_the_table_of_a_large_graph_keeps_the_notable_steps() -> None:
    async def noop() -> None:
        await trio.sleep(1)

    async def slow() -> None:
        await trio.sleep(5)

    steps = [Step(noop, name=f"s{i:03}") for i in range(100)] + [Step(slow, name="slow")]
    result = run(graph(*steps), clock=trio.testing.MockClock(autojump_threshold=0))
    console = Console(record=True, width=120)
    console.print(summary_table(result))
    lines = console.export_text().splitlines()
    assert len(lines) == 1 + 10 + 1  # header, the 10 slowest, what was left out
    assert any(line.startswith("slow ") for line in lines)
    assert lines[-1].strip() == "... 91 more steps (91 succeeded)"


def test_debug_shows_flowfns_log_records(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    result = invoke("run", "flows.py:flow", "-i", "n=2", "--debug")
    assert result.exit_code == 0, result.stderr
    assert "DEBUG flowfn: step 'numbers' started" in result.stderr
    assert "DEBUG flowfn: step 'square[1]' finished in " in result.stderr


def test_debug_logging_lasts_for_the_command_only(in_tmp: Path) -> None:
    write(in_tmp, "flows.py", FLOWS)
    log = logging.getLogger("flowfn")
    handlers, level = list(log.handlers), log.level
    assert invoke("run", "flows.py:flow", "-i", "n=2", "--debug").exit_code == 0
    assert (log.handlers, log.level) == (handlers, level)
