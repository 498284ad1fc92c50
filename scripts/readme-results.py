"""Refresh (or check) the study tables and findings in README.md from the committed run cards.

The block between ``<!-- study-tables:begin -->`` and ``<!-- study-tables:end -->`` is exactly the output
of ``actbench compare --dataset fashion-mnist --format markdown --thresholds 0.75,0.8,0.85`` on
``results/``, with its headings moved one level down to sit inside the README's "Results" section; the
block between ``<!-- study-findings:begin -->`` and ``<!-- study-findings:end -->`` lists the sentences of
:mod:`actbench.leaderboard.findings` (what the data says about ACERT, the site's track page shows them too).
Run ``python scripts/readme-results.py`` after the study; ``--check`` exits 1 when the README is out of
date (``tests/test_readme_results.py`` does the same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from actbench.compare import compare_command, load_results, parse_thresholds, track_info
from actbench.leaderboard.findings import findings

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- study-tables:begin -->", "<!-- study-tables:end -->"
FINDINGS = ("<!-- study-findings:begin -->", "<!-- study-findings:end -->")
TRACK, THRESHOLDS = "fashion-mnist", "0.75,0.8,0.85"


def study_tables(results: Path = ROOT / "results") -> str:
    """The compare output the README quotes."""
    text = compare_command(results, TRACK, THRESHOLDS, "best", "markdown").strip()
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def study_findings(results: Path = ROOT / "results") -> str:
    """The findings, one markdown bullet each."""
    index = load_results(results)
    info = track_info(index.frame, TRACK)
    return "\n".join(f"- {line}" for line in findings(index.frame, info, parse_thresholds(THRESHOLDS)))


def readme_block(text: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """The text between the markers (stripped); ValueError when they are missing."""
    begin, end_marker = markers
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the {begin} ... {end_marker} markers")
    return text[start + len(begin):end].strip()


def replace_block(text: str, markers: tuple[str, str], body: str) -> str:
    """``text`` with the block between ``markers`` set to ``body``."""
    start, end = text.index(markers[0]) + len(markers[0]), text.index(markers[1])
    return text[:start] + "\n\n" + body + "\n\n" + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    blocks = [((BEGIN, END), study_tables()), (FINDINGS, study_findings())]
    current = [readme_block(text, markers) for markers, _ in blocks]
    fresh = current == [body for _, body in blocks]
    if args.check:
        print("README study tables and findings are " + ("up to date" if fresh else "OUT OF DATE"))
        return 0 if fresh else 1
    for markers, body in blocks:
        text = replace_block(text, markers, body)
    readme.write_text(text)
    print("README study tables and findings refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
