"""A flow with a map, a subflow and a slow sibling, for the durable-run tests.

Every step body records its path when it *completes* — in ``COMPLETED`` in this process,
and in the file named by ``FLOWFN_TEST_LOG`` when set — so a test can tell which bodies
ran in which process. Run as a script, it runs or resumes the flow against a SQLite file:

    python tests/flows_durable.py run|resume DB RUN_ID
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import trio

from flowfn import SQLiteStore, current_span, each, graph, resume, run, step, subflow

COMPLETED: list[str] = []


def done() -> None:
    path = current_span().path
    COMPLETED.append(path)
    log = os.environ.get("FLOWFN_TEST_LOG")
    if log:
        with open(log, "a") as f:
            f.write(path + "\n")


@step
async def numbers() -> list[int]:
    await trio.sleep(0.01)
    done()
    return list(range(8))


@step
async def square(x: Annotated[int, each(numbers)]) -> int:
    await trio.sleep(0.004 * (x % 4 + 1))
    done()
    return x * x


@step
async def slow_sibling() -> str:
    await trio.sleep(0.06)
    done()
    return "slow"


@step
async def shout(word: str) -> str:
    await trio.sleep(0.015)
    done()
    return word.upper()


@step
async def exclaim(shout: str) -> str:
    await trio.sleep(0.015)
    done()
    return shout + "!"


branch = subflow(graph(exclaim), name="branch", inputs={"word": "hello"})


@step
async def total(square: list[int], slow_sibling: str, branch: str) -> dict[str, str | int]:
    done()
    return {"sum": sum(square), "slow": slow_sibling, "branch": branch}


flow = graph(total)
EXPECTED = {"sum": sum(x * x for x in range(8)), "slow": "slow", "branch": "HELLO!"}

#: Each stored path and the paths that must be stored before it (its dependencies).
DEPENDS = {
    **{f"square[{i}]": ["numbers"] for i in range(8)},
    "square": ["numbers", *(f"square[{i}]" for i in range(8))],
    "branch/exclaim": ["branch/shout"],
    "branch": ["branch/shout", "branch/exclaim"],
    "total": ["square", "slow_sibling", "branch"],
}


def main(argv: list[str]) -> int:
    command, db, run_id = argv
    store = SQLiteStore(db)
    print("started", flush=True)
    if command == "run":
        result = run(flow, store=store, run_id=run_id)
    else:
        result = resume(flow, run_id, store=store)
    print(json.dumps(result.output, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
