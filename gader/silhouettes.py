"""Pretreatment: full-frame person masks (and RGB frames) to aligned silhouettes, ratios and RGB crops.

The geometry is exactly OpenGait's ``datasets/pretreatment.py`` (``imgs2pickle``), per frame:

1. reject the frame when the sum of its 0..255 mask values is <= 10000 (about 40 foreground pixels);
2. crop the rows to the body: first to last row with any foreground;
3. resize the band (full frame width) to height 64 keeping the aspect ratio, width ``int(64 * W / h)``,
   bicubic;
4. the x-centre is the first column where the cumulative column mass exceeds half the total; reject the
   frame when there is none or it is column 0 (OpenGait's ``if not x_center``);
5. cut 64 columns centred on it, zero-filled beyond the band's edges (OpenGait pads 32 zero columns on
   each side whenever the window touches an edge; the result is the same window with zero fill).

OpenGait then cuts 10 columns off each side at load time (``record.cut_sides``) for 64x44 inputs.

What OpenGait throws away and GADER needs is kept: the per-frame *resize ratio* (the body's bounding-box
height in the original frame divided by 64), the body box itself, which input frames survived, and RGB
crops cut with the same geometry. Rejected frames are reported with their index and reason.

The per-frame bookkeeping (sums, row extents, centres, window gathers) is vectorised over all frames; only
the resize, whose output width differs per frame, is a per-frame OpenCV call.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gader.data.record import to_uint8_range
from gader.errors import DataFormatError

# OpenGait's rejection threshold on the sum of 0..255 mask values.
MIN_MASK_SUM = 10000

REJECT_TOO_FEW_PIXELS = "too_few_pixels"
REJECT_NO_CENTRE = "no_centre"


@dataclass(frozen=True)
class RejectedFrame:
    index: int  # position in the input frames
    reason: str  # REJECT_TOO_FEW_PIXELS or REJECT_NO_CENTRE


@dataclass
class PretreatResult:
    """Aligned output for the frames that survived, with their provenance."""

    silhouettes: np.ndarray  # uint8 [T', size, size], 0..255
    ratios: np.ndarray  # float32 [T']: body box height / size
    boxes: np.ndarray  # int32 [T', 4]: body box in the input frame, (x0, y0, x1, y1) inclusive
    frame_index: np.ndarray  # int64 [T']: which input frame each output frame came from
    rejected: list[RejectedFrame]
    rgb: np.ndarray | None = None  # uint8 [T', size, size, 3], same geometry as silhouettes

    @property
    def frames(self) -> int:
        return int(self.silhouettes.shape[0])


def _check_inputs(masks: np.ndarray, rgb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise DataFormatError(f"masks must be [T, H, W] (or one [H, W] frame), got shape {masks.shape}")
    if masks.shape[1] < 2 or masks.shape[2] < 2:
        raise DataFormatError(f"mask frames must be at least 2x2, got {masks.shape[1]}x{masks.shape[2]}")
    masks = to_uint8_range(masks)
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.ndim == 3:
            rgb = rgb[None]
        if rgb.shape != (*masks.shape, 3) or rgb.dtype != np.uint8:
            raise DataFormatError(
                f"rgb must be uint8 {(*masks.shape, 3)} to match the masks, got {rgb.dtype} {rgb.shape}"
            )
    return masks, rgb


def _centre_window(columns: np.ndarray, left: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices for a ``size``-wide window starting at ``left`` with zero fill outside [0, width).

    columns: int [N] band widths; left: int [N]. Returns (index [N, size], valid [N, size]).
    """
    index = left[:, None] + np.arange(size)[None, :]  # [N, size]
    valid = (index >= 0) & (index < columns[:, None])
    return np.clip(index, 0, None), valid


