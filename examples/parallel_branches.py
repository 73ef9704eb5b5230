"""Parallel branches: one small workflow run twice, side by side, then a step after both.

    branch1: hello_stub ─► hello_python ─► hello_shell ─┐
                                                        ├─► continue_processing
    branch2: hello_stub ─► hello_python ─► hello_shell ─┘

What it shows:
  * a workflow is a graph; ``subflow(workflow, name="branch1")`` turns a whole graph into
    one step of a bigger one. Using the same graph twice gives two independent branches,
    and they run at the same time (nothing to configure);
  * inside the branch, ``stub`` (a placeholder), a plain Python function and a ``shell``
    command are ordered with ``after=`` — they pass no data to each other;
  * ``stub("continue_processing", after=[branch1, branch2])`` waits for both branches;
  * every step of a branch has a span under the branch's span: ``branch1/hello_shell``.

Run it:  python examples/parallel_branches.py
"""

import time

from flowfn import graph, run, shell, step, stub, subflow


def hello() -> str:
    """An ordinary function, the kind of thing a branch does."""
    time.sleep(0.1)  # blocking work is fine: a plain `def` step runs in a worker thread
    return "Hello from Python!"


hello_stub = stub("hello_stub")
hello_python = step(name="hello_python", after=[hello_stub])(hello)
hello_shell = shell("echo 'Hello World!'", name="hello_shell", after=[hello_python])
# The notebook step goes here once notebook() lands (extra flowfn[notebook]):
#     hello_notebook = notebook("examples/common/simple_notebook.ipynb",
#                               name="hello_notebook", after=[hello_shell])
# and the branch graph below is then graph(hello_notebook).

workflow = graph(hello_shell, name="hello_workflow")

branch1 = subflow(workflow, name="branch1")
branch2 = subflow(workflow, name="branch2")
continue_processing = stub("continue_processing", after=[branch1, branch2])

flow = graph(continue_processing)

if __name__ == "__main__":
    result = run(flow)
    for branch in ("branch1", "branch2"):
        print(f"{branch}: shell said {result[branch]!r}, "
              f"python said {result[f'{branch}/hello_python']!r}")
    print(f"continue_processing: {result.spans['continue_processing'].status}")
    print()
    print(result.report())
    one, two = result.spans["branch1"], result.spans["branch2"]
    assert one.started is not None and one.ended is not None
    assert two.started is not None and two.ended is not None
    print(f"\nthe two branches ran in parallel: {two.started < one.ended and one.started < two.ended}")
