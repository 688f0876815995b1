"""A contact sheet of SynthGait sequences: full frames, aligned silhouettes, RGB crops and the DHS band,
with real CASIA-B silhouettes of the same view alongside for comparison."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gader.data.record import SequenceRecord
from gader.data.synth.generator import Rendered, SequenceSpec, render_frames
from gader.dhs import double_helical_signature
from gader.errors import GaderError
from gader.plots import save_figure

STRIP_FRAMES = 8
LABEL_COLOURS = {  # per-frame ground truth drawn under the DHS
    (True, True): (0.20, 0.65, 0.30),  # full body, walking
    (False, True): (0.25, 0.45, 0.85),  # full body, standing
    (True, False): (0.95, 0.60, 0.10),  # partial, walking
    (False, False): (0.85, 0.20, 0.20),  # partial, standing
}


def _strip(frames: np.ndarray, count: int = STRIP_FRAMES) -> np.ndarray:
    """[T, H, W(, 3)] -> one image of ``count`` frames side by side, evenly spread over the first ~1.2 s."""
    picks = np.linspace(0, min(len(frames), 30) - 1, min(count, len(frames))).astype(int)
    return np.concatenate([frames[i] for i in picks], axis=1)


def _label_bar(record: SequenceRecord) -> np.ndarray:
    """[4, T, 3] colour bar of the per-frame labels."""
    colours = [
        LABEL_COLOURS[(bool(g), bool(f))] for g, f in zip(record.labels.gait, record.labels.full_body, strict=True)
    ]
    return np.repeat(np.array(colours)[None], 4, axis=0)


def _pick_wild(seed: int, want: str, tries: int = 40) -> Rendered:
    """A wild sequence that shows ``want`` ("standing" or "partial") for at least a second."""
    for subject in range(tries):
        spec = SequenceSpec(seed, subject, "wild-01", 90 if want == "standing" else 36, "wild")
        rendered = render_frames(spec)
        labels = rendered.record.labels
        count = (~labels.gait).sum() if want == "standing" else (~labels.full_body).sum()
        if count >= 25:
            return rendered
    return rendered


def make_preview(out: str | Path, seed: int = 0, casia_root: str | Path | None = None) -> Path:
    """Write the contact sheet to ``out`` (PNG) and return its path."""
    examples = [
        ("casia NM, 90°", render_frames(SequenceSpec(seed, 0, "nm-01", 90))),
        ("casia BG, 54°", render_frames(SequenceSpec(seed, 1, "bg-01", 54))),
        ("casia CL, 0°", render_frames(SequenceSpec(seed, 2, "cl-01", 0))),
        ("wild, with standing", _pick_wild(seed, "standing")),
        ("wild, with partial body", _pick_wild(seed + 1, "partial")),
    ]
    real = None
    if casia_root is not None:  # asked for: a missing folder or sequence is an error, not a silent omission
        from gader.data import open_dataset

        dataset = open_dataset(casia_root)
        if "001/nm-01/090" not in {info.key for info in dataset.infos}:
            raise GaderError(f"{casia_root}: no sequence 001/nm-01/090 to show beside the synthetic ones")
        real = dataset.load("001/nm-01/090")
    rows = len(examples) + (real is not None)
    figure = plt.figure(figsize=(16, 2.2 * rows), layout="constrained")
    grid = figure.add_gridspec(rows, 3, width_ratios=[1.1, 4.2, 1.6])
    row = 0
    if real is not None:
        axes = figure.add_subplot(grid[row, 1])
        axes.imshow(_strip(real.silhouettes), cmap="gray")
        axes.set_title("real CASIA-B 001 nm-01 90° (for comparison)", fontsize=9)
        axes.axis("off")
        dhs_axes = figure.add_subplot(grid[row, 2])
        dhs_axes.imshow(double_helical_signature(real.silhouettes), cmap="gray", aspect="auto")
        dhs_axes.set_title("its DHS (knee row over time)", fontsize=9)
        dhs_axes.axis("off")
        row += 1
    for title, rendered in examples:
        record = rendered.record
        frame_axes = figure.add_subplot(grid[row, 0])
        middle = rendered.rgb.shape[0] // 2
        frame_axes.imshow(rendered.rgb[middle])
        frame_axes.contour(rendered.masks[middle] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
        meta = record.meta
        frame_axes.set_title(f"{title}\n{meta['distance_m']:.1f} m, pitch {meta['pitch_deg']:.0f}°", fontsize=8)
        frame_axes.axis("off")
        strip_axes = figure.add_subplot(grid[row, 1])
        silhouettes = np.repeat(record.silhouettes[..., None], 3, axis=-1)
        strip_axes.imshow(np.concatenate([_strip(silhouettes), _strip(record.rgb)], axis=0))
        strip_axes.set_title(
            f"aligned silhouettes and RGB crops; ratios {record.ratios.min():.2f}-{record.ratios.max():.2f}",
            fontsize=8,
        )
        strip_axes.axis("off")
        dhs_axes = figure.add_subplot(grid[row, 2])
        dhs = double_helical_signature(record.silhouettes)
        image = np.repeat(dhs[:, :, None], 3, axis=2)
        dhs_axes.imshow(
            np.concatenate([image, np.ones((2, dhs.shape[1], 3)), _label_bar(record)], axis=0), aspect="auto"
        )
        dhs_axes.set_title("DHS; labels: green walk, blue stand, orange/red partial", fontsize=8)
        dhs_axes.axis("off")
        row += 1
    return save_figure(figure, out, dpi=100)
