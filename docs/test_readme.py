"""The README's Python blocks run as tests too.

pytest only collects below its test paths (``tests``, ``docs``) and a conftest's hooks
only apply below its own directory, so docs/conftest.py cannot reach the repository-root
README.md; it is parsed here with the same Sybil parsers as the guides.
"""

from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

README = Path(__file__).resolve().parent.parent / "README.md"
_document = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()]).parse(README)
_examples = list(_document.examples())  # in file order; they share the document's namespace


@pytest.mark.parametrize("example", _examples, ids=[f"line{e.line}" for e in _examples])
def test_readme(example: Any) -> None:
    example.evaluate()
