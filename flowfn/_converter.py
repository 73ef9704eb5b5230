"""flowfn's lossless cattrs converter: the hooks behind every input and stored value.

Only *lossless* conversions are made (see ``_inputs`` for the list). Annotations without
a data shape (a class of a library, ``object``, ``Callable``, a ``Protocol``) take the
value as it is, after an ``isinstance`` check where one is possible. Problems come out as
``path: message`` lines, through :func:`problems`.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import math
import numbers
import types
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import cattrs
import cattrs.cols

from ._errors import type_name, with_article
from ._types import opaque_class


class _BadValue(ValueError):
    def __init__(self, expected: str, got: Any):
        super().__init__(f"invalid value for type, expected {expected} (got {got!r})")


class _NotInstance(_BadValue):
    """A value for an annotation taken as is (a class, a Protocol) that is not one."""

    def __init__(self, expected: str, got: Any):
        ValueError.__init__(self, f"expected {expected} (got {type_name(type(got))})")


def _as_is(tp: Any) -> Callable[[Any, Any], Any]:
    """Hook for an annotation without a data shape: the value itself, never converted or
    copied, after an ``isinstance`` check where one is possible."""
    origin = get_origin(tp)
    if origin is collections.abc.Callable:
        def callable_hook(value: Any, _: Any) -> Any:
            if callable(value):
                return value
            raise _NotInstance("a callable", value)

        return callable_hook
    cls = origin if origin is not None else tp
    checkable = isinstance(cls, type) and cls is not object and (
        not getattr(cls, "_is_protocol", False) or getattr(cls, "_is_runtime_protocol", False))
    expected = f"an instance of {type_name(cls)}"

    def hook(value: Any, _: Any) -> Any:
        if checkable and not isinstance(value, cls):
            raise _NotInstance(expected, value)
        return value

    return hook


def _has_opaque_member(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and any(
        opaque_class(a) for a in get_args(tp))


def _opaque_union(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """``DataFrame | None``, ``Client | str``: members taken as is are tried first, by
    ``isinstance``; then the data members, converted, in order."""

    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        members = get_args(tp)
        expected = type_name(tp)

        def hook(value: Any, _: Any) -> Any:
            if value is None and type(None) in members:
                return None
            for m in members:
                if opaque_class(m):
                    try:
                        return _as_is(m)(value, m)
                    except _NotInstance:
                        continue
            for m in members:
                if m is not type(None) and not opaque_class(m):
                    try:
                        return conv.structure(value, m)
                    except Exception:
                        continue
            raise _NotInstance(f"one of {expected}", value)

        return hook

    return factory


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
    if isinstance(value, int):
        try:
            exact = float(value)
        except OverflowError:
            exact = math.inf
        if exact == value:  # no digits lost on the way
            return exact
        raise _BadValue("float, which cannot hold this int exactly", value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(number) or any(w in value.lower() for w in ("inf", "nan")):
                return number
    raise _BadValue("float", value)


def _strict_bytes(value: Any, _: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):  # JSON has no bytes: base64 text, as the schema says
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            pass
    raise _BadValue("bytes, as bytes or base64 text", value)


# type -> (parse its text form, what that text looks like)
_TEXT_FORMS: dict[type, tuple[Callable[[str], Any], str]] = {
    dt.date: (dt.date.fromisoformat, "an ISO 8601 date like '2026-12-01'"),
    dt.datetime: (dt.datetime.fromisoformat,
                  "an ISO 8601 date and time like '2026-12-01T09:30:00'"),
    dt.time: (dt.time.fromisoformat, "an ISO 8601 time like '09:30:00'"),
    uuid.UUID: (uuid.UUID, "a UUID like '6f1c2d3e-0000-4000-8000-000000000000'"),
    Decimal: (Decimal, "a decimal number as text, like '19.99'"),
    Path: (Path, "a path as text"),
}


def _text_form(cls: type) -> Callable[[Any, Any], Any]:
    """An instance of ``cls`` as is, or ``cls`` parsed from its text form."""
    parse, looks_like = _TEXT_FORMS[cls]

    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, cls) and not (cls is dt.date and isinstance(value, dt.datetime)):
            return value  # (a datetime is a date to Python, but would lose its time here)
        if cls is Decimal and isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value)
        if isinstance(value, str) and value.strip():
            try:
                return parse(value.strip())
            except (ValueError, InvalidOperation):
                pass
        raise _BadValue(f"{cls.__name__}, as {looks_like}", value)

    return hook


_PLAIN = (int, float, str, bool, bytes, type(None))


def _is_plain_union(tp: Any) -> bool:
    """``int | str``, ``float | int | None``...: not just ``X | None`` (cattrs converts
    that one into ``X``)."""
    args = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else ()
    return all(a in _PLAIN for a in args) and len([a for a in args if a is not type(None)]) > 1


def _plain_union(tp: Any) -> Callable[[Any, Any], Any]:
    """A value that already is one of the members, as is: nothing is converted, so the
    order of the members does not matter (``"3"`` for ``int | str`` stays a ``str``)."""
    members = set(get_args(tp))
    expected = type_name(tp)

    def hook(value: Any, _: Any) -> Any:
        if type(value) in members:
            return value
        raise _BadValue(expected, value)

    return hook


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Enum)


def _enum(tp: Any) -> Callable[[Any, Any], Any]:
    expected = f"{tp.__name__}: one of " + ", ".join(repr(m.value) for m in tp)

    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            raise _BadValue(expected, value) from None

    return hook


def _enums_first(hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def routed(value: Any, tp: Any) -> Any:
        return _enum(tp)(value, tp) if _is_enum(tp) else hook(value, tp)

    return routed


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _literal(tp: Any) -> Callable[[Any, Any], Any]:
    allowed = get_args(tp)
    expected = "one of " + ", ".join(repr(a) for a in allowed)

    def hook(value: Any, _: Any) -> Any:
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        raise _BadValue(expected, value)

    return hook


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
    # cattrs finds the int/str/float hook for an IntEnum or a `class Kind(str, Enum)`
    # first (along its MRO): those hooks hand enums over to the enum hook.
    conv.register_structure_hook(int, _enums_first(_strict_int))
    conv.register_structure_hook(float, _enums_first(_strict_float))
    conv.register_structure_hook(str, _enums_first(_strict_str))
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(bytes, _strict_bytes)
    for cls in _TEXT_FORMS:
        conv.register_structure_hook(cls, _text_form(cls))
    conv.register_structure_hook_factory(_is_literal, _literal)
    conv.register_structure_hook_factory(_is_enum, _enum)
    conv.register_structure_hook_factory(_is_plain_union, _plain_union)
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
        unique = issubclass(origin, collections.abc.Set)

        def hook(value: Any, t: Any) -> Any:
            if isinstance(value, str | bytes | Mapping) or not isinstance(
                value, collections.abc.Iterable
            ):
                raise _BadValue(expected, value)
            items = list(value)
            out = base(items, t)
            if unique and len(out) != len(items):  # a set would silently drop some
                raise _BadValue(f"{expected} with no repeated items", value)
            return out

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
    # Registered last, so they are asked first: no other hook may convert these.
    conv.register_structure_hook_factory(opaque_class, _as_is)
    conv.register_structure_hook_factory(_has_opaque_member, _opaque_union(conv))
    return conv


converter = _make_converter()


def problems_of(exc: Exception, path: str) -> list[str]:
    """The problems in a cattrs exception, as ``path: message`` lines."""
    def fmt(e: BaseException, tp: Any) -> str:
        if isinstance(e, _BadValue):
            return str(e)
        if isinstance(e, KeyError):
            return "required field missing"
        if isinstance(e, cattrs.ForbiddenExtraKeysError):
            return f"unknown keys: {', '.join(sorted(e.extra_fields))}"
        text = str(e)
        got = ""
        if isinstance(e, AttributeError) and getattr(e, "name", None) in ("keys", "items"):
            got = type(getattr(e, "obj", None)).__name__
        elif isinstance(e, TypeError) and text.startswith("argument of type '"):
            got = text.split("'")[1]  # cattrs tested 'in' on something that is not a mapping
        if got:
            return ("invalid value, expected an object with named fields "
                    f"(got {with_article(got)})")
        if text.startswith(("Not enough values in ", "Too many values in ")):
            count = text.split(" in ")[0].lower()
            return f"invalid value, expected {text.rpartition(' as ')[2]} ({count})"
        return f"invalid value for type, expected {type_name(tp)}" if tp else text

    out = []
    for line in cattrs.transform_error(exc, path=path, format_exception=fmt):
        message, _, where = line.rpartition(" @ ")
        out.append(f"{where}: {message}" if message else line)
    return out
