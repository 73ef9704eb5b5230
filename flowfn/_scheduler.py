"""The scheduler: runs a :class:`Graph` on one trio nursery by readiness counting.

Life of a step::

    pending --(last dependency settles)--> started (relay) --> running --> settle()
                                                            \\-> skipped / cancelled

Each node keeps a count of unsettled dependencies. When a node settles, it decrements
the counts of its dependents and starts exactly those that reach zero: no task waits
parked for its inputs and there are no level barriers. Ready steps go to the run's
:class:`~flowfn._relay.Relay`, which runs them one after another in one task and hands
the rest to a new task the moment one waits, so steps that never wait cost no task. A
failure that nothing handles cancels the nursery: every running step is cancelled (its
``finally`` blocks run) and no further step starts.

This module knows *when* a node runs; what running it means is its kind's business
(``_kinds``), how one attempt runs is ``_attempt``'s, and where results go is the settle
point of ``_state``. A run may start from steps that already settled (a resumed run): when
such a step's turn comes, its stored result goes through the settle point instead of the
step, so only what the stored results do not cover runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import trio

from ._attempt import attempts, caller, constant, raises
from ._graph import Binding, Graph, Node
from ._kinds import RaceKind, kind_of
from ._relay import Relay
from ._result import RunView, Span, current_run_var, current_span_var
from ._span import LazyInput
from ._state import (
    IN_PREDICATE,
    NOTHING_HELD,
    OUTSIDE,
    CancelReason,
    Failed,
    Held,
    RunState,
    Shared,
    Skip,
    Waiting,
    argument,
    is_output,
)
from ._step import MISSING

checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled


class Runner(RunState):
    """One execution of one graph (sub-workflows get a child runner)."""

    def __init__(self, graph: Graph, values: dict[str, Any], shared: Shared, *,
                 overrides: Mapping[str, Any], prefix: str = "",
                 spans: dict[str, Span] | None = None, parent: RunView | None = None,
                 parent_runner: Runner | None = None, parent_node: Node | None = None,
                 held: Held = NOTHING_HELD, settled: Mapping[str, Any] | None = None,
                 run_id: str = "") -> None:
        super().__init__(graph, values, shared, prefix=prefix, spans=spans, parent=parent,
                         run_id=run_id)
        self.overrides = {graph.by_name[k]: v for k, v in overrides.items()
                          if k in graph.by_name}
        self.sub_overrides = {k: v for k, v in overrides.items() if k not in graph.by_name}
        # Plain steps skip ``body`` unless something run-wide changes how steps are called.
        self.fast = (not self.overrides and shared.global_limiter is None
                     and not shared.observers)
        self.pending = list(graph.dep_counts)
        self.quiet, self.alone = graph.quiet, graph.alone
        # The hot path's steps read their arguments back from the results (``span.input``).
        self.arguments = LazyInput(graph.by_name, self.results)
        # A resumed run: results settled before, by graph path; such steps are fed
        # through the settle point instead of running (map items too, by their paths).
        self.settled = parent_runner.settled if parent_runner is not None else settled or {}
        # Failures that Outcome parameters may still consume, by node index: [the failure,
        # how many consumers have not settled]. A failure no consumer received (they were
        # all skipped) fails the run after all, when the last consumer settles.
        self.unconsumed: dict[int, list[Any]] = {}
        self.parent_runner = parent_runner
        self.parent_node = parent_node
        self.held = held
        self.races: RaceKind = parent_runner.races if parent_runner is not None else RaceKind()
        self.timed_out = False
        self.timeout: float | None = None
        self.relay = Relay(self._run_node, f"flowfn {graph.name}")  # runs the ready steps

    # --- the run ---------------------------------------------------------------------

    async def execute(self, timeout: float | None = None) -> None:
        self.now = trio.lowlevel.current_clock().current_time  # what trio.current_time calls
        for up, down in self.graph.stream_edges:
            send, recv = trio.open_memory_channel[Any](math.inf)
            self.streams[(up, down)] = send
            self.stream_recv[down] = recv
        token = current_run_var.set(self.view)  # inherited by every task spawned below
        escaped: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.relay.open(nursery)
                if timeout is not None:
                    nursery.cancel_scope.deadline = trio.current_time() + timeout
                    self.timeout = timeout
                for n in self.graph.roots:
                    self._ready(n)
        except BaseExceptionGroup as group:
            # Step failures never get here (they are results); only what must not be
            # swallowed does, e.g. a KeyboardInterrupt. Give it back bare, as raised.
            escaped = _sole_exception(group)
            if escaped is None:
                raise
        finally:
            current_run_var.reset(token)
            self._never_started()
        if escaped is not None:
            raise escaped
        scope = self.nursery.cancel_scope
        if self.stop_reason is None and self.timeout is not None and (
                scope.cancelled_caught or trio.current_time() >= scope.deadline):
            # the deadline passed: also when nothing was left to cancel (a thread step
            # that outlived it, steps that never started)
            self.timed_out = True
            self.stop_reason = CancelReason("timeout", seconds=self.timeout)

    def why_stopped(self) -> CancelReason:
        if self.stop_reason is not None:
            return self.stop_reason
        if self.timeout is not None and self.nursery.cancel_scope.cancel_called:
            return CancelReason("timeout", seconds=self.timeout)
        if self.parent_runner is not None:
            return self.parent_runner.why_cancelled(self.parent_node)
        return OUTSIDE

    def output(self) -> Any:
        def value(n: Node) -> Any:
            r = self.results[n.index]
            return r if is_output(r) else None

        targets = self.graph.targets
        if len(targets) == 1:
            return value(targets[0])
        return {t.name: value(t) for t in targets}

    def child(self, node: Node, graph: Graph, values: dict[str, Any],
              spans: dict[str, Span], held: Held, path: str) -> Runner:
        prefix = node.name + "/"
        overrides = {k[len(prefix):]: v for k, v in self.sub_overrides.items()
                     if k.startswith(prefix)}
        return Runner(graph, values, self.shared, overrides=overrides, prefix=path + "/",
                      spans=spans, parent=self.view, parent_runner=self, parent_node=node,
                      held=held)

    # --- one node --------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        """Run ``node`` and settle it (a job of the run's relay).

        A plain step (``async def``, no options) takes the hot path, ``body``,
        ``_attempt.single`` and ``start`` written out, because it is most of what a large
        run does; everything else goes through ``body``.
        """
        if self._closing():
            return  # the run is stopping (failure or deadline): never start anything new
        span = self.span_list[node.index]
        current_span_var.set(span)
        try:
            await checkpoint_if_cancelled()  # an outer cancel: don't start
            if self.settled and span.path in self.settled:
                result: Any = self.settled[span.path]  # a resumed run: settled before
            elif node.plain and self.fast:
                kwargs: dict[str, Any] | Skip
                if node.direct and self.clean:
                    results = self.results
                    kwargs = {}
                    for b in node.bindings:
                        kwargs[b.param] = results[b.node.index]  # type: ignore[union-attr]
                    span.input = self.arguments  # read back from results when asked
                else:
                    kwargs = self._gather(node, node.bindings)
                    if not isinstance(kwargs, Skip):
                        span.input = kwargs
                if isinstance(kwargs, Skip):
                    result = kwargs
                else:
                    span.attempts = 1
                    span.started = self.now()
                    span.status = "running"
                    if self.emits:
                        self.emit("started", span)
                    try:
                        result = await node.step.fn(**kwargs)
                    except Exception as exc:
                        result = Failed(exc)
            else:
                result = await self.body(node, span, self.held)
        except BaseException:  # Cancelled, or a group of them from a container's nursery
            self.cancelled(span, self.why_cancelled(node.owner))
            raise
        self._release_quick(node, self.settle(span, result))

    def _never_started(self) -> None:
        """Steps made ready but never started, because the nursery was cancelled first:
        cancelled for the reason their task would have found (a stopping run leaves them
        pending, as ``finish`` reports them)."""
        leftover = self.relay.leftover()
        if leftover and not self._closing():
            for node in leftover:
                self.cancelled(self.span_list[node.index], self.why_cancelled(node.owner))

    def _closing(self) -> bool:
        """The run is stopping (a failure) or its deadline passed: start nothing new."""
        return self.stopping or (self.timeout is not None
                                 and self.nursery.cancel_scope.cancel_called)

    async def body(self, node: Node, span: Span, held: Held) -> Any:
        """Skip the node, or produce its result (``held``: the limits whose slot an
        enclosing container holds)."""
        handed: list[int] = []
        kwargs = self._gather(node, node.bindings, handed)
        if isinstance(kwargs, Skip):
            return kwargs
        if node.when is not None:
            verdict = await self._predicate(node, node.when, span)
            if verdict is not None:
                return verdict
        self._consume(handed)  # the step runs: the failures it takes are handled
        span.input = kwargs
        fn = node.step.fn
        kind = kind_of(node, self.races)
        override = self.overrides.get(node, MISSING) if self.overrides else MISSING
        if override is not MISSING:  # replaces the whole step, a container included
            if kind.container:
                span.reason = "overridden"  # what its members' spans will say
            if raises(override) or not callable(override):
                return await attempts(self, node, span, constant(override), held,
                                      container=True)
            fn = override
            if kind.container:
                return await attempts(self, node, span,
                                      caller(self, node, span, fn, kwargs), held,
                                      container=True)
        return await kind.run(self, node, span, kwargs, fn, held)

    def _gather(self, node: Node, bindings: tuple[Binding, ...],
                consumed: list[int] | None = None) -> dict[str, Any] | Skip:
        """The keyword arguments of a node, or why it must be skipped.

        Failed upstreams handed over as ``Outcome`` count as handled (``unconsumed``) at
        once, or, given a ``consumed`` list, once the caller knows the step will run.
        """
        kwargs: dict[str, Any] = {}
        results = self.results
        handed: list[int] = []
        for b in bindings:
            up = b.node
            if up is None:
                value = self.values.get(b.input, MISSING)  # type: ignore[arg-type]
                kwargs[b.param] = b.default if value is MISSING else value
                continue
            if b.each and up is node.stream_from:
                continue  # items arrive one by one
            res = results[up.index]
            got = argument(b, up, res, handed, self.collected_items)
            if type(got) is Skip:
                return got
            kwargs[b.param] = got
        if consumed is None:
            self._consume(handed)
        else:
            consumed.extend(handed)
        return kwargs

    def _consume(self, handed: list[int]) -> None:
        for i in handed:  # handled: it no longer fails the run
            self.unconsumed.pop(i, None)

    async def _predicate(self, node: Node, bindings: tuple[Binding, ...], span: Span) -> Any:
        """Evaluate ``when=``: None to go on, or the node's result (skip or failure)."""
        predicate = node.step.when
        assert predicate is not None
        args = self._gather(node, bindings)
        if isinstance(args, Skip):
            return args
        try:
            verdict = predicate(**args)
            if hasattr(verdict, "__await__"):
                verdict = await verdict
        except Exception as exc:
            span.reason = "its when= predicate raised"
            return Failed(exc, IN_PREDICATE)
        if not verdict:
            return Skip("its when= predicate was false")
        return None

    # --- after the settle point: failure policy and waking --------------------------

    def _release_quick(self, node: Node, result: Any) -> None:
        """``release``, without its checks for a node whose settling only wakes its
        dependents."""
        i = node.index
        kind = type(result)
        if not self.quiet[i] or kind is Failed or kind is Waiting:
            self.release(node, result)
            return
        self.results[i] = result
        self._wake_dependents(node)

    def release(self, node: Node, result: Any, *, member: bool = False) -> None:
        self.results[node.index] = result
        kind = type(result)
        for d in node.streams_to:  # item-by-item consumers: no more items will come
            self.streams[(node.index, d.index)].close()
        if kind is Waiting:
            return  # its dependents wait with it
        if kind is Failed and not member:
            failure = self.record_failure(node, result)
            if node.members:
                kind_of(node, self.races).release(self, node)  # their failures are its story
            if node.outcome_consumers == 0:
                self.fail(failure)
                return
            self.unconsumed[node.index] = [failure, node.outcome_consumers]
        self._wake(node)

    def _wake(self, node: Node) -> None:
        if node.members:
            kind_of(node, self.races).release(self, node)
        if node.outcome_sources and self.unconsumed:
            self._unconsumed_failures(node)
        self._wake_dependents(node)

    def _wake_dependents(self, node: Node) -> None:
        """Count ``node`` off its dependents; start those it made ready (unless the run
        is stopping)."""
        if self.stopping:
            return
        pending, ready = self.pending, self._ready
        for d in node.wakes:
            pending[d.index] -= 1
            if pending[d.index] == 0:
                ready(d)

    def _ready(self, node: Node) -> None:
        """Start ``node``: through the relay, or in a task of its own if it will wait."""
        if self.alone[node.index]:
            self.relay.spawn(node)
        else:
            self.relay.push(node)

    def _unconsumed_failures(self, consumer: Node) -> None:
        """``consumer`` settled: a failure it was to consume and none of its consumers
        did (they were skipped) fails the run after all. A consumer cancelled before it
        could run (a race's loser) still counts as handling it: the flow was built to
        go on without that step, and which loser had started is down to timing."""
        declined = self.span_list[consumer.index].status == "skipped"
        for up in consumer.outcome_sources:
            entry = self.unconsumed.get(up.index)
            if entry is not None and not declined:
                del self.unconsumed[up.index]
            elif entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del self.unconsumed[up.index]
                    self.fail(entry[0])


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside (possibly nested) groups, unless it is a ``Cancelled``."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
        return leaves[0]
    return None
