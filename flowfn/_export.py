"""A finished run as data: strict JSON, a Chrome trace, and the per-step report table.

JSON: every value is either JSON as it is or marked as a repr, ``{"$repr": "nan"}`` —
never ``NaN`` or ``Infinity``, which strict parsers refuse. Chrome trace: Perfetto draws
slices on one row (one ``tid``) as a stack, so slices on a row must nest; overlapping map
items (under a ``limit=``) are spread over as many item rows as run at once, and map
items, race contestants and sub-workflow steps get rows right under their parent's.
Report: a 10,000-item map is one summary line, not 10,000 rows.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ._errors import exc_line
from ._inputs import converter
from ._span import Span


class Finished(Protocol):
    """What the exports read of a run's result (``_result.RunResult``, which sits above
    this module and calls it)."""

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def graph_name(self) -> str: ...
    @property
    def output(self) -> Any: ...
    @property
    def failures(self) -> Mapping[str, BaseException]: ...
    @property
    def spans(self) -> Mapping[str, Span]: ...
    def walk(self) -> Iterator[Span]: ...

REPR = "$repr"  # the key of a value exported as its repr: {"$repr": "nan"}


# --- JSON -----------------------------------------------------------------------------------


def _marked(value: Any) -> dict[str, str]:
    try:
        return {REPR: repr(value)}
    except Exception:
        return {REPR: f"<{type(value).__name__} object>"}


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or type(key) in (bool, int, float):
        return json.dumps(key)  # as json.dumps writes keys: "true", "1", "NaN"
    return repr(key)


def jsonable(value: Any, _path: frozenset[int] = frozenset()) -> Any:
    """``value`` as strict JSON data: JSON values as they are, data classes unstructured
    (as for inputs), NaN, infinities and everything else marked as a repr."""
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return value
    if kind is float:
        return value if math.isfinite(value) else _marked(value)
    if kind in (list, tuple, dict):
        if id(value) in _path:
            return {REPR: "..."}  # a container that holds itself
        inner = _path | {id(value)}
        if kind is dict:
            return {_key(k): jsonable(v, inner) for k, v in value.items()}
        return [jsonable(v, inner) for v in value]
    if isinstance(value, str):  # a subclass: StrEnum; slicing gives the plain str
        return value[:]
    if isinstance(value, bool | int | float):  # IntEnum, numpy.float64
        base = next(t for t in (bool, int, float) if isinstance(value, t))
        return jsonable(base(value), _path)
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        try:  # a numpy scalar: its Python value
            return jsonable(value.item(), _path)
        except Exception:
            return _marked(value)

    try:
        plain = converter.unstructure(value)
    except Exception:
        return _marked(value)
    if plain is value or type(plain) not in (str, int, float, bool, list, tuple, dict):
        return _marked(value)
    return jsonable(plain, _path)


def _strict(value: Any) -> Any:
    try:
        return jsonable(value)
    except RecursionError:
        return _marked(value)


def _span_dict(s: Span) -> dict[str, Any]:
    return {
        "name": s.name,
        "path": s.path,
        "status": s.status,
        "reason": s.reason,
        "started": _strict(s.started),
        "ended": _strict(s.ended),
        "duration": _strict(s.duration),
        "attempts": s.attempts,
        "error": exc_line(s.error) if s.error is not None else None,
        "output": _strict(s.output),
        "attributes": {k: _strict(v) for k, v in s.attributes.items()},
        "winner": s.winner,
        "children": [_span_dict(c) for c in s.children.values()],
    }


def result_json(result: Finished) -> str:
    return json.dumps({
        "run_id": result.run_id,
        "graph": result.graph_name,
        "status": result.status,
        "output": _strict(result.output),
        "failures": {k: exc_line(v) for k, v in result.failures.items()},
        "spans": [_span_dict(s) for s in result.spans.values()],
    }, indent=2, allow_nan=False)


# --- the span tree, with race contestants under their race ---------------------------------


def _is_map(span: Span) -> bool:
    first = next(iter(span.children), None)
    return first is not None and first.startswith(span.name + "[") and first.endswith("]")


def _contestants(level: Mapping[str, Span]) -> dict[str, list[Span]]:
    """Race name -> its contestants' spans, among the spans of one graph.

    A result does not keep its graph, so contestants are recognised by what the race
    left on them: the winner's name on the race and ``lost the race 'r' ...`` on the
    others, or, when all failed, their errors in the race's ``ExceptionGroup``. A
    contestant that failed before another won is not recognised: it keeps a top-level row.
    """
    owned: dict[str, list[Span]] = {}
    for race in level.values():
        errors = race.error.exceptions if isinstance(race.error, BaseExceptionGroup) else ()
        if race.winner is None and not errors:
            continue
        lost = f"lost the race {race.name!r} to "
        owned[race.name] = [s for s in level.values() if s is not race and (
            s.name == race.winner
            or (s.reason is not None and s.reason.startswith(lost))
            or (s.error is not None and any(s.error is e for e in errors)))]
    return owned


def _tree(level: Mapping[str, Span]) -> list[tuple[Span, list[Any]]]:
    """(span, children) pairs of one graph's spans, contestants moved under their race."""
    owned = _contestants(level)
    moved = {id(s) for spans in owned.values() for s in spans}
    out: list[tuple[Span, list[Any]]] = []
    for span in level.values():
        if id(span) in moved:
            continue
        kids = _tree(span.children) if span.children else []
        kids += [(s, _tree(s.children)) for s in owned.get(span.name, ())]
        out.append((span, kids))
    return out


