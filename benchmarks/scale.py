"""Does flowfn stay linear? graph() and peak RSS at 100,000 steps (W4 made ten times deeper).

    python benchmarks/run.py --scale               # the same as: python benchmarks/scale.py
    python benchmarks/scale.py --repeat 5

1. ``graph()`` µs per step on W4's shape at 10,000 steps (100 layers x 100) and at 100,000
   steps (1,000 layers x 100; same seed, same 1-3 random parents per step), in one child
   process, the two sizes alternating, each build after ``gc.collect()`` with the previous
   graph freed first; best (median) of ``--repeat`` builds each. Target (Architecture
   issue): 100,000-step µs/step <= 1.3x the 10,000-step one.
2. Peak RSS of a 100,000-step run: one child process builds the workload and runs it on the
   raw-trio baseline, another builds it, calls ``graph()`` and runs it through
   ``flowfn.arun``; each runs twice (a warm-up, then a timed run) and reports its
   ``ru_maxrss``. Both children hold the same ``Step`` objects (the workload builds them;
   the baseline calls their functions). Target: flowfn <= 1.5x the baseline's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
from workloads import w4_layers

from flowfn import arun, graph

BUILD_RATIO_TARGET = 1.3
RSS_RATIO_TARGET = 1.5
WIDTH = 100


def _builds(repeat: int) -> dict[str, Any]:
    small, big = w4_layers(100, WIDTH), w4_layers(1000, WIDTH)
    times: dict[int, list[float]] = {small.steps: [], big.steps: []}
    for _ in range(repeat):
        for w in (small, big):
            gc.collect()
            start = time.perf_counter()
            g = graph(*w.targets, name=w.name)
            times[w.steps].append(time.perf_counter() - start)
            assert len(g) == w.steps
            del g
    return {str(n): [t / n for t in ts] for n, ts in times.items()}


def _current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss(kind: str) -> dict[str, Any]:
    w = w4_layers(1000, WIDTH)
    stages = {"workload": _current_mb()}
    if kind == "raw":
        fn = w.raw
    else:
        g = graph(*w.targets, name=w.name)
        stages["graph()"] = _current_mb()

        async def fn() -> None:
            result = await arun(g)
            assert result.status == "succeeded", result.status

    trio.run(fn)  # warm-up
    gc.collect()
    start = time.perf_counter()
    trio.run(fn)
    elapsed = time.perf_counter() - start
    stages["after the runs"] = _current_mb()
    return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "us_per_step": elapsed / w.steps * 1e6, "stages": stages}


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"scale benchmark {args} failed (exit code {out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(repeat: int) -> None:
    print(f"scale: W4's shape at 10,000 and 100,000 steps; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    builds = _child("build", str(repeat))
    small, big = (sorted(builds[k]) for k in ("10000", "100000"))
    ratio = big[0] / small[0]
    print(f"graph() µs/step, best (median) of {repeat}: 10,000 steps "
          f"{small[0] * 1e6:.1f} ({statistics.median(small) * 1e6:.1f}), 100,000 steps "
          f"{big[0] * 1e6:.1f} ({statistics.median(big) * 1e6:.1f}); ratio {ratio:.2f} best, "
          f"{statistics.median(big) / statistics.median(small):.2f} of the medians; "
          f"target <= {BUILD_RATIO_TARGET}: {_verdict(ratio <= BUILD_RATIO_TARGET)}")
    raw, flow = _child("rss", "raw"), _child("rss", "flowfn")
    rss = flow["rss_mb"] / raw["rss_mb"]
    print(f"100,000-step run, peak RSS: raw trio {raw['rss_mb']:.0f} MiB, flowfn "
          f"{flow['rss_mb']:.0f} MiB (with its graph); ratio {rss:.2f}; target <= "
          f"{RSS_RATIO_TARGET}: {_verdict(rss <= RSS_RATIO_TARGET)}")
    for side, data in (("raw", raw), ("flowfn", flow)):
        stages = ", ".join(f"{stage} {mb:.0f}" for stage, mb in data["stages"].items())
        print(f"  {side} process RSS (MiB) after: {stages}; peak {data['rss_mb']:.0f}")
    print(f"  (one timed run each, µs/step: raw {raw['us_per_step']:.1f}, flowfn "
          f"{flow['us_per_step']:.1f}; single runs in separate processes, indicative only)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        what, arg = args.child
        print(json.dumps(_builds(int(arg)) if what == "build" else _rss(arg)))
        return
    report(args.repeat)


if __name__ == "__main__":
    main()
