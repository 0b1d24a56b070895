"""The README is a front door, and the README and docs/ name only files that exist.

Checked: relative markdown links (and their #anchors), repository paths in `code spans` and
code blocks (words starting with shield_addon/, scripts/, rules/, tests/, docs/, .ci/), and
the layout trees drawn in code blocks, rebuilt from their indentation.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
ROOTS = ("shield_addon/", "scripts/", "rules/", "tests/", "docs/", ".ci/")
MAX_README_LINES = 300

FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`]+)`")
_ROOT_ALT = "|".join(re.escape(r) for r in ROOTS)
WORD = re.compile(r"(?:^|(?<=[\s(\"'=]))((?:" + _ROOT_ALT + r")[\w./{},*-]*)")


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in _expand_braces(path[: m.start()] + alt + path[m.end():])]


def _repo_words(text: str) -> set[str]:
    return {w.rstrip(".,;:") for w in WORD.findall(text)}


def _tree_paths(block: str) -> set[str]:
    """`shield_addon/` at column 0 with `  core/` and `    model.py` under it -> full paths."""
    found: set[str] = set()
    stack: list[tuple[int, str | None]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        words = line.split()
        names = [words[0]]
        for w in words[1:]:  # `verify.py, export.py, ...`: a comma-separated run of names
            if not names[-1].endswith(","):
                break
            names.append(w)
        names = [n.rstrip(",") for n in names]
        if not all(re.fullmatch(r"[\w.-]+(/|\.\w+)", n) for n in names):
            continue  # a description carried onto its own line, or a placeholder
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        if parent is None or (not stack and not names[0].startswith(ROOTS)):
            stack.append((indent, None))  # a tree of something else (an audit directory)
            continue
        found.update(parent + n for n in names)
        if names[0].endswith("/"):
            stack.append((indent, parent + names[0]))
    return found


def _named_paths(text: str) -> set[str]:
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    named = {w for span in SPAN.findall(prose) for w in _repo_words(span)}
    for block in blocks:
        named |= _repo_words(block) | _tree_paths(textwrap.dedent(block))
    return {p for n in named for p in _expand_braces(n)}


def _exists(path: str) -> bool:
    if any(c in path for c in "*?["):
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    missing = sorted(p for p in _named_paths(page.read_text()) if not _exists(p))
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    assert broken == []


def test_the_readme_is_a_front_door_of_at_most_300_lines() -> None:
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {t.partition("#")[0] for t in LINK.findall(README.read_text())}
    assert sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in linked) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_design_notes_outside_the_repository(page: Path) -> None:
    assert re.findall(r"DESIGN(?:\.md|'s)|notes/\w+\.md", page.read_text()) == []


def test_the_checks_see_paths_in_spans_blocks_and_trees() -> None:
    text = "Run `scripts/test tests/unit -q`.\n```\nscripts/start   # go\nshield_addon/\n  core/\n    a.py, b.py\n```\n"
    assert _named_paths(text) == {"scripts/test", "tests/unit", "scripts/start", "shield_addon/",
                                  "shield_addon/core/", "shield_addon/core/a.py", "shield_addon/core/b.py"}
    assert _expand_braces("x/{a,b}.py") == ["x/a.py", "x/b.py"]