# --- Chrome trace ---------------------------------------------------------------------------


def _us(t: float) -> int:
    # Whole microseconds from one rounding of each time: rounding is monotonic, so slices
    # that nest (or follow each other) in seconds still do in microseconds.
    return round(t * 1e6)


class _Trace:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.rows = 0

    def row(self, name: str) -> int:
        self.rows += 1
        tid = self.rows
        self.events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                            "args": {"name": name}})
        self.events.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid,
                            "args": {"sort_index": tid}})
        return tid

    def slices(self, s: Span, tid: int) -> None:
        """The span's slice, and one slice per attempt inside it when it was retried."""
        if s.started is None or s.ended is None:
            return
        start, end = _us(s.started), _us(s.ended)
        self.events.append({
            "name": s.path, "cat": s.status, "ph": "X", "pid": 1, "tid": tid,
            "ts": start, "dur": end - start,
            "args": {"status": s.status, "reason": s.reason, "attempts": s.attempts},
        })
        log = s.attempt_log
        for a in log if len(log) > 1 else ():
            a_start = min(max(_us(a.started), start), end)
            a_end = min(max(_us(a.ended), a_start), end)
            self.events.append({
                "name": f"{s.path} attempt {a.number}", "cat": s.status, "ph": "X",
                "pid": 1, "tid": tid, "ts": a_start, "dur": a_end - a_start,
                "args": {"error": exc_line(a.error) if a.error is not None else None},
            })

    def place(self, span: Span, kids: list[tuple[Span, list[Any]]]) -> None:
        """The span on a row of its own, then its children's rows."""
        if span.started is not None and span.ended is not None:  # never started: no row
            self.slices(span, self.row(span.path))
        if _is_map(span):
            self.pack(span, [k for k in kids if not k[1]])
            kids = [k for k in kids if k[1]]
        for kid, grandkids in kids:
            self.place(kid, grandkids)

    def pack(self, span: Span, items: list[tuple[Span, list[Any]]]) -> None:
        """Map items on as few rows as run at once: an item joins the row that has been
        free the longest, or a new row when every row is busy at its start."""
        timed = sorted((s for s, _ in items if s.started is not None and s.ended is not None),
                       key=lambda s: (s.started, s.ended))
        free: list[tuple[float, int]] = []  # (when the row is free, tid)
        for s in timed:
            assert s.started is not None and s.ended is not None
            if free and free[0][0] <= s.started:
                _, tid = heapq.heappop(free)
            else:
                tid = self.row(f"{span.path} items")
            self.slices(s, tid)
            heapq.heappush(free, (s.ended, tid))


def chrome_trace(result: Finished) -> str:
    """Trace Event Format (complete events): a row per step, rows of items under maps."""
    trace = _Trace()
    trace.events.append({"name": "process_name", "ph": "M", "pid": 1,
                         "args": {"name": result.graph_name}})
    for span, kids in _tree(result.spans):
        trace.place(span, kids)
    return json.dumps({"traceEvents": trace.events, "displayTimeUnit": "ms"},
                      allow_nan=False)


# --- report ---------------------------------------------------------------------------------

SHOW_ITEMS = 10  # maps up to this size list every item in the report
SHOW_FAILED = 5  # larger maps list this many failed items
_STATUS_ORDER = ("succeeded", "failed", "cancelled", "skipped", "waiting", "running",
                 "pending")


def _seconds(d: float | None) -> str:
    return "" if d is None else f"{d:.3f}s"


def _map_summary(span: Span) -> str:
    items = list(span.children.values())
    counts = dict.fromkeys(_STATUS_ORDER, 0)
    for s in items:
        counts[s.status] = counts.get(s.status, 0) + 1
    text = f"{len(items)} items: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    times = sorted(s.duration for s in items if s.duration is not None)
    if times:
        text += f"; p50 {_seconds(times[(len(times) - 1) // 2])}, max {_seconds(times[-1])}"
    return text


def _report_spans(spans: Mapping[str, Span]) -> Iterator[Span | tuple[str, str]]:
    """Spans in report order; a large map's items become a summary and its failures."""
    for span in spans.values():
        yield span
        if not _is_map(span):
            yield from _report_spans(span.children)
            continue
        yield (f"{span.path}[*]", _map_summary(span))
        if len(span.children) <= SHOW_ITEMS:
            yield from _report_spans(span.children)
            continue
        failed = {k: s for k, s in span.children.items() if s.status == "failed"}
        yield from _report_spans(dict(list(failed.items())[:SHOW_FAILED]))
        if len(failed) > SHOW_FAILED:
            yield (f"{span.path}[*]", f"{len(failed) - SHOW_FAILED} more failed items: see "
                                      f"result.span({span.path!r}).children")


def run_report(result: Finished) -> str:
    """A per-step table: status, duration, attempts and why; maps summarised."""
    rows = [("step", "status", "time", "tries", "detail")]
    for entry in _report_spans(result.spans):
        if isinstance(entry, tuple):
            rows.append((entry[0], "", "", "", entry[1]))
            continue
        span = entry
        detail = exc_line(span.error) if span.error is not None else (span.reason or "")
        rows.append((span.path, span.status, _seconds(span.duration),
                     str(span.attempts or ""), detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
