"""``flowfn run --store``, ``flowfn runs`` and ``flowfn resume`` as a user runs them.

One scenario goes through real processes on real files with a real SQLite store: a run
that waits for two answers, listed, answered badly, then answered one at a time from
separate processes (one of them in another directory). The messages are checked
in-process through click's runner, which runs the same command object.
"""

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest
from test_cli import flowfn_cmd, invoke

import flowfn
from flowfn import SQLiteStore, ask, graph, run, step

ROOT = Path(flowfn.__file__).resolve().parent.parent

REVIEW = '''
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from flowfn import ask, each, graph, step


@dataclass
class Decision:
    approved: bool
    reviewer: str
    note: str = ""


legal = ask("legal", Decision, title="Legal review", deadline=timedelta(hours=72))
finance = ask("finance", Decision, title="Finance sign-off")


@step
def pages(n: int) -> list[int]:
    return list(range(n))


@step
def scan(page: Annotated[int, each(pages)]) -> int:
    return page * 10


@step
def decide(legal: Decision, finance: Decision, scan: list[int]) -> dict:
    return {"approved": legal.approved and finance.approved,
            "by": [legal.reviewer, finance.reviewer], "scanned": sum(scan)}


flow = graph(decide)
'''

COMMAND = "flowfn resume contract-42 --store runs.db --answer {0}=@{0}.json"




def stored(folder: Path) -> flowfn.SQLiteStore:
    return SQLiteStore(folder / "runs.db")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts the flow's folder first
    (tmp_path / "review.py").write_text(REVIEW)
    return tmp_path


@pytest.fixture
def waiting(in_tmp: Path) -> Path:
    """A store with run contract-42 waiting for both answers."""
    done = invoke("run", "review.py:flow", "-i", "n=3", "--store", "runs.db",
                  "--run-id", "contract-42")
    assert done.exit_code == 0, done.stderr
    return in_tmp


# --- the whole story, in separate processes --------------------------------------------


