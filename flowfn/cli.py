"""The ``flowfn`` command (``pip install flowfn[cli]``; also ``python -m flowfn``).

    flowfn run flows.py:order_flow -i order_id=ORD-1 --trace trace.json
    flowfn show flows.py:order_flow --format mermaid

``run`` passes ``-i`` values to :func:`flowfn.run` as text, so the flow's own annotations
convert them (``"42"`` becomes an ``int`` where a step asks for one); a value written as
a JSON object or list is parsed first. Progress and the per-step table go to stderr and
the output alone to stdout (as JSON when it can be), so ``flowfn run ... | jq`` works.

Every mistake ends in one message and a non-zero exit status (2 when the command line
is at fault); ``--debug`` adds the traceback and flowfn's DEBUG log records.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TextIO, cast

import click
import trio
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from ._errors import GraphError, InputError, RunFailed, did_you_mean, exc_line, relpath
from ._graph import Graph, graph
from ._inputs import converter, structure_inputs
from ._progress import PlainLog, Progress, count_steps, headline, short_name, summary_table
from ._render import _edges
from ._result import RunResult
from ._run import arun
from ._step import Step

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
    where, sep, attr = target.rpartition(":")
    if not sep or not where:
        where, attr = target, ""
    module = _import(where)
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, Graph)]
        if len(found) != 1:
            raise CliError(f"{where!r} needs the name of the flow to run: {where}:NAME.\n"
                           f"  {_contents(module)}", USAGE)
        return found[0]
    if not hasattr(module, attr):
        names = [n for n, v in vars(module).items() if isinstance(v, Graph | Step)]
        guess = did_you_mean(attr, names)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise CliError(f"{where!r} has no attribute {attr!r}.{hint}\n  {_contents(module)}",
                       USAGE)
    value = getattr(module, attr)
    if isinstance(value, Graph):
        return value
    if isinstance(value, Step):
        return graph(value)
    raise CliError(f"{target!r} is {_kind(value)}, not a graph or a step.\n"
                   f"  {_contents(module)}", USAGE)


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
    if where.endswith(".py") or "/" in where or os.sep in where:
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


# --- inputs --------------------------------------------------------------------------


def parse_inputs(pairs: tuple[str, ...], inputs_file: str | None) -> dict[str, Any]:
    """``--inputs file.json`` first, then each ``-i key=value`` (later ones win)."""
    values: dict[str, Any] = {}
    if inputs_file is not None:
        values.update(_read_inputs_file(inputs_file))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"-i {pair!r}: write an input as key=value (e.g. -i order_id=42).",
                           USAGE)
        values[key.strip()] = _value(key.strip(), value)
    return values


def _value(key: str, text: str) -> Any:
    """Text as it is (the flow's types convert it), unless it is a JSON object or list."""
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"-i {key}=...: the value looks like JSON but does not parse: "
                       f"{exc.msg} at character {exc.pos}.", USAGE) from exc


def _read_inputs_file(name: str) -> dict[str, Any]:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--inputs {name!r}: cannot read the file ({exc.strerror}).",
                       USAGE) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--inputs {name!r}: not valid JSON: {exc.msg} at line {exc.lineno}.",
                       USAGE) from exc
    if not isinstance(data, dict):
        raise CliError(f"--inputs {name!r}: the file must hold a JSON object of inputs "
                       f"by name, not {type(data).__name__}.", USAGE)
    return data


# --- running -------------------------------------------------------------------------


def execute(flow: Graph, inputs: dict[str, Any], *, console: Console, out: TextIO,
            max_concurrency: int | None = None, run_id: str | None = None,
            trace: str | None = None) -> None:
    """Run ``flow`` with progress on ``console``; the table after, the output to ``out``."""
    structure_inputs(flow.name, flow.inputs, inputs)  # bad inputs: before any display
    live = console.is_terminal and not console.is_dumb_terminal
    watch: Progress | PlainLog = (Progress(flow) if live
                                  else PlainLog(flow, cast(TextIO, console.file)))
    if not live:
        steps = count_steps(flow)
        console.file.write(f"running {short_name(flow.name)} ({steps} step{'s' * (steps != 1)})\n")
    began = time.monotonic()
    failure: RunFailed | None = None
    live_run = functools.partial(arun, flow, inputs, max_concurrency=max_concurrency,
                                 run_id=run_id)
    with _display(watch, console, out=out):
        try:
            if isinstance(watch, Progress):
                result = trio.run(live_run, instruments=[watch.finder()])
            else:
                result = trio.run(functools.partial(live_run, on_event=watch.event))
        except RunFailed as exc:
            failure, result = exc, exc.result
    elapsed = time.monotonic() - began
    if trace is not None:
        _write(trace, result.to_chrome_trace())
    console.print(summary_table(result))
    console.print(headline(result, elapsed))
    if failure is not None:
        raise CliError(f"{failure}")
    if result.status == "waiting":
        _report_waiting(console, result)
        return
    console.file.flush()
    out.write(output_text(result.output) + "\n")
    out.flush()


