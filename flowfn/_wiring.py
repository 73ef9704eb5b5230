"""Reading a function's signature into wiring: what each parameter asks for.

This module only *reads*: it turns ``def merge(users: Annotated[list[str], fetch_users])``
into :class:`Param` records (``ref=fetch_users, mode=VALUE``). Deciding which step a
name means, and whether the types fit, is ``_graph``'s job.
"""

from __future__ import annotations

import enum
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ForwardRef, Literal, get_args, get_origin, get_type_hints

import outcome

from ._errors import location, type_name, with_article
from ._options import code_owner
from ._step import MISSING, Step
from ._types import EMPTY, optional_inner, strip_annotated

_OUTCOME_TYPES = (outcome.Outcome, outcome.Value, outcome.Error)
# What a called step (``Annotated[T, fetch()]`` instead of ``fetch``) typically returned.
_CALLED_RESULTS = (list, dict, tuple, set, int, float, bytes, type(None))


class Mode(enum.Enum):
    """How a parameter takes its upstream's result."""

    VALUE = "value"  # the output; a skipped upstream skips this step too
    OPTIONAL = "optional"  # ``T | None``: ``None`` when the upstream was skipped
    OUTCOME = "outcome"  # ``Outcome[T]``: ``Value(x)`` or ``Error(exc)``
    OUTCOME_LIST = "outcome_list"  # ``list[Outcome[T]]`` from a mapped step: per item


@dataclass(frozen=True)
class Each:
    """Marker for a mapped parameter: ``Annotated[str, each(list_urls)]``."""

    ref: Step[Any, Any] | str

    def __repr__(self) -> str:
        ref: Any = self.ref
        name = ref if isinstance(ref, str) else getattr(ref, "name", None)
        if not isinstance(name, str):
            name = getattr(ref, "__name__", None) or type(ref).__name__
        return f"each({name!r})"


class _InputMarker:
    """The type of :data:`Input`."""

    def __repr__(self) -> str:
        return "Input"

    def __reduce__(self) -> str:
        return "Input"  # unpickles as this module's one marker


Input: Any = _InputMarker()
"""``Annotated[str, Input]``: this parameter is a graph input, even when a step has its
name (a parameter is otherwise wired by name to a step of that name)."""


def each(upstream: Step[Any, Any] | str) -> Each:
    """Run the step once per item of ``upstream``'s output (a dynamic map / fan-out)."""
    return Each(upstream)


@dataclass(slots=True)
class Param:
    """One parameter as written; ``problem`` is set when the metadata is unusable."""

    name: str
    annotation: Any  # resolved, ``EMPTY`` when missing; Annotated stripped
    value_type: Any  # the type a single upstream value must have (mode unwrapped)
    default: Any  # ``MISSING`` when required
    ref: Step[Any, Any] | str | None  # explicit wiring from the annotation
    each: bool
    mode: Mode
    problem: tuple[str, ...] | None = None
    as_input: bool = False  # ``Annotated[T, Input]``: a graph input whatever its name


# String annotations evaluated during one graph() call, by (text, id(namespace)).
# graph() clears it first: ids of freed namespaces are reused, and a reloaded module keeps
# its namespace but not its classes, so nothing may outlive the call that built it.
_eval_cache: dict[tuple[str, int], Any] = {}


def clear_annotation_cache() -> None:
    _eval_cache.clear()


def _resolve(ann: Any, fn: Callable[..., Any]) -> Any:
    """Evaluate a string annotation in the function's globals (and closure), and the
    forward references nested in generics (``list["Item"]``, ``Optional["Item"]``)."""
    if not isinstance(ann, str):
        if not has_forward_refs(ann):
            return ann
        globalns, localns = _namespaces(fn)
        return _resolve_nested(ann, globalns, localns)
    globalns = _namespaces(fn)[0]
    key = (ann, id(globalns))
    try:
        return _eval_cache[key]
    except KeyError:
        pass
    localns = _namespaces(fn)[1]
    value = eval(ann, globalns, localns)
    if has_forward_refs(value):
        value = _resolve_nested(value, globalns, localns)
    if not localns:
        _eval_cache[key] = value
    return value


