"""Pictures and exports are valid for every step name and every run (DESIGN §7).

Mermaid text is checked line by line against the shapes flowfn writes (ids unique and
never a keyword, labels a plain word or quoted without raw quotes); DOT text is read back
by Graphviz itself (``dot -Tplain``) when it is installed; JSON is parsed strictly; the
Chrome trace is checked for slices that do not nest on a row.
"""

import enum
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import pytest
import trio

from flowfn import Backoff, Error, Graph, Outcome, each, graph, race, run, step, subflow

NASTY = ["a b", "a-b", "a_b", 'say "hi"', "end[1]", "end", "End", "x|y", "a\\b", "a\\",
         "graph", "subgraph", "<b>bold</b>", "#35;", "o-x", "1st", "π", "style", "p{q}",
         "(paren)", "semi;colon", "col:on", "tab\there", "title", "%%comment", "`tick`",
         "line\nbreak", "sub/load", "sub_load", "click me"]


def chain(names: list[str]) -> Any:
    """Steps named ``names``, each taking the previous one's output; the last is returned."""
    prev = None
    for name in names:
        if prev is None:
            async def first() -> int:
                return 1

            prev = step(first, name=name)
        else:
            async def nxt(x: Annotated[int, prev]) -> int:
                return x + 1

            prev = step(nxt, name=name)
    return prev


def nasty_flow() -> Graph:
    last = chain(NASTY)

    @step
    async def load() -> int:
        return 1

    inner = subflow(graph(load), name='sub "flow"')

    async def one() -> int:
        return 1

    contest = race(step(one, name="c 1"), step(one, name="c-1"), name="end race")

    @step
    async def finish(a: Annotated[int, last], b: Annotated[int, inner],
                     c: Annotated[int, contest]) -> int:
        return a + b + c

    return graph(finish)


ALL_NAMES = {*NASTY, "load", 'sub "flow"', "c 1", "c-1", "end race", "finish"}


# --- Mermaid ------------------------------------------------------------------------------

ID = r"[A-Za-z0-9_]+"
LABEL = r'(?:[A-Za-z_][A-Za-z0-9_]*|"[^"\n]*")'
NODE = re.compile(rf"\s*({ID})(\[\[|\[|\{{\{{)({LABEL})(\]\]|\]|\}}\}})")
SUBGRAPH = re.compile(rf"\s*subgraph ({ID}) \[({LABEL})\]")
EDGE = re.compile(rf"\s*({ID}) (-->|==>\|each\||-\.->\|after\||-\.->\|race\|) ({ID})")
KEYWORDS = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click",
            "linkstyle", "direction", "default"}


def decode(label: str) -> str:
    text = label[1:-1] if label.startswith('"') else label
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