def test_wait_list_refuse_answer_and_finish_across_processes(tmp_path: Path) -> None:
    (tmp_path / "review.py").write_text(REVIEW)
    began = flowfn_cmd("run", "review.py:flow", "-i", "n=3", "--store", "runs.db",
                       "--run-id", "contract-42", cwd=tmp_path)
    assert began.returncode == 0, began.stderr
    assert began.stdout == ""
    assert re.search(
        r"decide is waiting for 2 answers \(run contract-42\):\n"
        r"  legal \(Legal review\), due \d{4}-\d\d-\d\d \d\d:\d\d UTC\n"
        r'    answer: \{"approved": boolean, "reviewer": string, "note"\?: string\}\n'
        f"    {re.escape(COMMAND.format('legal'))}\n"
        r"  finance \(Finance sign-off\)\n"
        r'    answer: \{"approved": boolean, "reviewer": string, "note"\?: string\}\n'
        f"    {re.escape(COMMAND.format('finance'))}\n$", began.stderr), began.stderr

    listed = flowfn_cmd("runs", "--store", "runs.db", "--status", "waiting", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.fullmatch(
        r"run id +graph +status +age +waiting for\n"
        r"contract-42 +decide +waiting +\d+s +legal \(Legal review\), finance \(Finance "
        r"sign-off\)\n", listed.stdout), listed.stdout

    (tmp_path / "legal.json").write_text('{"approved": "maybe", "note": 3}')
    refused = flowfn_cmd("resume", "contract-42", "--store", "runs.db", "--answer",
                         "legal=@legal.json", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == (
        "3 bad answers for flowfn resume contract-42\n"
        "  legal.approved: invalid value for type, expected bool (got 'maybe')\n"
        "  legal.reviewer: required field missing\n"
        "  legal.note: invalid value for type, expected str (got 3)\n"
    )
    run_row = stored(tmp_path).load_run("contract-42")
    assert run_row is not None and run_row.status == "waiting"
    assert [f.answer_json for f in run_row.forms.values()] == [None, None]

    (tmp_path / "legal.json").write_text('{"approved": true, "reviewer": "kim"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    first = flowfn_cmd("resume", "contract-42", "--store", "../runs.db", "--answer",
                       "legal=@../legal.json", cwd=elsewhere)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert "decide is waiting for 1 answer (run contract-42):\n  finance" in first.stderr

    last = flowfn_cmd("resume", "contract-42", "--store", "runs.db", "--answer",
                      'finance={"approved": true, "reviewer": "bo"}', cwd=tmp_path)
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout) == {"approved": True, "by": ["kim", "bo"], "scanned": 30}
    assert "decide succeeded in" in last.stderr
    assert stored(tmp_path).load_run("contract-42").status == "succeeded"  # type: ignore[union-attr]


# --- what the commands print, in-process ------------------------------------------------


def test_one_run_shows_its_steps_and_form_schemas(waiting: Path) -> None:
    shown = invoke("runs", "--store", "runs.db", "contract-42")
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout
    assert text.startswith("run contract-42: graph decide, waiting\n"
                           f"  flow     {waiting.resolve() / 'review.py'}:flow\n")
    assert '  inputs   {"n":3}\n' in text
    assert re.search(r"step +status +tries +output\n"
                     r"pages +succeeded +1 +\[0,1,2\]\n"
                     r"scan +succeeded +1 +3 items · \[0,10,20\]\n", text), text
    assert "waiting for 2 answers:\n  legal (Legal review), due " in text
    assert '    schema:\n      {\n        "title": "Decision",\n' in text  # as declared
    assert '"additionalProperties": false' in text
    assert f"    {COMMAND.format('finance')}\n" in text


def test_the_run_is_kept_with_its_absolute_path_and_resumes_from_anywhere(
        waiting: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = stored(waiting).load_run("contract-42")
    assert row is not None and row.flow_ref == f"{waiting.resolve() / 'review.py'}:flow"
    (waiting / "sub").mkdir()
    monkeypatch.chdir(waiting / "sub")
    done = invoke("resume", "contract-42", "--store", "../runs.db",
                  "--answer", 'legal={"approved": true, "reviewer": "kim"}',
                  "--answer", 'finance={"approved": false, "reviewer": "bo"}')
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"approved": False, "by": ["kim", "bo"],
                                       "scanned": 30}
    listed = invoke("runs", "--store", "../runs.db")
    assert re.fullmatch(r"run id +graph +status +age +waiting for\n"
                        r"contract-42 +decide +succeeded +\d+s\n", listed.stdout)
    assert invoke("runs", "--store", "../runs.db", "--status", "waiting").stdout == (
        "no waiting runs in '../runs.db'\n")


def test_a_module_target_is_kept_as_the_module(in_tmp: Path) -> None:
    done = invoke("run", "review:flow", "-i", "n=1", "--store", "runs.db", "--run-id", "m")
    assert done.exit_code == 0, done.stderr
    row = stored(in_tmp).load_run("m")
    assert row is not None and row.flow_ref == "review:flow"


def test_a_repeated_answer_keeps_the_first(waiting: Path) -> None:
    first = invoke("resume", "contract-42", "--store", "runs.db",
                   "--answer", 'legal={"approved": true, "reviewer": "kim"}')
    assert first.exit_code == 0, first.stderr
    again = invoke("resume", "contract-42", "--store", "runs.db",
                   "--answer", 'legal={"approved": false, "reviewer": "ann"}')
    assert again.exit_code == 0, again.stderr
    assert again.stderr.startswith(
        "form 'legal' of run 'contract-42' was answered before; it keeps that answer: "
        '{"approved":true,"reviewer":"kim","note":""}\n')


def test_a_waiting_run_without_a_store_says_how_to_keep_it(in_tmp: Path) -> None:
    done = invoke("run", "review.py:flow", "-i", "n=1", "--run-id", "r")
    assert done.exit_code == 0, done.stderr
    assert done.stderr.endswith(
        "decide is waiting for 2 answers (run r):\n"
        "  legal (Legal review), due " + done.stderr.split(", due ")[1].split("\n")[0] + "\n"
        '    answer: {"approved": boolean, "reviewer": string, "note"?: string}\n'
        "  finance (Finance sign-off)\n"
        '    answer: {"approved": boolean, "reviewer": string, "note"?: string}\n'
        "Nothing keeps this run: run it with --store FILE.db to answer its forms later "
        "with flowfn resume.\n")


def test_a_failed_run_is_resumed_once_its_cause_is_fixed(in_tmp: Path) -> None:
    (in_tmp / "flaky.py").write_text(textwrap.dedent("""
        from pathlib import Path
        from flowfn import graph, step

        @step
        def first() -> int:
            return 1

        @step
        def second(first: int) -> int:
            if not Path("ready").exists():
                raise RuntimeError("not ready")
            return first + 1

        flow = graph(second)
    """))
    failed = invoke("run", "flaky.py:flow", "--store", "runs.db", "--run-id", "f")
    assert failed.exit_code == 1
    assert "step 'second' failed on attempt 1: RuntimeError: not ready" in failed.stderr
    shown = invoke("runs", "--store", "runs.db", "f").stdout
    assert re.search(r"first +succeeded +1 +1\nsecond +failed +1 +RuntimeError: not ready\n",
                     shown), shown
    (in_tmp / "ready").touch()
    done = invoke("resume", "f", "--store", "runs.db")
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "2\n"
    assert re.search(r"\n  done +first +\(from the store\)\n", done.stderr)  # not run again
    assert re.search(r"\nfirst +succeeded +from the store\n", done.stderr)
    assert re.search(r"\n  done +second +[0-9.]+ms\n", done.stderr)


def test_a_large_run_lists_its_notable_steps(in_tmp: Path) -> None:
    (in_tmp / "wide.py").write_text(textwrap.dedent("""
        import time
        from flowfn import Step, graph

        def ok() -> int:
            return 1

        def bad() -> int:
            time.sleep(0.1)  # the others settle first
            raise ValueError("no")

        steps = [Step(ok, name=f"s{i:02}") for i in range(60)] + [Step(bad, name="bad")]
        flow = graph(*steps)
    """))
    assert invoke("run", "wide.py:flow", "--store", "runs.db", "--run-id", "w").exit_code == 1
    lines = invoke("runs", "--store", "runs.db", "w").stdout.splitlines()
    table = lines[lines.index("") + 1:]
    assert len(table) == 1 + 40 + 1
    assert any(re.match(r"bad +failed +1 +ValueError: no", line) for line in table)
    assert re.fullmatch(r"\.\.\. \d+ more steps", table[-1].strip()), table[-1]


# --- mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["runs"], "flowfn runs needs the store: --store FILE.db.\n"),
    (["runs", "--store", "nope.db"],
     "--store 'nope.db' does not exist. A store is made by the first run kept in it: "
     "flowfn run FILE.py:flow --store nope.db.\n"),
    (["runs", "--store", "."], "--store '.' is a directory, not a store file.\n"),
    (["runs", "--store", "runs.db", "contract-24"],
     "store 'runs.db' has no run 'contract-24'. Did you mean 'contract-42'? Latest runs: "
     "contract-42 (all: flowfn runs --store runs.db).\n"),
    (["resume", "contract-42"], "flowfn resume needs the store: --store FILE.db.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", "legal"],
     "--answer 'legal': write an answer as name=@answer.json or name='{\"key\": ...}'.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", "legal={approved"],
     "--answer legal=...: the value looks like JSON but does not parse: Expecting property "
     "name enclosed in double quotes at character 1.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", "legal=@none.json"],
     "--answer legal=@none.json: cannot read the file (No such file or directory).\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", "legal=@review.py"],
     "--answer legal=@review.py: not valid JSON: Expecting value at line 2.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", "legal=1",
      "--answer", "legal=2"], "--answer legal=... is given twice; a form takes one answer.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--answer", 'legl={"approved": true}'],
     "1 bad answer for flowfn resume contract-42\n"
     "  legl: no ask() step has that name. Did you mean 'legal'? Asks: finance, legal.\n"),
    (["resume", "contract-42", "--store", "runs.db", "--rerun", "scna"],
     "--rerun 'scna': graph 'decide' has no step of that name. Did you mean 'scan'? "
     "Steps: decide, finance, legal, pages, scan.\n"),
])
def test_usage_mistakes(waiting: Path, args: list[str], message: str) -> None:
    before = stored(waiting).load_run("contract-42")
    result = invoke(*args)
    assert (result.exit_code, result.stderr) == (2, message)
    assert stored(waiting).load_run("contract-42") == before  # the store is unchanged


