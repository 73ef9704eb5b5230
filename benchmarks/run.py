"""Scheduling overhead of flowfn against a hand-written raw-trio scheduler.

    python benchmarks/run.py                  # every workload (see benchmarks/README.md)
    python benchmarks/run.py --repeat 15 --only W1,W3
    python benchmarks/run.py --markdown       # the table as Markdown (for the README)
    python benchmarks/run.py --profile run --only W4   # cProfile of one flowfn run on W4
    python benchmarks/run.py --profile raw --only W4   # ... of the raw-trio baseline
    python benchmarks/run.py --profile build --only W4 # ... of graph()
    python benchmarks/run.py --scale          # graph() and peak RSS at 100,000 steps (scale.py)

Each workload runs in its own child process (so its peak RSS is its own); inside it, the
raw baseline and ``flowfn.arun`` run interleaved in ONE ``trio.run``, after one warm-up
each, with a ``gc.collect()`` before every timed run (the collector stays on during the
run: flowfn's allocations are part of its cost). Times are end-to-end: for flowfn,
``await arun(graph)`` including input checks, spans and the result object, excluding
``graph()``, which is timed separately. We report the best of the timed runs, with the
median beside it; the ratio is flowfn / raw of the best times (of the medians in brackets).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from workloads import WORKLOADS, Workload

from flowfn import Event, Graph, arun, graph

HERE = Path(__file__).resolve().parent
RATIO_TARGET = 1.3  # flowfn / raw, µs per step (W1, W3, W4, W5; the Architecture issue)
MAKESPAN_TARGET = 1.02  # W2: makespan / sleep
BUILD_TARGET_US = 100.0  # graph() µs per step, for the 10,000-step graph (W4)
BUILD_TARGET_ON = "W4"
EVENTS_ON = ("W4",)  # workloads also timed with a no-op on_event callback


@dataclass
class Stat:
    """Seconds of several runs: best and median."""

    best: float
    median: float

    @classmethod
    def of(cls, times: Sequence[float]) -> Stat:
        return cls(min(times), statistics.median(times))

    def per(self, n: int) -> Stat:
        return Stat(self.best / n, self.median / n)


@dataclass
class Measurement:
    name: str
    title: str
    steps: int
    units: int
    unit: str
    sleep: float | None
    build: Stat  # seconds per step
    raw: Stat  # seconds per unit (W2: whole makespan, seconds)
    flowfn: Stat
    events: Stat | None  # flowfn with a no-op on_event callback
    paired: float  # median over repeats of flowfn_i / raw_i (runs side by side)
    events_paired: float | None  # median of events_i / flowfn_i
    peak_rss_mb: float  # the child process (baseline and flowfn both ran in it)
    heap_raw_mb: float  # tracemalloc peak of one raw run
    heap_flowfn_mb: float  # tracemalloc peak of one flowfn run
    notes: list[str] = field(default_factory=list)


# --- measuring (in the child process) -------------------------------------------------------


def _noop_event(event: Event) -> None:
    return None


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def _flow_runner(g: Graph, **options: Any) -> Callable[[], Awaitable[Any]]:
    async def go() -> Any:
        result = await arun(g, **options)
        if result.status != "succeeded":
            raise RuntimeError(f"{g.name}: run {result.status}")
        return result.output

    return go


def _paired(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of ``a[i] / b[i]``: runs i were timed back to back, under the same load."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _heap_peak_mb(fn: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        trio.run(fn)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def runs_for(w: Workload, repeat: int) -> int:
    """``repeat`` timed runs for the 10,000-unit workloads; shorter ones get proportionally
    more (W1 and W3 are 10x shorter: 10x the runs), so every best-of sees as much time."""
    if w.sleep:
        return repeat
    return repeat * max(1, 10_000 // w.units)


def measure(w: Workload, repeat: int) -> Measurement:
    build_times: list[float] = []
    g: Graph | None = None
    for _ in range(repeat):
        g = None  # free the previous graph before building the next one
        gc.collect()
        start = time.perf_counter()
        g = graph(*w.targets, name=w.name)
        build_times.append(time.perf_counter() - start)
    assert g is not None
    if len(g) != w.steps:
        raise RuntimeError(f"{w.name}: graph has {len(g)} steps, expected {w.steps}")

    flow = _flow_runner(g)
    with_events = _flow_runner(g, on_event=_noop_event)
    times: dict[str, list[float]] = {"raw": [], "flowfn": [], "events": []}

    async def main() -> None:
        output = await flow()  # warm-up, and a correctness check
        if w.expected is not None and output != w.expected:
            raise RuntimeError(f"{w.name}: unexpected output")
        await w.raw()
        for _ in range(runs_for(w, repeat)):
            times["raw"].append(await _timed(w.raw))
            times["flowfn"].append(await _timed(flow))
            if w.name in EVENTS_ON:
                times["events"].append(await _timed(with_events))

    trio.run(main)
    divide = 1 if w.sleep else w.units
    return Measurement(
        name=w.name, title=w.title, steps=w.steps, units=w.units, unit=w.unit, sleep=w.sleep,
        build=Stat.of(build_times).per(w.steps),
        raw=Stat.of(times["raw"]).per(divide),
        flowfn=Stat.of(times["flowfn"]).per(divide),
        events=Stat.of(times["events"]).per(divide) if times["events"] else None,
        paired=_paired(times["flowfn"], times["raw"]),
        events_paired=_paired(times["events"], times["flowfn"]) if times["events"] else None,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        heap_raw_mb=_heap_peak_mb(w.raw),
        heap_flowfn_mb=_heap_peak_mb(flow),
    )


def _measure_in_child(name: str, repeat: int) -> Measurement:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", name, "--repeat", str(repeat)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"benchmark {name} failed (exit code {out.returncode})")
    data = json.loads(out.stdout)
    for key in ("build", "raw", "flowfn", "events"):
        if data[key] is not None:
            data[key] = Stat(**data[key])
    return Measurement(**data)


# --- reporting ------------------------------------------------------------------------------


def _us(s: Stat) -> str:
    return f"{s.best * 1e6:.1f} ({s.median * 1e6:.1f})"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def rows(ms: Sequence[Measurement]) -> list[list[str]]:
    out = [["workload", "steps", "raw µs/unit", "flowfn µs/unit", "ratio", "paired", "target",
            "graph() µs/step", "peak RSS MB", "heap MB raw/flowfn"]]
    for m in ms:
        if m.sleep:  # W2: makespan as a multiple of one sleep; ratio is flowfn / raw
            raw = f"makespan x{m.raw.best / m.sleep:.3f}"
            flow = f"makespan x{m.flowfn.best / m.sleep:.3f}"
            ratio = f"{m.flowfn.best / m.raw.best:.3f}"
            paired = f"{m.paired:.3f}"
            value = m.flowfn.best / m.sleep
            target = f"x{value:.3f} <= {MAKESPAN_TARGET} {_verdict(value <= MAKESPAN_TARGET)}"
        else:
            raw, flow = _us(m.raw), _us(m.flowfn)
            value = m.flowfn.best / m.raw.best
            ratio, paired = f"{value:.2f}", f"{m.paired:.2f}"
            target = f"<= {RATIO_TARGET} {_verdict(value <= RATIO_TARGET)}"
        if m.unit == "step":
            build = f"{m.build.best * 1e6:.1f}"
        else:  # W5: a two-step graph; its build time per step means nothing
            build = f"{m.build.best * m.steps * 1e6:.0f} total"
        if m.name == BUILD_TARGET_ON:
            build += f" (<= {BUILD_TARGET_US:g} {_verdict(m.build.best * 1e6 <= BUILD_TARGET_US)})"
        unit = f"{m.units} {m.unit}s" if m.unit != "step" else str(m.steps)
        out.append([f"{m.name} {m.title}", unit, raw, flow, ratio, paired, target, build,
                    f"{m.peak_rss_mb:.0f}", f"{m.heap_raw_mb:.1f} / {m.heap_flowfn_mb:.1f}"])
    return out


def render(table: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in table]
        lines.insert(1, "|" + "|".join(" --- " for _ in table[0]) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in table)


def event_lines(ms: Sequence[Measurement]) -> list[str]:
    def change(before: float, after: float) -> str:
        return (f"{before * 1e6:.1f} -> {after * 1e6:.1f} "
                f"({(after - before) * 1e6:+.1f}, {(after - before) / before:+.0%})")

    return [
        f"{m.name} on_event, no callback -> no-op callback, µs/{m.unit}: "
        f"best {change(m.flowfn.best, m.events.best)}; "
        f"median {change(m.flowfn.median, m.events.median)}; "
        f"paired ratio {m.events_paired:.3f}"
        for m in ms if m.events is not None and m.events_paired is not None
    ]


def environment() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                capture_output=True, text=True, check=True).stdout.strip()
        if subprocess.run(["git", "status", "--porcelain", "flowfn"], cwd=HERE.parent,
                          capture_output=True, text=True, check=True).stdout.strip():
            commit += " + uncommitted changes in flowfn/"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; flowfn commit {commit}; Python {platform.python_version()}; "
            f"trio {trio.__version__}; {os.cpu_count()} CPUs; {platform.machine()}")


# --- profiling ------------------------------------------------------------------------------

FuncKey = tuple[str, int, str]


def _where(key: FuncKey) -> str:
    """``flowfn/_scheduler.py:163 _run_node``, ``trio/_core/_run.py:1933 spawn_impl``."""
    path, line, func = key
    if path == "~":
        return func  # a builtin, e.g. {built-in method builtins.isinstance}
    for marker in ("site-packages/", f"{HERE.parent}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = re.sub(r".*/lib/python3\.\d+/", "", path)
    return f"{path}:{line} {func}"


def _package(key: FuncKey) -> str:
    path = _where(key)
    if path.startswith(("{", "<")):
        return "builtins / generated"
    return path.split("/", 1)[0] if "/" in path else path.split(":", 1)[0]


def print_profile(stats: pstats.Stats, top: int) -> None:
    table: dict[FuncKey, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in table.values())
    by_package: dict[str, float] = {}
    for key, (_, _, tt, _, _) in table.items():
        by_package[_package(key)] = by_package.get(_package(key), 0.0) + tt
    print(f"total {total * 1e3:.0f} ms of own time (profiler overhead inflates small calls)")
    print("own time by package: " + ", ".join(
        f"{pkg} {tt / total:.0%}" for pkg, tt in sorted(by_package.items(), key=lambda kv: -kv[1])
    ))
    print(f"{'calls':>8} {'own ms':>8} {'own %':>6} {'cum ms':>8}  function")
    ranked = sorted(table.items(), key=lambda kv: -kv[1][2])[:top]
    for key, (_, nc, tt, ct, _) in ranked:
        print(f"{nc:>8} {tt * 1e3:>8.1f} {tt / total:>6.1%} {ct * 1e3:>8.1f}  {_where(key)}")


def profile(w: Workload, what: str, top: int, out_dir: Path | None) -> None:
    g = graph(*w.targets, name=w.name)
    target = w.raw if what == "raw" else _flow_runner(g)
    trio.run(target)  # warm-up
    gc.collect()
    prof = cProfile.Profile()
    if what == "build":
        prof.runcall(graph, *w.targets, name=w.name)
    else:
        async def main() -> None:
            prof.enable()
            await target()
            prof.disable()

        trio.run(main)
    label = {"build": "graph()", "run": "flowfn arun", "raw": "the raw-trio baseline"}[what]
    print(f"\n=== cProfile of {label} on {w.name} {w.title} ===")
    stats = pstats.Stats(prof)
    print_profile(stats, top)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{w.name}-{what}.prof"
        stats.dump_stats(path)
        print(f"saved {path} (open with: python -m pstats {path}, or snakeviz)")


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed runs per workload (x10 for the 1,000-step ones)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated workloads (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (peak RSS is then cumulative)")
    parser.add_argument("--profile", choices=("run", "raw", "build"),
                        help="instead of timing, cProfile one flowfn run (or the raw "
                        "baseline, or graph()) per workload")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--profile-out", type=Path, help="save .prof files in this folder")
    parser.add_argument("--scale", action="store_true",
                        help="instead: graph() µs/step and peak RSS at 10,000 vs 100,000 "
                        "steps (benchmarks/scale.py; --repeat builds of each size)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.scale:
        import scale  # only this mode needs it

        scale.main(["--repeat", str(args.repeat)])
        return

    if args.child:
        m = measure(WORKLOADS[args.child](), args.repeat)
        print(json.dumps(asdict(m)))
        return

    names = [n.strip().upper() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    if args.profile:
        for name in names:
            profile(WORKLOADS[name](), args.profile, args.top, args.profile_out)
        return

    print(f"flowfn benchmarks: {environment()}")
    print(f"µs per step (W5: per item): best of {args.repeat} runs (W1, W3: {args.repeat * 10}), "
          "median in brackets.\nratio = flowfn best / raw best (the targets are judged on it); "
          "paired = median of flowfn/raw over back-to-back runs.\n")
    load_before = os.getloadavg()[0]
    results = []
    for name in names:
        m = (measure(WORKLOADS[name](), args.repeat) if args.in_process
             else _measure_in_child(name, args.repeat))
        results.append(m)
    print(render(rows(results), args.markdown))
    load_after = os.getloadavg()[0]
    print(f"\nload average (1 min): {load_before:.2f} before, {load_after:.2f} after; "
          f"{os.cpu_count()} CPUs")
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine was busy; times are noisy, rerun on an idle machine.")
    lines = event_lines(results)
    if lines:
        print()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
