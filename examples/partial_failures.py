"""Partial failures: three fetches, one of them fails, the collector decides what that means.

What it shows:
  * a parameter typed ``Outcome[T]`` receives ``Value(x)`` when the upstream succeeded or
    ``Error(exc)`` when it raised — no try/except inside every fetch, no success flags;
  * a failure that an ``Outcome`` parameter consumes does not fail the run (it is still
    listed in ``result.failures`` and in the report);
  * the collector raises when *all* fetches failed, and then the run fails with a message
    naming that step (shown with ``overrides=``, which makes steps raise on demand).

Run it:  python examples/partial_failures.py
"""

import trio

from flowfn import Error, Outcome, RunFailed, Value, graph, run, step


@step
async def fetch_api1() -> dict[str, int]:
    await trio.sleep(0.05)
    return {"orders": 12}


@step
async def fetch_api2() -> dict[str, int]:
    await trio.sleep(0.02)
    raise ConnectionError("api2.example.com refused the connection")


@step
async def fetch_api3() -> dict[str, int]:
    await trio.sleep(0.08)
    return {"customers": 4}


@step
def handle_results(
    fetch_api1: Outcome[dict[str, int]],
    fetch_api2: Outcome[dict[str, int]],
    fetch_api3: Outcome[dict[str, int]],
) -> dict[str, object]:
    data: dict[str, dict[str, int]] = {}
    errors: dict[str, str] = {}
    for source, result in {"api1": fetch_api1, "api2": fetch_api2, "api3": fetch_api3}.items():
        match result:
            case Value(value=value):
                data[source] = value
            case Error(error=exc):
                errors[source] = f"{type(exc).__name__}: {exc}"
    if not data:
        raise ValueError(f"all {len(errors)} data fetches failed")
    return {"successful": sorted(data), "failed": errors, "data": data}


flow = graph(handle_results)

if __name__ == "__main__":
    result = run(flow)
    print(f"status: {result.status}")
    print(f"successful fetches: {result.output['successful']}")
    print(f"failed fetches: {result.output['failed']}")
    print(f"failures recorded on the run: {sorted(result.failures)}")
    print()
    print(result.report())

    print("\n--- when every fetch fails:")
    try:
        run(flow, overrides={fetch: ConnectionError(f"{fetch.name} is down")
                             for fetch in (fetch_api1, fetch_api2, fetch_api3)})
    except RunFailed as exc:
        print(f"RunFailed: {exc}")
        print()
        print(exc.result.report())
