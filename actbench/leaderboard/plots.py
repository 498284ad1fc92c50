"""Matplotlib figures of the leaderboard, saved as SVG.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no GUI backend), so the
site builds headless and never touches global plotting state. Text stays text in the SVG
(``svg.fonttype = none``) so the browser renders it with the page's fonts, and a fixed hash salt and no
date keep the files reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from actbench.config import format_eps

# Okabe-Ito: distinguishable for colour-blind readers, calm on white
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#000000",
           "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
INK, GRID = "#333333", "#e6e6e6"
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "actbench",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.edgecolor": "#999999",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
}


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One stable colour per method name (sorted order, palette cycles)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def method_markers(methods: Iterable[str]) -> dict[str, str]:
    """One marker per method, so the plots also read in greyscale."""
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(set(methods)))}


def _figure(width: float = 6.4, height: float = 4.0, cols: int = 1, right: float = 0.2) -> tuple[Figure, list]:
    """A figure with fixed margins (in inches): a constrained layout would double the drawing time."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.75 / width, right=1 - right / width, bottom=0.55 / height, top=1 - 0.15 / height,
                        wspace=0.3 if cols > 1 else 0.2)
    axes = [fig.add_subplot(1, cols, i + 1) for i in range(cols)]
    for ax in axes:
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def pareto_plot(front: pd.DataFrame, colors: Mapping[str, str], path: Path, eps: float,
                verifier: str = "best") -> Path:
    """Clean accuracy vs ACR, one colour per method, each method's Pareto front drawn as a line."""
    markers = method_markers(colors)
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        for method, group in front.groupby("method", sort=True):
            color = colors.get(method, PALETTE[-1])
            ax.scatter(100 * group["clean_accuracy"], group["acr"], s=28, color=color, alpha=0.55,
                       marker=markers.get(method, "o"), linewidths=0)
            on = group[group["on_front"]].sort_values("clean_accuracy")
            ax.plot(100 * on["clean_accuracy"], on["acr"], color=color, linewidth=1.8,
                    marker=markers.get(method, "o"), markersize=6, label=str(method))
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(f"ACR ({verifier}), cap {format_eps(eps)}")
        ax.set_ylim(bottom=0)
        if len(front):
            ax.legend(loc="best", fontsize=9)
        return _save(fig, path)


def certified_curve(radii: pd.DataFrame, eps: float, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of samples correct with ``radius_best >= e`` on a fine grid of e in [0, eps]."""
    grid = np.linspace(0.0, eps, points)
    radius = pd.to_numeric(radii["radius_best"], errors="coerce").fillna(0.0).to_numpy()
    correct = radii["correct"].astype(bool).to_numpy() if "correct" in radii else radius > 0
    if len(radius) == 0:
        return grid, np.zeros_like(grid)
    certified = correct[None, :] & (radius[None, :] >= grid[:, None] - 1e-12)
    return grid, certified.mean(axis=1)


def certified_plot(curves: Mapping[str, tuple[Sequence[float], Sequence[float], str]],
                   colors: Mapping[str, str], path: Path, eps: float, eps_test: Sequence[float]) -> Path:
    """Certified accuracy vs eps: one curve per method, ``curves[method] = (eps, accuracy, label)``."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        for e in eps_test:
            ax.axvline(e, color="#bbbbbb", linewidth=1, linestyle=":")
        for method, (xs, ys, label) in sorted(curves.items()):
            ax.plot(xs, 100 * np.asarray(ys, dtype=float), color=colors.get(method, PALETTE[-1]),
                    linewidth=1.8, label=label, drawstyle="steps-post")
        ax.set_xlim(0, eps)
        ax.set_ylim(0, 100)
        ax.set_xlabel("eps (pixel units of [0,1] images)")
        ax.set_ylabel("certified accuracy (%)")
        if curves:
            ax.legend(loc="upper right", fontsize=9)
        return _save(fig, path)


def radius_histogram(radii: pd.DataFrame, eps: float, eps_test: Sequence[float], path: Path,
                     color: str = PALETTE[0]) -> Path:
    """Histogram of ``radius_best``: correctly classified samples in colour, misclassified (r = 0) in grey."""
    radius = pd.to_numeric(radii["radius_best"], errors="coerce").fillna(0.0).clip(0, eps).to_numpy()
    correct = radii["correct"].astype(bool).to_numpy() if "correct" in radii else radius > 0
    bins = np.linspace(0.0, eps, 26)
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure(6.4, 3.4)
        ax.hist([radius[correct], radius[~correct]], bins=bins, stacked=True, color=[color, "#bbbbbb"],
                label=["correct", "misclassified"], edgecolor="white", linewidth=0.5)
        for e in eps_test:
            ax.axvline(e, color=INK, linewidth=1, linestyle=":")
        ax.set_xlim(0, eps)
        ax.set_xlabel(f"certified radius (best verifier), cap {format_eps(eps)}")
        ax.set_ylabel("samples")
        ax.legend(loc="upper center", fontsize=9)
        return _save(fig, path)


LOSS_COLUMNS = ("loss", "robust_loss", "clean_loss", "reg_loss")
ACC_COLUMNS = ("train_acc", "val_acc", "val_ibp_cert_acc")


def history_plot(history: pd.DataFrame, path: Path) -> Path:
    """Training curves: losses (left) and accuracies with the eps ramp (right), against epochs."""
    x = history["epoch"] if "epoch" in history else pd.Series(range(1, len(history) + 1))
    with matplotlib.rc_context(RC):
        fig, (left, right) = _figure(8.0, 3.4, cols=2, right=0.7)
        for i, column in enumerate(c for c in LOSS_COLUMNS if c in history):
            left.plot(x, history[column], color=PALETTE[i], linewidth=1.6, marker="o", markersize=3,
                      label=column.replace("_", " "))
        left.set_xlabel("epoch")
        left.set_ylabel("loss")
        left.legend(fontsize=8)
        for i, column in enumerate(c for c in ACC_COLUMNS if c in history):
            right.plot(x, 100 * history[column], color=PALETTE[i], linewidth=1.6, marker="o", markersize=3,
                       label=column.replace("_", " "))
        right.set_xlabel("epoch")
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_ylabel("accuracy (%)")
        right.set_ylim(0, 100)
        if "eps_t" in history:
            twin = right.twinx()
            twin.plot(x, history["eps_t"], color="#999999", linewidth=1.2, linestyle="--", label="eps_t")
            twin.set_ylabel("training eps", color="#777777")
            twin.set_ylim(bottom=0)
            twin.spines["right"].set_visible(True)
            twin.tick_params(axis="y", colors="#777777")
        right.legend(fontsize=8, loc="lower right")
        return _save(fig, path)
