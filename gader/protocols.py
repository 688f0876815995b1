"""Evaluation protocols over a set of embeddings: CASIA-B, open-set retrieval, verification, buckets.

Every protocol takes an ``EmbeddingSet`` (embeddings plus per-sequence labels) and returns plain dicts of
percentages (0-100) ready for JSON, plus the curves for plotting where a person would rather look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gader import metrics
from gader.data.npz import NpzArchive
from gader.errors import DataFormatError, GaderError

PROTOCOLS = ("casia-b", "open-set", "verification")

# CASIA-B (MISSION.md "Evaluation conventions"; OpenGait's evaluator).
CASIA_GALLERY_CONDITIONS = ("nm-01", "nm-02", "nm-03", "nm-04")
CASIA_PROBE_CONDITIONS = {
    "NM": ("nm-05", "nm-06"),
    "BG": ("bg-01", "bg-02"),
    "CL": ("cl-01", "cl-02"),
}
CASIA_RANKS = 5  # OpenGait computes ranks 1..5 for CASIA-B


@dataclass
class EmbeddingSet:
    """Embeddings of N sequences with what is known about each."""

    embeddings: np.ndarray  # float32 [N, D] or [N, P, D]
    subjects: np.ndarray  # str [N]
    conditions: np.ndarray | None = None  # str [N]
    views: np.ndarray | None = None  # str [N]
    is_probe: np.ndarray | None = None  # bool [N], for open-set and verification
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # other per-sequence fields (distance, ...)

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings)
        if self.embeddings.ndim not in (2, 3) or self.embeddings.shape[0] == 0 or self.embeddings.shape[-1] == 0:
            raise DataFormatError(f"embeddings must be non-empty [N, D] or [N, P, D], got {self.embeddings.shape}")
        if not np.issubdtype(self.embeddings.dtype, np.number) or self.embeddings.dtype.kind == "c":
            raise DataFormatError(f"embeddings must be real numbers, got {self.embeddings.dtype}")
        self.embeddings = self.embeddings.astype(np.float32)
        if not np.all(np.isfinite(self.embeddings)):
            bad = int((~np.isfinite(self.embeddings)).reshape(len(self.embeddings), -1).any(axis=1).sum())
            raise DataFormatError(f"embeddings contain NaN or infinite values ({bad} sequences)")
        n = self.embeddings.shape[0]
        self.subjects = self._labels("subjects", self.subjects, n)
        if self.conditions is not None:
            self.conditions = np.char.lower(self._labels("conditions", self.conditions, n))
        if self.views is not None:
            self.views = self._labels("views", self.views, n)
        if self.is_probe is not None:
            is_probe = np.asarray(self.is_probe)
            if is_probe.shape != (n,) or is_probe.dtype.kind not in "bui":
                raise DataFormatError(f"is_probe must be boolean [{n}], got {is_probe.dtype} {is_probe.shape}")
            if is_probe.dtype.kind != "b" and not np.isin(is_probe, (0, 1)).all():
                raise DataFormatError("is_probe must hold only true/false (or 0/1)")
            self.is_probe = is_probe.astype(bool)
        self.groups = {name: self._labels(name, values, n) for name, values in self.groups.items()}

    @staticmethod
    def _labels(name: str, values: np.ndarray, n: int) -> np.ndarray:
        values = np.asarray(values)
        if values.shape != (n,):
            raise DataFormatError(f"{name} must have shape [{n}] like embeddings, got {values.shape}")
        if values.dtype.kind not in "USiu":
            raise DataFormatError(f"{name} must be strings (or integers), got {values.dtype}")
        return values.astype(str)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def require(self, *names: str) -> None:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise DataFormatError(f"this protocol needs {', '.join(missing)}")

    def save(self, path: str | Path) -> None:
        arrays = {"embeddings": self.embeddings, "subjects": self.subjects}
        for name in ("conditions", "views", "is_probe"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        arrays.update({f"group_{name}": values for name, values in self.groups.items()})
        np.savez(path, **arrays)


def load_embedding_set(path: str | Path) -> EmbeddingSet:
    """Read an embeddings file (keys: embeddings, subjects, conditions, views, is_probe, group_*)."""
    with NpzArchive(path) as archive:
        if len(archive) == 0:
            raise DataFormatError(f"{archive.label}: empty file (no arrays)")
        for key in ("embeddings", "subjects"):
            if key not in archive:
                raise DataFormatError(f"{archive.label}: missing array {key!r}")
        return EmbeddingSet(
            embeddings=archive["embeddings"],
            subjects=archive["subjects"],
            conditions=archive.get("conditions"),
            views=archive.get("views"),
            is_probe=archive.get("is_probe"),
            groups={key[len("group_") :]: archive[key] for key in archive if key.startswith("group_")},
        )


def _percent(value: float) -> float:
    return float(100.0 * value)


def _far_key(far: float) -> str:
    return f"{far:.0e}"  # 1e-04, as in the JSON contract


# --- CASIA-B ------------------------------------------------------------------------------------


@dataclass
class CasiaResult:
    summary: dict  # the JSON the CLI prints
    accuracy: np.ndarray  # [conditions, probe views, gallery views, ranks], percent, NaN where empty
    views: list[str]
    cmc: dict[str, np.ndarray]  # condition -> [ranks] cross-view mean, percent (conditions with probes)


def casia_b(data: EmbeddingSet, metric: str = "euc") -> CasiaResult:
    """CASIA-B rank-k: for each probe view and gallery view, the gallery restricted to that view; the
    probe view's accuracy is the mean over the other gallery views; a condition's is the mean over probe
    views. Every probe counts (also one whose subject is missing from that gallery view), as in OpenGait.
    """
    data.require("conditions", "views")
    gallery = np.isin(data.conditions, CASIA_GALLERY_CONDITIONS)
    if not gallery.any():
        raise DataFormatError(f"no gallery sequences: CASIA-B needs conditions {', '.join(CASIA_GALLERY_CONDITIONS)}")
    probe_sets = {name: np.isin(data.conditions, conds) for name, conds in CASIA_PROBE_CONDITIONS.items()}
    if not any(mask.any() for mask in probe_sets.values()):
        raise DataFormatError("no probe sequences: CASIA-B needs nm-05/06, bg-01/02 or cl-01/02")
    views = sorted(set(data.views[gallery]) | set(data.views[np.logical_or.reduce(list(probe_sets.values()))]))
    gallery_index = np.flatnonzero(gallery)
    probe_index = np.flatnonzero(np.logical_or.reduce(list(probe_sets.values())))
    distance = metrics.pairwise_distance(data.embeddings[probe_index], data.embeddings[gallery_index], metric)
    probe_row = {index: row for row, index in enumerate(probe_index)}

    accuracy = np.full((len(probe_sets), len(views), len(views), CASIA_RANKS), np.nan)
    for c, mask in enumerate(probe_sets.values()):
        for pv, probe_view in enumerate(views):
            probes = np.flatnonzero(mask & (data.views == probe_view))
            if probes.size == 0:
                continue
            rows = np.array([probe_row[i] for i in probes])
            for gv, gallery_view in enumerate(views):
                columns = np.flatnonzero(data.views[gallery_index] == gallery_view)
                if columns.size == 0:
                    continue
                block = distance[np.ix_(rows, columns)]  # [probes, gallery of this view]
                ranks = min(CASIA_RANKS, columns.size)
                nearest = np.argsort(block, axis=1, kind="stable")[:, :ranks]
                hit = data.subjects[gallery_index][columns][nearest] == data.subjects[probes][:, None]
                within = np.cumsum(hit, axis=1) > 0  # [probes, ranks]
                rates = within.mean(axis=0) * 100.0
                accuracy[c, pv, gv, :ranks] = rates
                accuracy[c, pv, gv, ranks:] = rates[-1]

    off_diagonal = ~np.eye(len(views), dtype=bool)
    per_view = np.full((len(probe_sets), len(views), CASIA_RANKS), np.nan)
    for c in range(len(probe_sets)):
        for pv in range(len(views)):
            cells = accuracy[c, pv][off_diagonal[pv]]  # [other gallery views, ranks]
            if np.isfinite(cells[:, 0]).any():
                per_view[c, pv] = np.nanmean(cells, axis=0)
    names = list(probe_sets)
    condition_mean = np.array([_nanmean(per_view[c]) for c in range(len(names))])  # [C, ranks]
    rank1 = {name: _finite(condition_mean[c, 0]) for c, name in enumerate(names)}
    present = [v for v in rank1.values() if v is not None]
    rank1["mean"] = float(np.mean(present)) if present else None
    summary = {
        "rank1": rank1,
        "per_view": {name: [_finite(v) for v in per_view[c, :, 0]] for c, name in enumerate(names)},
        "views": views,
        "rank5": {name: _finite(condition_mean[c, -1]) for c, name in enumerate(names)},
        "metric": metric,
    }
    cmc = {name: condition_mean[c] for c, name in enumerate(names) if np.isfinite(condition_mean[c, 0])}
    return CasiaResult(summary=summary, accuracy=accuracy, views=views, cmc=cmc)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN rows; NaN where a column has no finite value."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# --- open-set retrieval and verification -----------------------------------------------------------


def _probe_gallery(data: EmbeddingSet) -> tuple[np.ndarray, np.ndarray]:
    data.require("is_probe")
    probes, gallery = np.flatnonzero(data.is_probe), np.flatnonzero(~data.is_probe)
    if probes.size == 0 or gallery.size == 0:
        raise DataFormatError(f"is_probe marks {probes.size} probes and {gallery.size} gallery sequences; need both")
    return probes, gallery


@dataclass
class OpenSetResult:
    summary: dict
    ranking: metrics.RankingResult


def open_set(data: EmbeddingSet, metric: str = "euc", max_rank: int = 50) -> OpenSetResult:
    """Gait3D-style retrieval: probes (``is_probe``) against everything else."""
    probes, gallery = _probe_gallery(data)
    distance = metrics.pairwise_distance(data.embeddings[probes], data.embeddings[gallery], metric)
    ranking = metrics.rank_metrics(distance, data.subjects[probes], data.subjects[gallery], max_rank=max_rank)
    if ranking.valid_probes == 0:
        raise DataFormatError("no probe has a true match in the gallery")
    summary = {
        "rank1": _percent(ranking.cmc[0]),
        "rank5": _percent(ranking.cmc[min(4, max_rank - 1)]),
        "rank10": _percent(ranking.cmc[min(9, max_rank - 1)]),
        "mAP": _percent(ranking.mAP),
        "mINP": _percent(ranking.mINP),
        "probes": int(probes.size),
        "valid_probes": ranking.valid_probes,
        "gallery": int(gallery.size),
        "metric": metric,
    }
    return OpenSetResult(summary=summary, ranking=ranking)


@dataclass
class VerificationResult:
    summary: dict
    roc: metrics.RocCurve
    identification: metrics.OpenSetIdentification | None


def _pairs(data: EmbeddingSet, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(similarity [Np, Ng], probe labels, gallery labels) for verification.

    With ``is_probe``: probe x gallery pairs, as in open-set. Without: every unordered pair once.
    """
    if data.is_probe is not None:
        probes, gallery = _probe_gallery(data)
        similarity = -metrics.pairwise_distance(data.embeddings[probes], data.embeddings[gallery], metric)
        return similarity, data.subjects[probes], data.subjects[gallery]
    similarity = -metrics.pairwise_distance(data.embeddings, data.embeddings, metric)
    return similarity, data.subjects, data.subjects


