"""What the executors cost: the thread pool, worker processes, a Dask cluster.

    python benchmarks/executors.py                    # everything (about a minute)
    python benchmarks/executors.py --only thread --repeat 21
    python benchmarks/executors.py --only process,dask

thread   W1 (1 -> 1000 -> 1) with ``def`` steps against the same graph with ``async def``
         steps, both through ``flowfn.arun`` (target: ratio <= 3); 100 ``def`` steps that
         each block 0.1 s (target: makespan <= 1.15 x 0.1 s); and the executor alone:
         1000 concurrent no-op calls, against ``trio.to_thread.run_sync``.
process  a CPU-bound map of 2 x N pure-Python items, on the process executor against the
         thread executor (target: >= 1.7x the throughput on 2 cores); per-call overhead of
         a no-op call on a warm worker.
dask     per-step overhead on a LocalCluster (2 worker processes): a chain of steps and a
         fan-out, through DaskExecutor against ``client.submit`` of the same function by
         hand (target: ratio <= 1.2). The fan-out has two hand-written baselines: one
         ``client.gather`` of everything at the end, and ``as_completed(...).batches()``,
         which, like flowfn, has each value as soon as it exists.

Times are best-of (median in brackets), flowfn and its baseline interleaved. Until the
scheduler calls ``Executors``, the process and Dask executors are measured directly
(``Executors.run`` with the ``Call`` the scheduler will build); the thread numbers go
through ``arun``, whose ``def`` steps already use the pool.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import inspect
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowfn import Step, arun, graph
from flowfn._executors import Call, Executors
from flowfn._result import Span


def best_median(times: list[float]) -> str:
    return f"{min(times) * 1e3:.2f} ms ({statistics.median(times) * 1e3:.2f})"


async def interleaved(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]],
                      repeat: int) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately, after one warm-up each."""
    await a()
    await b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            started = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - started)
    return ta, tb


def report(name: str, ta: list[float], tb: list[float], target: str) -> None:
    ratio = min(tb) / min(ta)
    paired = statistics.median(y / x for x, y in zip(ta, tb, strict=True))
    print(f"  {name}: {best_median(ta)} vs {best_median(tb)}  ratio {ratio:.2f}  "
          f"paired {paired:.2f}  ({target})")


# --- thread -----------------------------------------------------------------------------


def fan(kind: str, width: int = 1000, body: Callable[[], Any] | None = None) -> Any:
    """1 -> ``width`` -> 1 of no-op steps (``def`` or ``async def``), as in W1."""

    def make(name: str, parents: list[Step[Any, Any]]) -> Step[Any, Any]:
        if kind == "async":
            async def fn(**upstream: Any) -> None:
                return None
        else:
            def fn(**upstream: Any) -> None:
                if body is not None and upstream == {}:
                    body()
        fn.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(f"p{i}", inspect.Parameter.KEYWORD_ONLY,
                              annotation=Annotated[Any, p]) for i, p in enumerate(parents)])
        return Step(fn, name=name)

    source = make("source", [])
    middle = [make(f"mid{i}", [source] if body is None else []) for i in range(width)]
    return graph(make("sink", middle))


