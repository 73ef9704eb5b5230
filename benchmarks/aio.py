"""What running a flow from asyncio costs: ``await flowfn.aio.arun`` against ``flowfn.run``.

    python benchmarks/aio.py                  # W1 (70 rounds) and W4 (7 rounds)
    python benchmarks/aio.py --repeat 15 --only W4

Three ways to run the same graph, one call at a time, end to end:

* ``run()``      — ``flowfn.run(graph)`` from plain code: one ``trio.run`` per call;
* ``aio cold``   — ``await flowfn.aio.arun(graph)`` inside ``asyncio.run``, nothing else
  running: every call starts trio as a guest of the loop and waits until it has stopped;
* ``aio shared`` — the same while another ``aio.arun`` call keeps the guest run alive (as in
  a server with requests in flight): the call only joins the shared run.

The three alternate, round after round, inside one loop (``run()`` blocks the idle loop
while it runs, which costs it nothing; the holder of ``aio shared`` is started and
cancelled around its call in each round, since no ``trio.run`` can start while a guest
run lives in the thread). Each timed call starts after ``gc.collect()``. Reported: best
(median) milliseconds per call, and the ratio of each ``aio`` variant to ``run()``: of the
best times, and [paired] the median over rounds of aio_i / run_i, each pair timed back to
back, the robust number on a shared machine. Target: 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from workloads import WORKLOADS

import flowfn.aio
from flowfn import Graph, graph, run, step

TARGET = 1.3


@step
async def keep_alive() -> None:
    """A flow that holds the shared guest run open until it is cancelled."""
    await trio.sleep_forever()


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def _atimed(fn: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def _measure(g: Graph, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"run": [], "aio cold": [], "aio shared": []}

    async def hosted() -> None:
        result = await flowfn.aio.arun(g)
        if result.status != "succeeded":
            raise RuntimeError(f"{g.name}: run {result.status}")

    run(g)  # warm-up of both
    await hosted()
    for _ in range(rounds):
        times["run"].append(_timed(lambda: run(g)))
        times["aio cold"].append(await _atimed(hosted))
        holder = asyncio.create_task(flowfn.aio.arun(keep_alive))
        await asyncio.sleep(0.001)  # the holder's guest run is up
        times["aio shared"].append(await _atimed(hosted))
        holder.cancel()
        try:
            await holder
        except asyncio.CancelledError:
            pass
    return times


def _ms(times: list[float]) -> str:
    return f"{min(times) * 1e3:.1f} ({statistics.median(times) * 1e3:.1f})"


def _ratio(times: list[float], base: list[float]) -> str:
    best = min(times) / min(base)
    paired = statistics.median(t / b for t, b in zip(times, base, strict=True))
    mark = "" if paired <= TARGET else "  over target"
    return f"{best:.2f} [{paired:.2f}]{mark}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds per workload")
    parser.add_argument("--only", default="W1,W4", help="comma-separated workload names")
    args = parser.parse_args(argv)
    print("| workload | steps | run() ms | aio cold ms | aio shared ms | cold / run() "
          "| shared / run() |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.only.split(","):
        w = WORKLOADS[name.strip()]()
        g = graph(*w.targets, name=w.name)
        # W1 is ten times shorter than W4: ten times the rounds, as benchmarks/run.py does.
        rounds = args.repeat * max(1, 10_000 // w.units)
        t = asyncio.run(_measure(g, rounds))
        print(f"| {w.name} {w.title} | {w.steps:,} | {_ms(t['run'])} | {_ms(t['aio cold'])} "
              f"| {_ms(t['aio shared'])} | {_ratio(t['aio cold'], t['run'])} "
              f"| {_ratio(t['aio shared'], t['run'])} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
