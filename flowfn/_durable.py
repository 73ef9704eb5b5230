"""A run's link to its store: what is written at the settle point, and what a resumed run
reads back.

The scheduler knows nothing of stores. A durable run gives it two things: a settle hook
(:meth:`Durable.settled`), which turns every settled step and map item into a
``StepRow`` for the run's group-commit writer, and a set of already-settled results by
graph path (:func:`restore`), which the scheduler feeds through its settle point instead
of running those steps. Outputs are JSON made from each step's *return annotation*
(``_codec``), never pickle; every output the store will have to hold is checked before
anything runs (:func:`check_storable`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, get_args
from weakref import WeakKeyDictionary, WeakSet

from ._cachekey import Uncacheable, cache_key, code_hash, source_hash
from ._codec import CodecError, decode, encode, storable, to_data
from ._errors import GraphError, InputError, Problem, def_line, exc_line
from ._graph import Graph, Node, plain_path
from ._inputs import InputSpec
from ._result import Form, RunResult, Span
from ._state import Failed, Skip, Waiting
from ._step import MISSING
from ._store import Form as StoredForm
from ._store import StepRow, Store, StoredRun, Writer
from ._types import EMPTY

_NONE: Any = type(None)


class Slot:
    """What the store needs to know of one node, found by its graph path."""

    __slots__ = ("_code", "annotation", "checkpoint", "item_annotation", "node", "nothing",
                 "nothing_item", "null_row", "path")

    def __init__(self, path: str, node: Node) -> None:
        self.path = path
        self.node = node
        self.annotation = node.output_type
        args = get_args(node.output_type) if node.mapped else ()
        self.item_annotation = args[0] if args else EMPTY
        self.checkpoint = bool(node.step.checkpoint)
        # ``-> None``: the output is stored as ``null`` with no encoder (most such steps)
        self.nothing = self.annotation is None or self.annotation is _NONE
        self.nothing_item = self.item_annotation is None or self.item_annotation is _NONE
        self._code: str | None = None
        self.null_row: StepRow | None = None  # see null()

    def null(self) -> StepRow:
        """The row of this step returning None on its first attempt (made once: the row
        of most steps that return nothing)."""
        if self.null_row is None:
            self.null_row = StepRow(self.path, "succeeded", "null", self.code, 1)
        return self.null_row

    @property
    def code(self) -> str:
        """The hash of the step's code (what ``result.stale`` compares), once per process."""
        if self._code is None:
            self._code = source_hash(self.node.step.fn)
        return self._code


# A graph does not change once built, and neither do its steps' code and annotations:
# its table of slots is made once, and its storability checked once (when it passes).
_tables: WeakKeyDictionary[Graph, dict[str, Slot]] = WeakKeyDictionary()
_storable: WeakSet[Graph] = WeakSet()


def slots(graph: Graph) -> dict[str, Slot]:
    """Every node of ``graph`` and of its sub-workflows, by graph path (do not change it)."""
    table = _tables.get(graph)
    if table is None:
        table = _tables[graph] = {path: Slot(path, node) for path, node in graph.walk()}
    return table


def _not_a(value: Any, annotation: Any) -> bool:
    """``value`` plainly is not of the (plain class) ``annotation``: stored, it could not
    be read back. Generic and union annotations are left to the encoder."""
    if not isinstance(annotation, type) or annotation is object:
        return False
    try:
        if annotation is float:
            return not isinstance(value, int | float) or isinstance(value, bool)
        return not isinstance(value, annotation)
    except TypeError:  # TypedDict, a Protocol: no isinstance check
        return False


def _split_item(path: str) -> tuple[str, bool]:
    """The slot of a path, and whether the path is a map item: ``fetch[3]`` -> (``fetch``,
    True); ``branch/step`` -> (itself, False); ``per[2]/step`` (a step inside one run of
    a mapped sub-workflow) -> (``per/step``, False)."""
    if "[" not in path:
        return path, False
    return plain_path(path), path.endswith("]")


