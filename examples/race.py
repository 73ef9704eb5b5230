"""A race: ask a fast source and a reliable one at once, keep the first good answer.

What it shows:
  * ``race(fast_source, reliable_source, name="data")`` is a step; its output is the first
    *successful* contestant's output, and ``result.spans["data"].winner`` names it;
  * the loser is cancelled as soon as there is a winner (its span says ``cancelled`` and
    why), so the slow request does not keep running in the background;
  * a contestant that *fails* does not win: the race waits for the next one (shown by
    making ``fast_source`` raise with ``overrides=``).

Run it:  python examples/race.py
"""

import trio

from flowfn import RunResult, graph, race, run, step


@step
async def fast_source(query: str) -> dict[str, str]:
    await trio.sleep(0.05)  # usually answers quickly...
    return {"query": query, "answer": "42", "source": "fast"}


@step
async def reliable_source(query: str) -> dict[str, str]:
    await trio.sleep(0.3)  # ...this one is slow but always there
    return {"query": query, "answer": "42", "source": "reliable"}


data = race(fast_source, reliable_source, name="data")


@step
def use_data(data: dict[str, str]) -> str:  # wired to the race by its name
    return f"answer {data['answer']} (from the {data['source']} source)"


flow = graph(use_data)


def describe(title: str, result: RunResult) -> None:
    print(f"--- {title}")
    print(f"output: {result.output}")
    print(f"winner: {result.spans['data'].winner}")
    for name in ("fast_source", "reliable_source"):
        span = result.spans[name]
        print(f"{name}: {span.status}" + (f" ({span.reason})" if span.reason else ""))
    print()
    print(result.report())
    print()


if __name__ == "__main__":
    describe("normal day", run(flow, {"query": "meaning of life"}))
    outage = run(flow, {"query": "meaning of life"},
                 overrides={fast_source: ConnectionError("fast source is down")})
    describe("the fast source is down", outage)
