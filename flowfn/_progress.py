"""What ``flowfn run`` shows: live progress while a run goes, a per-step table after.

Events arrive on the run's thread, thousands a second on a large graph, so handling one
only updates counters; drawing happens elsewhere — on a terminal, rich's refresh thread
renders :class:`Progress` a few times a second; otherwise a plain line is written for
each step that ends (map items are summed up, with at most one progress line per map
every few seconds), so CI logs and pipes get readable text without escape codes.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TextIO

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._errors import exc_line
from ._patterns import SubflowSpec

if TYPE_CHECKING:
    from ._graph import Graph
    from ._result import Event, RunResult, Span

PLAIN_EVERY = 5.0  # seconds between two progress lines of one map in plain mode
MAX_ROWS = 40  # beyond this, the final table keeps the notable steps and sums up the rest
SLOWEST = 10  # succeeded steps kept in a collapsed table: the slowest ones
SHOW_RUNNING = 6  # names of running steps listed in the live display


def count_steps(flow: Graph) -> int:
    """Steps a run of ``flow`` will settle, sub-workflows' steps included (map items not)."""
    total = 0
    for n in flow.nodes:
        total += 1
        spec = n.step.container
        if isinstance(spec, SubflowSpec) and not n.mapped:
            total += count_steps(spec.graph)
    return total


