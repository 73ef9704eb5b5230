"""``graph()``'s check phase: everything that can be wrong once every parameter is bound.

Each check appends :class:`Problem` records instead of raising, so one ``GraphError``
reports every problem of a graph at once: duplicate names, races (a step in two races, or
twice in one), map options, the types flowing along each edge, and cycles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

from ._collect import Info, where
from ._errors import Problem, type_name
from ._nodes import AnyStep, Node
from ._types import EMPTY, compatible, element_type
from ._wiring import Mode

Infos = dict[AnyStep, Info]


def duplicate_names(duplicates: dict[str, list[AnyStep]], infos: Infos,
                    problems: list[Problem]) -> None:
    for name, steps in duplicates.items():
        first = steps[0]
        lines = [f"step name {name!r} is used by {len(steps)} different steps:"]
        lines += [f"  {x.location} in def {x.fn.__name__}" for x in steps]
        lines.append('Give all but one another name: @step(name="...").')
        problems.append(Problem(where(first, infos[first]), tuple(lines), name))


def race_members(nodes: dict[AnyStep, Node], infos: Infos, problems: list[Problem],
                 consumed: set[AnyStep]) -> None:
    """Race members run inside their race: each belongs to one race, once."""
    for s in infos:
        if s.container is None:
            continue
        race_node = nodes[s]
        for m in s.container.members():
            member = nodes[m]
            if member.owner is race_node:
                problems.append(Problem(where(s, infos[s]), (
                    f"race {s.name!r} lists step {m.name!r} more than once.",
                    "Each contestant runs once: list every step one time, or race a copy "
                    f'made with step({m.fn.__name__}, name="...") under another name.',
                ), s.name))
                continue
            if member.owner is not None:
                problems.append(Problem(where(m, infos[m]), (
                    f"step {m.name!r} takes part in two races: {member.owner.name!r} and "
                    f"{race_node.name!r}.",
                    "Use a separate step for each race.",
                ), m.name))
                continue
            member.owner = race_node
            race_node.members += (member,)
            consumed.add(m)


def race_deps(nodes: Iterable[Node], infos: Infos, problems: list[Problem]) -> None:
    """The outermost race waits for every upstream of its (nested) contestants; each
    contestant settles when its own race does."""
    for race_node in nodes:
        if not race_node.members or race_node.owner is not None:
            continue
        outer_deps = dict.fromkeys(race_node.deps)
        tree = race_tree(race_node)
        inside = set(tree)
        for member in tree:
            outer_deps.update((d, None) for d in member.deps if d not in inside)
            for d in member.deps:
                if d in inside and member is not race_node:
                    problems.append(_waits_inside_race(member, d, infos))
        race_node.deps = tuple(d for d in outer_deps if d is not race_node)
        for member in tree:
            if member is not race_node and member.owner is not None:
                member.deps = (member.owner,)
    for node in nodes:
        if node.kind == "race":
            node.output_type = _race_output(node)


def race_tree(node: Node) -> list[Node]:
    """A race and everything racing inside it, races of races included."""
    out = [node]
    for m in node.members:
        out.extend(race_tree(m))
    return out


def _waits_inside_race(member: Node, other: Node, infos: Infos) -> Problem:
    race = member.owner
    assert race is not None
    return Problem(where(member.step, infos[member.step]), (
        f"contestant {member.name!r} of race {race.name!r} waits for {other.name!r}, which "
        "runs in the same race.",
        "Contestants run side by side and the losers are cancelled, so one cannot wait for "
        f"another: take {other.name!r} out of the race, or make {member.name!r} a step "
        "after the race.",
    ), member.name)


def _race_output(race: Node) -> Any:
    """A race outputs what its winner outputs: the union of its contestants' outputs (a
    mapped contestant's being a list, an inner race's its own union)."""
    types_ = [_race_output(m) if m.kind == "race" else m.output_type for m in race.members]
    if any(t is EMPTY for t in types_):
        return EMPTY
    unique = list(dict.fromkeys(types_))
    return unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007


def map_modes(nodes: Iterable[Node], infos: Infos, problems: list[Problem]) -> None:
    """``@step(map="product")`` combines two or more ``each()`` parameters."""
    for node in nodes:
        if node.map_mode != "product":
            continue
        mapped = [b.param for b in node.bindings if b.each]
        if len(mapped) >= 2:
            continue
        has = "none" if not mapped else f"only one ({mapped[0]!r})"
        problems.append(Problem(where(node.step, infos[node.step]), (
            f"@step(map='product') runs once per combination of the each() parameters, but "
            f"step {node.name!r} has {has}.",
            "Give it two or more each() parameters, or leave map= out.",
        ), node.name))


def edge_types(nodes: dict[AnyStep, Node], infos: Infos, problems: list[Problem]) -> None:
    """Every upstream's output fits the parameter it flows into."""
    for s, node in nodes.items():
        info = infos[s]
        for b, expected in zip(node.bindings, info.expects, strict=True):
            up = b.node
            if up is None:
                continue
            provided = up.output_type
            if b.each:
                iterable, item = element_type(provided)
                if not iterable:
                    problems.append(Problem(where(s, info, True), (
                        f"parameter {b.param!r} maps over step {up.name!r}, but it returns "
                        f"{type_name(provided)}, which is not a list of items.",
                        f"  {where(up.step, infos[up.step], True)}",
                        "each() needs a step returning list[T], tuple[T, ...] or another "
                        "iterable of items.",
                    ), s.name))
                    continue
                provided = item
            elif b.mode is Mode.OUTCOME_LIST and not up.mapped:
                problems.append(Problem(where(s, info, True), (
                    f"parameter {b.param!r} asks for list[Outcome[...]] from step "
                    f"{up.name!r}, which is not a mapped step.",
                    "Use Outcome[T] for one step's result; list[Outcome[T]] is for the "
                    "per-item results of a step with an each() parameter.",
                ), s.name))
                continue
            if not compatible(provided, expected):
                problems.append(Problem(where(s, info, True), (
                    f"parameter {b.param!r} expects {type_name(expected)}, but step "
                    f"{up.name!r} returns {type_name(provided)}"
                    + (" items" if b.each else ""),
                    f"  {where(up.step, infos[up.step], True)}",
                    "Change one of the two annotations, or annotate the parameter as Any to "
                    "skip this check.",
                ), s.name))


