"""The records a graph is made of: a :class:`Node` per step, a :class:`Binding` per parameter.

They live apart from ``graph()`` so that each phase of building a graph (``_collect``,
``_resolve``, ``_checks``) can fill them in without importing the others.

A graph of 100,000 steps holds 100,000 nodes, so a node is kept small: what every node
has is a slot; what only a few have (a race's members, a map's mode, Outcome edges) is
a class-level default, stored in the node's own ``__dict__`` only when it is set. Edges
are tuples, fixed once the graph is planned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._step import MISSING, Step
from ._types import EMPTY
from ._wiring import Mode

AnyStep = Step[Any, Any]


@dataclass(eq=False, slots=True)
class Binding:
    """Where one parameter's value comes from at run time.

    Never changed once made: the consumers of one upstream that name it alike share one
    binding (``_resolve``).
    """

    param: str
    node: Node | None  # the upstream node, or None for an input
    input: str | None  # the input's name, when ``node`` is None
    mode: Mode
    each: bool = False  # mapped: one item per run (an upstream's output or an input's list)
    default: Any = MISSING


class Node:
    """A step placed in a graph: its bindings and its edges. Identity semantics."""

    __slots__ = ("__dict__", "bindings", "dependents", "deps", "direct", "index", "name",
                 "output_type", "plain", "step", "wakes")

    # Set only on the nodes they apply to (see the module's docstring).
    when: tuple[Binding, ...] | None = None  # the when= predicate's bindings
    mapped: bool = False  # has each() parameters
    stream_from: Node | None = None  # pipelined map: items arrive from this mapped node
    streams_to: tuple[Node, ...] = ()  # mapped consumers fed item by item
    owner: Node | None = None  # the race this node runs inside
    members: tuple[Node, ...] = ()  # a race's contestants
    outcome_consumers: int = 0  # nodes taking this node as Outcome / list[Outcome]
    outcome_sources: tuple[Node, ...] = ()  # upstreams this node reads as Outcome
    collect_items: bool = False  # some consumer wants list[Outcome]: no fail-fast map
    kind: str = "function"  # or the container's kind: "race", "subflow"
    # How the items of several each() parameters combine: "zip" (side by side, equal
    # lengths) or "product" (every combination, in itertools.product order).
    map_mode: Literal["zip", "product"] = "zip"

    def __init__(self, index: int, step: AnyStep) -> None:
        self.index = index
        self.step = step
        self.bindings: tuple[Binding, ...] = ()
        self.deps: tuple[Node, ...] = ()  # must settle before this node starts
        self.dependents: tuple[Node, ...] = ()
        # The dependents the scheduler starts (not those a race runs): ``dependents``
        # itself unless a race owns one of them.
        self.wakes: tuple[Node, ...] = ()
        self.output_type: Any = EMPTY
        self.name = step.name  # copied: read on every scheduling decision
        self.plain = False  # simple, and nothing else to decide: the scheduler's hot path
        self.direct = False  # plain, and every parameter an upstream's value
        if step.map != "zip":
            self.map_mode = step.map
        if step.container is not None:
            self.kind = step.container.kind

    @property
    def simple(self) -> bool:
        """``async def``, no retries, timeout, limit or cache: called with no wrapper."""
        step = self.step
        return (step.executor == "async" and not step.retries and step.timeout is None
                and step.limit is None and not step.cache)

    def __repr__(self) -> str:
        return f"<node {self.name}>"
