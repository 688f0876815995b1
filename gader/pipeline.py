"""The GADER pipeline: detect -> route -> embed. One object that the service (and the CLI) calls.

For a sequence record:

1. the gait detector finds the frames that hold gait with a full body (``DetectionReport``);
2. if the sequence is *usable*, GAR embeds those frames (silhouettes + ratios) -> ``embedding``;
3. when the record carries RGB crops and the model ships its RGB branch, the remaining frames (standing,
   partial body) are embedded by it -> ``appearance`` (GADER sends them to a body re-identification model;
   GAR's RGB branch is one).

Matching two results (``fuse``): each modality's similarity is the mean over body parts of the cosine
similarity, mapped to [0, 1] by ``(1 + cos) / 2``. Two models' similarities are not on one scale (SynthGait's
GAR scores impostor pairs 0.972 +- 0.007, its RGB branch 0.821 +- 0.045), so a weighted sum of raw
similarities would put nearly every pair scored on gait alone above every pair scored on both, whoever they
are, and among the latter let appearance's wider spread outvote gait. The
model card therefore carries each modality's impostor mean and deviation, measured on people the model has
not seen (``fusion_statistics``, written by ``gader calibrate-fusion``), and fusion standardises each
similarity by them: ``z = (s - mean) / std``. Where both sides have both modalities the score is
``(w * z_gait + (1 - w) * z_appearance) / sqrt(w**2 + (1 - w)**2 + 2 w (1 - w) rho)`` with ``w = gait_weight``
and ``rho`` the two scores' correlation over impostor pairs (also in the card), which keeps impostor scores at
unit spread. The weight is chosen by the same calibration (``choose_gait_weight``: the best leave-one-out
retrieval on the calibration people), 0.8 for a card without one (gait is the identity cue, appearance
changes with clothing); a PipelineConfig can fix it. Otherwise the
standardised score of the modality both sides share; ``None`` when they share none.
Without statistics, the modalities are never summed: gait where both sides have it, else appearance.

A pair that shares one modality alone is standardised by that modality's impostor statistics over such pairs
(``gait_alone`` / ``appearance_alone`` in the card, where calibration saw at least ``MIN_ALONE_PAIRS`` of them;
the modality's own section then covers the pairs that share both, so that each kind is centred on its impostors):
what a side lacks says how it was routed, and that moves its scores. A sequence without usable gait goes to the
RGB branch whole, and whole sequences score higher against other people than the leftover stretches of
usable ones; standardised by the shared statistics, appearance-only pairs passed a fused threshold 2.3–2.8x as
often as its false match rate said (docs/models.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gader import metrics
from gader.data.record import SequenceRecord
from gader.detector import DetectionReport, GaitDetector
from gader.embedding import embed_sequences, prepare, resize_frames
from gader.errors import GaderError
from gader.model_io import LoadedModel, load_detector, load_model


@dataclass
class PipelineConfig:
    use_detector: bool = True  # False: the whole sequence goes to GAR (the plain-backbone baseline)
    min_frames: int = 3  # fewest frames worth embedding
    max_frames: int = 720  # frames per sequence at most (OpenGait's test limit)
    use_ratios: bool = True
    # Fusion weight of gait where both modalities exist; None: the weight `gader calibrate-fusion` chose for the
    # model (fusion_statistics.joint.gait_weight), else DEFAULT_GAIT_WEIGHT.
    gait_weight: float | None = None
    fallback_whole_sequence: bool = False  # not usable: embed every frame instead of returning no embedding
    # Embed only the segment frames that their own label calls full-gait (DetectionReport.walking_mask), not every
    # frame of the merged windows. Held-out SynthGait wild people: 97 % of the frames embedded are full-body
    # walking instead of 86 %, at 95 % of the walking frames instead of 98 %. A usable sequence is never turned away
    # by it: with fewer than min_frames left, the whole segments are embedded.
    trim_to_frame_labels: bool = True

    def __post_init__(self) -> None:
        weight = self.gait_weight
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1
        ):  # NaN fails the range test too
            raise GaderError(f"gait_weight must be a number in [0, 1] (or None for the model's), got {weight!r}")


@dataclass
class PipelineResult:
    detection: DetectionReport | None
    embedding: np.ndarray | None  # float32 [d, p] GAR embedding of the gait frames
    appearance: np.ndarray | None  # float32 [d', p'] RGB-branch embedding of the other frames
    embedded_frames: int  # the frames GAR embedded (0: no embedding)
    appearance_frames: int
    model_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # detector, embedding, appearance

    def to_dict(self) -> dict[str, Any]:
        return {
            "detection": None if self.detection is None else self.detection.to_dict(),
            "embedding_shape": None if self.embedding is None else list(self.embedding.shape),
            "appearance_shape": None if self.appearance is None else list(self.appearance.shape),
            "embedded_frames": self.embedded_frames,
            "appearance_frames": self.appearance_frames,
            "model": self.model_id,
        }


MODALITIES = ("gait", "appearance")
# fusion_statistics sections of a modality's impostor statistics over the pairs that share that modality alone,
# which standardise those pairs instead of the modality's section (measured when enough such pairs exist)
ALONE = {"gait": "gait_alone", "appearance": "appearance_alone"}
MIN_ALONE_PAIRS = 100  # fewer impostor pairs of a kind: its pairs are standardised by the modality's section
DEFAULT_GAIT_WEIGHT = 0.8  # gait is the identity cue; appearance changes with clothing
GAIT_WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # what calibration chooses among: 0, 0.05 .. 1
JOINT = "joint"  # fusion_statistics key of the two modalities' impostor correlation


def standardise(similarity, statistics: Mapping[str, float]):
    """A modality's similarity (float or array, ``(1 + part cosine) / 2``) -> standard deviations above its
    impostor mean (``modality_statistics``): the scale on which two models' scores can be compared and summed."""
    return (similarity - statistics["impostor_mean"]) / statistics["impostor_std"]


