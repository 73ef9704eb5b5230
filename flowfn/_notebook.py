"""Notebook steps: run a Jupyter notebook with parameters as one step of a flow.

Optional extra ``flowfn[notebook]`` (nbclient, nbformat, ipykernel). Nothing here imports
them at module level: ``import flowfn`` works without the extra, and ``notebook(...)``
says which extra to install.

**The parameters cell is the notebook's signature.** Every name assigned a literal in the
code cell tagged ``parameters`` (``n = 3``, ``label: str = "x"``) is a parameter of the
step, exactly like an input of a ``subflow``: it comes from ``parameters[name]`` when
given there — a step (its output is wired in) or a fixed value — and otherwise from the
graph input of the same name, whose default is the cell's own value. A name assigned a
non-literal (``df = load()``) can only be set through ``parameters=``.

Running: the step writes nothing itself. It starts ``python -m flowfn._notebook`` in its
own process group and hands it the injected parameters cell on stdin; that runner
executes the parameterised copy with nbclient and stores it (also when a cell fails).
Cancelling the step — a ``timeout=``, a lost race, a failure elsewhere — terminates
the runner's process group; the runner kills the kernel's (the kernel lives in a session
of its own) before it exits.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import json
import keyword
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import trio

from ._errors import pickle_reduce, relpath, with_article
from ._executors import real_work
from ._patterns import _adopt, _caller_location, _kill_process_group, _with_signature
from ._result import current_span_var
from ._step import Step

if TYPE_CHECKING:
    from nbformat import NotebookNode

EXTRA = "pip install 'pyflowfn[notebook]'"
_MARKER = "flowfn-notebook-error: "
_INJECTED_TAG = "injected-parameters"
_NOT_LITERAL: Any = object()
# `python -m flowfn._notebook`, finding this very flowfn even when it is not installed
_RUNNER = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
           "from flowfn._notebook import main; sys.exit(main())")
_HOME = str(Path(__file__).resolve().parent.parent)
_SIMPLE_TYPES = {t.__name__: t for t in (int, float, str, bool, bytes, list, dict, tuple, set)}


class NotebookError(Exception):
    """A notebook step failed: a cell raised, or the kernel could not run it.

    ``cell`` is the index of the failing cell in the *original* notebook (``None`` when
    no cell is to blame, or ``-1`` for the injected parameters cell); ``ename`` and
    ``evalue`` are the exception's type name and text as the kernel reported them;
    ``output`` is the executed copy, written even when a cell fails.
    """

    __module__ = "flowfn"  # shown as flowfn.NotebookError, like the other public errors
    __reduce__ = pickle_reduce

    def __init__(self, message: str, *, notebook: Path, output: Path, cell: int | None = None,
                 source: str = "", ename: str = "", evalue: str = "",
                 traceback: str = "") -> None:
        super().__init__(message)
        self.notebook = notebook
        self.output = output
        self.cell = cell
        self.source = source
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


def _require_extra() -> None:
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "nbclient"
        raise ImportError(
            f"notebook() needs the optional extra 'pyflowfn[notebook]' ({missing} is not "
            f"installed). Install it with: {EXTRA}"
        ) from exc


# --- reading the parameters cell --------------------------------------------------------


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _parameters_cell(nb: NotebookNode) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in _tags(cell):
            return i
    return None


def _declared(source: str, where: str) -> dict[str, tuple[Any, Any]]:
    """``name -> (type, default)`` for each name the parameters cell assigns."""
    # IPython magics and shell escapes are not Python: blank them out before parsing.
    lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as exc:
        raise ValueError(f"{where}: the cell tagged 'parameters' is not valid Python "
                         f"(line {exc.lineno}: {exc.msg})") from None
    out: dict[str, tuple[Any, Any]] = {}
    for stmt in tree.body:
        targets: list[ast.expr]
        annotation: ast.expr | None = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value, annotation = [stmt.target], stmt.value, stmt.annotation
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default = _NOT_LITERAL
        tp: Any = Any
        if isinstance(annotation, ast.Name) and annotation.id in _SIMPLE_TYPES:
            tp = _SIMPLE_TYPES[annotation.id]
        for target in targets:
            if isinstance(target, ast.Name):
                out[target.id] = (tp, default)
    return out


# --- writing the injected cell ----------------------------------------------------------


def _literal(value: Any, param: str, step_name: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = repr(value)
    try:
        ok = ast.literal_eval(text) == value
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        ok = False
    if not ok:
        raise TypeError(
            f"notebook step {step_name!r}: parameter {param!r} is "
            f"{with_article(type(value).__name__)}, "
            "which cannot be written into a notebook cell. Pass a literal value "
            "(str, int, float, bool, None, bytes, or lists/tuples/dicts/sets of them) or a path."
        )
    return text


def _injected_source(values: Mapping[str, Any], step_path: str) -> str:
    lines = [f"# Parameters injected by flowfn (step {step_path!r})"]
    lines += [f"{k} = {_literal(v, k, step_path)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _output_path(src: Path, output_dir: Path | None, step_path: str) -> Path:
    flat = re.sub(r"[^\w.-]+", "-", step_path.replace("/", ".")).strip("-")
    return (output_dir or src.parent) / f"{src.stem}.{flat}.ipynb"


def _current_path(default: str) -> str:

    span = current_span_var.get(None)
    return span.path if span is not None else default


# --- the step ---------------------------------------------------------------------------


def notebook(path: str | os.PathLike[str], *, name: str,
             parameters: Mapping[str, Any] | None = None,
             output_dir: str | os.PathLike[str] | None = None,
             cwd: str | os.PathLike[str] | None = None,
             kernel_name: str | None = None, **options: Any) -> Step[Any, Any]:
    """A step that executes a parameterised copy of a notebook; its output is the copy's path.

    The notebook's parameters are the names assigned in its cell tagged ``parameters``.
    Each comes from ``parameters[name]`` when given — a step (wired: its output is the
    value) or a fixed value — and otherwise from the graph input of the same name, which
    defaults to the cell's value. A cell with those values is inserted after the
    ``parameters`` cell (at the top when there is none, and then only ``parameters=`` is
    injected).

    The executed copy is ``<stem>.<step path>.ipynb`` next to the notebook, or in
    ``output_dir``; it is written also when a cell fails. A failing cell fails the step
    with a :class:`NotebookError` naming the cell. The kernel runs in ``cwd`` (default:
    the notebook's folder) with ``kernel_name`` (default: the notebook's own kernel).
    ``options`` are the ``@step`` options (``timeout``, ``retries``, ``after``, ...).
    Needs the extra: ``pip install 'pyflowfn[notebook]'``.
    """
    _require_extra()
    import nbformat

    src = Path(path).resolve()
    where = f"notebook {relpath(str(src))!r} (step {name!r})"
    try:
        nb = nbformat.read(str(src), as_version=4)  # type: ignore[no-untyped-call]
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file") from None
    index = _parameters_cell(nb)
    declared = {} if index is None else _declared(nb.cells[index].source, where)
    given = dict(parameters or {})
    _check_given(where, given, declared if index is not None else None)
    params: list[inspect.Parameter] = []
    fixed: dict[str, Any] = {}
    order = list(declared) + [k for k in given if k not in declared]
    for pname in order:
        tp, default = declared.get(pname, (Any, _NOT_LITERAL))
        if pname in given:
            value = given[pname]
            if isinstance(value, Step):
                params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY,
                                                annotation=Annotated[tp, value]))
            else:
                fixed[pname] = value
        elif default is not _NOT_LITERAL:
            params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=tp, default=default))
    out_dir = None if output_dir is None else Path(output_dir).resolve()
    run_dir = Path(cwd).resolve() if cwd is not None else src.parent

    async def run_notebook(**kwargs: Any) -> Path:
        step_path = _current_path(name)
        values = {**fixed, **kwargs}  # injected in the parameters cell's order
        code = _injected_source({k: values[k] for k in order if k in values}, step_path)
        out = _output_path(src, out_dir, step_path)
        args = [sys.executable, "-c", _RUNNER, _HOME, str(src), str(out), "--cwd", str(run_dir)]
        if kernel_name is not None:
            args += ["--kernel", kernel_name]
        with real_work():  # real time passes: don't let a MockClock's autojump leap
            proc = await trio.run_process(
                args, stdin=code.encode(), capture_stdout=True, capture_stderr=True,
                check=False, start_new_session=True, deliver_cancel=_kill_process_group,
            )
        if proc.returncode == 0:
            return out
        raise _error(src, out, proc.returncode, proc.stdout.decode(errors="replace"),
                     proc.stderr.decode(errors="replace"))

    run_notebook.__name__ = run_notebook.__qualname__ = name
    _adopt(run_notebook)
    _with_signature(run_notebook, params, Path)
    options.setdefault("executor", "async")
    return Step(run_notebook, name=name, defined_at=_caller_location(), **options)


def _check_given(where: str, given: Mapping[str, Any],
                 declared: Mapping[str, Any] | None) -> None:
    """``parameters=`` names only what the notebook's ``parameters`` cell assigns (or,
    without such a cell, valid variable names)."""
    if declared is None:
        bad = [k for k in given if not k.isidentifier() or keyword.iskeyword(k)]
        if bad:
            raise TypeError(f"{where}: parameters= names {', '.join(map(repr, bad))}, "
                            "which are not Python variable names.")
        return
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise TypeError(
            f"{where}: parameters= names {', '.join(map(repr, unknown))}, which its "
            f"'parameters' cell does not assign. Its parameters: {known}."
        )


def _error(src: Path, out: Path, code: int, stdout: str, stderr: str) -> NotebookError:
    shown = relpath(str(src))
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            info = json.loads(line[len(_MARKER):])
            break
    else:
        tail = "\n".join("    " + ln for ln in stderr.rstrip().splitlines()[-10:])
        message = f"notebook {shown!r}: its runner exited with code {code}"
        if tail:
            message += f"\n  stderr (last lines):\n{tail}"
        return NotebookError(message, notebook=src, output=out)
    cell = info.get("cell")
    first = info.get("source", "")
    problem = info["error"]
    if cell is None:
        message = f"notebook {shown!r} could not run: {problem}"
    elif cell == -1:
        message = f"notebook {shown!r} failed in the injected parameters cell: {problem}"
    else:
        message = f"notebook {shown!r} failed in cell [{cell}], which starts {first!r}: {problem}"
    if info.get("written"):
        message += f"\n  executed copy: {out}"
    return NotebookError(message, notebook=src, output=out, cell=cell, source=first,
                         ename=info.get("ename", ""), evalue=info.get("evalue", ""),
                         traceback=info.get("traceback", ""))


# --- the runner: ``python -m flowfn._notebook SRC OUT`` ----------------------------------


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            text = line.strip()
            return text if len(text) <= 60 else text[:57] + "..."
    return ""


def _kill_kernel(client: Any) -> None:
    """SIGKILL the kernel's process group (jupyter_client starts it in its own session)."""
    km = getattr(client, "km", None)
    process = getattr(getattr(km, "provisioner", None), "process", None)
    pid = getattr(process, "pid", None)
    if pid:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def _supervise(client: Any, work: threading.Thread) -> None:
    """Run ``work`` (the notebook's execution) and never outlive the step.

    nbclient runs in a worker thread, so it installs no signal handlers of its own (they
    would shut the kernel down gracefully, taking seconds); the main thread keeps ours:
    on SIGTERM — the step was cancelled — or when the parent process is gone, the
    kernel's whole process group is killed (a cell's child processes too) and we exit.
    """

    def on_term(signum: int, frame: object) -> None:
        _kill_kernel(client)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    parent = os.getppid()
    work.start()
    while work.is_alive():
        work.join(0.5)
        if os.getppid() != parent:
            _kill_kernel(client)
            os._exit(1)


