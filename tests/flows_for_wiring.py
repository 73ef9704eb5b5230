"""A module written with postponed annotations and forward references (tests/test_wiring.py).

Every annotation here is a string until ``graph()`` resolves it; ``Row``, ``Summary`` and
``load_rows`` are used before they are defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from flowfn import step


@step
def make_report(summary: Summary, rows: Annotated[list[Row], "load_rows"]) -> str:
    # ``summary`` is wired by name to the step of this module; ``rows`` by a forward name
    return f"{summary.count} rows: {', '.join(str(r.n) for r in rows)}"


@step
def summary(load_rows: list[Row]) -> Summary:
    return Summary(len(load_rows))


@step
async def load_rows(limit: int = 2) -> list[Row]:
    return [Row(i) for i in range(limit)]


@dataclass
class Row:
    n: int


@dataclass
class Summary:
    count: int


@step(name="count_only")
def count_only_fn(load_rows: list[Summary]) -> int:
    """Wrong on purpose: ``load_rows`` returns ``list[Row]``, not ``list[Summary]``."""
    return len(load_rows)
