"""Command-line options shared by ``actbench run``, ``sweep`` and ``tune`` (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

CompleteSamples = Annotated[int | None, typer.Option(
    help="Complete verification of only the first N test samples (0: none; default: the track's).")]
