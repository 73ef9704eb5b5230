"""The items of one map run: started as their inputs become known, results in order.

A map (``each()``) runs one task per item in a nursery of its own; a map fed item by
item by an upstream map (a pipeline) starts each item as it arrives. Every item's result
goes through the run's settle point with the item's own span (``fetch[3]``); the first
failed item stops the others unless some consumer takes the items as ``list[Outcome]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._attempt import attempts, caller
from ._graph import Node
from ._relay import Relay
from ._result import Span, current_span_var
from ._state import CancelReason, Failed, Held, RunState, Skip, Waiting, is_output
from ._step import MISSING

checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
SendItem = Callable[[int, dict[str, Any]], None]
Source = Callable[[SendItem], Awaitable["int | Skip"]]


class Items:
    """The items of one map run: started as they become known, results in input order.

    ``in_order``: the source sends items by index, so the child spans need no sort.
    """

    def __init__(self, run: RunState, node: Node, span: Span, fn: Callable[..., Any],
                 held: Held, *, in_order: bool) -> None:
        self.run_state, self.node, self.span, self.fn, self.held = run, node, span, fn, held
        self.in_order = in_order
        self.children: dict[str, Span] = {}
        self.results: dict[int, Any] = {}
        self.first_error: tuple[int, BaseException] | None = None
        self.stopped: CancelReason | None = None  # why the items still running are cancelled
        self.outlets = [run.streams[(node.index, d.index)] for d in node.streams_to]
        shared = run.shared
        self.simple = (node.simple and shared.global_limiter is None and fn is node.step.fn
                       and not shared.observers)
        self.relay = Relay(self.item, f"{span.path}[...]")

    def begin(self) -> None:
        span = self.span
        if span.started is None:
            span.status = "running"
            span.started = self.run_state.now()
            self.run_state.emit("started", span)

    async def run(self, source: Source) -> Any:
        run, node, span = self.run_state, self.node, self.span
        if self.in_order:
            self.begin()
        # else: a map fed item by item starts with its first item (or its end)
        span.children = self.children
        run.collected_items.pop(node.index, None)  # a retried container runs it afresh
        count: int | Skip | None = None
        try:
            async with trio.open_nursery() as inner:
                self.relay.open(inner)
                count = await source(self.start)  # a failed item cancels this
                if isinstance(count, Skip):
                    self.stopped = CancelReason("skip", detail=count.reason)
                    inner.cancel_scope.cancel()
                else:
                    self.begin()
                    for out in self.outlets:
                        out.send_nowait(("count", count))
        finally:  # items the map was stopped before they started
            for _, kw, ispan in self.relay.leftover():
                ispan.input = kw
                self.cancelled(ispan)
        for out in self.outlets:
            out.close()
        return self.result(count)

    def start(self, i: int, kw: dict[str, Any]) -> None:
        if not self.in_order:
            self.begin()
        name, path = self.span.name, self.span.path
        label = f"{name}[{i}]"
        ispan = Span(label, label if path is name else f"{path}[{i}]", self.run_state.epoch)
        self.children[label] = ispan
        settled = self.run_state.settled
        if settled and ispan.path in settled:  # a resumed run: settled before, no task
            ispan.input = kw
            self.done(i, ispan, settled[ispan.path])
            return
        self.relay.push((i, kw, ispan))

    def cancelled(self, ispan: Span) -> None:
        stopped = self.stopped  # the map stopped its items, or something outside did
        run = self.run_state
        run.cancelled(ispan, stopped if stopped is not None else run.why_cancelled(self.node))

    async def item(self, job: tuple[int, dict[str, Any], Span]) -> None:
        """Run one item (in a task of the relay's: see ``_relay``)."""
        run, fn = self.run_state, self.fn
        i, kw, ispan = job
        current_span_var.set(ispan)
        ispan.input = kw
        try:
            await checkpoint_if_cancelled()  # the map was stopped: don't start
            if self.simple:  # attempt.single, written out: one coroutine less per item
                run.start(ispan)
                try:
                    res = await fn(**kw)
                except Exception as exc:
                    res = Failed(exc)
            else:
                res = await self.attempts(ispan, kw)
        except BaseException:
            self.cancelled(ispan)
            raise
        self.done(i, ispan, res)

    def done(self, i: int, ispan: Span, res: Any) -> None:
        """Item ``i`` settled: keep its result, pass it on, stop the others on a failure."""
        res = self.run_state.settle(ispan, res)
        self.results[i] = res
        node = self.node
        if type(res) is not Failed:
            for out in self.outlets:
                out.send_nowait(("item", i, res))
        elif self.first_error is None:
            self.first_error = (i, res.error)
            if not node.collect_items:
                self.stopped = CancelReason("item", detail=str(i))
                self.relay.nursery.cancel_scope.cancel()

    async def attempts(self, ispan: Span, kw: dict[str, Any]) -> Any:
        """One item's attempts; with ``@step(cache=True)`` and a store, an identical
        earlier call's stored output instead."""
        run, node, fn = self.run_state, self.node, self.fn
        durable = run.shared.durable
        if durable is None or not node.step.cache or fn is not node.step.fn:
            return await attempts(run, node, ispan, caller(run, node, ispan, fn, kw),
                                  self.held)
        key, value = durable.cached(node, ispan, kw)
        if value is not MISSING:
            run.start(ispan)
            ispan.cached = True
            return value
        res = await attempts(run, node, ispan, caller(run, node, ispan, fn, kw), self.held)
        if key is not None and is_output(res):
            durable.remember(key, node, res, ispan.path)
        return res

    def result(self, count: int | Skip | None) -> Any:
        run, node, span = self.run_state, self.node, self.span
        if not self.in_order:
            span.children = dict(sorted(self.children.items(),
                                        key=lambda kv: _item_index(kv[0])))
        span.ended = run.now()
        if self.first_error is not None:
            i, exc = self.first_error
            if node.collect_items and isinstance(count, int):
                run.collected_items[node.index] = [self.results[k] for k in range(count)]
            span.reason = f"item [{i}] failed"
            span.attempts = self.children[f"{span.name}[{i}]"].attempts
            return Failed(exc, f"in item [{i}]")
        if isinstance(count, Skip):
            return count
        assert count is not None
        span.attempts = 1
        values = [self.results[k] for k in range(count)]
        if any(type(v) is Waiting for v in values):
            return Waiting(None)  # an item waits for an answer: so does the map
        return values


def _item_index(name: str) -> int:
    return int(name.rpartition("[")[2].rstrip("]"))
