"""Training and evaluating the gait detector (``gader train detector``, ``gader eval-detector``)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gader.data import open_dataset, split_dataset
from gader.data.dataset import SequenceDataset
from gader.data.record import DETECTOR_CLASSES
from gader.detector import FULL_GAIT, DetectorConfig, DHSClassifier, GaitDetector, clip_of
from gader.errors import GaderError
from gader.overrides import apply_overrides
from gader.progress import progress
from gader.training.detector_data import (
    SOURCE_SYNTHETIC,
    LabelledDHS,
    collect,
    majority,
    pad_windows,
    sample_windows,
    without_ratios,
)


@dataclass
class DetectorTrainConfig:
    id: str
    synthetic: list[str] = field(default_factory=list)  # labelled datasets (SynthGait wild)
    real: list[str] = field(default_factory=list)  # real walking datasets (CASIA-B)
    val_subjects: int = 10  # held out from every dataset
    val_seed: int = 0
    real_max_sequences: int = 1500  # real sequences used (CASIA-B has 8,107; walking is easy to learn)
    derived_share: float = 0.3  # share of real sequences that also yield partial / standing variants
    # Share of training windows drawn from synthetic sequences (None: in proportion to the sequences). Real
    # walking is learnt quickly; the labelled synthetic scenes hold the hard cases.
    synthetic_share: float | None = None
    window_range: tuple[int, int] = (8, 48)  # random training-window lengths
    # With ratio inputs: share of training windows that come without ratios (zeroed ratio channels), so that
    # the detector also works on sequences without them (CASIA-B, silhouette uploads without ratios).
    blank_ratios: float = 0.25
    # Rows (heights above the sole, among the detector's rows) that a share of the training windows get held
    # still with flickering holes, label unchanged: the feet rows, so that a walker whose feet segmentation
    # fails is still seen walking from the knee and the body above it (``detector_data.hold_still``).
    still_rows: list[float] = field(default_factory=list)
    still_rows_share: float = 0.0
    # Share of training windows that are a whole short clip (``short_range`` frames, no context around it), as
    # inference sees a sequence no longer than its shortest window; 0 leaves such clips out of training.
    short_share: float = 0.0
    short_range: tuple[int, int] = (4, 16)
    iterations: int = 3000
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # Start from a trained detector's weights (a detector directory or shipped id) instead of random ones:
    # a second stage that fine-tunes a first run on a different mix of data. Its network and inputs must be
    # this config's.
    init: str | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    description: str = ""


def _read_config(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[Path]]:
    """A config file's settings over those of its ``base`` (another config file, relative to this one): a second
    training stage names the first stage's file and sets only what changes. Sections merge key by key. Returns
    the settings and the files read (this one first)."""
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GaderError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise GaderError(f"{path}: not valid TOML ({exc})") from None
    base = values.pop("base", None)
    if base is None:
        return values, [path]
    if not isinstance(base, str):
        raise GaderError(f"{path}: base must be the path of another config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise GaderError(f"{path}: base {base!r} leads back to itself")
    merged, files = _read_config(base_path, (*seen, path.resolve()))
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged, [path, *files]


def load_detector_config(path: str | Path, overrides: list[str] | None = None) -> DetectorTrainConfig:
    values, files = _read_config(Path(path))
    apply_overrides(values, overrides)  # detector.<setting> sets one of the [detector] section
    detector = DetectorConfig.from_dict(values.pop("detector", {}))
    known = {f.name for f in dataclasses.fields(DetectorTrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        bases = f" (or its base {', '.join(map(str, files[1:]))})" if len(files) > 1 else ""
        raise GaderError(f"{path}{bases}: unknown key(s) {', '.join(unknown)}")
    for key in ("window_range", "short_range"):  # [shortest, longest] frames
        if key in values:
            span = values[key]
            if not (
                isinstance(span, list)
                and len(span) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in span)
                and 1 <= span[0] <= span[1]
            ):
                raise GaderError(
                    f"{path}: {key} must be [shortest, longest] frames with 1 <= shortest <= longest, got {span!r}"
                )
            values[key] = tuple(span)
    if "id" not in values:
        raise GaderError(f"{path}: missing 'id'")
    # Shares of sequences or of training windows: numbers in [0, 1] (synthetic_share may be left out).
    for key in ("synthetic_share", "derived_share", "blank_ratios", "still_rows_share", "short_share"):
        share = values.get(key)
        if share is not None and (isinstance(share, bool) or not (isinstance(share, int | float) and 0 <= share <= 1)):
            raise GaderError(f"{path}: {key} must be a number in [0, 1], got {share!r}")
    config = DetectorTrainConfig(detector=detector, **values)
    still_row_channels(config, path)  # names a row the detector does not have
    return config


def still_row_channels(config: DetectorTrainConfig, source: str | Path = "detector config") -> tuple[int, ...]:
    """Input channels of ``config.still_rows``: 0 is the knee row, 1.. the extra rows in their order."""
    rows = config.detector.row_heights
    missing = [height for height in config.still_rows if not any(abs(height - row) < 1e-9 for row in rows)]
    if missing:
        raise GaderError(
            f"{source}: still_rows {missing} are not rows of the detector (knee_fraction and extra_rows: {list(rows)})"
        )
    return tuple(next(i for i, row in enumerate(rows) if abs(height - row) < 1e-9) for height in config.still_rows)


def _split_one(
    path: str, config: DetectorTrainConfig, limit: int | None = None
) -> tuple[SequenceDataset, SequenceDataset]:
    """(train, held out) of one dataset: at most ``limit`` sequences drawn at random, then split by subject."""
    dataset = open_dataset(path)
    if limit is not None and len(dataset) > limit:
        infos = dataset.infos
        chosen = np.random.default_rng(config.seed).choice(len(infos), size=limit, replace=False)
        keys = {infos[i].key for i in chosen}
        dataset = dataset.subset(where=lambda info, keys=keys: info.key in keys)
    return held_out_split(dataset, config.val_subjects, config.val_seed)


def held_out_split(
    dataset: SequenceDataset, val_subjects: int, val_seed: int = 0
) -> tuple[SequenceDataset, SequenceDataset]:
    """(train, held out) by subject, as detector training splits every dataset (at most half the people held
    out); ``gader eval-detector --held-out`` and ``bench.gader_eval`` pick the same held-out people with it."""
    return split_dataset(dataset, val_count=min(val_subjects, len(dataset.subjects) // 2), seed=val_seed)


def _split(
    paths: list[str], config: DetectorTrainConfig, limit: int | None = None
) -> tuple[list[SequenceDataset], list[SequenceDataset]]:
    pairs = [_split_one(path, config, limit) for path in paths]
    return [train for train, _ in pairs], [val for _, val in pairs]


def held_out_subjects(real_path: str, config: DetectorTrainConfig) -> list[str]:
    """The subjects of a real dataset that a training run with ``config`` held out."""
    return _split_one(real_path, config, config.real_max_sequences)[1].subjects


def window_accuracy(
    detector: GaitDetector, items: list[LabelledDHS], rng: np.random.Generator, per_sequence: int = 8
) -> tuple[float, np.ndarray]:
    """Accuracy and 4x4 confusion (rows: truth) of random windows of the inference lengths, classified
    the way inference does (shared features over the whole DHS, pooled per window)."""
    lengths = detector.config.window_lengths
    truths, predictions = [], []
    for item in items:
        frames = item.dhs.shape[-1]
        positions = []
        for _ in range(per_sequence):
            length = min(int(rng.integers(min(lengths), max(lengths) + 1)), frames)
            start = int(rng.integers(0, frames - length + 1))
            positions.append((start, start + length))
            truths.append(majority(item.classes[start : start + length]))
        predictions.append(detector.window_probabilities(item.dhs, positions).argmax(axis=1))
    truth, predicted = np.array(truths), np.concatenate(predictions)
    confusion = np.zeros((4, 4), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    return float((predicted == truth).mean()), confusion


def train_detector(config: DetectorTrainConfig, run_dir: str | Path, show_progress: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    synthetic_train, synthetic_val = _split(config.synthetic, config)
    real_train, real_val = _split(config.real, config, config.real_max_sequences)
    train_items = collect(synthetic_train, real_train, config.detector, rng, config.derived_share, show_progress)
    val_items = collect(
        synthetic_val,
        real_val,
        config.detector,
        np.random.default_rng(config.seed + 1),
        config.derived_share,
        show_progress,
    )
    if not train_items:
        raise GaderError("no training sequences: give synthetic and/or real datasets")
    counts = np.bincount(np.concatenate([i.classes for i in train_items]), minlength=4)
    print(
        f"detector {config.id}: {len(train_items)} training sequences, frames per class "
        + ", ".join(f"{c} {n:,}" for c, n in zip(DETECTOR_CLASSES, counts, strict=True)),
        file=sys.stderr,
    )
    model = DHSClassifier(config.detector)
    if config.init:
        model.load_state_dict(initial_weights(config.init, config.detector))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.iterations)
    log_path = run_dir / "metrics.jsonl"
    log_path.unlink(missing_ok=True)
    began = time.perf_counter()
    model.train()
    synthetic_items = [i for i in train_items if i.source == SOURCE_SYNTHETIC]
    other_items = [i for i in train_items if i.source != SOURCE_SYNTHETIC]
    mixed = config.synthetic_share is not None and synthetic_items and other_items
    context = config.detector.context
    blank = config.blank_ratios if config.detector.ratio_inputs else 0.0
    augment = {
        "blank_ratios": blank,
        "still_channels": still_row_channels(config),
        "still_share": config.still_rows_share,
        "short_share": config.short_share,
        "short_lengths": config.short_range,
        "ratio_inputs": config.detector.ratio_inputs,
    }
    for iteration in progress(range(config.iterations), enabled=show_progress, desc="training detector", unit="it"):
        if mixed:
            count = int(rng.binomial(config.batch, config.synthetic_share))
            windows, labels = [], []
            for items, n in ((synthetic_items, count), (other_items, config.batch - count)):
                some, their = sample_windows(items, n, config.window_range, rng, context=context, **augment)
                windows += some
                labels.append(their)
            labels = np.concatenate(labels).astype(np.int64)
        else:
            windows, labels = sample_windows(
                train_items, config.batch, config.window_range, rng, context=context, **augment
            )
        batch, valid, pooled = pad_windows(windows)
        logits = model(torch.from_numpy(batch), torch.from_numpy(valid), torch.from_numpy(pooled))
        loss = F.cross_entropy(logits, torch.from_numpy(labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (iteration + 1) % 50 == 0:
            accuracy = float((logits.argmax(1).numpy() == labels).mean())
            with log_path.open("a") as handle:
                handle.write(json.dumps({"iteration": iteration + 1, "loss": loss.item(), "accuracy": accuracy}) + "\n")
    seconds = time.perf_counter() - began
    detector = GaitDetector(model.eval(), config.detector)
    report = evaluate_items(detector, val_items, np.random.default_rng(config.seed + 2))
    with log_path.open("a") as handle:
        handle.write(json.dumps({"iteration": config.iterations, "validation": report}) + "\n")
    from gader.model_io import save_detector

    save_detector(
        run_dir / "detector",
        detector,
        {
            "id": config.id,
            "description": config.description,
            "training": {
                "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "detector"},
                "seconds": round(seconds, 1),
                "train_sequences": len(train_items),
                "frames_per_class": dict(zip(DETECTOR_CLASSES, counts.tolist(), strict=True)),
            },
            "metrics": report,
        },
    )
    return report


# What a network's weights depend on: the other settings only change inference (windows, thresholds).
NETWORK_SETTINGS = ("knee_fraction", "band", "extra_rows", "width", "ratio_inputs", "channels", "dilations", "hidden")


def initial_weights(name: str, config: DetectorConfig) -> dict[str, torch.Tensor]:
    """The weights of a trained detector to start from, refused when its network or inputs differ."""
    from gader.model_io import load_detector

    start = load_detector(name)[0]
    differ = [k for k in NETWORK_SETTINGS if getattr(start.config, k) != getattr(config, k)]
    if differ:
        raise GaderError(f"init {name}: its network differs from this config's in {', '.join(differ)}")
    return start.classifier.state_dict()


def sequence_truth(classes: np.ndarray, config: DetectorConfig) -> bool:
    """Ground truth of ``usable``: enough full-body walking frames (the same rule the detector applies)."""
    gait = int((classes == FULL_GAIT).sum())
    return gait / len(classes) >= config.min_gait_fraction and gait >= min(config.min_gait_frames, len(classes))


# Clip lengths (frames) below the shortest inference window: such a sequence is one window with no context.
SHORT_CLIP_LENGTHS = (4, 8, 12)


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest stretch of True in a bool [T] mask; (0, 0) when there is none."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))  # starts and ends, in turn
    if len(edges) == 0:
        return 0, 0
    starts, ends = edges[0::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest] - starts[longest])


def short_clip_report(detector: GaitDetector, items: list[LabelledDHS]) -> dict[str, Any]:
    """Short clips judged as whole sequences: the middle ``SHORT_CLIP_LENGTHS`` frames of each sequence's longest
    stretch of full-body walking, and of its longest stretch of anything else (standing, partial body). The
    share of each called usable; only the walking clips should be."""
    counts = {kind: np.zeros((len(SHORT_CLIP_LENGTHS), 2), np.int64) for kind in ("walking", "not_walking")}
    for item in items:
        walking = item.classes == FULL_GAIT
        for kind, mask in (("walking", walking), ("not_walking", ~walking)):
            start, length = longest_run(mask)
            for row, clip in enumerate(SHORT_CLIP_LENGTHS):
                if length >= clip:
                    first = start + (length - clip) // 2
                    # as the detector sees the clip uploaded alone
                    inputs = clip_of(item.dhs, first, first + clip, detector.config.ratio_inputs)
                    counts[kind][row] += [int(detector.detect_dhs(inputs).usable), 1]
    return {
        "frames": list(SHORT_CLIP_LENGTHS),
        **{f"{kind}_usable": [round(100 * u / max(n, 1), 2) for u, n in c.tolist()] for kind, c in counts.items()},
        "clips": {kind: c[:, 1].tolist() for kind, c in counts.items()},
    }


def evaluate_items(detector: GaitDetector, items: list[LabelledDHS], rng: np.random.Generator) -> dict[str, Any]:
    """Window accuracy (+ confusion), per-frame accuracy and sequence accuracy, split windows vs whole DHS, and
    how much of what the segments (and the frames recognition gets from them) hold is full-body walking,
    overall and separately for synthetic and real sources; and how short clips are judged
    (``short_clip_report``)."""
    report: dict[str, Any] = {}
    groups = {
        "all": items,
        "synthetic": [i for i in items if i.source == SOURCE_SYNTHETIC],
        "real": [i for i in items if i.source != SOURCE_SYNTHETIC],
    }
    if detector.config.ratio_inputs:  # the same synthetic sequences as if they had come without ratios
        groups["synthetic, no ratios"] = [
            dataclasses.replace(i, dhs=without_ratios(i.dhs)) for i in groups["synthetic"]
        ]
    for name, group in groups.items():
        if not group:
            continue
        accuracy, confusion = window_accuracy(detector, group, rng)
        frame_hits = frame_total = split_hits = whole_hits = whole_frame_hits = 0
        # Full-body walking frames among the frames inside segments and among those recognition gets (the
        # segment frames labelled full-gait): [walking found, frames picked, walking frames in all]
        picked = {"segments": np.zeros(3, np.int64), "walking_mask": np.zeros(3, np.int64)}
        for item in group:
            result = detector.detect_dhs(item.dhs)
            walking = item.classes == FULL_GAIT
            for key, mask in (("segments", result.gait_mask), ("walking_mask", result.walking_mask)):
                picked[key] += [int((mask & walking).sum()), int(mask.sum()), int(walking.sum())]
            frame_hits += int((result.frame_classes == item.classes).sum())
            frame_total += len(item.classes)
            truth = sequence_truth(item.classes, detector.config)
            split_hits += int(result.usable == truth)
            whole = detector.classify_whole_dhs(item.dhs)
            whole_hits += int((whole == FULL_GAIT) == truth)
            whole_frame_hits += int((item.classes == whole).sum())
        report[name] = {
            "sequences": len(group),
            "window_accuracy": round(100 * accuracy, 2),
            "frame_accuracy": round(100 * frame_hits / frame_total, 2),
            "frame_accuracy_whole_dhs": round(100 * whole_frame_hits / frame_total, 2),
            "sequence_accuracy": round(100 * split_hits / len(group), 2),
            "sequence_accuracy_whole_dhs": round(100 * whole_hits / len(group), 2),
            "walking_frames": {
                key: {
                    "precision": round(100 * found / max(chosen, 1), 2),
                    "recall": round(100 * found / max(total, 1), 2),
                }
                for key, (found, chosen, total) in picked.items()
            },
            "confusion": {"classes": list(DETECTOR_CLASSES), "rows_truth": confusion.tolist()},
            "short_clips": short_clip_report(detector, group),
        }
    return report