def test_a_flow_that_moved(waiting: Path) -> None:
    (waiting / "review.py").rename(waiting / "moved.py")
    result = invoke("resume", "contract-42", "--store", "runs.db")
    assert result.exit_code == 2
    assert result.stderr == (
        f"run 'contract-42' belongs to '{waiting.resolve() / 'review.py'}:flow', which "
        "cannot be loaded:\n"
        f"  file '{waiting.resolve() / 'review.py'}' does not exist.\n"
        "If the flow moved, name it with --flow FILE.py:NAME.\n"
    )
    done = invoke("resume", "contract-42", "--store", "runs.db", "--flow", "moved.py:flow")
    assert done.exit_code == 0, done.stderr
    assert "decide is waiting for 2 answers" in done.stderr


def test_another_graph_is_refused(waiting: Path) -> None:
    (waiting / "other.py").write_text("from flowfn import graph, step\n\n\n@step\n"
                                      "def hello() -> str:\n    return 'hi'\n\n\n"
                                      "flow = graph(hello)\n")
    result = invoke("resume", "contract-42", "--store", "runs.db", "--flow", "other.py:flow")
    assert (result.exit_code, result.stderr) == (
        2, "run 'contract-42' is a run of graph 'decide', but 'other.py:flow' is graph "
           "'hello'.\n")


