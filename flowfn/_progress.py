"""What ``flowfn run`` shows: live progress while a run goes, a per-step table after.

Events arrive on the run's thread, thousands a second on a large graph. On a terminal
the display does not even listen to them: rich's refresh thread draws :class:`Progress`
a few times a second from the run's spans themselves. Otherwise :class:`PlainLog` writes
a line for each step that ends, so CI logs and pipes get readable text without escape
codes.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TextIO

import trio
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._errors import exc_line
from ._patterns import SubflowSpec
from ._result import current_run_var

if TYPE_CHECKING:
    from ._graph import Graph
    from ._result import Event, RunResult, Span

PLAIN_EVERY = 5.0  # seconds between two progress lines of one map in plain mode
MAX_ROWS = 40  # beyond this, the final table keeps the notable steps and sums up the rest
SLOWEST = 10  # succeeded steps kept in a collapsed table: the slowest ones
SHOW_RUNNING = 6  # names of running steps listed in the live display
SHOW_MAPS = 8  # maps drawn as progress bars (the latest ones)
STORED = "from the store"  # a resumed run's step that succeeded before


def count_steps(flow: Graph) -> int:
    """Steps a run of ``flow`` will settle, sub-workflows' steps included (map items not)."""
    total = len(flow.nodes)
    for n in flow.limit_checks:  # every sub-workflow is among them (precomputed)
        spec = n.step.container
        if isinstance(spec, SubflowSpec) and not n.mapped:
            total += count_steps(spec.graph)
    return total


def short_name(name: str, width: int = 60) -> str:
    """A graph's name fit for one line (a graph of many targets is named after all)."""
    return name if len(name) <= width else name[: width - 3] + "..."


class MapProgress:
    """Items of one mapped step: how many are known, running, ended, failed."""

    __slots__ = ("done", "failed", "known", "path", "retries", "running")

    def __init__(self, path: str, known: int = 0) -> None:
        self.path = path
        self.known = known  # items created so far (a streamed map learns them one by one)
        self.running = 0
        self.done = 0
        self.failed = 0
        self.retries = 0

    def total(self) -> int:
        return max(self.known, self.done + self.running)


_FINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})


class Census:
    """Where a run stands, counted from its spans."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.running: list[str] = []
        self.maps: list[MapProgress] = []

    def add(self, span: Span, pending: list[Span]) -> None:
        """Count ``span``; its sub-workflow members go on ``pending``, its items are
        summed up as one map."""
        status = span.status
        if status == "running":
            self.running.append(span.path)
        elif status != "pending":
            self.done += 1
            self.failed += status == "failed"
        children = span.children
        if not children:
            return
        members = list(children.values())  # one C-level copy: the run may add items
        if not members[0].name.endswith("]"):
            pending.extend(members)
            return
        progress = MapProgress(span.path, len(members))
        for item in members:
            item_status = item.status
            if item_status == "running":
                progress.running += 1
            elif item_status != "pending":
                progress.done += 1
                progress.failed += item_status == "failed"
        self.maps.append(progress)


class Progress:
    """The live display. It reads the run's spans when rich draws it, a few times a
    second, and is told nothing while the run goes (see :class:`SpanFinder`)."""

    def __init__(self, flow: Graph) -> None:
        self.name = short_name(flow.name)
        self.total = count_steps(flow)
        self.began = time.monotonic()
        self.spans: Mapping[str, Span] | None = None
        # Spans settle for good; the leading settled ones are counted once, here.
        self.settled = 0
        self.settled_census = Census()

    def finder(self) -> trio.abc.Instrument:
        """A trio instrument that hands this display the run's spans (see SpanFinder)."""
        return SpanFinder(self)

    def census(self) -> Census:
        spans = list(self.spans.values()) if self.spans is not None else []
        done = self.settled_census
        while self.settled < len(spans) and spans[self.settled].status in _FINAL:
            pending = [spans[self.settled]]
            for span in pending:  # grows while we go: members of sub-workflows
                done.add(span, pending)
            self.settled += 1
        census = Census()
        census.done, census.failed = done.done, done.failed
        census.maps = list(done.maps)
        pending = spans[self.settled:]
        for span in pending:
            census.add(span, pending)
        return census

    def __rich__(self) -> RenderableType:
        census = self.census()
        elapsed = time.monotonic() - self.began
        running = census.running
        waiting = max(0, self.total - census.done - len(running))
        head = Text.assemble(
            (self.name, "bold"), f"  {elapsed:.1f}s  ",
            (f"{census.done}/{self.total} steps done", "green"),
            f" · {len(running)} running · {waiting} waiting",
            (f" · {census.failed} failed", "red") if census.failed else "",
        )
        parts: list[RenderableType] = [head]
        if census.maps:
            grid = Table.grid(padding=(0, 1))
            for progress in census.maps[-SHOW_MAPS:]:
                total = progress.total()
                grid.add_row(progress.path, ProgressBar(
                    total=total or None, completed=progress.done, width=30), _items(progress))
            parts.append(grid)
        if running:
            more = len(running) - SHOW_RUNNING
            names = ", ".join(running[:SHOW_RUNNING]) + (f", +{more} more" if more > 0 else "")
            parts.append(Text(f"running: {names}", style="dim"))
        return Group(*parts)