def check_mermaid(text: str) -> dict[str, str]:
    """Every line is a node, subgraph, end or edge as flowfn writes them; ids are unique
    and no keyword; edges join declared ids. Returns id -> decoded label."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    labels: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    depth = 0
    for line in lines[1:]:
        if (m := NODE.fullmatch(line)) or (m := SUBGRAPH.fullmatch(line)):
            ident, label = m.group(1), m.group(3 if m.re is NODE else 2)
            assert ident not in labels, f"id {ident} declared twice"
            assert ident.lower() not in KEYWORDS
            labels[ident] = decode(label)
            depth += m.re is SUBGRAPH
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0
        elif m := EDGE.fullmatch(line):
            edges.append((m.group(1), m.group(3)))
        else:
            raise AssertionError(f"not a line flowfn writes: {line!r}")
    assert depth == 0
    for up, down in edges:
        assert up in labels and down in labels
    return labels


def test_mermaid_for_nasty_names() -> None:
    labels = check_mermaid(nasty_flow().to_mermaid())
    shown = {name.replace("\n", " ").replace("\t", " ") for name in ALL_NAMES}
    assert set(labels.values()) == shown | {'sub "flow"'}  # the cluster is titled too
    assert len(labels) == len(ALL_NAMES) + 1


def test_mermaid_ids_do_not_collide_after_sanitising() -> None:
    text = graph(chain(["a b", "a-b", "a_b", "a.b"])).to_mermaid()
    labels = check_mermaid(text)
    assert sorted(labels.values()) == ["a b", "a-b", "a.b", "a_b"]
    assert labels["a_b"] == "a_b"  # a plain name keeps itself as its id
    assert "a_b_2 --> a_b_3" in text


def test_mermaid_quotes_what_is_not_a_plain_word() -> None:
    text = graph(chain(['say "hi"', "end[1]", "end", "x|y"])).to_mermaid()
    check_mermaid(text)
    assert 'say__hi_["say #34;hi#34;"]' in text
    assert 'end_1_["end[1]"]' in text
    assert re.search(r'\n    (\w+)\["end"\]', text)
    assert '["x|y"]' in text


def test_mermaid_draws_subflows_as_clusters() -> None:
    @step
    async def load() -> int:
        return 1

    @step
    async def clean(rows: Annotated[int, load]) -> int:
        return rows

    users = subflow(graph(clean), name="users")

    @step
    async def report(u: Annotated[int, users]) -> int:
        return u

    text = graph(report).to_mermaid()
    check_mermaid(text)
    assert "\n".join([
        "    subgraph users_cluster [users]",
        "        users[[users]]",
        "        users_load[load]",
        "        users_clean[clean]",
        "        users_load --> users_clean",
        "    end",
    ]) in text
    assert "users --> report" in text


# --- DOT ----------------------------------------------------------------------------------

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def unquote(token: str) -> str:
    if not token.startswith('"'):
        return token
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), token[1:-1])


def dot_plain(text: str) -> tuple[list[str], int]:
    """Node labels and the edge count, as Graphviz reads ``text``."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz (dot) is not installed")
    out = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    labels, edges = [], 0
    for line in out.splitlines():
        tokens = TOKEN.findall(line)
        if tokens[0] == "node":
            labels.append(unquote(tokens[6]))
        edges += tokens[0] == "edge"
    return labels, edges


def test_dot_for_nasty_names() -> None:
    flow = nasty_flow()
    text = flow.to_dot()
    labels, edges = dot_plain(text)
    assert sorted(labels) == sorted(ALL_NAMES)
    expected = len(NASTY) - 1 + 3 + 2  # the chain, finish's three inputs, two contestants
    assert edges == expected
    assert '"say \\"hi\\"" [shape=box];' in text
    assert '"a\\\\b" [shape=box];' in text


def test_dot_quotes_make_one_node_per_step() -> None:
    labels, edges = dot_plain(graph(chain(['say "hi"', "x"])).to_dot())
    assert sorted(labels) == ['say "hi"', "x"] and edges == 1


def test_dot_draws_subflows_as_clusters() -> None:
    @step
    async def load() -> int:
        return 1

    users = subflow(graph(load), name="users")

    @step
    async def report(u: Annotated[int, users]) -> int:
        return u

    text = graph(report).to_dot()
    assert 'subgraph "cluster users/cluster" {' in text
    assert '"users/load" [shape=box, label="load"];' in text
    labels, edges = dot_plain(text)
    assert sorted(labels) == ["load", "report", "users"] and edges == 1


# --- Gantt --------------------------------------------------------------------------------

GANTT_WORDS = ("gantt", "title", "section", "dateformat", "axisformat", "tickinterval",
               "excludes", "includes", "todaymarker", "click", "acctitle", "accdescr")
TIME = r"(\d+|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})"
TASK = re.compile(rf"    ([^:;#%\n]+) : (?:crit, |done, )?{TIME}, {TIME}")


