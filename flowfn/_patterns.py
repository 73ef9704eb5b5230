"""Pattern helpers: steps made for you — ``race``, ``subflow``, ``shell``, ``stub``.

Each helper returns an ordinary :class:`Step` whose parameters are built from what it
needs (a shell command's ``{placeholders}``, a sub-graph's inputs), so it is wired and
checked by ``graph()`` exactly like a hand-written step. ``race`` and ``subflow`` are
*containers*: the scheduler runs their contents inside their span.
"""

from __future__ import annotations

import inspect
import os
import shlex
import signal
import string
import sys
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import trio

from ._errors import pickle_reduce, relpath
from ._executors import real_work
from ._graph import Graph
from ._graph import graph as make_graph
from ._inputs import structure, structure_inputs
from ._step import MISSING, Step
from ._types import EMPTY
from ._wiring import Each

AnyStep = Step[Any, Any]
T = TypeVar("T")


def _adopt(fn: Any, depth: int = 2) -> None:
    """Make a generated step function belong to the module that called the pattern
    helper, like a ``def`` there would: ``graph(module)`` takes the steps defined in it."""
    fn.__module__ = sys._getframe(depth).f_globals.get("__name__", fn.__module__)


def _caller_location(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{relpath(frame.f_code.co_filename)}:{frame.f_lineno}"


def _with_signature(fn: Any, params: list[inspect.Parameter], returns: Any) -> Any:
    fn.__signature__ = inspect.Signature(
        params, return_annotation=inspect.Signature.empty if returns is EMPTY else returns
    )
    if returns is not EMPTY:
        fn.__annotations__ = {"return": returns}
    return fn


# --- race ---------------------------------------------------------------------------------


class RaceSpec:
    """The contestants of a race step."""

    kind = "race"

    def __init__(self, contestants: list[AnyStep]) -> None:
        self.contestants = contestants

    def members(self) -> list[AnyStep]:
        return self.contestants

    def output_type(self, declared: Any) -> Any:
        # graph() works it out from the contestants' nodes (``_race_output``): only they
        # know which contestants are maps and what an inner race outputs.
        return EMPTY


def race(*contestants: AnyStep, name: str | None = None, **options: Any) -> AnyStep:
    """A step whose output is the first *successful* result among ``contestants``.

    The others are cancelled as soon as one succeeds (their spans say ``cancelled`` and
    why); ``result.spans[name].winner`` names the winner. If every contestant fails, the
    race fails with all their errors in an ``ExceptionGroup``.
    """
    if len(contestants) < 2:
        raise TypeError(f"race() needs at least two steps to race, got {len(contestants)}")
    for c in contestants:
        if not isinstance(c, Step):
            raise TypeError(f"race() takes steps; {c!r} is not one. Decorate it with @step.")
    race_name = name or "_or_".join(c.name for c in contestants)

    async def run_race() -> Any:
        raise TypeError(f"race {race_name!r} runs inside run(); it cannot be called directly")

    _adopt(run_race)
    return Step(run_race, name=race_name, container=RaceSpec(list(contestants)),
                defined_at=_caller_location(), **options)


# --- subflow ----------------------------------------------------------------------------


class SubflowSpec:
    """A sub-graph and the fixed values for some of its inputs."""

    kind = "subflow"

    def __init__(self, graph: Graph, fixed: dict[str, Any]) -> None:
        self.graph = graph
        self.fixed = fixed

    def members(self) -> list[AnyStep]:
        return []

    def output_type(self, declared: Any) -> Any:
        return declared


def subflow(flow: Graph | AnyStep, *, name: str, inputs: Mapping[str, Any] | None = None,
            **options: Any) -> AnyStep:
    """A step that runs a whole graph; its output is that graph's output.

    Each input of ``flow`` comes from ``inputs[name]`` when given there — a step (its
    output is wired in) or a fixed value — and otherwise from the parent graph's input of
    the same name. Use the same graph in several subflows for independent branches.
    """
    if not isinstance(flow, Graph | Step):
        raise TypeError(f"subflow({flow!r}, name={name!r}): the first argument is the flow to "
                        "run, a graph (graph(...)) or a step")
    sub = flow if isinstance(flow, Graph) else make_graph(flow)
    given = dict(inputs or {})
    unknown = sorted(set(given) - set(sub.inputs))
    if unknown:
        known = ", ".join(sorted(sub.inputs)) or "none"
        raise TypeError(
            f"subflow {name!r}: inputs= names {', '.join(repr(u) for u in unknown)}, which "
            f"graph({sub.name}) does not take. Its inputs: {known}."
        )
    params: list[inspect.Parameter] = []
    fixed: dict[str, Any] = {}
    for input_name, spec in sub.inputs.items():
        tp = Any if spec.type is EMPTY else spec.type
        if input_name in given:
            value = given[input_name]
            if isinstance(value, Each | Step):  # wired in (each(): one run per item)
                params.append(inspect.Parameter(
                    input_name, inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[tp, value]))
            else:
                fixed[input_name] = value
            continue
        default = inspect.Parameter.empty if spec.required else spec.default
        params.append(inspect.Parameter(input_name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=tp, default=default))

    async def run_subflow(**kwargs: Any) -> Any:
        raise TypeError(
            f"subflow {name!r} runs inside run(); it cannot be called directly. "
            f"To run its graph on its own: run(graph({sub.name}), inputs)."
        )

    # Fixed values are checked (and converted) now, not when the subflow runs: a bad one
    # is a mistake in the flow's definition, reported before anything starts.
    fixed = structure_inputs(sub.name, {k: sub.inputs[k] for k in fixed}, fixed,
                             context=f"subflow {name!r} (inputs=...)")
    run_subflow.__name__ = run_subflow.__qualname__ = name
    _adopt(run_subflow)
    _with_signature(run_subflow, params, sub.output_type)
    return Step(run_subflow, name=name, container=SubflowSpec(sub, fixed),
                defined_at=_caller_location(), **options)


# --- ask ----------------------------------------------------------------------------------


class AskSpec:
    """A question for a person: the answer's type, the form's title, and the deadline."""

    kind = "ask"

    def __init__(self, answer_type: Any, title: str, deadline: timedelta | None,
                 on_deadline: Any) -> None:
        self.answer_type = answer_type
        self.title = title
        self.deadline = deadline
        self.on_deadline = on_deadline

    def members(self) -> list[AnyStep]:
        return []

    def output_type(self, declared: Any) -> Any:
        return declared


def ask(name: str, answer_type: type[T], *, title: str | None = None,
        deadline: timedelta | float | None = None, on_deadline: Any = MISSING,
        **options: Any) -> Step[[], T]:
    """A step whose output a person provides: an answer of type ``answer_type``.

    A run that reaches it without an answer returns with status ``"waiting"`` and the
    form in ``result.waiting`` (its JSON Schema drawn from ``answer_type``); other
    branches run on as far as they can. ``resume(flow, run_id, answers={name: ...})``
    continues it. ``deadline`` (a ``timedelta`` or seconds) is a wall-clock instant kept
    in the store; after it, ``on_deadline`` applies: a value becomes the answer, an
    exception fails the step.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"ask(name={name!r}): the name must be a non-empty string")
    if isinstance(deadline, bool) or not (
            deadline is None or isinstance(deadline, timedelta | int | float)):
        raise TypeError(f"ask({name!r}, deadline={deadline!r}): give a timedelta or a "
                        "number of seconds, or None for no deadline.")
    if isinstance(deadline, int | float):
        deadline = timedelta(seconds=deadline)
    if deadline is not None and deadline <= timedelta(0):
        raise ValueError(f"ask({name!r}, deadline={deadline!r}): the deadline must be "
                         "after the question is asked (> 0).")

    if title is not None and not isinstance(title, str):
        raise TypeError(f"ask({name!r}, title={title!r}): the title must be a str")
    if on_deadline is not MISSING:
        if deadline is None:
            raise TypeError(f"ask({name!r}, on_deadline=...): on_deadline applies after a "
                            "deadline; give deadline= too (a timedelta or seconds).")
        if not (isinstance(on_deadline, BaseException) or (
                isinstance(on_deadline, type) and issubclass(on_deadline, BaseException))):
            converted, bad = structure(on_deadline, answer_type, "on_deadline")
            if not bad:
                on_deadline = converted  # the answer it stands for, as an answer would be
            else:
                raise TypeError(f"ask({name!r}, on_deadline={on_deadline!r}) is not a valid "
                                f"answer: {'; '.join(bad)}")

    async def asked() -> Any:
        raise TypeError(f"ask {name!r} is answered inside run(); it cannot be called directly")

    asked.__name__ = asked.__qualname__ = name
    _adopt(asked)
    _with_signature(asked, [], answer_type)
    spec = AskSpec(answer_type, title or name, deadline, on_deadline)
    s: Step[[], T] = Step(asked, name=name, container=spec,  # type: ignore[arg-type]
                          defined_at=_caller_location(), **options)
    return s


# --- stub ---------------------------------------------------------------------------------


def stub(name: str, **options: Any) -> Step[[], None]:
    """A step that does nothing and returns ``None``: a placeholder while designing."""

    def placeholder() -> None:
        return None

    placeholder.__name__ = placeholder.__qualname__ = name
    _adopt(placeholder)
    options.setdefault("executor", "inline")
    s: Step[[], None] = Step(placeholder, name=name, defined_at=_caller_location(), **options)
    return s


# --- shell --------------------------------------------------------------------------------


class ShellError(Exception):
    """A shell step exited with a non-zero code."""

    __module__ = "flowfn"  # shown as flowfn.ShellError, like the other public errors
    __reduce__ = pickle_reduce

    def __init__(self, message: str, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


#: Seconds of *real* time a cancelled shell process gets to exit after SIGTERM before its
#: process group is sent SIGKILL.
KILL_GRACE = 5.0


async def _kill_process_group(proc: trio.Process) -> None:
    """Cancellation: SIGTERM the whole process group, SIGKILL it if still alive after
    :data:`KILL_GRACE` seconds.

    The grace period is real time, waited for in a worker thread: trio's clock may be a
    ``MockClock`` whose autojump is paused while the process runs (``real_work``), and a
    virtual deadline would then never pass, leaving a process that ignores SIGTERM alive.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    exited = threading.Event()
    async with trio.open_nursery() as nursery:
        async def wait_exit() -> None:
            try:
                await proc.wait()
            finally:  # cancelled too: run_process saw the exit and stops this killer
                exited.set()

        nursery.start_soon(wait_exit)
        if not await trio.to_thread.run_sync(exited.wait, KILL_GRACE):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - exited just now
                pass


def _placeholders(command: str) -> list[str]:
    names: list[str] = []
    for _, field, spec, conversion in string.Formatter().parse(command):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(
                f"shell command {command!r}: placeholder {{{field}}} must be a plain name "
                "(it is wired like a parameter). Write {{ and }} for literal braces."
            )
        if spec or conversion:
            written = "{" + field + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"shell command {command!r}: placeholder {written} formats its value, which "
                f"would undo its shell quoting. Write {{{field}}} and format the value in "
                "the step that produces it."
            )
        if field not in names:
            names.append(field)
    return names


