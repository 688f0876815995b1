"""Gait recognition backbones (GaitSet, GaitPart, GaitGL, GaitBase) behind one registry."""

from gader.backbones import gaitbase, gaitgl, gaitpart, gaitset  # noqa: F401  (registers the architectures)
from gader.backbones.base import (
    BackboneConfig,
    BackboneOutput,
    GaitBackbone,
    config_type,
    create_model,
    model_names,
    parameter_count,
)

__all__ = [
    "BackboneConfig",
    "BackboneOutput",
    "GaitBackbone",
    "config_type",
    "create_model",
    "model_names",
    "parameter_count",
]
