"""GaitPart (Fan et al., CVPR 2020; OpenGait's CASIA-B configuration).

Per-frame convolutions whose deeper layers are *focal* (one kernel applied to horizontal strips
separately), horizontal pooling into 16 parts per frame, then per part a temporal feature aggregator:
two micro-motion templates (3- and 5-frame windows, mean + max) weighted by learned channel attention,
max over time, one FC per part. No BatchNorm. 1,204,000 parameters at width 1, 64x44.

The 16 per-part temporal networks have independent weights; they run as one grouped convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gader.backbones.base import BackboneConfig, BackboneOutput, GaitBackbone, register
from gader.backbones.blocks import (
    FocalConv2d,
    PerFrame,
    SeparateFCs,
    check_bins,
    horizontal_pyramid,
    mask_frames,
    scaled,
    temporal_max,
    xavier_init,
)


@dataclass
class GaitPartConfig(BackboneConfig):
    channels: tuple[int, int, int] = (32, 64, 128)
    squeeze: int = 4  # channel reduction inside the micro-motion attention


class TemporalAggregator(nn.Module):
    """Micro-motion capture per part: [n, c, s, p] -> [n, c, p]."""

    def __init__(self, channels: int, parts: int, squeeze: int) -> None:
        super().__init__()
        hidden = max(channels // squeeze, 1)
        self.parts = parts
        # Grouped over parts: group i is part i's own network (OpenGait keeps 16 separate modules).
        self.short_attention = nn.Sequential(
            nn.Conv1d(parts * channels, parts * hidden, 3, padding=1, groups=parts, bias=False),
            nn.LeakyReLU(inplace=True),
            nn.Conv1d(parts * hidden, parts * channels, 1, groups=parts, bias=False),
        )
        self.long_attention = nn.Sequential(
            nn.Conv1d(parts * channels, parts * hidden, 3, padding=1, groups=parts, bias=False),
            nn.LeakyReLU(inplace=True),
            nn.Conv1d(parts * hidden, parts * channels, 3, padding=1, groups=parts, bias=False),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, c, s, p = x.shape
        x = mask_frames(x, mask)  # zeros in padded frames, as the convolutions' own padding
        flat = x.permute(0, 3, 1, 2).reshape(n, p * c, s)  # [n, p*c, s], part-major groups
        floor = mask_frames(x, mask, float("-inf")).permute(0, 3, 1, 2).reshape(n, p * c, s)
        short = F.avg_pool1d(flat, 3, 1, 1) + F.max_pool1d(floor, 3, 1, 1)  # 3-frame template
        long = F.avg_pool1d(flat, 5, 1, 2) + F.max_pool1d(floor, 5, 1, 2)  # 5-frame template
        if mask is not None:  # no -inf may reach a product (its gradient would be NaN)
            short, long = short.masked_fill(~mask[:, None, :], 0.0), long.masked_fill(~mask[:, None, :], 0.0)
        features = short * torch.sigmoid(self.short_attention(flat)) + long * torch.sigmoid(self.long_attention(flat))
        features = features.reshape(n, p, c, s).permute(0, 2, 3, 1)  # [n, c, s, p]
        return temporal_max(features, mask)  # [n, c, p]


@register("gaitpart", GaitPartConfig)
class GaitPart(GaitBackbone):
    def __init__(self, config: GaitPartConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = (scaled(c, config.width) for c in config.channels)
        self.stem_conv = PerFrame(nn.Conv2d(config.in_channels, c1, 5, padding=2, bias=False))
        self.block1 = PerFrame(
            nn.Sequential(
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(c1, c1, 3, padding=1, bias=False),
                nn.LeakyReLU(inplace=True),
                nn.MaxPool2d(2, 2),
            )
        )
        self.block2 = PerFrame(
            nn.Sequential(
                FocalConv2d(c1, c2, 3, 1, halving=2),
                nn.LeakyReLU(inplace=True),
                FocalConv2d(c2, c2, 3, 1, halving=2),
                nn.LeakyReLU(inplace=True),
                nn.MaxPool2d(2, 2),
            )
        )
        self.block3 = PerFrame(
            nn.Sequential(
                FocalConv2d(c2, c3, 3, 1, halving=3),
                nn.LeakyReLU(inplace=True),
                FocalConv2d(c3, c3, 3, 1, halving=3),
                nn.LeakyReLU(inplace=True),
            )
        )
        self.parts = config.input_height // 4  # one part per feature row: 16 at 64 rows
        check_bins(config.input_height // 4, (self.parts,), "gaitpart")
        self.aggregator = TemporalAggregator(c3, self.parts, config.squeeze)
        self.head = SeparateFCs(self.parts, c3, config.embedding_channels or scaled(128, config.width))
        self._stage_channels = [c1, c2, c3]
        xavier_init(self)

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stem_conv(frames)

    def forward_after_stem(self, x: torch.Tensor, mask: torch.Tensor | None, keep_stages: bool) -> BackboneOutput:
        x1 = self.block1(x)  # [n, c1, s, h/2, w/2]
        x2 = self.block2(x1)  # [n, c2, s, h/4, w/4]
        x3 = self.block3(x2)  # [n, c3, s, h/4, w/4]
        n, c, s, h, w = x3.shape
        strips = horizontal_pyramid(x3.transpose(1, 2).reshape(n * s, c, h, w), (self.parts,))  # [n*s, c, p]
        strips = strips.reshape(n, s, c, self.parts).transpose(1, 2)  # [n, c, s, p]
        embeddings = self.head(self.aggregator(strips, mask))  # [n, d, p]
        return BackboneOutput(embeddings, embeddings, None, [x1, x2, x3] if keep_stages else [])

    def stage_channels(self) -> list[int]:
        return list(self._stage_channels)
