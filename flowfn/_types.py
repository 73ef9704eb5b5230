"""Static compatibility of annotations, used by ``graph()`` to check the wiring.

The check is deliberately forgiving where Python's typing is ambiguous: whenever it
cannot decide (``Any``, a ``TypeVar``, ``Literal``, a protocol, a missing annotation)
it says *compatible*. It only reports mismatches it is sure of.
"""

from __future__ import annotations

import builtins
import collections
import collections.abc
import dataclasses
import datetime
import decimal
import enum
import pathlib
import types
import typing
import uuid
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
    if p_origin is tuple and e_origin is tuple:
        return _tuples_compatible(p_args, e_args)
    projected = _project(p_origin, p_args, e_origin, len(e_args))
    if projected is None:
        return True  # parameters we cannot line up: not sure, so not reported
    return all(compatible(p, e) for p, e in zip(projected, e_args, strict=True))


def _tuples_compatible(p_args: tuple[Any, ...], e_args: tuple[Any, ...]) -> bool:
    """``tuple[...]`` into ``tuple[...]``, fixed-length or ``tuple[T, ...]`` on either side."""
    p_item = _homogeneous_item(p_args)
    e_item = _homogeneous_item(e_args)
    if e_item is not None:
        items = (p_item,) if p_item is not None else p_args
        return all(compatible(p, e_item) for p in items)
    if p_item is not None:
        return True  # tuple[int, ...] into tuple[int, int]: the length is unknown
    return len(p_args) == len(e_args) and all(
        compatible(p, e) for p, e in zip(p_args, e_args, strict=True)
    )


def _homogeneous_item(args: tuple[Any, ...]) -> Any | None:
    """``T`` for the arguments of ``tuple[T, ...]``, else None."""
    return args[0] if len(args) == 2 and args[1] is Ellipsis else None


