"""GaitBase (Fan et al., OpenGait, CVPR 2023; the CASIA-B configuration).

A ResNet9-style per-frame 2-D network (3x3 stem, four one-block stages of 64/128/256/512 channels with
strides 1/2/2/1, BatchNorm, ReLU), max over time, horizontal pooling into 16 parts (mean + max), one FC
per part, and a BNNeck with cosine classifier for training. 7,305,408 parameters at width 1, 64x44,
74 classes (6,994,112 without the BNNeck, which inference drops).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gader.backbones.base import BackboneConfig, BackboneOutput, GaitBackbone, register
from gader.backbones.blocks import (
    BNNeck,
    PerFrame,
    SeparateFCs,
    check_bins,
    horizontal_pyramid,
    scaled,
    temporal_max,
    xavier_init,
)


@dataclass
class GaitBaseConfig(BackboneConfig):
    channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    strides: tuple[int, int, int, int] = (1, 2, 2, 1)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm, plus a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


@register("gaitbase", GaitBaseConfig)
class GaitBase(GaitBackbone):
    def __init__(self, config: GaitBaseConfig) -> None:
        super().__init__()
        self.config = config
        channels = [scaled(c, config.width) for c in config.channels]
        self.stem_conv = PerFrame(nn.Conv2d(config.in_channels, channels[0], 3, 1, 1, bias=False))
        self.stem_norm = PerFrame(nn.Sequential(nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)))
        inputs = [channels[0], *channels[:-1]]
        self.layers = nn.ModuleList(
            PerFrame(BasicBlock(i, o, s)) for i, o, s in zip(inputs, channels, config.strides, strict=True)
        )
        height = config.input_height
        for stride in config.strides:
            height = (height + stride - 1) // stride
        self.parts = height  # one part per feature row: 16 at 64 rows
        check_bins(height, (self.parts,), "gaitbase")
        out = config.embedding_channels or scaled(256, config.width)
        self.head = SeparateFCs(self.parts, channels[-1], out)
        self.bnneck = BNNeck(self.parts, out, config.num_classes) if config.num_classes else None
        self._stage_channels = channels
        xavier_init(self)

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stem_conv(frames)

    def forward_after_stem(self, x: torch.Tensor, mask: torch.Tensor | None, keep_stages: bool) -> BackboneOutput:
        x = self.stem_norm(x)  # [n, c0, s, h, w]
        stages = []
        for layer in self.layers:
            x = layer(x)
            stages.append(x)
        pooled = temporal_max(x, mask)  # [n, c3, h/4, w/4]
        embeddings = self.head(horizontal_pyramid(pooled, (self.parts,)))  # [n, d, p]
        logits = self.bnneck(embeddings)[1] if self.bnneck is not None else None
        # Matching and the triplet loss use the FC output before the BNNeck, as OpenGait does.
        return BackboneOutput(embeddings, embeddings, logits, stages if keep_stages else [])

    def stage_channels(self) -> list[int]:
        return list(self._stage_channels)
