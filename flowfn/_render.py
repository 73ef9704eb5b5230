"""Pictures and exports: Mermaid and DOT graphs, Gantt timelines, JSON, Chrome traces."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ._errors import exc_line

if TYPE_CHECKING:
    from ._graph import Graph
    from ._result import RunResult, Span


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _edges(g: Graph) -> list[tuple[str, str, str]]:
    """(upstream, downstream, label) for data, map, order and race-membership edges."""
    edges: list[tuple[str, str, str]] = []
    for n in g.nodes:
        seen = set()
        for b in n.bindings + (n.when or []):
            if b.node is not None and b.node not in seen:
                seen.add(b.node)
                edges.append((b.node.name, n.name, "each" if b.each else ""))
        for d in n.deps:
            if d not in seen and d is not n.owner:
                edges.append((d.name, n.name, "after"))
        for m in n.members:
            edges.append((m.name, n.name, "race"))
    return edges


def graph_mermaid(g: Graph) -> str:
    lines = ["flowchart TD"]
    for n in g.nodes:
        shape = ("{{%s}}" if n.members else "[[%s]]" if n.step.container else "[%s]")
        lines.append(f"    {_ident(n.name)}" + shape % n.name)
    for up, down, label in _edges(g):
        arrow = f"-.->|{label}|" if label in ("after", "race") else (
            f"==>|{label}|" if label else "-->")
        lines.append(f"    {_ident(up)} {arrow} {_ident(down)}")
    return "\n".join(lines)


def graph_dot(g: Graph) -> str:
    lines = [f'digraph "{g.name}" {{', "    rankdir=TB;"]
    for n in g.nodes:
        shape = "diamond" if n.members else "box3d" if n.step.container else "box"
        lines.append(f'    "{n.name}" [shape={shape}];')
    for up, down, label in _edges(g):
        style = f' [style=dashed, label="{label}"]' if label in ("after", "race") else (
            f' [label="{label}"]' if label else "")
        lines.append(f'    "{up}" -> "{down}"{style};')
    lines.append("}")
    return "\n".join(lines)


def _all(result: RunResult) -> list[Span]:
    return list(result.walk())


def gantt(result: RunResult) -> str:
    """A Mermaid Gantt chart of the run, times in milliseconds from the first start."""
    spans = [s for s in _all(result) if s.started is not None and s.ended is not None]
    origin = min((s.started for s in spans if s.started is not None), default=0.0)
    lines = ["gantt", f"    title {result.graph_name}", "    dateFormat x", "    axisFormat %S.%L"]
    for s in spans:
        assert s.started is not None and s.ended is not None
        start = round((s.started - origin) * 1000)
        end = max(start + 1, round((s.ended - origin) * 1000))
        tag = {"failed": "crit, ", "cancelled": "done, "}.get(s.status, "")
        lines.append(f"    {s.path.replace(':', '_')} : {tag}{start}, {end}")
    return "\n".join(lines)


def _span_dict(s: Span) -> dict[str, Any]:
    return {
        "name": s.name,
        "path": s.path,
        "status": s.status,
        "reason": s.reason,
        "started": s.started,
        "ended": s.ended,
        "duration": s.duration,
        "attempts": s.attempts,
        "error": exc_line(s.error) if s.error is not None else None,
        "output": _jsonable(s.output),
        "attributes": {k: _jsonable(v) for k, v in s.attributes.items()},
        "winner": s.winner,
        "children": [_span_dict(c) for c in s.children.values()],
    }


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        from ._inputs import converter

        try:
            out = converter.unstructure(value)
            json.dumps(out)
            return out
        except Exception:
            return repr(value)


def result_json(result: RunResult) -> str:
    return json.dumps({
        "run_id": result.run_id,
        "graph": result.graph_name,
        "status": result.status,
        "output": _jsonable(result.output),
        "failures": {k: exc_line(v) for k, v in result.failures.items()},
        "spans": [_span_dict(s) for s in result.spans.values()],
    }, indent=2)


def chrome_trace(result: RunResult) -> str:
    """Trace Event Format (complete events), one row per top-level step."""
    events: list[dict[str, Any]] = []
    rows: dict[str, int] = {}
    for s in _all(result):
        if s.started is None or s.ended is None:
            continue
        top = s.path.split("/")[0].split("[")[0]
        tid = rows.setdefault(top, len(rows) + 1)
        events.append({
            "name": s.path, "cat": s.status, "ph": "X", "pid": 1, "tid": tid,
            "ts": s.started * 1e6, "dur": (s.ended - s.started) * 1e6,
            "args": {"status": s.status, "reason": s.reason, "attempts": s.attempts},
        })
    events.extend({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                   "args": {"name": top}} for top, tid in rows.items())
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})