def verification(
    data: EmbeddingSet, metric: str = "euc", fars: Sequence[float] = metrics.DEFAULT_FARS
) -> VerificationResult:
    """1:1 verification: TAR at FAR, EER; plus 1:N FNIR at FPIR when probes and gallery are given."""
    similarity, probe_labels, gallery_labels = _pairs(data, metric)
    if data.is_probe is None:  # all pairs: keep each unordered pair once, never a sequence with itself
        upper = np.triu(np.ones(similarity.shape, dtype=bool), k=1)
        same = probe_labels[:, None] == gallery_labels[None, :]
        genuine, impostor = similarity[upper & same], similarity[upper & ~same]
    else:
        genuine, impostor = metrics.pair_scores(similarity, probe_labels, gallery_labels)
    roc = metrics.roc_curve(genuine, impostor)
    tar = metrics.tar_at_far(roc, tuple(fars))
    summary: dict = {
        "tar_at_far": {_far_key(far): _percent(value) for far, value in tar.items()},
        "eer": _percent(metrics.equal_error_rate(roc)),
        "genuine_pairs": roc.genuine,
        "impostor_pairs": roc.impostor,
        "far_resolution": metrics.far_resolution(roc),
        "metric": metric,
    }
    identification = None
    if data.is_probe is not None:
        try:
            identification = metrics.open_set_identification(similarity, probe_labels, gallery_labels)
        except GaderError:
            identification = None
        if identification is not None:
            summary["fnir_at_fpir"] = {
                _far_key(fpir): _percent(value)
                for fpir, value in metrics.fnir_at_fpir(identification, tuple(fars)).items()
            }
    return VerificationResult(summary=summary, roc=roc, identification=identification)


