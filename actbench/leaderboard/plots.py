"""Matplotlib figures of the leaderboard, saved as SVG (print quality, no JavaScript needed).

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no GUI backend), so the
site builds headless and never touches global plotting state. Text stays text in the SVG
(``svg.fonttype = none``) so the browser renders it with the page's fonts, and a fixed hash salt and no
date keep the files reproducible. Legends sit to the right of the axes, never over the data. Published
reference points are hollow markers labelled "published, not re-run here".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from actbench.config import format_eps
from actbench.leaderboard.literature import NOTICE, LiteraturePoint

# Okabe-Ito: distinguishable for colour-blind readers, calm on white
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#000000",
           "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
INK, GRID, LITERATURE = "#333333", "#e6e6e6", "#444444"
STATUS_COLORS = {"certified": "#009E73", "falsified": "#D55E00", "unknown": "#BBBBBB"}
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


@dataclass
class Curve:
    """Certified accuracy vs eps of one configuration (seed mean); ``highlight`` draws it bold and labelled."""

    method: str
    eps: np.ndarray
    accuracy: np.ndarray
    label: str
    highlight: bool = False


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One stable colour per method name (sorted order, palette cycles)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def method_markers(methods: Iterable[str]) -> dict[str, str]:
    """One marker per method, so the plots also read in greyscale."""
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(set(methods)))}


def _figure(width: float = 7.6, height: float = 4.0, cols: int = 1, legend: float = 2.2,
            left: float = 0.75) -> tuple[Figure, list]:
    """A figure with fixed margins (in inches) and ``legend`` inches right of the axes for the legend
    (a constrained layout would double the drawing time)."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - (legend + 0.15) / width, bottom=0.55 / height,
                        top=1 - 0.15 / height, wspace=0.35 if cols > 1 else 0.2)  # fmt: skip
    axes = [fig.add_subplot(1, cols, i + 1) for i in range(cols)]
    for ax in axes:
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, axes


def _label_room(labels: Sequence[str], size: float) -> float:
    """Inches left of the axes for horizontal tick labels of ``size`` points (about 0.55 em a character)."""
    longest = max((len(str(label)) for label in labels), default=4)
    return min(3.2, 0.25 + longest * size * 0.55 / 72)


def _legend_outside(ax, fontsize: float = 8.5) -> None:  # noqa: ANN001 - a matplotlib Axes
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize=fontsize, handlelength=1.8)  # fmt: skip


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def _literature_markers(ax, xs: Sequence[float], ys: Sequence[float]) -> None:  # noqa: ANN001
    if len(xs):
        ax.scatter(xs, ys, s=46, facecolors="none", edgecolors=LITERATURE, linewidths=1.3, marker="o",
                   label=NOTICE, zorder=4, clip_on=False)  # fmt: skip


def front_plot(front: pd.DataFrame, colors: Mapping[str, str], path: Path, y: str, eps: float, headline: float,
               literature: Sequence[LiteraturePoint] = ()) -> Path:
    """Clean accuracy vs ACR (``y="acr"``, the ACERT paper's view) or vs certified accuracy at the headline
    eps (``y="cert"``, CTBench's view): every configuration (seed mean) faint, each method's front of that
    view as a line; published points (with a clean accuracy, at that eps) as hollow markers."""
    markers = method_markers(colors)
    column = "on_front" if y == "acr" else "on_front_cert"
    scale = 1.0 if y == "acr" else 100.0
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        for method, group in front.groupby("method", sort=True):
            group = group[pd.to_numeric(group[y], errors="coerce").notna()]
            color, marker = colors.get(method, PALETTE[-1]), markers.get(method, "o")
            ax.scatter(100 * group["clean_accuracy"], scale * group[y], s=24, color=color, alpha=0.35,
                       marker=marker, linewidths=0)  # fmt: skip
            on = group[group[column].astype(bool)].sort_values("clean_accuracy")
            ax.plot(100 * on["clean_accuracy"], scale * on[y], color=color, linewidth=1.8, marker=marker,
                    markersize=6, label=str(method))  # fmt: skip
        if y == "acr":
            points = [p for p in literature if p.clean_accuracy is not None and p.acr is not None]
            _literature_markers(ax, [100 * p.clean_accuracy for p in points], [p.acr for p in points])
            ax.set_ylabel(f"ACR (best verifier), cap {format_eps(eps)}")
        else:
            points = [p for p in literature if p.clean_accuracy is not None and abs(p.eps - headline) < 1e-9]
            _literature_markers(ax, [100 * p.clean_accuracy for p in points],
                                [100 * p.certified_accuracy for p in points])  # fmt: skip
            ax.set_ylabel(f"certified accuracy @{format_eps(headline)} (%)")
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylim(bottom=0)
        _legend_outside(ax)
        return _save(fig, path)