def test_a_run_started_from_code_that_cannot_be_imported(in_tmp: Path) -> None:
    @step
    def hello() -> str:
        return "hi"

    question = ask("ok", bool)

    @step
    def greet(said: Annotated[str, hello], ok: Annotated[bool, question]) -> str:
        return said if ok else "no"

    store = SQLiteStore(in_tmp / "runs.db")
    assert run(graph(greet), store=store, run_id="local").status == "waiting"
    result = invoke("resume", "local", "--store", "runs.db", "--answer", "ok=true")
    assert (result.exit_code, result.stderr) == (
        2, "run 'local' does not say which flow it belongs to (it was started from code "
           "that cannot be imported again). Name the flow: flowfn resume local --store "
           "runs.db --flow FILE.py:NAME.\n")


def test_a_reused_run_id_with_other_inputs(waiting: Path) -> None:
    result = invoke("run", "review.py:flow", "-i", "n=4", "--store", "runs.db",
                    "--run-id", "contract-42")
    assert result.exit_code == 2
    assert result.stderr == (
        "run 'contract-42' is in store 'runs.db' already, with other inputs: {\"n\":3}.\n"
        "  A run id names one run: give a new --run-id, or continue this one: flowfn resume "
        "contract-42 --store runs.db.\n"
    )
    same = invoke("run", "review.py:flow", "-i", "n=3", "--store", "runs.db",
                  "--run-id", "contract-42")  # the same inputs: the stored run, as it is
    assert same.exit_code == 0, same.stderr
    assert "decide is waiting for 2 answers (run contract-42)" in same.stderr


def test_a_file_that_is_not_a_store(in_tmp: Path) -> None:
    (in_tmp / "notes.db").write_text("shopping list: milk, eggs, flour, sugar, butter\n" * 50)
    result = invoke("runs", "--store", "notes.db")
    assert result.exit_code == 2
    assert result.stderr == ("--store 'notes.db': cannot open store 'notes.db': file is not "
                             "a database\n")


def test_text_for_a_form_that_takes_an_object(waiting: Path) -> None:
    result = invoke("resume", "contract-42", "--store", "runs.db", "--answer", "legal=yes")
    assert (result.exit_code, result.stderr) == (
        2, "--answer legal=yes: form 'legal' takes a JSON object: {\"approved\": boolean, "
           "\"reviewer\": string, \"note\"?: string}.\n"
           "  Write legal=@answer.json or legal='{...}'.\n")


def test_debug_shows_the_traceback(waiting: Path) -> None:
    result = invoke("resume", "contract-42", "--store", "runs.db", "--answer",
                    'legal={"approved": 1.5}', "--debug")
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.endswith("2 bad answers for flowfn resume contract-42\n"
                                  "  legal.approved: invalid value for type, expected bool "
                                  "(got 1.5)\n"
                                  "  legal.reviewer: required field missing\n")


def test_help_names_the_three_commands() -> None:
    text = invoke("--help").stdout
    for command in ("run", "runs", "resume", "show"):
        assert re.search(rf"^  {command} ", text, re.MULTILINE), text
    assert "-a, --answer NAME=VALUE" in invoke("resume", "--help").stdout