def pretreat(
    masks: np.ndarray,
    rgb: np.ndarray | None = None,
    *,
    size: int = 64,
    min_mask_sum: int = MIN_MASK_SUM,
) -> PretreatResult:
    """Full-frame masks ``[T, H, W]`` (bool, 0/1 or 0..255) and optional RGB ``[T, H, W, 3]`` to aligned
    ``[T', size, size]`` silhouettes; see the module docstring for the exact steps."""
    masks, rgb = _check_inputs(masks, rgb)
    width = masks.shape[2]

    # Step 1 and 2, vectorised over frames.
    row_sums = masks.sum(axis=2, dtype=np.int64)  # [T, H]
    totals = row_sums.sum(axis=1)  # [T]
    has_rows = row_sums > 0  # [T, H]
    top = has_rows.argmax(axis=1)  # [T] first row with foreground
    bottom = has_rows.shape[1] - 1 - has_rows[:, ::-1].argmax(axis=1)  # [T] last row with foreground
    too_few = totals <= min_mask_sum

    candidates = np.flatnonzero(~too_few)
    band_heights = bottom[candidates] - top[candidates] + 1  # [N]

    # Steps 3-5 in chunks of frames whose shared canvas stays within CANVAS_BYTES: a band's resized width is
    # size x frame width / band height, unbounded by any pixel limit (a one-row band of a 1920-wide frame is
    # 122,880 columns), and one canvas for every frame would hold the widest band for all of them.
    band_widths = np.array([int(size * (width / h)) for h in band_heights], dtype=np.int64)  # [N]
    parts = [
        _align_bands(masks, rgb, candidates[chunk], top, bottom, band_widths[chunk], size)
        for chunk in _canvas_chunks(band_widths, size * (4 if rgb is not None else 1))
    ]
    keep = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, bool)
    silhouettes = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, size, size), np.uint8)
    crops = None
    if rgb is not None:
        crops = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, size, size, 3), np.uint8)
    no_centre = ~keep
    kept_frames = candidates[keep]

    boxes = _boxes(masks, kept_frames, top, bottom)
    ratios = ((bottom[kept_frames] - top[kept_frames] + 1) / size).astype(np.float32)
    rejected = [RejectedFrame(int(i), REJECT_TOO_FEW_PIXELS) for i in np.flatnonzero(too_few)]
    rejected += [RejectedFrame(int(i), REJECT_NO_CENTRE) for i in candidates[no_centre]]
    rejected.sort(key=lambda item: item.index)
    return PretreatResult(
        silhouettes=silhouettes.astype(np.uint8, copy=False),
        ratios=ratios,
        boxes=boxes,
        frame_index=kept_frames.astype(np.int64),
        rejected=rejected,
        rgb=crops,
    )


CANVAS_BYTES = 64 << 20  # resized bands held at once by pretreat (per chunk of frames)


def _canvas_chunks(band_widths: np.ndarray, bytes_per_column: int) -> list[np.ndarray]:
    """Consecutive index ranges of ``band_widths`` [N] whose canvas (frames x widest band x bytes per column)
    fits ``CANVAS_BYTES``; a frame wider than that alone is a chunk of its own."""
    chunks, start, widest = [], 0, 0
    for index, band_width in enumerate(band_widths.tolist()):
        wider = max(widest, band_width)
        if index > start and (index - start + 1) * wider * bytes_per_column > CANVAS_BYTES:
            chunks.append(np.arange(start, index))
            start, wider = index, band_width
        widest = wider
    if len(band_widths):
        chunks.append(np.arange(start, len(band_widths)))
    return chunks


