"""Finding the flow a ``flowfn`` command names: ``FILE.py:NAME`` or ``package.module:NAME``.

A file is imported as a module named after it, with its folder first on ``sys.path``,
as ``python file.py`` would see its siblings. What a run stores as its flow (so that
``flowfn resume`` finds it again from any directory) is the *absolute* file path, or
the module's dotted name, with the attribute: :func:`resolve_target` returns both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from ._durable import slots
from ._errors import GraphError, InputError, did_you_mean, exc_line, relpath
from ._graph import Graph, graph
from ._step import Step
from ._store import StoredRun

USAGE = 2  # exit status when the command line is at fault (click's own convention)
FAILED = 1


class CliError(click.ClickException):
    """One message for the user (no ``Error:`` prefix) and an exit status."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        setattr(self, "exit_code", code)  # click exits with it (a class variable there)

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


# --- finding the flow ----------------------------------------------------------------


def load_target(target: str) -> Graph:
    """The graph that ``FILE_OR_MODULE:NAME`` names (a step gives ``graph(step)``)."""
    return resolve_target(target)[0]


def resolve_target(target: str) -> tuple[Graph, str]:
    """The graph that ``target`` names, and where to find it again from anywhere: the
    absolute file path (or the module's name) and the attribute, ``/abs/flows.py:flow``."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where:
        where, attr = target, ""
    module = _import(where)
    origin = str(Path(where).resolve()) if _is_file(where) else where
    if not attr:
        found = [n for n, v in vars(module).items() if isinstance(v, Graph)]
        if len(found) != 1:
            raise CliError(f"{where!r} needs the name of the flow to run: {where}:NAME.\n"
                           f"  {_contents(module)}", USAGE)
        attr = found[0]
    if not hasattr(module, attr):
        names = [n for n, v in vars(module).items() if isinstance(v, Graph | Step)]
        guess = did_you_mean(attr, names)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise CliError(f"{where!r} has no attribute {attr!r}.{hint}\n  {_contents(module)}",
                       USAGE)
    value = getattr(module, attr)
    if isinstance(value, Graph):
        return value, f"{origin}:{attr}"
    if isinstance(value, Step):
        return graph(value), f"{origin}:{attr}"
    raise CliError(f"{target!r} is {_kind(value)}, not a graph or a step.\n"
                   f"  {_contents(module)}", USAGE)


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def flow_of(stored: StoredRun, target: str | None, name: str) -> Graph:
    """The flow a stored run belongs to: ``--flow`` if given, else the one the store
    remembers; it must be a graph of the same name."""
    ref = target if target is not None else stored.flow_ref
    rid = stored.run_id
    if ref is None:
        raise CliError(f"run {rid!r} does not say which flow it belongs to (it was started "
                       "from code that cannot be imported again). Name the flow: "
                       f"flowfn resume {rid} --store {name} --flow FILE.py:NAME.", USAGE)
    try:
        flow = load_target(ref)
    except CliError as exc:
        if target is not None:
            raise
        detail = exc.message.replace("\n", "\n  ")
        raise CliError(f"run {rid!r} belongs to {ref!r}, which cannot be loaded:\n  {detail}\n"
                       "If the flow moved, name it with --flow FILE.py:NAME.",
                       exc.exit_code) from exc.__cause__
    if flow.name != stored.graph_name:
        raise CliError(f"run {rid!r} is a run of graph {stored.graph_name!r}, but {ref!r} is "
                       f"graph {flow.name!r}.", USAGE)
    return flow


def check_rerun(flow: Graph, rerun: tuple[str, ...]) -> None:
    known = slots(flow)
    for name in rerun:
        if name != "changed" and name not in known:
            guess = did_you_mean(name, known)
            hint = f" Did you mean {guess!r}?" if guess else ""
            raise CliError(f"--rerun {name!r}: graph {flow.name!r} has no step of that name."
                           f"{hint} Steps: {', '.join(sorted(known))}.", USAGE)


def _kind(value: Any) -> str:
    if isinstance(value, ModuleType):
        return "a module"
    return f"a {type(value).__name__}" if not callable(value) else "a plain function"


def _contents(module: ModuleType) -> str:
    """What a module offers to run: its graphs and steps."""
    graphs = sorted(n for n, v in vars(module).items() if isinstance(v, Graph))
    steps = sorted(n for n, v in vars(module).items() if isinstance(v, Step))
    if not graphs and not steps:
        return "It defines no graph and no step (build one with graph(...))."
    parts = [f"graphs: {', '.join(graphs)}" if graphs else "",
             f"steps: {', '.join(steps)}" if steps else ""]
    return "It defines " + "; ".join(filter(None, parts)) + "."


def _import(where: str) -> ModuleType:
    if _is_file(where):
        path = Path(where)
        if not path.is_file():
            what = "is a directory, not a Python file" if path.is_dir() else "does not exist"
            raise CliError(f"file {where!r} {what}.", USAGE)
        return _import_file(path, where)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` would: modules of the cwd
    try:
        found = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        found = None
    if found is None:
        hint = f" Did you mean '{where}.py'?" if Path(where + ".py").is_file() else ""
        raise CliError(f"no file or module named {where!r}.{hint} Give a path "
                       "(flows.py:flow) or an importable module (package.flows:flow).", USAGE)
    try:
        return importlib.import_module(where)
    except Exception as exc:
        raise _import_failure(where, exc) from exc


def _import_file(path: Path, where: str) -> ModuleType:
    """Import a file as a module named after it (its folder first on ``sys.path``, so
    its sibling modules import as they would under ``python file.py``)."""
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else (
        f"flowfn_target_{abs(hash(str(path.resolve())))}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise CliError(f"file {where!r} cannot be imported as Python.", USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise _import_failure(where, exc) from exc
    return module


def _import_failure(where: str, exc: BaseException) -> CliError:
    """The user's module raised while importing: its own line, not flowfn's traceback."""
    if isinstance(exc, GraphError | InputError):
        return CliError(f"could not import {where!r}: {exc_line(exc)}")
    filename, line, text = _error_line(exc)
    lines = [f"could not import {where!r}: {exc_line(exc)}"]
    if filename:
        lines.append(f"  {relpath(filename)}:{line}")
        if text:
            lines.append(f"    {text.strip()}")
    lines.append("Run with --debug for the full traceback.")
    return CliError("\n".join(lines))


def _error_line(exc: BaseException) -> tuple[str, int, str]:
    """Where the user's code failed: a syntax error's own position, else the innermost
    frame outside Python's import machinery and installed packages."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno or 0, exc.text or ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and "site-packages" not in f.filename
              and Path(f.filename).parent != Path(__file__).parent
              and "importlib" not in f.filename]
    if not frames:
        return "", 0, ""
    last = frames[-1]
    return last.filename, last.lineno or 0, last.line or ""
