"""What every backbone shares: a config dataclass, the output record, the registry.

``create_model("gaitbase", width=0.25, input_height=32)`` builds any registered architecture; configs are
plain dataclasses so that they serialise to JSON next to the weights and unknown keys are an error
(never silently dropped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from gader.errors import GaderError


@dataclass
class BackboneConfig:
    width: float = 1.0  # channel-width multiplier (CPU-sized models use 0.25 .. 0.5)
    input_height: int = 64  # aligned silhouettes are resized to this size (64x44 or 32x22)
    input_width: int = 44
    in_channels: int = 1  # 1 for silhouettes, 3 for the RGB branch
    num_classes: int = 0  # > 0 adds the training-time classifier (GaitGL, GaitBase)
    embedding_channels: int | None = None  # per-part embedding size; None: the architecture's, scaled

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BackboneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GaderError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)


@dataclass
class BackboneOutput:
    embeddings: torch.Tensor  # [n, d, p] what sequences are matched with at test time
    triplet_features: torch.Tensor  # [n, d, p] what the triplet loss sees during training
    logits: torch.Tensor | None = None  # [n, classes, p] when the model has a classifier
    stages: list[torch.Tensor] = field(default_factory=list)  # block outputs, for distillation


class GaitBackbone(nn.Module):
    """A silhouette (or RGB) sequence model: [n, c, s, h, w] frames -> part embeddings [n, d, p].

    Subclasses build ``self.stem`` (the first convolution, whose output ratio attention scales) and
    implement ``forward_after_stem``.
    """

    name: ClassVar[str]
    config: BackboneConfig

    def forward(
        self,
        frames: torch.Tensor,
        mask: torch.Tensor | None = None,
        frame_weights: torch.Tensor | None = None,
        keep_stages: bool = False,
    ) -> BackboneOutput:
        """frames [n, c, s, h, w] in [0, 1]; mask [n, s] (True = real frame, None = no padding);
        frame_weights [n, s] multiply the first convolution's output (GAR's ratio attention)."""
        x = self.stem(frames)
        if frame_weights is not None:
            x = x * frame_weights[:, None, :, None, None].to(x.dtype)
        return self.forward_after_stem(x, mask, keep_stages)

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_after_stem(self, x: torch.Tensor, mask: torch.Tensor | None, keep_stages: bool) -> BackboneOutput:
        raise NotImplementedError

    def stage_channels(self) -> list[int]:
        """Channels of the block outputs returned in ``BackboneOutput.stages``."""
        raise NotImplementedError

    def stage_mask(self, mask: torch.Tensor | None, frames: int) -> torch.Tensor | None:
        """The frame mask of a block output with ``frames`` frames (time is not pooled by default)."""
        return mask

    def min_frames(self) -> int:
        """Shortest sequence the architecture takes as it is (``gader.embedding.embed_sequences`` tiles shorter
        ones, each alone, before batching)."""
        return 1

    def embedding_shape(self) -> tuple[int, int]:
        """(channels, parts) of the test-time embedding."""
        with torch.no_grad():
            # On the model's own device: a model trained on a GPU is saved (and its card written) from there.
            device = next(self.parameters()).device
            probe = torch.zeros(
                1,
                self.config.in_channels,
                max(self.min_frames(), 3),
                self.config.input_height,
                self.config.input_width,
                device=device,
            )
            was_training = self.training
            self.eval()
            shape = tuple(self(probe).embeddings.shape[1:])
            self.train(was_training)
        return shape  # type: ignore[return-value]


_REGISTRY: dict[str, tuple[type[GaitBackbone], type[BackboneConfig]]] = {}


def register(name: str, config_type: type[BackboneConfig]) -> Callable[[type[GaitBackbone]], type[GaitBackbone]]:
    def decorate(model_type: type[GaitBackbone]) -> type[GaitBackbone]:
        model_type.name = name
        _REGISTRY[name] = (model_type, config_type)
        return model_type

    return decorate


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def config_type(name: str) -> type[BackboneConfig]:
    if name not in _REGISTRY:
        raise GaderError(f"unknown architecture {name!r}: use one of {', '.join(model_names())}")
    return _REGISTRY[name][1]


def create_model(name: str, config: BackboneConfig | None = None, **settings: Any) -> GaitBackbone:
    """Build a registered architecture from a config, or from keyword settings of its config."""
    model_type, cfg_type = _REGISTRY[name] if name in _REGISTRY else (None, config_type(name))
    if config is None:
        config = cfg_type.from_dict(settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    if not isinstance(config, cfg_type):
        raise GaderError(f"{name} needs a {cfg_type.__name__}, got {type(config).__name__}")
    return model_type(config)  # type: ignore[misc]


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
