"""Figures people would rather look at than read: CMC, DET, ROC, CASIA-B view matrices.

Matplotlib with the Agg backend (no display needed); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gader import metrics


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_cmc(curves: Mapping[str, np.ndarray], path: str | Path, title: str = "CMC") -> Path:
    """curves: label -> CMC as fractions [max_rank] or percentages."""
    figure, axes = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for label, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=float)
        values = cmc * 100.0 if np.nanmax(cmc) <= 1.0 else cmc
        axes.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    axes.set(xlabel="rank", ylabel="identification rate (%)", title=title, ylim=(0, 101))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _save(figure, path)


_DET_TICKS = (1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5)


def plot_det(curves: Mapping[str, metrics.RocCurve], path: str | Path, title: str = "DET") -> Path:
    """Detection error trade-off: FRR against FAR on normal-deviate axes."""
    from statistics import NormalDist

    normal = NormalDist()
    figure, axes = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    for label, curve in curves.items():
        x, y = metrics.det_coordinates(curve)
        eer = metrics.equal_error_rate(curve)
        axes.plot(x, y, label=f"{label} (EER {100 * eer:.2f}%)")
    ticks = [normal.inv_cdf(p) for p in _DET_TICKS]
    labels = [f"{100 * p:g}%" for p in _DET_TICKS]
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    low, high = normal.inv_cdf(5e-5), normal.inv_cdf(0.6)
    axes.set(
        xlim=(low, high),
        ylim=(low, high),
        xlabel="false accept rate (FAR)",
        ylabel="false reject rate (FRR)",
        title=title,
    )
    axes.plot([low, high], [low, high], color="grey", linewidth=0.6, linestyle=":")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def plot_roc(curves: Mapping[str, metrics.RocCurve], path: str | Path, title: str = "ROC") -> Path:
    figure, axes = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for label, curve in curves.items():
        far = np.maximum(curve.far, 1.0 / (10 * curve.impostor))
        axes.semilogx(far, 100 * curve.tar, label=label)
    for far in metrics.DEFAULT_FARS:
        axes.axvline(far, color="grey", linewidth=0.5, linestyle=":")
    axes.set(xlabel="false accept rate (FAR)", ylabel="true accept rate (%)", title=title, ylim=(0, 101))
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_view_matrix(accuracy: np.ndarray, views: Sequence[str], conditions: Sequence[str], path: str | Path) -> Path:
    """accuracy: [conditions, probe views, gallery views] rank-1 percentages (NaN where empty, grey)."""
    figure, axes_row = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 4), layout="constrained")
    axes_row = np.atleast_1d(axes_row)
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    for axes, name, matrix in zip(axes_row, conditions, accuracy, strict=True):
        shown = np.array(matrix, dtype=float)
        np.fill_diagonal(shown, np.nan)  # identical views are excluded from the protocol: grey
        image = axes.imshow(shown, vmin=0, vmax=100, cmap=colours)
        axes.set_xticks(range(len(views)), views, rotation=90, fontsize=7)
        axes.set_yticks(range(len(views)), views, fontsize=7)
        axes.set(xlabel="gallery view", ylabel="probe view", title=f"{name} rank-1 (%)")
    figure.colorbar(image, ax=list(axes_row), shrink=0.8)
    return _save(figure, path)
