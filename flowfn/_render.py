"""Pictures of a graph and of a run: Mermaid and DOT graphs, the Mermaid Gantt timeline.

Every picture must be valid for every step name, so names are never pasted into the
output as they are: Mermaid gets ids made of ``[A-Za-z0-9_]`` (never a keyword such as
``end``), unique even when two names sanitise alike, and quoted, escaped labels; DOT gets
quoted, escaped strings. A name that is already a plain word keeps itself as its id and
label, so simple graphs read as they are written. Sub-workflows are drawn as clusters
holding their own steps. The JSON and Chrome trace exports live in ``_export``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Protocol

from ._export import Finished, chrome_trace, result_json, run_report
from ._nodes import Node


class Graph(Protocol):
    """What the pictures read of a graph (``_graph.Graph``, which sits above this
    module and calls it)."""

    @property
    def name(self) -> str: ...
    @property
    def nodes(self) -> list[Node]: ...

__all__ = ["chrome_trace", "gantt", "graph_dot", "graph_mermaid", "result_json", "run_report"]

Key = tuple[str, ...]  # a node's names from the top graph down: ("users", "load")

# Words Mermaid's flowchart grammar reads as keywords wherever an id may stand.
_MERMAID_WORDS = frozenset({
    "end", "graph", "flowchart", "flowchart-elk", "subgraph", "style", "classdef", "class",
    "click", "linkstyle", "direction", "default", "call", "href", "callback",
    "interpolate", "tb", "td", "bt", "rl", "lr", "accTitle", "accDescr",
})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ID = re.compile(r"[A-Za-z0-9_]+")


def _edges(g: Graph) -> list[tuple[str, str, str]]:
    """(upstream, downstream, label) for data, map, order and race-membership edges."""
    edges: list[tuple[str, str, str]] = []
    for n in g.nodes:
        seen = set()
        for b in n.bindings + (n.when or ()):
            if b.node is not None and b.node not in seen:
                seen.add(b.node)
                edges.append((b.node.name, n.name, "each" if b.each else ""))
        for d in n.deps:
            if d not in seen and d is not n.owner:
                edges.append((d.name, n.name, "after"))
        for m in n.members:
            edges.append((m.name, n.name, "race"))
    return edges


def _subgraph(n: Node) -> Graph | None:
    return n.step.container.graph if n.kind == "subflow" else None  # type: ignore[union-attr]


def _keys(g: Graph, prefix: Key = ()) -> Iterator[Key]:
    """Every node's key, the top graph's first (so they win the plain ids), then inner."""
    inner: list[tuple[Graph, Key]] = []
    for n in g.nodes:
        yield (*prefix, n.name)
        sub = _subgraph(n)
        if sub is not None:
            inner.append((sub, (*prefix, n.name)))
    for sub, key in inner:
        yield (*key, "")  # the cluster itself
        yield from _keys(sub, key)


def _unique(keys: list[Key], valid: Callable[[str], bool], clean: Callable[[str], str],
            sep: str) -> dict[Key, str]:
    """An id for every key: a top-level name that is ``valid`` stays itself; everything
    else is ``clean``-ed and numbered until it is valid and unused."""
    ids: dict[Key, str] = {}
    taken: set[str] = set()
    for key in keys:
        if len(key) == 1 and valid(key[0]) and key[0] not in taken:
            ids[key] = key[0]
            taken.add(key[0])
    for key in keys:
        if key in ids:
            continue
        base = clean(sep.join(p for p in key if p) + (sep + "cluster" if not key[-1] else ""))
        found, n = base, 1
        while found in taken or not valid(found):
            n += 1
            found = f"{base}{sep}{n}"
        ids[key] = found
        taken.add(found)
    return ids


# --- Mermaid --------------------------------------------------------------------------------


def _mermaid_id_ok(text: str) -> bool:
    return bool(_ID.fullmatch(text)) and text.lower() not in _MERMAID_WORDS


def _mermaid_clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"


def mermaid_label(text: str) -> str:
    """A label as Mermaid shows it: bare when a plain word, else quoted with every
    character Mermaid could read as syntax written as an entity code (``#34;``)."""
    if _WORD.fullmatch(text) and text.lower() not in _MERMAID_WORDS:
        return text
    codes = {c: f"#{ord(c)};" for c in '#"<>&`\\'}
    codes.update({"\n": " ", "\r": " ", "\t": " "})
    return '"' + "".join(codes.get(c, c) for c in text) + '"'


def _mermaid_shape(n: Node) -> str:
    return "{{%s}}" if n.members else "[[%s]]" if n.step.container else "[%s]"


def _mermaid_body(g: Graph, ids: dict[Key, str], prefix: Key, indent: str) -> list[str]:
    lines: list[str] = []
    for n in g.nodes:
        key = (*prefix, n.name)
        node = f"{indent}{ids[key]}" + _mermaid_shape(n) % mermaid_label(n.name)
        sub = _subgraph(n)
        if sub is None:
            lines.append(node)
            continue
        lines.append(f"{indent}subgraph {ids[(*key, '')]} [{mermaid_label(n.name)}]")
        lines.append("    " + node)
        lines.extend(_mermaid_body(sub, ids, key, indent + "    "))
        lines.append(f"{indent}end")
    for up, down, label in _edges(g):
        arrow = f"-.->|{label}|" if label in ("after", "race") else (
            f"==>|{label}|" if label else "-->")
        lines.append(f"{indent}{ids[(*prefix, up)]} {arrow} {ids[(*prefix, down)]}")
    return lines


def graph_mermaid(g: Graph) -> str:
    ids = _unique(list(_keys(g)), _mermaid_id_ok, _mermaid_clean, "_")
    return "\n".join(["flowchart TD", *_mermaid_body(g, ids, (), "    ")])


# --- DOT ------------------------------------------------------------------------------------


def dot_string(text: str) -> str:
    """A quoted DOT string. Backslashes are doubled too: Graphviz reads ``\\n``, ``\\N``
    and ``\\l`` in labels (a node's label is its id) as escapes."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _dot_body(g: Graph, ids: dict[Key, str], prefix: Key, indent: str) -> list[str]:
    lines: list[str] = []
    for n in g.nodes:
        key = (*prefix, n.name)
        shape = "diamond" if n.members else "box3d" if n.step.container else "box"
        label = f", label={dot_string(n.name)}" if ids[key] != n.name else ""
        node = f"{indent}{dot_string(ids[key])} [shape={shape}{label}];"
        sub = _subgraph(n)
        if sub is None:
            lines.append(node)
            continue
        lines.append(f"{indent}subgraph {dot_string('cluster ' + ids[(*key, '')])} {{")
        lines.append(f"{indent}    label={dot_string(n.name)};")
        lines.append("    " + node)
        lines.extend(_dot_body(sub, ids, key, indent + "    "))
        lines.append(f"{indent}}}")
    for up, down, label in _edges(g):
        style = f' [style=dashed, label="{label}"]' if label in ("after", "race") else (
            f' [label="{label}"]' if label else "")
        lines.append(f"{indent}{dot_string(ids[(*prefix, up)])} -> "
                     f"{dot_string(ids[(*prefix, down)])}{style};")
    return lines


def _dot_id_ok(text: str) -> bool:
    return not text.startswith("%")  # Graphviz takes "%..." for its anonymous names


def graph_dot(g: Graph) -> str:
    ids = _unique(list(_keys(g)), _dot_id_ok, lambda text: text.lstrip("%") or "_", "/")
    body = _dot_body(g, ids, (), "    ")
    return "\n".join([f"digraph {dot_string(g.name)} {{", "    rankdir=TB;", *body, "}"])


# --- Gantt ----------------------------------------------------------------------------------

# Gantt lines that start with one of these words are statements, not tasks.
_GANTT_WORDS = ("gantt", "title", "section", "dateformat", "axisformat", "tickinterval",
                "excludes", "includes", "todaymarker", "inclusiveenddates", "topaxis",
                "weekday", "weekend", "click", "acctitle", "accdescr", "displaymode")


def _gantt_name(text: str) -> str:
    """A task name Mermaid reads as one: no ``:``, ``;``, ``#``, ``%`` or line breaks,
    and never starting like a statement (``title ...``)."""
    text = re.sub(r"[:;#%\r\n\t]", "_", text).strip() or "_"
    return "_" + text if text.lower().startswith(_GANTT_WORDS) else text


def _axis_format(length: float) -> str:
    """The axis labels for a run ``length`` seconds long: past a minute, ``%S.%L`` would
    wrap around every minute."""
    if length < 60:
        return "%S.%L"
    if length < 3600:
        return "%M:%S"
    if length < 86400:
        return "%H:%M:%S"
    return "%j %H:%M"


_DAY_ONE = datetime(2000, 1, 1)


def _local_time(ms: int) -> str:
    at = _DAY_ONE + timedelta(milliseconds=ms)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def gantt(result: Finished) -> str:
    """A Mermaid Gantt chart of the run, times in milliseconds from the first start.

    Mermaid draws the axis in the viewer's time zone. Times as epoch milliseconds
    (``dateFormat x``) are fine for seconds, but minutes and hours would show the zone's
    offset, so a run of a minute or more is written as wall-clock times from midnight,
    which the viewer's browser reads as local times: the axis starts at 00:00:00.
    """
    spans = [s for s in result.walk() if s.started is not None and s.ended is not None]
    origin = min((s.started for s in spans if s.started is not None), default=0.0)
    length = max((s.ended for s in spans if s.ended is not None), default=origin) - origin
    stamp: Callable[[int], str] = str if length < 60 else _local_time
    lines = ["gantt", f"    title {_gantt_name(result.graph_name)}",
             "    dateFormat " + ("x" if length < 60 else "YYYY-MM-DD HH:mm:ss.SSS"),
             f"    axisFormat {_axis_format(length)}"]
    for s in spans:
        assert s.started is not None and s.ended is not None
        start = round((s.started - origin) * 1000)
        end = max(start + 1, round((s.ended - origin) * 1000))
        tag = {"failed": "crit, ", "cancelled": "done, "}.get(s.status, "")
        lines.append(f"    {_gantt_name(s.path)} : {tag}{stamp(start)}, {stamp(end)}")
    return "\n".join(lines)
