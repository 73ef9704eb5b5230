"""``graph()``: resolve every parameter to a step or an input, check it all, order it.

A graph is built once and validated before anything runs, in four phases, each a
function of its own: *collect* the parts given to ``graph()``; *discover* every step
reachable from them (``_collect``); *resolve* each parameter with the final set of names
(``_resolve``), so the result never depends on the order steps were found in; *check*
(``_checks``) and, when nothing is wrong, *plan* what the scheduler precomputes.
"""

from __future__ import annotations

import gc
import inspect
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._checks import (
    duplicate_names,
    edge_types,
    map_modes,
    race_deps,
    race_members,
    toposort,
)
from ._collect import (
    clear_module_index,
    discover,
    empty_module,
    not_a_part,
    steps_defined_in,
)
from ._errors import GraphError, Problem, location
from ._inputs import InputSpec, input_schema
from ._nodes import AnyStep, Binding, Node
from ._render import graph_dot, graph_mermaid
from ._resolve import Resolver
from ._step import Step
from ._wiring import Mode, clear_annotation_cache


class Graph:
    """A validated, topologically ordered set of steps. Build it with :func:`graph`."""

    def __init__(self, name: str, nodes: list[Node], targets: list[Node],
                 inputs: dict[str, InputSpec]) -> None:
        self.name = name
        self.nodes = nodes  # topological order
        self.targets = targets
        self.inputs = inputs
        self.names = [n.name for n in nodes]
        self.by_name = dict(zip(self.names, nodes, strict=True))
        # Precomputed once for the scheduler, so that a run does no per-graph work.
        self.roots = [n for n in nodes if not n.deps and n.owner is None]
        self.dep_counts = [len(n.deps) for n in nodes]
        self.stream_edges = [(n.index, d.index) for n in nodes for d in n.streams_to]
        # by node index: settling the node only wakes its dependents (no item streams to
        # close, no contestants to settle, no Outcome bookkeeping)
        self.quiet = [not (n.streams_to or n.members or n.outcome_sources) for n in nodes]
        # by node index: the step is certain to wait (a container, a map, a step not run
        # on the trio thread), so it gets a task of its own instead of a place in the relay
        self.alone = [n.kind != "function" or n.mapped or n.stream_from is not None
                      or n.step.executor != "async" for n in nodes]
        # the nodes check_limits must look at: limited steps, and sub-workflows (inside)
        self.limit_checks = [n for n in nodes
                             if n.step.limit is not None or n.kind == "subflow"]
        for n in nodes:
            n.wakes = n.dependents if all(d.owner is None for d in n.dependents) else tuple(
                d for d in n.dependents if d.owner is None)
            n.plain = (n.simple and n.kind == "function" and not n.mapped
                       and n.stream_from is None and n.when is None)
            n.direct = n.plain and all(b.node is not None and b.mode is Mode.VALUE
                                       for b in n.bindings)

    @property
    def steps(self) -> tuple[AnyStep, ...]:
        """Every step of the graph, upstream first."""
        return tuple(n.step for n in self.nodes)

    def node(self, key: AnyStep | str) -> Node:
        if isinstance(key, Step):  # names are unique in a graph: no dict by step needed
            node = self.by_name.get(key.name)
            node = node if node is not None and node.step is key else None
        else:
            node = self.by_name.get(key)
        if node is None:
            raise KeyError(f"no step {key!r} in {self}")
        return node

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema (an object) of the graph's inputs (Python-object inputs are named
        in its ``$comment`` instead)."""
        return input_schema(self.inputs)

    @property
    def output_type(self) -> Any:
        if len(self.targets) == 1:
            return self.targets[0].output_type
        return dict[str, Any]

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every node with its graph path, sub-workflows' nodes (``branch/step``) after
        their sub-workflow's."""
        for n in self.nodes:
            path = prefix + n.name
            yield path, n
            if n.kind == "subflow":
                sub: Graph = n.step.container.graph  # type: ignore[union-attr]
                yield from sub.walk(path + "/")

    def to_mermaid(self) -> str:
        return graph_mermaid(self)

    def to_dot(self) -> str:
        return graph_dot(self)

    def __repr__(self) -> str:
        return f"graph({self.name})"

    def __len__(self) -> int:
        return len(self.nodes)


@dataclass
class _Parts:
    """What the arguments of ``graph()`` contribute."""

    given: list[AnyStep] = field(default_factory=list)
    targets: list[AnyStep] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    module_sinks: list[list[AnyStep]] = field(default_factory=list)


def _collect_parts(parts: tuple[Any, ...]) -> _Parts:
    """Steps are targets; graphs are merged; a module gives all the steps defined in it."""
    out = _Parts()
    for position, part in enumerate(parts, start=1):
        if isinstance(part, Step):
            out.given.append(part)
            out.targets.append(part)
            out.labels.append(part.name)
        elif isinstance(part, Graph):
            out.given.extend(n.step for n in part.nodes)
            out.targets.extend(n.step for n in part.targets)
            out.labels.append(part.name)
        elif isinstance(part, types.ModuleType):
            steps = steps_defined_in(part)
            if not steps:
                out.problems.append(empty_module(part, position))
            out.given.extend(steps)
            out.module_sinks.append(steps)
            out.labels.append(part.__name__.rsplit(".", 1)[-1])
        else:
            out.problems.append(not_a_part(part, position))
            if inspect.isfunction(part):
                out.labels.append(part.__name__)
    return out


