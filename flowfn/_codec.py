"""Step outputs and human answers as JSON text, driven by their annotations; never pickle.

A durable run writes every step's output as JSON and reads it back, possibly in another
process and after the code changed, into the step's *current* return annotation. Both
directions go through flowfn's lossless cattrs converter (``_inputs.converter``): what a
value unstructures to is exactly what that converter structures back without loss.

Decisions, documented in docs/durable.md:

- The text is strict JSON (RFC 8259), so ``sqlite3``'s ``json_extract`` and any other
  reader can parse it. A non-finite float is written as the string ``"NaN"``,
  ``"Infinity"`` or ``"-Infinity"`` where the annotation says ``float`` (the converter
  reads those strings back as floats); anywhere else (``Any``, a bare ``dict``) it is an
  error with its data path, because it could not be read back as a float.
- Where the annotation says nothing (``Any``, a bare ``dict`` or ``list``), only plain JSON
  values are accepted (str, int, finite float, bool, None, lists, dicts with str keys):
  a ``datetime`` there would come back as a string, which is a silent change of type.
- dates and times as ISO 8601, ``UUID``/``Decimal``/``Path`` as text, ``bytes`` as base64,
  sets and tuples as arrays, enums as their values, dataclasses/attrs/TypedDicts as objects.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import inspect
import json
import math
import types
import typing
import uuid
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args, get_origin

import attrs
import cattrs

from ._errors import InputError, type_name
from ._inputs import converter as _lossless
from ._inputs import schema_of, structure
from ._types import EMPTY, strip_annotated


class CodecError(ValueError):
    """A value that cannot be written as, or read back from, JSON for its annotation.

    ``problems`` holds one ``data.path: what is wrong`` line per problem.
    """

    __module__ = "flowfn"  # raised to users (a step whose output a store cannot hold)

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


def _float_out(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _is_set(tp: Any) -> bool:
    origin = get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, collections.abc.Set) and (
        origin.__module__ in ("builtins", "collections.abc", "typing"))


def _set_out(tp: Any) -> Any:
    args = get_args(tp)
    item = _json.get_unstructure_hook(args[0] if args else Any)

    def hook(value: Any) -> list[Any]:
        items = [item(v) for v in value]
        try:
            return sorted(items)  # a set has no order: sorted, so equal sets give equal text
        except TypeError:
            return items

    return hook


def _make_json_converter() -> cattrs.Converter:
    conv = _lossless.copy()
    conv.register_unstructure_hook(Any, lambda v: v)  # checked as plain JSON afterwards
    conv.register_unstructure_hook(float, _float_out)
    for when in (dt.datetime, dt.date, dt.time):
        conv.register_unstructure_hook(when, lambda v: v.isoformat())
    for text in (uuid.UUID, Decimal):
        conv.register_unstructure_hook(text, str)
    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Path), str)
    conv.register_unstructure_hook(bytes, lambda v: base64.b64encode(v).decode("ascii"))
    return conv


_json = _make_json_converter()
_json.register_unstructure_hook_factory(_is_set, _set_out)

_BARE = {dict: dict[Any, Any], list: list[Any], set: set[Any], frozenset: frozenset[Any],
         tuple: tuple[Any, ...], collections.abc.Mapping: dict[Any, Any],
         collections.abc.Sequence: list[Any]}


@lru_cache(maxsize=1024)
def _normalize(tp: Any) -> Any:
    """``dict`` → ``dict[Any, Any]`` (recursively): bare containers hold plain JSON only."""
    tp = strip_annotated(tp)
    if tp in _BARE:
        return _BARE[tp]
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, set, frozenset, dict, tuple) and args:
        return origin[tuple(_normalize(a) if a is not Ellipsis else a for a in args)]
    return tp


def _normal(tp: Any) -> Any:
    try:
        return _normalize(tp)
    except TypeError:  # an unhashable annotation: used as it is
        return strip_annotated(tp)


def _json_problem(data: Any, path: str) -> str | None:
    """The first place where ``data`` (already unstructured) is not strict JSON."""
    if data is None or isinstance(data, str | bool | int):
        return None
    if isinstance(data, float):
        return None if math.isfinite(data) else (
            f"{path or 'value'}: {data!r} is not JSON; a NaN or infinity is stored only "
            "where the annotation says float")
    if isinstance(data, list | tuple):
        for i, item in enumerate(data):
            found = _json_problem(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(data, dict):
        for key, item in data.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                return f"{path or 'value'}: key {key!r} is not JSON text"
            found = _json_problem(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return (f"{path or 'value'}: {type_name(type(data))} is not JSON data; annotate it with "
            "a data type (a dataclass, a TypedDict, ...) so flowfn knows how to store it")


def to_data(value: Any, annotation: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, numbers...) for ``annotation``."""
    tp = _normal(annotation)
    try:
        return _json.unstructure(value, unstructure_as=tp if tp is not EMPTY else Any)
    except Exception as exc:  # a value that does not match its annotation
        raise CodecError([f"value: cannot be written as {type_name(tp)} "
                          f"({type(exc).__name__}: {exc})"]) from None