def shell(command: str, *, name: str, cwd: str | os.PathLike[str] | None = None,
          env: Mapping[str, str] | None = None, check: bool = True, **options: Any) -> AnyStep:
    """A step that runs ``command`` in ``/bin/sh`` and returns its stdout as text.

    ``{placeholders}`` are wired like parameters (to inputs or upstream steps) and
    shell-quoted. ``env`` is added to the current environment. A non-zero exit fails the
    step with a :class:`ShellError` (unless ``check=False``). Cancellation terminates the
    process and everything it started (its own process group).
    """
    fields = _placeholders(command)
    full_env = None if env is None else {**os.environ, **env}

    async def run_shell(**kwargs: Any) -> str:
        text = command.format(**{k: shlex.quote(str(v)) for k, v in kwargs.items()})
        with real_work():  # a process takes real time: virtual time must not leap past it
            proc = await trio.run_process(
                text, shell=True, capture_stdout=True, capture_stderr=True, check=False,
                cwd=cwd, env=full_env, start_new_session=True,
                deliver_cancel=_kill_process_group,
            )
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            tail = "\n".join("    " + line for line in err.rstrip().splitlines()[-10:])
            message = f"command exited with code {proc.returncode}: {text}"
            if tail:
                message += f"\n  stderr (last lines):\n{tail}"
            raise ShellError(message, proc.returncode, out, err)
        return out

    run_shell.__name__ = run_shell.__qualname__ = name
    _adopt(run_shell)
    params = [inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY, annotation=Any)
              for f in fields]
    _with_signature(run_shell, params, str)
    # Placeholders wired by name look for steps in the module that called shell(), as a
    # parameter of a step defined there would.
    setattr(run_shell, "__flowfn_globals__", sys._getframe(1).f_globals)
    return Step(run_shell, name=name, defined_at=_caller_location(), **options)
