"""Training batches: an in-memory copy of the training sequences at the model's input size, a P x K
sampler, OpenGait's frame-sampling modes, and sequence-level augmentations.

Training touches every sequence thousands of times, so the training split is read once (with a progress
bar) into compact uint8 arrays at the model's input size; evaluation and serving stream instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from gader.data.dataset import SequenceDataset
from gader.embedding import PreparedSequence, prepare
from gader.errors import GaderError
from gader.progress import progress

SAMPLING_MODES = ("fixed_unordered", "fixed_ordered", "unfixed_unordered", "unfixed_ordered")


@dataclass
class TrainingSequence:
    data: PreparedSequence
    label: int  # class index of the subject


class TrainingSet:
    """All training sequences, prepared once; grouped by subject for P x K sampling."""

    def __init__(
        self,
        dataset: SequenceDataset,
        input_size: tuple[int, int],
        with_rgb: bool = False,
        with_ratios: bool = True,
        gait_frames_only: bool = False,
        min_frames: int = 1,
        show_progress: bool = True,
    ) -> None:
        self.subjects = dataset.subjects
        self.label_of = {subject: i for i, subject in enumerate(self.subjects)}
        self.sequences: list[TrainingSequence] = []
        dropped = 0
        for record in progress(dataset, total=len(dataset), enabled=show_progress, desc="loading", unit="seq"):
            if gait_frames_only and record.labels is not None:
                record = record.select(record.labels.walking)
            if record.frames < min_frames:
                dropped += 1
                continue
            item = prepare(record, *input_size, with_rgb=with_rgb)
            if not with_ratios:
                item.ratios = None
            if with_rgb and item.rgb is None:
                raise GaderError(f"{record.source}: the RGB branch needs RGB crops, this sequence has none")
            self.sequences.append(TrainingSequence(item, self.label_of[record.subject]))
        self.dropped = dropped
        self.by_label: dict[int, list[int]] = {}
        for index, sequence in enumerate(self.sequences):
            self.by_label.setdefault(sequence.label, []).append(index)
        if len(self.by_label) < 2:
            raise GaderError(f"training needs at least 2 subjects with usable sequences, found {len(self.by_label)}")

    @property
    def num_classes(self) -> int:
        return len(self.subjects)

    @property
    def has_ratios(self) -> bool:
        return all(s.data.ratios is not None for s in self.sequences)

    @property
    def frames(self) -> int:
        return sum(s.data.frames for s in self.sequences)


class PKSampler:
    """Endless batches of P subjects x K sequences (OpenGait's TripletSampler, one per process)."""

    def __init__(
        self, by_label: dict[int, list[int]], subjects: int, per_subject: int, rng: np.random.Generator
    ) -> None:
        self.by_label, self.p, self.k, self.rng = by_label, subjects, per_subject, rng
        self.labels = sorted(by_label)

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            labels = self.rng.choice(self.labels, size=self.p, replace=len(self.labels) < self.p)
            batch = []
            for label in labels:
                pool = self.by_label[int(label)]
                batch.extend(self.rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist())
            yield batch


def sample_frames(length: int, count: int, mode: str, skip: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices for one training clip (OpenGait's collate modes).

    unordered: ``count`` random frames (without replacement when the sequence is long enough);
    ordered: a random window of ``count + skip`` frames (the sequence tiled if shorter), from which
    ``count`` positions are drawn and kept in temporal order.
    """
    if mode.endswith("unordered"):
        return rng.choice(length, size=count, replace=length < count)
    window = count + skip
    indices = np.arange(length)
    if length < window:
        indices = np.tile(indices, -(-window // length))
    start = int(rng.integers(0, len(indices) - window + 1))
    picks = np.sort(rng.choice(window, size=count, replace=False))
    return indices[start : start + window][picks]


@dataclass
class Augmentation:
    rotate_probability: float = 0.0
    rotate_degrees: float = 10.0
    erase_probability: float = 0.0
    flip_probability: float = 0.0  # mirror left-right (a person walking the other way)

    def __call__(
        self, frames: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One random transform for the whole sequence: frames uint8 [T, h, w], rgb [T, h, w, 3]."""
        _frames, h, w = frames.shape
        if self.flip_probability and rng.random() < self.flip_probability:
            frames = frames[:, :, ::-1]
            rgb = None if rgb is None else rgb[:, :, ::-1]
        if self.rotate_probability and rng.random() < self.rotate_probability:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-1, 1) * self.rotate_degrees), 1.0)
            frames = np.stack([cv2.warpAffine(f, matrix, (w, h)) for f in frames])
            rgb = None if rgb is None else np.stack([cv2.warpAffine(f, matrix, (w, h)) for f in rgb])
        if self.erase_probability and rng.random() < self.erase_probability:
            for _ in range(100):  # OpenGait's RandomErasing: 5-20 % of the area, aspect 0.3-3.3
                area = rng.uniform(0.05, 0.2) * h * w
                aspect = rng.uniform(0.3, 1 / 0.3)
                eh, ew = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
                if 0 < eh < h and 0 < ew < w:
                    y, x = int(rng.integers(0, h - eh)), int(rng.integers(0, w - ew))
                    frames = frames.copy()
                    frames[:, y : y + eh, x : x + ew] = 0
                    break
        return np.ascontiguousarray(frames), None if rgb is None else np.ascontiguousarray(rgb)


@dataclass
class TrainingBatch:
    silhouettes: torch.Tensor  # float [n, 1, s, h, w]
    labels: torch.Tensor  # int64 [n]
    ratios: torch.Tensor | None  # float [n, s]
    rgb: torch.Tensor | None  # float [n, 3, s, h, w]


def make_batch(
    training: TrainingSet,
    indices: list[int],
    frames: int,
    mode: str,
    skip: int,
    augmentation: Augmentation,
    rng: np.random.Generator,
    device: torch.device,
    frame_range: tuple[int, int] | None = None,
) -> TrainingBatch:
    if mode not in SAMPLING_MODES:
        raise GaderError(f"unknown frame sampling {mode!r}: use one of {', '.join(SAMPLING_MODES)}")
    if mode.startswith("unfixed") and frame_range is not None:
        frames = int(rng.integers(frame_range[0], frame_range[1] + 1))  # one count per batch: a rectangle
    silhouettes, ratios, colours, labels = [], [], [], []
    for index in indices:
        sequence = training.sequences[index]
        picks = sample_frames(sequence.data.frames, frames, mode, skip, rng)
        rgb = None if sequence.data.rgb is None else sequence.data.rgb[picks]
        sil, rgb = augmentation(sequence.data.silhouettes[picks], rgb, rng)
        silhouettes.append(sil)
        colours.append(rgb)
        ratios.append(None if sequence.data.ratios is None else sequence.data.ratios[picks])
        labels.append(sequence.label)
    sil_tensor = torch.from_numpy(np.stack(silhouettes)).to(device).float().div_(255).unsqueeze(1)  # [n,1,s,h,w]
    ratio_tensor = None
    if all(r is not None for r in ratios):
        ratio_tensor = torch.from_numpy(np.stack(ratios)).to(device)
    rgb_tensor = None
    if all(c is not None for c in colours):
        rgb_tensor = torch.from_numpy(np.stack(colours)).to(device).float().div_(255).permute(0, 4, 1, 2, 3)
    return TrainingBatch(sil_tensor, torch.tensor(labels, device=device), ratio_tensor, rgb_tensor)