def certified_curve(radii: pd.DataFrame, eps: float, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of samples correct with ``radius_best >= e`` on a fine grid of e in [0, eps]."""
    grid = np.linspace(0.0, eps, points)
    radius = pd.to_numeric(radii["radius_best"], errors="coerce").fillna(0.0).to_numpy()
    correct = radii["correct"].astype(bool).to_numpy() if "correct" in radii else radius > 0
    if len(radius) == 0:
        return grid, np.zeros_like(grid)
    radius = np.where(correct, radius, -1.0)
    ordered = np.sort(radius)  # certified at e: correct and radius >= e, counted by one binary search per e
    counts = len(ordered) - np.searchsorted(ordered, grid - 1e-12, side="left")
    return grid, counts / len(ordered)


def certified_plot(curves: Sequence[Curve], colors: Mapping[str, str], path: Path, eps: float,
                   eps_test: Sequence[float], literature: Sequence[LiteraturePoint] = ()) -> Path:
    """Certified accuracy vs eps: every configuration faint, each method's highlighted configuration bold
    and labelled, published numbers as hollow markers at their eps."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        for e in eps_test:
            ax.axvline(e, color="#bbbbbb", linewidth=1, linestyle=":")
        for curve in sorted(curves, key=lambda c: (c.highlight, c.method)):
            color = colors.get(curve.method, PALETTE[-1])
            ax.plot(curve.eps, 100 * np.asarray(curve.accuracy, dtype=float), color=color,
                    linewidth=2.0 if curve.highlight else 0.9, alpha=1.0 if curve.highlight else 0.3,
                    label=curve.label if curve.highlight else None, drawstyle="steps-post")  # fmt: skip
        inside = [p for p in literature if p.eps <= eps * (1 + 1e-9)]
        _literature_markers(ax, [p.eps for p in inside], [100 * p.certified_accuracy for p in inside])
        ax.set_xlim(0, eps)
        ax.set_ylim(0, 100)
        ax.set_xlabel("eps (pixel units of [0,1] images)")
        ax.set_ylabel("certified accuracy (%)")
        _legend_outside(ax, 8)
        return _save(fig, path)


def hypervolume_plot(table: pd.DataFrame, colors: Mapping[str, str], path: Path, headline: float) -> Path:
    """Per method, the two hypervolumes of its front of configuration means as horizontal bars."""
    methods = list(table["method"])[::-1]
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure(7.6, max(1.6, 0.42 * len(methods) + 0.9), left=_label_room(methods, 10))
        ys = np.arange(len(methods))
        for offset, column, hatch, label in ((0.2, "hv_cert", "", f"clean × cert @{format_eps(headline)}"),
                                             (-0.2, "hv_acr", "///", "clean × ACR/eps")):
            values = [float(table.loc[table["method"] == m, column].iloc[0]) for m in methods]
            ax.barh(ys + offset, values, height=0.38, color=[colors.get(m, PALETTE[-1]) for m in methods],
                    hatch=hatch, edgecolor="white", linewidth=0.5, label=label)  # fmt: skip
        ax.set_yticks(ys, methods)
        ax.set_xlim(0, 1)
        ax.set_xlabel("hypervolume of the method's front (reference point 0, 0; 1 is perfect)")
        ax.grid(False, axis="y")
        leg = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, borderaxespad=0.0)
        for handle in leg.legend_handles:
            handle.set_facecolor("#999999")
        return _save(fig, path)


