"""The ``flowfn`` command (``pip install "pyflowfn[cli]"``; also ``python -m flowfn``).

    flowfn run flows.py:order_flow -i order_id=ORD-1 --trace trace.json
    flowfn show flows.py:order_flow --format mermaid
    flowfn run review.py:flow --store runs.db --run-id contract-42
    flowfn runs --store runs.db --status waiting
    flowfn resume contract-42 --store runs.db --answer legal=@legal.json

``run`` passes ``-i`` values to :func:`flowfn.run` as text, so the flow's own annotations
convert them (``"42"`` becomes an ``int`` where a step asks for one); a value written as
a JSON object or list is parsed first; ``--answer`` values likewise. Progress and the
per-step table go to stderr and the output alone to stdout (as JSON when it can be), so
``flowfn run ... | jq`` works.

With ``--store``, the store keeps the target's absolute path (``/abs/review.py:flow``)
as the run's flow, so ``flowfn resume`` imports the same flow again from any directory.

Every mistake ends in one message and a non-zero exit status (2 when the command line
is at fault); ``--debug`` adds the traceback and flowfn's DEBUG log records.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

import click
import trio
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from . import SQLiteStore  # the public name: which module defines it is not our concern
from ._answers import check_answers
from ._durable import inputs_json
from ._errors import GraphError, InputError, RunFailed, did_you_mean
from ._graph import Graph
from ._inputs import converter, structure_inputs
from ._progress import PlainLog, Progress, count_steps, headline, short_name, summary_table
from ._render import _edges
from ._result import RunResult
from ._run import aresume, arun
from ._runsview import run_text, runs_table, sketch, waiting_text
from ._store import RUN_STATUSES, StoredRun, StoreError, inputs_hash
from ._store import Form as StoredForm
from ._target import FAILED, USAGE, CliError, check_rerun, flow_of, load_target, resolve_target

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
        values[key.strip()] = _value(key.strip(), value, "-i")
    return values


def _value(key: str, text: str, option: str) -> Any:
    """Text as it is (the flow's types convert it), unless it is a JSON object or list."""
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} {key}=...: the value looks like JSON but does not parse: "
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
            trace: str | None = None, store: SQLiteStore | None = None,
            store_name: str | None = None) -> None:
    """Run ``flow`` with progress on ``console``; the table after, the output to ``out``."""
    values = structure_inputs(flow.name, flow.inputs, inputs)  # before any display
    if store is not None and run_id is not None:
        _check_reuse(flow, values, store, run_id, store_name or store.path)
    begin = functools.partial(arun, flow, inputs, max_concurrency=max_concurrency,
                              run_id=run_id, store=store)
    show_run(flow, begin, console=console, out=out, trace=trace, store_name=store_name)


def _check_reuse(flow: Graph, values: dict[str, Any], store: SQLiteStore, run_id: str,
                 name: str) -> None:
    """The id of a stored run with other inputs: said before the display starts."""
    existing = store.load_run(run_id)
    if existing is None:
        return
    given = inputs_json(flow.inputs, values, f"run({flow.name})")
    if existing.inputs_hash != inputs_hash(given):
        raise CliError(f"run {run_id!r} is in store {name!r} already, with other inputs: "
                       f"{existing.inputs_json}.\n  A run id names one run: give a new "
                       f"--run-id, or continue this one: flowfn resume {run_id} --store {name}.",
                       USAGE)


def show_run(flow: Graph, begin: Callable[..., Awaitable[RunResult]], *, console: Console,
             out: TextIO, trace: str | None = None, store_name: str | None = None,
             verb: str = "running") -> None:
    """Call ``begin(on_event=...)`` (a run or a resume of ``flow``) under the display;
    then the per-step table, and the output (or the forms a waiting run needs)."""
    live = console.is_terminal and not console.is_dumb_terminal
    watch: Progress | PlainLog = (Progress(flow) if live
                                  else PlainLog(flow, cast(TextIO, console.file)))
    if not live:
        steps = count_steps(flow)
        console.file.write(f"{verb} {short_name(flow.name)} ({steps} step{'s' * (steps != 1)})\n")
    began = time.monotonic()
    failure: RunFailed | None = None
    with _display(watch, console, out=out):
        try:
            if isinstance(watch, Progress):
                result = trio.run(begin, instruments=[watch.finder()])
            else:
                result = trio.run(functools.partial(begin, on_event=watch.event))
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
        _report_waiting(console, result, store_name)
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


