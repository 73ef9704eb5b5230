"""A cached step, run from a child process by the cache tests:

    python tests/flows_cache.py DB RUN_ID N

prints the output and whether the step's span was a cache hit, as JSON. The body logs
``ran`` to the file named by ``FLOWFN_TEST_LOG`` each time it runs.
"""

from __future__ import annotations

import json
import os
import sys

from flowfn import SQLiteStore, graph, run, step


@step(cache=True)
def expensive(n: int) -> list[int]:
    log = os.environ.get("FLOWFN_TEST_LOG")
    if log:
        with open(log, "a") as f:
            f.write("ran\n")
    return [i * i for i in range(n)]


flow = graph(expensive)


def main(argv: list[str]) -> int:
    db, run_id, n = argv
    result = run(flow, {"n": int(n)}, store=SQLiteStore(db), run_id=run_id)
    span = result.spans["expensive"]
    print(json.dumps({"output": result.output, "cached": span.cached}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
