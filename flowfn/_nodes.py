"""The records a graph is made of: a :class:`Node` per step, a :class:`Binding` per parameter.

They live apart from ``graph()`` so that each phase of building a graph (``_collect``,
``_resolve``, ``_checks``) can fill them in without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ._step import MISSING, Step
from ._types import EMPTY
from ._wiring import Mode

AnyStep = Step[Any, Any]


@dataclass(eq=False, slots=True)
class Binding:
    """Where one parameter's value comes from at run time."""

    param: str
    node: Node | None  # the upstream node, or None for an input
    input: str | None  # the input's name, when ``node`` is None
    mode: Mode
    each: bool = False  # mapped: one item per run (an upstream's output or an input's list)
    default: Any = MISSING


@dataclass(eq=False, slots=True)
class Node:
    """A step placed in a graph: its bindings and its edges. Identity semantics."""

    index: int
    step: AnyStep
    bindings: list[Binding] = field(default_factory=list)
    when: list[Binding] | None = None
    deps: list[Node] = field(default_factory=list)  # must settle before this node starts
    dependents: list[Node] = field(default_factory=list)
    mapped: bool = False  # has each() parameters
    stream_from: Node | None = None  # pipelined map: items arrive from this mapped node
    streams_to: tuple[Node, ...] = ()  # mapped consumers fed item by item (rare: a tuple)
    owner: Node | None = None  # the race this node runs inside
    members: tuple[Node, ...] = ()  # a race's contestants
    outcome_consumers: int = 0  # nodes taking this node as Outcome / list[Outcome]
    outcome_sources: tuple[Node, ...] = ()  # upstreams this node reads as Outcome
    collect_items: bool = False  # some consumer wants list[Outcome]: no fail-fast map
    output_type: Any = EMPTY
    name: str = ""  # the step's name, copied: read on every scheduling decision
    kind: str = "function"  # or the container's kind: "race", "subflow"
    simple: bool = False  # async, no retries, timeout or limit: called with no wrapper
    plain: bool = False  # simple, and nothing else to decide: the scheduler's hot path
    args: list[tuple[str, int]] | None = None  # plain, every parameter an upstream's value
    wakes: list[int] = field(default_factory=list)  # dependents the scheduler spawns
    # How the items of several each() parameters combine: "zip" (side by side, equal
    # lengths) or "product" (every combination, in itertools.product order).
    map_mode: Literal["zip", "product"] = "zip"

    def __post_init__(self) -> None:
        self.name = self.step.name
        self.map_mode = self.step.map
        if self.step.container is not None:
            self.kind = self.step.container.kind

    def __repr__(self) -> str:
        return f"<node {self.name}>"
