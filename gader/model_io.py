"""Model files: an exported embedder (safetensors, no pickle) plus its card (JSON).

::

    MODEL_DIR/
      model.json          the card: id, architecture and GAR settings, input size, embedding shape,
                          distance, how it was trained (command, data, iterations, time), its metrics,
                          calibrated operating points
      model.safetensors   silhouette backbone (+ ratio Conv1d): exactly what inference needs
      rgb.safetensors     optional: the GAR RGB branch, used as the body re-identification model

A model is named by a directory path or by the id of a shipped model (``gader/model_zoo/<id>/``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gader.backbones import GaitBackbone, create_model
from gader.errors import GaderError
from gader.gar import GaitEmbedder, GARConfig

MODEL_FORMAT = "gader-model"
MODEL_VERSION = 1
ZOO = Path(__file__).resolve().parent / "model_zoo"


@dataclass
class ModelCard:
    id: str
    gar: dict[str, Any]  # GARConfig.to_dict()
    distance: str = "euc"  # how embeddings are compared (gader.metrics.pairwise_distance)
    input_size: tuple[int, int] = (64, 44)
    embedding_shape: tuple[int, int] = (0, 0)  # (channels, parts)
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    operating_points: dict[str, float] = field(default_factory=dict)  # "fmr=1e-3" -> similarity threshold
    has_rgb_branch: bool = False
    # Impostor mean / deviation of each modality's similarity and their correlation, for score fusion
    # (gader.pipeline.fuse); written by `gader calibrate-fusion` on people the model has not seen.
    fusion_statistics: dict[str, dict[str, float]] = field(default_factory=dict)
    # Thresholds on the fused score (impostor standard deviations) at the calibrated gait weight, "fmr=1e-3" ->
    # threshold, over all pairs ("all") and over each kind of pair ("gait", "appearance", "both": what the pair
    # was scored on); written by `gader calibrate-fusion` beside the statistics
    fusion_operating_points: dict[str, dict[str, float]] = field(default_factory=dict)
    version: str = "1"

    def to_json(self) -> str:
        payload = {"format": MODEL_FORMAT, "format_version": MODEL_VERSION, **dataclasses.asdict(self)}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> ModelCard:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GaderError(f"{where}: model.json is not valid JSON ({exc})") from None
        if payload.pop("format", None) != MODEL_FORMAT:
            raise GaderError(f"{where}: not a gader model card")
        if payload.pop("format_version", 0) > MODEL_VERSION:
            raise GaderError(f"{where}: written by a newer gader")
        known = {f.name for f in dataclasses.fields(cls)}
        payload = {k: v for k, v in payload.items() if k in known}
        payload["input_size"] = tuple(payload.get("input_size", (64, 44)))
        payload["embedding_shape"] = tuple(payload.get("embedding_shape", (0, 0)))
        return cls(**payload)


@dataclass
class LoadedModel:
    card: ModelCard
    embedder: GaitEmbedder
    rgb: GaitBackbone | None
    path: Path

    @property
    def id(self) -> str:
        return self.card.id


def resolve(name: str | Path) -> Path:
    """A model directory from a path or a shipped model id."""
    path = Path(name)
    if (path / "model.json").is_file():
        return path
    shipped = ZOO / str(name)
    if (shipped / "model.json").is_file():
        return shipped
    available = ", ".join(shipped_models()) or "none"
    raise GaderError(f"no model {str(name)!r}: not a model directory, and not a shipped model ({available})")


def writable_model(name: str | Path, command: str) -> Path:
    """A model directory whose card ``command`` (a calibration) may rewrite: the shipped cards are part of the
    package and are not rewritten in place."""
    path = resolve(name)
    if path.resolve().is_relative_to(ZOO):
        raise GaderError(
            f"{name} is a shipped model ({path}); copy its directory and calibrate the copy "
            f"(cp -r {path} my-model && {command} --model my-model ...)"
        )
    return path


def shipped_models() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / "model.json").is_file()) if ZOO.is_dir() else []


def save_model(directory: str | Path, embedder: GaitEmbedder, card: ModelCard, rgb: GaitBackbone | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card.gar = embedder.config.to_dict()
    card.input_size = embedder.input_size
    card.embedding_shape = tuple(embedder.silhouette.embedding_shape())
    card.has_rgb_branch = rgb is not None
    state = {k: v.detach().cpu().contiguous() for k, v in embedder.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"id": card.id})
    if rgb is not None:
        rgb_state = {k: v.detach().cpu().contiguous() for k, v in rgb.state_dict().items()}
        save_file(rgb_state, str(directory / "rgb.safetensors"), metadata={"id": card.id})
    (directory / "model.json").write_text(card.to_json())
    return directory


def load_model(name: str | Path, device: torch.device | str = "cpu", with_rgb: bool = False) -> LoadedModel:
    path = resolve(name)
    card = ModelCard.from_json((path / "model.json").read_text(), str(path))
    config = GARConfig.from_dict(card.gar)
    embedder = GaitEmbedder(config)
    try:
        embedder.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    except (RuntimeError, OSError) as exc:
        raise GaderError(f"{path}: weights do not fit the card's architecture ({exc})") from None
    embedder.eval().to(device)
    rgb = None
    if with_rgb and (path / "rgb.safetensors").is_file():
        rgb = create_model(config.architecture, config.backbone_config(3, with_classifier=False))
        state = load_file(str(path / "rgb.safetensors"))
        rgb.load_state_dict({k: v for k, v in state.items() if k in rgb.state_dict()}, strict=True)
        rgb.eval().to(device)
    return LoadedModel(card, embedder, rgb, path)


# --- the gait detector ---------------------------------------------------------------------------

DETECTOR_FORMAT = "gader-detector"


def resolve_detector(name: str | Path) -> Path:
    path = Path(name)
    if (path / "detector.json").is_file():
        return path
    shipped = ZOO / str(name)
    if (shipped / "detector.json").is_file():
        return shipped
    raise GaderError(f"no detector {str(name)!r}: not a detector directory, and not a shipped detector")


def save_detector(directory: str | Path, detector, card: dict[str, Any]) -> Path:
    """detector.json (config + card) and detector.safetensors."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in detector.classifier.state_dict().items()}
    save_file(state, str(directory / "detector.safetensors"), metadata={"id": str(card.get("id", ""))})
    payload = {"format": DETECTOR_FORMAT, "format_version": MODEL_VERSION, **card, "config": detector.config.to_dict()}
    (directory / "detector.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return directory


def load_detector(name: str | Path, device: torch.device | str = "cpu"):
    """A ready ``GaitDetector`` and its card."""
    from gader.detector import DetectorConfig, DHSClassifier, GaitDetector

    path = resolve_detector(name)
    try:
        card = json.loads((path / "detector.json").read_text())
    except json.JSONDecodeError as exc:
        raise GaderError(f"{path}: detector.json is not valid JSON ({exc})") from None
    if card.get("format") != DETECTOR_FORMAT:
        raise GaderError(f"{path}: not a gader detector")
    config = DetectorConfig.from_dict(card["config"])
    classifier = DHSClassifier(config)
    try:
        classifier.load_state_dict(load_file(str(path / "detector.safetensors")), strict=True)
    except (RuntimeError, OSError) as exc:
        raise GaderError(f"{path}: detector weights do not fit its config ({exc})") from None
    return GaitDetector(classifier, config, device), card
