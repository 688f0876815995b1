"""Training configuration: a TOML file with [model], [data] and [optim] sections.

Every key is checked: a misspelt key is an error naming it, never silently ignored. See
``configs/gar/`` for one file per backbone and size.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gader.errors import GaderError
from gader.gar import GARConfig
from gader.overrides import apply_overrides
from gader.training.data import SAMPLING_MODES


@dataclass
class DataConfig:
    train: str  # dataset directory (any layout gader reads)
    validation: str | None = None  # a separate validation dataset, or:
    val_subjects: int = 0  # hold out this many training subjects for validation (0: train on all)
    val_seed: int = 0
    val_protocol: str = "casia-b"  # casia-b, or open-set (first sequence per subject is the gallery)
    val_max_frames: int = 300  # frames per validation sequence (speed)
    frames: int = 30  # frames per training clip
    sampling: str = "fixed_unordered"
    frames_skip: int = 0  # ordered sampling: extra frames in the window
    frames_range: tuple[int, int] = (20, 40)  # unfixed sampling
    gait_frames_only: bool = False  # with per-frame labels: train on full-body walking frames only
    use_ratios: bool = True


@dataclass
class OptimConfig:
    iterations: int = 1000
    batch_subjects: int = 8  # P
    batch_sequences: int = 4  # K
    optimizer: str = "adam"  # adam, adamw, sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup: int = 0  # linear warm-up iterations
    triplet_margin: float = 0.2
    ce_weight: float = 1.0  # weight of the cross-entropy where the architecture has a classifier
    ce_scale: float = 16.0
    label_smoothing: float = 0.1
    rotate_probability: float = 0.0
    erase_probability: float = 0.0
    flip_probability: float = 0.0
    log_every: int = 20
    validate_every: int = 0  # 0: only at the end
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: all cores / processes
    amp: bool = True  # mixed precision, on CUDA only


@dataclass
class TrainConfig:
    id: str
    model: GARConfig
    data: DataConfig
    optim: OptimConfig
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
        }


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GaderError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**values)
    except TypeError as exc:
        raise GaderError(f"{where}: {exc}") from None


def config_from_dict(values: dict[str, Any], where: str = "config") -> TrainConfig:
    values = dict(values)
    unknown = sorted(set(values) - {"id", "description", "model", "data", "optim"})
    if unknown:
        raise GaderError(f"{where}: unknown section(s) {', '.join(unknown)}")
    for required in ("id", "model", "data"):
        if required not in values:
            raise GaderError(f"{where}: missing {required!r}")
    model = GARConfig.from_dict(values["model"])
    data_values = dict(values["data"])
    if "frames_range" in data_values:
        data_values["frames_range"] = tuple(data_values["frames_range"])
    data = _section(DataConfig, data_values, f"{where} [data]")
    optim = _section(OptimConfig, values.get("optim", {}), f"{where} [optim]")
    if data.sampling not in SAMPLING_MODES:
        raise GaderError(f"{where} [data]: sampling must be one of {', '.join(SAMPLING_MODES)}")
    if data.val_protocol not in ("casia-b", "open-set"):
        raise GaderError(f"{where} [data]: val_protocol must be casia-b or open-set")
    if optim.optimizer not in ("adam", "adamw", "sgd"):
        raise GaderError(f"{where} [optim]: optimizer must be adam, adamw or sgd")
    if optim.batch_subjects < 2 or optim.batch_sequences < 1:
        raise GaderError(f"{where} [optim]: need batch_subjects >= 2 and batch_sequences >= 1")
    return TrainConfig(
        id=str(values["id"]), model=model, data=data, optim=optim, description=str(values.get("description", ""))
    )


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config; ``overrides`` are ``section.key=value`` strings (TOML values)."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GaderError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise GaderError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(apply_overrides(values, overrides), str(path))
