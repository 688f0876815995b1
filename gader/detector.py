"""GADER's gait detector (§3.1): classify windows of the Double Helical Signature, keep the full-body
gait windows, suppress overlaps, merge neighbours, and decide whether a sequence holds usable gait.

- Classifier: five convolution layers over the DHS (an image ``W x t``: body width by time), a max over
  the window's time axis (so any window length works), and an MLP over the four classes
  {full, partial} x {gait, standing}; trained with cross-entropy on random windows. The input is the DHS
  (the knee row), optionally with more rows at other heights as further channels (``extra_rows``) and
  with channels made from the per-frame resize ratios (``ratio_inputs``: how the body box's height in the
  original frame changes, which alignment removes from the silhouettes).
- The convolutions are shared: they run once over the whole DHS, and each window max-pools the feature
  columns inside it (as detection networks share features between proposals). A window therefore sees a
  few frames of context at its edges (the receptive field, ``receptive_half_width`` frames on each side);
  training crops windows with the same context, so both see the same thing. This makes the detector cost
  about one small CNN pass per sequence, whatever the number of windows.
- Inference: windows of several lengths and strides over the whole DHS, all classified in one pass;
  windows predicted *full + gait* above a score threshold survive non-maximum suppression; survivors
  closer than a gap are merged into gait segments; the share of frames inside them decides ``usable``. Each
  frame's label is the class with the highest mean probability over the shortest windows that cover it. The
  frames that go to recognition are those of the segments that their own label calls full-gait
  (``DetectionReport.walking_mask``): a window with enough walking in it is called gait as a whole, so the
  segments reach into the standing or partial-body frames beside a walk.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gader.data.record import DETECTOR_CLASSES
from gader.dhs import KNEE_FRACTION, signature_rows
from gader.errors import GaderError

FULL_GAIT = 0  # index of "full-gait" in DETECTOR_CLASSES
FRAME_LABEL_WINDOWS = ("shortest", "all")


@dataclass
class DetectorConfig:
    """Everything the detector needs, with the defaults it ships with (docs/models.md explains each)."""

    # DHS extraction
    knee_fraction: float = KNEE_FRACTION  # knee height above the sole, share of the aligned height
    band: int = 3  # rows averaged around the knee row (and around each extra row)
    # Further rows (heights above the sole, shares of the aligned height) stacked as more input channels
    # behind the knee row. The paper's DHS is the knee row alone; with a partial body (re-aligned to full
    # height) the knee row cuts the torso, and rows at other heights tell walking from standing there.
    extra_rows: tuple[float, ...] = ()
    width: int = 44  # DHS width: the side-cut aligned silhouette width
    # Three more input channels from the per-frame resize ratios (body box height / aligned height): a
    # walker's box grows or shrinks as they approach or recede, a stander's does not, and a body cut by an
    # occluder has a smaller box than the same person whole. Sequences without ratios (CASIA-B, uploads
    # without them) get zeros there and a zero "known" flag; training blanks some windows the same way.
    ratio_inputs: bool = False
    # network
    channels: tuple[int, int, int, int, int] = (8, 16, 24, 32, 48)
    # Temporal dilation of each layer's 3x3 kernel: dilating the last layers widens the receptive field
    # towards a gait cycle (~25 frames) at no cost in time.
    dilations: tuple[int, int, int, int, int] = (1, 1, 1, 1, 1)
    hidden: int = 64
    context: int = 8  # frames of context a training window carries on each side (>= the receptive field)
    # inference
    window_lengths: tuple[int, ...] = (16, 24, 36)  # frames
    stride: int = 4  # frames between window starts
    score_threshold: float = 0.5  # minimum full-gait probability of a kept window
    nms_iou: float = 0.5  # windows overlapping a better one by more than this are suppressed
    merge_gap: int = 6  # kept windows at most this many frames apart are merged into one segment
    min_gait_fraction: float = 0.3  # usable when at least this share of frames is in gait segments ...
    min_gait_frames: int = 15  # ... and at least this many frames
    # Each frame's label: the class with the highest mean probability over the windows of the shortest length
    # that cover it ("shortest": the most local evidence), or over every window that covers it ("all"). On the
    # held-out SynthGait wild people: 92.1 % against 91.7 % of frames labelled right (`gader eval-detector
    # --data data/synth-wild<N> --held-out 50`, with `--set frame_label_windows=all` for the other).
    frame_label_windows: str = "shortest"

    def __post_init__(self) -> None:
        if self.frame_label_windows not in FRAME_LABEL_WINDOWS:
            raise GaderError(
                f"detector config: frame_label_windows must be one of {', '.join(FRAME_LABEL_WINDOWS)}, "
                f"got {self.frame_label_windows!r}"
            )
        if not self.window_lengths or min(self.window_lengths) < 1 or self.stride < 1:
            raise GaderError(
                f"detector config: window_lengths and stride must be positive frame counts, got "
                f"{list(self.window_lengths)} and {self.stride}"
            )
        for name in ("score_threshold", "nms_iou", "min_gait_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise GaderError(f"detector config: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.merge_gap < 0 or self.min_gait_frames < 0:
            raise GaderError(
                f"detector config: merge_gap and min_gait_frames must not be negative, got {self.merge_gap} "
                f"and {self.min_gait_frames}"
            )
        if len(self.dilations) != len(self.channels):
            raise GaderError(f"detector config: {len(self.channels)} layers but {len(self.dilations)} dilations")
        if self.context < self.receptive_half_width:
            raise GaderError(
                f"detector config: context {self.context} is narrower than the receptive field "
                f"(+-{self.receptive_half_width} frames): training crops would see less than inference"
            )

    @property
    def input_channels(self) -> int:
        return 1 + len(self.extra_rows) + (RATIO_CHANNELS if self.ratio_inputs else 0)

    @property
    def row_heights(self) -> tuple[float, ...]:
        """The height above the sole (share of the aligned height) of each row channel: input channel i is the
        DHS row at ``row_heights[i]`` (the knee row first), the ratio channels follow."""
        return (self.knee_fraction, *self.extra_rows)

    @property
    def receptive_half_width(self) -> int:
        """Frames each feature column sees on either side (3-wide kernels, dilated in time)."""
        return sum(self.dilations)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GaderError(f"detector config: unknown setting(s) {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)


# The settings of the inference procedure around a trained network, which can change without retraining
INFERENCE_SETTINGS = (
    "window_lengths",
    "stride",
    "score_threshold",
    "nms_iou",
    "merge_gap",
    "min_gait_fraction",
    "min_gait_frames",
    "frame_label_windows",
)


def with_inference_settings(config: DetectorConfig, overrides: list[str]) -> DetectorConfig:
    """``config`` with inference settings replaced from ``key=value`` strings (TOML values: ``stride=2``,
    ``window_lengths=[16, 32]``, ``frame_label_windows="all"``); the network's and inputs' settings are refused,
    as the trained weights fix them."""
    from gader.overrides import parse_override

    values: dict[str, Any] = {}
    for override in overrides:
        key, value = parse_override(override)
        if key not in INFERENCE_SETTINGS:
            raise GaderError(
                f"override {override!r}: only inference settings can change without retraining "
                f"({', '.join(INFERENCE_SETTINGS)})"
            )
        current = getattr(config, key)
        if isinstance(current, tuple):
            fits = isinstance(value, list) and all(type(v) is int for v in value)  # ranges: DetectorConfig
            value = tuple(value) if fits else value
        elif isinstance(current, float):
            fits = type(value) in (int, float)
        else:
            fits = type(value) is type(current)
        if not fits:  # shown as written on the command line (TOML), not as Python's repr
            example = json.dumps(list(current) if isinstance(current, tuple) else current)
            raise GaderError(f"override {override!r}: {key} must be like {key}={example} (a TOML value)")
        values[key] = value
    return dataclasses.replace(config, **values)


RATIO_CHANNELS = 3
RATIO_TREND_HALF_WIDTH = 8  # frames on each side of the local slope of log(ratio)


def ratio_channels(ratios: np.ndarray | None, frames: int, width: int) -> np.ndarray:
    """Per-frame resize ratios float [T] (or None: unknown) -> float32 [3, width, T], each constant across the
    width so that every convolution position sees them beside the DHS rows:

    0. the trend: local least-squares slope of log(ratio) over +-8 frames, x50 (walking towards the camera
       at 1.4 m/s from 10 m is about +0.006 per frame at 25 fps; per-frame differences are dominated by mask noise);
    1. the size: log(ratio) minus its median over the sequence, x2 (an occluded stretch has a smaller box);
    2. known: 1 where ratios were given, 0 otherwise (the other two are then 0).
    """
    channels = np.zeros((RATIO_CHANNELS, width, frames), np.float32)
    if ratios is None:
        return channels
    ratios = np.asarray(ratios, np.float64)
    if ratios.shape != (frames,):
        raise GaderError(f"ratios have shape {ratios.shape}, the sequence has {frames} frames")
    log_ratio = np.log(ratios)  # SequenceRecord has checked that they are finite and positive
    offsets = np.arange(-RATIO_TREND_HALF_WIDTH, RATIO_TREND_HALF_WIDTH + 1, dtype=np.float64)
    kernel = offsets / (offsets**2).sum()  # least-squares slope of a line through 2h+1 points
    padded = np.pad(log_ratio, RATIO_TREND_HALF_WIDTH, mode="edge")
    trend = np.correlate(padded, kernel, mode="valid")  # [T]
    channels[0] = 50.0 * trend
    channels[1] = 2.0 * (log_ratio - np.median(log_ratio))
    channels[2] = 1.0
    return channels


def clip_of(dhs: np.ndarray, start: int, end: int, ratio_inputs: bool) -> np.ndarray:
    """The detector's input [C_in, W, T] (the last channels are ratio channels when ``ratio_inputs``, as
    ``DetectorConfig.ratio_inputs`` makes them) cut to frames [start, end), as ``dhs_of`` makes it for a sequence of
    those frames alone: the ratio channels (their trend over +-8 frames and their size against the median) are
    recomputed from the clip's own ratios, which the size channel holds up to a constant (log ratio - median,
    x2; a constant scale of the ratios changes neither channel). Sliced as they are, they would carry the
    sequence around the clip: what a short upload never has."""
    clip = dhs[..., start:end].copy()
    if ratio_inputs and clip.shape[-1] and clip[-1].any():  # known flag set: the sequence had ratios
        size = clip[-2, 0]  # [t] 2 * (log ratio - the sequence's median)
        clip[-RATIO_CHANNELS:] = ratio_channels(np.exp(size / 2.0), clip.shape[-1], clip.shape[1])
    return clip


def dhs_of(silhouettes: np.ndarray, config: DetectorConfig, ratios: np.ndarray | None = None) -> np.ndarray:
    """Aligned silhouettes uint8 [T, 64, 64|44] (and their resize ratios [T], if known) -> the detector's input
    float32 [C, width, T]: channel 0 is the DHS (knee row) in [0, 1], channels 1.. the configured extra rows,
    then the ratio channels when the config has them (``ratio_channels``)."""
    if silhouettes.shape[2] == 64:
        silhouettes = silhouettes[:, :, 10:-10]
    rows = signature_rows(silhouettes, config.row_heights, config.band)  # [R, w, T]
    if rows.shape[1] != config.width:
        import cv2

        rows = np.stack(
            [cv2.resize(row, (row.shape[1], config.width), interpolation=cv2.INTER_AREA) for row in rows]
        )  # [R, W, T]
    if not config.ratio_inputs:
        return rows
    return np.concatenate([rows, ratio_channels(ratios, rows.shape[-1], config.width)])  # [R + 3, W, T]


def halve_width(x: torch.Tensor) -> torch.Tensor:
    """[n, C, W, t] -> [n, C, W // 2, t]: the max of each pair of neighbouring body-width columns, the same
    numbers as ``F.max_pool2d(x, (2, 1))`` at about a twentieth of its time on CPU (measured 0.01 vs 0.23 ms
    on the first layer's output)."""
    even = x.shape[2] // 2 * 2
    return torch.maximum(x[:, :, 0:even:2], x[:, :, 1:even:2])


class DHSClassifier(nn.Module):
    """DHS [n, C, W, t] -> shared feature columns -> per-window temporal max -> class logits [m, 4]."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        inputs = (config.input_channels, *config.channels[:-1])
        pairs = zip(inputs, config.channels, strict=True)
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, padding=(1, d), dilation=(1, d), bias=False)
            for (i, o), d in zip(pairs, config.dilations, strict=True)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(o) for o in config.channels)
        self.pool_after = {0, 2}  # halve the body-width axis after the 1st and 3rd layers (44 -> 22 -> 11)
        width = config.width
        for _ in self.pool_after:
            width //= 2
        self.mlp = nn.Sequential(
            nn.Linear(config.channels[-1] * width, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(config.hidden, len(DETECTOR_CLASSES)),
        )

    def features(self, dhs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """DHS [n, C_in, W, t] (valid [n, t]: real columns) -> feature columns [n, C, W', t]."""
        x = dhs
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = F.relu(norm(conv(x)))
            if valid is not None:  # padded columns stay zero, as the convolutions' own padding
                x = x * valid[:, None, None, :].to(x.dtype)
            if index in self.pool_after:
                x = halve_width(x)
        return x

    def classify(self, features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """features [n, C, W', t] (n = 1: shared by every window, or one per window); windows [m, t] bool
        (the columns each window pools) -> logits [m, 4]."""
        pooled = features.masked_fill(~windows[:, None, None, :], float("-inf")).max(dim=3).values  # [m, C, W']
        return self.mlp(pooled.flatten(1))

    def forward(self, dhs: torch.Tensor, valid: torch.Tensor | None, windows: torch.Tensor) -> torch.Tensor:
        """Training: crops [n, C_in, W, t] with context, valid [n, t], window columns [n, t] -> logits [n, 4]."""
        return self.classify(self.features(dhs, valid), windows)

    def folded(self) -> DHSClassifier:
        """An inference copy with each batch norm folded into the convolution before it (eval statistics: the
        same function up to float rounding, about 1e-6, and one pass less over the feature maps per layer)."""
        copy = DHSClassifier(self.config).eval()
        copy.load_state_dict(self.state_dict())
        with torch.no_grad():
            for index, (conv, norm) in enumerate(zip(copy.convs, copy.norms, strict=True)):
                copy.convs[index] = fuse_conv_bn_eval(conv, norm)
                copy.norms[index] = nn.Identity()
        return copy


@dataclass
class Segment:
    start: int  # first frame (inclusive)
    end: int  # last frame (inclusive)
    score: float  # best full-gait probability among the merged windows

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "score": round(self.score, 4)}


@dataclass
class DetectionReport:
    frames: int
    segments: list[Segment]
    frame_labels: list[str]  # one of DETECTOR_CLASSES per frame
    frame_probabilities: np.ndarray  # float32 [T, 4]
    gait_fraction: float
    usable: bool
    windows: list[tuple[int, int, int, float]] = field(default_factory=list)  # (start, end, class, score) kept

    @property
    def gait_mask(self) -> np.ndarray:
        """bool [T]: the frames inside the gait segments (the merged windows)."""
        mask = np.zeros(self.frames, bool)
        for segment in self.segments:
            mask[segment.start : segment.end + 1] = True
        return mask

    @property
    def frame_classes(self) -> np.ndarray:
        """int [T]: each frame's label as an index into DETECTOR_CLASSES (the argmax the labels were named from)."""
        return self.frame_probabilities.argmax(axis=1)

    @property
    def walking_mask(self) -> np.ndarray:
        """bool [T]: the frames of the gait segments whose own label is full-gait. A window with enough walking
        in it is called gait as a whole, so the segments reach into the standing or partial-body frames beside
        a walk; the frame labels, from the shortest windows, cut those off (``PipelineConfig.trim_to_frame_labels``)."""
        return self.gait_mask & (self.frame_classes == FULL_GAIT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "usable": self.usable,
            "gait_fraction": round(self.gait_fraction, 4),
            "frames": self.frames,
            "gait_frames": int(self.gait_mask.sum()),
            "walking_frames": int(self.walking_mask.sum()),
            "segments": [s.to_dict() for s in self.segments],
            "frame_labels": self.frame_labels,
        }


def window_positions(frames: int, config: DetectorConfig) -> list[tuple[int, int]]:
    """(start, end exclusive) of every window; a sequence shorter than a length gets one whole window."""
    positions = set()
    for length in config.window_lengths:
        if frames <= length:
            positions.add((0, frames))
            continue
        starts = list(range(0, frames - length + 1, config.stride))
        if starts[-1] != frames - length:
            starts.append(frames - length)  # the tail is always covered
        positions.update((s, s + length) for s in starts)
    return sorted(positions)


def window_masks(frames: int, positions: list[tuple[int, int]]) -> torch.Tensor:
    """bool [m, T]: the columns each window covers."""
    masks = torch.zeros(len(positions), frames, dtype=torch.bool)
    for i, (start, end) in enumerate(positions):
        masks[i, start:end] = True
    return masks


def _pool_spans(features: torch.Tensor, owner: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Temporal max of shared feature columns inside each window: features [n, C, W', T] (n sequences, zero
    past each one's end), owner [m] (the sequence of each window), spans [m, 2] (start, end exclusive) ->
    [m, C, W'].

    The same numbers as ``DHSClassifier.classify`` with window masks, from a table of running maxima over
    power-of-two spans (level k, row t: the max of columns t .. t + 2**k - 1, each level built from the one
    below by doubling): a window of length L is the max of two level-k rows that together cover it exactly,
    k = floor(log2 L) (they overlap, which a max does not mind). Neither row reads past the window's end, so
    the padding after a sequence is never seen. About twenty tensor operations for any number of windows and
    lengths (measured 0.19 ms for 56 windows over 96 frames, against 0.47 ms with one sliding max per window
    length). Scripted, so that the Triton model exported by ``gader export`` runs this very function inside its
    traced graph."""
    n, channels, width, frames = features.shape
    if spans.shape[0] == 0:
        return features.new_empty(0, channels, width)
    lengths = spans[:, 1] - spans[:, 0]  # [m]
    longest = int(lengths.max())
    level_of = torch.zeros_like(lengths)  # [m] floor(log2 L)
    top = 0
    while (2 << top) <= longest:
        top += 1
        level_of += (lengths >= (1 << top)).long()
    needed = [False] * (top + 1)  # only the levels some window reads are kept (default windows: 4 and 5)
    present: list[int] = torch.unique(level_of).tolist()
    for k in present:
        needed[k] = True
    level = features.reshape(n, channels * width, frames).transpose(1, 2).contiguous()  # level 0: [n, T, C*W']
    kept: list[torch.Tensor] = []  # the needed levels, each [n * (T - 2**k + 1), C*W']
    starts = [0] * (top + 1)  # first row of each kept level in the stacked table
    rows = 0
    for k in range(top + 1):
        if k > 0:
            half = 1 << (k - 1)
            level = torch.maximum(level[:, :-half], level[:, half:])  # [n, T - 2**k + 1, C*W']
        if needed[k]:
            starts[k] = rows
            kept.append(level.reshape(-1, channels * width))
            rows += kept[-1].shape[0]
    table = kept[0] if len(kept) == 1 else torch.cat(kept)  # [rows of the kept levels, C*W']
    span = torch.bitwise_left_shift(torch.ones_like(level_of), level_of)  # [m] 2**k
    # row of (level k, sequence, column 0): the level's start + sequence * its columns (T - 2**k + 1)
    base = torch.tensor(starts, device=spans.device)[level_of] + owner * (frames - span + 1)  # [m]
    first = table.index_select(0, base + spans[:, 0])  # [m, C*W']: columns start .. start + 2**k - 1
    last = table.index_select(0, base + spans[:, 1] - span)  # [m, C*W']: columns end - 2**k .. end - 1
    return torch.maximum(first, last).reshape(-1, channels, width)


# TorchScript because the Triton python backend loads the exported detector with torch.jit.load; torch 2.13
# calls torch.jit.script deprecated in favour of torch.export, whose programs that backend cannot load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pool_spans = torch.jit.script(_pool_spans)


def pool_windows(features: torch.Tensor, positions: list[tuple[int, int]]) -> torch.Tensor:
    """One sequence's shared feature columns [1, C, W', T] and its windows -> [m, C, W'] (``pool_spans``)."""
    spans = torch.tensor(positions, dtype=torch.long, device=features.device).reshape(-1, 2)
    return pool_spans(features, torch.zeros(len(positions), dtype=torch.long, device=features.device), spans)


def suppress_and_merge(
    positions: list[tuple[int, int]], scores: np.ndarray, config: DetectorConfig, dense_limit: int = 512
) -> tuple[list[Segment], list[int]]:
    """Non-maximum suppression of full-gait windows, then merging of survivors closer than the gap.

    Up to ``dense_limit`` candidates (sequences up to about 700 frames), one IoU matrix: 0.08 ms against 0.17 ms
    row by row on a 96-frame walk, and about 10 MB while computing it at the limit (measured 159 MB at 2,009
    candidates: it grows with their square). Beyond, one row per survivor, in memory linear in the windows."""
    spans = np.asarray(positions, np.int64).reshape(-1, 2)  # [m, 2] (start, end exclusive)
    order = np.argsort(-scores)
    candidates = order[scores[order] >= config.score_threshold]  # [c] window indices, best first
    chosen = spans[candidates]  # [c, 2]

    def iou(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        """[r, 2] and [o, 2] spans -> [r, o] intersection over union."""
        overlap = np.minimum(rows[:, None, 1], others[None, :, 1]) - np.maximum(rows[:, None, 0], others[None, :, 0])
        union = np.maximum(rows[:, None, 1], others[None, :, 1]) - np.minimum(rows[:, None, 0], others[None, :, 0])
        return np.clip(overlap, 0, None) / np.maximum(union, 1)

    dense = iou(chosen, chosen) if len(chosen) <= dense_limit else None  # [c, c]
    survives = np.ones(len(candidates), bool)
    for rank in range(len(candidates)):  # greedy, best first: a survivor removes the worse windows it overlaps
        if survives[rank]:
            row = dense[rank, rank + 1 :] if dense is not None else iou(chosen[rank : rank + 1], chosen[rank + 1 :])[0]
            survives[rank + 1 :] &= row <= config.nms_iou
    kept = candidates[survives].tolist()
    segments: list[Segment] = []
    for index in sorted(kept, key=lambda i: positions[i][0]):
        start, end = positions[index][0], positions[index][1] - 1
        if segments and start - segments[-1].end - 1 <= config.merge_gap:
            last = segments[-1]
            segments[-1] = Segment(last.start, max(last.end, end), max(last.score, float(scores[index])))
        else:
            segments.append(Segment(start, end, float(scores[index])))
    return segments, kept


def report_from_windows(
    frames: int, positions: list[tuple[int, int]], probabilities: np.ndarray, config: DetectorConfig
) -> DetectionReport:
    """Window probabilities [m, 4] -> segments (NMS + merge), per-frame labels, gait fraction, usable.

    Shared by in-process inference and by the Triton client, which only moves the network elsewhere.
    """
    segments, kept = suppress_and_merge(positions, probabilities[:, FULL_GAIT], config)
    # Per frame: mean class probabilities of the windows covering it (of the shortest length, by default),
    # summed with a difference array: linear in windows and frames.
    spans = np.asarray(positions, np.int64).reshape(-1, 2)  # [m, 2]
    weights = probabilities.astype(np.float64)  # [m, 4]

    def window_sums(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum of the chosen windows' probabilities [T, 4] and their count [T], per frame."""
        values = np.concatenate([weights[chosen], np.ones((int(chosen.sum()), 1))], axis=1)  # [k, 5]
        starts, ends = spans[chosen, 0], spans[chosen, 1]
        delta = np.stack(  # [T + 1, 5]: + at each window's start, - past its end
            [np.bincount(starts, column, frames + 1) - np.bincount(ends, column, frames + 1) for column in values.T],
            axis=1,
        )
        sums = np.cumsum(delta, axis=0)[:frames]  # [T, 5]
        return sums[:, :-1], np.rint(sums[:, -1])

    every = np.ones(len(spans), bool)
    lengths = spans[:, 1] - spans[:, 0]
    totals, counts = window_sums(lengths == lengths.min() if config.frame_label_windows == "shortest" else every)
    if not counts.all():  # window_positions covers every frame at every length; other windows may not
        missing = counts == 0
        all_totals, all_counts = window_sums(every)
        totals[missing], counts[missing] = all_totals[missing], all_counts[missing]
    frame_probabilities = (totals / counts[:, None]).astype(np.float32)
    classes = frame_probabilities.argmax(axis=1)  # [T]
    labels = np.asarray(DETECTOR_CLASSES)[classes].tolist()
    gait_frames = sum(s.end - s.start + 1 for s in segments)
    fraction = gait_frames / frames
    usable = fraction >= config.min_gait_fraction and gait_frames >= min(config.min_gait_frames, frames)
    kept_windows = [(positions[i][0], positions[i][1] - 1, FULL_GAIT, float(probabilities[i, FULL_GAIT])) for i in kept]
    return DetectionReport(frames, segments, labels, frame_probabilities, fraction, usable, kept_windows)


class GaitDetector:
    """The whole inference procedure around a trained ``DHSClassifier``."""

    def __init__(
        self, classifier: DHSClassifier, config: DetectorConfig | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.classifier = classifier.eval().to(device)
        self.config = config or classifier.config
        self.device = torch.device(device)
        # What inference runs (classifier is what is saved). Channels-last weights make oneDNN run the
        # convolutions in that layout: 5 % less detector time per CASIA-B sequence on 2 CPU threads, with the
        # same labels and probabilities to 1e-7 (measured on 40 sequences, two runs: 0.950 and 0.956 of the time).
        self._network = self.classifier.folded().to(device, memory_format=torch.channels_last)

    @property
    def inference_network(self) -> DHSClassifier:
        """The network inference runs: the classifier with its batch norms folded, in channels-last layout."""
        return self._network

    @torch.no_grad()
    def window_probabilities(self, dhs: np.ndarray, positions: list[tuple[int, int]]) -> np.ndarray:
        """DHS [C_in, W, T] and windows -> class probabilities [m, 4]; one feature pass for all windows."""
        features = self._network.features(torch.from_numpy(dhs)[None].to(self.device))  # [1, C, W', T]
        pooled = pool_windows(features, positions)  # [m, C, W']
        logits = self._network.mlp(pooled.flatten(1))
        return torch.softmax(logits, dim=1).cpu().numpy()

    def detect(self, silhouettes: np.ndarray, ratios: np.ndarray | None = None) -> DetectionReport:
        """Aligned silhouettes [T, 64, 64|44] (and resize ratios [T], if known) -> the detection report."""
        if silhouettes.shape[0] == 0:
            raise GaderError("cannot detect gait in an empty sequence")
        return self.detect_dhs(dhs_of(silhouettes, self.config, ratios))

    def detect_dhs(self, dhs: np.ndarray) -> DetectionReport:
        """DHS [C_in, W, T] -> the detection report."""
        frames = int(dhs.shape[-1])
        positions = window_positions(frames, self.config)
        return report_from_windows(frames, positions, self.window_probabilities(dhs, positions), self.config)

    def classify_whole_dhs(self, dhs: np.ndarray) -> int:
        """The paper's ablation: the whole DHS as one window, one class for the sequence."""
        return int(self.window_probabilities(dhs, [(0, dhs.shape[-1])])[0].argmax())