def _mapping_items(origin: type, args: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """(key type, value type) of a parameterised mapping type; None when unknown."""
    if issubclass(origin, collections.Counter) and len(args) == 1:
        return args[0], int
    if len(args) == 2:
        return args[0], args[1]
    return None  # a user mapping with other parameters: its own business


_STDLIB_MODULES = frozenset({"builtins", "collections", "collections.abc", "typing", "types"})


def _project(p_origin: type, p_args: tuple[Any, ...], e_origin: type,
             n_expected: int) -> tuple[Any, ...] | None:
    """The arguments of ``p_origin[*p_args]`` seen as arguments of its base ``e_origin``.

    ``dict[str, int]`` is an ``Iterable[str]`` (its keys) and a ``Mapping[str, int]``;
    ``tuple[int, str]`` is a ``Sequence[int | str]``; ``Generator[int, None, None]`` is an
    ``Iterable[int]``; a user class ``Box(list[T])`` as ``Box[int]`` is a
    ``Sequence[int]``. None when the two cannot be lined up.
    """
    if p_origin is e_origin:
        return p_args if len(p_args) == n_expected else None
    if p_origin.__module__ not in _STDLIB_MODULES:
        base = _user_base(p_origin, p_args, e_origin)
        if base is None:
            return None
        b_origin, b_args = base
        if not b_args:
            return None
        if b_origin is tuple and e_origin is tuple:
            return None  # compared by the caller only for tuple annotations themselves
        return _project(b_origin, b_args, e_origin, n_expected)
    abc = collections.abc
    if issubclass(p_origin, tuple):  # tuple into tuple was handled by the caller
        if n_expected != 1:
            return None
        item = _homogeneous_item(p_args)
        return (item,) if item is not None else (Union[p_args],)  # noqa: UP007
    if issubclass(p_origin, abc.Mapping):
        items = _mapping_items(p_origin, p_args)
        if items is None:
            return None
        if issubclass(e_origin, abc.Mapping):
            return items if n_expected == 2 else None
        return items[:1] if n_expected == 1 else None  # iterating a mapping gives its keys
    if n_expected == 1 and issubclass(p_origin, abc.Generator | abc.AsyncGenerator):
        return (p_args[0],)  # the yield type
    return p_args if len(p_args) == n_expected else None


def _user_base(origin: type, args: tuple[Any, ...],
               target: type) -> tuple[type, tuple[Any, ...]] | None:
    """``origin[*args]`` rewritten as its first generic base below ``target``.

    ``class Box(list[T])`` as ``Box[int]`` gives ``(list, (int,))``. None when the
    bases do not say (no ``__orig_bases__``, mismatched parameters).
    """
    params = getattr(origin, "__parameters__", ())
    if len(params) != len(args):
        return None
    subst = dict(zip(params, args, strict=True))
    for base in getattr(origin, "__orig_bases__", ()):
        b_origin = get_origin(base) or base
        if b_origin in (typing.Generic, typing.Protocol) or not isinstance(b_origin, type):
            continue
        if not issubclass(b_origin, target):
            continue
        try:
            b_args = tuple(_substitute(a, subst) for a in get_args(base))
        except TypeError:  # pragma: no cover - exotic parameters
            return None
        if b_origin is target or b_origin.__module__ in _STDLIB_MODULES:
            return b_origin, b_args
        return _user_base(b_origin, b_args, target)
    return None


def _substitute(tp: Any, subst: dict[Any, Any]) -> Any:
    """``tp`` with the type variables of ``subst`` replaced."""
    if isinstance(tp, TypeVar):
        return subst.get(tp, tp)
    params = getattr(tp, "__parameters__", ())
    if params and get_origin(tp) is not None:
        return tp[tuple(subst.get(p, p) for p in params)]
    return tp


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


# --- which annotations have a data shape ---------------------------------------------------

_SCALARS: tuple[type, ...] = (
    int, float, complex, str, bytes, bytearray, bool, type(None), decimal.Decimal,
    datetime.date, datetime.time, datetime.timedelta, uuid.UUID, pathlib.PurePath, enum.Enum,
)
_COLLECTION_MODULES = frozenset({"builtins", "collections", "collections.abc", "typing"})


def is_record_class(cls: Any) -> bool:
    """A dataclass, an attrs class, a TypedDict or a NamedTuple: converted field by field."""
    if not isinstance(cls, type):
        return False
    return (dataclasses.is_dataclass(cls) or hasattr(cls, "__attrs_attrs__")
            or typing.is_typeddict(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields")))


def opaque_class(tp: Any) -> bool:
    """An annotation flowfn takes *as is*, checked with ``isinstance`` at most.

    True for ``object``, ``Callable[...]``, a ``TypeVar``, a ``Protocol`` and any class
    without a data shape (``pd.DataFrame``, a client, a connection). False for scalars,
    enums, records, the standard collections, ``Literal``, unions, ``NewType``, ``Any``:
    those are converted (a union or a collection of opaque classes keeps its shape and
    takes its members as is).
    """
    if tp is object or isinstance(tp, TypeVar | typing.ParamSpec):
        return True
    origin = get_origin(tp)
    if origin is collections.abc.Callable or origin is type:
        return True
    if origin in _UNION_TYPES:
        return False
    cls = origin if origin is not None else tp
    if not isinstance(cls, type) or tp is Any:
        return False
    if getattr(cls, "_is_protocol", False) and cls.__module__ not in _COLLECTION_MODULES:
        return True
    if issubclass(cls, _SCALARS) or is_record_class(cls):
        return False
    return not _standard(cls)


def _standard(cls: type) -> bool:
    """A class of the standard library's collections (code run by ``exec`` without a
    ``__name__`` makes its classes claim to be builtins: look them up)."""
    module = cls.__module__
    if module == "builtins":
        return getattr(builtins, cls.__name__, None) is cls
    return module in _COLLECTION_MODULES


def has_data_shape(tp: Any) -> bool:
    """Can a value of ``tp`` be converted from (and written as) plain data?

    Unions and generic arguments are looked into (``list[DataFrame]`` has none); the
    fields of records are not. ``Any`` inside a generic (``dict[str, Any]``) counts as
    plain data; ``Any`` or no annotation at the top says nothing, so it is False.
    """
    tp = strip_annotated(tp)
    return tp is not EMPTY and tp is not Any and _shaped(tp)


def _shaped(tp: Any) -> bool:
    tp = strip_annotated(tp)
    if tp is Any or tp is Ellipsis or tp is None:
        return True
    if opaque_class(tp):
        return False
    if get_origin(tp) is typing.Literal:
        return True
    return all(_shaped(a) for a in get_args(tp))


def _norm(tp: Any) -> Any:
    tp = strip_annotated(tp)
    if isinstance(tp, list):  # the parameters of Callable[[int], str]
        return tuple(_norm(a) for a in tp)
    origin = get_origin(tp)
    if origin is None:
        return type(None) if tp is None else tp
    args = tuple(_norm(a) for a in get_args(tp))
    if origin in _UNION_TYPES:
        return ("union", frozenset(args))
    return (origin, args)


def same_type(a: Any, b: Any) -> bool:
    """``List[int]`` and ``list[int]``, ``Optional[int]`` and ``int | None``: one type."""
    if a == b:
        return True
    try:
        return bool(_norm(a) == _norm(b))
    except TypeError:  # pragma: no cover - unhashable arguments
        return False
