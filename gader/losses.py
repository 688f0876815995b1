"""Training losses: batch-all triplet per part, cross-entropy per part, feature distillation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TripletStats:
    loss: torch.Tensor  # scalar
    active_fraction: float  # share of triplets that still violate the margin (training progress)


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> TripletStats:
    """OpenGait's batch-all triplet loss, per body part, averaged over the triplets that are not zero.

    embeddings [n, c, p]; labels [n]. For every anchor, every positive (the anchor itself included) and
    every negative: relu(d(a, p) - d(a, n) + margin). Each part's loss is the mean over its non-zero
    triplets; the result is the mean over parts.
    """
    x = embeddings.float().permute(2, 0, 1)  # [p, n, c]
    squared = (x * x).sum(-1)  # [p, n]
    # The floor keeps sqrt's gradient finite at zero distance (an anchor paired with itself).
    distance = (squared[:, :, None] + squared[:, None, :] - 2 * x @ x.transpose(1, 2)).clamp(min=1e-12).sqrt()
    same = labels[:, None] == labels[None, :]  # [n, n]
    parts, n = distance.shape[0], distance.shape[1]
    counts = same.sum(dim=1)
    if bool((counts == counts[0]).all()):
        # Balanced batch (P x K): gather positives and negatives, [p, n, K, 1] and [p, n, 1, n - K].
        k = int(counts[0])
        positives = distance[:, same].view(parts, n, k, 1)
        negatives = distance[:, ~same].view(parts, n, 1, n - k)
        losses = F.relu(positives - negatives + margin).flatten(1)  # [p, n * K * (n - K)]
        total = losses.shape[1] * parts
    else:  # any batch: all (a, p, n) with a mask, [p, n, n, n]
        valid = (same[:, :, None] & ~same[:, None, :])[None]
        losses = (F.relu(distance[:, :, :, None] - distance[:, :, None, :] + margin) * valid).flatten(1)
        total = int(valid.sum()) * parts
    nonzero = (losses > 0).sum(dim=1)  # [p]
    per_part = losses.sum(dim=1) / nonzero.clamp(min=1)  # AvgNonZero; 0 where nothing violates the margin
    return TripletStats(per_part.mean(), float(nonzero.sum()) / max(total, 1))


def part_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, scale: float = 1.0, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of every part's logits [n, classes, p] against labels [n], averaged over n and p."""
    n, _classes, p = logits.shape
    return F.cross_entropy(logits.float() * scale, labels[:, None].expand(n, p), label_smoothing=smoothing)


def part_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels[:, None]).float().mean())


def distillation_distance(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None, kind: str = "mse"
) -> torch.Tensor:
    """D(stopgrad(teacher), student) for block features [n, c, s, h, w], over real frames only."""
    teacher = teacher.detach()  # the RGB branch is not pulled towards the silhouettes
    if kind == "mse":
        difference = (student - teacher).pow(2)
    elif kind == "l1":
        difference = (student - teacher).abs()
    elif kind == "cosine":
        difference = 1 - F.cosine_similarity(student, teacher, dim=1).unsqueeze(1)
    else:
        raise ValueError(f"unknown distillation distance {kind!r}")
    if mask is None:
        return difference.mean()
    weights = mask[:, None, :, None, None].to(difference.dtype)
    return (difference * weights).sum() / (weights.sum() * difference[0, :, 0].numel()).clamp(min=1)
