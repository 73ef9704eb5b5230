"""``graph()``: resolve every parameter to a step or an input, check it all, order it.

A graph is built once and validated before anything runs. Resolution is two-phase:
first *discover* every step (following step objects in annotations, names, ``after=``,
``when=`` predicates and container members), then *bind* each parameter with the final
set of names, so the result never depends on the order steps were found in.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ._errors import (
    GraphError,
    Problem,
    def_line,
    did_you_mean,
    location,
    type_name,
    with_article,
)
from ._step import MISSING, Step
from ._types import EMPTY, compatible, element_type, same_type
from ._wiring import Mode, Param, clear_annotation_cache, read_params, return_annotation

if TYPE_CHECKING:
    from ._inputs import InputSpec

AnyStep = Step[Any, Any]


@dataclass(eq=False, slots=True)
class Binding:
    """Where one parameter's value comes from at run time."""

    param: str
    node: Node | None  # the upstream node, or None for an input
    input: str | None  # the input's name, when ``node`` is None
    mode: Mode
    each: bool = False
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

    def __post_init__(self) -> None:
        self.name = self.step.name
        if self.step.container is not None:
            self.kind = self.step.container.kind

    def __repr__(self) -> str:
        return f"<node {self.name}>"


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
        self.by_step = {n.step: n for n in nodes}
        # Precomputed once for the scheduler, so that a run does no per-graph work.
        self.roots = [n for n in nodes if not n.deps and n.owner is None]
        self.dep_counts = [len(n.deps) for n in nodes]
        self.stream_edges = [(n.index, d.index) for n in nodes for d in n.streams_to]
        # the nodes check_limits must look at: limited steps, and sub-workflows (inside)
        self.limit_checks = [n for n in nodes
                             if n.step.limit is not None or n.kind == "subflow"]
        for n in nodes:
            n.wakes = [d.index for d in n.dependents if d.owner is None]
            step = n.step
            n.simple = (step.executor == "async" and not step.retries
                        and step.timeout is None and step.limit is None)
            n.plain = (n.simple and n.kind == "function" and not n.mapped
                       and n.stream_from is None and n.when is None)
            if n.plain and all(b.node is not None and b.mode is Mode.VALUE
                               for b in n.bindings):
                n.args = [(b.param, b.node.index) for b in n.bindings if b.node is not None]

    @property
    def steps(self) -> tuple[AnyStep, ...]:
        """Every step of the graph, upstream first."""
        return tuple(n.step for n in self.nodes)

    def node(self, key: AnyStep | str) -> Node:
        node = self.by_step.get(key) if isinstance(key, Step) else self.by_name.get(key)
        if node is None:
            raise KeyError(f"no step {key!r} in {self}")
        return node

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema (an object) of the graph's inputs."""
        from ._inputs import input_schema

        return input_schema(self.inputs)

    @property
    def output_type(self) -> Any:
        if len(self.targets) == 1:
            return self.targets[0].output_type
        return dict[str, Any]

    def to_mermaid(self) -> str:
        from ._render import graph_mermaid

        return graph_mermaid(self)

    def to_dot(self) -> str:
        from ._render import graph_dot

        return graph_dot(self)

    def __repr__(self) -> str:
        return f"graph({self.name})"

    def __len__(self) -> int:
        return len(self.nodes)


# --- discovery -------------------------------------------------------------------------

_module_index_cache: dict[int, dict[str, AnyStep]] = {}


def _module_steps(globalns: dict[str, Any]) -> dict[str, AnyStep]:
    """name -> step for the steps defined at a module's top level."""
    key = id(globalns)
    index = _module_index_cache.get(key)
    if index is None:
        index = {}
        for value in list(globalns.values()):
            if isinstance(value, Step):
                index.setdefault(value.name, value)
        _module_index_cache[key] = index
    return index