def _report_waiting(console: Console, result: RunResult, store_name: str | None) -> None:
    """A run that stops at human steps: its forms, and the command that answers each."""
    forms = [StoredForm(f.path, f.title, f.schema, f.deadline) for f in result.waiting]
    console.print(waiting_text(result.run_id, result.graph_name, forms, store_name),
                  markup=False, highlight=False, soft_wrap=True)


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


# --- stores, runs and answers ---------------------------------------------------------


class TargetStore(SQLiteStore):
    """The store of a ``flowfn run``: it keeps the command's own target as the run's
    flow. (What ``run()`` finds by itself is the module the command made from the file,
    which no other process has: ``flows:flow`` or ``flowfn_target_...:flow``.)"""

    def __init__(self, path: str, target: str) -> None:
        super().__init__(path)
        self.target = target

    def begin_run(self, run_id: str, *, graph_name: str, flow_ref: str | None,
                  inputs_json: str) -> StoredRun | None:
        return super().begin_run(run_id, graph_name=graph_name, flow_ref=self.target,
                                 inputs_json=inputs_json)


def open_store(name: str, *, must_exist: bool, ref: str | None = None) -> SQLiteStore:
    """The SQLite store ``--store name``; for reading, the file must exist already (a
    mistyped name would otherwise create an empty store and show no runs)."""
    path = Path(name)
    if path.is_dir():
        raise CliError(f"--store {name!r} is a directory, not a store file.", USAGE)
    if must_exist and not path.is_file():
        raise CliError(f"--store {name!r} does not exist. A store is made by the first "
                       f"run kept in it: flowfn run FILE.py:flow --store {name}.", USAGE)
    try:
        return TargetStore(name, ref) if ref is not None else SQLiteStore(name)
    except StoreError as exc:
        raise CliError(f"--store {name!r}: {exc}", USAGE) from exc


def _need_store(store: str | None, command: str) -> str:
    if store is None:
        raise CliError(f"flowfn {command} needs the store: --store FILE.db.", USAGE)
    return store


def find_run(db: SQLiteStore, name: str, run_id: str) -> StoredRun:
    stored = db.load_run(run_id)
    if stored is not None:
        return stored
    ids = [r.run_id for r in db.list_runs()]
    guess = did_you_mean(run_id, ids)
    hint = f" Did you mean {guess!r}?" if guess else ""
    latest = ", ".join(ids[-5:]) if ids else "none"
    raise CliError(f"store {name!r} has no run {run_id!r}.{hint} Latest runs: {latest} "
                   f"(all: flowfn runs --store {name}).", USAGE)


