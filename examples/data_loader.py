"""Two independent fetches run at the same time; a merge step waits for both.

Run it:  python examples/data_loader.py
"""

from typing import Annotated

import trio

from flowfn import graph, run, step


@step
async def fetch_users() -> list[str]:
    await trio.sleep(0.2)  # pretend this is an HTTP call
    return ["Alice", "Bob"]


@step
async def fetch_orders() -> list[dict[str, int]]:
    await trio.sleep(0.2)
    return [{"id": 1}, {"id": 2}]


@step
def merge_results(
    users: Annotated[list[str], fetch_users],
    orders: Annotated[list[dict[str, int]], "fetch_orders"],
) -> dict[str, object]:
    return {"users": users, "orders": orders}


flow = graph(merge_results)

if __name__ == "__main__":
    result = run(flow)
    print(result.output)
    print()
    print(result.report())
    both = result.spans["fetch_users"], result.spans["fetch_orders"]
    assert both[0].started is not None and both[1].ended is not None
    overlap = both[1].started is not None and both[1].started < both[0].ended  # type: ignore[operator]
    print(f"\nfetch_users and fetch_orders ran in parallel: {overlap}")