def _globals_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The namespace a function's parameters are looked up in by name: its module's
    (pattern helpers such as ``shell()`` record the module that called them)."""
    g = getattr(fn, "__flowfn_globals__", None) or getattr(fn, "__globals__", None)
    if g is None:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        g = vars(module) if module else {}
    return g


@dataclass
class _Info:
    """What discovery learned about one step."""

    step: AnyStep
    params: list[Param]
    problems: list[str]
    when_params: list[Param] | None
    globalns: dict[str, Any]


def _sig_text(step: AnyStep, info: _Info, annotations: bool) -> str:
    parts = []
    for p in info.params:
        if annotations and p.annotation is not EMPTY:
            parts.append(f"{p.name}: {type_name(p.annotation)}")
        else:
            parts.append(p.name)
    text = f"def {step.name}({', '.join(parts)})"
    if annotations:
        ret = return_annotation(step.fn)
        if ret is not EMPTY:
            text += f" -> {type_name(ret)}"
    return text


def _where(step: AnyStep, info: _Info, annotations: bool = False) -> str:
    return f"{step.location} in {_sig_text(step, info, annotations)}"


_LITERALS = (str, bytes, int, float, bool, type(None))


def _not_a_part(part: Any, position: int) -> Problem:
    """Argument ``position`` of ``graph()`` is neither a step, a module nor a graph."""
    what = f"argument {position} of graph()"
    fn = inspect.unwrap(part) if callable(part) else None
    if inspect.isfunction(fn):
        name = getattr(part, "__name__", fn.__name__)
        return Problem(def_line(part, name), (
            f"{what} is the plain function {name!r}, not a step.",
            "Decorate it with @step, then pass the step.",
        ))
    if part is None:
        kind = "None"
    elif isinstance(part, type):
        kind = f"the class {type_name(part)!r}"
    else:
        kind = with_article(type_name(type(part)))
        if isinstance(part, _LITERALS) and len(repr(part)) <= 40:
            kind += f" ({part!r})"
    if isinstance(part, str):
        hint = "Pass the step itself, not its name."
    elif callable(part):
        hint = "Decorate functions with @step before passing them."
    else:
        hint = "Pass the step itself."
    return Problem("", (f"{what} is {kind}, not a step, a module or a graph.", hint))


def graph(*parts: AnyStep | types.ModuleType | Graph, name: str | None = None) -> Graph:
    """Build and validate the graph that computes ``parts``.

    ``parts`` are steps (the targets; everything upstream is found from them), modules
    (every step in them; targets are the sinks) and other graphs (merged). All problems
    are reported together in one :class:`GraphError`.
    """
    _module_index_cache.clear()
    clear_annotation_cache()
    given: list[AnyStep] = []
    targets: list[AnyStep] = []
    labels: list[str] = []
    problems: list[Problem] = []
    module_sinks: list[list[AnyStep]] = []
    for position, part in enumerate(parts, start=1):
        if isinstance(part, Step):
            given.append(part)
            targets.append(part)
            labels.append(part.name)
        elif isinstance(part, Graph):
            given.extend(n.step for n in part.nodes)
            targets.extend(n.step for n in part.targets)
            labels.append(part.name)
        elif isinstance(part, types.ModuleType):
            # the steps defined in the module; those it merely imports belong elsewhere
            steps = list(dict.fromkeys(
                v for v in vars(part).values()
                if isinstance(v, Step) and getattr(v.fn, "__module__", None) == part.__name__))
            given.extend(steps)
            module_sinks.append(steps)
            labels.append(part.__name__.rsplit(".", 1)[-1])
        else:
            problems.append(_not_a_part(part, position))
            if inspect.isfunction(part):
                labels.append(part.__name__)
    title = f"graph({name or ', '.join(labels)})"
    if not given and not problems:
        raise GraphError(title, [Problem("", ("graph() needs a step, a module or a graph.",))])

    infos: dict[AnyStep, _Info] = {}
    known: dict[str, AnyStep] = {}
    duplicates: dict[str, list[AnyStep]] = {}

    def add(s: AnyStep) -> None:
        if s in infos:
            return
        params, plist = read_params(s.fn)
        when_params = None
        if s.when is not None:
            when_params, wprobs = read_params(s.when)
            plist += [f"when= predicate: {w}" for w in wprobs]
        infos[s] = _Info(s, params, plist, when_params, _globals_of(s.fn))
        other = known.setdefault(s.name, s)
        if other is not s:
            duplicates.setdefault(s.name, [other]).append(s)
        work.append(s)

    def lookup(name: str, globalns: dict[str, Any]) -> AnyStep | None:
        return known.get(name) or _module_steps(globalns).get(name)

    work: list[AnyStep] = []
    for s in given:
        add(s)
    while work:
        s = work.pop()
        info = infos[s]
        for plist_, g in ((info.params, info.globalns),
                          (info.when_params or [], _globals_of(s.when) if s.when else {})):
            for p in plist_:
                if isinstance(p.ref, Step):
                    add(p.ref)
                else:
                    found = lookup(p.ref if p.ref is not None else p.name, g)
                    if found is not None:
                        add(found)
        for a in s.after:
            if isinstance(a, Step):
                add(a)
            else:
                found = lookup(a, info.globalns)
                if found is not None:
                    add(found)
        if s.container is not None:
            for m in s.container.members():
                add(m)

    # Module targets are the sinks of the module's steps (computed after discovery).
    consumed: set[AnyStep] = set()

    # --- binding ------------------------------------------------------------------
    nodes = {s: Node(i, s) for i, s in enumerate(infos)}
    from ._inputs import InputSpec

    inputs: dict[str, InputSpec] = {}

    def available() -> str:
        return ", ".join(sorted(known))

    def unknown_step(info: _Info, what: str, ref: str) -> None:
        lines = [f"{what} is wired to step {ref!r}, but no step has that name."]
        nearby = {**_module_steps(info.globalns), **known}
        guess = did_you_mean(ref, nearby)
        if guess:
            lines.append(f"Did you mean {guess!r} ({nearby[guess].location})?")
        lines.append(f"Steps in this graph: {available()}.")
        problems.append(Problem(_where(info.step, info), tuple(lines), info.step.name))

    def bind(info: _Info, plist_: list[Param], globalns: dict[str, Any],
             what: str) -> list[Binding]:
        out: list[Binding] = []
        for p in plist_:
            if p.problem:
                problems.append(Problem(_where(info.step, info), p.problem, info.step.name))
                continue
            target: AnyStep | None
            if isinstance(p.ref, Step):
                target = p.ref
            elif isinstance(p.ref, str):
                target = lookup(p.ref, globalns)
                if target is None:
                    unknown_step(info, f"{what}parameter {p.name!r}", p.ref)
                    continue
            else:
                target = lookup(p.name, globalns)
            if target is None:
                spec = inputs.get(p.name)
                if spec is None:
                    spec = inputs[p.name] = InputSpec(p.name, p.annotation, p.default, [])
                elif info.step.name not in spec.askers:
                    clash = _input_clash(spec, p)
                    if clash:
                        problems.append(Problem(_where(info.step, info, True), (
                            f"{what}parameter {p.name!r} is the graph input {p.name!r}, which "
                            f"step {spec.askers[0]!r} also asks for {clash}.",
                            "An input is one value, converted once, for every step that asks "
                            "for it: give both parameters the same annotation, or rename one "
                            "of them.",
                        ), info.step.name))
                    if spec.type is EMPTY:
                        spec.type = p.annotation
                if p.default is MISSING:
                    spec.required = True
                if info.step.name not in spec.askers:  # a step and its when= predicate
                    spec.askers.append(info.step.name)
                out.append(Binding(p.name, None, p.name, Mode.VALUE, default=p.default))
                continue
            if target is info.step:
                problems.append(Problem(_where(info.step, info, True), (
                    f"{what}parameter {p.name!r} is wired to the step itself.",
                    "A step cannot depend on itself, directly or through other steps.",
                ), info.step.name))
                continue
            up = nodes[target]
            consumed.add(target)
            out.append(Binding(p.name, up, None, p.mode, p.each, p.default))
        return out

    for s, info in infos.items():
        node = nodes[s]
        for text in info.problems:
            problems.append(Problem(_where(s, info), (text,), s.name))
        node.bindings = bind(info, info.params, info.globalns, "")
        if info.when_params is not None and s.when is not None:
            node.when = bind(info, info.when_params, _globals_of(s.when), "when= predicate ")
        deps: dict[Node, None] = {b.node: None for b in node.bindings if b.node is not None}
        deps.update({b.node: None for b in node.when or [] if b.node is not None})
        for a in s.after:
            target = a if isinstance(a, Step) else lookup(a, info.globalns)
            if target is None:
                unknown_step(info, "after=", str(a))
                continue
            consumed.add(target)
            deps[nodes[target]] = None
        node.deps = list(deps)
        node.mapped = any(b.each for b in node.bindings)
        ret = return_annotation(s.fn)
        if s.container is not None:
            ret = s.container.output_type(ret)
        node.output_type = list[ret] if node.mapped and ret is not EMPTY else ret  # type: ignore[valid-type]

    for name, steps in duplicates.items():
        first = steps[0]
        lines = [f"step name {name!r} is used by {len(steps)} different steps:"]
        lines += [f"  {x.location} in def {x.fn.__name__}" for x in steps]
        lines.append('Give all but one another name: @step(name="...").')
        problems.append(Problem(_where(first, infos[first]), tuple(lines), name))

    # Race members run inside their race: the race waits for the members' upstreams,
    # and a member settles when its race does.
    for s in infos:
        if s.container is None:
            continue
        race_node = nodes[s]
        for m in s.container.members():
            member = nodes[m]
            if member.owner is not None and member.owner is not race_node:
                problems.append(Problem(_where(m, infos[m]), (
                    f"step {m.name!r} takes part in two races: {member.owner.name!r} and "
                    f"{race_node.name!r}.",
                    "Use a separate step for each race.",
                ), m.name))
                continue
            member.owner = race_node
            race_node.members += (member,)
            consumed.add(m)
    # The outermost race waits for every upstream of its (nested) contestants; each
    # contestant settles when its own race does.
    for race_node in nodes.values():
        if race_node.members and race_node.owner is None:
            outer_deps = dict.fromkeys(race_node.deps)
            inside = set(_race_tree(race_node))
            for member in _race_tree(race_node):
                outer_deps.update((d, None) for d in member.deps if d not in inside)
                for d in member.deps:
                    if d in inside and member is not race_node:
                        problems.append(_waits_inside_race(member, d, infos))
            race_node.deps = [d for d in outer_deps if d is not race_node]
            for member in _race_tree(race_node):
                if member is not race_node:
                    assert member.owner is not None
                    member.deps = [member.owner]

    for node in nodes.values():
        if node.kind == "race":
            node.output_type = _race_output(node)
    _check_types(nodes, infos, problems)
    order = _toposort(list(nodes.values()), infos, problems)

    for spec in inputs.values():
        if spec.required:
            spec.default = MISSING

    if problems:
        raise GraphError(title, problems)

    for n in order:
        for d in n.deps:
            d.dependents.append(n)
        for b in [*n.bindings, *(n.when or ())]:  # a when= predicate reads like a step
            if b.node is not None and b.mode in (Mode.OUTCOME, Mode.OUTCOME_LIST):
                if b.node not in n.outcome_sources:
                    n.outcome_sources += (b.node,)
                    b.node.outcome_consumers += 1
                if b.mode is Mode.OUTCOME_LIST:
                    b.node.collect_items = True
    _link_streams(order)
    for i, n in enumerate(order):
        n.index = i

    for steps in module_sinks:
        targets.extend(s for s in steps if s not in consumed)
    target_nodes = list(dict.fromkeys(nodes[t] for t in targets))
    return Graph(name or ", ".join(labels), order, target_nodes, inputs)


def _race_tree(node: Node) -> list[Node]:
    """A race and everything racing inside it, races of races included."""
    out = [node]
    for m in node.members:
        out.extend(_race_tree(m))
    return out


def _link_streams(order: list[Node]) -> None:
    """A map over a map runs item by item, without waiting for the whole upstream map.

    That applies when the node's only ``each()`` parameter names a mapped node whose
    items are not collected as outcomes; the node then no longer waits for that node
    as a whole: items arrive one by one.
    """
    for n in order:
        each_bindings = [b for b in n.bindings if b.each]
        if len(each_bindings) != 1 or n.owner is not None:
            continue
        up = each_bindings[0].node
        if up is None or not up.mapped or up.collect_items or up.owner is not None:
            continue
        if any(b.node is up and not b.each for b in n.bindings) or up in [
            b.node for b in n.when or []
        ]:
            continue
        n.stream_from = up
        up.streams_to += (n,)
        n.deps.remove(up)
        up.dependents.remove(n)


def _check_types(nodes: dict[AnyStep, Node], infos: dict[AnyStep, _Info],
                 problems: list[Problem]) -> None:
    for s, node in nodes.items():
        info = infos[s]
        params = {p.name: p for p in info.params}
        for b in node.bindings:
            up = b.node
            if up is None:
                continue
            p = params[b.param]
            provided = up.output_type
            if b.each:
                iterable, item = element_type(provided)
                if not iterable:
                    problems.append(Problem(_where(s, info, True), (
                        f"parameter {b.param!r} maps over step {up.name!r}, but it returns "
                        f"{type_name(provided)}, which is not a list of items.",
                        f"  {_where(up.step, infos[up.step], True)}",
                        "each() needs a step returning list[T], tuple[T, ...] or another "
                        "iterable of items.",
                    ), s.name))
                    continue
                provided = item
            elif b.mode is Mode.OUTCOME_LIST and not up.mapped:
                problems.append(Problem(_where(s, info, True), (
                    f"parameter {b.param!r} asks for list[Outcome[...]] from step "
                    f"{up.name!r}, which is not a mapped step.",
                    "Use Outcome[T] for one step's result; list[Outcome[T]] is for the "
                    "per-item results of a step with an each() parameter.",
                ), s.name))
                continue
            expected = p.annotation if b.each else p.value_type
            if not compatible(provided, expected):
                problems.append(Problem(_where(s, info, True), (
                    f"parameter {b.param!r} expects {type_name(expected)}, but step "
                    f"{up.name!r} returns {type_name(provided)}"
                    + (" items" if b.each else ""),
                    f"  {_where(up.step, infos[up.step], True)}",
                    "Change one of the two annotations, or annotate the parameter as Any to "
                    "skip this check.",
                ), s.name))


def _waits_inside_race(member: Node, other: Node, infos: dict[AnyStep, _Info]) -> Problem:
    race = member.owner
    assert race is not None
    return Problem(_where(member.step, infos[member.step]), (
        f"contestant {member.name!r} of race {race.name!r} waits for {other.name!r}, which "
        "runs in the same race.",
        "Contestants run side by side and the losers are cancelled, so one cannot wait for "
        f"another: take {other.name!r} out of the race, or make {member.name!r} a step "
        "after the race.",
    ), member.name)


def _input_clash(spec: InputSpec, p: Param) -> str:
    """How parameter ``p`` disagrees with the input another step already asks for.

    Defaults may differ (``def call(i: int = 3)`` is a common way to fix a value): a
    step falls back to its own default when the run does not give the input. Types may
    not: the input is converted once, to one type.
    """
    if (spec.type is not EMPTY and p.annotation is not EMPTY
            and not same_type(spec.type, p.annotation)):
        return f"as {type_name(spec.type)}, not {type_name(p.annotation)}"
    return ""


def _race_output(race: Node) -> Any:
    """A race outputs what its winner outputs: the union of its contestants' outputs (a
    mapped contestant's being a list, an inner race's its own union)."""
    types_ = [_race_output(m) if m.kind == "race" else m.output_type for m in race.members]
    if any(t is EMPTY for t in types_):
        return EMPTY
    unique = list(dict.fromkeys(types_))
    return unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007


def _toposort(nodes: list[Node], infos: dict[AnyStep, _Info],
              problems: list[Problem]) -> list[Node]:
    """Kahn's algorithm; a cycle is reported with its path and each function."""
    indegree = {n: len(n.deps) for n in nodes}
    children: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in nodes:
        for d in n.deps:
            children[d].append(n)
    ready = [n for n in nodes if indegree[n] == 0]
    order: list[Node] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if len(order) == len(nodes):
        # Kahn's pass proved there is no cycle; the order used is the depth-first one
        # that keeps discovery order wherever the edges allow (stable across runs).
        return _stable_topo(sorted(nodes, key=lambda n: n.index))
    remaining = {n for n in nodes if indegree[n] > 0}
    for cycle in _cycles(remaining):
        path = " -> ".join(n.name for n in [*cycle, cycle[0]])
        lines = [f"{_where(n.step, infos[n.step], True)}" for n in cycle]
        lines.append("A step cannot depend on itself, directly or through other steps.")
        problems.append(Problem(f"cycle: {path}", tuple(lines)))
    return order


def _stable_topo(nodes: list[Node]) -> list[Node]:
    """Topological order that keeps discovery order where the edges allow."""
    placed: set[Node] = set()
    out: list[Node] = []
    for start in nodes:
        if start in placed:
            continue
        stack: list[tuple[Node, int]] = [(start, 0)]
        while stack:
            n, i = stack.pop()
            if n in placed:
                continue
            if i < len(n.deps):
                stack.append((n, i + 1))
                d = n.deps[i]
                if d not in placed:
                    stack.append((d, 0))
                continue
            placed.add(n)
            out.append(n)
    return out


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
        cycle = path[on_path[n]:]
        yield cycle


__all__ = ["Binding", "Graph", "Node", "graph", "location"]
