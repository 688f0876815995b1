"""The one in-memory type for a gait sequence, whatever file it came from.

Conventions every reader and writer follows:

- ``silhouettes`` are aligned (OpenGait-pretreated) frames, uint8 ``[T, 64, 64]`` or, after the side cut,
  ``[T, 64, 44]``, with values 0..255 (0/1 sources are scaled to 0/255 on read so that every consumer sees
  one range).
- ``ratios`` are the per-frame resize ratios, float32 ``[T]``: body bounding-box height in the original
  frame divided by the aligned height (64). ``None`` when the source has none (CASIA-B): models then run
  without ratio attention instead of inventing ratios.
- ``rgb`` are RGB crops aligned with the silhouettes, uint8 ``[T, H, W, 3]``.
- ``labels`` are per-frame ground-truth states, used to train and score the gait detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gader.errors import DataFormatError

ALIGNED_HEIGHT = 64
ALIGNED_WIDTHS = (64, 44)
SIDE_CUT = 10  # OpenGait's BaseSilCuttingTransform: int(64 // 64) * 10 columns off each side.

# The gait detector's four classes, {full, partial} x {gait, standing}, in this order everywhere
# (detector logits, confusion matrices, label tracks).
DETECTOR_CLASSES = ("full-gait", "full-standing", "partial-gait", "partial-standing")


@dataclass(frozen=True)
class FrameLabels:
    """Per-frame ground truth: is the person walking, and is the whole body in view."""

    gait: np.ndarray  # bool [T]: walking (or turning while walking), as opposed to standing
    full_body: np.ndarray  # bool [T]: the whole body is visible (not cut by the frame edge or occluded)

    def __post_init__(self) -> None:
        for name in ("gait", "full_body"):
            value = np.asarray(getattr(self, name))
            if value.ndim != 1:
                raise DataFormatError(f"labels.{name} must be 1-D [T], got shape {value.shape}")
            object.__setattr__(self, name, value.astype(bool, copy=False))
        if self.gait.shape != self.full_body.shape:
            raise DataFormatError(
                f"labels.gait {self.gait.shape} and labels.full_body {self.full_body.shape} differ in length"
            )

    def __len__(self) -> int:
        return int(self.gait.shape[0])

    @property
    def classes(self) -> np.ndarray:
        """int64 [T] index into ``DETECTOR_CLASSES``."""
        return (~self.full_body).astype(np.int64) * 2 + (~self.gait).astype(np.int64)

    @classmethod
    def from_classes(cls, classes: np.ndarray) -> FrameLabels:
        classes = np.asarray(classes)
        if classes.size and (classes.min() < 0 or classes.max() >= len(DETECTOR_CLASSES)):
            raise DataFormatError(f"label classes must be in 0..{len(DETECTOR_CLASSES) - 1}")
        return cls(gait=(classes % 2) == 0, full_body=classes < 2)

    def select(self, index: np.ndarray | slice) -> FrameLabels:
        return FrameLabels(gait=self.gait[index], full_body=self.full_body[index])

    @property
    def walking(self) -> np.ndarray:
        """bool [T]: full-body walking (the detector's full-gait class), what recognition should get."""
        return self.gait & self.full_body


@dataclass
class SequenceRecord:
    """One walking sequence: identity, condition, view, aligned frames and what came with them."""

    subject: str
    condition: str
    view: str
    silhouettes: np.ndarray  # uint8 [T, 64, 64] or [T, 64, 44], 0..255
    ratios: np.ndarray | None = None  # float32 [T]
    rgb: np.ndarray | None = None  # uint8 [T, H, W, 3]
    labels: FrameLabels | None = None
    source: str | None = None  # where it was read from, for messages and provenance
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras (distance, pitch, ...)
    frame_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # other per-frame arrays [T, ...]

    def __post_init__(self) -> None:
        self.subject, self.condition, self.view = str(self.subject), str(self.condition), str(self.view)
        where = f" in {self.source}" if self.source else ""
        sil = np.asarray(self.silhouettes)
        if sil.dtype != np.uint8:
            raise DataFormatError(f"silhouettes must be uint8, got {sil.dtype}{where}")
        if sil.ndim != 3 or sil.shape[1] != ALIGNED_HEIGHT or sil.shape[2] not in ALIGNED_WIDTHS:
            raise DataFormatError(
                f"silhouettes must be aligned [T, 64, 64] or [T, 64, 44], got shape {sil.shape}{where}"
            )
        self.silhouettes = sil
        frames = sil.shape[0]
        if self.ratios is not None:
            ratios = np.asarray(self.ratios)
            if ratios.shape != (frames,):
                raise DataFormatError(f"ratios must have shape [{frames}], got {ratios.shape}{where}")
            if not np.issubdtype(ratios.dtype, np.floating) and not np.issubdtype(ratios.dtype, np.integer):
                raise DataFormatError(f"ratios must be numeric, got {ratios.dtype}{where}")
            ratios = ratios.astype(np.float32, copy=False)
            if not np.all(np.isfinite(ratios)) or np.any(ratios <= 0):
                raise DataFormatError(f"ratios must be finite and positive{where}")
            self.ratios = ratios
        if self.rgb is not None:
            rgb = np.asarray(self.rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[0] != frames or rgb.shape[3] != 3:
                raise DataFormatError(f"rgb must be uint8 [{frames}, H, W, 3], got {rgb.dtype} {rgb.shape}{where}")
            self.rgb = rgb
        if self.labels is not None and len(self.labels) != frames:
            raise DataFormatError(f"labels have {len(self.labels)} frames, silhouettes {frames}{where}")
        for name, array in self.frame_arrays.items():
            if np.asarray(array).shape[:1] != (frames,):
                raise DataFormatError(f"per-frame array {name!r} must start with [{frames}]{where}")

    @property
    def frames(self) -> int:
        return int(self.silhouettes.shape[0])

    @property
    def key(self) -> str:
        """The sequence's identity inside a dataset: ``subject/condition/view``."""
        return f"{self.subject}/{self.condition}/{self.view}"

    def select(self, index: np.ndarray | slice) -> SequenceRecord:
        """The same sequence restricted to some frames (a slice or an index/bool array)."""
        return replace(
            self,
            silhouettes=self.silhouettes[index],
            ratios=None if self.ratios is None else self.ratios[index],
            rgb=None if self.rgb is None else self.rgb[index],
            labels=None if self.labels is None else self.labels.select(index),
            frame_arrays={name: array[index] for name, array in self.frame_arrays.items()},
            meta=dict(self.meta),
        )

    def walking_frames(self, min_frames: int = 3) -> SequenceRecord:
        """The frames its labels call full-body walking (the ground truth of what a detector should pick); the
        whole sequence when it has no labels or fewer such frames than ``min_frames`` (too few to embed)."""
        if self.labels is None:
            return self
        keep = self.labels.walking
        return self.select(keep) if int(keep.sum()) >= min_frames else self

    def cut_sides(self) -> SequenceRecord:
        """64x64 aligned frames to OpenGait's 64x44 (10 columns off each side); RGB crops likewise."""
        if self.silhouettes.shape[2] == ALIGNED_WIDTHS[1]:
            return self
        rgb = self.rgb
        if rgb is not None:
            cut = rgb.shape[2] * SIDE_CUT // ALIGNED_HEIGHT
            rgb = rgb[:, :, cut:-cut]
        return replace(self, silhouettes=cut_sides(self.silhouettes), rgb=rgb, meta=dict(self.meta))


def cut_sides(silhouettes: np.ndarray) -> np.ndarray:
    """[..., 64, 64] -> [..., 64, 44]: OpenGait's side cut, done at load time after pretreatment."""
    width = silhouettes.shape[-1]
    cut = int(width // 64) * SIDE_CUT
    if cut == 0:
        return silhouettes
    return silhouettes[..., cut:-cut]


def to_uint8_range(frames: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Binary or grey masks to uint8 0..255: bool and 0/1 sources are scaled by 255 (one new array; with
    ``in_place``, a uint8 source the caller owns is scaled where it lies)."""
    frames = np.asarray(frames)

    def scaled(integers: np.ndarray) -> np.ndarray:
        out = integers.astype(np.uint8, copy=not in_place)  # [..] 0/1, a fresh array unless in place
        return np.multiply(out, np.uint8(255), out=out)

    if frames.dtype == bool:
        return scaled(frames)
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise DataFormatError(f"masks must be numeric or bool, got {frames.dtype}")
    if np.issubdtype(frames.dtype, np.floating) and not np.all(np.isfinite(frames)):
        raise DataFormatError("masks contain NaN or infinite values")
    if frames.size == 0:
        return frames.astype(np.uint8)
    low, high = frames.min(), frames.max()
    if low < 0 or high > 255:
        raise DataFormatError(f"mask values must lie in 0..255, got {low}..{high}")
    if high <= 1:  # 0/1 masks (or soft masks in [0, 1])
        if np.issubdtype(frames.dtype, np.integer):  # scaled in uint8: a float copy would take 8x the memory
            return scaled(frames)
        return np.round(frames * 255.0).astype(np.uint8)
    return frames.astype(np.uint8, copy=False)
