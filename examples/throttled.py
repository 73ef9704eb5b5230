"""Throttling: ten API calls mapped with ``each()``, at most five in flight at any time.

What it shows:
  * ``Annotated[str, each(list_endpoints)]`` runs ``call_api`` once per endpoint,
    concurrently, and hands the results on as a list in input order;
  * ``@step(limit="api")`` draws from a named capacity; ``run(..., limits={"api": 5})``
    sets its size for this run (every step that names ``"api"`` shares it);
  * the calls track how many of them are in flight: never more than five, and the ten
    0.1 s calls take about 0.2 s (two waves of five).

Run it:  python examples/throttled.py
"""

from typing import Annotated

import trio

from flowfn import each, graph, run, step


class InFlight:
    """Counts calls running right now and remembers the highest count seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


@step
def in_flight() -> InFlight:
    return InFlight()  # a fresh counter for every run


@step
def list_endpoints(count: int = 10) -> list[str]:
    return [f"/items/{i}" for i in range(count)]


@step(limit="api")
async def call_api(
    endpoint: Annotated[str, each(list_endpoints)],
    counter: Annotated[InFlight, in_flight],
) -> dict[str, str]:
    counter.enter()
    try:
        await trio.sleep(0.1)  # pretend this is the rate-limited HTTP call
        return {"endpoint": endpoint, "status": "200"}
    finally:
        counter.leave()


@step
def summarize(call_api: list[dict[str, str]], in_flight: InFlight) -> dict[str, int]:
    return {"calls": len(call_api), "max_concurrency": in_flight.peak}


flow = graph(summarize)
LIMITS = {"api": 5}

if __name__ == "__main__":
    result = run(flow, limits=LIMITS)
    print(f"calls made: {result.output['calls']}")
    print(f"max concurrency: {result.output['max_concurrency']}")
    calls = result.spans["call_api"]
    print(f"all calls took {calls.duration:.2f} s")
    print()
    print(result.report())
