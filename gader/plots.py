"""Figures people would rather look at than read: CMC, DET, ROC, view matrices, training curves, DHS,
what a video gave.

Matplotlib with the Agg backend (no display needed); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display needed
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backend_bases import FigureCanvasBase

from gader import metrics
from gader.errors import GaderError

# What matplotlib can write here (png, pdf, svg, jpg, eps, tif, webp, ...), asked of matplotlib itself
IMAGE_SUFFIXES = tuple(sorted("." + kind for kind in FigureCanvasBase.get_supported_filetypes()))


def image_path(path: str | Path) -> Path:
    """Where a figure goes: a name without a suffix gets .png (what matplotlib would write, so the name the
    command prints is the file's); a suffix matplotlib cannot write is refused before any work is done."""
    path = Path(path)
    if not path.suffix:
        return path.with_suffix(".png")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise GaderError(f"{path}: matplotlib writes figures as {' '.join(IMAGE_SUFFIXES)}; got {path.suffix!r}")
    return path


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write and close a figure (see ``image_path`` for the name); returns the path written."""
    path = image_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def plot_cmc(curves: Mapping[str, np.ndarray], path: str | Path, title: str = "CMC") -> Path:
    """curves: label -> CMC as fractions [max_rank] or percentages."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(5.5, 4), layout="constrained")
    drawn = 0
    for label, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=float)
        if not np.isfinite(cmc).any():  # nothing to rank (e.g. CASIA-B cross-view with a single view)
            continue
        values = cmc * 100.0 if np.nanmax(cmc) <= 1.0 else cmc
        axes.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
        drawn += 1
    axes.set(xlabel="rank", ylabel="identification rate (%)", title=title, ylim=(0, 101))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # ranks are whole numbers
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(loc="lower right")
    else:
        axes.text(
            0.5, 0.5, "no probe has a gallery to rank against", ha="center", va="center", transform=axes.transAxes
        )
    return save_figure(figure, path)


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
    return save_figure(figure, path)


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
    return save_figure(figure, path)


def plot_fused_scores(
    genuine: np.ndarray,
    impostors: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    path: str | Path,
    title: str = "Fused scores",
) -> Path:
    """Share of pairs scoring at least x, against x, on a log axis: genuine pairs (the true match rate) and the
    impostor pairs of each kind (the false match rate each gets), with the calibrated thresholds. Where the
    impostor curves part, one threshold means different false match rates for differently scored pairs."""
    figure, axes = plt.subplots(figsize=(6.5, 4.5), layout="constrained")

    def survival(scores: np.ndarray, style: str, label: str, colour: str | None = None) -> None:
        ordered = np.sort(np.asarray(scores, np.float64))[::-1]  # highest first
        share = np.arange(1, ordered.size + 1) / ordered.size  # share of pairs scoring >= each score
        axes.semilogy(ordered, share, style, color=colour, label=f"{label} ({ordered.size:,} pairs)")

    survival(genuine, "-", "genuine pairs", "black")
    every = [np.asarray(v) for v in impostors.values() if np.size(v)]
    if len(every) > 1:
        survival(np.concatenate(every), "-", "all impostor pairs", "grey")
    colours = {"gait": "tab:blue", "appearance": "tab:orange", "both": "tab:green"}  # one colour per kind, every plot
    for kind, scores in impostors.items():
        if np.size(scores):
            survival(scores, "--", f"impostors scored on {kind}", colours.get(kind))
    for name, threshold in thresholds.items():
        axes.axvline(threshold, color="red", linewidth=0.7, linestyle=":")
        axes.annotate(name, (threshold, 1.0), rotation=90, va="top", ha="right", fontsize=7, color="red")
    lowest = 1.0 / max(max((np.size(v) for v in every), default=1), np.size(genuine))
    axes.set(
        xlabel="fused score (impostor standard deviations)",
        ylabel="share of pairs scoring at least x",
        ylim=(lowest / 2, 1.5),
        title=title,
    )
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower left", fontsize=8)
    return save_figure(figure, path)


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
    return save_figure(figure, path)


