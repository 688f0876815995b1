"""From sequence records to model inputs, and embedding whole datasets efficiently.

Every path that feeds a model (training, evaluation, the service) prepares frames here: aligned
silhouettes are cut to 64x44 (OpenGait's side cut) and resized to the model's input size, then scaled
to [0, 1]. Sequences are embedded in batches of similar length (little padding), all frames of a
sequence at once, as OpenGait tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from gader.data.dataset import SequenceDataset, SequenceInfo
from gader.data.record import SequenceRecord, cut_sides
from gader.errors import GaderError
from gader.progress import progress


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W(, 3)] aligned frames (64x64 are side-cut first) -> [T, height, width(, 3)]."""
    if frames.shape[2] == 64 and frames.shape[1] == 64:
        frames = frames[:, :, 10:-10] if frames.ndim == 4 else cut_sides(frames)
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass
class PreparedSequence:
    silhouettes: np.ndarray  # uint8 [T, h, w] at the model's input size
    ratios: np.ndarray | None  # float32 [T]
    rgb: np.ndarray | None = None  # uint8 [T, h, w, 3]

    @property
    def frames(self) -> int:
        return int(self.silhouettes.shape[0])


def prepare(
    record: SequenceRecord, height: int, width: int, with_rgb: bool = False, max_frames: int | None = None
) -> PreparedSequence:
    frames = record.frames if max_frames is None else min(record.frames, max_frames)
    return PreparedSequence(
        silhouettes=resize_frames(record.silhouettes[:frames], height, width),
        ratios=None if record.ratios is None else record.ratios[:frames].astype(np.float32),
        rgb=resize_frames(record.rgb[:frames], height, width) if with_rgb and record.rgb is not None else None,
    )


@dataclass
class TensorBatch:
    silhouettes: torch.Tensor  # float [n, 1, s, h, w] in [0, 1]
    mask: torch.Tensor | None  # bool [n, s]; None when every sequence has s frames
    ratios: torch.Tensor | None  # float [n, s]; None unless every sequence has ratios
    rgb: torch.Tensor | None = None  # float [n, 3, s, h, w]


def tiled(sequence: PreparedSequence, shortest: int) -> PreparedSequence:
    """The sequence repeated whole until it has at least ``shortest`` frames (unchanged when it has)."""
    if sequence.frames >= shortest or sequence.frames == 0:
        return sequence
    times = -(-shortest // sequence.frames)  # ceil: 1 frame -> 3, 2 frames -> 2 for shortest 3
    return PreparedSequence(
        silhouettes=np.tile(sequence.silhouettes, (times, 1, 1)),
        ratios=None if sequence.ratios is None else np.tile(sequence.ratios, times),
        rgb=None if sequence.rgb is None else np.tile(sequence.rgb, (times, 1, 1, 1)),
    )


def collate(sequences: list[PreparedSequence], device: torch.device | str = "cpu") -> TensorBatch:
    """Pad to the longest sequence; ratios are kept only when all sequences have them."""
    longest = max(seq.frames for seq in sequences)
    n = len(sequences)
    h, w = sequences[0].silhouettes.shape[1:]
    silhouettes = np.zeros((n, 1, longest, h, w), np.float32)
    mask = np.zeros((n, longest), bool)
    with_ratios = all(seq.ratios is not None for seq in sequences)
    ratios = np.zeros((n, longest), np.float32) if with_ratios else None
    for i, seq in enumerate(sequences):
        silhouettes[i, 0, : seq.frames] = seq.silhouettes / np.float32(255)
        mask[i, : seq.frames] = True
        if ratios is not None:
            ratios[i, : seq.frames] = seq.ratios
    return TensorBatch(
        silhouettes=torch.from_numpy(silhouettes).to(device),
        mask=None if mask.all() else torch.from_numpy(mask).to(device),
        ratios=None if ratios is None else torch.from_numpy(ratios).to(device),
    )


def length_batches(lengths: list[int], frame_budget: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length whose padded size stays within ``frame_budget``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) + 1) * lengths[index] > frame_budget:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


