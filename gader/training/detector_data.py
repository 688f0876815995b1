"""Training data for the gait detector: labelled DHS of synthetic and real sequences, and random windows.

Sources (GADER §3.1 plus what real data can give):
- SynthGait ``wild`` sequences, labelled per frame (walking / standing, full / partial body);
- real CASIA-B walking sequences: every frame full body + gait;
- real-derived partial bodies: CASIA-B frames cut at the hip or chest *before* pretreatment (as a frame
  edge or an occluder would), then pretreated again: partial + gait;
- real-derived standing: a near-static stretch built from one real frame with small jitter (sway,
  segmentation noise): full + standing (and, cut, partial + standing).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gader.data.dataset import SequenceDataset
from gader.data.record import FrameLabels, SequenceRecord, cut_sides
from gader.detector import RATIO_CHANNELS, DetectorConfig, clip_of, dhs_of
from gader.progress import progress
from gader.silhouettes import pretreat

SOURCE_SYNTHETIC = "synthetic"
SOURCE_REAL = "real"
SOURCE_REAL_PARTIAL = "real-partial"
SOURCE_REAL_STANDING = "real-standing"


@dataclass
class LabelledDHS:
    dhs: np.ndarray  # float32 [C_in, W, T]
    classes: np.ndarray  # int64 [T] detector class per frame
    source: str
    subject: str


def _paste(frame: np.ndarray, scale: float) -> np.ndarray:
    """An aligned 64x64 silhouette as a full-frame mask (scaled, in a larger canvas)."""
    size = round(64 * scale)
    big = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((size + 20, size + 40), np.uint8)
    canvas[10 : 10 + size, 20 : 20 + size] = big
    return canvas


def real_partial(record: SequenceRecord, rng: np.random.Generator) -> SequenceRecord | None:
    """The sequence with the body cut at hip-to-chest height before pretreatment (partial + gait)."""
    cut = rng.uniform(0.45, 0.75)  # share of the body height that stays visible, from the top
    frames = []
    for frame in record.silhouettes:
        canvas = _paste(frame, 2.0)
        rows = np.flatnonzero(canvas.any(axis=1))
        if len(rows) == 0:
            continue
        canvas[rows[0] + int(cut * (rows[-1] - rows[0] + 1)) :] = 0
        frames.append(canvas)
    if not frames:
        return None
    result = pretreat(np.stack(frames))
    if result.frames == 0:
        return None
    labels = FrameLabels(gait=np.ones(result.frames, bool), full_body=np.zeros(result.frames, bool))
    return SequenceRecord(
        record.subject,
        record.condition,
        record.view,
        result.silhouettes,
        labels=labels,
        source=f"{record.source} (cut at {cut:.2f})",
    )


def real_standing(
    record: SequenceRecord, rng: np.random.Generator, frames: int = 60, partial: bool = False
) -> SequenceRecord | None:
    """A still person built from the narrowest real frame (legs together) with sway and mask noise."""
    silhouettes = record.silhouettes
    widths = (silhouettes > 127).any(axis=1).sum(axis=1)
    candidates = np.flatnonzero(widths > 0)
    if len(candidates) == 0:
        return None
    base = silhouettes[candidates[np.argmin(widths[candidates])]]
    canvas_frames = []
    phase = rng.uniform(0, 2 * np.pi)
    for t in range(frames):
        canvas = _paste(base, 2.0)
        shift = 1.5 * np.sin(2 * np.pi * 0.3 * t / 25.0 + phase) + rng.normal(0, 0.3)  # postural sway, pixels
        matrix = np.float32([[1, 0, shift], [0, 1, 0]])
        canvas = cv2.warpAffine(canvas, matrix, (canvas.shape[1], canvas.shape[0]))
        noise = rng.random(canvas.shape) < 0.02  # segmentation flicker along the edges
        edges = cv2.morphologyEx((canvas > 127).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        canvas[noise & edges] = 255 - canvas[noise & edges]
        if partial:
            rows = np.flatnonzero(canvas.any(axis=1))
            canvas[rows[0] + int(0.6 * (rows[-1] - rows[0] + 1)) :] = 0
        canvas_frames.append(canvas)
    result = pretreat(np.stack(canvas_frames))
    if result.frames == 0:
        return None
    labels = FrameLabels(gait=np.zeros(result.frames, bool), full_body=np.full(result.frames, not partial))
    return SequenceRecord(
        record.subject,
        record.condition,
        record.view,
        result.silhouettes,
        labels=labels,
        source=f"{record.source} (standing{' partial' if partial else ''})",
    )


def contaminated_walk(record: SequenceRecord, rng: np.random.Generator, share: float) -> SequenceRecord | None:
    """A real walk cut short, for evaluating GADER on real people: ``share`` of its frames give way to a
    standing stretch of the same person (``real_standing``) and to the frames it did not keep cut at hip or
    chest height (``real_partial``), one before and one after the kept walk, in random order. About as long as
    the walk (pretreatment may drop a cut frame left empty); the labels say which frames are full-body
    walking. None when the walk is too short to cut (or a part comes out empty)."""
    frames = record.frames
    replaced = round(share * frames)
    kept = frames - replaced
    if kept < 1 or replaced < 2:
        return None
    start = int(rng.integers(0, replaced + 1))
    walk = record.silhouettes[start : start + kept]  # [kept, 64, W]
    rest = np.concatenate([record.silhouettes[:start], record.silhouettes[start + kept :]])  # [replaced, 64, W]
    standing_frames = round(replaced * rng.uniform(0.3, 0.7))
    partial_source = SequenceRecord(record.subject, record.condition, record.view, rest[: replaced - standing_frames])
    standing = real_standing(record, rng, frames=standing_frames) if standing_frames else None
    partial = real_partial(partial_source, rng) if replaced > standing_frames else None
    if standing is None or partial is None:
        return None
    parts = [(standing.silhouettes, False, True), (walk, True, True), (partial.silhouettes, True, False)]
    if rng.random() < 0.5:  # partial first (walked out from behind something), standing last (stopped)
        parts.reverse()
    width = walk.shape[2]  # pretreatment gives 64 columns: cut them to the walk's 44 where it has 44
    silhouettes = np.concatenate([p if p.shape[2] == width else cut_sides(p) for p, _, _ in parts])
    gait = np.concatenate([np.full(len(p), g) for p, g, _ in parts])
    full_body = np.concatenate([np.full(len(p), f) for p, _, f in parts])
    return SequenceRecord(
        record.subject,
        record.condition,
        record.view,
        silhouettes,
        labels=FrameLabels(gait=gait, full_body=full_body),
        source=f"{record.source} ({100 * replaced / frames:.0f} % standing / partial)",
    )


def labelled(record: SequenceRecord, config: DetectorConfig, source: str) -> LabelledDHS:
    """DHS and per-frame classes; unlabelled real walking data is full body + gait throughout."""
    classes = record.labels.classes if record.labels is not None else np.zeros(record.frames, np.int64)
    return LabelledDHS(dhs_of(record.silhouettes, config, record.ratios), classes, source, record.subject)


def collect(
    synthetic: list[SequenceDataset],
    real: list[SequenceDataset],
    config: DetectorConfig,
    rng: np.random.Generator,
    derived_share: float = 0.3,
    show_progress: bool = True,
) -> list[LabelledDHS]:
    """All labelled DHS: synthetic sequences as they are, real ones plus real-derived partial / standing
    variants for a ``derived_share`` of them."""
    items: list[LabelledDHS] = []
    for dataset in synthetic:
        for record in progress(dataset, total=len(dataset), enabled=show_progress, desc="synthetic DHS", unit="seq"):
            if record.frames >= 3:
                items.append(labelled(record, config, SOURCE_SYNTHETIC))
    for dataset in real:
        for record in progress(dataset, total=len(dataset), enabled=show_progress, desc="real DHS", unit="seq"):
            if record.frames < 3:
                continue
            items.append(labelled(record, config, SOURCE_REAL))
            if rng.random() < derived_share:
                for variant, source in (
                    (real_partial(record, rng), SOURCE_REAL_PARTIAL),
                    (real_standing(record, rng, partial=False), SOURCE_REAL_STANDING),
                    (real_standing(record, rng, partial=True), SOURCE_REAL_STANDING),
                ):
                    if variant is not None and variant.frames >= 3:
                        items.append(labelled(variant, config, source))
    return items


def without_ratios(dhs: np.ndarray) -> np.ndarray:
    """A DHS with ratio channels [C, W, t] as it would be had the sequence come without ratios."""
    blank = dhs.copy()
    blank[-RATIO_CHANNELS:] = 0.0
    return blank


def hold_still(dhs: np.ndarray, channels: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A copy of a DHS [C, W, t] whose ``channels`` show one of its frames throughout, with flickering holes:
    those rows as they look when their segmentation fails while the person walks (the feet rows of CASIA-B's
    subject 005 seen from behind: fragments that hardly move). Training with such windows under their true
    label makes the detector read gait from the other rows too, instead of from the feet rows alone."""
    still = dhs.copy()
    frame = int(rng.integers(dhs.shape[-1]))
    holes = rng.uniform(0.0, 0.3)  # share of the row's pixels missing in each frame
    for channel in channels:
        row = np.repeat(dhs[channel][:, frame : frame + 1], dhs.shape[-1], axis=1)  # [W, t]
        still[channel] = row * (rng.random(row.shape) >= holes)
    return still


