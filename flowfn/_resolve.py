"""``graph()``'s resolve phase: each parameter becomes a :class:`Binding` to a step or an input.

Runs after discovery, with the final set of step names, in the order of DESIGN §1: an
annotation naming a step (or ``each()`` of one), then ``Input``, then the parameter's name,
and otherwise a graph input. ``each("name")`` naming no step maps over the graph input of
that name. Inputs of one name are one :class:`InputSpec` shared by every step asking for it.
"""

from __future__ import annotations

import inspect
from typing import Any

from ._collect import Discovery, Info, globals_of, module_steps, where
from ._errors import Problem, did_you_mean, type_name
from ._inputs import GraphInputs, InputSpec
from ._nodes import AnyStep, Binding, Node
from ._step import MISSING, Step
from ._types import EMPTY, same_type
from ._wiring import Mode, Param, return_annotation


class Resolver:
    """Binds every discovered step's parameters; collects problems and the graph inputs."""

    def __init__(self, found: Discovery, problems: list[Problem]) -> None:
        self.found = found
        self.problems = problems
        self.nodes = {s: Node(i, s) for i, s in enumerate(found.infos)}
        self.inputs = GraphInputs()
        self.consumed: set[AnyStep] = set()  # steps something downstream waits for
        # The last binding made to each upstream, shared by the next consumer that
        # names the upstream alike (usually by its name): a graph holds a binding per
        # upstream and parameter name, not one per edge.
        self.last: list[Binding | None] = [None] * len(self.nodes)  # by node index

    def resolve(self) -> dict[AnyStep, Node]:
        for s, info in self.found.infos.items():
            self._node(s, info)
        for spec in self.inputs.values():
            if spec.required:
                spec.default = MISSING
        return self.nodes

    def _node(self, s: AnyStep, info: Info) -> None:
        node = self.nodes[s]
        for text in info.problems:
            self.problems.append(Problem(where(s, info), (text,), s.name))
        assert info.params is not None
        expects: list[Any] = []
        node.bindings = self._bind(info, info.params, info.globalns, "", expects)
        if info.when_params is not None and s.when is not None:
            node.when = self._bind(info, info.when_params, globals_of(s.when),
                                   "when= predicate ")
        # What the checks still need of the parameters is the type each upstream's
        # output must fit; the rest goes now (problems read the signature again).
        info.expects = tuple(expects)
        info.params = info.when_params = None
        deps: dict[Node, None] = {b.node: None for b in node.bindings if b.node is not None}
        deps.update({b.node: None for b in node.when or [] if b.node is not None})
        for a in s.after:
            target = a if isinstance(a, Step) else self.found.lookup(a, info.globalns)
            if target is None:
                self._unknown_step(info, "after=", str(a))
                continue
            self.consumed.add(target)
            deps[self.nodes[target]] = None
        node.deps = tuple(deps)
        if any(b.each for b in node.bindings):
            node.mapped = True
        ret = return_annotation(s.fn)
        if s.container is not None:
            ret = s.container.output_type(ret)
        node.output_type = list[ret] if node.mapped and ret is not EMPTY else ret  # type: ignore[valid-type]

    def _bind(self, info: Info, params: tuple[Param, ...], globalns: dict[str, Any],
              what: str, expects: list[Any] | None = None) -> tuple[Binding, ...]:
        """The parameters' bindings; ``expects`` gets, for each, the type an upstream's
        output must have to fit it (``EMPTY`` for an input)."""
        out: list[Binding] = []
        for p in params:
            if p.problem:
                self.problems.append(Problem(where(info.step, info), p.problem, info.step.name))
                continue
            target = self._target(info, p, globalns, what)
            if isinstance(target, bool):  # False: a problem was reported
                continue
            if target is None:
                out.append(self._input(info, p, globalns, what))
                if expects is not None:
                    expects.append(EMPTY)
            elif target is info.step:
                self.problems.append(Problem(where(info.step, info, True), (
                    f"{what}parameter {p.name!r} is wired to the step itself.",
                    "A step cannot depend on itself, directly or through other steps.",
                ), info.step.name))
            else:
                self.consumed.add(target)
                out.append(self._upstream(p, self.nodes[target]))
                if expects is not None:
                    expects.append(p.annotation if p.each else p.value_type)
                if p.ref is None and module_steps(globalns).get(p.name) is target:
                    self.inputs.wired_by_name.setdefault(
                        p.name, (info.step, target, p.annotation))
        return tuple(out)

    def _upstream(self, p: Param, node: Node) -> Binding:
        """``p`` bound to ``node``'s output: the binding the previous consumer of
        ``node`` got when it is the same, else a new one."""
        if p.default is not MISSING:
            return Binding(p.name, node, None, p.mode, p.each, p.default)
        b = self.last[node.index]
        if b is None or b.param != p.name or b.mode is not p.mode or b.each != p.each:
            b = self.last[node.index] = Binding(p.name, node, None, p.mode, p.each)
        return b

    def _target(self, info: Info, p: Param, globalns: dict[str, Any],
                what: str) -> AnyStep | bool | None:
        """The step ``p`` takes, None for an input, False after a problem."""
        if isinstance(p.ref, Step):
            return p.ref
        if p.as_input:
            return None
        if isinstance(p.ref, str):
            target = self.found.lookup(p.ref, globalns)
            if target is None and not p.each:
                self._unknown_step(info, f"{what}parameter {p.name!r}", p.ref)
                return False
            return target  # each("name") of no step: the graph input of that name
        return self.found.lookup(p.name, globalns)

    def _input(self, info: Info, p: Param, globalns: dict[str, Any], what: str) -> Binding:
        """``p`` as a graph input: its own name, or the input an ``each("name")`` maps over."""
        name = p.ref if p.each and isinstance(p.ref, str) else p.name
        annotation = p.annotation
        if p.each and annotation is not EMPTY:
            annotation = list[annotation]  # type: ignore[valid-type]
        spec = self.inputs.get(name)
        if spec is None:
            spec = self.inputs[name] = InputSpec(name, annotation, p.default, [])
            fn = globalns.get(name)
            if inspect.isfunction(fn) and fn.__module__ == globalns.get("__name__"):
                self.inputs.undecorated[name] = fn
        elif info.step.name not in spec.askers:
            self._clash(info, p, spec, annotation, what)
            if spec.type is EMPTY:
                spec.type = annotation
        if p.default is MISSING:
            spec.required = True
        if info.step.name not in spec.askers:  # a step and its when= predicate
            spec.askers.append(info.step.name)
        return Binding(p.name, None, name, Mode.VALUE, p.each, p.default)

    def _clash(self, info: Info, p: Param, spec: InputSpec, annotation: Any,
               what: str) -> None:
        """Defaults may differ (``def call(i: int = 3)`` is a common way to fix a value):
        a step falls back to its own default when the run does not give the input. Types
        may not: the input is converted once, to one type."""
        if spec.type is EMPTY or annotation is EMPTY or same_type(spec.type, annotation):
            return
        clash = f"as {type_name(spec.type)}, not {type_name(annotation)}"
        self.problems.append(Problem(where(info.step, info, True), (
            f"{what}parameter {p.name!r} is the graph input {spec.name!r}, which "
            f"step {spec.askers[0]!r} also asks for {clash}.",
            "An input is one value, converted once, for every step that asks "
            "for it: give both parameters the same annotation, or rename one "
            "of them.",
        ), info.step.name))

    def _unknown_step(self, info: Info, what: str, ref: str) -> None:
        known = self.found.known
        lines = [f"{what} is wired to step {ref!r}, but no step has that name."]
        nearby = {**module_steps(info.globalns), **known}
        guess = did_you_mean(ref, nearby)
        if guess:
            lines.append(f"Did you mean {guess!r} ({nearby[guess].location})?")
        lines.append(f"Steps in this graph: {', '.join(sorted(known))}.")
        self.problems.append(Problem(where(info.step, info), tuple(lines), info.step.name))
