"""A flow with a human step beside a slow map, for the human-step tests.

``approve`` waits for a person while ``crunch`` (a map of slow items) runs on; ``decide``
needs both. Every ``crunch`` item logs its path when it completes, in the file named by
``FLOWFN_TEST_LOG``, so a test can tell which items ran in which process. As a script:

    python tests/flows_human.py run DB RUN_ID
    python tests/flows_human.py resume DB RUN_ID '{"approve": {...}}'

prints ``started``, then the run's status and output as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Annotated

from flowfn import SQLiteStore, ask, each, graph, resume, run, step


@dataclass
class Decision:
    approved: bool
    reviewer: str
    note: str = ""


approve = ask("approve", Decision, title="Approve the batch")


@step
def items() -> list[int]:
    return list(range(12))


@step
def crunch(x: Annotated[int, each(items)]) -> int:
    time.sleep(0.03)  # real work in a thread: the parent kills the process meanwhile
    log = os.environ.get("FLOWFN_TEST_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"crunch[{x}]\n")
    return x * 10


@step
def decide(approve: Decision, crunch: list[int]) -> str:
    verdict = "approved" if approve.approved else "rejected"
    return f"{verdict} by {approve.reviewer}: {sum(crunch)}"


flow = graph(decide)


def main(argv: list[str]) -> int:
    command, db, run_id, *rest = argv
    store = SQLiteStore(db)
    print("started", flush=True)
    if command == "run":
        result = run(flow, store=store, run_id=run_id, max_concurrency=2)
    else:
        answers = json.loads(rest[0]) if rest else None
        result = resume(flow, run_id, store=store, answers=answers)
    print(json.dumps({"status": result.status, "output": result.output,
                      "waiting": [f.name for f in result.waiting]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