def millis(text: str) -> int:
    """A task time in milliseconds from the start: epoch ms, or a wall-clock time from
    2000-01-01 00:00 (runs of a minute or more, so that no time zone shifts the axis)."""
    if text.isdigit():
        return int(text)
    at = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f") - datetime(2000, 1, 1)
    return round(at.total_seconds() * 1000)


def check_gantt(text: str) -> tuple[str, list[tuple[str, int, int]]]:
    lines = text.splitlines()
    assert lines[0] == "gantt"
    assert lines[2] in ("    dateFormat x", "    dateFormat YYYY-MM-DD HH:mm:ss.SSS")
    assert lines[3].startswith("    axisFormat ")
    tasks = []
    for line in lines[4:]:
        m = TASK.fullmatch(line)
        assert m, f"not a task line: {line!r}"
        assert not m.group(1).lower().startswith(GANTT_WORDS), line
        assert m.group(2).isdigit() == (lines[2] == "    dateFormat x")
        tasks.append((m.group(1), millis(m.group(2)), millis(m.group(3))))
    return lines[3].split(" ", 5)[-1], tasks


def test_gantt_for_nasty_names() -> None:
    result = run(nasty_flow())
    _, tasks = check_gantt(result.to_mermaid_gantt())
    assert len(tasks) == len([s for s in result.walk() if s.started is not None])
    assert {"_title", "__comment", "col_on", "_click me"} <= {t[0] for t in tasks}


def flow_lasting(seconds: float) -> Graph:
    @step
    async def wait() -> None:
        await trio.sleep(seconds)

    return graph(wait)


@pytest.mark.parametrize(("seconds", "axis"), [
    (2, "%S.%L"), (59, "%S.%L"), (90, "%M:%S"), (3599, "%M:%S"), (2 * 3600, "%H:%M:%S"),
    (3 * 86400, "%j %H:%M"),
])
def test_gantt_axis_is_readable_for_the_run_length(flow_run: Any, seconds: float,
                                                   axis: str) -> None:
    result = flow_run(flow_lasting(seconds))
    got, tasks = check_gantt(result.to_mermaid_gantt())
    assert got == axis
    assert tasks == [("wait", 0, round(seconds * 1000))]


# --- JSON ---------------------------------------------------------------------------------


def refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


@dataclass
class Reading:
    value: float
    unit: str


class Level(enum.IntEnum):
    HIGH = 2


class Ratio(float):
    pass


def test_to_json_is_strict(flow_run: Any) -> None:
    loop: list[Any] = [1]
    loop.append(loop)

    @step
    async def measure() -> dict[str, Any]:
        return {"nan": math.nan, "inf": math.inf, "list": [1.5, -math.inf],
                "reading": Reading(math.nan, "m"), "ok": Reading(2.0, "s"),
                "object": object, "set": {1}, "loop": loop, 3: "int key",
                "enum": Level.HIGH, "subclass": Ratio(math.nan)}

    @step
    async def ratio(m: Annotated[dict[str, Any], measure]) -> float:
        from flowfn import current_span

        current_span().score = math.nan
        return math.inf

    text = flow_run(graph(ratio)).to_json()
    data = json.loads(text, parse_constant=refuse)
    out = data["spans"][0]["output"]
    assert out["nan"] == {"$repr": "nan"} and out["inf"] == {"$repr": "inf"}
    assert out["list"] == [1.5, {"$repr": "-inf"}]
    assert out["reading"] == {"value": {"$repr": "nan"}, "unit": "m"}
    assert out["ok"] == {"value": 2.0, "unit": "s"}
    assert out["object"] == {"$repr": "<class 'object'>"}
    assert out["set"] == {"$repr": "{1}"}
    assert out["loop"] == [1, {"$repr": "..."}]
    assert out["3"] == "int key"
    assert out["enum"] == 2 and out["subclass"] == {"$repr": "nan"}
    assert data["output"] == {"$repr": "inf"}
    assert data["spans"][1]["attributes"] == {"score": {"$repr": "nan"}}