def check_storable(graph: Graph, context: str, table: dict[str, Slot] | None = None) -> None:
    """One ``GraphError`` naming every step whose output a store could not hold."""
    if graph in _storable:
        return
    problems: list[Problem] = []
    known: dict[int, str | None] = {}  # by annotation id: most steps share a few types
    for path, slot in (table if table is not None else slots(graph)).items():
        node = slot.node
        if not slot.checkpoint or node.kind in ("race",):
            continue
        annotation = slot.item_annotation if node.mapped else slot.annotation
        if node.mapped and slot.annotation is EMPTY:
            annotation = EMPTY
        why = known.get(id(annotation), MISSING)
        if why is MISSING:
            why = known[id(annotation)] = storable(annotation)
        if why is None:
            continue
        step = node.step
        problems.append(Problem(def_line(step.fn, node.name, at=step.location), (
            f"step {path!r}: a store keeps every output as JSON, but {why}.",
            "Annotate the data it returns (-> list[Order]), or mark it "
            "@step(checkpoint=False) to keep its output in memory and run it again on "
            "resume (for clients and connections), or register a cattrs hook for the type.",
        )))
    if problems:
        raise GraphError(context, problems)
    _storable.add(graph)


def inputs_json(specs: Mapping[str, InputSpec], values: Mapping[str, Any], context: str) -> str:
    """The run's inputs as JSON (for the store and for ``resume``)."""
    data: dict[str, Any] = {}
    problems: list[str] = []
    defaults = {name: spec.default for name, spec in specs.items()
                if spec.default is not MISSING and name not in values}
    for name, value in sorted({**defaults, **values}.items()):  # same inputs, same JSON
        try:
            data[name] = to_data(value, specs[name].type if name in specs else EMPTY)
            json.dumps(data[name], allow_nan=False)
        except (CodecError, TypeError, ValueError):
            problems.append(f"{name}: a run with a store keeps its inputs as JSON, and "
                            f"{type(value).__name__} has no JSON form; pass data, or run "
                            "without a store")
    if problems:
        raise InputError(context, problems)
    return json.dumps(data, sort_keys=True, allow_nan=False, separators=(",", ":"))


def _encode_output(path: str, result: Any, annotation: Any) -> str | Failed:
    """A step's output as JSON text for its annotation, or the ``Failed`` saying why not."""
    if _not_a(result, annotation):
        return Failed(TypeError(
            f"step {path!r} returned {type(result).__name__} {result!r:.80}, but its "
            f"return annotation says {getattr(annotation, '__name__', annotation)}; a "
            "store keeps outputs by their annotation, so fix the one or the other"))
    try:
        return encode(result, annotation)
    except CodecError as exc:
        return Failed(CodecError([f"step {path!r} returned a value the store "
                                  "cannot hold: " + "; ".join(exc.problems)]))


