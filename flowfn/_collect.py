"""``graph()``'s discovery phase: every step that takes part, and what its signature says.

Discovery follows step objects in annotations, names, ``after=``, ``when=`` predicates and
container members until nothing new turns up. Binding parameters to what they discovered
comes afterwards (``_resolve``), with the final set of names, so the result never depends
on the order steps were found in.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import Problem, def_line, relpath, type_name, with_article
from ._nodes import AnyStep
from ._step import Step
from ._types import EMPTY
from ._wiring import Param, read_params, return_annotation

_module_index_cache: dict[int, dict[str, AnyStep]] = {}


def clear_module_index() -> None:
    """Forget module indexes: a namespace id may be reused once its module is freed."""
    _module_index_cache.clear()


def module_steps(globalns: dict[str, Any]) -> dict[str, AnyStep]:
    """name -> step for the steps a module holds at its top level."""
    key = id(globalns)
    index = _module_index_cache.get(key)
    if index is None:
        index = {}
        for value in list(globalns.values()):
            if isinstance(value, Step):
                index.setdefault(value.name, value)
        _module_index_cache[key] = index
    return index


def steps_defined_in(module: types.ModuleType) -> list[AnyStep]:
    """The steps defined in ``module``; those it merely imports belong elsewhere."""
    return list(dict.fromkeys(
        v for v in vars(module).values()
        if isinstance(v, Step) and getattr(v.fn, "__module__", None) == module.__name__))


def globals_of(fn: Callable[..., Any] | None) -> dict[str, Any]:
    """The namespace a function's parameters are looked up in by name: its module's
    (pattern helpers such as ``shell()`` record the module that called them)."""
    if fn is None:
        return {}
    g = getattr(fn, "__flowfn_globals__", None) or getattr(fn, "__globals__", None)
    if g is None:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        g = vars(module) if module else {}
    return g


@dataclass(slots=True)
class Info:
    """What discovery learned about one step (one per step while a graph is built).

    Resolving the step's parameters frees them (``params`` and ``when_params`` become
    None), keeping only ``expects``: at 100,000 steps, holding every parameter until the
    graph was checked made graph()'s peak memory half as large again.
    """

    step: AnyStep
    params: tuple[Param, ...] | None
    problems: tuple[str, ...]
    when_params: tuple[Param, ...] | None
    globalns: dict[str, Any]
    # by binding, once resolved: the type an upstream's output must have (EMPTY: input)
    expects: tuple[Any, ...] = ()


@dataclass
class Discovery:
    """Every step found from the given ones, by name; names used by several steps."""

    given: dict[str, AnyStep]  # steps given to graph() (directly, in modules or graphs)
    infos: dict[AnyStep, Info] = field(default_factory=dict)
    known: dict[str, AnyStep] = field(default_factory=dict)
    duplicates: dict[str, list[AnyStep]] = field(default_factory=dict)

    def lookup(self, name: str, globalns: dict[str, Any]) -> AnyStep | None:
        """The step a name means for a function of the module ``globalns``: a step given
        to graph(), else one of that module, else one found on the way."""
        return (self.given.get(name) or module_steps(globalns).get(name)
                or self.known.get(name))


def discover(given: list[AnyStep]) -> Discovery:
    """Every step reachable from ``given``, with its parameters read."""
    found = Discovery({s.name: s for s in reversed(given)})
    work: list[AnyStep] = []

    def add(s: AnyStep) -> None:
        if s in found.infos:
            return
        params, plist = read_params(s.fn)
        when_params = None
        if s.when is not None:
            wparams, wprobs = read_params(s.when)
            when_params = tuple(wparams)
            plist += [f"when= predicate: {w}" for w in wprobs]
        found.infos[s] = Info(s, tuple(params), tuple(plist), when_params, globals_of(s.fn))
        other = found.known.setdefault(s.name, s)
        if other is not s:
            found.duplicates.setdefault(s.name, [other]).append(s)
        work.append(s)

    for s in given:
        add(s)
    while work:
        s = work.pop()
        for target in _upstreams(s, found.infos[s], found):
            add(target)
    return found


def _upstreams(s: AnyStep, info: Info, found: Discovery) -> list[AnyStep]:
    """The steps ``s`` names: in annotations, by parameter name, in after= and when=,
    and the members of a container."""
    out: list[AnyStep] = []
    for params, g in ((info.params or (), info.globalns),
                      (info.when_params or (), globals_of(s.when))):
        for p in params:
            if isinstance(p.ref, Step):
                out.append(p.ref)
            elif not p.as_input:
                name = p.ref if p.ref is not None else p.name
                target = found.lookup(name, g)
                if target is not None:
                    out.append(target)
                    # a different step of that name in the function's own module takes
                    # part too, so that the duplicate name is reported, not settled
                    mine = module_steps(g).get(name)
                    if mine is not None and mine is not target:
                        out.append(mine)
    for a in s.after:
        target = a if isinstance(a, Step) else found.lookup(a, info.globalns)
        if target is not None:
            out.append(target)
    if s.container is not None:
        out.extend(s.container.members())
    return out


# --- how problems point at a step ------------------------------------------------------


def sig_text(step: AnyStep, info: Info, annotations: bool) -> str:
    parts = []
    params = info.params if info.params is not None else read_params(step.fn)[0]
    for p in params:
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


def where(step: AnyStep, info: Info, annotations: bool = False) -> str:
    return f"{step.location} in {sig_text(step, info, annotations)}"


_LITERALS = (str, bytes, int, float, bool, type(None))


def not_a_part(part: Any, position: int) -> Problem:
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


def empty_module(module: types.ModuleType, position: int) -> Problem:
    """A module given to graph() that defines no step (perhaps undecorated functions)."""
    plain = [v for v in vars(module).values()
             if inspect.isfunction(v) and v.__module__ == module.__name__
             and not v.__name__.startswith("_")]
    path = getattr(module, "__file__", None)
    lines = [f"argument {position} of graph(), module {module.__name__!r}"
             + (f" ({relpath(path)})" if path else "") + ", defines no steps."]
    if plain:
        names = ", ".join(f.__name__ for f in plain[:5]) + (", ..." if len(plain) > 5 else "")
        lines.append(f"It has plain functions ({names}): decorate the ones that are steps "
                     "with @step.")
    else:
        lines.append("Decorate its functions with @step, or pass the module that defines "
                     "the steps.")
    return Problem("", tuple(lines))
