"""Two steps take the same graph input and run side by side; a third adds their outputs.

What it shows:
  * a parameter that names no step (``value``) is a *graph input*, and every step that
    asks for ``value`` gets the same one;
  * a parameter named like a step (``step1``) receives that step's output — no lambdas,
    no context lookups: the signature is the wiring;
  * independent steps run in parallel without being told to.

Run it:  python examples/parallel_sum.py
"""

import trio

from flowfn import graph, run, step


@step
async def step1(value: int) -> int:
    await trio.sleep(0.1)  # pretend to do some work
    return value


@step
async def step2(value: int) -> int:
    await trio.sleep(0.1)
    return value


@step
def step3(step1: int, step2: int) -> int:
    # Both parameters are named after steps, so step3 waits for both of them.
    return step1 + step2


flow = graph(step3)

if __name__ == "__main__":
    result = run(flow, {"value": 10})
    print(f"output: {result.output}")  # 20
    print()
    print(result.report())
    first, second = result.spans["step1"], result.spans["step2"]
    assert first.started is not None and first.ended is not None
    assert second.started is not None and second.ended is not None
    parallel = second.started < first.ended and first.started < second.ended
    print(f"\nstep1 and step2 ran in parallel: {parallel}")