def _align_bands(
    masks: np.ndarray,
    rgb: np.ndarray | None,
    frames: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    band_widths: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Steps 3-5 for some frames (their body bands, rows top..bottom, and resized widths [n]) -> (kept bool [n],
    silhouettes uint8 [k, size, size], RGB crops [k, size, size, 3] or None)."""
    half = size // 2
    # Step 3: the resize, per frame. Bands of different widths go into one zero-padded canvas.
    canvas_width = int(band_widths.max())
    resized = np.zeros((len(frames), size, canvas_width), dtype=np.uint8)  # [n, size, Wmax]
    resized_rgb = np.zeros((len(frames), size, canvas_width, 3), dtype=np.uint8) if rgb is not None else None
    for slot, (frame, band_width) in enumerate(zip(frames, band_widths, strict=True)):
        rows = slice(top[frame], bottom[frame] + 1)
        resized[slot, :, :band_width] = cv2.resize(
            masks[frame, rows], (int(band_width), size), interpolation=cv2.INTER_CUBIC
        )
        if resized_rgb is not None:
            # Area averaging for colour (no ringing); same pixel-centre mapping, so the crops stay aligned.
            resized_rgb[slot, :, :band_width] = cv2.resize(
                rgb[frame, rows], (int(band_width), size), interpolation=cv2.INTER_AREA
            )

    # Step 4: x-centre where the cumulative column mass first exceeds half of the total.
    column_mass = resized.sum(axis=1, dtype=np.int64)  # [n, Wmax]
    cumulative = column_mass.cumsum(axis=1)  # [n, Wmax]
    half_mass = cumulative[:, -1] / 2
    past_half = cumulative > half_mass[:, None]  # [n, Wmax]
    centre = past_half.argmax(axis=1)  # [n]; 0 also when no column qualifies
    keep = centre != 0  # OpenGait's `if not x_center` rejects both

    # Step 5: the 64-wide window around the centre, zero-filled outside the band.
    index, valid = _centre_window(band_widths[keep], centre[keep] - half, size)  # [k, size]
    index = np.minimum(index, canvas_width - 1)
    slots = np.flatnonzero(keep)[:, None]  # [k, 1]
    silhouettes = resized[slots, :, index] * valid[:, :, None]  # [k, size(cols), size(rows)]
    silhouettes = np.ascontiguousarray(silhouettes.transpose(0, 2, 1)).astype(np.uint8, copy=False)  # [k, rows, cols]
    crops = None
    if resized_rgb is not None:
        crops = resized_rgb[slots, :, index] * valid[:, :, None, None]  # [k, cols, rows, 3]
        crops = np.ascontiguousarray(crops.transpose(0, 2, 1, 3))  # [k, rows, cols, 3]
    return keep, silhouettes, crops


def _boxes(masks: np.ndarray, frames: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """int32 [K, 4] inclusive body boxes (x0, y0, x1, y1) of the kept frames."""
    # frame by frame: masks[frames] would copy every kept frame whole first
    has_columns = (
        np.stack([masks[f].any(axis=0) for f in frames]) if len(frames) else np.zeros((0, masks.shape[2]), bool)
    )  # [K, W]
    left = has_columns.argmax(axis=1)
    right = has_columns.shape[1] - 1 - has_columns[:, ::-1].argmax(axis=1)
    return np.stack([left, top[frames], right, bottom[frames]], axis=1).astype(np.int32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame IoU of two stacks of aligned silhouettes ``[T, H, W]`` (foreground: value > 127)."""
    a, b = np.asarray(a) > 127, np.asarray(b) > 127
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, (a & b).sum(axis=(1, 2)) / np.maximum(union, 1), 1.0)


def aligned_iou(ours: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean IoU of two silhouette sequences of the same walk whose frames were dropped differently (each
    pipeline rejects its own frames): the monotone frame matching that maximises the total IoU (dynamic
    programming over the ``[len(ours), len(reference)]`` IoU table). Returns (mean IoU over the matched
    pairs, int [K, 2] matched (ours, reference) index pairs)."""
    a = (np.asarray(ours) > 127).reshape(len(ours), -1).astype(np.float32)  # [n, P]
    b = (np.asarray(reference) > 127).reshape(len(reference), -1).astype(np.float32)  # [m, P]
    intersection = a @ b.T  # [n, m]
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    table = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)  # [n, m]
    n, m = table.shape
    best = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):  # best[i, j]: the best total matching ours[:i] with reference[:j]
        # skip ours[i-1], or match it with reference[j-1]; the running maximum skips reference frames
        candidates = np.maximum(best[i - 1, 1:], best[i - 1, :-1] + table[i - 1])
        best[i, 1:] = np.maximum.accumulate(candidates)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if best[i, j] == best[i - 1, j]:
            i -= 1
        elif best[i, j] == best[i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    pairs = np.array(pairs[::-1], dtype=np.int64).reshape(-1, 2)
    return (float(table[pairs[:, 0], pairs[:, 1]].mean()) if len(pairs) else 0.0), pairs
