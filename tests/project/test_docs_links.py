"""The documentation holds together: every relative link resolves, and the README stays a landing page.

Links are read from README.md and docs/*.md outside code; a link to a Markdown
file with `#anchor` must name a heading of that file, slugged as GitHub does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where a link is only an example."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the headings of a Markdown file (repeats numbered -1, -2, ...)."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _FENCE.sub("", path.read_text()), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
    return {base if n == 0 else f"{base}-{n}" for base, total in seen.items() for n in range(total)}


def relative_links(path: Path) -> list[str]:
    """The targets of the links and images of `path` that point inside the repository."""
    return [target for target in _LINK.findall(prose(path.read_text())) if not _EXTERNAL.match(target)]


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def broken(path: Path, target: str) -> str | None:
    """Why `target`, linked from `path`, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    if not resolved.exists():
        return f"{target}: no file {shown(resolved)}"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{target}: no heading with the anchor #{anchor} in {shown(resolved)}"
    return None


def test_the_documentation_pages_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {
        "README.md",
        "docs/README.md",
        "docs/configuration.md",
        "docs/http-api.md",
        "docs/cli.md",
        "docs/operations.md",
        "docs/concepts.md",
        "docs/webhooks.md",
        "docs/development.md",
        "docs/design.md",
    } <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path: Path) -> None:
    links = relative_links(path)
    problems = [problem for target in links if (problem := broken(path, target))]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_index_links_every_docs_page() -> None:
    index = ROOT / "docs" / "README.md"
    linked = {(index.parent / target.partition("#")[0]).resolve() for target in relative_links(index)}
    unlinked = [path.name for path in DOCUMENTS[1:] if path != index and path.resolve() not in linked]
    assert not unlinked, f"docs/README.md links no: {unlinked}"


def test_the_readme_stays_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, more than {README_MAX_LINES}"


def test_the_link_checker_sees_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `GET /` route: here\n\n[ok](#a-get--route-here) [self](#title) [gone](nope.md)\n"
        "[bad](#nowhere) `[code](ignored.md)`\n\n```text\n[fenced](ignored.md)\n```\n"
    )
    problems = [problem for target in relative_links(page) if (problem := broken(page, target))]
    assert len(problems) == 2 and "nope.md" in problems[0] and "#nowhere" in problems[1], problems
