"""Method descriptions and citations for the site, read from the method registry TOML files.

The registry lives in the repository (``methods/*.toml`` for the paper's method, ``baselines/*.toml``
for the others). The site only needs ``name``, ``title``, ``[citation]`` (authors, venue, year, link)
and an optional ``description``; other keys are ignored and a missing or unreadable folder simply gives
no entries, so the site builds before the registry exists.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import actbench

REGISTRY_FOLDERS = ("methods", "baselines")


def registry_dirs(results_dir: Path | None = None) -> list[Path]:
    """Folders to look in: next to the results folder, in the source checkout, in the package."""
    roots = []
    if results_dir is not None:
        roots.append(Path(results_dir).resolve().parent)
    roots.append(Path(actbench.__file__).resolve().parent.parent)
    dirs = [root / folder for root in roots for folder in REGISTRY_FOLDERS]
    dirs.append(Path(actbench.__file__).resolve().parent / "registry")
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _entry(raw: dict[str, Any], path: Path) -> dict[str, Any] | None:
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        return None
    citation = raw.get("citation") if isinstance(raw.get("citation"), dict) else {}
    authors = citation.get("authors", "")
    if isinstance(authors, list):
        authors = ", ".join(str(a) for a in authors)
    return {
        "name": name,
        "title": str(raw.get("title", name)),
        "citation": {
            "authors": str(authors),
            "title": str(citation.get("title", "")),
            "venue": str(citation.get("venue", "")),
            "year": str(citation.get("year", "")),
            "link": str(citation.get("link", "")),
        },
        "description": str(raw.get("description", "")),
        "source": f"{path.parent.name}/{path.name}",
    }


def load_methods_info(dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """Entries ``{name, title, citation: {authors, title, venue, year, link}, description}`` from TOML.

    The first file seen for a name wins; unreadable files are skipped (the site must still build).
    """
    entries: dict[str, dict[str, Any]] = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.toml")):
            try:
                raw = tomllib.loads(path.read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            entry = _entry(raw, path)
            if entry is not None and entry["name"] not in entries:
                entries[entry["name"]] = entry
    return sorted(entries.values(), key=lambda e: e["name"])
