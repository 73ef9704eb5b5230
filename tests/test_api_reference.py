"""docs/api.md documents exactly the names in ``flowfn.__all__``.

The reference is written by hand, so it can fall behind the package. This test reads
its ``### `name` `` headings and compares them with ``flowfn.__all__`` as it is when the
test runs: a name exported but not documented fails, and so does a section for a name
that is no longer exported. Submodule sections (``### `flowfn.testing` ``) have a dot in
their name and are not compared.
"""

import re
from pathlib import Path

import flowfn

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
HEADING = re.compile(r"^### `([A-Za-z_][A-Za-z0-9_]*)`\s*$", re.MULTILINE)


def documented() -> list[str]:
    return HEADING.findall(API_MD.read_text(encoding="utf-8"))


def test_every_export_is_documented() -> None:
    missing = sorted(set(flowfn.__all__) - set(documented()))
    assert not missing, (
        f"docs/api.md has no section for {', '.join(missing)}. Add a heading "
        "'### `Name`' with a ```py signature block and one paragraph for each."
    )


def test_every_documented_name_is_exported() -> None:
    extra = sorted(set(documented()) - set(flowfn.__all__))
    assert not extra, (
        f"docs/api.md documents {', '.join(extra)}, which flowfn.__all__ does not export. "
        "Remove the section, or export the name."
    )


def test_each_name_is_documented_once() -> None:
    names = documented()
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"docs/api.md has more than one section for {', '.join(repeated)}"


def test_each_section_has_a_signature_and_a_paragraph() -> None:
    text = API_MD.read_text(encoding="utf-8")
    parts = re.split(r"^(?=##+ )", text, flags=re.MULTILINE)
    sections = {part.split("\n", 1)[0]: part for part in parts}
    thin = [
        title.removeprefix("### ")
        for title, body in sections.items()
        if HEADING.match(title) and not ("```py\n" in body and _has_paragraph(body))
    ]
    assert not thin, f"docs/api.md: sections without a ```py signature or a paragraph: {thin}"


def _has_paragraph(section: str) -> bool:
    """Prose after the signature block: at least one line of text outside any fence."""
    outside = re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    return any(line.strip() for line in outside.splitlines()[1:])
