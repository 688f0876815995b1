"""Building blocks shared by the gait backbones.

Tensor layout everywhere: ``[n, c, s, h, w]`` (sequences, channels, frames, height, width). Sequences of
different lengths share a batch by zero padding at the end plus a boolean ``mask [n, s]`` (True = real
frame). Every operation that mixes frames (temporal max, 1-D/3-D temporal convolutions) honours the
mask, so a sequence gives the same embedding alone or padded in a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def scaled(channels: int, width: float) -> int:
    """A channel count under the width multiplier (at least 1)."""
    return max(1, round(channels * width))


class PerFrame(nn.Module):
    """Apply a 2-D module to every frame: [n, c, s, h, w] -> [n, c', s, h', w']."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, s, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * s, c, h, w)  # [n*s, c, h, w]
        out = self.module(frames)  # [n*s, c', h', w']
        return out.reshape(n, s, *out.shape[1:]).transpose(1, 2)  # [n, c', s, h', w']


def mask_frames(x: torch.Tensor, mask: torch.Tensor | None, fill: float = 0.0) -> torch.Tensor:
    """Set padded frames of x [n, c, s, ...] to ``fill``; mask [n, s] or None (no padding)."""
    if mask is None:
        return x
    shape = (mask.shape[0], 1, mask.shape[1]) + (1,) * (x.dim() - 3)
    return x.masked_fill(~mask.view(shape), fill)


def temporal_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Max over frames of [n, c, s, ...] ignoring padded frames -> [n, c, ...]."""
    return mask_frames(x, mask, float("-inf")).max(dim=2).values


def horizontal_pyramid(x: torch.Tensor, bins: tuple[int, ...]) -> torch.Tensor:
    """Horizontal pyramid pooling (mean + max per strip): [n, c, h, w] -> [n, c, sum(bins)].

    A bin count b splits the rows into b equal strips (OpenGait's ``view(n, c, b, -1)``).
    """
    n, c, h, w = x.shape
    parts = []
    for b in bins:
        z = x.reshape(n, c, b, (h // b) * w)  # [n, c, b, rows*w]
        parts.append(z.mean(dim=-1) + z.max(dim=-1).values)
    return torch.cat(parts, dim=-1)


def check_bins(height: int, bins: tuple[int, ...], where: str) -> None:
    for b in bins:
        if b < 1 or height % b:
            raise ValueError(f"{where}: {b} horizontal bins do not divide a feature map {height} rows high")


class GeMPyramid(nn.Module):
    """Generalised-mean pooling per horizontal strip (GaitGL): [n, c, h, w] -> [n, c, bins].

    ``(mean(clamp(x, eps)^p))^(1/p)`` over each strip, with a learnable p (initialised at 6.5).
    """

    def __init__(self, bins: int, p: float = 6.5, eps: float = 1e-6) -> None:
        super().__init__()
        self.bins = bins
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        z = x.reshape(n, c, self.bins, (h // self.bins) * w)  # [n, c, b, rows*w]
        return z.clamp(min=self.eps).pow(self.p).mean(dim=-1).pow(1.0 / self.p)


class SeparateFCs(nn.Module):
    """One linear map per body part: [n, c_in, p] -> [n, c_out, p] (weight [p, c_in, c_out])."""

    def __init__(self, parts: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts, in_channels, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x.permute(2, 0, 1), self.weight).permute(1, 2, 0)  # [p,n,cin]@[p,cin,cout]


class BNNeck(nn.Module):
    """GaitBase's BNNeck: one BatchNorm over all part features, L2-normalised parts, cosine logits.

    [n, c, p] -> (features [n, c, p], logits [n, classes, p]). The BatchNorm runs over the channel-major
    flattening (index = channel * parts + part), OpenGait's current layout.
    """

    def __init__(self, parts: int, channels: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels * parts)
        self.classifier = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts, channels, classes)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, p = x.shape
        features = self.norm(x.reshape(n, c * p)).reshape(n, c, p)  # [n, c, p]
        unit = F.normalize(features.permute(2, 0, 1), dim=-1)  # [p, n, c]
        logits = unit.matmul(F.normalize(self.classifier, dim=1))  # [p, n, classes]
        return unit.permute(1, 2, 0), logits.permute(1, 2, 0)


class FocalConv2d(nn.Module):
    """GaitPart's focal convolution: one kernel applied to 2**halving horizontal strips separately."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, padding: int, halving: int) -> None:
        super().__init__()
        self.halving = halving
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.halving == 0:
            return self.conv(x)
        strip = x.size(2) // 2**self.halving
        return torch.cat([self.conv(part) for part in x.split(strip, dim=2)], dim=2)


class GLConv(nn.Module):
    """GaitGL's global-local 3-D convolution on [n, c, s, h, w].

    Global: one 3x3x3 convolution on the whole map. Local: another applied to 2**halving horizontal
    strips separately. Combined by adding the two activations, or (``concat``) by stacking them along the
    height (the final block, which doubles h).
    """

    def __init__(self, in_channels: int, out_channels: int, halving: int, concat: bool) -> None:
        super().__init__()
        self.halving, self.concat = halving, concat
        self.global_conv = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.local_conv = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        global_features = self.global_conv(x)
        strip = x.size(3) // 2**self.halving
        local_features = torch.cat([self.local_conv(part) for part in x.split(strip, dim=3)], dim=3)
        if self.concat:
            out = F.leaky_relu(torch.cat([global_features, local_features], dim=3))
        else:
            out = F.leaky_relu(global_features) + F.leaky_relu(local_features)
        return mask_frames(out, mask)  # keep padded frames at zero for the next temporal convolution


def xavier_init(module: nn.Module) -> None:
    """OpenGait's initialisation: Xavier-uniform convolutions, BatchNorm weights ~ N(1, 0.02)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
