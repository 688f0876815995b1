"""GaitSet (Chao et al., AAAI 2019; OpenGait's CASIA-B configuration).

Frames are an unordered set: per-frame convolutions, set pooling (max over frames) at three depths, a
global branch fed by the pooled sets, horizontal pyramid pooling (16/8/4/2/1 bins, mean + max) on both
branches, and one FC per part. No BatchNorm. 2,594,592 parameters at width 1, 64x44.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gader.backbones.base import BackboneConfig, BackboneOutput, GaitBackbone, register
from gader.backbones.blocks import (
    PerFrame,
    SeparateFCs,
    check_bins,
    horizontal_pyramid,
    scaled,
    temporal_max,
    xavier_init,
)


@dataclass
class GaitSetConfig(BackboneConfig):
    channels: tuple[int, int, int] = (32, 64, 128)
    bins: tuple[int, ...] | None = None  # default: (16, 8, 4, 2, 1) at 64 rows, halved per halving of the input


def _pair(in_channels: int, out_channels: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.LeakyReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return layers


@register("gaitset", GaitSetConfig)
class GaitSet(GaitBackbone):
    def __init__(self, config: GaitSetConfig) -> None:
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
        self.block2 = PerFrame(nn.Sequential(*_pair(c1, c2, pool=True)))
        self.block3 = PerFrame(nn.Sequential(*_pair(c2, c3, pool=False)))
        # The global branch has its own weights (OpenGait deep-copies blocks 2 and 3).
        self.global2 = nn.Sequential(*_pair(c1, c2, pool=True))
        self.global3 = nn.Sequential(*_pair(c2, c3, pool=False))
        feature_height = config.input_height // 4
        self.bins = tuple(config.bins or tuple(b for b in (16, 8, 4, 2, 1) if b <= feature_height))
        check_bins(feature_height, self.bins, "gaitset")
        out = config.embedding_channels or scaled(256, config.width)
        self.head = SeparateFCs(2 * sum(self.bins), c3, out)
        self._stage_channels = [c1, c2, c3]
        xavier_init(self)

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stem_conv(frames)

    def forward_after_stem(self, x: torch.Tensor, mask: torch.Tensor | None, keep_stages: bool) -> BackboneOutput:
        x1 = self.block1(x)  # [n, c1, s, h/2, w/2]
        glob = self.global2(temporal_max(x1, mask))  # [n, c2, h/4, w/4]
        x2 = self.block2(x1)  # [n, c2, s, h/4, w/4]
        glob = self.global3(glob + temporal_max(x2, mask))  # [n, c3, h/4, w/4]
        x3 = self.block3(x2)  # [n, c3, s, h/4, w/4]
        pooled = temporal_max(x3, mask)  # [n, c3, h/4, w/4]
        glob = glob + pooled
        parts = torch.cat([horizontal_pyramid(pooled, self.bins), horizontal_pyramid(glob, self.bins)], -1)
        embeddings = self.head(parts)  # [n, d, 2 * sum(bins)]
        return BackboneOutput(embeddings, embeddings, None, [x1, x2, x3] if keep_stages else [])

    def stage_channels(self) -> list[int]:
        return list(self._stage_channels)