@contextlib.contextmanager
def _display(watch: Progress | PlainLog, console: Console, *, out: TextIO) -> Iterator[None]:
    if not isinstance(watch, Progress):
        yield
        return
    # Prints from steps go above the display, on the stream they were written to:
    # stdout is only captured when it is the same terminal as the display.
    same_terminal = getattr(out, "isatty", lambda: False)()
    with Live(watch, console=console, refresh_per_second=8, transient=True,
              redirect_stdout=same_terminal, redirect_stderr=True):
        yield


def _report_waiting(console: Console, result: RunResult) -> None:
    """A run that stops at human steps: list the forms to answer (needs the store's
    ``result.waiting``; until then, the waiting spans)."""
    forms = getattr(result, "waiting", None)
    if forms:
        console.print(f"{result.graph_name} is waiting for {len(forms)} answer(s):")
        for form in forms:
            console.print(f"  {form.name}: {getattr(form, 'title', '') or ''}".rstrip(": "))
    else:
        names = [s.path for s in result.walk() if s.status == "waiting"]
        console.print(f"{result.graph_name} is waiting: {', '.join(names)}")


def output_text(value: Any) -> str:
    """The output as JSON (dataclasses and the like unstructured first), else its repr."""
    try:  # plain data first: it needs no cattrs
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(converter.unstructure(value), indent=2, ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def _write(name: str, text: str) -> None:
    try:
        Path(name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--trace {name!r}: cannot write the file ({exc.strerror}).") from exc


def graph_text(flow: Graph) -> str:
    """Each step with what it waits for, upstream first."""
    ups: dict[str, list[str]] = {}
    for up, down, label in _edges(flow):
        ups.setdefault(down, []).append(f"{up} ({label})" if label else up)
    inputs = ", ".join(repr(flow.inputs[name])[len("<input "):-1]
                       for name in sorted(flow.inputs))
    lines = [f"graph({flow.name}): {len(flow.nodes)} steps"
             + (f"; inputs: {inputs}" if inputs else "")]
    width = max(len(n) for n in flow.names)
    for node in flow.nodes:
        after = ups.get(node.name, [])
        kind = "" if node.kind == "function" else f" [{node.kind}]"
        tail = f"  <- {', '.join(after)}" if after else ""
        lines.append(f"  {node.name:<{width}}{kind}{tail}".rstrip())
    return "\n".join(lines)


# --- the commands ----------------------------------------------------------------------


@contextlib.contextmanager
def _guard(debug: bool) -> Iterator[None]:
    """Turn a user's mistake into one message; with ``--debug``, the traceback too."""
    try:
        yield
    except CliError as exc:
        if debug and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        raise
    except InputError as exc:
        _fail(exc, USAGE, debug)
    except GraphError as exc:
        _fail(exc, FAILED, debug)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _fail(exc: BaseException, code: int, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc)
    raise CliError(str(exc), code) from exc


@contextlib.contextmanager
def _debug_logging(console: Console, debug: bool) -> Iterator[None]:
    """With ``--debug``, flowfn's log records (DEBUG and up) on the display's console,
    for this command only."""
    if not debug:
        yield
        return
    log = logging.getLogger("flowfn")
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run and inspect flowfn workflows."""


@cli.command("run")
@click.argument("target")
@click.option("-i", "--input", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An input of the flow (repeatable); JSON objects and lists are parsed.")
@click.option("--inputs", "inputs_file", metavar="FILE.json",
              help="A JSON object of inputs by name (-i values override it).")
@click.option("--trace", metavar="FILE.json", help="Write a Chrome/Perfetto trace of the run.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Cap on steps (and map items) running at once.")
@click.option("--store", metavar="FILE.db", help="Record the run in a durable store.")
@click.option("--run-id", metavar="ID", help="Your own id for the run.")
@click.option("--debug", is_flag=True, help="Tracebacks and DEBUG log records on errors.")
def run_command(target: str, pairs: tuple[str, ...], inputs_file: str | None,
                trace: str | None, max_concurrency: int | None, store: str | None,
                run_id: str | None, debug: bool) -> None:
    """Run TARGET (FILE.py:flow or package.module:flow) with live progress."""
    console = Console(stderr=True)
    with _guard(debug), _debug_logging(console, debug):
        if store is not None:  # the durable store is not part of flowfn yet
            raise CliError("--store is not available yet: this flowfn has no durable store. "
                           "Run without --store.", USAGE)
        inputs = parse_inputs(pairs, inputs_file)
        flow = load_target(target)
        execute(flow, inputs, console=console, out=sys.stdout,
                max_concurrency=max_concurrency, run_id=run_id, trace=trace)


@cli.command("show")
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]),
              default="text", show_default=True, help="How to draw the graph.")
@click.option("--debug", is_flag=True, help="Tracebacks on errors.")
def show_command(target: str, fmt: str, debug: bool) -> None:
    """Print the graph of TARGET: its steps and what each waits for."""
    with _guard(debug):
        flow = load_target(target)
        text = {"mermaid": flow.to_mermaid, "dot": flow.to_dot}.get(fmt, lambda: graph_text(flow))()
        click.echo(text)


def main(argv: list[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=argv, prog_name="flowfn")
