"""``notebook()`` steps (DESIGN §3, extra ``flowfn[notebook]``).

Executing a notebook starts a real Jupyter kernel (about a second), so the runs that
check outputs share one module-scoped run of several notebook steps in parallel, and the
cancellation tests use real time, kept short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("nbclient")
pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

import nbformat

from flowfn import (
    GraphError,
    NotebookError,
    RunFailed,
    RunResult,
    StepTimeout,
    graph,
    notebook,
    run,
    step,
    subflow,
)

DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "tiny.ipynb"
FAILING = DATA / "failing.ipynb"


def cells(path: Path) -> list[Any]:
    return list(nbformat.read(str(path), as_version=4).cells)


def stdout_of(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")


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


def wait_gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


# --- building the step: parameters become the signature -----------------------------------


def test_parameters_cell_is_the_signature() -> None:
    flow = graph(notebook(TINY, name="report"))
    assert list(flow.inputs) == ["n", "label"]
    assert flow.inputs["n"].default == 2
    assert flow.inputs["label"].default == "hello"
    assert flow.inputs["label"].type is str  # `label: str = "hello"` in the cell


def test_fixed_parameters_are_not_inputs_and_steps_are_wired() -> None:
    @step
    def count() -> int:
        return 7

    nb = notebook(TINY, name="report", parameters={"n": count, "label": "fixed"})
    flow = graph(nb)
    assert flow.inputs == {}
    assert {s.name for s in flow.steps} == {"count", "report"}


def test_wired_parameter_is_type_checked_against_the_cell_annotation() -> None:
    @step
    def number() -> int:
        return 3

    with pytest.raises(GraphError, match="label"):
        graph(notebook(TINY, name="report", parameters={"label": number}))


def test_unknown_parameter_names_what_the_cell_declares() -> None:
    with pytest.raises(TypeError) as info:
        notebook(TINY, name="report", parameters={"m": 1})
    message = str(info.value)
    assert "parameters= names 'm'" in message
    assert "Its parameters: label, n." in message


def test_missing_notebook_file() -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        notebook(DATA / "nope.ipynb", name="nope")


def test_location_is_the_call_site() -> None:
    nb = notebook(TINY, name="report")
    assert nb.location.endswith(f"test_notebook.py:{sys._getframe().f_lineno - 1}")


# --- one real run of several notebook steps -------------------------------------------------


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path, Path]:
    """Two notebook steps at once: one beside its notebook with ``n`` wired to a step,
    one inside a subflow with ``n`` fixed, writing to an ``output_dir`` made on demand.
    Both get ``label`` from the run's input (through the subflow's input for the second).
    """
    out_dir = tmp_path_factory.mktemp("out") / "nested"
    beside = tmp_path_factory.mktemp("beside")
    shutil.copy(TINY, beside / "tiny.ipynb")

    @step
    def count() -> int:
        return 7

    wired = notebook(beside / "tiny.ipynb", name="wired", parameters={"n": count})
    inner = notebook(TINY, name="report", parameters={"n": 5}, output_dir=out_dir)
    branch = subflow(graph(inner), name="branch1")
    result = run(graph(wired, branch), {"label": "hi"})
    return result, out_dir, beside


def test_output_is_the_executed_copy_path(executed: tuple[RunResult, Path, Path]) -> None:
    result, out_dir, beside = executed
    assert result["wired"] == beside / "tiny.wired.ipynb"  # next to the notebook
    assert isinstance(result["wired"], Path)
    assert result["wired"].exists()
    # in output_dir, named by the step's path inside the subflow
    assert result["branch1"] == out_dir / "tiny.branch1.report.ipynb"
    assert result["branch1"].exists()


def test_parameters_are_injected_after_the_parameters_cell(
        executed: tuple[RunResult, Path, Path]) -> None:
    result, _, _ = executed
    copy = cells(result["branch1"])
    assert len(copy) == 4
    assert copy[1].metadata["tags"] == ["parameters"]
    assert copy[2].metadata["tags"] == ["injected-parameters"]
    assert copy[2].source == (
        "# Parameters injected by flowfn (step 'branch1/report')\nn = 5\nlabel = 'hi'\n"
    )
    assert stdout_of(copy[3]) == "hi 50\n"
    assert copy[3].execution_count is not None
    assert all(not c.get("outputs") for c in cells(TINY))  # the original is untouched


def test_wired_parameter_from_an_upstream_step(executed: tuple[RunResult, Path, Path]) -> None:
    result, _, _ = executed
    assert result.spans["wired"].input == {"n": 7, "label": "hi"}
    assert stdout_of(cells(result["wired"])[3]) == "hi 70\n"


def test_notebook_span_hangs_under_the_subflow(executed: tuple[RunResult, Path, Path]) -> None:
    result, _, _ = executed
    child = result.spans["branch1"].children["report"]
    assert child.status == "succeeded"
    assert child.path == "branch1/report"


def test_notebook_steps_run_in_parallel(executed: tuple[RunResult, Path, Path]) -> None:
    result, _, _ = executed
    a, b = result.spans["wired"], result.spans["branch1"].children["report"]
    assert a.started is not None and b.started is not None
    assert a.ended is not None and b.ended is not None
    assert a.started < b.ended and b.started < a.ended


# --- failures ---------------------------------------------------------------------------------


def test_failing_cell_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunFailed) as info:
        run(notebook(FAILING, name="divide", output_dir=tmp_path))
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith("step 'divide' failed on attempt 1: NotebookError: notebook '")
    assert first.endswith(
        "failing.ipynb' failed in cell [3], which starts 'value = 10 / divisor': "
        "ZeroDivisionError: division by zero"
    )
    assert f"executed copy: {tmp_path / 'failing.divide.ipynb'}" in message
    err = info.value.__cause__
    assert isinstance(err, NotebookError)
    assert (err.cell, err.ename, err.evalue) == (3, "ZeroDivisionError", "division by zero")
    # the executed copy is kept for debugging: the error is in it, later cells did not run
    copy = cells(tmp_path / "failing.divide.ipynb")
    assert [o["output_type"] for o in copy[4].outputs] == ["error"]
    assert copy[5].outputs == []


def test_value_that_cannot_be_written_into_a_cell_fails_the_step() -> None:
    @step
    def thing() -> object:
        return object()

    with pytest.raises(RunFailed, match="parameter 'n' is an object, which cannot be written"):
        run(notebook(TINY, name="report", parameters={"n": thing}))


# --- cancellation kills the kernel -------------------------------------------------------------


def sleepy_notebook(folder: Path) -> Path:
    """A notebook whose cell starts ``sleep 60`` and waits for it, after writing the pids
    of the kernel and of that child to ``pidfile``. It has no parameters cell: ``pidfile``
    is injected at the top."""
    path = folder / "sleepy.ipynb"
    code = ("import os, pathlib, subprocess\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "pathlib.Path(pidfile).write_text(f'{os.getpid()} {child.pid}')\n"
            "child.wait()")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), str(path))
    return path


def pids(pidfile: Path) -> list[int]:
    return [int(p) for p in pidfile.read_text().split()]


def test_failure_elsewhere_kills_the_kernel_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "kernel.pid"
    slow = notebook(sleepy_notebook(tmp_path), name="slow", parameters={"pidfile": str(pidfile)})

    @step
    async def boom() -> None:
        with trio.fail_after(20):  # the kernel is up and sleeping once the pids are written
            while not (pidfile.exists() and pidfile.read_text()):
                await trio.sleep(0.05)
        raise ValueError("boom")

    with pytest.raises(RunFailed, match="step 'boom' failed") as info:
        run(graph(slow, boom))
    assert info.value.result.spans["slow"].status == "cancelled"
    kernel, child = pids(pidfile)
    assert wait_gone(kernel, within=0.5)
    assert wait_gone(child, within=0.5)  # no orphan left by the cell


def runners_of(folder: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``folder`` (our notebook runner)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline and alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def test_timeout_kills_the_runner_and_the_kernel_quickly(tmp_path: Path) -> None:
    pidfile = tmp_path / "kernel.pid"
    slow = notebook(sleepy_notebook(tmp_path), name="slow", timeout=2,
                    parameters={"pidfile": str(pidfile)})
    began = time.monotonic()
    with pytest.raises(RunFailed) as info:
        run(slow)
    assert time.monotonic() - began < 3.5  # not the cell's 60 s
    assert isinstance(info.value.__cause__, StepTimeout)
    assert runners_of(tmp_path) == []
    # On a loaded machine the kernel may not have started within 2 s; when it did, it and
    # the cell's child are gone too (test_failure_elsewhere_... checks that every time).
    if pidfile.exists() and pidfile.read_text():
        kernel, child = pids(pidfile)
        assert wait_gone(kernel, within=0.5)
        assert wait_gone(child, within=0.5)


def test_real_work_pauses_virtual_time(flow_run: Any, tmp_path: Path) -> None:
    # Under the MockClock, a notebook's real seconds must not make virtual time leap
    # past its timeout= (that would be a false timeout).
    result = flow_run(notebook(TINY, name="report", timeout=1, parameters={"n": 3},
                               output_dir=tmp_path))
    assert stdout_of(cells(result.output)[3]) == "hello 30\n"


# --- without the extra ------------------------------------------------------------------------


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nbclient", None)  # `import nbclient` now fails
    with pytest.raises(ImportError) as info:
        notebook(TINY, name="report")
    assert "pip install 'pyflowfn[notebook]'" in str(info.value)
    assert "nbclient is not installed" in str(info.value)


def test_import_flowfn_does_not_need_the_extra() -> None:
    code = ("import sys\n"
            "for m in ('nbclient', 'nbformat', 'ipykernel'): sys.modules[m] = None\n"
            "import flowfn\n"
            "try:\n"
            "    flowfn.notebook('x.ipynb', name='x')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'pyflowfn[notebook]'" in out
