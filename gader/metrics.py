"""Biometric metrics: distances, CMC / rank-k, mAP, mINP, ROC, DET, TAR@FAR, EER, FNIR@FPIR.

Conventions:

- Embeddings are ``[N, D]`` or per body part ``[N, P, D]``. The Euclidean distance is OpenGait's: the
  per-part Euclidean distance averaged over parts. The cosine distance is ``1 - mean over parts of the
  per-part cosine similarity``.
- Identification metrics take a distance matrix ``[probes, gallery]`` (smaller = more similar).
- Verification metrics take similarity scores (larger = more similar); use ``-distance``. A pair is
  accepted when ``score >= threshold``.
- Rates are fractions in [0, 1] here; protocols and the CLI report percentages.
- mAP and mINP follow Gait3D's ``evaluate_rank`` (probes without any true match in the gallery are left
  out of CMC, mAP and mINP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gader.errors import GaderError

DEFAULT_FARS = (1e-4, 1e-3, 1e-2, 1e-1)


def _as_parts(embeddings: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 1, D]; [N, P, D] unchanged; float32."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim == 2:
        return embeddings[:, None, :]
    if embeddings.ndim != 3:
        raise GaderError(f"embeddings must be [N, D] or [N, P, D], got shape {embeddings.shape}")
    return embeddings


def pairwise_distance(probe: np.ndarray, gallery: np.ndarray, metric: str = "euc") -> np.ndarray:
    """float32 [Np, Ng] distances between probe and gallery embeddings (see module docstring)."""
    x, y = _as_parts(probe), _as_parts(gallery)  # [Np, P, D], [Ng, P, D]
    if x.shape[1:] != y.shape[1:]:
        raise GaderError(f"probe {x.shape[1:]} and gallery {y.shape[1:]} embeddings differ in shape")
    if metric not in ("euc", "cos"):
        raise GaderError(f"unknown distance {metric!r}: use 'euc' or 'cos'")
    if metric == "cos":
        x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
        y = y / np.maximum(np.linalg.norm(y, axis=2, keepdims=True), 1e-12)
    parts = x.shape[1]
    total = np.zeros((x.shape[0], y.shape[0]), dtype=np.float32)  # [Np, Ng]
    # One part at a time keeps memory at one [Np, Ng] matrix, whatever the number of parts.
    for part in range(parts):
        xp, yp = x[:, part], y[:, part]  # [Np, D], [Ng, D]
        inner = xp @ yp.T  # [Np, Ng]
        if metric == "cos":
            total += inner
        else:
            squared = (xp**2).sum(axis=1)[:, None] + (yp**2).sum(axis=1)[None, :] - 2.0 * inner
            total += np.sqrt(np.maximum(squared, 0.0))
    return 1.0 - total / parts if metric == "cos" else total / parts


@dataclass(frozen=True)
class RankingResult:
    cmc: np.ndarray  # float64 [max_rank]: fraction of valid probes with a true match within rank k
    mAP: float
    mINP: float
    valid_probes: int  # probes with at least one true match in the gallery


def rank_metrics(
    distance: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray, max_rank: int = 50
) -> RankingResult:
    """CMC, mAP and mINP (Gait3D definitions) from a distance matrix [Np, Ng].

    Ties are broken by gallery order (a stable sort), as in Gait3D's code.
    """
    distance = np.asarray(distance)
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    if distance.shape != (len(probe_labels), len(gallery_labels)):
        raise GaderError(f"distance {distance.shape} does not match {len(probe_labels)}x{len(gallery_labels)}")
    order = np.argsort(distance, axis=1, kind="stable")  # [Np, Ng]
    matches = gallery_labels[order] == probe_labels[:, None]  # bool [Np, Ng]
    valid = matches.any(axis=1)
    matches = matches[valid]
    if len(matches) == 0:
        return RankingResult(np.zeros(max_rank), float("nan"), float("nan"), 0)
    hits = matches.cumsum(axis=1)  # [V, Ng] true matches within the first k
    ranks = np.arange(1, matches.shape[1] + 1)  # [Ng]
    # mINP: (number of true matches) / (rank of the hardest true match).
    last_hit = matches.shape[1] - 1 - matches[:, ::-1].argmax(axis=1)  # [V]
    inp = hits[np.arange(len(matches)), last_hit] / (last_hit + 1.0)
    # AP: mean precision at the ranks of the true matches.
    precision = hits / ranks  # [V, Ng]
    average_precision = (precision * matches).sum(axis=1) / matches.sum(axis=1)
    cmc = (hits[:, :max_rank] > 0).mean(axis=0)
    if cmc.shape[0] < max_rank:  # a gallery smaller than max_rank: the curve stays at its last value
        cmc = np.concatenate([cmc, np.full(max_rank - cmc.shape[0], cmc[-1])])
    return RankingResult(
        cmc=cmc, mAP=float(average_precision.mean()), mINP=float(inp.mean()), valid_probes=int(valid.sum())
    )


def pair_scores(
    similarity: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split a probe x gallery similarity matrix into (genuine, impostor) score arrays."""
    same = np.asarray(probe_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return similarity[same], similarity[~same]


@dataclass(frozen=True)
class RocCurve:
    """Operating points, one per distinct threshold, in decreasing threshold order."""

    thresholds: np.ndarray  # accept when score >= threshold
    far: np.ndarray  # false accept rate (FMR / FPR) at each threshold
    tar: np.ndarray  # true accept rate (TPR = 1 - FNMR)
    genuine: int
    impostor: int

    @property
    def frr(self) -> np.ndarray:
        return 1.0 - self.tar


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> RocCurve:
    genuine = np.asarray(genuine, dtype=np.float64).ravel()
    impostor = np.asarray(impostor, dtype=np.float64).ravel()
    if genuine.size == 0 or impostor.size == 0:
        raise GaderError(f"verification needs genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    if not (np.all(np.isfinite(genuine)) and np.all(np.isfinite(impostor))):
        raise GaderError("verification scores contain NaN or infinite values")
    scores = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_genuine = scores[order], is_genuine[order]
    # The last position of each run of equal scores: accepting ">= that score" takes the whole run.
    run_end = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    true_accepts = np.cumsum(is_genuine)[run_end]
    false_accepts = np.cumsum(~is_genuine)[run_end]
    # Prepend the point that accepts nothing (threshold above every score).
    thresholds = np.r_[np.inf, scores[run_end]]
    tar = np.r_[0.0, true_accepts / genuine.size]
    far = np.r_[0.0, false_accepts / impostor.size]
    return RocCurve(thresholds=thresholds, far=far, tar=tar, genuine=genuine.size, impostor=impostor.size)


def tar_at_far(curve: RocCurve, far_targets: tuple[float, ...] = DEFAULT_FARS) -> dict[float, float]:
    """Highest TAR whose FAR does not exceed each target.

    With fewer than 1/target impostor pairs, the only admissible point is FAR = 0, so the value is a
    conservative lower bound; ``far_resolution`` (1 / impostor pairs) says where that starts.
    """
    result = {}
    for target in far_targets:
        admissible = curve.far <= target + 1e-15
        result[target] = float(curve.tar[admissible].max())
    return result


def impostor_threshold_at_far(impostor: np.ndarray, far_target: float) -> float:
    """The lowest impostor score whose FAR (share of impostor scores at or above it) does not exceed the target:
    the k-th highest impostor score, k = target x impostors; +inf when even the highest score's tie accepts too
    many. The threshold of every calibrated operating point (the service's ``gader calibrate`` and the fused
    score's): it depends on the impostors alone, and a new impostor passes it with probability about
    k / (n + 1), within the target. The lowest score of any kind with the same FAR on the calibration scores
    (the rule until 2026-11-27) is often a genuine score just above the next lower impostor, which new impostors
    pass at about (k+1) / n: up to twice the target for small k."""
    scores = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]  # [n], highest first
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise GaderError("a threshold needs finite impostor scores")
    run_end = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # accepting ">= score" takes its whole run
    admissible = np.flatnonzero((run_end + 1) / scores.size <= far_target + 1e-15)
    return float(scores[run_end[admissible[-1]]]) if admissible.size else math.inf


OPERATING_FMRS = (1e-2, 1e-3, 1e-4)  # the false match rates thresholds are calibrated for


def operating_point_name(fmr: float) -> str:
    """A calibrated operating point's name, as the service and model cards use it: 1e-3 -> ``fmr=1e-3``."""
    return f"fmr={fmr:.0e}".replace("e-0", "e-")


def operating_point_fmr(name: object) -> float | None:
    """``operating_point_name``'s inverse: ``"fmr=1e-3"`` -> 0.001; None for anything else (a rate outside
    (0, 1) included), so that a hand-edited name can be refused by name."""
    if not isinstance(name, str) or not name.startswith("fmr="):
        return None
    try:
        rate = float(name[len("fmr=") :])
    except ValueError:
        return None
    return rate if 0 < rate < 1 else None


def far_resolution(curve: RocCurve) -> float:
    return 1.0 / curve.impostor


def equal_error_rate(curve: RocCurve) -> float:
    """EER: where FAR equals FRR, linearly interpolated between the two operating points around it."""
    frr = curve.frr
    difference = curve.far - frr  # rises from -1 (accept nothing) to +1 (accept everything)
    crossing = int(np.argmax(difference >= 0))
    if crossing == 0:
        return float(curve.far[0])
    d0, d1 = difference[crossing - 1], difference[crossing]
    weight = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    far = curve.far[crossing - 1] + weight * (curve.far[crossing] - curve.far[crossing - 1])
    frr_value = frr[crossing - 1] + weight * (frr[crossing] - frr[crossing - 1])
    return float((far + frr_value) / 2.0)


def det_coordinates(curve: RocCurve, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) on the normal-deviate scale used by DET plots; zeros and ones are clipped to ``floor``."""
    normal = NormalDist()
    probit = np.vectorize(lambda p: normal.inv_cdf(min(max(p, floor), 1.0 - floor)))
    return probit(curve.far), probit(curve.frr)


@dataclass(frozen=True)
class OpenSetIdentification:
    """1:N with a threshold (NIST naming): FNIR at fixed FPIR."""

    fpir: np.ndarray  # [K] false positive identification rate over non-mated searches
    fnir: np.ndarray  # [K] false negative identification rate over mated searches
    thresholds: np.ndarray  # [K]
    mated: int
    non_mated: int


def open_set_identification(
    similarity: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    rank: int = 1,
    simulate_non_mated: bool = True,
) -> OpenSetIdentification:
    """FNIR/FPIR trade-off for 1:N search with a threshold.

    A mated search (the probe's subject is enrolled) fails when its mate is not among the top ``rank``
    candidates with a score >= T. A non-mated search is a false positive when its top candidate scores
    >= T. Probes whose subject is not enrolled are non-mated searches; with ``simulate_non_mated`` every
    mated probe is also run once more against the gallery without its own subject (the usual
    leave-one-subject-out construction when a test set has no strangers).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    same = probe_labels[:, None] == gallery_labels[None, :]  # [Np, Ng]
    mated = same.any(axis=1)
    # Mated searches: the mate's best score, if the mate is within the top `rank` candidates.
    order = np.argsort(-similarity, axis=1, kind="stable")
    top = order[:, :rank]
    top_scores = np.take_along_axis(similarity, top, axis=1)
    top_is_mate = np.take_along_axis(same, top, axis=1)
    mate_score = np.where(top_is_mate, top_scores, -np.inf).max(axis=1)[mated]  # -inf: mate beyond rank
    # Non-mated searches: the best score among strangers.
    stranger_best = np.where(same, -np.inf, similarity).max(axis=1)
    non_mated_scores = stranger_best[~mated]
    if simulate_non_mated:
        non_mated_scores = np.concatenate([non_mated_scores, stranger_best[mated]])
    non_mated_scores = non_mated_scores[np.isfinite(non_mated_scores)]
    if mate_score.size == 0 or non_mated_scores.size == 0:
        raise GaderError("FNIR/FPIR needs both mated and non-mated searches")
    thresholds = np.unique(np.concatenate([non_mated_scores, mate_score[np.isfinite(mate_score)]]))[::-1]
    thresholds = np.r_[np.inf, thresholds]
    fpir = _fraction_at_least(non_mated_scores, thresholds)
    fnir = 1.0 - _fraction_at_least(mate_score, thresholds)
    return OpenSetIdentification(fpir, fnir, thresholds, int(mate_score.size), int(non_mated_scores.size))


def _fraction_at_least(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[K] fraction of ``scores`` that are >= each threshold (sorted search, no [K, N] matrix)."""
    ordered = np.sort(scores)
    return (ordered.size - np.searchsorted(ordered, thresholds, side="left")) / ordered.size


def fnir_at_fpir(result: OpenSetIdentification, fpir_targets: tuple[float, ...] = DEFAULT_FARS) -> dict[float, float]:
    """Lowest FNIR whose FPIR does not exceed each target."""
    return {target: float(result.fnir[result.fpir <= target + 1e-15].min()) for target in fpir_targets}
