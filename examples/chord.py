"""The chord pattern: several fetches in parallel, one callback that aggregates them.

    fetch_api1 ──┐
    fetch_api2 ──┼─► aggregate
    fetch_api3 ──┘

There is no group object and no callback option: the callback is simply the step whose
parameters name the three fetches. It starts the moment the slowest one finishes.
Annotations say which step feeds which parameter, so the parameter names are free.

Run it:  python examples/chord.py
"""

from typing import Annotated

import trio

from flowfn import graph, run, step


async def _get(api: str, delay: float) -> dict[str, object]:
    await trio.sleep(delay)  # pretend this is an HTTP request
    return {"api": api, "items": [f"{api}-item-{i}" for i in range(2)]}


@step
async def fetch_api1() -> dict[str, object]:
    return await _get("api1", 0.05)


@step
async def fetch_api2() -> dict[str, object]:
    return await _get("api2", 0.15)


@step
async def fetch_api3() -> dict[str, object]:
    return await _get("api3", 0.10)


@step
def aggregate(
    first: Annotated[dict[str, object], fetch_api1],
    second: Annotated[dict[str, object], fetch_api2],
    third: Annotated[dict[str, object], "fetch_api3"],  # a name works as well as the object
) -> dict[str, dict[str, object]]:
    return {"api1": first, "api2": second, "api3": third}


flow = graph(aggregate)

if __name__ == "__main__":
    result = run(flow)
    for api, data in result.output.items():
        print(f"{api}: {data['items']}")
    print()
    print(result.report())
    fetches = [result.spans[f"fetch_api{i}"] for i in (1, 2, 3)]
    callback = result.spans["aggregate"]
    first_start = min(s.started for s in fetches if s.started is not None)
    slowest = max(s.ended for s in fetches if s.ended is not None)
    assert callback.started is not None
    print(f"\naggregate started after the slowest fetch: {callback.started >= slowest}")
    print(f"the fetches took {slowest - first_start:.2f} s in all "
          "(0.30 s if run one after another)")
