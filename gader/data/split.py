"""Subject-disjoint splits: no identity ever appears on both sides."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from gader.data.dataset import SequenceDataset
from gader.errors import GaderError


def split_subjects(
    subjects: Iterable[str],
    *,
    val_fraction: float | None = 0.2,
    val_count: int | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Deterministically split subject ids into (train, validation), both sorted.

    ``val_count`` wins over ``val_fraction``. The permutation depends only on the sorted set of ids
    and the seed, so the same call gives the same split on every machine.
    """
    unique = sorted(set(map(str, subjects)))
    if val_count is None:
        if val_fraction is None or not 0.0 <= val_fraction <= 1.0:
            raise GaderError(f"val_fraction must be in [0, 1], got {val_fraction}")
        val_count = round(len(unique) * val_fraction)
    if not 0 <= val_count <= len(unique):
        raise GaderError(f"cannot hold out {val_count} of {len(unique)} subjects")
    order = np.random.default_rng(seed).permutation(len(unique))
    val = sorted(unique[i] for i in order[:val_count])
    train = sorted(unique[i] for i in order[val_count:])
    return train, val


def split_dataset(
    dataset: SequenceDataset, *, val_fraction: float | None = 0.2, val_count: int | None = None, seed: int = 0
) -> tuple[SequenceDataset, SequenceDataset]:
    """(train, validation) views of a dataset, split by subject."""
    train, val = split_subjects(dataset.subjects, val_fraction=val_fraction, val_count=val_count, seed=seed)
    return dataset.subset(subjects=train), dataset.subset(subjects=val)
