"""Cache keys for ``@step(cache=True)``: the same code with the same arguments, same key.

A key must change whenever the step could compute something else, and must not change
for edits that cannot matter. What goes in (docs/durable.md, "Caching"):

- the step's qualified name;
- its *code hash*: the source with docstrings and comments stripped (through ``ast``, so
  formatting does not matter either), or the bytecode when there is no source; plus its
  defaults, the values of its closure cells and of the module globals its code reads
  (a global that is itself a plain function contributes its own code hash, one level
  deep). Best effort: helpers reached through other objects, and libraries, are not seen —
  ``@step(version="2")`` replaces the whole code hash for that reason;
- a hash of each argument's canonical JSON (sorted keys) plus its type's name, so an
  upstream step that re-ran and produced equal data still hits.

An argument without a JSON form (a client, a connection) makes that call uncacheable:
:func:`cache_key` then returns an :class:`Uncacheable` with the reason, never a partial key.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._codec import canonical_json
from ._errors import with_article

#: Bumped when the key layout changes: old entries then simply miss.
KEY_FORMAT = 1

_source_hashes: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()
_code_hashes: dict[types.CodeType, str] = {}  # code objects are compared by value


@dataclass(frozen=True)
class Uncacheable:
    """Why one call of a cached step is not cached (shown on its span)."""

    reason: str


def _sha(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and (
                    isinstance(first.value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []  # @step(...) options are not the step's code
    return tree


def _bytecode(code: types.CodeType) -> str:
    """Bytecode, names and constants, nested code objects included (no line numbers)."""
    parts: list[str] = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.append(_bytecode(const) if isinstance(const, types.CodeType) else repr(const))
    return "|".join(parts)


def source_hash(fn: Callable[..., Any]) -> str:
    """Hash of the function's code: its ast without docstrings/comments, else its bytecode."""
    if hasattr(fn, "__wrapped__"):
        fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is not None:  # closures of one code object share a source: hash it once
        found = _code_hashes.get(code)
        if found is not None:
            return found
    try:
        return _source_hashes[fn]
    except (KeyError, TypeError):
        pass
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        digest = _sha(ast.dump(_strip_docstrings(tree), include_attributes=False))
    except (OSError, TypeError, SyntaxError):
        code = getattr(fn, "__code__", None)
        digest = _sha(_bytecode(code) if code is not None else repr(fn))
    if code is not None:
        _code_hashes[code] = digest
    try:
        _source_hashes[fn] = digest
    except TypeError:  # not weak-referenceable: computed every time
        pass
    return digest


def _names_read(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_read(const)
    return names


def _value_digest(value: Any, depth: int) -> str:
    """A stable digest of a default, closure or global value (best effort)."""
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    if isinstance(value, type):
        return f"class:{value.__module__}.{value.__qualname__}"
    if inspect.isfunction(value) or hasattr(value, "__wrapped__"):
        inner = inspect.unwrap(value)
        name = f"{getattr(inner, '__module__', '')}.{getattr(inner, '__qualname__', '')}"
        return f"fn:{name}:{source_hash(inner)}" if depth == 0 else f"fn:{name}"
    canonical = canonical_json(value)
    if canonical is not None:
        return _sha(canonical)
    return f"object:{type(value).__module__}.{type(value).__qualname__}"


def code_hash(fn: Callable[..., Any], *, version: str | None = None) -> str:
    """The code part of a cache key: source hash, defaults, closure values, globals read.

    ``version`` (``@step(version=...)``) replaces all of it. Compute it once per run.
    """
    if version is not None:
        return _sha(f"version:{version}")
    fn = inspect.unwrap(fn)
    parts = [source_hash(fn)]
    defaults = getattr(fn, "__defaults__", None) or ()
    kwdefaults = getattr(fn, "__kwdefaults__", None) or {}
    parts += [_value_digest(d, 1) for d in defaults]
    parts += [f"{k}={_value_digest(v, 1)}" for k, v in sorted(kwdefaults.items())]
    code = getattr(fn, "__code__", None)
    if code is not None:
        for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (),
                              strict=False):
            try:
                parts.append(f"{name}={_value_digest(cell.cell_contents, 0)}")
            except ValueError:  # an empty cell (the name is assigned later)
                parts.append(f"{name}=<empty>")
        globalns = getattr(fn, "__globals__", {})
        for name in sorted(_names_read(code)):
            if name in globalns:
                parts.append(f"{name}={_value_digest(globalns[name], 0)}")
    return _sha("\n".join(parts))


def cache_key(name: str, code: str, arguments: Mapping[str, Any]) -> str | Uncacheable:
    """The cache key of one call of step ``name`` (``code`` from :func:`code_hash`)."""
    parts = [f"flowfn-cache:{KEY_FORMAT}", name, code]
    for param in sorted(arguments):
        value = arguments[param]
        canonical = canonical_json(value)
        if canonical is None:
            kind = type(value).__qualname__
            return Uncacheable(f"argument {param!r} is {with_article(kind)}, which has "
                               "no JSON form to hash")
        parts.append(f"{param}:{type(value).__module__}.{type(value).__qualname__}:"
                     f"{_sha(canonical)}")
    return _sha("\n".join(parts))