# --- Chrome trace ---------------------------------------------------------------------------


def slices(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def check_nesting(trace: dict[str, Any]) -> None:
    """On every row (pid, tid), any two slices are disjoint or one contains the other."""
    rows: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for e in slices(trace):
        assert isinstance(e["ts"], int) and isinstance(e["dur"], int) and e["dur"] >= 0
        rows.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    for row, spans in rows.items():
        stack: list[tuple[int, int, str]] = []
        for start, end, name in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack:
                assert end <= stack[-1][1], f"row {row}: {name} overlaps {stack[-1][2]}"
            stack.append((start, end, name))


def rows_by_name(trace: dict[str, Any]) -> dict[str, int]:
    """slice name -> its row (tid)."""
    return {e["name"]: e["tid"] for e in slices(trace)}


def row_names(trace: dict[str, Any]) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def mapped(limit: str | None = None) -> Graph:
    @step
    async def numbers() -> list[int]:
        return [3, 1, 4, 1, 5, 9, 2, 6]

    @step(limit=limit)
    async def work(n: Annotated[int, each(numbers)]) -> int:
        await trio.sleep(n)  # items finish out of order
        return n

    return graph(work)


@pytest.mark.parametrize("options", [{"limits": {"api": 3}}, {"max_concurrency": 2}, {}])
def test_trace_map_items_nest_on_their_rows(flow_run: Any, options: dict[str, Any]) -> None:
    result = flow_run(mapped("api" if "limits" in options else None), **options)
    trace = json.loads(result.to_chrome_trace())
    check_nesting(trace)
    rows = rows_by_name(trace)
    names = row_names(trace)
    item_rows = {rows[f"work[{i}]"] for i in range(8)}
    assert rows["work"] not in item_rows
    assert all(rows["work"] < r for r in item_rows)  # under their parent
    assert {names[r] for r in item_rows} == {"work items"}
    if "limits" in options:
        assert len(item_rows) == 3  # as many rows as items run at once
    elif "max_concurrency" in options:
        assert len(item_rows) <= 2


def test_trace_race_contestants_and_subflow_children(flow_run: Any) -> None:
    @step
    async def fast() -> int:
        await trio.sleep(1)
        return 1

    @step
    async def slow() -> int:
        await trio.sleep(5)
        return 2

    first = race(fast, slow, name="first")

    @step
    async def load() -> int:
        await trio.sleep(2)
        return 3

    @step
    async def clean(rows: Annotated[int, load]) -> int:
        await trio.sleep(1)
        return rows

    users = subflow(graph(clean), name="users")

    @step
    async def report(a: Annotated[int, first], b: Annotated[int, users]) -> int:
        return a + b

    result = flow_run(graph(report))
    trace = json.loads(result.to_chrome_trace())
    check_nesting(trace)
    rows = rows_by_name(trace)
    assert rows["fast"] == rows["first"] + 1 and rows["slow"] == rows["first"] + 2
    assert rows["users/load"] == rows["users"] + 1
    assert rows["users/clean"] == rows["users"] + 2
    assert len(set(rows.values())) == len(rows)


def test_trace_retries_are_attempt_slices_inside_the_step(flow_run: Any) -> None:
    tries: list[int] = []

    @step(retries=2, backoff=Backoff(initial=1, factor=2))
    async def flaky() -> int:
        tries.append(1)
        await trio.sleep(1)
        if len(tries) < 3:
            raise ConnectionError("again")
        return 1

    @step
    async def numbers() -> list[int]:
        return [1, 2, 3]

    @step(retries=1, limit="one")
    async def item(n: Annotated[int, each(numbers)], f: Annotated[int, flaky]) -> int:
        await trio.sleep(n)
        return n

    result = flow_run(graph(item), limits={"one": 1})
    trace = json.loads(result.to_chrome_trace())
    check_nesting(trace)
    attempts = [e for e in slices(trace) if e["name"].startswith("flaky attempt")]
    assert [e["name"] for e in attempts] == [f"flaky attempt {n}" for n in (1, 2, 3)]
    assert len({e["tid"] for e in attempts} | {rows_by_name(trace)["flaky"]}) == 1
    assert attempts[0]["args"]["error"] == "ConnectionError: again"
    assert len({rows_by_name(trace)[f"item[{i}]"] for i in range(3)}) == 1  # limit 1


def test_trace_nested_maps_in_subflows_nest(flow_run: Any) -> None:
    result = flow_run(graph(subflow(mapped("api"), name="inner")), limits={"api": 2})
    trace = json.loads(result.to_chrome_trace())
    check_nesting(trace)
    rows = rows_by_name(trace)
    assert len({rows[f"inner/work[{i}]"] for i in range(8)}) == 2
    assert min(rows[f"inner/work[{i}]"] for i in range(8)) > rows["inner/work"] > rows["inner"]


# --- report() -----------------------------------------------------------------------------


def big_map(size: int, failing: set[int]) -> Graph:
    @step
    async def numbers() -> list[int]:
        return list(range(size))

    @step
    async def check(n: Annotated[int, each(numbers)]) -> int:
        await trio.sleep(n % 4)
        if n in failing:
            raise ValueError(f"bad item {n}")
        return n

    @step
    async def total(values: Annotated[list[Any], check]) -> int:
        return len(values)

    return graph(total)


def test_report_summarises_a_large_map(flow_run: Any) -> None:
    result = flow_run(big_map(2_000, set()))
    lines = result.report().splitlines()
    assert len(lines) == 5
    assert lines[3].split() == ["check[*]", "2000", "items:", "2000", "succeeded;", "p50",
                                "1.000s,", "max", "3.000s"]
    assert lines[2].split()[:2] == ["check", "succeeded"]


def test_report_lists_a_few_failed_items(flow_run: Any) -> None:
    @step
    async def numbers() -> list[int]:
        return list(range(50))

    @step
    async def check(n: Annotated[int, each(numbers)]) -> int:
        if n % 5 == 0:
            raise ValueError(f"bad item {n}")
        return n

    @step
    async def total(values: Annotated[list[Outcome[int]], check]) -> int:
        return len(values)

    report = flow_run(graph(total)).report()
    lines = report.splitlines()
    assert "50 items: 40 succeeded, 10 failed" in lines[3]
    failed = [line for line in lines
              if line.startswith("check[") and line.split()[1] == "failed"]
    assert [line.split()[0] for line in failed] == [f"check[{i}]" for i in (0, 5, 10, 15, 20)]
    assert failed[0].endswith("ValueError: bad item 0")
    assert "5 more failed items" in lines[-2]
    assert len(lines) == 11  # header, numbers, check, summary, 5 items, "more", total


def test_report_lists_every_item_of_a_small_map(flow_run: Any) -> None:
    result = flow_run(big_map(3, set()))
    lines = result.report().splitlines()
    assert [line.split()[0] for line in lines] == [
        "step", "numbers", "check", "check[*]", "check[0]", "check[1]", "check[2]", "total"]
    assert "3 items: 3 succeeded; p50 1.000s, max 2.000s" in lines[3]


def test_trace_rows_of_a_race_that_failed(flow_run: Any) -> None:
    @step
    async def one() -> int:
        await trio.sleep(1)
        raise ValueError("one")

    @step
    async def two() -> int:
        await trio.sleep(2)
        raise ValueError("two")

    both = race(one, two, name="both")

    @step
    async def after(got: Annotated[Outcome[int], both]) -> bool:
        return isinstance(got, Error)

    result = flow_run(graph(after))
    assert result.output is True
    trace = json.loads(result.to_chrome_trace())
    check_nesting(trace)
    rows = rows_by_name(trace)
    assert (rows["one"], rows["two"]) == (rows["both"] + 1, rows["both"] + 2)
