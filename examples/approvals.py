"""Parallel approvals: legal, finance and security review a contract at the same time,
then one step checks all three decisions.

What it shows:
  * ``ask(name, AnswerType, title=...)`` is a step whose output a person provides; the
    answer type (a dataclass) gives the form its JSON Schema (``result.waiting[i].schema``);
  * a run with a store that reaches unanswered asks returns ``"waiting"`` — the three
    forms are open at once — and the run lives on in the SQLite file, not in the process;
  * ``resume(flow, run_id, store=..., answers={...})`` answers them one at a time (any
    process can, days later); the run goes on as far as the answers allow;
  * a bad answer is refused with every data path, before anything is written;
  * ``on_deadline=``: an unanswered security review is escalated after 72 hours.

Run it:  python examples/approvals.py
"""

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from flowfn import InputError, SQLiteStore, ask, graph, resume, run, step


@dataclass
class Review:
    approved: bool
    comments: str = ""


@dataclass
class SecurityReview:
    approved: bool
    risk_level: Literal["low", "medium", "high"]


@dataclass
class Verdict:
    approved: bool
    blocked_by: list[str]


legal_review = ask("legal_review", Review, title="Legal Review Required")
finance_review = ask("finance_review", Review, title="Finance Review Required")
security_review = ask(
    "security_review", SecurityReview, title="Security Review Required",
    deadline=timedelta(hours=72),
    on_deadline=SecurityReview(approved=False, risk_level="high"),  # escalate: say no
)


@step
def check_approvals(legal_review: Review, finance_review: Review,
                    security_review: SecurityReview) -> Verdict:
    decisions = {"legal": legal_review.approved, "finance": finance_review.approved,
                 "security": security_review.approved and security_review.risk_level != "high"}
    blocked = [team for team, ok in decisions.items() if not ok]
    return Verdict(approved=not blocked, blocked_by=blocked)


flow = graph(check_approvals)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "runs.db")
        result = run(flow, store=store, run_id="contract-42")
        print(f"status: {result.status}")
        for form in result.waiting:
            print(f"  form {form.name}: {form.title!r}, "
                  f"fields {sorted(form.schema['properties'])}")

        result = resume(flow, "contract-42", store=store,
                        answers={"legal_review": {"approved": True}})
        print(f"after legal: {result.status}, waiting for {[f.name for f in result.waiting]}")

        try:
            resume(flow, "contract-42", store=store,
                   answers={"security_review": {"approved": "yes", "risk_level": "none"}})
        except InputError as exc:
            print(f"refused: {exc}")

        result = resume(flow, "contract-42", store=store,
                        answers={"finance_review": {"approved": True, "comments": "in budget"}})
        print(f"after finance: {result.status}, waiting for "
              f"{[f.name for f in result.waiting]}")

        result = resume(flow, "contract-42", store=SQLiteStore(Path(folder) / "runs.db"),
                        answers={"security_review": {"approved": True, "risk_level": "low"}})
        print(f"after security: {result.status}, output: {result.output}")
        print()
        print(result.report())
        store.close()


if __name__ == "__main__":
    main()
