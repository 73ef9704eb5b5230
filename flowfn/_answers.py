"""Answers to ``ask()`` steps: found by name or path, converted before anything is written.

A bad answer is an ``InputError`` with every data path, raised before a run starts or a
store changes (DESIGN §4); ``run()``, ``resume()``, the ``flow_run`` fixture and the CLI
check answers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._codec import encode
from ._errors import InputError, did_you_mean
from ._graph import Graph
from ._inputs import structure


def check_answers(graph: Graph, answers: Mapping[str, Any], context: str) -> dict[str, Any]:
    """Every answer converted to its ``ask()`` step's answer type, or one ``InputError``
    with every bad data path; an answer naming no ``ask()`` step is one of them."""
    if not isinstance(answers, Mapping):
        raise TypeError(f"{context}: answers take a dict of ask() names to answers, like "
                        f"{{'approve': {{'ok': True}}}}; got {answers!r}")
    if not answers:
        return {}
    asks = asks_of(graph)
    by_name = {path.rpartition("/")[2]: path for path in asks}
    problems: list[str] = []
    out: dict[str, Any] = {}
    for key, value in answers.items():
        path = key if key in asks else by_name.get(key)
        if path is None:
            guess = did_you_mean(str(key), list(asks) + list(by_name))
            hint = f" Did you mean {guess!r}?" if guess else ""
            known = ", ".join(sorted(asks)) or "none"
            problems.append(f"{key}: no ask() step has that name.{hint} Asks: {known}.")
            continue
        converted, bad = structure(value, asks[path].answer_type, key)
        problems.extend(bad)
        if not bad:
            out[path] = converted
    if problems:
        raise InputError(context, problems, noun="answer")
    return out


def asks_of(graph: Graph) -> dict[str, Any]:
    """The ``ask()`` steps of a graph and its sub-workflows, by path."""
    return {path: node.step.container for path, node in graph.walk() if node.kind == "ask"}


def answer_json(g: Graph, path: str, value: Any) -> str:
    """A checked answer as the store keeps it: JSON by the ask's answer type."""
    return encode(value, asks_of(g)[path].answer_type)