Embedder = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def embed_sequences(
    embedder: Embedder,
    sequences: list[PreparedSequence],
    frame_budget: int = 4096,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """float32 [N, d, p] embeddings of prepared sequences, in their order, each the same as embedded alone (up to
    float rounding). A sequence shorter than the
    architecture takes (GaitGL: 3 frames, its temporal stride) is tiled first, alone, as OpenGait does (1 frame
    3x, 2 frames 2x): tiling a padded batch as a whole would leave it to be padded instead, and read as empty."""
    backbone = getattr(embedder, "silhouette", None)
    shortest = backbone.min_frames() if backbone is not None else 1
    sequences = [tiled(seq, shortest) for seq in sequences]
    out: list[np.ndarray | None] = [None] * len(sequences)
    # Sequences with ratios and without are batched apart: a batch keeps ratios only when all of its sequences
    # have them (collate), so one without would take the ratio attention from the others, and a sequence's
    # embedding would depend on its batch mates.
    with_ratios = [i for i, seq in enumerate(sequences) if seq.ratios is not None]
    without = [i for i, seq in enumerate(sequences) if seq.ratios is None]
    for group in (with_ratios, without):
        for rows in length_batches([sequences[i].frames for i in group], frame_budget):
            batch = [group[row] for row in rows]
            tensors = collate([sequences[i] for i in batch], device)
            embeddings = embedder(tensors.silhouettes, tensors.mask, tensors.ratios).float().cpu().numpy()
            for row, index in enumerate(batch):
                out[index] = embeddings[row]
    return np.stack(out)  # type: ignore[arg-type]


def part_major(embeddings: np.ndarray) -> np.ndarray:
    """Model embeddings [N, d, p] (channels by parts, as the networks and OpenGait emit them) -> [N, p, d], the
    layout ``gader.metrics`` and ``gader.protocols`` compare part by part (and ``--save-embeddings`` writes).
    Passed as they come, the channels would be taken for parts: a distance over the parts, averaged over the
    channels, which is not OpenGait's metric."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 3:
        raise GaderError(f"model embeddings must be [N, d, p], got shape {embeddings.shape}")
    return np.ascontiguousarray(embeddings.transpose(0, 2, 1))


def embed_dataset(
    embedder: Embedder,
    dataset: SequenceDataset,
    input_size: tuple[int, int],
    use_ratios: bool = True,
    chunk: int = 256,
    frame_budget: int = 4096,
    max_frames: int | None = 720,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
    select_frames: Callable[[SequenceRecord], SequenceRecord] | None = None,
) -> tuple[np.ndarray, list[SequenceInfo]]:
    """Stream a dataset through the embedder: [N, d, p] and the infos in the same order.

    Reads ``chunk`` sequences at a time (never the whole dataset), sorts them by length into batches,
    and keeps at most ``max_frames`` frames per sequence (OpenGait's test limit for GaitBase is 720).
    ``select_frames`` may restrict a sequence to some frames first (e.g. the detector's gait segments).
    A sequence without frames has no embedding: it is left out of both outputs.
    """
    infos = dataset.infos
    height, width = input_size
    results = []
    kept: list[SequenceInfo] = []
    bar = progress(total=len(infos), enabled=show_progress, desc="embedding", unit="seq")
    for start in range(0, len(infos), chunk):
        prepared = []
        for info in infos[start : start + chunk]:
            bar.update(1)
            record = dataset.load(info)
            if select_frames is not None:
                record = select_frames(record)
            if record.frames == 0:
                continue
            item = prepare(record, height, width, max_frames=max_frames)
            if not use_ratios:
                item.ratios = None
            prepared.append(item)
            kept.append(info)
        if prepared:
            results.append(embed_sequences(embedder, prepared, frame_budget, device))
    bar.close()
    if not results:
        raise GaderError("no sequence with frames to embed")
    return np.concatenate(results), kept


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