class Durable:
    """The store side of one run: the settle hook, the cache, and the run's forms."""

    def __init__(self, store: Store, run_id: str, graph: Graph, *,
                 cache: str | None = None, table: dict[str, Slot] | None = None,
                 restored: set[str] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.slots = table if table is not None else slots(graph)
        self.refresh = cache == "refresh"
        self.writer: Writer | None = None
        # The span whose output check_output just encoded, and its row: the settle hook,
        # called next for the same span, queues that row.
        self._checked: Span | None = None
        self._row = StepRow("", "succeeded")
        self.restored = restored or set()  # paths fed back from their committed rows

    def _slot(self, path: str) -> tuple[Slot | None, bool]:
        """The slot of a step's path (or of a map item's: ``fetch[3]``)."""
        slot = self.slots.get(path)
        if slot is not None:
            return slot, False
        base, item = _split_item(path)
        return self.slots.get(base), item

    def settled(self, span: Span, result: Any) -> None:
        """The settle hook: queue the row of a settled step or map item."""
        writer = self.writer
        if writer is None:
            return
        if self._checked is span and type(result) is not Failed:
            self._checked = None  # the usual case: check_output made the row just now
            writer.add(self._row)
            return
        kind = type(result)
        if kind is Waiting or kind is Skip:
            return  # asked again (or re-evaluated) on resume
        path = span.path
        if kind is not Failed and span.started is None and path in self.restored:
            return  # read back from its row: rewriting it would lose its attempts and code hash
        slot, item = self._slot(path)
        if slot is None or not slot.checkpoint:
            return
        if kind is Failed:
            row = StepRow(path, "failed", None, slot.code, span.attempts or 1,
                          exc_line(result.error))
        else:
            try:
                text = encode(result, slot.item_annotation if item else slot.annotation)
            except CodecError:
                return
            row = StepRow(path, "succeeded", text, slot.code, span.attempts or 1)
        writer.add(row)

    def check_output(self, span: Span, result: Any) -> Any:
        """``result``, or a ``Failed`` naming the data path when the store could not hold
        it (DESIGN §4: such a value fails its step). For the settle point to call before
        it settles an output: the row is made here, and queued by the settle hook."""
        if self.writer is None or span.started is None:
            return result  # (a restored output never started: its row exists)
        slot = self.slots.get(span.path)
        if slot is not None and result is None and slot.nothing and span.attempts == 1 and (
                slot.checkpoint):
            self._checked = span  # the common case: a step with no output, run once
            self._row = slot.null_row or slot.null()
            return result
        return self._check(span, result)

    def _check(self, span: Span, result: Any) -> Any:
        """:meth:`check_output` for any step or map item, any output."""
        path = span.path
        slot, item = self._slot(path)
        if slot is None or not slot.checkpoint:
            return result
        if result is None and (slot.nothing_item if item else slot.nothing):
            text = "null"  # no encoder needed
        else:
            encoded = _encode_output(path, result,
                                     slot.item_annotation if item else slot.annotation)
            if isinstance(encoded, Failed):
                return encoded
            text = encoded
        self._checked = span
        self._row = StepRow(path, "succeeded", text, slot.code, span.attempts or 1)
        return result

    # --- cache ----------------------------------------------------------------------

    def cached(self, node: Node, span: Span, kwargs: Mapping[str, Any]) -> tuple[str | None, Any]:
        """``(key, output)`` of a ``@step(cache=True)`` call (a step, or one map item:
        ``span`` says which): the stored output on a hit, ``MISSING`` on a miss; key None
        when the call cannot be cached (the span says why)."""
        step = node.step
        code = code_hash(step.fn, version=getattr(step, "version", None))
        key = cache_key(f"{step.fn.__module__}.{step.fn.__qualname__}", code, kwargs)
        if isinstance(key, Uncacheable):
            span.reason = f"not cached: {key.reason}"
            return None, MISSING
        if self.refresh:
            return key, MISSING
        text = self.store.cache_get(key)
        if text is None:
            return key, MISSING
        try:
            return key, decode(text, self._output_type(node, span.path))
        except CodecError:
            return key, MISSING  # written for another return type: compute it again

    def remember(self, key: str, node: Node, value: Any, path: str | None = None) -> None:
        """Keep ``value`` under ``key``; ``path`` is the span's (a map item's, for one)."""
        try:
            text = encode(value, self._output_type(node, path or node.name))
        except CodecError:
            return
        self.store.cache_put(key, node.name, text)

    @staticmethod
    def _output_type(node: Node, path: str) -> Any:
        """The return annotation of one call: a map item's is the list's item type."""
        if node.mapped and _split_item(path)[1]:
            args = get_args(node.output_type)
            return args[0] if args else EMPTY
        return node.output_type

    # --- forms ----------------------------------------------------------------------

    def record_forms(self, forms: list[Form], stored: StoredRun | None) -> None:
        known = stored.forms if stored is not None else {}
        for form in forms:
            if form.path not in known:
                self.store.record_form(self.run_id, StoredForm(
                    form.path, form.title, form.schema, form.deadline))


def restore(graph: Graph, stored: StoredRun, rerun: Iterable[str] | None,
            context: str) -> tuple[dict[str, Any], list[str]]:
    """The stored successful outputs, read back into the current return types, by path;
    and the paths whose code changed since (stale). Steps to ``rerun`` and everything
    downstream of them are left out. One ``InputError`` lists every stored value that no
    longer fits its type."""
    table = slots(graph)
    settled: dict[str, Any] = {}
    stale: list[str] = []
    problems: list[str] = []
    for path, row in stored.steps.items():
        if row.status != "succeeded" or row.output_json is None:
            continue
        base, item = _split_item(path)
        slot = table.get(base)
        if slot is None or not slot.checkpoint:
            continue  # a step no longer in the graph
        annotation = slot.item_annotation if item else slot.annotation
        try:
            settled[path] = decode(row.output_json, annotation)
        except CodecError as exc:
            problems.extend(f"{path}: {p}" for p in exc.problems)
            continue
        if row.code_hash and row.code_hash != source_hash(slot.node.step.fn):
            stale.append(base)
    if problems:
        raise InputError(context, problems, noun="stored value")
    stale = sorted(set(stale))
    for path in _downstream(graph, list(rerun or ())):
        for key in [k for k in settled if _split_item(k)[0] == path
                    or _split_item(k)[0].startswith(path + "/")]:
            del settled[key]
    return settled, stale


def _downstream(graph: Graph, paths: list[str]) -> set[str]:
    """The given top-level steps (or ``branch/step`` paths) and everything after them."""
    out: set[str] = set()
    todo = [graph.by_name[p.partition("/")[0]] for p in paths
            if p.partition("/")[0] in graph.by_name]
    out.update(p for p in paths if "/" in p)
    while todo:
        node = todo.pop()
        if node.name in out:
            continue
        out.add(node.name)
        todo.extend(node.dependents)
    return out


def stored_answers(stored: StoredRun) -> tuple[dict[str, Any], dict[str, datetime]]:
    """The answers given in earlier resumes (as JSON data) and every form's deadline."""
    answers = {name: json.loads(f.answer_json) for name, f in stored.forms.items()
               if f.answer_json is not None}
    deadlines = {name: f.deadline for name, f in stored.forms.items()
                 if f.deadline is not None}
    return answers, deadlines


def flow_ref(flow: Any) -> str | None:
    """Where the flow can be imported from (``module:name``), for ``flowfn resume``."""
    module_name = getattr(getattr(flow, "step", None), "__module__", None)
    candidates = [getattr(flow, "__module__", None), module_name]
    nodes = getattr(flow, "nodes", None)
    if nodes:
        candidates.append(nodes[-1].step.fn.__module__)
    for name in candidates:
        module = sys.modules.get(name) if name else None
        if module is None:
            continue
        for attr, value in vars(module).items():
            if value is flow:
                where = name if name != "__main__" else getattr(module, "__file__", name)
                return f"{where}:{attr}"
    return None


def stored_result(graph: Graph, stored: StoredRun) -> RunResult:
    """A finished (or waiting) run as the store holds it: nothing runs."""
    table = slots(graph)
    spans: dict[str, Span] = {}
    for path, row in sorted(stored.steps.items(), key=lambda kv: kv[1].seq):
        span = _span_at(spans, path)
        span.status = "succeeded" if row.status == "succeeded" else "failed"
        span.attempts = row.attempts
        base, item = _split_item(path)
        slot = table.get(base)
        if row.output_json is not None and slot is not None:
            annotation = slot.item_annotation if item else slot.annotation
            try:
                span.output = decode(row.output_json, annotation)
            except CodecError:
                span.output = json.loads(row.output_json)
    output = None
    if stored.output_json is not None:
        try:
            output = decode(stored.output_json, graph.output_type)
        except CodecError:
            output = json.loads(stored.output_json)
    forms = [Form(f.name.rpartition("/")[2], f.name, f.title, f.schema, f.deadline)
             for f in stored.waiting]
    for form in forms:
        _span_at(spans, form.path).status = "waiting"
    status: Any = stored.status if stored.status != "running" else "cancelled"
    return RunResult(run_id=stored.run_id, status=status, output=output, spans=spans,
                     failures={}, graph_name=stored.graph_name, waiting=forms)


def _span_at(spans: dict[str, Span], path: str) -> Span:
    """The span at ``path`` in a tree of spans, created (with its parents) if missing."""
    parts = path.split("/")
    level = spans
    prefix = ""
    span: Span | None = None
    for i, part in enumerate(parts):
        base, item = _split_item(part)
        for name in ([base, part] if item else [part]):
            full = prefix + name
            span = level.get(name)
            if span is None:
                span = level[name] = Span(name, full)
            if name != part or i < len(parts) - 1:
                if not isinstance(span.children, dict):
                    span.children = {}
                level = span.children
        prefix += part + "/"
    assert span is not None
    return span
