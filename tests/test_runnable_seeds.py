"""runnable's "Parallel Execution" seed scenarios, flowfn's way.

runnable's ``Parallel(branches={"branch1": create_workflow(), ...})`` is two ``subflow``
steps over the same graph; a ``Pipeline`` of tasks is a chain of steps ordered with
``after=``; ``Stub`` is ``stub()``, ``ShellTask`` is ``shell()``, ``NotebookTask`` is
``notebook()``. Both scenarios run in virtual time (``flow_run``); the shell command and
the notebook kernel are real processes, during which virtual time stands still.
"""

import itertools
from pathlib import Path
from typing import Any

import pytest
import trio

from flowfn import Graph, Span, current_span, graph, notebook, shell, step, stub, subflow

TINY = Path(__file__).resolve().parent / "data" / "tiny.ipynb"


def overlap(a: Span, b: Span) -> bool:
    assert None not in (a.started, a.ended, b.started, b.ended)
    return a.started < b.ended and b.started < a.ended  # type: ignore[operator]


# --- (a) the same workflow as two parallel branches, then continue_processing -----------------


async def hello() -> str:
    """runnable's examples.common.functions.hello, taking a (virtual) second."""
    await trio.sleep(1)
    return "Hello World!"


def create_workflow(out_dir: Path) -> Graph:
    """stub -> python -> shell -> notebook, in sequence (a runnable Pipeline)."""
    hello_stub = stub("hello_stub")
    hello_python = step(hello, name="hello_python", after=[hello_stub])
    hello_shell = shell("echo 'Hello World!'", name="hello_shell", after=[hello_python])
    hello_notebook = notebook(TINY, name="hello_notebook", after=[hello_shell],
                              output_dir=out_dir, parameters={"label": hello_python})
    return graph(hello_notebook)


def test_same_workflow_as_two_parallel_branches(flow_run: Any, flow_clock: Any,
                                                 tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    workflow = create_workflow(tmp_path)  # one graph, used by both branches
    branch1 = subflow(workflow, name="branch1", inputs={"n": 1})
    branch2 = subflow(workflow, name="branch2", inputs={"n": 2})
    continue_processing = stub("continue_processing", after=[branch1, branch2])
    pipeline = graph(continue_processing)

    result = flow_run(pipeline)
    spans = result.spans
    assert list(spans) == ["branch1", "branch2", "continue_processing"]
    b1, b2 = spans["branch1"], spans["branch2"]
    assert overlap(b1, b2)
    assert (b1.started, b2.started) == (0, 0)
    assert flow_clock.current_time() == 1  # one hello each, side by side
    # continue_processing waits for both branches
    assert spans["continue_processing"].status == "succeeded"
    assert spans["continue_processing"].started == max(b1.ended, b2.ended)  # type: ignore[type-var]
    # inside each branch, the four tasks ran in order
    for branch in (b1, b2):
        names = ["hello_stub", "hello_python", "hello_shell", "hello_notebook"]
        assert list(branch.children) == names
        chain = [branch.children[n] for n in names]
        assert all(s.status == "succeeded" for s in chain)
        for before, after in itertools.pairwise(chain):
            assert before.ended <= after.started  # type: ignore[operator]
        assert branch.children["hello_shell"].output == "Hello World!\n"
    # each branch executed its own copy of the notebook, with its own parameters
    assert result["branch1"] == tmp_path / "tiny.branch1.hello_notebook.ipynb"
    assert result["branch2"] == tmp_path / "tiny.branch2.hello_notebook.ipynb"
    import nbformat

    for path, expected in ((result["branch1"], "Hello World! 10\n"),
                           (result["branch2"], "Hello World! 20\n")):
        cell = nbformat.read(str(path), as_version=4).cells[3]
        assert "".join(o.get("text", "") for o in cell.outputs) == expected


# --- (b) nested parallel: a parallel of parallels ---------------------------------------------


@step
async def task(prefix: str, suffix: str) -> str:
    await trio.sleep(1)
    current_span().ran_at = trio.current_time()
    return prefix + suffix


def parallel_pipeline() -> Graph:
    """A parallel of two leaf workflows (Task A, Task B); ``prefix`` comes from outside."""
    leaf = graph(task)
    task_a = subflow(leaf, name="task_a", inputs={"suffix": "A"})
    task_b = subflow(leaf, name="task_b", inputs={"suffix": "B"})
    return graph(task_a, task_b)


def test_nested_parallel(flow_run: Any, flow_clock: Any) -> None:
    inner = parallel_pipeline()
    branch1 = subflow(inner, name="branch1", inputs={"prefix": "1"})
    branch2 = subflow(inner, name="branch2", inputs={"prefix": "2"})
    nested_parallel = subflow(graph(branch1, branch2), name="nested_parallel")
    end = stub("end", after=[nested_parallel])

    result = flow_run(graph(end, nested_parallel))
    assert result["nested_parallel"] == {
        "branch1": {"task_a": "1A", "task_b": "1B"},
        "branch2": {"task_a": "2A", "task_b": "2B"},
    }
    leaves = [result.span(f"nested_parallel/{b}/{t}/task")
              for b in ("branch1", "branch2") for t in ("task_a", "task_b")]
    assert [s.status for s in leaves] == ["succeeded"] * 4
    assert [(s.started, s.ended) for s in leaves] == [(0, 1)] * 4  # all at once
    assert all(overlap(a, b) for a in leaves for b in leaves)
    assert flow_clock.current_time() == 1  # not 4
    parallels = [result.span(f"nested_parallel/{b}") for b in ("branch1", "branch2")]
    assert overlap(*parallels)
    assert result.spans["end"].started == 1
    assert {s.attributes["ran_at"] for s in leaves} == {1}
