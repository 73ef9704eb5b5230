"""Checking the arguments of ``run()`` / ``arun()`` before anything starts (DESIGN §2).

A misused argument (``run(flow, "x=1")``, ``limits=[...]``, ``timeout="5"``) gets one
flowfn message naming the argument and what it takes, never an ``AttributeError`` from
deep inside a run. :func:`check_run_args` checks them all; :func:`route_overrides` says
which step each override replaces, for steps whose own name contains ``/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import GraphError, Problem, def_line, did_you_mean
from ._graph import Graph, Node
from ._inputs import check_inputs_arg, check_mapping_arg
from ._options import describe, is_executor_object
from ._patterns import SubflowSpec
from ._step import Step

RUN_EXECUTORS = ("thread", "inline", "process")  # defaults a run may give its sync steps


def check_run_args(graph: Graph, *, inputs: Any = None, max_concurrency: Any = None,
                   limits: Any = None, timeout: Any = None, overrides: Any = None,
                   executor: Any = None, run_id: Any = None) -> dict[str, Any]:
    """Every argument of ``run(graph, ...)`` checked; the overrides keyed by path.

    Raises ``TypeError``/``ValueError`` for an argument of the wrong kind and
    ``GraphError`` for limits or overrides that do not fit the graph.
    """
    call = f"run({graph.name}"
    check_inputs_arg(f"{call})", inputs)
    check_mapping_arg(f"{call}, limits=...)", "limits", limits,
                      "limit names to capacities, like {'api': 5}")
    check_mapping_arg(f"{call}, overrides=...)", "overrides", overrides,
                      "steps (or their names) to values, functions or exceptions, like "
                      "{fetch_users: ['x']}", keys=(str, Step))
    if timeout is not None and (not _number(timeout) or not timeout > 0):
        raise ValueError(
            f"{call}, timeout={timeout!r}): the deadline must be a number of seconds > 0, "
            "or None for no deadline."
        )
    if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
            or max_concurrency < 1):
        raise ValueError(
            f"{call}, max_concurrency={max_concurrency!r}): the cap must be a whole number "
            ">= 1, or None for no cap."
        )
    _check_executor(call, executor)
    if run_id is not None and not (isinstance(run_id, str) and run_id):
        raise TypeError(
            f"{call}, run_id={run_id!r}): run_id must be a non-empty str (your own id for "
            f"the run), got {describe(run_id)}. Leave it out for a random one."
        )
    check_limits(graph, limits or {}, f"{call}, limits=...)")
    return check_overrides(graph, overrides or {}, f"{call}, overrides=...)")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_executor(call: str, executor: Any) -> None:
    if executor is None or executor in RUN_EXECUTORS or is_executor_object(executor):
        return
    names = ", ".join(repr(e) for e in RUN_EXECUTORS)
    error = ValueError if isinstance(executor, str) else TypeError
    raise error(
        f"{call}, executor={executor!r}): the default executor of the run's sync steps "
        f"must be one of {names} or an executor object (with an async run() method and "
        f"open()/close()), got {describe(executor)}."
    )


# --- overrides and limits ------------------------------------------------------------------


def check_overrides(graph: Graph, overrides: Mapping[Any, Any], context: str) -> dict[str, Any]:
    """Overrides keyed by name (``branch/step`` paths inside sub-workflows), validated."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    names = overridable(graph) if overrides else []
    for key, value in overrides.items():
        name = key.name if isinstance(key, Step) else str(key)
        if name not in names:
            guess = did_you_mean(name, names)
            lines = [f"overrides names {name!r}, but no step in this graph has that name."]
            hint = f"Did you mean {guess!r}? " if guess else ""
            lines.append(f"{hint}Overridable steps: {', '.join(sorted(names))}.")
            problems.append(Problem("", tuple(lines)))
            continue
        out[name] = value
    if problems:
        raise GraphError(context, problems, blank=False)
    return out


def overridable(graph: Graph) -> list[str]:
    """Every step a run's overrides may name: top-level names, ``branch/step`` paths."""
    return [path for path, _ in graph.walk()]


def route_overrides(graph: Graph, overrides: Mapping[str, Any]
                    ) -> tuple[dict[Node, Any], dict[Node, dict[str, Any]]]:
    """Which node each checked override replaces: (this graph's nodes -> value, each
    subflow node -> the overrides for inside it, keyed relative to it).

    The rule: a key that is the exact name of a step of this graph means that step, even
    when the name contains ``/``; otherwise the key is a path, and its first part is the
    longest name of a subflow of this graph that the key starts with, followed by ``/``.
    """
    top: dict[Node, Any] = {}
    inner: dict[Node, dict[str, Any]] = {}
    subflows = [n for n in graph.nodes if isinstance(n.step.container, SubflowSpec)]
    subflows.sort(key=lambda n: len(n.name), reverse=True)
    for key, value in overrides.items():
        node = graph.by_name.get(key)
        if node is not None:
            top[node] = value
            continue
        for sub in subflows:
            if key.startswith(sub.name + "/"):
                inner.setdefault(sub, {})[key[len(sub.name) + 1:]] = value
                break
    return top, inner


def check_limits(graph: Graph, limits: Mapping[str, int], context: str) -> None:
    """Every ``limit=`` used in the graph (sub-workflows included) is defined, and every
    capacity is a whole number >= 1."""
    problems: list[Problem] = []

    def visit(g: Graph, prefix: str) -> None:
        for n in g.limit_checks:
            lim = n.step.limit
            if lim is not None and lim not in limits:
                guess = did_you_mean(lim, limits)
                hint = f" Did you mean {guess!r}?" if guess else ""
                problems.append(Problem(def_line(n.step.fn, n.name, at=n.step.location), (
                    f"step {prefix + n.name!r}: @step(limit={lim!r}) names a limit that this "
                    f"run does not define.{hint}",
                    f"Pass it to the run: limits={{{lim!r}: 5}}"
                    + (f" (defined: {', '.join(sorted(limits))})." if limits else "."),
                )))
            spec = n.step.container
            if isinstance(spec, SubflowSpec):
                visit(spec.graph, prefix + n.name + "/")

    visit(graph, "")
    for name, cap in limits.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            problems.append(Problem(f"limits[{name!r}] = {cap!r}", (
                "a capacity limit must be a whole number >= 1.",
            )))
    if problems:
        raise GraphError(context, problems)
