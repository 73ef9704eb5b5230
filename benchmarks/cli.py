"""What seeing a run costs: ``flowfn run``'s display, and OpenTelemetry left unconfigured.

    python benchmarks/cli.py                 # both, W4 (10,000 steps), 15 rounds
    python benchmarks/cli.py --repeat 31

1. ``flowfn run`` against ``run()``: W4 (benchmarks/workloads.py) through the command's
   own ``execute()`` — the live progress display on a console that believes it is a
   terminal (``force_terminal=True``) writing to the null device, its refresh thread
   drawing 8 times a second, the events counted, the final table and the JSON output —
   against a bare ``run(flow)``, in one process, interleaved, after a warm-up each.
   Target: <= 1.2x.
2. OpenTelemetry installed (and imported) but not configured: ``observers()``, the probe
   a run makes before it starts, plus ``run()``, against ``run()`` alone. The probe finds
   the API's proxy provider and returns no observer, so nothing else changes.
   Target: <= 1.05x.

Times are CPU time of the process (``time.process_time``, so the display's refresh thread
counts); both ratios compare the best of the rounds (the medians in brackets). ``graph()``
is built once, outside the timings.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable

import opentelemetry.trace  # noqa: F401  (installed and imported, never configured)
from rich.console import Console
from workloads import w4_layers

from flowfn import Graph, graph, run
from flowfn._observe import observers
from flowfn.cli import execute

DISPLAY_TARGET = 1.2
OTEL_TARGET = 1.05


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of the whole process (the display's refresh thread included): on a
    shared machine, wall time measures the neighbours as much as us."""
    gc.collect()
    began = time.process_time()
    fn()
    return time.process_time() - began


def compare(name: str, base: Callable[[], object], other: Callable[[], object],
            repeat: int, target: float) -> bool:
    base(), other()  # warm-up
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        a.append(timed(base))
        b.append(timed(other))
    best = min(b) / min(a)
    median = statistics.median(b) / statistics.median(a)
    ok = best <= target
    print(f"{name}: run() {min(a) * 1e3:.1f} ms, with it {min(b) * 1e3:.1f} ms "
          f"-> {best:.3f}x ({median:.3f}x median)  target <= {target}: "
          f"{'ok' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    flow: Graph = graph(*w4_layers().targets)
    with open(os.devnull, "w") as null:
        console = Console(file=null, force_terminal=True, width=120)

        def command() -> None:
            execute(flow, {}, console=console, out=null)

        def probed() -> None:
            observers()
            run(flow)

        probe = min(timeit.repeat(observers, number=10_000, repeat=5)) / 10_000
        print(f"W4: {len(flow)} steps; observers() probe {probe * 1e6:.2f} µs, "
              f"returns {observers()!r}")
        ok = compare("flowfn run (live display)", lambda: run(flow), command, args.repeat,
                     DISPLAY_TARGET)
        ok &= compare("OTel installed, unconfigured", lambda: run(flow), probed,
                      args.repeat, OTEL_TARGET)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
