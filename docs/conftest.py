"""Run every Python code block of the guides in docs/ as a test (Sybil).

Each Markdown page is one document: its blocks run in order, in one shared namespace,
so a page reads like a session at the prompt. ``<!-- skip: next -->`` before a block
skips it; ``<!-- invisible-code-block: python -->`` runs code the reader does not see.

testing.md shows the pytest fixtures at work: its blocks get the real ``flow_run`` and
``flow_clock`` fixtures of flowfn's plugin in their namespace (fresh for every block).

The repository's README.md lies outside docs/, where this conftest's hooks do not reach;
``test_readme.py`` next to this file runs its Python blocks with the same parsers.
"""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

PARSERS = [PythonCodeBlockParser(), SkipParser()]

guides = Sybil(parsers=PARSERS, patterns=["*.md"], excludes=["testing.md"], name="guides")
testing_guide = Sybil(
    parsers=PARSERS, patterns=["testing.md"], fixtures=["flow_run", "flow_clock"], name="testing"
)

pytest_collect_file = (guides + testing_guide).pytest()
