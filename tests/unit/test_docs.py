"""The README stays a five-minute read, and the docs' links lead somewhere and name no issue numbers."""
import re

import pytest

from harness.processes import ROOT

README = ROOT / "README.md"
LINKED = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md", ROOT / "lab" / "README.md"]
ISSUE_NUMBER = re.compile(r"#\d+|[Ii]ssue \d+")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text):
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose_keeping_headings(path.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def prose_keeping_headings(text):
    """The text without fenced code blocks (a `#` in a shell block is no heading); inline code kept, its text too."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M).replace("`", "")


def relative_links(path):
    return [target for target in LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_is_at_most_200_lines_of_at_most_120_characters():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    assert [number for number, line in enumerate(lines, 1) if len(line) > 120] == []


def test_every_page_is_there():
    for path in LINKED:
        assert path.is_file(), path


@pytest.mark.parametrize("path", LINKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_its_heading(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert broken == []


def test_the_readme_links_to_every_docs_page():
    links = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    assert [path for path in LINKED[1:] if path.resolve() not in links] == []


@pytest.mark.parametrize("path", LINKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_line_names_an_issue_number(path):
    assert [line for line in path.read_text().splitlines() if ISSUE_NUMBER.search(line)] == []


def test_the_checks_above_would_catch_what_they_look_for():
    assert ISSUE_NUMBER.search("as issue #18 asked") and ISSUE_NUMBER.search("Issue 20's targets")
    assert not ISSUE_NUMBER.search("[the checker](docs/testing.md#the-checker)")
    assert LINK.findall("see [a](b.md#c) and ![d](e.png)") == ["b.md#c", "e.png"]
    assert "the-etcd-tiers-size" in anchors(ROOT / "docs" / "data-tier.md")