def plot_training_curves(records: list[dict], path: str | Path) -> Path:
    """Loss terms against iterations, with validation rank-1 on a second axis."""
    steps = [r for r in records if "loss" in r]
    checks = [r for r in records if "validation" in r]
    figure, axes = plt.subplots(figsize=(7, 4), layout="constrained")
    if steps:
        x = [r["iteration"] for r in steps]
        for key, style in (("loss", "-"), ("sil_triplet", "--"), ("sil_ce", ":"), ("distill", "-.")):
            values = [r.get(key) for r in steps]
            if any(v is not None for v in values):
                # markers when there are few points: a single logged step draws no line at all
                marker = "o" if len(x) < 10 else None
                axes.plot(x, [np.nan if v is None else v for v in values], style, marker=marker, label=key)
        axes.set(xlabel="iteration", ylabel="loss")
        axes.grid(alpha=0.3)
    if checks:
        right = axes.twinx()
        x = [r["iteration"] for r in checks]
        rank1 = [r["validation"]["rank1"] for r in checks]
        if isinstance(rank1[0], dict):  # CASIA-B: one curve per condition
            for name in ("NM", "BG", "CL"):
                right.plot(x, [v.get(name) for v in rank1], "o-", label=f"val {name}", alpha=0.8)
        else:
            right.plot(x, rank1, "o-", color="black", label="val rank-1")
        right.set(ylabel="validation rank-1 (%)", ylim=(0, 100))
        right.legend(loc="lower right", fontsize=8)
    axes.legend(loc="upper right", fontsize=8)
    axes.set_title("training")
    return save_figure(figure, path)


DETECTOR_COLOURS = {  # per class in DETECTOR_CLASSES order: full-gait, full-standing, partial-gait, partial-standing
    0: (0.20, 0.65, 0.30),
    1: (0.25, 0.45, 0.85),
    2: (0.95, 0.60, 0.10),
    3: (0.85, 0.20, 0.20),
}


def plot_detection(dhs: np.ndarray, report, path: str | Path, truth: np.ndarray | None = None, title: str = "") -> Path:
    """The DHS with the detector's gait segments and kept windows on top, and colour bars of the per-frame
    labels (detected, and ground truth when given) underneath."""
    from gader.data.record import DETECTOR_CLASSES

    frames = dhs.shape[1]
    rows = 2 if truth is None else 3
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(max(6, min(16, frames / 12)), 3.2 + 0.4 * rows),
        height_ratios=[6] + [1] * (rows - 1),
        sharex=True,
        layout="constrained",
    )
    axes[0].imshow(
        dhs, cmap="gray", aspect="auto", interpolation="nearest", extent=(-0.5, frames - 0.5, dhs.shape[0] - 0.5, -0.5)
    )
    for start, end, _cls, _score in report.windows:
        axes[0].axvspan(start - 0.5, end + 0.5, color="yellow", alpha=0.08)
    for segment in report.segments:
        axes[0].add_patch(
            matplotlib.patches.Rectangle(
                (segment.start - 0.5, -0.5),
                segment.end - segment.start + 1,
                dhs.shape[0],
                fill=False,
                edgecolor="yellow",
                linewidth=2,
            )
        )
        axes[0].text(segment.start, 1.5, f"gait {segment.score:.2f}", color="yellow", fontsize=8, va="top")
    verdict = "usable" if report.usable else "not usable"
    axes[0].set(ylabel="body width", title=title or f"DHS: gait fraction {report.gait_fraction:.2f}, {verdict}")

    def bar(axis, classes, label):
        colours = np.array([DETECTOR_COLOURS[int(c)] for c in classes])[None]
        axis.imshow(colours, aspect="auto", extent=(-0.5, frames - 0.5, 0, 1))
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)

    bar(axes[1], [DETECTOR_CLASSES.index(label) for label in report.frame_labels], "detected")
    if truth is not None:
        bar(axes[2], truth, "truth")
    axes[-1].set_xlabel("frame")
    handles = [
        matplotlib.patches.Patch(color=DETECTOR_COLOURS[i], label=name) for i, name in enumerate(DETECTOR_CLASSES)
    ]
    axes[0].legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)
    return save_figure(figure, path)


TRACK_COLOURS = [(230, 60, 60), (60, 120, 230), (60, 190, 90), (230, 170, 40), (170, 80, 210), (40, 190, 200)]


