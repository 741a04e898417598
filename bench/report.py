"""docs/BENCHMARKS.md, where every bench keeps its latest figures: one `## ` section each, the others untouched."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def write_section(report: str, heading: str, keep_from: str | None = None) -> None:
    """Replace the `heading` section (up to the next '## ' heading), or append it; `report` starts with the heading.

    With `keep_from` (how a line starts), the old section's tail from that line stays after the new figures:
    notes written by hand, or a subsection another bench writes.
    """
    text = DOC.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = report.rstrip("\n") + "\n"
    old = pattern.search(text)
    if keep_from and old and (kept := re.search(rf"^{re.escape(keep_from)}.*", old.group(0), re.S | re.M)):
        section += "\n" + kept.group(0).rstrip("\n") + "\n"
    if old:
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")