async def bench_thread(repeat: int) -> None:
    print("thread executor")
    w1_async, w1_def = fan("async"), fan("def")
    ta, tb = await interleaved(lambda: arun(w1_async), lambda: arun(w1_def), repeat)
    report("W1 async def vs def steps (arun)", ta, tb, "target ratio <= 3")

    sleepers = fan("def", 100, body=lambda: time.sleep(0.1))
    await arun(sleepers)
    spans = []
    for _ in range(max(3, repeat // 3)):
        started = time.perf_counter()
        await arun(sleepers)
        spans.append((time.perf_counter() - started) / 0.1)
    print(f"  100 def steps x time.sleep(0.1) (arun): makespan x{min(spans):.3f} "
          f"(median x{statistics.median(spans):.3f}; target <= 1.15)")

    executors = Executors()
    dummy = Step(lambda: None, name="noop")

    async def many(run_one: Callable[[], Awaitable[Any]]) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(run_one)

    def pool_call() -> Awaitable[Any]:
        return executors.run("thread", Call(dummy.fn, {}, dummy, "noop", Span("n", "n")))

    ta, tb = await interleaved(lambda: many(lambda: trio.to_thread.run_sync(dummy.fn)),
                               lambda: many(pool_call), repeat)
    report("1000 concurrent no-op calls, trio.to_thread vs pool", ta, tb, "lower is better")
    await executors.aclose()


# --- process ----------------------------------------------------------------------------


def cpu(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1_000_003
    return acc


CPU = Step(cpu, name="cpu")


async def map_on(executors: Executors, which: str, items: int, n: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(items):
            c = Call(cpu, {"n": n}, CPU, "cpu", Span("cpu", "cpu"))
            nursery.start_soon(executors.run, which, c)


async def bench_process(repeat: int, per_core: int = 8, n: int = 200_000) -> None:
    print(f"process executor ({os.cpu_count()} CPUs)")
    executors = Executors()
    items = 2 * per_core
    started = time.perf_counter()
    cpu(n)
    one = time.perf_counter() - started
    ta, tb = await interleaved(lambda: map_on(executors, "thread", items, n),
                               lambda: map_on(executors, "process", items, n),
                               max(3, repeat // 3))
    print(f"  map of {items} items x cpu({n}) (~{one * 1e3:.0f} ms each): thread "
          f"{best_median(ta)}, process {best_median(tb)}; throughput x"
          f"{min(ta) / min(tb):.2f} (paired x"
          f"{statistics.median(x / y for x, y in zip(ta, tb, strict=True)):.2f}; "
          "target >= 1.7)")
    # The ceiling on this machine right now: the stdlib's process pool, same items. On a
    # shared machine the second core may be busy with other work.
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        list(pool.map(cpu, [n] * 2))
        times = []
        for _ in range(max(3, repeat // 3)):
            started = time.perf_counter()
            await trio.to_thread.run_sync(lambda: list(pool.map(cpu, [n] * items)))
            times.append(time.perf_counter() - started)
    print(f"  the same map on concurrent.futures.ProcessPoolExecutor(2): "
          f"{best_median(times)}; throughput x{min(ta) / min(times):.2f} of threads")
    noop = Call(cpu, {"n": 0}, CPU, "cpu", Span("cpu", "cpu"))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        await executors.run("process", noop)
        times.append(time.perf_counter() - started)
    print(f"  per-call overhead, warm worker: best {min(times) * 1e6:.0f} us, median "
          f"{statistics.median(times) * 1e6:.0f} us")
    await executors.aclose()


# --- dask -------------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


INC = Step(inc, name="inc")


async def bench_dask(repeat: int, chain: int = 50, width: int = 200) -> None:
    from distributed import Client, LocalCluster, as_completed

    from flowfn.dask import DaskExecutor

    print("Dask executor (LocalCluster, 2 worker processes x 1 thread)")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", host="127.0.0.1") as cluster, \
            Client(cluster, set_as_default=False) as client:
        dask = DaskExecutor(client)
        executors = Executors()

        def by_hand_chain() -> None:
            x = 0
            for _ in range(chain):
                x = client.submit(inc, x, pure=False).result()

        async def flowfn_chain() -> None:
            x = 0
            for _ in range(chain):
                x = await executors.run(dask, Call(inc, {"x": x}, INC, "inc", Span("i", "i")))

        def by_hand_fan() -> None:
            client.gather([client.submit(inc, i, pure=False) for i in range(width)])

        def by_hand_streaming() -> None:
            # what a scheduler needs: each value as soon as it exists, not all at the end
            futures = [client.submit(inc, i, pure=False) for i in range(width)]
            for batch in as_completed(futures, loop=client.loop).batches():
                client.gather(batch)

        async def flowfn_fan() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(width):
                    c = Call(inc, {"x": i}, INC, "inc", Span("i", "i"))
                    nursery.start_soon(executors.run, dask, c)

        ta, tb = await interleaved(lambda: trio.to_thread.run_sync(by_hand_chain),
                                   flowfn_chain, max(3, repeat // 2))
        report(f"chain of {chain}: client.submit(...).result() vs DaskExecutor", ta, tb,
               f"per step {min(ta) / chain * 1e3:.2f} vs {min(tb) / chain * 1e3:.2f} ms; "
               "target ratio <= 1.2")
        ta, tb = await interleaved(lambda: trio.to_thread.run_sync(by_hand_fan),
                                   flowfn_fan, max(3, repeat // 2))
        report(f"fan-out of {width}: client.gather(submit...) vs DaskExecutor", ta, tb,
               "target ratio <= 1.2")
        ta, tb = await interleaved(lambda: trio.to_thread.run_sync(by_hand_streaming),
                                   flowfn_fan, max(3, repeat // 2))
        report(f"fan-out of {width}: as_completed(submit...).batches() vs DaskExecutor", ta,
               tb, "target ratio <= 1.2")
        await executors.aclose()


BENCHES = {"thread": bench_thread, "process": bench_process, "dask": bench_dask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES), help="thread,process,dask")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for name in args.only.split(","):
        trio.run(BENCHES[name], args.repeat)


if __name__ == "__main__":
    main()