def majority(classes: np.ndarray) -> int:
    return int(np.bincount(classes, minlength=4).argmax())


def sample_windows(
    items: list[LabelledDHS],
    count: int,
    lengths: tuple[int, int],
    rng: np.random.Generator,
    balanced: bool = True,
    context: int = 0,
    blank_ratios: float = 0.0,
    still_channels: tuple[int, ...] = (),
    still_share: float = 0.0,
    short_share: float = 0.0,
    short_lengths: tuple[int, int] = (4, 16),
    ratio_inputs: bool = False,
) -> tuple[list[tuple[np.ndarray, int, int]], np.ndarray]:
    """Random windows (random sequence, length and start) and their majority labels.

    Each window comes as (crop [C_in, W, t], first, last + 1): the crop adds up to ``context`` frames on each side
    (what the shared convolutions see at inference), the window is the columns [first, last) of the crop.
    ``balanced`` draws the four classes equally often (rejection sampling on the majority label), since
    walking frames far outnumber the rest. ``blank_ratios`` is the share of windows whose ratio channels
    (the last ``RATIO_CHANNELS``, when the DHS has them) are zeroed, as for a sequence that comes without
    ratios, so that one detector serves both. ``still_share`` is the share of windows whose ``still_channels``
    are held still (``hold_still``), label unchanged. ``short_share`` is the share of windows that are a whole
    short clip instead: ``short_lengths`` frames with no context around them, as inference sees a sequence
    shorter than its shortest window, with their ratio channels (when ``ratio_inputs``) made from the clip alone
    (``clip_of``).
    """
    windows, labels = [], []
    wanted = rng.integers(0, 4, size=count) if balanced else None
    attempts = 0
    while len(windows) < count:
        attempts += 1
        item = items[int(rng.integers(len(items)))]
        frames = item.dhs.shape[-1]
        short = bool(short_share) and rng.random() < short_share  # no draw when off: old runs replay
        low, high = short_lengths if short else lengths
        length = min(int(rng.integers(low, high + 1)), frames)
        start = int(rng.integers(0, frames - length + 1))
        label = majority(item.classes[start : start + length])
        if wanted is not None and label != wanted[len(windows)] and attempts < 200 * count:
            continue
        reach = 0 if short else context
        left, right = max(0, start - reach), min(frames, start + length + reach)
        crop = clip_of(item.dhs, left, right, ratio_inputs) if short else item.dhs[..., left:right]
        if blank_ratios and rng.random() < blank_ratios:
            crop = without_ratios(crop)
        if still_channels and still_share and rng.random() < still_share:
            crop = hold_still(crop, still_channels, rng)
        windows.append((crop, start - left, start - left + length))
        labels.append(label)
    return windows, np.array(labels)


def pad_windows(windows: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops -> batch [n, C_in, W, t_max], valid columns [n, t_max], window columns [n, t_max]."""
    longest = max(crop.shape[-1] for crop, _first, _last in windows)
    batch = np.zeros((len(windows), *windows[0][0].shape[:2], longest), np.float32)
    valid = np.zeros((len(windows), longest), bool)
    pooled = np.zeros((len(windows), longest), bool)
    for i, (crop, first, last) in enumerate(windows):
        batch[i, :, :, : crop.shape[-1]] = crop
        valid[i, : crop.shape[-1]] = True
        pooled[i, first:last] = True
    return batch, valid, pooled
