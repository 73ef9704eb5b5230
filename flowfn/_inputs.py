"""Graph inputs: their description, their JSON Schema, and their strict conversion.

Conversion goes through a flowfn-owned cattrs converter that only performs *lossless*
conversions: ``"42"`` becomes ``42`` for an ``int``, but ``7.9`` is not an ``int`` and ``5``
is not a ``str``. Every bad value is reported at once, as a data path
(``order.items[2].qty``), before any step runs.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_origin

import attrs
import cattrs
import cattrs.cols
import msgspec

from ._errors import InputError, did_you_mean, type_name
from ._step import MISSING
from ._types import EMPTY, strip_annotated


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


class _BadValue(ValueError):
    def __init__(self, expected: str, got: Any):
        super().__init__(f"invalid value for type, expected {expected} (got {got!r})")


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool):
        raise _BadValue("int", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _BadValue("int", value)


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool):
        raise _BadValue("float", value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _BadValue("float", value)


def _strict_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _BadValue("str", value)


def _strict_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _BadValue("bool", value)


def _is_collection(tp: Any) -> bool:
    origin = get_origin(tp) or tp
    return (
        isinstance(origin, type)
        and origin not in (str, bytes)
        and issubclass(origin, collections.abc.Iterable)
        and not issubclass(origin, collections.abc.Mapping)
        and origin.__module__ in ("builtins", "collections.abc", "typing")
    )


def _is_record_class(tp: Any) -> bool:
    """A dataclass or an attrs class (possibly parametrized, ``Box[int]``)."""
    origin = get_origin(tp) or tp
    return isinstance(origin, type) and (attrs.has(origin) or dataclasses.is_dataclass(origin))


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(Any, lambda v, _: v)

    def no_text_as_collection(tp: Any) -> Any:
        origin = get_origin(tp) or tp
        base: Any
        if issubclass(origin, tuple):
            base = conv._structure_tuple
        elif issubclass(origin, frozenset):
            base = conv._structure_frozenset
        elif issubclass(origin, collections.abc.Set):
            base = conv._structure_set
        else:  # list, Sequence, Iterable, ...: cattrs' own list hook
            base = cattrs.cols.list_structure_factory(tp, conv)
        expected = type_name(tp)

        def hook(value: Any, t: Any) -> Any:
            if isinstance(value, str | bytes | Mapping) or not isinstance(
                value, collections.abc.Iterable
            ):
                raise _BadValue(expected, value)
            return base(value, t)

        return hook

    conv.register_structure_hook_factory(_is_collection, no_text_as_collection)

    def instance_as_is(tp: Any) -> Any:
        """A value that already is an instance of the class is accepted unchanged."""
        cls = get_origin(tp) or tp
        base = conv.gen_structure_attrs_fromdict(tp)

        def hook(value: Any, t: Any) -> Any:
            if isinstance(value, cls):
                return value
            return base(value, t)

        return hook

    conv.register_structure_hook_factory(_is_record_class, instance_as_is)
    return conv


converter = _make_converter()


def _problems(exc: Exception, path: str) -> list[str]:
    def fmt(e: BaseException, tp: Any) -> str:
        if isinstance(e, _BadValue):
            return str(e)
        if isinstance(e, KeyError):
            return "required field missing"
        if isinstance(e, cattrs.ForbiddenExtraKeysError):
            return f"unknown keys: {', '.join(sorted(e.extra_fields))}"
        return f"invalid value for type, expected {type_name(tp)}" if tp else str(e)

    out = []
    for line in cattrs.transform_error(exc, path=path, format_exception=fmt):
        message, _, where = line.rpartition(" @ ")
        out.append(f"{where}: {message}" if message else line)
    return out


def structure(value: Any, tp: Any, path: str) -> tuple[Any, list[str]]:
    """``value`` converted to ``tp``, or the problems found (as ``path: message`` lines)."""
    tp = strip_annotated(tp)
    if tp is EMPTY or tp is Any:
        return value, []
    try:
        return converter.structure(value, tp), []
    except Exception as exc:
        return None, _problems(exc, path)


def structure_inputs(graph_name: str, specs: Mapping[str, InputSpec],
                     given: Mapping[str, Any], *, context: str | None = None) -> dict[str, Any]:
    """Every input of the graph, converted, or one :class:`InputError` listing all problems."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            guess = did_you_mean(name, specs)
            hint = f" Did you mean {guess!r}?" if guess else ""
            known = ", ".join(sorted(specs)) or "none"
            problems.append(f"{name}: unknown input.{hint} This graph's inputs: {known}.")
            continue
        converted, bad = structure(value, spec.type, name)
        problems.extend(bad)
        if not bad:
            values[name] = converted
    for name, spec in specs.items():
        if name not in given and spec.required:
            askers = ", ".join(sorted(spec.askers))
            problems.append(f"{name}: required input missing (asked for by {askers})")
    if problems:
        raise InputError(context or f"run({graph_name})", problems)
    return values


def schema_of(tp: Any) -> dict[str, Any]:
    """JSON Schema for one type, with its own object at the top level."""
    tp = strip_annotated(tp)
    if tp is EMPTY or tp is Any:
        return {}
    (out,), components = msgspec.json.schema_components([tp])
    if "$ref" in out and components:
        name = out["$ref"].rsplit("/", 1)[-1]
        top: dict[str, Any] = dict(components.pop(name))
        if components:
            top["$defs"] = components
        return top
    return {**out, "$defs": components} if components else dict(out)


def input_schema(specs: Mapping[str, InputSpec]) -> dict[str, Any]:
    """An object schema whose properties are the graph's inputs."""
    names = sorted(specs)
    types_ = [strip_annotated(specs[n].type) for n in names]
    known = [t if t is not EMPTY else Any for t in types_]
    schemas, components = msgspec.json.schema_components(known) if known else ((), {})
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
    return out

