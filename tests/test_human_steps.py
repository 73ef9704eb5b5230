"""Human steps (``ask()``) with a store: a run waits, its process dies, another process
answers; bad answers leave the file untouched; deadlines in wall-clock time (stored) and
in virtual time (``flow_run``); parallel asks answered one at a time.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import flows_human as fh
import pytest

from flowfn import (
    InputError,
    MemoryStore,
    RunFailed,
    SQLiteStore,
    StepTimeout,
    StoreError,
    ask,
    graph,
    resume,
    run,
    step,
    subflow,
)

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "tests" / "flows_human.py"


def child(*args: str, log: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if log is not None:
        env["FLOWFN_TEST_LOG"] = str(log)
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reply: dict[str, object] = json.loads(out.splitlines()[-1])
    return reply


def committed(db: Path, run_id: str = "job") -> set[str]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT path FROM steps WHERE run_id = ? AND status = "
                            "'succeeded'", (run_id,)).fetchall()
    return {path for (path,) in rows}


def dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


ANSWER = {"approve": {"approved": True, "reviewer": "kim"}}
TOTAL = sum(x * 10 for x in range(12))


def test_waiting_run_answered_from_another_process(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    waiting = finish(child("run", str(db), "job"))
    assert waiting == {"status": "waiting", "output": None, "waiting": ["approve"]}
    with sqlite3.connect(db) as conn:  # the form is in the file, with its schema
        name, schema = conn.execute("SELECT name, schema_json FROM forms").fetchone()
    assert name == "approve"
    assert json.loads(schema)["required"] == ["approved", "reviewer"]
    done = finish(child("resume", str(db), "job", json.dumps(ANSWER)))
    assert done == {"status": "succeeded", "output": f"approved by kim: {TOTAL}",
                    "waiting": []}


def test_killed_mid_run_while_an_ask_waits_then_answered_elsewhere(tmp_path: Path) -> None:
    """SIGKILL the process while the map beside the waiting ask is half done; another
    process answers: the run succeeds and no committed item runs again."""
    db, log = tmp_path / "runs.db", tmp_path / "log.txt"
    proc = child("run", str(db), "job", log=log)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until some items are committed, not all
        if db.exists() and len(committed(db) - {"items"}) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = committed(db)
    assert 3 <= len(before - {"items"}) < 13, before
    log.write_text("")
    done = finish(child("resume", str(db), "job", json.dumps(ANSWER), log=log))
    assert done["status"] == "succeeded"
    assert done["output"] == f"approved by kim: {TOTAL}"
    assert not set(log.read_text().split()) & before
    assert committed(db) >= before | {"approve", "decide"}


def test_a_bad_answer_lists_every_path_and_leaves_the_file_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    assert run(fh.flow, store=store, run_id="job").status == "waiting"
    before = dump(db)
    with pytest.raises(InputError) as info:
        resume(fh.flow, "job", store=store,
               answers={"approve": {"approved": "maybe", "note": 3, "extra": 1}})
    assert str(info.value).splitlines() == [  # every path at once
        "4 bad answers for resume(decide, 'job') answers",
        "  approve.approved: invalid value for type, expected bool (got 'maybe')",
        "  approve.reviewer: required field missing",
        "  approve.note: invalid value for type, expected str (got 3)",
        "  approve: unknown keys: extra",
    ]
    assert dump(db) == before
    still = resume(fh.flow, "job", store=store)
    assert still.status == "waiting" and [f.name for f in still.waiting] == ["approve"]
    assert resume(fh.flow, "job", store=store, answers=ANSWER).status == "succeeded"


def test_an_answer_for_an_unknown_ask_says_did_you_mean() -> None:
    store = MemoryStore()
    run(fh.flow, store=store, run_id="job")
    with pytest.raises(InputError) as info:
        resume(fh.flow, "job", store=store, answers={"aprove": {"approved": True}})
    assert "aprove: no ask() step has that name. Did you mean 'approve'? Asks: approve." \
        in str(info.value)
    with pytest.raises(InputError, match="Did you mean 'approve'"):
        run(fh.flow, answers={"approv": ANSWER["approve"]})


# --- parallel approvals ------------------------------------------------------------------


@dataclass
class Approval:
    approved: bool
    comments: str = ""


@dataclass
class SecurityReview:
    approved: bool
    risk_level: Literal["low", "medium", "high"]


legal = ask("legal", Approval, title="Legal Review Required")
finance = ask("finance", Approval, title="Finance Review Required")
security = ask("security", SecurityReview, title="Security Review Required")


@step
def check_all(legal: Approval, finance: Approval, security: SecurityReview) -> bool:
    return legal.approved and finance.approved and security.approved


approvals = graph(check_all)


def test_parallel_asks_are_answered_one_at_a_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    first = run(approvals, store=store, run_id="contract-42")
    assert [f.name for f in first.waiting] == ["legal", "finance", "security"]
    after_legal = resume(approvals, "contract-42", store=store,
                         answers={"legal": {"approved": True}})
    assert after_legal.status == "waiting"
    assert [f.name for f in after_legal.waiting] == ["finance", "security"]
    after_finance = resume(approvals, "contract-42", store=SQLiteStore(tmp_path / "runs.db"),
                           answers={"finance": {"approved": True, "comments": "ok"}})
    assert [f.name for f in after_finance.waiting] == ["security"]
    done = resume(approvals, "contract-42", store=store,
                  answers={"security": {"approved": True, "risk_level": "low"}})
    assert done.status == "succeeded" and done.output is True
    again = resume(approvals, "contract-42", store=store)  # finished: stored result
    assert again.output is True


def test_answering_a_form_again_with_the_same_answer_is_harmless() -> None:
    store = MemoryStore()
    run(approvals, store=store, run_id="c")
    resume(approvals, "c", store=store, answers={"legal": {"approved": True}})
    again = resume(approvals, "c", store=store, answers={"legal": {"approved": True}})
    assert [f.name for f in again.waiting] == ["finance", "security"]


def test_answering_a_form_again_with_another_answer_is_an_error() -> None:
    store = MemoryStore()
    run(approvals, store=store, run_id="c")
    resume(approvals, "c", store=store, answers={"legal": {"approved": True}})
    with pytest.raises(StoreError, match="already has another answer"):
        resume(approvals, "c", store=store, answers={"legal": {"approved": False}})


def test_flow_run_answers_asks_directly_and_validates_them(flow_run) -> None:  # type: ignore[no-untyped-def]
    inner = subflow(approvals, name="review")

    @step
    def archive(review: Annotated[bool, inner]) -> str:
        return "archived" if review else "returned"

    answered = flow_run(graph(archive), answers={
        "review/legal": {"approved": True},
        "finance": {"approved": True},  # a name alone finds review/finance
        "security": {"approved": False, "risk_level": "high"},
    })
    assert answered.output == "returned"
    with pytest.raises(InputError, match=r"risk_level"):
        flow_run(graph(archive), answers={"security": {"approved": True, "risk_level": "x"}})
    waiting = flow_run(graph(archive), answers={"legal": {"approved": True}})
    assert [f.path for f in waiting.waiting] == ["review/finance", "review/security"]


# --- deadlines ---------------------------------------------------------------------------


@dataclass
class Escalation:
    approved: bool
    escalated: bool = False


def deadline_flow(seconds: float, on_deadline: object) -> object:
    sign_off = ask("sign_off", Escalation, title="Sign off", deadline=seconds,
                   on_deadline=on_deadline)

    @step
    def outcome(sign_off: Annotated[Escalation, sign_off]) -> str:
        return "escalated" if sign_off.escalated else f"approved={sign_off.approved}"

    return graph(outcome)


def test_a_wall_clock_deadline_is_stored_and_applies_its_value_on_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    flow = deadline_flow(0.2, Escalation(approved=False, escalated=True))
    first = run(flow, store=SQLiteStore(db), run_id="d")
    assert first.status == "waiting"
    form = first.waiting[0]
    assert form.deadline is not None and form.deadline.tzinfo is not None
    with sqlite3.connect(db) as conn:
        (stamp,) = conn.execute("SELECT deadline FROM forms").fetchone()
    assert abs(stamp - form.deadline.timestamp()) < 1e-3
    assert resume(flow, "d", store=SQLiteStore(db)).status == "waiting"  # not yet
    time.sleep(max(0.0, stamp - time.time()) + 0.02)
    done = resume(flow, "d", store=SQLiteStore(db))
    assert done.status == "succeeded" and done.output == "escalated"
    assert done.spans["sign_off"].reason == "its deadline passed without an answer"


def test_a_wall_clock_deadline_with_an_exception_fails_the_step(tmp_path: Path) -> None:
    flow = deadline_flow(0.2, TimeoutError("nobody signed off"))
    store = SQLiteStore(tmp_path / "runs.db")
    assert run(flow, store=store, run_id="d").status == "waiting"
    time.sleep(0.25)
    with pytest.raises(RunFailed, match="nobody signed off") as info:
        resume(flow, "d", store=store)
    assert isinstance(info.value.__cause__, TimeoutError)


def test_an_answer_before_the_deadline_wins(tmp_path: Path) -> None:
    flow = deadline_flow(3600, Escalation(approved=False, escalated=True))
    store = SQLiteStore(tmp_path / "runs.db")
    assert run(flow, store=store, run_id="d").status == "waiting"
    done = resume(flow, "d", store=store, answers={"sign_off": {"approved": True}})
    assert done.output == "approved=True"


def test_a_72_hour_escalation_runs_in_virtual_time(flow_run, flow_clock) -> None:  # type: ignore[no-untyped-def]
    sign_off = ask("sign_off", Escalation, deadline=timedelta(hours=72),
                   on_deadline=Escalation(approved=False, escalated=True))

    @step
    def outcome(sign_off: Annotated[Escalation, sign_off]) -> str:
        return "escalated" if sign_off.escalated else "approved"

    started = time.monotonic()
    result = flow_run(graph(outcome))
    assert result.output == "escalated"
    assert flow_clock.current_time() >= 72 * 3600
    assert time.monotonic() - started < 1.0
    assert flow_run(graph(outcome), answers={"sign_off": {"approved": True}}).output == \
        "approved"


def test_a_deadline_without_on_deadline_fails_with_step_timeout(flow_run) -> None:  # type: ignore[no-untyped-def]
    sign_off = ask("sign_off", Escalation, deadline=timedelta(hours=1))

    @step
    def outcome(sign_off: Annotated[Escalation, sign_off]) -> bool:
        return sign_off.approved

    failed = flow_run(graph(outcome), expect_failure=True)
    assert isinstance(failed.failures["sign_off"], StepTimeout)
    assert "passed its deadline without an answer" in str(failed.failures["sign_off"])


def test_run_with_the_same_id_returns_the_waiting_run_and_runs_nothing() -> None:
    store = MemoryStore()
    first = run(approvals, store=store, run_id="c")
    again = run(approvals, store=store, run_id="c")
    assert again.status == "waiting"
    assert [f.name for f in again.waiting] == [f.name for f in first.waiting]


def test_answers_given_to_run_for_a_waiting_run_are_not_dropped_silently() -> None:
    store = MemoryStore()
    run(approvals, store=store, run_id="c")
    answers = {"legal": {"approved": True}, "finance": {"approved": True},
               "security": {"approved": True, "risk_level": "low"}}
    try:
        result = run(approvals, store=store, run_id="c", answers=answers)
    except (ValueError, StoreError) as exc:
        assert "resume(" in str(exc)
    else:
        assert result.status == "succeeded"
