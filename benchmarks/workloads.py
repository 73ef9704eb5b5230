"""Benchmark workloads: each builds flowfn steps AND the same work for the raw-trio baseline.

Both sides call the very same function objects (``step.fn``), so the difference in time
is scheduling overhead only.

Steps are wired the way users write them, ``def f(a: Annotated[Any, parent])``, with one
factory per parent count (0 to 3). Wide fan-ins (1000 parents) get a function with an
explicit ``__signature__`` of keyword-only ``Annotated[Any, parent]`` parameters, which
flowfn reads like a written signature.

This module deliberately does NOT use ``from __future__ import annotations``: the
annotations below name local variables (the parent steps) and must be evaluated when
each function is defined, as they would be for module-level steps.
"""

import functools
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import trio
from raw_trio import RawGraph, map_raw, run_raw

from flowfn import Step, each

AnyStep = Step[Any, Any]

#: Seed of W4's random parents: the graph is the same on every run and machine.
SEED = 20240601


@dataclass
class Workload:
    """One benchmark: the flowfn targets, the raw-trio equivalent, and how to report it."""

    name: str
    title: str
    targets: list[AnyStep]  # graph(*targets) builds the flowfn graph (every step is upstream)
    steps: int  # number of steps the graph must have
    raw: Callable[[], Awaitable[Any]]  # runs the same work on the raw-trio baseline
    units: int  # per-unit times divide by this (steps, or map items for W5)
    unit: str = "step"
    sleep: float | None = None  # W2: each step sleeps this long; report makespan / sleep
    expected: Any = None  # when set, flowfn's output must equal it (checked once)


# --- step factories ------------------------------------------------------------------------


def _noop(name: str, parents: Sequence[AnyStep]) -> tuple[AnyStep, list[str]]:
    """A no-op async step wired to ``parents``; also returns its parameter names, in order."""
    if len(parents) > 3:
        return _fan_in(name, parents)
    fn: Callable[..., Awaitable[None]]
    if not parents:

        async def fn() -> None:
            return None

    elif len(parents) == 1:
        p0 = parents[0]

        async def fn(a: Annotated[Any, p0]) -> None:
            return None

    elif len(parents) == 2:
        p0, p1 = parents

        async def fn(a: Annotated[Any, p0], b: Annotated[Any, p1]) -> None:
            return None

    else:
        p0, p1, p2 = parents

        async def fn(a: Annotated[Any, p0], b: Annotated[Any, p1],
                     c: Annotated[Any, p2]) -> None:
            return None

    return Step(fn, name=name), ["a", "b", "c"][: len(parents)]


def _fan_in(name: str, parents: Sequence[AnyStep]) -> tuple[AnyStep, list[str]]:
    """A no-op async step with one keyword-only ``Annotated[Any, parent]`` per parent."""

    async def fan_in(**upstream: Any) -> None:
        return None

    params = [f"p{i}" for i in range(len(parents))]
    sig = inspect.Signature([
        inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Any, s])
        for p, s in zip(params, parents, strict=True)
    ])
    setattr(fan_in, "__signature__", sig)
    return Step(fan_in, name=name), params


class _Dag:
    """Collects steps and, for the baseline, each step's ``(parameter, parent index)`` pairs."""

    def __init__(self) -> None:
        self.steps: list[AnyStep] = []
        self.parents: list[list[tuple[str, int]]] = []

    def add(self, name: str, parents: Sequence[int] = (),
            factory: Callable[[str, Sequence[AnyStep]], tuple[AnyStep, list[str]]] = _noop,
            ) -> int:
        s, params = factory(name, [self.steps[p] for p in parents])
        self.steps.append(s)
        self.parents.append(list(zip(params, parents, strict=True)))
        return len(self.steps) - 1

    def sinks(self) -> list[AnyStep]:
        has_child = {p for ps in self.parents for _, p in ps}
        return [s for i, s in enumerate(self.steps) if i not in has_child]

    def raw(self) -> Callable[[], Awaitable[list[Any]]]:
        return functools.partial(run_raw, RawGraph([s.fn for s in self.steps], self.parents))


def _dag_workload(name: str, title: str, dag: _Dag, sleep: float | None = None) -> Workload:
    n = len(dag.steps)
    return Workload(name, title, dag.sinks(), n, dag.raw(), n, sleep=sleep)


# --- the workloads -------------------------------------------------------------------------


def w1_fan_out_in(width: int = 1000) -> Workload:
    """1 -> ``width`` -> 1: one source, ``width`` parallel steps, one sink taking them all."""
    dag = _Dag()
    src = dag.add("source")
    middle = [dag.add(f"mid{i}", [src]) for i in range(width)]
    dag.add("sink", middle)
    return _dag_workload("W1", f"fan-out/fan-in 1 -> {width} -> 1", dag)


def w2_sleepers(width: int = 100, sleep: float = 0.1) -> Workload:
    """``width`` steps that each ``await trio.sleep(sleep)``, then one sink (real time)."""

    def sleeper(name: str, parents: Sequence[AnyStep]) -> tuple[AnyStep, list[str]]:
        async def nap() -> None:
            await trio.sleep(sleep)

        return Step(nap, name=name), []

    dag = _Dag()
    nappers = [dag.add(f"nap{i}", factory=sleeper) for i in range(width)]
    dag.add("sink", nappers)
    return _dag_workload("W2", f"{width} x trio.sleep({sleep:g}) -> 1 (makespan)", dag,
                         sleep=sleep)


def w3_chain(length: int = 1000) -> Workload:
    """A chain of ``length`` steps, each waiting for the previous one."""
    dag = _Dag()
    prev = dag.add("link0")
    for i in range(1, length):
        prev = dag.add(f"link{i}", [prev])
    return _dag_workload("W3", f"chain of {length}", dag)


def w4_layers(layers: int = 100, width: int = 100, seed: int = SEED) -> Workload:
    """``layers`` x ``width`` steps; each takes 1-3 random parents from the previous layer."""
    rng = random.Random(seed)
    dag = _Dag()
    prev = [dag.add(f"n0_{j}") for j in range(width)]
    for layer in range(1, layers):
        prev = [
            dag.add(f"n{layer}_{j}", sorted(rng.sample(prev, rng.randint(1, 3))))
            for j in range(width)
        ]
    return _dag_workload("W4", f"{layers} layers x {width}, 1-3 random parents", dag)


def w5_map(n: int = 10_000) -> Workload:
    """``each()`` over ``n`` items of an async no-op, against one raw task per item."""
    items = list(range(n))

    async def source() -> list[int]:
        return items

    src = Step(source, name="items")

    async def item(x: Annotated[int, each(src)]) -> int:
        return x

    mapped = Step(item, name="item")
    raw = functools.partial(map_raw, source, item, "x")
    return Workload("W5", f"each() over {n} items", [mapped], 2, raw, n, unit="item",
                    expected=items)


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "W1": w1_fan_out_in,
    "W2": w2_sleepers,
    "W3": w3_chain,
    "W4": w4_layers,
    "W5": w5_map,
}