def status_plot(status: pd.DataFrame, path: Path, headline: float) -> Path:
    """Per configuration (seed means), the shares of test samples certified / falsified / unknown at the
    headline eps, as stacked horizontal bars; complete-verification rows are marked in their label."""
    labels = [f"{r['method']} {r['config_label']}" + (" [complete]" if r["complete"] else "")
              for _, r in status.iterrows()][::-1]  # fmt: skip
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure(7.6, max(1.6, 0.3 * len(labels) + 0.9), left=_label_room(labels, 8), legend=1.3)
        ys = np.arange(len(labels))
        left = np.zeros(len(labels))
        for kind, color in STATUS_COLORS.items():
            values = 100 * status[kind].to_numpy(dtype=float)[::-1]
            ax.barh(ys, values, left=left, height=0.7, color=color, label=kind, edgecolor="white", linewidth=0.5)
            left += values
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"test samples at eps {format_eps(headline)} (%)")
        ax.grid(False, axis="y")
        _legend_outside(ax)
        return _save(fig, path)


def radius_histogram(radii: pd.DataFrame, eps: float, eps_test: Sequence[float], path: Path,
                     color: str = PALETTE[0]) -> Path:
    """Histogram of ``radius_best``: correctly classified samples in colour, misclassified (r = 0) in grey."""
    radius = pd.to_numeric(radii["radius_best"], errors="coerce").fillna(0.0).clip(0, eps).to_numpy()
    correct = radii["correct"].astype(bool).to_numpy() if "correct" in radii else radius > 0
    bins = np.linspace(0.0, eps, 26)
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure(7.2, 3.4, legend=1.5)
        ax.hist([radius[correct], radius[~correct]], bins=bins, stacked=True, color=[color, "#bbbbbb"],
                label=["correct", "misclassified"], edgecolor="white", linewidth=0.5)
        for e in eps_test:
            ax.axvline(e, color=INK, linewidth=1, linestyle=":")
        ax.set_xlim(0, eps)
        ax.set_xlabel(f"certified radius (best verifier), cap {format_eps(eps)}")
        ax.set_ylabel("samples")
        _legend_outside(ax, 9)
        return _save(fig, path)


LOSS_COLUMNS = ("loss", "robust_loss", "clean_loss", "reg_loss")
ACC_COLUMNS = ("train_acc", "val_acc", "val_ibp_cert_acc")


def history_plot(history: pd.DataFrame, path: Path) -> Path:
    """Training curves: losses (left) and accuracies with the eps ramp (right), against epochs; each
    panel's legend below it, outside the data."""
    x = history["epoch"] if "epoch" in history else pd.Series(range(1, len(history) + 1))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8.6, 4.0))
        fig.subplots_adjust(left=0.08, right=0.92, bottom=0.36, top=0.96, wspace=0.32)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for ax in (left, right):
            ax.grid(True, color=GRID, linewidth=0.8)
            ax.set_axisbelow(True)
        for i, column in enumerate(c for c in LOSS_COLUMNS if c in history):
            left.plot(x, history[column], color=PALETTE[i], linewidth=1.6, marker="o", markersize=3,
                      label=column.replace("_", " "))
        left.set_xlabel("epoch")
        left.set_ylabel("loss")
        for i, column in enumerate(c for c in ACC_COLUMNS if c in history):
            right.plot(x, 100 * history[column], color=PALETTE[i], linewidth=1.6, marker="o", markersize=3,
                       label=column.replace("_", " "))
        right.set_xlabel("epoch")
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_ylabel("accuracy (%)")
        right.set_ylim(0, 100)
        handles, names = right.get_legend_handles_labels()
        if "eps_t" in history:
            twin = right.twinx()
            twin.plot(x, history["eps_t"], color="#999999", linewidth=1.2, linestyle="--", label="eps_t")
            twin.set_ylabel("training eps", color="#777777")
            twin.set_ylim(bottom=0)
            twin.spines["right"].set_visible(True)
            twin.tick_params(axis="y", colors="#777777")
            more, more_names = twin.get_legend_handles_labels()
            handles, names = handles + more, names + more_names
        for ax, (h, n) in ((left, left.get_legend_handles_labels()), (right, (handles, names))):
            if h:
                ax.legend(h, n, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8,
                          borderaxespad=0.0)  # fmt: skip
        return _save(fig, path)
