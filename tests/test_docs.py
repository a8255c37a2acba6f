"""README.md and docs/*.md: every relative link resolves, every #anchor names a heading, README stays short."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
README_LIMIT = 15_000


def slug(heading):
    """GitHub's anchor of a heading: lowercase, punctuation dropped except '-' and '_', spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen, out = {}, set()
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def links(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) for m in LINK.finditer(text)]


def test_slug_rules():
    assert slug("Beyond the paper: BoostLU, EM / EM+APL, GR-Loss, and other backbones") == \
        "beyond-the-paper-boostlu-em--emapl-gr-loss-and-other-backbones"
    assert slug("Analyses (Section 3.2 and 4.3)") == "analyses-section-32-and-43"
    assert slug("Your own data: from a CSV (the `csv` dataset, `--dataset csv`)") == \
        "your-own-data-from-a-csv-the-csv-dataset---dataset-csv"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    bad = []
    for link in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            bad.append(f"{link}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{link}: no heading with anchor #{anchor} in {path.name}")
    assert not bad, "\n".join(bad)


def test_docs_exist_and_readme_is_short():
    assert len(PAGES) > 1
    size = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters, the limit is {README_LIMIT}"