class SpanFinder(trio.abc.Instrument):
    """Finds the run's spans in the context of the first step task trio spawns, then
    uninstalls itself: the display then costs the run nothing per step or event (an
    ``on_event`` callback would cost a call per event, a sixth of a no-op run's time)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        view = task.context.get(current_run_var)
        if view is None:  # trio's own tasks, the main task: not a step
            return
        while view.parent is not None:
            view = view.parent
        self.progress.spans = view.spans
        trio.lowlevel.remove_instrument(self)


class PlainLog:
    """Without a terminal: a line per step that ends (map items summed up, at most one
    progress line per map every few seconds), no escape codes."""

    def __init__(self, flow: Graph, out: TextIO) -> None:
        self.out = out
        self.maps: dict[str, MapProgress] = {}
        self.began = time.monotonic()
        self.last_line: dict[str, float] = {}

    def event(self, event: Event) -> None:
        kind, path, _, span = event
        if path[-1] == "]":
            self._item(kind, path, span)
        elif kind != "started":
            self._line(event)

    def _item(self, kind: str, path: str, span: Span) -> None:
        parent = path[: path.rindex("[")]
        progress = self.maps.get(parent)
        if progress is None:
            progress = self.maps[parent] = MapProgress(parent)
        if kind == "started":
            progress.running += 1
            return
        if kind == "retrying":
            progress.retries += 1
            return
        if span.started is not None:
            progress.running -= 1
        progress.done += 1
        progress.failed += kind == "failed"
        now = time.monotonic()
        if now - self.last_line.get(parent, self.began) >= PLAIN_EVERY:
            self.last_line[parent] = now
            self.out.write(f"  ...       {parent}  {_items(progress)}\n")

    def _line(self, event: Event) -> None:
        span = event.span
        word = {"finished": "done", "failed": "FAILED", "retrying": "retry"}.get(
            event.kind, event.kind)
        detail = _detail(span, retrying=event.kind == "retrying")
        progress = self.maps.get(event.step)
        if progress is not None:
            progress.known = len(span.children)
            detail = f"{_items(progress)}  {detail}".rstrip()
        line = f"  {word:<9} {event.step}"
        self.out.write(f"{line}  {detail}\n" if detail else f"{line}\n")


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
        reason = _succeeded(span)
        return _duration(span.duration) + (f"  ({reason})" if reason else "")
    return span.reason or ""


def _succeeded(span: Span) -> str:
    """What a succeeded step's row says: its reason, or that it never ran here (a
    resumed run read its output from the store)."""
    return span.reason or (STORED if span.started is None else "")


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
    """At most about MAX_ROWS rows: the notable steps (not plainly succeeded) and the
    slowest others, plus a line that says what was left out. Comprehensions over the
    spans, no call per span: a 10,000-step run must not wait for its table."""
    if len(rows) <= MAX_ROWS:
        return rows, ""
    notable = [s for s in rows if s.status != "succeeded" or s.attempts != 1
               or s.children or s.reason is not None]
    if notable:
        seen = {id(s) for s in notable}
        plain = [s for s in rows if id(s) not in seen]
    else:
        plain = rows
    took = [(s.ended or 0.0) - (s.started or 0.0) for s in plain]
    slow = [plain[i] for i in heapq.nlargest(SLOWEST, range(len(plain)), key=took.__getitem__)]
    counts: dict[str, int] = {}
    for s in notable[MAX_ROWS:]:
        counts[s.status] = counts.get(s.status, 0) + 1
    if len(plain) > len(slow):
        counts["succeeded"] = counts.get("succeeded", 0) + len(plain) - len(slow)
    keep = {id(s) for s in notable[:MAX_ROWS]} | {id(s) for s in slow}
    summary = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
    left = sum(counts.values())
    return [s for s in rows if id(s) in keep], f"... {left:,} more steps ({summary})"


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


def summary_table(result: RunResult) -> Text:
    """The per-step table: status, time, tries and detail; a map's items in one row.

    Laid out by hand rather than with ``rich.table.Table``, which measures every cell
    and takes milliseconds even for a dozen rows; long details run past the edge
    instead of wrapping, so each step stays one line.
    """
    rows, left_out = _kept(_rows(result.spans.values()))
    cells = [("step", "status", "time", "tries", "detail")]
    for span in rows:
        children = span.children
        detail = _succeeded(span) if span.status == "succeeded" else _detail(span)
        if children and _is_map(children):
            detail = map_summary(children) + (f" · {detail}" if detail else "")
        cells.append((span.path, span.status, _duration(span.duration),
                      str(span.attempts or ""), detail))
    width = [max(len(row[i]) for row in cells) for i in range(4)]
    text = Text(no_wrap=True, overflow="ignore")
    for i, (path, status, took, tries, detail) in enumerate(cells):
        head = "bold" if i == 0 else ""
        text.append(("\n" if i else "") + path.ljust(width[0]) + "  ", head)
        text.append(status.ljust(width[1]), head or _STYLE.get(status, ""))
        text.append(f"  {took:>{width[2]}}  {tries:>{width[3]}}  {detail}".rstrip(), head)
    if left_out:
        text.append("\n" + left_out, "dim")
    return text


def headline(result: RunResult, elapsed: float) -> Text:
    """``order_flow succeeded in 1.23s · run id 1f3a...``"""
    style = _STYLE.get(result.status, "")
    return Text.assemble((short_name(result.graph_name), "bold"), " ", (result.status, style),
                         f" in {elapsed:.2f}s · run id {result.run_id}")
