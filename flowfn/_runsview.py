"""What ``flowfn runs`` and ``flowfn resume`` print about stored runs, as plain text.

Everything here reads a :class:`~flowfn._store.StoredRun` (the store's own record) and
returns text; nothing imports the flow. So ``flowfn runs`` works on any store, even when
the code of its flows is not at hand, and its output is the same on a terminal, in a
pipe or in a test.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from ._store import Form, StepRow, StoredRun

OUTPUT_WIDTH = 60  # characters of a step's output shown in a run's table
MAX_ROWS = 40  # steps listed for one run; the others are counted


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, in one unit."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def when(stamp: float | dt.datetime) -> str:
    """A UTC time to the minute: ``2026-12-05 21:01 UTC``."""
    if not isinstance(stamp, dt.datetime):
        stamp = dt.datetime.fromtimestamp(stamp, dt.UTC)
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned lines (the last column is not padded)."""
    if not rows:
        return []
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, width, strict=False)),
                       row[-1]]).rstrip() for row in rows]


# --- forms ---------------------------------------------------------------------------


def form_label(form: Form) -> str:
    """``legal (Legal review)``; the name alone when the title is the name."""
    return form.name if form.title in ("", form.name) else f"{form.name} ({form.title})"


def sketch(schema: Any) -> str:
    """A JSON Schema in one line: ``{"approved": boolean, "note"?: string}`` (the
    required fields first, in their order: a stored schema's properties are sorted)."""
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        return str(schema["$ref"]).rpartition("/")[2]
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(sketch(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        properties = schema["properties"]
        required = [n for n in schema.get("required", ()) if n in properties]
        optional = [n for n in properties if n not in required]
        fields = [f"{json.dumps(n)}: {sketch(properties[n])}" for n in required]
        fields += [f"{json.dumps(n)}?: {sketch(properties[n])}" for n in optional]
        return "{" + ", ".join(fields) + "}"
    if kind == "array":
        return f"[{sketch(schema.get('items'))}]"
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    return str(kind) if kind else "any"


def resume_command(run_id: str, store: str, form: Form) -> str:
    """The exact command line that answers ``form`` from a JSON file."""
    answer = f"{form.name}=@{form.name.replace('/', '_')}.json"
    return shlex.join(["flowfn", "resume", run_id, "--store", store, "--answer", answer])


def waiting_text(run_id: str, graph_name: str, forms: Iterable[Form],
                 store: str | None) -> str:
    """A waiting run's forms: name, title, deadline, the answer's shape and the command
    that answers each (without a store: how to keep the run so it can be answered)."""
    forms = list(forms)
    plural = "s" * (len(forms) != 1)
    lines = [f"{graph_name} is waiting for {len(forms)} answer{plural} (run {run_id}):"]
    for form in forms:
        due = f", due {when(form.deadline)}" if form.deadline is not None else ""
        lines.append(f"  {form_label(form)}{due}")
        lines.append(f"    answer: {sketch(form.schema)}")
        if store is not None:
            lines.append(f"    {resume_command(run_id, store, form)}")
    if store is None:
        lines.append("Nothing keeps this run: run it with --store FILE.db to answer its forms "
                     "later with flowfn resume.")
    return "\n".join(lines)


# --- runs ------------------------------------------------------------------------------


def runs_table(runs: Sequence[StoredRun], now: float) -> str:
    """One line per run: id, graph, status, age, and the forms a waiting run waits for."""
    rows = [("run id", "graph", "status", "age", "waiting for")]
    for run in runs:
        forms = ", ".join(form_label(f) for f in run.waiting) if run.status == "waiting" else ""
        rows.append((run.run_id, run.graph_name, run.status, age(now - run.created_at), forms))
    return "\n".join(columns(rows))


def run_text(run: StoredRun, store: str, now: float) -> str:
    """One run: its record, its stored steps, its forms with their JSON Schema."""
    lines = [f"run {run.run_id}: graph {run.graph_name}, {run.status}",
             f"  flow     {run.flow_ref or '(unknown: started from code flowfn cannot import)'}",
             f"  started  {when(run.created_at)} ({age(now - run.created_at)} ago)",
             f"  updated  {when(run.updated_at)} ({age(now - run.updated_at)} ago)",
             f"  inputs   {_short(run.inputs_json, 200)}"]
    if run.output_json is not None:
        lines.append(f"  output   {_short(run.output_json, 200)}")
    lines.append("")
    if run.steps:
        lines.extend(columns(step_rows(run.steps.values())))
    else:
        lines.append("no step stored yet")
    waiting, answered = run.waiting, [f for f in run.forms.values() if f.answer_json]
    if waiting:
        lines.append(f"\nwaiting for {len(waiting)} answer{'s' * (len(waiting) != 1)}:")
        for form in waiting:
            lines.extend(_form_lines(form))
            lines.append(f"    {resume_command(run.run_id, store, form)}")
    if answered:
        lines.append("\nanswered:")
        lines.extend(f"  {form_label(f)}: {_short(f.answer_json or '', OUTPUT_WIDTH)}"
                     for f in answered)
    return "\n".join(lines)


def _form_lines(form: Form) -> list[str]:
    due = f", due {when(form.deadline)}" if form.deadline is not None else ""
    schema = json.dumps(form.schema, indent=2, ensure_ascii=False).splitlines()
    return [f"  {form_label(form)}{due}", "    schema:", *(f"      {s}" for s in schema)]


def step_rows(steps: Iterable[StepRow]) -> list[tuple[str, str, str, str]]:
    """The table of stored steps in commit order; a map's items summed up on its row."""
    items: dict[str, list[StepRow]] = {}
    plain: list[StepRow] = []
    for row in steps:
        base, bracket, _ = row.path.rpartition("[")
        if bracket and row.path.endswith("]") and "/" not in row.path[len(base):]:
            items.setdefault(base, []).append(row)
        else:
            plain.append(row)
    rows = [("step", "status", "tries", "output")]
    for row in plain:
        if row.status == "succeeded":
            detail = _short(row.output_json or "", OUTPUT_WIDTH)
        else:
            detail = row.error or ""
        mapped = items.pop(row.path, None)
        if mapped is not None:
            detail = f"{_items(mapped)} · {detail}"
        rows.append((row.path, row.status, str(row.attempts), detail))
    for base, mapped in items.items():  # a map whose own row is not stored yet
        rows.append((base, "unfinished", "", f"{_items(mapped)} stored"))
    return _capped(rows)


def _capped(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """At most MAX_ROWS steps: every one that did not succeed, then the first others;
    a last row says how many were left out."""
    if len(rows) <= MAX_ROWS + 1:
        return rows
    head, body = rows[0], rows[1:]
    notable = [r for r in body if r[1] != "succeeded"][:MAX_ROWS]
    room = MAX_ROWS - len(notable)
    keep = set(map(id, notable)) | set(map(id, [r for r in body if r[1] == "succeeded"][:room]))
    kept = [r for r in body if id(r) in keep]
    return [head, *kept, (f"... {len(body) - len(kept):,} more steps", "", "", "")]


def _items(rows: list[StepRow]) -> str:
    failed = sum(r.status == "failed" for r in rows)
    return f"{len(rows):,} items" + (f", {failed:,} failed" if failed else "")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