def parse_answers(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--answer name=@file.json`` (the file's JSON) or ``--answer name=VALUE`` (text,
    or JSON when it is an object or a list), by name."""
    answers: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--answer {pair!r}: write an answer as name=@answer.json or "
                           """name='{"key": ...}'.""", USAGE)
        if key in answers:
            raise CliError(f"--answer {key}=... is given twice; a form takes one answer.",
                           USAGE)
        answers[key] = _read_answer(key, text[1:]) if text.startswith("@") else _value(
            key, text, "--answer")
    return answers


def _read_answer(key: str, name: str) -> Any:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--answer {key}=@{name}: cannot read the file ({exc.strerror}).",
                       USAGE) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--answer {key}=@{name}: not valid JSON: {exc.msg} at line "
                       f"{exc.lineno}.", USAGE) from exc


def _check_objects(stored: StoredRun, answers: dict[str, Any]) -> None:
    """Plain text given to a form that takes an object: show the object's shape."""
    for key, value in answers.items():
        for form in stored.forms.values():
            if (key in (form.name, form.name.rpartition("/")[2]) and isinstance(value, str)
                    and form.schema.get("type") == "object"):
                raise CliError(f"--answer {key}={value}: form {form.name!r} takes a JSON "
                               f"object: {sketch(form.schema)}.\n  Write {key}=@answer.json "
                               f"or {key}='{{...}}'.", USAGE)


def _answered_already(stored: StoredRun, answers: dict[str, Any]) -> dict[str, str]:
    """Notes, by answer key, for answers to forms that have theirs already: a form keeps
    its first (``resume()`` itself refuses a different second answer)."""
    notes = {}
    for key in answers:
        for form in stored.forms.values():
            if key in (form.name, form.name.rpartition("/")[2]) and form.answer_json:
                notes[key] = (f"form {form.name!r} of run {stored.run_id!r} was answered "
                              f"before; it keeps that answer: {form.answer_json}")
    return notes


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
    except (GraphError, StoreError) as exc:
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
        inputs = parse_inputs(pairs, inputs_file)
        flow, ref = resolve_target(target)
        kept = open_store(store, must_exist=False, ref=ref) if store is not None else None
        with contextlib.closing(kept) if kept is not None else contextlib.nullcontext():
            execute(flow, inputs, console=console, out=sys.stdout,
                    max_concurrency=max_concurrency, run_id=run_id, trace=trace,
                    store=kept, store_name=store)


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


@cli.command("runs")
@click.argument("run_id", required=False)
@click.option("--store", metavar="FILE.db", help="The store to read.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only the runs in this status.")
@click.option("--debug", is_flag=True, help="Tracebacks on errors.")
def runs_command(run_id: str | None, store: str | None, status: str | None,
                 debug: bool) -> None:
    """List the runs of a store; with RUN_ID, that run's steps and forms."""
    with _guard(debug):
        name = _need_store(store, "runs")
        with contextlib.closing(open_store(name, must_exist=True)) as db:
            now = time.time()
            if run_id is not None:
                click.echo(run_text(find_run(db, name, run_id), name, now))
                return
            runs = db.list_runs(status)
            if not runs:
                click.echo(f"no {status + ' ' if status else ''}runs in {name!r}")
                return
            click.echo(runs_table(runs, now))


@cli.command("resume")
@click.argument("run_id")
@click.option("--store", metavar="FILE.db", help="The store that holds the run.")
@click.option("-a", "--answer", "answer_pairs", multiple=True, metavar="NAME=VALUE",
              help="Answer a waiting form: NAME=@answer.json or NAME='{\"key\": ...}' "
                   "(repeatable).")
@click.option("--rerun", multiple=True, metavar="STEP",
              help="Run STEP and everything after it again (repeatable); 'changed': the "
                   "steps whose code changed.")
@click.option("--flow", "target", metavar="TARGET",
              help="The flow to continue with, if not the one the store remembers.")
@click.option("--trace", metavar="FILE.json", help="Write a Chrome/Perfetto trace of the run.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Cap on steps (and map items) running at once.")
@click.option("--debug", is_flag=True, help="Tracebacks and DEBUG log records on errors.")
def resume_command(run_id: str, store: str | None, answer_pairs: tuple[str, ...],
                   rerun: tuple[str, ...], target: str | None, trace: str | None,
                   max_concurrency: int | None, debug: bool) -> None:
    """Continue the stored run RUN_ID: with answers to its forms, or after a crash."""
    console = Console(stderr=True)
    with _guard(debug), _debug_logging(console, debug):
        answers = parse_answers(answer_pairs)
        name = _need_store(store, "resume")
        with contextlib.closing(open_store(name, must_exist=True)) as db:
            stored = find_run(db, name, run_id)
            flow = flow_of(stored, target, name)
            _check_objects(stored, answers)
            check_answers(flow, answers, f"flowfn resume {run_id}")  # nothing shown yet
            check_rerun(flow, rerun)
            for key, note in _answered_already(stored, answers).items():
                console.print(note, markup=False, highlight=False, soft_wrap=True)
                del answers[key]  # the form keeps its first answer
            begin = functools.partial(
                aresume, flow, run_id, store=db, answers=answers or None,
                rerun="changed" if rerun == ("changed",) else list(rerun) or None,
                max_concurrency=max_concurrency)
            show_run(flow, begin, console=console, out=sys.stdout, trace=trace,
                     store_name=name, verb="resuming")


def main(argv: list[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=argv, prog_name="flowfn")