def canonical_json(value: Any) -> str | None:
    """JSON of a value by its runtime types, keys sorted (for hashing); None if it has none."""
    try:
        data = _json.unstructure(value)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=_refuse)
    except (TypeError, ValueError, RecursionError, AttributeError):
        return None


def _refuse(obj: Any) -> Any:
    raise TypeError(type(obj).__name__)


def _finite(value: float) -> str | None:
    return float.__repr__(value) if math.isfinite(value) else None  # else "NaN" & co.


# A value that is exactly its annotation's JSON-native type: its text directly, the same
# text the converter and json.dumps would make (a common step output, and a map's items).
_NATIVE: dict[Any, collections.abc.Callable[[Any], str | None]] = {
    int: int.__repr__, str: json.encoder.encode_basestring,
    bool: lambda v: "true" if v else "false", float: _finite,
}


def encode(value: Any, annotation: Any) -> str:
    """``value`` as strict JSON text, by its annotation; :class:`CodecError` with the path."""
    if type(value) is annotation and annotation in _NATIVE:
        text = _NATIVE[annotation](value)
        if text is not None:
            return text
    data = to_data(value, annotation)
    try:
        return json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        problem = _json_problem(data, "")
        raise CodecError([problem or "value: not JSON data"]) from None


def decode(text: str, annotation: Any) -> Any:
    """JSON text back into ``annotation``; :class:`CodecError` listing every data path."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CodecError([f"value: stored text is not JSON ({exc})"]) from None
    value, problems = structure(data, _normal(annotation), "")
    if problems:
        raise CodecError([_no_dot(p) for p in problems])
    return value


def _no_dot(line: str) -> str:
    """cattrs paths from an empty root start with '.' (or are empty): ``items[2].qty``."""
    if line.startswith(":"):
        return "value" + line
    return line[1:] if line.startswith(".") else line


# --- answers to ask() --------------------------------------------------------------------


def validate_answer(annotation: Any, data: Any, *, name: str = "answer") -> Any:
    """A person's answer converted to ``annotation``, or :class:`InputError` with every
    data path. Nothing is written before this passes."""
    fields = _fields(strip_annotated(annotation))
    if fields is not None and not isinstance(data, collections.abc.Mapping) and not (
            isinstance(data, get_origin(annotation) or annotation)):
        raise InputError(f"ask({name!r})", [
            f"(the answer): expected an object with the fields {', '.join(fields)} "
            f"(got {data!r})"], noun="answer field")
    value, problems = structure(data, _normal(annotation), "")
    if problems:
        lines = [_no_dot(p).replace("value: ", "(the answer): ", 1)
                 if p.startswith(":") else _no_dot(p) for p in problems]
        raise InputError(f"ask({name!r})", lines, noun="answer field")
    return value


def answer_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema of an answer, its own object at the top level (nested ones in $defs).

    Records say ``additionalProperties: false``: the converter refuses unknown keys too.
    """
    schema = schema_of(annotation)
    for record in [schema, *schema.get("$defs", {}).values()]:
        if record.get("type") == "object" and "properties" in record:
            record.setdefault("additionalProperties", False)
    return schema


