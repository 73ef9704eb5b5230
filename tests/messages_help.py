"""Helpers for tests that check flowfn's messages verbatim.

Messages print ``path:line`` relative to the working directory, so these tests run from
the repository root (the ``repo_root_cwd`` fixture) and compute expected locations from
the source of the functions concerned.
"""

import inspect
from pathlib import Path
from typing import Any

import pytest

from flowfn import GraphError, graph

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def at(fn: Any) -> str:
    """``tests/<file>.py:N`` where N is the line of ``fn``'s ``def`` (past decorators)."""
    fn = inspect.unwrap(getattr(fn, "fn", fn))
    path = Path(inspect.getsourcefile(fn) or "").resolve().relative_to(ROOT).as_posix()
    lines, start = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if text.lstrip().startswith(("def ", "async def ")):
            return f"{path}:{start + offset}"
    raise AssertionError(f"no def line for {fn!r}")


def graph_error(*parts: Any) -> str:
    """The message of the GraphError that ``graph(*parts)`` raises."""
    with pytest.raises(GraphError) as info:
        graph(*parts)
    return str(info.value)