class MapProgress:
    """Items of one mapped step: how many started, ended, failed."""

    __slots__ = ("done", "failed", "retries", "running", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span  # the map's own span: its children are every item known so far
        self.running = 0
        self.done = 0
        self.failed = 0
        self.retries = 0

    def total(self) -> int:
        known = len(self.span.children) if self.span is not None else 0
        return max(known, self.done + self.running)


class Progress:
    """Counts a run's events; renders itself (rich) or writes plain lines to ``out``."""

    def __init__(self, flow: Graph, *, out: TextIO | None = None) -> None:
        self.name = flow.name
        self.total = count_steps(flow)
        self.running: dict[str, Span] = {}  # steps (not map items) running now
        self.spans: dict[str, Span] = {}  # every step that has started, by path
        self.ended = 0
        self.failed = 0
        self.maps: dict[str, MapProgress] = {}
        self.began = time.monotonic()
        self.out = out  # plain mode: one line per ended step
        self.last_line: dict[str, float] = {}

    # --- events: on the run's thread, kept cheap -------------------------------------

    def event(self, event: Event) -> None:
        path = event.step
        if path[-1] == "]":
            self._item(event, path)
            return
        kind = event.kind
        if kind == "started":
            self.running[path] = self.spans[path] = event.span
            return
        if self.running.pop(path, None) is None and kind in ("retrying", "waiting"):
            return
        if kind == "retrying":  # still running: put it back
            self.running[path] = event.span
        else:
            self.ended += 1
            self.failed += kind == "failed"
        if self.out is not None:
            self._line(event)

    def _item(self, event: Event, path: str) -> None:
        parent = path[: path.rindex("[")]
        progress = self.maps.get(parent)
        if progress is None:
            progress = self.maps[parent] = MapProgress(self.spans.get(parent))
        kind = event.kind
        if kind == "started":
            progress.running += 1
            return
        if kind == "retrying":
            progress.retries += 1
            return
        if event.span.started is not None:
            progress.running -= 1
        progress.done += 1
        progress.failed += kind == "failed"
        if self.out is not None:
            now = time.monotonic()
            if now - self.last_line.get(parent, self.began) >= PLAIN_EVERY:
                self.last_line[parent] = now
                self.out.write(f"  ...       {parent}  {_items(progress)}\n")

    def _line(self, event: Event) -> None:
        assert self.out is not None
        span = event.span
        word = {"finished": "done", "failed": "FAILED", "retrying": "retry"}.get(
            event.kind, event.kind)
        detail = _detail(span, retrying=event.kind == "retrying")
        progress = self.maps.get(event.step)
        if progress is not None:
            detail = f"{_items(progress)}  {detail}".rstrip()
        line = f"  {word:<9} {event.step}"
        self.out.write(f"{line}  {detail}\n" if detail else f"{line}\n")

    # --- drawing: rich calls this from its refresh thread ------------------------------

    def __rich__(self) -> RenderableType:
        running = list(self.running)  # one C-level copy: safe against the run's thread
        maps = list(self.maps.items())
        elapsed = time.monotonic() - self.began
        waiting = max(0, self.total - self.ended - len(running))
        head = Text.assemble(
            (self.name, "bold"), f"  {elapsed:.1f}s  ",
            (f"{self.ended}/{self.total} steps done", "green"),
            f" · {len(running)} running · {waiting} waiting",
            (f" · {self.failed} failed", "red") if self.failed else "",
        )
        parts: list[RenderableType] = [head]
        if maps:
            grid = Table.grid(padding=(0, 1))
            for path, progress in maps:
                total = progress.total()
                grid.add_row(path, ProgressBar(total=total or None, completed=progress.done,
                                               width=30), _items(progress))
            parts.append(grid)
        if running:
            more = len(running) - SHOW_RUNNING
            names = ", ".join(running[:SHOW_RUNNING]) + (f", +{more} more" if more > 0 else "")
            parts.append(Text(f"running: {names}", style="dim"))
        return Group(*parts)


def _items(progress: MapProgress) -> str:
    text = f"{progress.done:,}/{progress.total():,} items"
    extras = [f"{progress.running:,} running" if progress.running else "",
              f"{progress.failed:,} failed" if progress.failed else "",
              f"{progress.retries:,} retries" if progress.retries else ""]
    return ", ".join([text, *filter(None, extras)])


def _detail(span: Span, *, retrying: bool = False) -> str:
    if span.error is not None:
        attempt = f"attempt {span.attempts}: " if span.attempts else ""
        return f"{attempt}{exc_line(span.error)}"
    if retrying:
        return ""
    if span.status == "succeeded":
        return _duration(span.duration) + (f"  ({span.reason})" if span.reason else "")
    return span.reason or ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms" if seconds < 0.1 else f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s"


# --- the table after the run ---------------------------------------------------------


def _rows(spans: Iterable[Span]) -> list[Span]:
    """Every step's span, sub-workflow members after their container; map items not."""
    out: list[Span] = []
    for span in spans:
        out.append(span)
        children = span.children
        if children and not _is_map(children):
            out.extend(_rows(children.values()))
    return out


def _is_map(children: Mapping[str, Span]) -> bool:
    return next(iter(children)).endswith("]")


def _kept(rows: list[Span]) -> tuple[list[Span], str]:
    """At most about MAX_ROWS rows: every notable step and the slowest others, plus a
    line that says what was left out."""
    if len(rows) <= MAX_ROWS:
        return rows, ""
    notable = {id(s) for s in rows
               if s.status != "succeeded" or s.attempts > 1 or s.children or s.reason}
    if len(notable) > MAX_ROWS:
        ordered = [s for s in rows if id(s) in notable][:MAX_ROWS]
        notable = {id(s) for s in ordered}
    plain = [s for s in rows if id(s) not in notable]
    slow = heapq.nlargest(SLOWEST, plain, key=lambda s: s.duration or 0.0)
    keep = notable | {id(s) for s in slow}
    left = [s for s in rows if id(s) not in keep]
    counts: dict[str, int] = {}
    for s in left:
        counts[s.status] = counts.get(s.status, 0) + 1
    summary = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
    return [s for s in rows if id(s) in keep], f"... {len(left):,} more steps ({summary})"


def map_summary(children: Mapping[str, Span]) -> str:
    """``1,000 items · 2 failed · p50 12ms · max 250ms`` for a map's item spans."""
    items = list(children.values())
    durations = [d for d in (s.duration for s in items) if d is not None]
    failed = sum(s.status == "failed" for s in items)
    parts = [f"{len(items):,} items"]
    if failed:
        parts.append(f"{failed:,} failed")
    others = len(items) - failed - sum(s.status == "succeeded" for s in items)
    if others:
        parts.append(f"{others:,} not run")
    if durations:
        parts.append(f"p50 {_duration(statistics.median(durations))}")
        parts.append(f"max {_duration(max(durations))}")
    return " · ".join(parts)


_STYLE = {"succeeded": "green", "failed": "bold red", "cancelled": "yellow",
          "skipped": "dim", "waiting": "cyan"}


def summary_table(result: RunResult) -> Table:
    """The per-step table: status, time, tries and detail; large maps in one row."""
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    for column in ("step", "status", "time", "tries", "detail"):
        table.add_column(column, no_wrap=column != "detail",
                         justify="right" if column in ("time", "tries") else "left")
    rows, left_out = _kept(_rows(result.spans.values()))
    for span in rows:
        children = span.children
        detail = (span.reason or "") if span.status == "succeeded" else _detail(span)
        if children and _is_map(children):
            detail = map_summary(children) + (f" · {detail}" if detail else "")
        table.add_row(span.path, Text(span.status, style=_STYLE.get(span.status, "")),
                      _duration(span.duration), str(span.attempts or ""), detail)
    if left_out:
        table.add_row(Text(left_out, style="dim"), "", "", "", "")
    return table


def headline(result: RunResult, elapsed: float) -> Text:
    """``order_flow succeeded in 1.23s · run id 1f3a...``"""
    style = _STYLE.get(result.status, "")
    return Text.assemble((result.graph_name, "bold"), " ", (result.status, style),
                         f" in {elapsed:.2f}s · run id {result.run_id}")
