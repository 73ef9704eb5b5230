"""A parallel of parallels: sub-workflows nested two levels deep, every leaf at once.

    flow
    ├── branch1 (subflow of sub_parallel, branch="1")
    │   ├── left  (subflow of pair, side="L"):  task_a ∥ task_b
    │   └── right (subflow of pair, side="R"):  task_a ∥ task_b
    ├── branch2 (subflow of sub_parallel, branch="2")
    │   ├── left  ...
    │   └── right ...
    └── end  (after both branches)

What it shows:
  * ``subflow`` nests without limit: a sub-workflow may itself contain subflows;
  * a sub-workflow's inputs come from ``inputs={...}`` (fixed values) or, when not given
    there, from the enclosing run's input of the same name (``branch`` flows down to
    ``pair`` through ``sub_parallel``);
  * nothing waits for a "level" to finish: all eight 0.2 s leaf tasks overlap, so the
    whole run takes about 0.2 s;
  * spans nest the same way: ``branch2/right/task_b``.

Run it:  python examples/nested_parallel.py
"""

from typing import Any

import trio

from flowfn import graph, run, step, subflow


@step
async def task_a(branch: str, side: str) -> str:
    await trio.sleep(0.2)
    return f"task {branch}{side}-A"


@step
async def task_b(branch: str, side: str) -> str:
    await trio.sleep(0.2)
    return f"task {branch}{side}-B"


# Innermost workflow: two independent tasks; with two targets its output is a dict.
pair = graph(task_a, task_b, name="pair")

# Middle level: the pair twice. `side` is fixed per use; `branch` is left open, so it
# becomes an input of sub_parallel.
left = subflow(pair, name="left", inputs={"side": "L"})
right = subflow(pair, name="right", inputs={"side": "R"})
sub_parallel = graph(left, right, name="sub_parallel")

# Top level: the middle workflow twice.
branch1 = subflow(sub_parallel, name="branch1", inputs={"branch": "1"})
branch2 = subflow(sub_parallel, name="branch2", inputs={"branch": "2"})


@step
def end(branch1: dict[str, Any], branch2: dict[str, Any]) -> list[str]:
    # branch1 == {"left": {"task_a": ..., "task_b": ...}, "right": {...}}
    return [task for branch in (branch1, branch2)
            for side in branch.values() for task in side.values()]


flow = graph(end)

if __name__ == "__main__":
    result = run(flow)
    print(f"output: {result.output}")
    print()
    print(result.report())
    leaves = [s for s in result.walk() if s.path.count("/") == 2]
    latest_start = max(s.started for s in leaves if s.started is not None)
    earliest_end = min(s.ended for s in leaves if s.ended is not None)
    print(f"\n{len(leaves)} leaf tasks, all running at the same time: {latest_start < earliest_end}")
    total = result.spans["end"].ended
    first = min(s.started for s in result.spans.values() if s.started is not None)
    assert total is not None
    print(f"whole run: {total - first:.2f} s (one leaf takes 0.2 s)")
