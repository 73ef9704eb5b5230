"""Static compatibility of annotations, used by ``graph()`` to check the wiring.

The check is deliberately forgiving where Python's typing is ambiguous: whenever it
cannot decide (``Any``, a ``TypeVar``, ``Literal``, a protocol, a missing annotation)
it says *compatible*. It only reports mismatches it is sure of.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

_UNION_TYPES: tuple[Any, ...] = (Union, types.UnionType)
_NUMERIC_PROMOTION = {float: (int,), complex: (int, float)}
EMPTY: Any = object()  # "no annotation"


def strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def is_union(tp: Any) -> bool:
    return get_origin(tp) in _UNION_TYPES


def optional_inner(tp: Any) -> Any | None:
    """``T`` for ``T | None`` (or ``Optional[T]``), else None."""
    tp = strip_annotated(tp)
    if not is_union(tp):
        return None
    args = get_args(tp)
    if type(None) not in args:
        return None
    rest = tuple(a for a in args if a is not type(None))
    return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007


def _unknown(tp: Any) -> bool:
    return tp is EMPTY or tp is Any or isinstance(tp, TypeVar | typing.ParamSpec) or tp is object


def compatible(provided: Any, expected: Any) -> bool:
    """Can a value annotated ``provided`` be passed where ``expected`` is annotated?"""
    provided, expected = strip_annotated(provided), strip_annotated(expected)
    if _unknown(provided) or _unknown(expected) or provided == expected:
        return True
    if expected is None:
        expected = type(None)
    if provided is None:
        provided = type(None)
    if is_union(provided):
        return all(compatible(p, expected) for p in get_args(provided))
    if is_union(expected):
        return any(compatible(provided, e) for e in get_args(expected))
    p_origin, e_origin = get_origin(provided) or provided, get_origin(expected) or expected
    if not isinstance(p_origin, type) or not isinstance(e_origin, type):
        return True  # Literal, NewType, protocols of typing: not ours to judge
    if getattr(e_origin, "_is_protocol", False):
        return True
    if not (issubclass(p_origin, e_origin) or p_origin in _NUMERIC_PROMOTION.get(e_origin, ())):
        return False
    p_args, e_args = get_args(provided), get_args(expected)
    if not p_args or not e_args:
        return True  # a bare generic says nothing about its items
    if p_origin is tuple or e_origin is tuple:
        if Ellipsis in p_args or Ellipsis in e_args:
            p_item = p_args[0] if len(p_args) == 2 and p_args[1] is Ellipsis else None
            e_item = e_args[0] if len(e_args) == 2 and e_args[1] is Ellipsis else None
            if p_item is not None and e_item is not None:
                return compatible(p_item, e_item)
            if e_item is not None:
                return all(compatible(p, e_item) for p in p_args)
            return True
        if len(p_args) != len(e_args):
            return False
    elif len(p_args) != len(e_args):
        # Mapping[K, V] against a subclass with other parameters: compare the tail items
        p_args, e_args = p_args[-len(e_args):], e_args
    return all(compatible(p, e) for p, e in zip(p_args, e_args, strict=False))


def element_type(tp: Any) -> tuple[bool, Any]:
    """For a map upstream: (is it iterable?, the type of its items).

    Unknown or unannotated types are iterable with items of unknown type.
    """
    tp = strip_annotated(tp)
    if _unknown(tp):
        return True, EMPTY
    origin = get_origin(tp) or tp
    if is_union(tp):
        return True, EMPTY
    if not isinstance(origin, type):
        return True, EMPTY
    if origin in (str, bytes) or not issubclass(origin, collections.abc.Iterable):
        return False, EMPTY
    args = get_args(tp)
    if not args:
        return True, EMPTY
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return True, args[0]
        return True, Union[args]  # noqa: UP007
    if issubclass(origin, collections.abc.Mapping):
        return True, args[0]
    return True, args[0]