def _failure(client: Any, exc: Exception, at: int) -> dict[str, Any]:
    """What went wrong, as the JSON the step turns into a :class:`NotebookError`."""
    from nbclient.exceptions import CellExecutionError

    if not isinstance(exc, CellExecutionError):  # no such kernel, the kernel died, ...
        text = str(exc).strip() or type(exc).__name__
        hint = f" (is ipykernel installed? {EXTRA})" if "No such kernel" in text else ""
        return {"cell": None, "error": f"{type(exc).__name__}: {text}{hint}"}
    info: dict[str, Any] = {"cell": None, "ename": exc.ename, "evalue": exc.evalue,
                            "traceback": exc.traceback}
    for i, c in enumerate(client.nb.cells):
        errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:  # nbclient stops at the first failing cell: there is one
            info["cell"] = -1 if i == at else (i - 1 if i > at else i)
            info["source"] = _first_line(c.source)
            info["ename"], info["evalue"] = errors[-1].ename, errors[-1].evalue
    info["error"] = f"{info['ename']}: {info['evalue']}" if info["evalue"] else info["ename"]
    return info


def _execute(src: str, out: str, cwd: str, kernel: str | None, injected: str) -> int:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)  # type: ignore[no-untyped-call]
    nb.cells = [c for c in nb.cells if _INJECTED_TAG not in _tags(c)]
    index = _parameters_cell(nb)
    at = 0 if index is None else index + 1
    cell = nbformat.v4.new_code_cell(injected)  # type: ignore[no-untyped-call]
    cell.metadata["tags"] = [_INJECTED_TAG]
    nb.cells.insert(at, cell)
    if kernel is None:  # the notebook's own kernel, else python3
        kernel = str(nb.metadata.get("kernelspec", {}).get("name", "python3"))
    client = NotebookClient(nb, kernel_name=kernel, resources={"metadata": {"path": cwd}})
    errors: list[Exception] = []

    def work() -> None:
        try:
            client.execute()
        except Exception as exc:
            errors.append(exc)

    _supervise(client, threading.Thread(target=work, name="flowfn-notebook"))
    info = _failure(client, errors[0], at) if errors else None
    written = False
    with contextlib.suppress(OSError):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)  # type: ignore[no-untyped-call]
        written = True
    if info is None:
        return 0 if written else 1
    info["written"] = written
    print(_MARKER + json.dumps(info), flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowfn._notebook",
                                     description="Execute a notebook for a flowfn step. "
                                     "The injected parameters cell is read from stdin.")
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--cwd", default=".")
    parser.add_argument("--kernel", default=None)
    args = parser.parse_args(argv)
    injected = sys.stdin.read()
    return _execute(args.src, args.out, args.cwd, args.kernel, injected)


if __name__ == "__main__":
    sys.exit(main())