def plot_video_extraction(extraction, path: str | Path, columns: int = 6, title: str = "") -> Path:
    """Frames with every track's mask and box overlaid (one colour per track), and the main track's aligned
    silhouettes and RGB crops, so a person can see at a glance what the video gave."""
    video, masks = extraction.video, extraction.masks
    picks = np.linspace(0, len(video.frames) - 1, columns).astype(int)
    main = extraction.main.record
    aligned = np.linspace(0, main.frames - 1, columns * 2).astype(int)
    figure = plt.figure(figsize=(2.2 * columns, 7.4))
    grid = figure.add_gridspec(3, columns * 2, height_ratios=[3.2, 1, 1])
    owner = {}
    for track in extraction.tracks:  # each video frame's (track, box in processed pixels), for colouring
        arrays = track.record.frame_arrays
        for frame, box in zip(arrays["frame_index"], arrays["boxes"], strict=True):
            owner.setdefault(int(frame), []).append((track.track_id, box * video.scale))
    for column, slot in enumerate(picks):
        axis = figure.add_subplot(grid[0, 2 * column : 2 * column + 2])
        image = video.frames[slot].astype(np.float32)
        mask = masks[slot] > 127
        frame_number = int(video.frame_index[slot])
        for track_id, box in owner.get(frame_number, []):
            colour = np.array(TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)], np.float32)
            x0, y0, x1, y1 = (int(v) for v in box)
            region = np.zeros_like(mask)
            region[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
            image[region] = 0.45 * image[region] + 0.55 * colour
            axis.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour / 255, linewidth=1.2))
            axis.text(x0, y0 - 2, f"#{track_id}", color=colour / 255, fontsize=8, va="bottom")
        axis.imshow(image.astype(np.uint8))
        axis.set_title(f"frame {frame_number}", fontsize=8)
        axis.axis("off")
    for column, index in enumerate(aligned):
        axis = figure.add_subplot(grid[1, column])
        axis.imshow(main.silhouettes[index], cmap="gray", vmin=0, vmax=255)
        axis.axis("off")
        if main.rgb is not None:
            axis = figure.add_subplot(grid[2, column])
            axis.imshow(main.rgb[index])
            axis.axis("off")
    tracks = ", ".join(f"#{t.track_id}: {t.record.frames} frames" for t in extraction.tracks)
    figure.suptitle(title or f"{len(video.frames)} frames, tracks {tracks} (main #{extraction.main.track_id})")
    return save_figure(figure, path)


def plot_sequence_strips(
    rows: Sequence[tuple[str, np.ndarray]], path: str | Path, frames: int = 12, title: str = ""
) -> Path:
    """Aligned silhouette sequences side by side, one row each: ``frames`` frames spread evenly over the
    sequence (every frame of a shorter one), the row's label above it. For looking at sequences a number
    cannot judge, such as the ones a detector refused, beside others of the same person and view.

    ``rows``: (label, silhouettes uint8 [T, H, W]) with T >= 1 and one H x W for all rows."""
    if not rows:
        raise GaderError("no sequences to draw")
    for label, silhouettes in rows:
        if silhouettes.ndim != 3 or len(silhouettes) == 0:
            raise GaderError(f"{label}: strips need [T, H, W] silhouettes with T >= 1, got shape {silhouettes.shape}")
    shapes = {silhouettes.shape[1:] for _, silhouettes in rows}
    if len(shapes) != 1:
        raise GaderError(f"strips need sequences of one frame size, got {sorted(shapes)}")
    height, width = shapes.pop()
    gap = 2  # grey columns between frames, so that frames and their edges stay apart
    figure, axes = plt.subplots(
        len(rows), 1, figsize=(frames * (width + gap) / 40, len(rows) * (height / 40 + 0.35)), facecolor="0.85"
    )
    for axis, (label, silhouettes) in zip(np.atleast_1d(axes), rows, strict=True):
        picks = np.unique(np.linspace(0, len(silhouettes) - 1, min(frames, len(silhouettes))).round().astype(int))
        strip = np.full((height, frames * (width + gap)), 110, np.uint8)  # grey also where a short one ends
        for slot, index in enumerate(picks):
            strip[:, slot * (width + gap) : slot * (width + gap) + width] = silhouettes[index]
        axis.imshow(strip, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axis.set_title(label, fontsize=11, loc="left")
        axis.axis("off")
    top = 1.0
    if title:
        figure.suptitle(title, fontsize=12)
        top = 1 - 0.45 / figure.get_figheight()  # room for the title above the first row: about 0.45 inch
    figure.tight_layout(rect=(0, 0, 1, top))
    return save_figure(figure, path)
