"""Exporting models for NVIDIA Triton: TorchScript for the python backend, ONNX for onnxruntime / TensorRT.

``gader export --model casia-b-default --to model_repository/`` writes

    model_repository/gar_casia_b_default/config.pbtxt     python backend, dynamic + ragged batching
    model_repository/gar_casia_b_default/1/model.py       packs a batch of sequences, runs TorchScript
    model_repository/gar_casia_b_default/1/model.pt       traced (silhouettes, mask) -> embeddings
    model_repository/gar_casia_b_default/1/model_ratios.pt  the same with ratios (ratio-attention models)
    model_repository/gar_casia_b_default/1/model.onnx     ONNX of the same network (dynamic batch and frames)
    model_repository/gar_casia_b_default/1/card.json      the model card (ids, sizes, operating points)

and ``gader export --detector gader-detector --to model_repository/`` the ``gait_detector`` model, whose
network takes a DHS and window masks and returns window probabilities; windows, NMS and merging stay in
``gader.detector`` on the client, so local and Triton detections come from the same code.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from gader.detector import DHSClassifier, pool_spans
from gader.errors import GaderError
from gader.gar import GaitEmbedder
from gader.model_io import load_detector, load_model

TRITON_TEMPLATES = Path(__file__).resolve().parent / "triton"


def triton_name(model_id: str) -> str:
    return "gar_" + "".join(c if c.isalnum() else "_" for c in model_id)


class _EmbedWithRatios(nn.Module):
    def __init__(self, embedder: GaitEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, silhouettes: torch.Tensor, mask: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
        return self.embedder(silhouettes, mask, ratios)  # [n, 1, s, h, w], [n, s], [n, s] -> [n, d, p]


class _Embed(nn.Module):
    def __init__(self, embedder: GaitEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, silhouettes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embedder(silhouettes, mask, None)  # [n, 1, s, h, w], [n, s] -> [n, d, p]


class _DetectWindows(nn.Module):
    """DHS [n, C_in, W, T], valid [n, T], window spans [m, 2] (start, end), owner [m] -> window logits [m, 4]."""

    def __init__(self, classifier: DHSClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, dhs: torch.Tensor, valid: torch.Tensor, spans: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        features = self.classifier.features(dhs, valid)  # [n, C, W', T]
        return self.classifier.mlp(pool_spans(features, owner, spans).flatten(1))  # [m, 4]


def _trace(module: nn.Module, example: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # tracing notes that shapes are read as ints: checked by tests/test_export.py
        warnings.simplefilter("ignore")
        return torch.jit.trace(module.eval(), example, check_trace=False)


def _example(embedder: GaitEmbedder, frames: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    height, width = embedder.input_size
    mask = torch.ones(2, frames, dtype=torch.bool)
    mask[1, frames // 2 :] = False  # trace the padded path: every Triton batch carries a mask
    return torch.rand(2, 1, frames, height, width), mask, torch.rand(2, frames) + 1.0


def _onnx(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], path: Path) -> bool:
    """Also write ONNX (for onnxruntime / TensorRT backends); returns False where the exporter is missing."""
    axes = {name: {0: "batch", 1 if name == "mask" or name == "ratios" else 2: "frames"} for name in names}
    axes["embeddings"] = {0: "batch"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                example,
                str(path),
                input_names=names,
                output_names=["embeddings"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
        path.with_suffix(".onnx.txt").write_text(f"ONNX export unavailable here: {exc}\n")
        return False
    return True


def _write_config(directory: Path, template: str, values: dict[str, str]) -> None:
    text = (TRITON_TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    (directory / "config.pbtxt").write_text(text)


def export_gar(model: str | Path, repository: str | Path, max_batch: int = 16, queue_delay_us: int = 2000) -> Path:
    """One GAR model into a Triton model repository; returns its directory."""
    loaded = load_model(model)
    embedder = loaded.embedder.cpu().eval()
    name = triton_name(loaded.id)
    directory = Path(repository) / name
    version = directory / "1"
    if directory.exists():
        shutil.rmtree(directory)
    version.mkdir(parents=True)
    silhouettes, mask, ratios = _example(embedder)
    _trace(_Embed(embedder), (silhouettes, mask)).save(str(version / "model.pt"))
    if embedder.ratio is not None:
        _trace(_EmbedWithRatios(embedder), (silhouettes, mask, ratios)).save(str(version / "model_ratios.pt"))
    _onnx(_Embed(embedder), (silhouettes, mask), ["silhouettes", "mask"], version / "model.onnx")
    shutil.copy(TRITON_TEMPLATES / "gar_model.py", version / "model.py")
    (version / "card.json").write_text(json.dumps({"id": loaded.id, **loaded.card.__dict__}, indent=2, default=list))
    channels, parts = loaded.card.embedding_shape
    height, width = embedder.input_size
    _write_config(
        directory,
        "gar_config.pbtxt",
        {
            "NAME": name,
            "MAX_BATCH": str(max_batch),
            "QUEUE_DELAY": str(queue_delay_us),
            "HEIGHT": str(height),
            "WIDTH": str(width),
            "CHANNELS": str(channels),
            "PARTS": str(parts),
        },
    )
    return directory


def export_detector(
    detector: str | Path, repository: str | Path, max_batch: int = 16, queue_delay_us: int = 2000
) -> Path:
    gait_detector, card = load_detector(detector)
    classifier = gait_detector.classifier.cpu().eval()
    directory = Path(repository) / "gait_detector"
    version = directory / "1"
    if directory.exists():
        shutil.rmtree(directory)
    version.mkdir(parents=True)
    width, channels = gait_detector.config.width, gait_detector.config.input_channels
    dhs = torch.rand(2, channels, width, 40)
    valid = torch.ones(2, 40, dtype=torch.bool)
    valid[1, 30:] = False
    spans = torch.tensor([[0, 16], [10, 40], [5, 25]])
    owner = torch.tensor([0, 0, 1])
    _trace(_DetectWindows(classifier), (dhs, valid, spans, owner)).save(str(version / "model.pt"))
    shutil.copy(TRITON_TEMPLATES / "detector_model.py", version / "model.py")
    (version / "card.json").write_text(json.dumps(card, indent=2))
    _write_config(
        directory,
        "detector_config.pbtxt",
        {
            "MAX_BATCH": str(max_batch),
            "QUEUE_DELAY": str(queue_delay_us),
            "WIDTH": str(width),
            "CHANNELS": str(channels),
        },
    )
    return directory


def check_repository(repository: str | Path) -> list[str]:
    """Model names in a repository (each with config.pbtxt and a version 1)."""
    root = Path(repository)
    if not root.is_dir():
        raise GaderError(f"{root}: no such model repository")
    return sorted(p.name for p in root.iterdir() if (p / "config.pbtxt").is_file() and (p / "1").is_dir())
