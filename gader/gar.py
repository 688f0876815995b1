"""GAR: gait recognition with ratio attention and RGB-to-silhouette feature distillation (GADER §3.2).

- Ratio attention: ``r = sigmoid(Conv1d(ratios))``, one weight per frame, multiplies the output of the
  backbone's first convolution (3-D for GaitGL, per-frame 2-D for the others). The ratio is the body's
  bounding-box height in the original frame over the aligned height (64), so it carries distance and
  viewpoint cues that size normalisation throws away. A sequence without ratios (CASIA-B) runs without
  the attention; no ratio is ever invented.
- Distillation: an RGB branch with the same architecture (3 input channels, weighted by the same ``r``)
  sees the RGB crops of the same frames. For every block i an adapter ``C_i`` (a 1x1 convolution) maps the
  silhouette feature towards the RGB feature, with a stop-gradient on the RGB side:
  ``L_distill = 1/N sum_i D(stopgrad(F_i^rgb), C_i(F_i^sil))``.
- Loss: ``0.425 L(rgb) + 0.425 L(sil) + 0.15 L_distill``, where each L is the backbone's own loss (triplet,
  plus cross-entropy where the architecture has a classifier). Without the RGB branch: L(sil) alone.
- Inference (``GaitEmbedder``): the silhouette backbone and the ratio Conv1d only; no RGB branch, no
  adapters, no classifier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gader.backbones import BackboneConfig, BackboneOutput, GaitBackbone, config_type, create_model
from gader.backbones.blocks import mask_frames
from gader.errors import GaderError
from gader.losses import distillation_distance


@dataclass
class GARConfig:
    architecture: str = "gaitbase"
    backbone: dict[str, Any] = field(default_factory=dict)  # settings of the architecture's config
    ratio_attention: bool = False
    ratio_kernel: int = 3  # temporal extent of the ratio Conv1d
    distillation: bool = False  # adds the RGB branch and the adapters (training only)
    distill_distance: str = "mse"
    loss_weights: tuple[float, float, float] = (0.425, 0.425, 0.15)  # rgb, silhouette, distillation

    def backbone_config(self, in_channels: int = 1, with_classifier: bool = True) -> BackboneConfig:
        settings = dict(self.backbone, in_channels=in_channels)
        if not with_classifier:
            settings["num_classes"] = 0
        return config_type(self.architecture).from_dict(settings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GARConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GaderError(f"GAR config: unknown setting(s) {', '.join(unknown)}")
        values = dict(values)
        if "loss_weights" in values:
            values["loss_weights"] = tuple(values["loss_weights"])
        return cls(**values)


class RatioAttention(nn.Module):
    """ratios [n, s] -> per-frame weights in (0, 1) [n, s]."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise GaderError(f"ratio_kernel must be an odd number >= 1, got {kernel}")
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)  # starts neutral (0.5 everywhere) and learns what ratios mean
        nn.init.zeros_(self.conv.bias)

    def forward(self, ratios: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            ratios = ratios.masked_fill(~mask, 0.0)  # padded frames act like the convolution's zero padding
        return torch.sigmoid(self.conv(ratios[:, None, :].float()))[:, 0, :]


@dataclass
class GAROutput:
    silhouette: BackboneOutput
    rgb: BackboneOutput | None = None
    distillation: torch.Tensor | None = None  # scalar L_distill
    frame_weights: torch.Tensor | None = None  # [n, s] the ratio attention


class GAR(nn.Module):
    """The training-time model: silhouette backbone (+ ratio attention) (+ RGB branch and adapters)."""

    def __init__(self, config: GARConfig) -> None:
        super().__init__()
        self.config = config
        self.silhouette: GaitBackbone = create_model(config.architecture, config.backbone_config(1))
        self.ratio = RatioAttention(config.ratio_kernel) if config.ratio_attention else None
        self.rgb: GaitBackbone | None = None
        self.adapters: nn.ModuleList | None = None
        if config.distillation:
            self.rgb = create_model(config.architecture, config.backbone_config(3))
            # 1x1 (x1) convolutions: per-frame for 2-D backbones, per-voxel for GaitGL; features are 5-D.
            self.adapters = nn.ModuleList(nn.Conv3d(c, c, 1) for c in self.silhouette.stage_channels())

    def frame_weights(self, ratios: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor | None:
        if self.ratio is None or ratios is None:
            return None
        return self.ratio(ratios, mask)

    def forward(
        self,
        silhouettes: torch.Tensor,
        mask: torch.Tensor | None = None,
        ratios: torch.Tensor | None = None,
        rgb: torch.Tensor | None = None,
    ) -> GAROutput:
        """silhouettes [n, 1, s, h, w]; mask [n, s]; ratios [n, s]; rgb [n, 3, s, h, w] (distillation)."""
        weights = self.frame_weights(ratios, mask)
        distilling = self.rgb is not None and rgb is not None and self.training
        sil = self.silhouette(silhouettes, mask, weights, keep_stages=distilling)
        if not distilling:
            return GAROutput(sil, frame_weights=weights)
        assert self.rgb is not None and self.adapters is not None
        colour = self.rgb(rgb, mask, weights, keep_stages=True)
        losses = []
        for adapter, student, teacher in zip(self.adapters, sil.stages, colour.stages, strict=True):
            stage_mask = self.silhouette.stage_mask(mask, student.shape[2])
            losses.append(distillation_distance(adapter(student), teacher, stage_mask, self.config.distill_distance))
        return GAROutput(sil, colour, torch.stack(losses).mean(), weights)

    def embedder(self) -> GaitEmbedder:
        """The inference view (in eval mode): silhouette path and ratio Conv1d, nothing else."""
        embedder = GaitEmbedder(self.config)
        wanted = set(embedder.state_dict())  # the classifier / BNNeck and the RGB side are left behind
        embedder.load_state_dict({k: v for k, v in self.state_dict().items() if k in wanted}, strict=True)
        return embedder.to(next(self.parameters()).device).eval()


class GaitEmbedder(nn.Module):
    """What serving runs: silhouettes (+ ratios) -> part embeddings [n, d, p]."""

    def __init__(self, config: GARConfig) -> None:
        super().__init__()
        self.config = config
        self.silhouette: GaitBackbone = create_model(
            config.architecture, config.backbone_config(1, with_classifier=False)
        )
        self.ratio = RatioAttention(config.ratio_kernel) if config.ratio_attention else None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.silhouette.config.input_height, self.silhouette.config.input_width

    def forward(
        self, silhouettes: torch.Tensor, mask: torch.Tensor | None = None, ratios: torch.Tensor | None = None
    ) -> torch.Tensor:
        """silhouettes [n, 1, s, h, w] in [0, 1]; mask [n, s]; ratios [n, s] or None -> [n, d, p]."""
        weights = None
        if self.ratio is not None and ratios is not None:
            weights = self.ratio(ratios, mask)
        silhouettes = mask_frames(silhouettes, mask)
        return self.silhouette(silhouettes, mask, weights).embeddings