# --- what the store can hold -----------------------------------------------------------

_SCALARS = (int, float, str, bool, bytes, type(None), dt.datetime, dt.date, dt.time,
            uuid.UUID, Decimal)
_CONTAINERS = (list, set, frozenset, tuple, dict, collections.abc.Sequence,
               collections.abc.Mapping, collections.abc.Set, collections.abc.MutableSequence,
               collections.abc.MutableMapping, collections.abc.MutableSet)


def storable(annotation: Any) -> str | None:
    """None when a value of ``annotation`` can be stored as JSON, else the reason."""
    tp = strip_annotated(annotation)
    if tp is EMPTY or tp is inspect.Signature.empty:
        return "it has no return annotation"
    if tp is Any or tp is object:
        return f"its return annotation is {type_name(tp)}, which says nothing about the data"
    return _shape_problem(tp, "", set())


def _where(path: str) -> str:
    return f" (at {path})" if path else ""


def _shape_problem(tp: Any, path: str, seen: set[int]) -> str | None:
    tp = strip_annotated(tp)
    if tp is Any or tp is None or tp in _SCALARS or tp is EMPTY:
        return None
    if isinstance(tp, typing.TypeVar):
        return f"{type_name(tp)}{_where(path)} is a type variable, not a data type"
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Literal:
        return None
    if origin in (typing.Union, types.UnionType):
        return _first(_shape_problem(a, path, seen) for a in args)
    if isinstance(tp, type) and (issubclass(tp, Enum | Path)):
        return None
    if tp in _CONTAINERS:
        return None
    if origin in _CONTAINERS:
        return _container_problem(origin, args, path, seen)
    return _record_problem(tp, path, seen)


def _first(found: collections.abc.Iterable[str | None]) -> str | None:
    return next((f for f in found if f), None)


def _container_problem(origin: Any, args: tuple[Any, ...], path: str,
                       seen: set[int]) -> str | None:
    if issubclass(origin, collections.abc.Mapping):
        key, item = (*args, Any, Any)[:2]
        if not _key_type(strip_annotated(key)):
            return f"{type_name(key)}{_where(path)} cannot be a JSON object key"
        return _shape_problem(item, f"{path}[*]" if path else "[*]", seen)
    items = [a for a in args if a is not Ellipsis]
    return _first(_shape_problem(a, f"{path}[*]" if path else "[*]", seen) for a in items)


def _key_type(tp: Any) -> bool:
    """Keys become JSON text and are read back from it: scalars only."""
    return tp is Any or tp in _SCALARS or get_origin(tp) is typing.Literal or (
        isinstance(tp, type) and issubclass(tp, Enum | Path))


def _fields(tp: Any) -> dict[str, Any] | None:
    """Field name → annotation for a dataclass, attrs class, TypedDict or NamedTuple."""
    cls = get_origin(tp) or tp
    if not isinstance(cls, type):
        return None
    if dataclasses.is_dataclass(cls) or attrs.has(cls) or typing.is_typeddict(cls) or (
            issubclass(cls, tuple) and hasattr(cls, "_fields")):
        try:
            return typing.get_type_hints(cls)
        except Exception:  # unresolvable forward references: the converter will say
            return {}
    return None


def _record_problem(tp: Any, path: str, seen: set[int]) -> str | None:
    fields = _fields(tp)
    if fields is None:
        return (f"{type_name(tp)}{_where(path)} has no data shape (not a dataclass, attrs "
                "class, TypedDict, NamedTuple, enum, collection or builtin data type)")
    if id(tp) in seen:
        return None  # a recursive type: checked once
    seen.add(id(tp))
    return _first(_shape_problem(ft, f"{path}.{name}" if path else name, seen)
                  for name, ft in fields.items())

