"""The exceptions flowfn raises, and the small helpers that render them.

Problems are kept as data (:class:`Problem` records) and rendered separately, so a
caller can inspect ``err.problems`` instead of parsing text, and so every problem of a
graph can be collected first and reported together.
"""

from __future__ import annotations

import inspect
import linecache
import os
import pickle
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph or a run's arguments.

    ``where`` is the header line (``path:line in def name(sig)``, or ``cycle: a -> b``),
    ``lines`` the explanation under it.
    """

    where: str
    lines: tuple[str, ...] = field(default=())
    step: str | None = None

    def render(self, indent: str = "  ") -> str:
        out = [indent + self.where] if self.where else []
        inner = indent + "  " if self.where else indent
        out.extend(inner + line if line else "" for line in self.lines)
        return "\n".join(out)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _blank(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """A flowfn exception made without its ``__init__``; pickle then restores its state."""
    exc = cls.__new__(cls)
    exc.args = args
    return exc


def pickle_reduce(exc: BaseException) -> tuple[Any, ...]:
    """``__reduce__`` for exceptions whose ``__init__`` takes more than the message.

    The default calls ``cls(*args)`` with the message alone, which fails for them; this
    keeps the message (``args``) and every attribute instead, so the exception crosses
    process and cluster boundaries (and ``copy.copy``) intact. The attributes are state,
    restored after the exception exists, so ``RunFailed.result.error`` may point back at
    it. ``RunFailed.result`` pickles as the end of ``_result`` says.
    """
    state = dict(exc.__dict__)
    cause = exc.__cause__
    if cause is not None and _travels(cause):  # RunFailed: the step's own exception
        state["__cause__"] = cause
    return (_blank, (type(exc), exc.args), state)


def _travels(value: BaseException) -> bool:
    """``value`` survives a pickle round trip (a cause that does not is left behind)."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return False
    return True


class GraphError(Exception):
    """The graph cannot run: every problem found, each with its source location."""

    __module__ = "flowfn"  # tracebacks show flowfn.GraphError (DESIGN §8)
    __reduce__ = pickle_reduce

    def __init__(self, context: str, problems: Sequence[Problem], *, blank: bool = True):
        self.context = context
        self.problems = list(problems)
        sep = "\n\n" if blank else "\n"
        body = sep.join(p.render() for p in self.problems)
        super().__init__(f"{_count(len(self.problems), 'problem')} in {context}{sep}{body}")


class InputError(Exception):
    """Inputs (or human answers) that cannot be converted, all listed as data paths."""

    __module__ = "flowfn"  # tracebacks show flowfn.InputError (DESIGN §8)
    __reduce__ = pickle_reduce

    def __init__(self, context: str, problems: Sequence[str], *, noun: str = "input"):
        self.context = context
        self.problems = list(problems)
        lines = "\n".join("  " + p for p in self.problems)
        super().__init__(f"{_count(len(self.problems), 'bad ' + noun)} for {context}\n{lines}")


class StepTimeout(TimeoutError):
    """A step's own ``timeout=`` deadline fired before it finished."""

    __module__ = "flowfn"  # tracebacks show flowfn.StepTimeout (DESIGN §8)


class MapLengthError(ValueError):
    """The ``each()`` parameters of a mapped step received lists of different lengths."""

    __module__ = "flowfn"  # tracebacks show flowfn.MapLengthError (DESIGN §8)


class RunFailed(Exception):
    """A run stopped because a step failed (or the run's own deadline passed).

    ``__cause__`` is the original exception; ``.result`` holds every span and
    ``.failures``, so nothing a finished step produced is lost; ``.step`` names the
    failing step (a ``branch/step`` path inside sub-workflows) and ``.attempt`` the
    attempt that failed.
    """

    __module__ = "flowfn"  # tracebacks show flowfn.RunFailed (DESIGN §8)
    __reduce__ = pickle_reduce

    def __init__(self, message: str, result: Any, *, step: str | None = None,
                 attempt: int = 0, attempts: int = 0):
        super().__init__(message)
        self.result = result  # the run's RunResult (typed loosely: _result sits above)
        self.step = step
        self.attempt = attempt
        self.attempts = attempts


# --- rendering helpers shared by graph and run errors ---------------------------------


def relpath(path: str) -> str:
    """A source path as the user would type it: relative to the cwd when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        return path
    return path if rel.startswith("..") else rel


def location(fn: Callable[..., Any]) -> str:
    """``path:line`` of a function's ``def`` line (past its decorators)."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return "<unknown>"
    line = code.co_firstlineno
    if code.co_name != "<lambda>":
        for offset in range(50):
            text = linecache.getline(code.co_filename, line + offset).lstrip()
            if not text:
                break
            if text.startswith(("def ", "async def ")):
                line += offset
                break
    return f"{relpath(code.co_filename)}:{line}"


def def_line(fn: Callable[..., Any], name: str, *, annotations: bool = False,
             at: str | None = None) -> str:
    """``path:line in def name(a, b)``, optionally with the annotations.

    ``at``: the ``path:line`` to show instead of the function's own (pattern helpers
    such as ``shell()`` record where they were called).
    """
    where = at or location(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return f"{where} in {name}"
    if annotations:
        text = str(sig).replace("'", "")
    else:
        params = [p.replace(annotation=inspect.Parameter.empty, default=inspect.Parameter.empty)
                  for p in sig.parameters.values()]
        text = str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))
    return f"{where} in def {name}{text}"


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    found = get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _class_name(cls: type) -> str:
    """``Item`` for a user class (even one defined in a function), ``int`` for a builtin."""
    if cls.__module__ == "builtins":
        return cls.__name__
    return cls.__qualname__.rpartition("<locals>.")[2]


def type_name(tp: Any) -> str:
    """A type as the user wrote it, briefly: ``list[Item]`` rather than ``list[mod.Item]``.

    Generic arguments are rendered the same way, recursively; ``Annotated`` metadata is
    left out.
    """
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    if isinstance(tp, str):
        return tp
    if isinstance(tp, typing.ForwardRef):
        return tp.__forward_arg__
    if isinstance(tp, list):  # the parameter list of Callable[[int, str], bool]
        return "[" + ", ".join(type_name(a) for a in tp) + "]"
    if isinstance(tp, typing.TypeVar | typing.ParamSpec | typing.NewType):
        return tp.__name__
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is types.UnionType:
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        if getattr(tp, "_name", None) == "Optional" and len(rest) == 1:
            return f"Optional[{type_name(rest[0])}]"
        return f"Union[{', '.join(type_name(a) for a in args)}]"
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None and args:
        name = getattr(tp, "_name", None) or (
            _class_name(origin) if isinstance(origin, type) else type_name(origin)
        )
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    if origin is None and isinstance(tp, type):
        return _class_name(tp)
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def with_article(word: str) -> str:
    """``an int``, ``a str``, ``an Item``: the indefinite article a type name needs."""
    lower = word.lower()
    if lower.startswith(("uni", "use", "usu", "uuid", "url", "uri", "utf", "one")):
        return f"a {word}"  # pronounced with a consonant: "a union", "a UUID"
    return f"an {word}" if lower[:1] in ("a", "e", "i", "o", "u") else f"a {word}"


def exc_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
