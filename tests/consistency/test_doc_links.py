"""Every relative link and image of the project's Markdown resolves.

A link ``[text](path#anchor)`` in ``README.md``, ``docs/**/*.md`` or a
recipe README must name a file of the checkout, and its anchor a heading
of that file, spelled as GitHub spells heading anchors. The results
pages are long and their headings carry the measured figures, so a
re-titled section silently breaks the README's links without this test.
"""

import re
from collections import Counter

import pytest

from tests.utils.recipes import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
PAGES = sorted(
    [ROOT / "README.md"]
    + list((ROOT / "docs").rglob("*.md"))
    + list((ROOT / "recipes").glob("*/README.md"))
)


def heading_anchors(text):
    """Return the anchors GitHub gives the headings of a Markdown text.

    Lower case; characters other than word characters, ``-`` and spaces
    dropped; spaces to ``-``; a repeated anchor gets ``-1``, ``-2``, ...

    >>> sorted(heading_anchors("# A, b!\\n## A, b!\\n### 5 % (x)"))
    ['5--x', 'a-b', 'a-b-1']
    """
    anchors, seen = set(), Counter()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower())
        slug = slug.replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def relative_links(text):
    """Return the relative link and image targets of a Markdown text.

    Fenced code is skipped.

    >>> relative_links("[a](x.md#y) [b](https://e.org) ![c](f.png) [d](#z)")
    ['x.md#y', 'f.png', '#z']
    """
    found = LINK.findall(FENCE.sub("", text))
    return [t for t in found if not re.match(r"[a-z]+:", t)]


def broken_links(page):
    """Return ``target: reason`` for every link of ``page`` that fails."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md":
            if anchor not in heading_anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize(
    "page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES]
)
def test_links_resolve(page):
    assert not broken_links(page), broken_links(page)


def test_checker_catches_a_renamed_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Old title\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#old-title) [bad](a.md#new-title) [gone](c.md)",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "a.md#new-title: no heading with that anchor",
        f"c.md: no file {tmp_path / 'c.md'}",
    ]
