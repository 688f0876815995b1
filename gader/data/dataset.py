"""A dataset is a list of sequence descriptions plus a way to load one sequence on demand.

Listing never reads frames (only names, or array headers where frame counts are cheap), so opening a
dataset of any size is fast and memory stays flat; ``load`` reads exactly one sequence.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gader.data.record import SequenceRecord


@dataclass(frozen=True)
class SequenceInfo:
    """What is known about a sequence without reading its frames."""

    subject: str
    condition: str
    view: str
    frames: int | None  # None where the layout cannot tell without reading (OpenGait .pkl)
    location: str  # file (and member) the frames live in, relative to the dataset root
    has_ratios: bool = False
    has_rgb: bool = False
    has_labels: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.condition}/{self.view}"


class SequenceDataset(ABC):
    """Base of every reader: a root, an ordered list of ``SequenceInfo`` and lazy loading."""

    layout: str = "abstract"

    def __init__(self, root: Path, infos: list[SequenceInfo]) -> None:
        self.root = root
        self._infos = infos
        self._by_key: dict[str, SequenceInfo] | None = None  # built on the first lookup by key

    @abstractmethod
    def _read(self, info: SequenceInfo) -> SequenceRecord:
        """Read one sequence's frames from disk."""

    @property
    def infos(self) -> list[SequenceInfo]:
        return list(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[SequenceRecord]:
        for info in self._infos:
            yield self._read(info)

    def load(self, which: SequenceInfo | str | int) -> SequenceRecord:
        """One sequence, by info, by key ``subject/condition/view`` or by position."""
        if isinstance(which, int):
            return self._read(self._infos[which])
        if isinstance(which, str):
            if self._by_key is None:
                self._by_key = {info.key: info for info in self._infos}
            if which not in self._by_key:
                raise KeyError(f"no sequence {which!r} in {self.root}")
            return self._read(self._by_key[which])
        return self._read(which)

    @property
    def subjects(self) -> list[str]:
        return sorted({info.subject for info in self._infos})

    def subset(
        self,
        subjects: Iterable[str] | None = None,
        conditions: Iterable[str] | None = None,
        views: Iterable[str] | None = None,
        where: Callable[[SequenceInfo], bool] | None = None,
    ) -> SequenceDataset:
        """A view of this dataset restricted to some subjects / conditions / views (no data is read)."""
        keep_subjects = None if subjects is None else set(map(str, subjects))
        keep_conditions = None if conditions is None else set(map(str, conditions))
        keep_views = None if views is None else set(map(str, views))
        view = copy.copy(self)
        view._by_key = None
        view._infos = [
            info
            for info in self._infos
            if (keep_subjects is None or info.subject in keep_subjects)
            and (keep_conditions is None or info.condition in keep_conditions)
            and (keep_views is None or info.view in keep_views)
            and (where is None or where(info))
        ]
        return view

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, sequences={len(self)})"


def frame_counts(dataset: SequenceDataset, progress: bool = False) -> np.ndarray:
    """int64 [N] frames per sequence; reads sequences only where the layout has no cheap count."""
    counts = np.empty(len(dataset), dtype=np.int64)
    missing = [i for i, info in enumerate(dataset._infos) if info.frames is None]
    for i, info in enumerate(dataset._infos):
        if info.frames is not None:
            counts[i] = info.frames
    if missing:
        from gader.progress import progress as progress_bar

        for i in progress_bar(missing, enabled=progress, desc="reading sequences", unit="seq", leave=False):
            counts[i] = dataset.load(dataset._infos[i]).frames
    return counts


def dataset_stats(dataset: SequenceDataset, progress: bool = False) -> dict[str, Any]:
    """The summary ``gader data stats`` prints."""
    infos = dataset.infos
    counts = frame_counts(dataset, progress=progress)
    per_sequence = (
        {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}
        if len(counts)
        else {"min": 0, "median": 0.0, "max": 0}
    )
    return {
        "path": str(dataset.root),
        "layout": dataset.layout,
        "subjects": len({info.subject for info in infos}),
        "sequences": len(infos),
        "frames": int(counts.sum()),
        "frames_per_sequence": per_sequence,
        "conditions": dict(sorted(Counter(info.condition for info in infos).items())),
        "views": dict(sorted(Counter(info.view for info in infos).items())),
        "with_ratios": sum(info.has_ratios for info in infos),
        "with_rgb": sum(info.has_rgb for info in infos),
        "with_labels": sum(info.has_labels for info in infos),
    }
