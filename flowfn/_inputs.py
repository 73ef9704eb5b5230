"""Graph inputs: their description, their JSON Schema, and their strict conversion.

Conversion goes through a flowfn-owned cattrs converter that only performs *lossless*
conversions: ``"42"`` becomes ``42`` for an ``int``, but ``7.9`` is not an ``int`` and ``5``
is not a ``str``. Every bad value is reported at once, as a data path
(``order.items[2].qty``), before any step runs. Beyond cattrs' defaults:

- ``float`` takes an int only when a float holds it exactly (``2**53 + 1`` is refused);
- ``date``, ``datetime``, ``time``, ``UUID``, ``Decimal`` and ``Path`` take an instance or
  their text form (ISO 8601 for times; a ``Decimal`` also an int, never a float);
- a union of plain types keeps a value that already is one of its members, and converts
  nothing (``3`` for ``int | str`` stays ``3``, ``"3"`` stays ``"3"``, ``1.5`` is refused);
- an ``Enum`` takes a member or a member's value; ``bytes`` also base64 text;
- a set refuses items that repeat once converted (it would drop some);
- a ``Literal`` takes exactly one of its values;
- any other annotation (a class without a data shape, ``object``, ``Callable``, a
  ``Protocol``, a ``TypeVar``) takes the value as it is, ``isinstance``-checked.

The converter itself lives in ``_converter``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ._converter import converter as converter
from ._converter import problems_of
from ._errors import InputError, did_you_mean, location, type_name
from ._options import describe
from ._step import MISSING, Step
from ._types import EMPTY, opaque_class, strip_annotated


@dataclass
class InputSpec:
    """One graph input: its name, type, default and the steps that ask for it."""

    name: str
    type: Any
    default: Any = MISSING
    askers: list[str] = field(default_factory=list)
    required: bool = False

    def __repr__(self) -> str:
        tp = "Any" if self.type is EMPTY else type_name(self.type)
        default = "" if self.default is MISSING else f" = {self.default!r}"
        return f"<input {self.name}: {tp}{default}>"


class GraphInputs(dict[str, InputSpec]):
    """A graph's inputs by name, plus what explains a wrong or missing one at run time.

    ``wired_by_name``: parameters that are *not* inputs because a step of their module
    has their name (param name -> asking step, that step, the parameter's annotation).
    ``undecorated``: required inputs named like a plain function of the asking step's
    module, a forgotten ``@step``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wired_by_name: dict[str, tuple[Step[Any, Any], Step[Any, Any], Any]] = {}
        self.undecorated: dict[str, Callable[..., Any]] = {}

    def unknown_hint(self, name: str) -> str:
        """Why ``name`` is no input although a parameter has that name, or ''."""
        wired = self.wired_by_name.get(name)
        if wired is None:
            return ""
        asker, upstream, annotation = wired
        base = "T" if annotation is EMPTY else type_name(annotation)
        return (
            f" Parameter {name!r} of step {asker.name!r} ({asker.location}) is wired by name "
            f"to step {upstream.name!r} ({upstream.location}), so it is not an input. To make "
            f"it one, annotate it Annotated[{base}, Input] (from flowfn import Input), or "
            "rename the step."
        )

    def missing_hint(self, name: str) -> str:
        fn = self.undecorated.get(name)
        if fn is None:
            return ""
        return f". Did you forget @step on def {fn.__name__} ({location(fn)})?"


def structure(value: Any, tp: Any, path: str) -> tuple[Any, list[str]]:
    """``value`` converted to ``tp``, or the problems found (as ``path: message`` lines)."""
    tp = strip_annotated(tp)
    if tp is EMPTY or tp is Any:
        return value, []
    try:
        return converter.structure(value, tp), []
    except Exception as exc:
        return None, problems_of(exc, path)


def check_mapping_arg(context: str, argument: str, value: Any, takes: str,
                      keys: tuple[type, ...] = (str,)) -> None:
    """``value`` (an argument of ``run()``) is None or a mapping with keys of ``keys``."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        hint = ""
        if argument == "inputs" and isinstance(value, str) and "=" in value:
            name, _, text = value.partition("=")
            hint = f" To pass {value!r}, write {{{name.strip()!r}: {text.strip()!r}}}."
        elif isinstance(value, list | tuple) and value and all(
                isinstance(x, tuple) and len(x) == 2 for x in value):
            hint = f" A list of pairs becomes one with dict(...): {argument}=dict(pairs)."
        raise TypeError(
            f"{context}: {argument} must be a mapping of {takes}, got {describe(value)}."
            + hint
        )
    for key in value:
        if not isinstance(key, keys):
            what = "step names (str) or steps" if Step in keys else "names (str)"
            raise TypeError(
                f"{context}: the keys of {argument} must be {what}, got {describe(key)}."
            )


def check_inputs_arg(context: str, inputs: Any) -> None:
    """The inputs given to a run: a mapping of input names to values."""
    check_mapping_arg(context, "inputs", inputs,
                      "input names to values, like {'order_id': 'A1'}")


def structure_inputs(graph_name: str, specs: Mapping[str, InputSpec],
                     given: Mapping[str, Any], *, context: str | None = None) -> dict[str, Any]:
    """Every input of the graph, converted, or one :class:`InputError` listing all problems."""
    check_inputs_arg(context or f"run({graph_name})", given)
    problems: list[str] = []
    values: dict[str, Any] = {}
    explain = specs if isinstance(specs, GraphInputs) else GraphInputs()
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            guess = did_you_mean(name, specs)
            hint = f" Did you mean {guess!r}?" if guess else ""
            known = ", ".join(sorted(specs)) or "none"
            problems.append(f"{name}: unknown input.{hint} This graph's inputs: {known}."
                            + explain.unknown_hint(name))
            continue
        converted, bad = structure(value, spec.type, name)
        problems.extend(bad)
        if not bad:
            values[name] = converted
    for name, spec in specs.items():
        if name not in given and spec.required:
            askers = ", ".join(sorted(spec.askers))
            problems.append(f"{name}: required input missing (asked for by {askers})"
                            + explain.missing_hint(name))
    if problems:
        raise InputError(context or f"run({graph_name})", problems)
    return values


def _for_schema(tp: Any) -> Any:
    """``tp`` as msgspec can describe it: a ``Path`` input is given as text."""
    tp = strip_annotated(tp)
    if tp is EMPTY:
        return Any
    return str if isinstance(tp, type) and issubclass(tp, Path) else tp


def _schema_components(named: list[tuple[str, Any]]) -> tuple[Any, dict[str, Any]]:
    types_ = [_for_schema(tp) for _, tp in named]
    try:
        return msgspec.json.schema_components(types_)
    except TypeError:
        pass
    bad = []
    for (name, _), tp in zip(named, types_, strict=True):
        try:
            msgspec.json.schema_components([tp])
        except TypeError as exc:
            bad.append(f"  {name}: {type_name(tp)} has no JSON Schema ({exc}); run() takes "
                       "it only as a Python object")
    raise TypeError(f"{len(bad)} input{'s' if len(bad) != 1 else ''} cannot be described "
                    "in JSON Schema:\n" + "\n".join(bad))


def schema_of(tp: Any) -> dict[str, Any]:
    """JSON Schema for one type, with its own object at the top level."""
    tp = strip_annotated(tp)
    if tp is EMPTY or tp is Any:
        return {}
    (out,), components = _schema_components([("value", tp)])
    if "$ref" in out and components:
        name = out["$ref"].rsplit("/", 1)[-1]
        top: dict[str, Any] = dict(components.pop(name))
        if components:
            top["$defs"] = components
        return top
    return {**out, "$defs": components} if components else dict(out)


def _describable(tp: Any) -> bool:
    tp = strip_annotated(tp)
    if tp is not EMPTY and opaque_class(tp):
        return False
    try:
        msgspec.json.schema_components([_for_schema(tp)])
    except TypeError:
        return False
    return True


def input_schema(specs: Mapping[str, InputSpec]) -> dict[str, Any]:
    """An object schema whose properties are the graph's inputs.

    Inputs taken as Python objects (a client, a DataFrame, a callable) have no JSON form:
    they are left out, and named in the schema's ``$comment``.
    """
    names = sorted(n for n in specs if _describable(specs[n].type))
    objects = sorted(n for n in specs if n not in names)
    named = [(n, specs[n].type) for n in names]
    schemas, components = _schema_components(named) if named else ((), {})
    properties: dict[str, Any] = {}
    for name, sch in zip(names, schemas, strict=True):
        spec = specs[name]
        sch = dict(sch)
        if spec.default is not MISSING:
            try:
                sch["default"] = msgspec.to_builtins(spec.default)
            except TypeError:
                pass
        properties[name] = sch
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [n for n in names if specs[n].required],
        "additionalProperties": False,
    }
    if components:
        out["$defs"] = components
    if objects:
        listed = ", ".join(f"{n} ({type_name(specs[n].type)})" for n in objects)
        out["$comment"] = (f"Python-object inputs, not described here (pass them to run() "
                           f"directly): {listed}.")
    return out
