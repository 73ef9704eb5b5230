"""A hand-written raw-trio scheduler: the baseline flowfn's overhead is measured against.

It does what any trio program running a DAG of async functions has to do, and nothing
more: one task per step, spawned by readiness counting. Each node keeps a count of
unfinished parents; when a node finishes it stores its result, decrements its children's
counts and ``nursery.start_soon``\\s exactly those reaching zero. Parent outputs are passed
by keyword (as flowfn does), so data passing is part of both measurements. There are no
spans, no events, no input checks, no retries: an exception simply propagates and the
nursery cancels the rest, which is trio's own structured cancellation.

This module does not import flowfn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

AsyncFn = Callable[..., Awaitable[Any]]


class RawGraph:
    """A DAG ready to run: functions, and for each one ``(parameter, parent index)`` pairs.

    Nodes are numbered ``0..n-1``; ``parents[i]`` says which parameter of ``fns[i]``
    receives the output of which node.
    """

    def __init__(self, fns: Sequence[AsyncFn], parents: Sequence[Sequence[tuple[str, int]]]):
        if len(fns) != len(parents):
            raise ValueError("fns and parents must have the same length")
        self.fns = list(fns)
        self.parents = [list(p) for p in parents]
        self.children: list[list[int]] = [[] for _ in self.fns]
        for i, ps in enumerate(self.parents):
            for _, p in ps:
                self.children[p].append(i)
        self.roots = [i for i, ps in enumerate(self.parents) if not ps]

    def __len__(self) -> int:
        return len(self.fns)


async def run_raw(g: RawGraph) -> list[Any]:
    """Run every node of ``g`` as early as its parents allow; return all outputs by index."""
    results: list[Any] = [None] * len(g)
    pending = [len(ps) for ps in g.parents]
    fns, parents, children = g.fns, g.parents, g.children

    async with trio.open_nursery() as nursery:

        async def run_node(i: int) -> None:
            kwargs = {param: results[p] for param, p in parents[i]}
            results[i] = await fns[i](**kwargs)
            for c in children[i]:
                pending[c] -= 1
                if pending[c] == 0:
                    nursery.start_soon(run_node, c)

        for i in g.roots:
            nursery.start_soon(run_node, i)
    return results


async def map_raw(source: Callable[[], Awaitable[Sequence[Any]]], fn: AsyncFn,
                  param: str) -> list[Any]:
    """``fn(param=item)`` for every item of ``await source()``, one task each, in order."""
    items = await source()
    results: list[Any] = [None] * len(items)

    async def run_item(i: int, item: Any) -> None:
        results[i] = await fn(**{param: item})

    async with trio.open_nursery() as nursery:
        for i, item in enumerate(items):
            nursery.start_soon(run_item, i, item)
    return results
