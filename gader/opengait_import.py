"""Importing OpenGait checkpoints: OpenGait parameter names -> gader modules (docs/models.md has the table).

OpenGait saves ``{'model': state_dict, 'optimizer': ..., 'scheduler': ..., 'iteration': N}`` with no
``module.`` prefix. This module knows, per architecture, how every OpenGait key maps onto ours, so
users with OpenGait-trained weights can serve them. The mapping is a bijection: a checkpoint with a
missing or unexpected key is refused with the key named.

Architecture sizes (width, input height, classes) are read off the weight shapes.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from pathlib import Path

import torch

from gader.errors import GaderError
from gader.gar import GAR, GARConfig

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix_theirs: str, prefix_ours: str) -> dict[str, str]:
    return {f"{prefix_theirs}.{s}": f"{prefix_ours}.{s}" for s in BN_SUFFIXES}


def _gaitset_names() -> dict[str, str]:
    names = {
        "set_block1.forward_block.0.conv.weight": "stem_conv.module.weight",
        "set_block1.forward_block.2.conv.weight": "block1.module.1.weight",
        "Head.fc_bin": "head.weight",
    }
    for block in (2, 3):
        for index in (0, 2):
            names[f"set_block{block}.forward_block.{index}.conv.weight"] = f"block{block}.module.{index}.weight"
            names[f"gl_block{block}.{index}.conv.weight"] = f"global{block}.{index}.weight"
    return names


def _gaitpart_names() -> dict[str, str]:
    feature = "Backbone.forward_block.feature"
    return {
        f"{feature}.0.conv.weight": "stem_conv.module.weight",
        f"{feature}.2.conv.weight": "block1.module.1.weight",
        f"{feature}.5.conv.weight": "block2.module.0.conv.weight",
        f"{feature}.7.conv.weight": "block2.module.2.conv.weight",
        f"{feature}.10.conv.weight": "block3.module.0.conv.weight",
        f"{feature}.12.conv.weight": "block3.module.2.conv.weight",
        "Head.fc_bin": "head.weight",
        # The per-part temporal networks are gathered separately (see _merge_parts).
    }


def _gaitgl_names() -> dict[str, str]:
    names = {
        "conv3d.0.conv3d.weight": "stem_conv.weight",
        "LTA.0.conv3d.weight": "temporal_aggregation.weight",
        "HPP.p": "pooling.p",
        "Head0.fc_bin": "head.weight",
        "Head1.fc_bin": "classifier.weight",
        **_bn("Bn", "norm"),
    }
    for theirs, ours in (("GLConvA0", "block_a0"), ("GLConvA1", "block_a1"), ("GLConvB2", "block_b2")):
        names[f"{theirs}.global_conv3d.conv3d.weight"] = f"{ours}.global_conv.weight"
        names[f"{theirs}.local_conv3d.conv3d.weight"] = f"{ours}.local_conv.weight"
    return names


def _gaitbase_names() -> dict[str, str]:
    b = "Backbone.forward_block"
    names = {
        f"{b}.conv1.conv.weight": "stem_conv.module.weight",
        **_bn(f"{b}.bn1", "stem_norm.module.0"),
        "FCs.fc_bin": "head.weight",
        "BNNecks.fc_bin": "bnneck.classifier",
        **_bn("BNNecks.bn1d", "bnneck.norm"),
    }
    for stage in range(4):
        theirs, ours = f"{b}.layer{stage + 1}.0", f"layers.{stage}.module"
        names[f"{theirs}.conv1.weight"] = f"{ours}.conv1.weight"
        names[f"{theirs}.conv2.weight"] = f"{ours}.conv2.weight"
        names.update(_bn(f"{theirs}.bn1", f"{ours}.bn1"))
        names.update(_bn(f"{theirs}.bn2", f"{ours}.bn2"))
        if stage > 0:  # layer1 keeps 64 channels at stride 1: no projection
            names[f"{theirs}.downsample.0.weight"] = f"{ours}.shortcut.0.weight"
            names.update(_bn(f"{theirs}.downsample.1", f"{ours}.shortcut.1"))
    return names


NAME_MAPS: dict[str, Callable[[], dict[str, str]]] = {
    "gaitset": _gaitset_names,
    "gaitpart": _gaitpart_names,
    "gaitgl": _gaitgl_names,
    "gaitbase": _gaitbase_names,
}
_PART_KEY = re.compile(r"^TFA\.pooling_func\.(conv1d3x1|conv1d3x3)\.(\d+)\.(0|2)\.conv\.weight$")
_PART_TARGET = {"conv1d3x1": "aggregator.short_attention", "conv1d3x3": "aggregator.long_attention"}


def _merge_parts(state: dict[str, torch.Tensor], used: set[str]) -> dict[str, torch.Tensor]:
    """GaitPart: 16 per-part Conv1d weights [out, in, k] -> one grouped weight [parts * out, in, k]."""
    groups: dict[str, dict[int, torch.Tensor]] = collections.defaultdict(dict)
    for key, value in state.items():
        match = _PART_KEY.match(key)
        if match:
            groups[f"{_PART_TARGET[match[1]]}.{match[3]}.weight"][int(match[2])] = value
            used.add(key)
    merged = {}
    for target, parts in groups.items():
        if sorted(parts) != list(range(len(parts))):
            raise GaderError(f"OpenGait GaitPart checkpoint: per-part weights for {target} are incomplete")
        merged[target] = torch.cat([parts[i] for i in range(len(parts))], dim=0)
    return merged


def opengait_keys(architecture: str, parts: int = 16) -> set[str]:
    """Every key an OpenGait checkpoint of this architecture holds (for checks and docs)."""
    keys = set(NAME_MAPS[architecture]())
    if architecture == "gaitpart":
        for kind in ("conv1d3x1", "conv1d3x3"):
            keys |= {f"TFA.pooling_func.{kind}.{i}.{j}.conv.weight" for i in range(parts) for j in (0, 2)}
    return keys


def _unpickling_reason(message: str) -> str:
    """The reason in torch.load's error text: after its "WeightsUnpickler error:" when there is one (that line or
    the next), else its first line; without terminal colour codes or torch's advice on allow-listing."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines() if line.strip()]
    reason = lines[0] if lines else ""
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            after = line.split("WeightsUnpickler error:", 1)[1].strip()
            reason = after or (lines[index + 1] if index + 1 < len(lines) else reason)
            break
    return reason.split(" Please use", 1)[0]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The ``model`` state_dict (and iteration) of an OpenGait checkpoint, or a bare state_dict."""
    torch.serialization.add_safe_globals([collections.Counter])  # MultiStepLR keeps its milestones in one
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GaderError(f"{path}: no such checkpoint") from None
    except Exception as exc:
        # torch's own text runs to several lines and suggests weights_only=False or allow-listing classes, which
        # this project never does (either would run code the file names): only the reason is kept.
        reason = _unpickling_reason(str(exc)) or type(exc).__name__
        raise GaderError(
            f"{path}: not a PyTorch checkpoint that loads as plain tensors ({type(exc).__name__}: {reason}); "
            "checkpoints are never unpickled beyond tensors"
        ) from None
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        return payload["model"], payload.get("iteration")
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, None
    raise GaderError(f"{path}: expected an OpenGait checkpoint ({{'model': state_dict, ...}}) or a state_dict")


def infer_config(architecture: str, state: dict[str, torch.Tensor], input_width: int = 44) -> GARConfig:
    """Width, input height and classes from the weight shapes."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise GaderError(f"OpenGait {architecture} checkpoint: missing {key!r}")
        return tuple(state[key].shape)

    if architecture == "gaitset":
        width = shape("set_block1.forward_block.0.conv.weight")[0] / 32
        parts = shape("Head.fc_bin")[0]
        heights = {2 * sum(b for b in (16, 8, 4, 2, 1) if b <= h // 4): h for h in (128, 64, 32, 16)}
        if parts not in heights:
            raise GaderError(f"OpenGait gaitset checkpoint: {parts} parts match no input height")
        settings = {"width": width, "input_height": heights[parts], "embedding_channels": shape("Head.fc_bin")[2]}
    elif architecture == "gaitpart":
        width = shape("Backbone.forward_block.feature.0.conv.weight")[0] / 32
        parts = shape("Head.fc_bin")[0]
        settings = {"width": width, "input_height": parts * 4, "embedding_channels": shape("Head.fc_bin")[2]}
    elif architecture == "gaitgl":
        width = shape("conv3d.0.conv3d.weight")[0] / 32
        parts = shape("Head0.fc_bin")[0]
        settings = {"width": width, "input_height": parts, "num_classes": shape("Head1.fc_bin")[2]}
    elif architecture == "gaitbase":
        width = shape("Backbone.forward_block.conv1.conv.weight")[0] / 64
        parts = shape("FCs.fc_bin")[0]
        settings = {
            "width": width,
            "input_height": parts * 4,
            "num_classes": shape("BNNecks.fc_bin")[2],
            "embedding_channels": shape("FCs.fc_bin")[2],
        }
    else:
        raise GaderError(f"unknown architecture {architecture!r}: use one of {', '.join(sorted(NAME_MAPS))}")
    settings["input_width"] = input_width
    return GARConfig(architecture=architecture, backbone=settings)


def convert(
    architecture: str, state: dict[str, torch.Tensor], bnneck_part_major: bool = False
) -> dict[str, torch.Tensor]:
    """OpenGait state_dict -> the state_dict of our silhouette backbone (names and layouts)."""
    if architecture not in NAME_MAPS:
        raise GaderError(f"unknown architecture {architecture!r}: use one of {', '.join(sorted(NAME_MAPS))}")
    names = NAME_MAPS[architecture]()
    used: set[str] = set()
    ours: dict[str, torch.Tensor] = {}
    for theirs, mine in names.items():
        if theirs in state:
            ours[mine] = state[theirs]
            used.add(theirs)
    if architecture == "gaitpart":
        ours.update(_merge_parts(state, used))
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise GaderError(
            f"OpenGait {architecture} checkpoint has keys this importer does not know: {', '.join(unexpected[:5])}"
        )
    if architecture == "gaitbase" and bnneck_part_major and "bnneck.norm.weight" in ours:
        # Older OpenGait flattened the BNNeck input part-major ([p, c]); ours is channel-major ([c, p]).
        parts = state["FCs.fc_bin"].shape[0]
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            value = ours[f"bnneck.norm.{suffix}"]
            ours[f"bnneck.norm.{suffix}"] = value.reshape(parts, -1).t().reshape(-1)
    return ours


def import_checkpoint(
    path: str | Path, architecture: str, input_width: int = 44, bnneck_part_major: bool = False
) -> tuple[GAR, int | None]:
    """A GAR model (plain backbone) holding an OpenGait checkpoint's weights, and the checkpoint's iteration."""
    state, iteration = read_checkpoint(path)
    config = infer_config(architecture, state, input_width)
    model = GAR(config)
    converted = {f"silhouette.{k}": v for k, v in convert(architecture, state, bnneck_part_major).items()}
    missing = sorted(set(model.state_dict()) - set(converted))
    if missing:
        raise GaderError(f"OpenGait {architecture} checkpoint lacks weights for: {', '.join(missing[:5])}")
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as exc:
        raise GaderError(f"OpenGait {architecture} checkpoint does not fit the architecture: {exc}") from None
    return model.eval(), iteration


def export_opengait_state(model: GAR) -> dict[str, torch.Tensor]:
    """The inverse mapping (our silhouette backbone -> OpenGait names), for tests and round trips."""
    architecture = model.config.architecture
    reverse = {mine: theirs for theirs, mine in NAME_MAPS[architecture]().items()}
    state = model.silhouette.state_dict()
    out = {}
    for key, value in state.items():
        if key in reverse:
            out[reverse[key]] = value
        elif key.startswith("aggregator."):
            kind = "conv1d3x1" if ".short_attention." in key else "conv1d3x3"
            index = key.split(".")[2]
            for part, chunk in enumerate(value.chunk(model.silhouette.parts, dim=0)):
                out[f"TFA.pooling_func.{kind}.{part}.{index}.conv.weight"] = chunk.clone()
        else:
            raise KeyError(key)
    return out