def toposort(nodes: list[Node], infos: Infos, problems: list[Problem]) -> list[Node]:
    """The nodes upstream first; a cycle is reported with its path and each function."""
    order = _stable_topo(sorted(nodes, key=lambda n: n.index))
    if order is not None:
        return order
    # Kahn's algorithm: what it cannot order is every knot of cycles and what they feed.
    indegree = {n: len(n.deps) for n in nodes}
    children: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in nodes:
        for d in n.deps:
            children[d].append(n)
    ready = [n for n in nodes if indegree[n] == 0]
    while ready:
        for c in children[ready.pop()]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    remaining = {n for n in nodes if indegree[n] > 0}
    for cycle in _cycles(remaining):
        path = " -> ".join(n.name for n in [*cycle, cycle[0]])
        lines = [f"{where(n.step, infos[n.step], True)}" for n in cycle]
        lines.append("A step cannot depend on itself, directly or through other steps.")
        problems.append(Problem(f"cycle: {path}", tuple(lines)))
    return []


def _stable_topo(nodes: list[Node]) -> list[Node] | None:
    """Topological order that keeps discovery order where the edges allow (depth first),
    or None if there is a cycle. A byte per node (by discovery index) says whether it is
    placed or on the current path: graph() of 100,000 steps builds no set or dict here."""
    state = bytearray(len(nodes))  # 0: not seen, 1: on the path (its deps pending), 2: placed
    out: list[Node] = []
    for start in nodes:
        if state[start.index] == _PLACED:
            continue
        stack: list[tuple[Node, int]] = [(start, 0)]
        while stack:
            n, i = stack.pop()
            if state[n.index] == _PLACED:
                continue
            state[n.index] = _ON_PATH
            if i < len(n.deps):
                stack.append((n, i + 1))
                d = n.deps[i]
                if state[d.index] == _ON_PATH:
                    return None
                if state[d.index] != _PLACED:
                    stack.append((d, 0))
                continue
            state[n.index] = _PLACED
            out.append(n)
    return out


_ON_PATH, _PLACED = 1, 2


def _cycles(remaining: set[Node]) -> Iterable[list[Node]]:
    """One representative cycle per strongly connected knot, in a stable order."""
    seen: set[Node] = set()
    for start in sorted(remaining, key=lambda n: n.index):
        if start in seen:
            continue
        path: list[Node] = []
        on_path: dict[Node, int] = {}
        n: Node | None = start
        while n is not None and n not in on_path:
            if n in seen:
                n = None
                break
            on_path[n] = len(path)
            path.append(n)
            n = next((d for d in n.deps if d in remaining), None)
        seen.update(path)
        if n is None:
            continue
        yield path[on_path[n]:]