def distance_buckets(data: EmbeddingSet, field_name: str, metric: str = "euc") -> dict[str, dict]:
    """BRIAR-style breakdown: probes grouped by a metadata field (e.g. distance), each group searched
    against the whole gallery. Returns {bucket: open-set summary + TAR@FAR + its probe count}; a bucket that
    cannot be scored (no probe of it has a match in the gallery) says why under ``error``, and the other
    buckets are still reported."""
    if field_name not in data.groups:
        raise DataFormatError(f"no per-sequence field {field_name!r} (have: {', '.join(data.groups) or 'none'})")
    probes, _gallery = _probe_gallery(data)
    values = data.groups[field_name]
    report = {}
    for bucket in sorted(set(values[probes])):
        keep = ~data.is_probe | (values == bucket)
        subset = EmbeddingSet(
            embeddings=data.embeddings[keep],
            subjects=data.subjects[keep],
            is_probe=data.is_probe[keep],
        )
        probe_count = int((data.is_probe & (values == bucket)).sum())
        try:
            summary = {"probes": probe_count, **open_set(subset, metric).summary}
        except GaderError as exc:  # e.g. only people who are not enrolled
            report[str(bucket)] = {"probes": probe_count, "error": str(exc)}
            continue
        try:
            summary["tar_at_far"] = verification(subset, metric).summary["tar_at_far"]
        except GaderError:
            summary["tar_at_far"] = None  # a bucket whose probes all share one subject has no impostors
        report[str(bucket)] = summary
    return report


def evaluate(
    data: EmbeddingSet, protocol: str, metric: str = "euc"
) -> CasiaResult | OpenSetResult | VerificationResult:
    """Dispatch by protocol name (one of ``PROTOCOLS``)."""
    if protocol == "casia-b":
        return casia_b(data, metric)
    if protocol == "open-set":
        return open_set(data, metric)
    if protocol == "verification":
        return verification(data, metric)
    raise GaderError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