def _combine(gait, look, gait_weight: float, statistics: Mapping[str, Mapping[str, float]]):
    """Weighted sum of two standardised scores, rescaled by its impostor spread (given their correlation) so
    that it stays standardised, so that one threshold means about the same false match rate whether a pair was
    scored on one modality or on both. How nearly it does is measured per kind of pair by
    ``fused_operating_points``, which also sets thresholds per kind, so that decisions need not rely on it
    (docs/models.md)."""
    rho = statistics[JOINT]["impostor_correlation"]
    spread = np.sqrt(gait_weight**2 + (1 - gait_weight) ** 2 + 2 * gait_weight * (1 - gait_weight) * rho)
    return (gait_weight * gait + (1 - gait_weight) * look) / spread


def check_fusion_statistics(statistics: Mapping[str, Any], where: str) -> None:
    """A model card's fusion statistics are what ``fuse`` divides by: refused with a message that names the card
    when a part is missing or unusable (checked where they are used, so that calibration can replace them)."""
    if not statistics:
        return
    if not isinstance(statistics, Mapping) or not all(
        isinstance(statistics.get(k), Mapping) for k in (*MODALITIES, JOINT)
    ):
        raise GaderError(
            f"{where}: fusion_statistics must hold gait, appearance and joint sections; re-run gader calibrate-fusion"
        )

    def number(section: str, key: str) -> float:
        value = statistics[section].get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GaderError(
                f"{where}: fusion_statistics.{section}.{key} is missing or not a finite number; "
                "re-run gader calibrate-fusion"
            )
        return float(value)

    sections = [*MODALITIES, *(ALONE[m] for m in MODALITIES if ALONE[m] in statistics)]
    for section in sections:
        if not isinstance(statistics[section], Mapping):
            raise GaderError(f"{where}: fusion_statistics.{section} must be a section; re-run gader calibrate-fusion")
        number(section, "impostor_mean")
        if number(section, "impostor_std") <= 0:
            raise GaderError(f"{where}: fusion_statistics.{section}.impostor_std must be positive")
    if not -1 < number("joint", "impostor_correlation") <= 1:  # at -1 an equal-weight sum has no spread
        raise GaderError(f"{where}: fusion_statistics.joint.impostor_correlation must lie in (-1, 1]")
    if "gait_weight" in statistics[JOINT] and not 0 <= number("joint", "gait_weight") <= 1:
        raise GaderError(f"{where}: fusion_statistics.joint.gait_weight must lie in [0, 1]")


