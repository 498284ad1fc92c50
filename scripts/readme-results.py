"""Refresh (or check) the study tables in README.md from the committed run cards.

The block between ``<!-- study-tables:begin -->`` and ``<!-- study-tables:end -->`` is exactly the output
of ``actbench compare --dataset fashion-mnist --format markdown --thresholds 0.75,0.8,0.85`` on
``results/``, with its headings moved one level down to sit inside the README's "Results" section.
Run ``python scripts/readme-results.py`` after the study; ``--check`` exits 1 when the README is out of
date (``tests/test_readme_results.py`` does the same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actbench.compare import compare_command

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- study-tables:begin -->", "<!-- study-tables:end -->"
TRACK, THRESHOLDS = "fashion-mnist", "0.75,0.8,0.85"


def study_tables(results: Path = ROOT / "results") -> str:
    """The compare output the README quotes."""
    text = compare_command(results, TRACK, THRESHOLDS, "best", "markdown").strip()
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def readme_block(text: str) -> str:
    """The text between the markers (stripped); ValueError when they are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the {BEGIN} ... {END} markers")
    return text[start + len(BEGIN):end].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    current, wanted = readme_block(text), study_tables()
    if args.check:
        print("README study tables are " + ("up to date" if current == wanted else "OUT OF DATE"))
        return 0 if current == wanted else 1
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n\n" + wanted + "\n\n" + text[end:])
    print("README study tables refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