def _namespaces(fn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Where ``fn``'s annotations are evaluated: its module's globals, plus its closure."""
    globalns = getattr(fn, "__globals__", None)
    if globalns is None:  # a callable object: its __call__'s module
        globalns = getattr(code_owner(fn), "__globals__", {})
    localns: dict[str, Any] = {}
    closure = getattr(fn, "__closure__", None)
    if closure:
        for var, cell in zip(fn.__code__.co_freevars, closure, strict=False):
            try:
                localns[var] = cell.cell_contents
            except ValueError:  # pragma: no cover - empty cell
                pass
    return globalns, localns


def has_forward_refs(tp: Any) -> bool:
    """Does ``tp`` hold a name still to be looked up (a ``str`` or ``ForwardRef`` argument)?

    ``Annotated`` metadata and ``Literal`` values are data, not names.
    """
    if type(tp) is type:  # a plain class, the common case: nothing to look up
        return False
    if isinstance(tp, str | ForwardRef):
        return True
    origin = get_origin(tp)
    if origin is None or origin is Literal:
        return False
    if origin is Annotated:
        return has_forward_refs(tp.__origin__)
    return any(has_forward_refs(a) for a in get_args(tp))


def _resolve_nested(tp: Any, globalns: dict[str, Any], localns: dict[str, Any]) -> Any:
    """``tp`` with every nested forward reference evaluated (typing's own evaluation)."""
    holder = types.SimpleNamespace(__annotations__={"tp": tp})
    return get_type_hints(holder, globalns, localns, include_extras=True)["tp"]


_KIND = inspect.Parameter
_VARIADIC = (_KIND.VAR_POSITIONAL, _KIND.VAR_KEYWORD)


_RawParam = tuple[str, Any, Any, inspect._ParameterKind]  # name, annotation, default, kind


def _raw_parameters(fn: Callable[..., Any]) -> list[_RawParam]:
    """(name, raw annotation, default, kind) per parameter, fast for plain functions.

    A function that says it stands for another (``functools.wraps`` sets ``__wrapped__``)
    or carries a ``__signature__`` is read through :func:`inspect.signature`, which
    follows both, as type checkers and ``help()`` do.
    """
    if (type(fn) is types.FunctionType and "__signature__" not in fn.__dict__
            and "__wrapped__" not in fn.__dict__):
        code = fn.__code__
        n_pos = code.co_argcount + code.co_kwonlyargcount
        names = code.co_varnames[:n_pos]
        anns = fn.__annotations__
        defaults = fn.__defaults__ or ()
        kwdefaults = fn.__kwdefaults__ or {}
        first_default = code.co_argcount - len(defaults)
        out: list[_RawParam] = []
        kind: inspect._ParameterKind
        for i, name in enumerate(names):
            if i < code.co_argcount:
                default = defaults[i - first_default] if i >= first_default else MISSING
                kind = _KIND.POSITIONAL_ONLY if i < code.co_posonlyargcount else (
                    _KIND.POSITIONAL_OR_KEYWORD)
            else:
                default = kwdefaults.get(name, MISSING)
                kind = _KIND.KEYWORD_ONLY
            out.append((name, anns.get(name, EMPTY), default, kind))
        if code.co_flags & inspect.CO_VARARGS:
            out.append(("*", EMPTY, MISSING, _KIND.VAR_POSITIONAL))
        if code.co_flags & inspect.CO_VARKEYWORDS:
            out.append(("**", EMPTY, MISSING, _KIND.VAR_KEYWORD))
        return out
    sig = inspect.signature(fn)
    return [
        (
            p.name,
            EMPTY if p.annotation is inspect.Parameter.empty else p.annotation,
            MISSING if p.default is inspect.Parameter.empty else p.default,
            p.kind,
        )
        for p in sig.parameters.values()
    ]


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` (of the function it wraps, of a partial's function,
    of a callable object's ``__call__``), resolved; ``EMPTY`` when there is none."""
    target = code_owner(inspect.unwrap(fn))
    anns = getattr(target, "__annotations__", None) if inspect.isfunction(target) else None
    anns = anns or {}
    if "return" in anns:
        try:
            return strip_annotated(_resolve(anns["return"], target))
        except Exception:
            return EMPTY
    sig = getattr(fn, "__signature__", None)
    if sig is not None and sig.return_annotation is not inspect.Signature.empty:
        return sig.return_annotation
    return EMPTY


def _called_step_problem(name: str, meta: Any, annotation: Any) -> tuple[str, ...]:

    kind = "a coroutine object" if inspect.iscoroutine(meta) else with_article(type(meta).__name__)
    if inspect.iscoroutine(meta):
        callee = meta.cr_code.co_name
        meta.close()  # never awaited, on purpose: silence the RuntimeWarning
    else:
        callee = "the_step"
    base = _type_text(strip_annotated(annotation)) if annotation is not EMPTY else "T"
    return (
        f"the metadata of parameter {name!r} is {kind}, not a step.",
        "Probably you wrote:",
        f"    {name}: Annotated[{base}, {callee}()]    # incorrect!",
        "Instead, write (notice: no parentheses):",
        f"    {name}: Annotated[{base}, {callee}]      # correct!",
    )


def _type_text(tp: Any) -> str:

    return type_name(tp)


def read_params(fn: Callable[..., Any]) -> tuple[list[Param], list[str]]:
    """The parameters of ``fn`` as wiring records, plus problems that concern them all.

    Annotation errors (a forward reference that does not exist) become problems, not
    exceptions, so ``graph()`` can report them with every other problem.
    """
    target = fn
    params: list[Param] = []
    problems: list[str] = []
    try:
        raw_params = _raw_parameters(target)
    except (TypeError, ValueError) as exc:  # a builtin or an extension type
        return [], [
            f"its signature cannot be read ({exc}); wrap it in a def or lambda whose "
            "parameters name what it needs."
        ]
    if any(kind in _VARIADIC for *_, kind in raw_params):
        problems.append(
            "variadic parameters (*args, **kwargs) cannot be wired; "
            "name each parameter the step needs."
        )
    positional_only = [name for name, *_, kind in raw_params if kind is _KIND.POSITIONAL_ONLY]
    if positional_only:
        names = ", ".join(repr(n) for n in positional_only)
        problems.append(
            f"parameter{'s' if len(positional_only) > 1 else ''} {names} "
            f"{'are' if len(positional_only) > 1 else 'is'} positional-only, but flowfn "
            "passes every argument by name; remove the '/' from the signature."
        )
    for name, raw, default, kind in raw_params:
        if kind in _VARIADIC:
            continue
        try:
            ann = _resolve(raw, inspect.unwrap(target))
        except Exception as exc:  # NameError and friends from a bad forward reference
            params.append(Param(name, EMPTY, EMPTY, default, None, False, Mode.VALUE, (
                f"the annotation of parameter {name!r} ({raw!r}) cannot be resolved: "
                f"{type(exc).__name__}: {exc}.",
                "Import the name at module level (annotations are evaluated lazily, in the "
                "function's module), or quote nothing that does not exist.",
            )))
            continue
        ref, is_each, as_input, problem = _read_metadata(name, ann)
        ann = strip_annotated(ann)
        mode, value_type = _mode(ann)
        if problem is None and mode is Mode.OPTIONAL:
            problem = _optional_outcome_problem(name, ann)
        params.append(Param(name, ann, value_type, default, ref, is_each, mode, problem,
                            as_input))
    return params, problems


_Meta = tuple[Step[Any, Any] | str | None, bool, bool, tuple[str, ...] | None]


def _read_metadata(name: str, ann: Any) -> _Meta:
    """(wired step or name, is it each()?, is it Input?, problem) from an annotation."""
    if isinstance(ann, Step):
        return None, False, False, _bare_step_problem(name, ann)
    if get_origin(ann) is not Annotated:
        return None, False, False, None
    for meta in ann.__metadata__:
        if meta is Input:
            return None, False, True, None
        if isinstance(meta, Step | str):
            return meta, False, False, None
        if isinstance(meta, Each):
            if isinstance(meta.ref, Step | str):
                return meta.ref, True, False, None
            return None, False, False, _each_problem(name, meta.ref, ann)
        if inspect.iscoroutine(meta) or isinstance(meta, _CALLED_RESULTS):
            return None, False, False, _called_step_problem(name, meta, ann)
        if inspect.isfunction(meta):
            return None, False, False, (
                f"the metadata of parameter {name!r} is the plain function "
                f"{meta.__name__!r}, not a step.",
                f"Decorate it with @step ({_short_loc(meta)}), or wire it by name.",
            )
    return None, False, False, None


def _bare_step_problem(name: str, upstream: Step[Any, Any]) -> tuple[str, ...]:
    """``def d(x: some_step)``: a step where a type belongs."""
    returns = return_annotation(upstream.fn)
    base = "T" if returns is EMPTY else _type_text(returns)
    return (
        f"parameter {name!r} is annotated with the step {upstream.name!r} itself, which is "
        "not a type.",
        f"To take its output, write {name}: Annotated[{base}, {upstream.name}]; or name the "
        f"parameter {upstream.name} to wire it by name.",
    )


def _each_problem(name: str, upstream: Any, annotation: Any) -> tuple[str, ...]:
    """``each(x)`` where ``x`` is neither a step nor a step's name."""

    if inspect.isfunction(upstream):
        return (
            f"the each() of parameter {name!r} is given the plain function "
            f"{upstream.__name__!r}, not a step.",
            f"Decorate it with @step ({_short_loc(upstream)}), or wire it by name.",
        )
    base = _type_text(strip_annotated(annotation))
    if inspect.iscoroutine(upstream) or isinstance(upstream, _CALLED_RESULTS):
        if inspect.iscoroutine(upstream):
            kind, callee = "a coroutine object", upstream.cr_code.co_name
            upstream.close()  # never awaited, on purpose: silence the RuntimeWarning
        else:
            kind, callee = with_article(type(upstream).__name__), "the_step"
        return (
            f"the each() of parameter {name!r} is given {kind}, not a step.",
            "Probably you wrote:",
            f"    {name}: Annotated[{base}, each({callee}())]    # incorrect!",
            "Instead, write (notice: no parentheses):",
            f"    {name}: Annotated[{base}, each({callee})]      # correct!",
        )
    kind = f"the class {type_name(upstream)!r}" if isinstance(upstream, type) else (
        with_article(type_name(type(upstream))))
    return (
        f"the each() of parameter {name!r} is given {kind}, not a step.",
        "Pass the step whose output to map over, or its name: "
        f"Annotated[{base}, each(list_items)] or Annotated[{base}, each(\"list_items\")].",
    )


def _optional_outcome_problem(name: str, ann: Any) -> tuple[str, ...] | None:
    """``Outcome[T] | None``: the scheduler has no way to hand ``None`` to an Outcome.

    An ``Outcome`` parameter receives ``Value(x)`` or ``Error(exc)`` and a skipped
    upstream skips the step; a ``T | None`` parameter receives the plain value or
    ``None``. The union of both would be read as ``T | None`` and receive a bare value
    where the annotation promises an ``Outcome``, so it is refused.
    """
    inner = optional_inner(ann)
    inner_mode, inner_value = _mode(inner)
    if inner_mode not in (Mode.OUTCOME, Mode.OUTCOME_LIST):
        return None
    plain = "T" if inner_value is EMPTY else _type_text(inner_value)
    return (
        f"parameter {name!r} is annotated {_type_text(ann)}, but an Outcome parameter "
        "never receives None: it gets Value(x) or Error(exc).",
        f"Use {_type_text(inner)} to receive the upstream's failure too (a skipped upstream "
        f"skips this step), or {plain} | None to receive None when the upstream is skipped.",
    )


def _short_loc(fn: Callable[..., Any]) -> str:

    return location(fn)


def _mode(ann: Any) -> tuple[Mode, Any]:
    """How the parameter takes its upstream, and the type one upstream value must have."""
    if ann is EMPTY:
        return Mode.VALUE, EMPTY
    origin = get_origin(ann) or ann
    if origin in _OUTCOME_TYPES:
        args = get_args(ann)
        return Mode.OUTCOME, args[0] if args else EMPTY
    if origin is list:
        args = get_args(ann)
        if args and (get_origin(args[0]) or args[0]) in _OUTCOME_TYPES:
            item = get_args(args[0])
            return Mode.OUTCOME_LIST, list[item[0]] if item else EMPTY  # type: ignore[valid-type]
    if optional_inner(ann) is not None:
        return Mode.OPTIONAL, ann
    return Mode.VALUE, ann
