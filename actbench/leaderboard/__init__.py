"""Static leaderboard site generator (Jinja templates, matplotlib SVG plots, no network)."""

from actbench.leaderboard.registry import load_methods_info, registry_dirs
from actbench.leaderboard.site import build_site

__all__ = ["build_site", "load_methods_info", "registry_dirs"]