_ITEM = re.compile(r"\[\d+\]")


def plain_path(path: str) -> str:
    """A graph path without its item indices: ``per[2]/ok`` -> ``per/ok`` (the path of
    the step inside a mapped sub-workflow, as ``Graph.walk`` names it)."""
    return _ITEM.sub("", path) if "[" in path else path


def graph(*parts: AnyStep | types.ModuleType | Graph, name: str | None = None) -> Graph:
    """Build and validate the graph that computes ``parts``.

    ``parts`` are steps (the targets; everything upstream is found from them), modules
    (every step in them; targets are the sinks) and other graphs (merged). All problems
    are reported together in one :class:`GraphError`.
    """
    # Building allocates a few long-lived containers per step. With the cycle collector
    # on, each of its full passes walks the whole growing heap, which made graph() of
    # 100,000 steps cost 2.8 times more per step than of 10,000 (benchmarks/). Nothing
    # built here is garbage that needs that collector before graph() returns.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(parts, name)
    finally:
        if enabled:
            gc.enable()


def _build(parts: tuple[Any, ...], name: str | None) -> Graph:
    """The phases of graph(): collect, discover, resolve, check, plan."""
    clear_module_index()
    clear_annotation_cache()
    collected = _collect_parts(parts)
    problems = collected.problems
    title = f"graph({name or ', '.join(collected.labels)})"
    if not collected.given and not problems:
        raise GraphError(title, [Problem("", ("graph() needs a step, a module or a graph.",))])
    order, targets, inputs = _resolve_and_check(collected, title)
    _plan(order)
    return Graph(name or ", ".join(collected.labels), order, targets, inputs)


def _resolve_and_check(collected: _Parts, title: str,
                       ) -> tuple[list[Node], list[Node], dict[str, InputSpec]]:
    """The nodes in topological order, the targets and the inputs, or a GraphError.

    What discovery read (every step's parameters) is freed on return, before planning
    allocates the scheduler's edges: at 100,000 steps, building a graph took more memory
    at its peak than the graph holds."""
    problems = collected.problems
    found = discover(collected.given)
    resolver = Resolver(found, problems)
    nodes = resolver.resolve()
    duplicate_names(found.duplicates, found.infos, problems)
    race_members(nodes, found.infos, problems, resolver.consumed)
    race_deps(nodes.values(), found.infos, problems)
    map_modes(nodes.values(), found.infos, problems)
    edge_types(nodes, found.infos, problems)
    order = toposort(list(nodes.values()), found.infos, problems)
    if problems:
        raise GraphError(title, problems)
    for steps in collected.module_sinks:
        collected.targets.extend(s for s in steps if s not in resolver.consumed)
    targets = list(dict.fromkeys(nodes[t] for t in collected.targets))
    return order, targets, resolver.inputs


def _plan(order: list[Node]) -> None:
    """Edges the scheduler follows: dependents, Outcome consumers, streamed maps."""
    # by discovery index (nodes are numbered in topological order at the end)
    dependents: list[list[Node] | None] = [None] * len(order)
    for n in order:
        for d in n.deps:
            down = dependents[d.index]
            if down is None:
                dependents[d.index] = [n]
            else:
                down.append(n)
        for b in (*n.bindings, *(n.when or ())):  # a when= predicate reads like a step
            if b.node is not None and b.mode in (Mode.OUTCOME, Mode.OUTCOME_LIST):
                if b.node not in n.outcome_sources:
                    n.outcome_sources += (b.node,)
                    b.node.outcome_consumers += 1
                if b.mode is Mode.OUTCOME_LIST:
                    b.node.collect_items = True
    _link_streams(order, dependents)
    for i, n in enumerate(order):
        down = dependents[n.index]
        if down:
            n.dependents = tuple(down)
            dependents[n.index] = None  # freed as it goes: the tuples reuse the memory
        n.index = i


def _link_streams(order: list[Node], dependents: list[list[Node] | None]) -> None:
    """A map over a map runs item by item, without waiting for the whole upstream map.

    That applies when the node's only ``each()`` parameter names a mapped node whose
    items are not collected as outcomes; the node then no longer waits for that node
    as a whole: items arrive one by one.
    """
    for n in order:
        if not n.mapped:
            continue
        each_bindings = [b for b in n.bindings if b.each]
        if len(each_bindings) != 1 or n.owner is not None:
            continue
        up = each_bindings[0].node
        if up is None or not up.mapped or up.collect_items or up.owner is not None:
            continue
        if any(b.node is up and not b.each for b in n.bindings) or up in [
            b.node for b in n.when or ()
        ]:
            continue
        n.stream_from = up
        up.streams_to += (n,)
        n.deps = tuple(d for d in n.deps if d is not up)
        down = dependents[up.index]
        assert down is not None
        down.remove(n)


__all__ = ["Binding", "Graph", "Node", "graph", "location"]
