"""GaitGL (Lin et al., ICCV 2021; OpenGait's CASIA-B configuration).

3-D convolutions over (time, height, width): a first 3x3x3 convolution, local temporal aggregation
(a 3x1x1 convolution with stride 3 in time), then global-local blocks (GLConv) whose local half works on
horizontal strips; max over time, generalised-mean pooling per row, an FC per part, BatchNorm, and an
FC classifier per part for training. 3,096,673 parameters at width 1, 64x44, 74 classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gader.backbones.base import BackboneConfig, BackboneOutput, GaitBackbone, register
from gader.backbones.blocks import GeMPyramid, GLConv, SeparateFCs, mask_frames, scaled, temporal_max, xavier_init


@dataclass
class GaitGLConfig(BackboneConfig):
    channels: tuple[int, int, int] = (32, 64, 128)
    halving: int = 3  # local convolutions work on 2**halving horizontal strips


@register("gaitgl", GaitGLConfig)
class GaitGL(GaitBackbone):
    def __init__(self, config: GaitGLConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = (scaled(c, config.width) for c in config.channels)
        self.stem_conv = nn.Conv3d(config.in_channels, c1, 3, padding=1, bias=False)
        self.temporal_aggregation = nn.Conv3d(c1, c1, (3, 1, 1), stride=(3, 1, 1), bias=False)
        self.block_a0 = GLConv(c1, c2, config.halving, concat=False)
        self.block_a1 = GLConv(c2, c3, config.halving, concat=False)
        self.block_b2 = GLConv(c3, c3, config.halving, concat=True)  # stacks global over local: h doubles
        self.parts = config.input_height  # rows after one 2x pooling and the doubling concat
        self.pooling = GeMPyramid(self.parts)
        self.head = SeparateFCs(self.parts, c3, config.embedding_channels or c3)
        out = config.embedding_channels or c3
        self.norm = nn.BatchNorm1d(out)
        self.classifier = SeparateFCs(self.parts, out, config.num_classes) if config.num_classes else None
        self._stage_channels = [c1, c2, c3, c3]
        xavier_init(self)

    def min_frames(self) -> int:
        return 3

    def stage_mask(self, mask: torch.Tensor | None, frames: int) -> torch.Tensor | None:
        """After the stride-3 temporal aggregation a frame is real when all three of its inputs are."""
        if mask is None or frames == mask.shape[1]:
            return mask
        lengths = torch.div(mask.sum(dim=1), 3, rounding_mode="floor")  # [n]
        return torch.arange(frames, device=mask.device)[None, :] < lengths[:, None]  # [n, frames]

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stem_conv(frames)

    def forward(
        self,
        frames: torch.Tensor,
        mask: torch.Tensor | None = None,
        frame_weights: torch.Tensor | None = None,
        keep_stages: bool = False,
    ) -> BackboneOutput:
        # Sequences shorter than the temporal stride are tiled (OpenGait repeats 1 frame 3x, 2 frames 2x).
        if frames.shape[2] < 3:
            repeat = 3 if frames.shape[2] == 1 else 2
            frames = frames.repeat(1, 1, repeat, 1, 1)
            mask = None if mask is None else mask.repeat(1, repeat)
            frame_weights = None if frame_weights is None else frame_weights.repeat(1, repeat)
        return super().forward(frames, mask, frame_weights, keep_stages)

    def forward_after_stem(self, x: torch.Tensor, mask: torch.Tensor | None, keep_stages: bool) -> BackboneOutput:
        x = mask_frames(F.leaky_relu(x), mask)  # [n, c1, s, h, w]
        x0 = F.leaky_relu(self.temporal_aggregation(x))  # [n, c1, s/3, h, w]
        mask = self.stage_mask(mask, x0.shape[2])  # [n, s/3]
        x0 = mask_frames(x0, mask)
        x1 = self.block_a0(x0, mask)  # [n, c2, s/3, h, w]
        x1 = F.max_pool3d(x1, (1, 2, 2), (1, 2, 2))  # [n, c2, s/3, h/2, w/2]
        x2 = self.block_a1(x1, mask)  # [n, c3, s/3, h/2, w/2]
        x3 = self.block_b2(x2, mask)  # [n, c3, s/3, h, w/2]
        pooled = temporal_max(x3, mask)  # [n, c3, h, w/2]
        features = self.head(self.pooling(pooled))  # [n, d, p]
        normalised = self.norm(features)  # [n, d, p]: BatchNorm1d over channels, statistics over n and parts
        logits = self.classifier(normalised) if self.classifier is not None else None
        return BackboneOutput(normalised, normalised, logits, [x0, x1, x2, x3] if keep_stages else [])

    def stage_channels(self) -> list[int]:
        return list(self._stage_channels)