def check_fused_operating_points(tables: Any, where: str) -> None:
    """A card's fused-score thresholds, ``{"all"|"gait"|"appearance"|"both": {"fmr=1e-3": number}}``, checked
    where they are used: a hand-edited card fails with a message naming the card and the entry."""
    if not isinstance(tables, Mapping):
        raise GaderError(f"{where}: fusion_operating_points must map kinds of pair to thresholds")
    for table, thresholds in tables.items():
        if table not in ("all", "gait", "appearance", "both") or not isinstance(thresholds, Mapping):
            raise GaderError(
                f"{where}: fusion_operating_points.{table} is not a table of thresholds for all, gait, appearance or "
                "both; re-run gader calibrate-fusion"
            )
        for name, value in thresholds.items():
            if metrics.operating_point_fmr(name) is None:
                raise GaderError(
                    f"{where}: fusion_operating_points.{table}.{name} is not named fmr=<rate> with a rate between 0 "
                    "and 1"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise GaderError(f"{where}: fusion_operating_points.{table}.{name} is not a finite number")


def fuse(
    a: PipelineResult,
    b: PipelineResult,
    gait_weight: float = DEFAULT_GAIT_WEIGHT,
    statistics: Mapping[str, Mapping[str, float]] | None = None,
) -> float | None:
    """Score of two pipeline results (see the module docstring for the rule); ``None`` when they share no modality.

    With ``statistics`` (the model card's ``fusion_statistics``): each modality standardised by its impostor
    mean and deviation, summed with ``gait_weight`` where both sides have both. Without: the raw similarity of
    gait where both sides have it, else of appearance, never summed (two models' raw similarities are on
    different scales)."""
    score = float(fused_similarity([a], [b], gait_weight, statistics)[0, 0])  # the matrix rule, for one pair
    return None if math.isnan(score) else score


def _unit_parts(embeddings: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """[d, p] embeddings (None: missing) -> (float64 [N, d, p] normalised along d, zeros where missing; bool [N])."""
    present = np.array([e is not None for e in embeddings], bool)
    shapes = {np.shape(e) for e in embeddings if e is not None}
    if len(shapes) > 1:
        raise GaderError(f"embeddings of different shapes {sorted(shapes)} (different models) cannot be compared")
    shape = shapes.pop() if shapes else (1, 1)
    stacked = np.stack([np.zeros(shape) if e is None else np.asarray(e, np.float64) for e in embeddings])
    return stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12), present


def _similarity_01(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(1 + part cosine) / 2 for every pair [Na, Nb], and where both sides have the modality (bool [Na, Nb])."""
    unit_a, present_a = _unit_parts(a)
    unit_b, present_b = _unit_parts(b)
    cosine = np.einsum("idp,jdp->ij", unit_a, unit_b) / unit_a.shape[-1]  # mean over parts
    return (1 + cosine) / 2, present_a[:, None] & present_b[None, :]


def _modality_scores(
    probes: list[PipelineResult], gallery: list[PipelineResult], statistics: Mapping[str, Mapping[str, float]] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each modality's score of every probe x gallery pair [Np, Ng], standardised when there are statistics, and
    where both sides have it (bool [Np, Ng]) -> (gait, has_gait, appearance, has_appearance)."""
    gait, has_gait = _similarity_01([r.embedding for r in probes], [r.embedding for r in gallery])
    look, has_look = _similarity_01([r.appearance for r in probes], [r.appearance for r in gallery])
    raw = gait, has_gait, look, has_look
    return raw if statistics is None else _standardised(raw, statistics)


def _standardised(
    raw: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], statistics: Mapping[str, Mapping[str, float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_modality_scores`` without statistics -> the same with them: each pair by the sections its kind takes."""
    gait, has_gait, look, has_look = raw
    gait = _standardise_by_kind(gait, has_gait & ~has_look, statistics, "gait")
    look = _standardise_by_kind(look, has_look & ~has_gait, statistics, "appearance")
    return gait, has_gait, look, has_look


def _standardise_by_kind(
    similarity: np.ndarray, alone: np.ndarray, statistics: Mapping[str, Mapping[str, float]], modality: str
) -> np.ndarray:
    """A modality's similarities [Np, Ng] standardised: the pairs that share it alone (bool [Np, Ng]) by its
    ``<modality>_alone`` section where the card has one, every other pair by the modality's section."""
    scores = standardise(similarity, statistics[modality])
    if ALONE[modality] in statistics:
        scores[alone] = standardise(similarity[alone], statistics[ALONE[modality]])
    return scores


def _fused_matrix(
    scores: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    gait_weight: float,
    statistics: Mapping[str, Mapping[str, float]] | None,
) -> np.ndarray:
    """``fuse``'s rule over ``_modality_scores`` -> float64 [Np, Ng]; NaN where a pair shares no modality."""
    gait, has_gait, look, has_look = scores
    fused = np.full(gait.shape, np.nan)
    fused[has_look] = look[has_look]
    fused[has_gait] = gait[has_gait]
    if statistics is not None:
        both = has_gait & has_look
        fused[both] = _combine(gait[both], look[both], gait_weight, statistics)
    return fused


def fused_similarity(
    probes: list[PipelineResult],
    gallery: list[PipelineResult],
    gait_weight: float = DEFAULT_GAIT_WEIGHT,
    statistics: Mapping[str, Mapping[str, float]] | None = None,
) -> np.ndarray:
    """``fuse`` for every probe x gallery pair at once -> float64 [Np, Ng]; NaN where a pair shares no modality.
    Each side's embeddings must share one shape per modality (one model)."""
    if not probes or not gallery:
        raise GaderError(f"fused similarity needs probes and gallery results, got {len(probes)} and {len(gallery)}")
    return _fused_matrix(_modality_scores(probes, gallery, statistics), gait_weight, statistics)


def retrieval_map(similarity: np.ndarray, labels) -> float:
    """Mean average precision of leave-one-out retrieval over a square score matrix [N, N] (higher: more alike;
    NaN: the pair cannot be scored): each item queries all the others; items whose person has no other item
    are left out. Ties, unscoreable pairs among them, are broken pessimistically: the query's own person after
    the others (a calibration should not gain from an order it did not score)."""
    labels = np.asarray(labels)
    similarity = np.asarray(similarity, np.float64)
    if similarity.shape != (len(labels), len(labels)):
        raise GaderError(f"retrieval needs a square score matrix for {len(labels)} items, got {similarity.shape}")
    others = ~np.eye(len(labels), dtype=bool)  # [N, N]
    same = (labels[:, None] == labels[None, :]) & others  # [N, N] the query's own person, itself excluded
    if not same.any():
        raise GaderError("no person has two sequences: retrieval has nothing to find")
    scores = np.where(np.isnan(similarity), -np.inf, similarity)
    # Per row, sorted by: the query itself last, then score (high first), then its own person last among ties
    order = np.lexsort((same, -scores, ~others), axis=1)[:, :-1]  # [N, N-1]
    relevant = np.take_along_axis(same, order, axis=1)  # [N, N-1]
    counts = relevant.sum(axis=1)
    precision = relevant.cumsum(axis=1) / np.arange(1, relevant.shape[1] + 1)
    average = (precision * relevant).sum(axis=1) / np.maximum(counts, 1)
    return float(average[counts > 0].mean())


def choose_gait_weight(
    results: list[PipelineResult],
    subjects: list[str],
    statistics: Mapping[str, Mapping[str, float]],
    weights: tuple[float, ...] = GAIT_WEIGHT_GRID,
) -> tuple[float, dict[float, float]]:
    """The gait weight for ``fuse`` that retrieves people best on calibration data (people the model has not
    seen): leave-one-out mAP over the fused scores of every pair, for each weight -> (the best weight, the
    higher on a tie; {weight: mAP}). mAP rather than rank-1: it counts every rank, so it moves less with a few
    sequences."""
    labels = np.asarray(subjects)
    if len(results) != len(labels):
        raise GaderError(f"{len(results)} results but {len(labels)} subjects")
    scores = _modality_scores(results, results, statistics)
    _, has_gait, _, has_look = scores
    if not (has_gait & has_look & ~np.eye(len(results), dtype=bool)).any():
        raise GaderError("no pair of results carries both gait and appearance: there is no weight to choose")
    mean_ap = {float(weight): retrieval_map(_fused_matrix(scores, weight, statistics), labels) for weight in weights}
    best = max(mean_ap, key=lambda w: (round(mean_ap[w], 12), w))
    return best, mean_ap


def _thresholds(genuine: np.ndarray, impostor: np.ndarray, fmrs: tuple[float, ...]) -> dict[str, Any]:
    """Thresholds at each false match rate over these pairs' scores -> {"operating_points": {name: threshold},
    "tmr": {name: true match rate}, "unresolved": [names finer than the impostor pairs can resolve],
    "genuine_pairs", "impostor_pairs"}.

    A threshold is the lowest impostor score whose false match rate over the impostor pairs stays within the
    target (``metrics.impostor_threshold_at_far``). It needs impostor pairs only: pairs with no genuine pair
    among them still get thresholds, without a true match rate (``tmr`` leaves them out)."""
    found: dict[str, Any] = {"operating_points": {}, "tmr": {}, "unresolved": []}
    found.update(genuine_pairs=int(genuine.size), impostor_pairs=int(impostor.size))
    for fmr in fmrs:
        name = metrics.operating_point_name(fmr)
        threshold = metrics.impostor_threshold_at_far(impostor, fmr) if impostor.size else None
        if threshold is None or fmr * impostor.size < 1 or not math.isfinite(threshold):  # nothing to set it by
            found["unresolved"].append(name)
            continue
        found["operating_points"][name] = threshold
        if genuine.size:
            found["tmr"][name] = float(np.mean(genuine >= threshold))
    return found


def fused_operating_points(
    results: list[PipelineResult],
    subjects: list[str],
    gait_weight: float,
    statistics: Mapping[str, Mapping[str, float]],
    fmrs: tuple[float, ...] = metrics.OPERATING_FMRS,
) -> dict[str, Any]:
    """Thresholds on the fused score (``fuse`` with these statistics and weight) at each false match rate, over
    every pair of the calibration results (each pair once), for all pairs together and for each kind of pair
    (scored on gait alone, appearance alone, or both).

    Returns ``_thresholds``' keys for all pairs, plus ``"by_kind": {"gait"|"appearance"|"both": the same keys
    over those pairs}``, ``"fmr_by_pairs": {name: {kind: the false match rate that kind's impostor pairs get at
    the all-pairs threshold}}`` and ``"scores": {"genuine": [...], "impostors": {kind: [...]}}`` (for plots).
    Standardising aims at one threshold meaning one false match rate whatever a pair was scored on;
    ``fmr_by_pairs`` measures how nearly it does, and the per-kind thresholds make decisions hold per kind. A
    rate finer than the impostor pairs can resolve has no threshold (listed under ``unresolved``)."""
    labels = np.asarray(subjects)
    if len(results) != len(labels):
        raise GaderError(f"{len(results)} results but {len(labels)} subjects")
    scores = _modality_scores(results, results, statistics)
    fused = _fused_matrix(scores, gait_weight, statistics)  # [N, N], NaN where a pair shares no modality
    _, has_gait, _, has_look = scores
    scored = np.triu(~np.isnan(fused), k=1)  # each scoreable pair once
    same = labels[:, None] == labels[None, :]
    if not (scored & same).any() or not (scored & ~same).any():
        raise GaderError(
            "operating points need scoreable pairs of the same person and of different people, got "
            f"{int((scored & same).sum())} and {int((scored & ~same).sum())}"
        )
    kinds = {
        "gait": scored & has_gait & ~has_look,
        "appearance": scored & has_look & ~has_gait,
        "both": scored & has_gait & has_look,
    }
    result = _thresholds(fused[scored & same], fused[scored & ~same], fmrs)
    result["by_kind"] = {
        kind: _thresholds(fused[mask & same], fused[mask & ~same], fmrs) for kind, mask in kinds.items()
    }
    result["fmr_by_pairs"] = {
        name: {
            kind: float((fused[mask & ~same] >= threshold).mean()) if (mask & ~same).any() else None
            for kind, mask in kinds.items()
        }
        for name, threshold in result["operating_points"].items()
    }
    result["scores"] = {
        "genuine": fused[scored & same],
        "impostors": {kind: fused[mask & ~same] for kind, mask in kinds.items()},
    }
    return result


def modality_statistics(results: list[PipelineResult], subjects: list[str]) -> dict[str, dict[str, float]]:
    """Impostor statistics over every pair of results of different people: per modality (over the pairs that
    both carry it) ``{"gait"|"appearance": {"impostor_mean", "impostor_std", "impostor_pairs"}}``, and
    ``{"joint": {"impostor_correlation", "impostor_pairs"}}`` over the pairs that carry both (0 when fewer than
    3 do): what ``fuse`` standardises and rescales with. Where at least ``MIN_ALONE_PAIRS`` impostor pairs share
    a modality alone, they get their own section (``gait_alone`` / ``appearance_alone``) and the modality's
    section is measured over the other pairs, those that share both. Measure them on people the model has not
    seen (``gader calibrate-fusion``)."""
    labels = np.asarray(subjects)
    if len(results) != len(labels):
        raise GaderError(f"{len(results)} results but {len(labels)} subjects")
    if len(set(labels.tolist())) < 2:
        raise GaderError(f"impostor statistics need at least 2 people, got {len(set(labels.tolist()))}")
    different = labels[:, None] != labels[None, :]
    upper = np.triu(np.ones(different.shape, bool), k=1)  # each pair once
    statistics, impostors = {}, {}
    for modality in MODALITIES:
        embeddings = [r.embedding if modality == "gait" else r.appearance for r in results]
        similarity, present = _similarity_01(embeddings, embeddings)
        impostor = similarity[present & different & upper]
        if impostor.size < 2:
            pairs = "1 impostor pair" if impostor.size == 1 else f"{impostor.size} impostor pairs"
            raise GaderError(
                f"{modality}: {pairs} found, at least 2 are needed; calibrate on more people (and, for "
                "appearance, on sequences with RGB crops and frames the detector does not call gait)"
            )
        if not np.isfinite(impostor).all():
            raise GaderError(f"{modality}: non-finite similarities (the model gave non-finite embeddings)")
        if impostor.std() <= 1e-9:
            raise GaderError(
                f"{modality}: all {impostor.size} impostor pairs score the same ({impostor.mean():.6f}), so there "
                "is no spread to standardise by; calibrate on more varied people"
            )
        statistics[modality] = _impostor_section(impostor)
        impostors[modality] = (similarity, present)
    (gait, has_gait), (look, has_look) = impostors["gait"], impostors["appearance"]
    both = has_gait & has_look & different & upper
    rho = 0.0
    if both.sum() >= 3 and gait[both].std() > 1e-9 and look[both].std() > 1e-9:
        rho = float(np.corrcoef(gait[both], look[both])[0, 1])
    statistics[JOINT] = {"impostor_correlation": rho, "impostor_pairs": int(both.sum())}
    for modality, other in zip(MODALITIES, MODALITIES[::-1], strict=True):
        similarity, present = impostors[modality]
        alone = present & ~impostors[other][1]  # pairs that share this modality and not the other
        lone = similarity[alone & different & upper]
        rest = similarity[present & ~alone & different & upper]  # the pairs that also share the other modality
        if lone.size >= MIN_ALONE_PAIRS and rest.size >= 2 and lone.std() > 1e-9 and rest.std() > 1e-9:
            # Split: each kind standardised by its own pairs, so that both kinds are centred where impostors lie
            statistics[ALONE[modality]] = _impostor_section(lone)
            statistics[modality] = _impostor_section(rest)
    return statistics


def _impostor_section(impostor: np.ndarray) -> dict[str, float]:
    return {
        "impostor_mean": float(impostor.mean()),
        "impostor_std": float(impostor.std()),
        "impostor_pairs": int(impostor.size),
    }


def route(frames: int, detection: DetectionReport | None, config: PipelineConfig) -> tuple[np.ndarray, bool]:
    """Which frames go to GAR (bool [T]) and whether the sequence is usable at all.

    Without a detection every frame is gait. With one: the detected segments (their frames labelled full-gait,
    with ``trim_to_frame_labels``), if the detector calls the sequence usable and they hold enough frames; else
    nothing (or, with ``fallback_whole_sequence``, all).
    Shared by in-process and Triton inference.
    """
    if detection is None:
        return np.ones(frames, bool), frames >= config.min_frames
    gait = detection.gait_mask
    if config.trim_to_frame_labels:
        walking = detection.walking_mask
        if int(walking.sum()) >= config.min_frames:
            gait = walking
    usable = detection.usable and int(gait.sum()) >= config.min_frames
    if not usable and config.fallback_whole_sequence and frames >= config.min_frames:
        return np.ones(frames, bool), True
    return gait, usable


class GaderPipeline:
    def __init__(
        self,
        model: LoadedModel,
        detector: GaitDetector | None,
        config: PipelineConfig | None = None,
        detector_name: str | None = None,  # what it was loaded as; operating_points compares it with calibration's
    ) -> None:
        self.model = model
        self.detector = detector
        self.detector_name = detector_name
        self.config = config or PipelineConfig()
        self.device = next(model.embedder.parameters()).device

    @classmethod
    def load(
        cls,
        model: str | Path,
        detector: str | Path | None,
        config: PipelineConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> GaderPipeline:
        loaded = load_model(model, device=device, with_rgb=True)
        gait_detector = load_detector(detector, device)[0] if detector is not None else None
        return cls(loaded, gait_detector, config, None if detector is None else str(detector))

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def gait_weight(self) -> float:
        """The fusion weight in use: the config's, else the one calibrated for the model, else the default."""
        return self._gait_weight(self._fusion_statistics())

    def _fusion_statistics(self) -> Mapping[str, Mapping[str, float]] | None:
        """The model card's fusion statistics, checked; None when it has none."""
        statistics = self.model.card.fusion_statistics or None
        if statistics is not None:
            check_fusion_statistics(statistics, f"model {self.model.id}")
        return statistics

    def _gait_weight(self, statistics: Mapping[str, Mapping[str, float]] | None) -> float:
        if self.config.gait_weight is not None:
            return float(self.config.gait_weight)
        calibrated = None if statistics is None else statistics[JOINT].get("gait_weight")
        return DEFAULT_GAIT_WEIGHT if calibrated is None else float(calibrated)

    def detect(self, record: SequenceRecord) -> DetectionReport:
        if self.detector is None:
            raise GaderError("this pipeline has no gait detector")
        return self.detector.detect(record.silhouettes, record.ratios)

    def embed_frames(self, record: SequenceRecord) -> np.ndarray:
        """GAR embedding [d, p] of all frames of the record."""
        item = prepare(record, *self.model.embedder.input_size, max_frames=self.config.max_frames)
        if not self.config.use_ratios:
            item.ratios = None
        return embed_sequences(self.model.embedder, [item], device=self.device)[0]

    @torch.no_grad()
    def embed_appearance(self, record: SequenceRecord) -> np.ndarray:
        """RGB-branch (body re-identification) embedding [d', p'] of all frames of the record; needs its RGB
        crops and a model that ships its RGB branch."""
        if record.rgb is None or self.model.rgb is None:
            missing = "the sequence has no RGB crops" if record.rgb is None else f"{self.model.id} has no RGB branch"
            raise GaderError(f"no appearance embedding: {missing}")
        height, width = self.model.embedder.input_size
        rgb = resize_frames(record.rgb[: self.config.max_frames], height, width)  # [T, h, w, 3]
        frames = torch.from_numpy(rgb).to(self.device).float().div_(255).permute(3, 0, 1, 2)[None]  # [1, 3, T, h, w]
        # Training weights the RGB branch's frames by the same ratio attention as the silhouettes'
        # (GAR.forward), and its batch norms learned their statistics on weighted features: served without
        # the weights, its features are about 1/r (~1.8x) larger than any it saw.
        weights = None
        ratio_attention = self.model.embedder.ratio
        if ratio_attention is not None and self.config.use_ratios and record.ratios is not None:
            ratios = torch.from_numpy(record.ratios[: self.config.max_frames].astype(np.float32)).to(self.device)
            weights = ratio_attention(ratios[None], None)  # [1, T]
        return self.model.rgb(frames, None, weights).embeddings[0].float().cpu().numpy()

    def process(self, record: SequenceRecord, detection: DetectionReport | None = None) -> PipelineResult:
        """Detect, route and embed one sequence. ``detection``: this record's report from the same detector,
        made already (pipelines that differ only in what they do with it need not run the detector again)."""
        if record.frames == 0:
            raise GaderError("the sequence has no frames")
        if detection is not None and detection.frames != record.frames:
            raise GaderError(f"the detection covers {detection.frames} frames, the sequence has {record.frames}")
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        if not (self.config.use_detector and self.detector is not None):
            detection = None
        elif detection is None:
            detection = self.detect(record)
        timings["detector"] = 1000 * (time.perf_counter() - clock)
        gait, usable = route(record.frames, detection, self.config)
        clock = time.perf_counter()
        embedding = self.embed_frames(record.select(gait)) if usable else None
        timings["embedding"] = 1000 * (time.perf_counter() - clock)
        appearance, rest = None, ~gait if usable else np.ones(record.frames, bool)
        if record.rgb is not None and self.model.rgb is not None and int(rest.sum()) >= self.config.min_frames:
            clock = time.perf_counter()
            appearance = self.embed_appearance(record.select(rest))
            timings["appearance"] = 1000 * (time.perf_counter() - clock)
        return PipelineResult(
            detection=detection,
            embedding=embedding,
            appearance=appearance,
            embedded_frames=int(gait.sum()) if usable else 0,
            appearance_frames=int(rest.sum()) if appearance is not None else 0,
            model_id=self.model.id,
            timings_ms=timings,
        )

    def similarity(self, a: PipelineResult, b: PipelineResult) -> float | None:
        """``fuse`` with this pipeline's gait weight and its model's fusion statistics: a standardised score
        (impostor standard deviations) when the card has them, else the raw similarity of the one modality used.
        ``operating_points`` gives the calibrated thresholds that apply to it."""
        statistics = self._fusion_statistics()
        return fuse(a, b, self._gait_weight(statistics), statistics)

    def score_breakdown(self, a: PipelineResult, b: PipelineResult) -> dict[str, Any]:
        """``similarity(a, b)`` and what it is made of: each modality's raw similarity (``(1 + part cosine) / 2``;
        None where a side lacks it) and, with fusion statistics, its standardised score; the modalities the score
        used (``"gait"``, ``"appearance"``, ``"both"`` or ``None``) and the gait weight."""
        statistics = self._fusion_statistics()
        weight = self._gait_weight(statistics)
        raw_scores = _modality_scores([a], [b], None)  # one computation of the two similarities, [1, 1] each
        scores = raw_scores if statistics is None else _standardised(raw_scores, statistics)
        gait, has_gait, look, has_look = raw_scores
        raw = {"gait": float(gait[0, 0]) if has_gait[0, 0] else None}
        raw["appearance"] = float(look[0, 0]) if has_look[0, 0] else None
        standardised = {"gait": None, "appearance": None}
        if statistics is not None:
            for modality, z in (("gait", scores[0]), ("appearance", scores[2])):
                if raw[modality] is not None:
                    standardised[modality] = float(z[0, 0])
        fused = float(_fused_matrix(scores, weight, statistics)[0, 0])  # fuse's rule, on the scores above
        used = pair_kind(a, b)
        if statistics is None and used == "both":
            used = "gait"  # raw scores of two models are never summed
        return {
            "score": None if math.isnan(fused) else fused,
            "scale": "impostor standard deviations" if statistics is not None else "similarity in [0, 1]",
            "scored_on": used,
            "gait_weight": weight if used == "both" else None,
            "similarity": raw,
            "standardised": standardised,
        }

    def operating_points(self, a: PipelineResult, b: PipelineResult) -> tuple[dict[str, float], str]:
        """The calibrated thresholds ({"fmr=1e-3": threshold, ...}) that apply to ``similarity(a, b)``, and why
        (or why none do). With fusion statistics: the fused score's thresholds from ``gader calibrate-fusion`` for
        pairs of this pair's kind (scored on gait alone, appearance alone or both), the all-pairs threshold where
        calibration set none for the kind (raised to the kind's own at a coarser rate where that is higher, see
        ``_kind_thresholds``); for pairs scored on both, valid at the weight they were measured at; a
        routing other than the calibration's is said in the reason. Without: the raw gait
        similarity is the service's, so the card's operating points (``gader calibrate``) apply where both sides
        have gait; a raw appearance score has none."""
        statistics = self._fusion_statistics()
        card = self.model.card
        if statistics is not None:
            tables = card.fusion_operating_points
            check_fused_operating_points(tables, f"model {card.id}")
            if not tables:
                return {}, f"model {card.id} has no operating points for fused scores: re-run gader calibrate-fusion"
            if not tables.get("all"):
                return {}, f"gader calibrate-fusion set no operating point for model {card.id}: too few pairs"
            kind = pair_kind(a, b)
            if kind is None:
                return {}, "the two share no modality"
            calibrated = statistics[JOINT].get("gait_weight", DEFAULT_GAIT_WEIGHT)
            weight = self._gait_weight(statistics)
            if kind == "both" and abs(weight - calibrated) > 1e-9:  # the weight only enters pairs scored on both
                return (
                    {},
                    f"the fused score's operating points were calibrated at gait weight {calibrated:g}, not {weight:g}",
                )
            own = tables.get(kind, {})
            points, borrowed, raised = _kind_thresholds(own, tables["all"])
            basis = f"fused-score thresholds for pairs scored on {kind} (gader calibrate-fusion)"
            if borrowed:
                basis += f"; {', '.join(borrowed)} from all pairs (calibration set none for pairs scored on {kind})"
            if raised:
                basis += (
                    f"; {', '.join(raised)} raised to the threshold at a coarser rate (a finer rate never accepts more)"
                )
            calibration = card.metrics.get("fusion_calibration", {})
            routed = calibration.get("fallback_whole_sequence")
            if routed is not None and bool(routed) != self.config.fallback_whole_sequence:
                basis += (
                    f"; calibrated with fallback_whole_sequence {'on' if routed else 'off'} and used with it "
                    f"{'off' if routed else 'on'}: sequences without usable gait are scored otherwise"
                )
            calibrated_with = calibration.get("detector")
            if calibrated_with and not (self.config.use_detector and self.detector is not None):
                basis += f"; calibrated with the detector {calibrated_with} and used without one"
            elif calibrated_with and self.detector_name not in (None, calibrated_with):
                basis += f"; calibrated with the detector {calibrated_with}, used with {self.detector_name}"
            return points, basis
        if a.embedding is None or b.embedding is None:
            return {}, f"model {card.id} has no operating points for appearance scores"
        if not card.operating_points:
            return {}, f"model {card.id} has no calibrated operating points: run gader calibrate"
        return dict(card.operating_points), "gait-similarity thresholds (gader calibrate)"


def _kind_thresholds(
    own: Mapping[str, float], pooled: Mapping[str, float]
) -> tuple[dict[str, float], list[str], list[str]]:
    """A kind of pair's thresholds at every rate either table sets: its own where calibration set them, else the
    all-pairs one; each raised where needed so that a finer false match rate never has a lower threshold than a
    coarser one (a kind with heavier impostor tails can own a 1e-2 threshold above the all-pairs 1e-3 one).
    -> (thresholds by name, names borrowed from all pairs, names raised)."""
    points: dict[str, float] = {}
    borrowed: list[str] = []
    raised: list[str] = []
    floor = -math.inf  # the highest threshold at a coarser rate so far
    for name in sorted(
        {*own, *pooled}, key=lambda n: -metrics.operating_point_fmr(n)
    ):  # coarse to fine: fmr=1e-2 first
        if name not in own:
            borrowed.append(name)
        candidate = own[name] if name in own else pooled[name]
        points[name] = max(candidate, floor)
        if points[name] > candidate:
            raised.append(name)
        floor = points[name]
    return points, borrowed, raised


def pair_kind(a: PipelineResult, b: PipelineResult) -> str | None:
    """What a pair can be scored on: ``"both"``, ``"gait"`` or ``"appearance"`` (alone), or ``None``."""
    gait = a.embedding is not None and b.embedding is not None
    look = a.appearance is not None and b.appearance is not None
    return {(True, True): "both", (True, False): "gait", (False, True): "appearance"}.get((gait, look))


__all__ = [
    "GaderPipeline",
    "PipelineConfig",
    "PipelineResult",
    "check_fused_operating_points",
    "check_fusion_statistics",
    "choose_gait_weight",
    "fuse",
    "fused_operating_points",
    "fused_similarity",
    "modality_statistics",
    "pair_kind",
    "retrieval_map",
    "route",
    "standardise",
]
