"""The README and the docs pages: every relative link (and image) points to a file that exists,
every #anchor to a heading of its target, and the README stays a short front page."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
# [text](target) and ![alt](target), an optional "title" after the target
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and
    '_' dropped, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text())):
        base = slug(match.group(2))
        name, count = base, 0
        while name in found:
            count += 1
            name = f"{base}-{count}"
        found.add(name)
    return found


def links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    return [match.group(1) for match in LINK.finditer(text)]


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / unquote(path)).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {shown(resolved)}")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {shown(resolved)}")
    return broken


def test_slugs_follow_github() -> None:
    assert slug("Training at scale") == "training-at-scale"
    assert slug("Reports, `reffakd show` and TensorBoard") == "reports-reffakd-show-and-tensorboard"
    assert slug("3.7 DIST") == "37-dist"
    assert slug("The text pipeline (text_speed.py)") == "the-text-pipeline-text_speedpy"
    assert slug("Data, offline") == "data-offline"


def test_the_checker_sees_links_images_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## Top\n\ntext `[no](link.md)`\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[a](a.md#top-1) ![img](missing.png) [x](a.md#nope) [self](#here)\n"
        "[web](https://example.org/x.md)\n```\n[in code](gone.md)\n```\n## Here\n"
    )
    assert links(tmp_path / "a.md") == []
    assert anchors(tmp_path / "a.md") == {"top", "top-1"}
    problems = [problem.split(":")[0] for problem in broken_links(page)]
    assert problems == ["missing.png", "a.md#nope"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_is_a_short_front_page() -> None:
    assert README.stat().st_size <= 10_500
    text = README.read_text()
    assert "make test" in text and "make demo" in text and "pip install -e ." in text
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"the README's index misses docs/{page.name}"
