"""The Double Helical Signature (DHS): the knee-height row of every aligned silhouette, stacked over time.

Walking gives a periodic braid (the two knees crossing), standing a straight band, and a partial body (the
knee row no longer cuts the knees) a thick band of another shape. GADER's gait detector classifies windows
of it. Silhouettes are height-normalised, so the knee sits at about a quarter of the height from the bottom.
"""

from __future__ import annotations

import numpy as np

from gader.errors import DataFormatError

KNEE_FRACTION = 0.25  # knee height above the sole, as a fraction of the aligned height


def knee_row(height: int, knee_fraction: float = KNEE_FRACTION) -> int:
    """Index of the knee row in an aligned frame of ``height`` rows (row 0 is the top)."""
    if not 0.0 < knee_fraction < 1.0:
        raise DataFormatError(f"knee_fraction must be in (0, 1), got {knee_fraction}")
    return min(max(round((1.0 - knee_fraction) * height), 0), height - 1)


def double_helical_signature(
    silhouettes: np.ndarray, knee_fraction: float = KNEE_FRACTION, band: int = 1
) -> np.ndarray:
    """Aligned silhouettes [T, H, W] (uint8 0..255 or bool) -> DHS float32 [W, T] in [0, 1].

    ``band`` > 1 averages that many rows centred on the knee row (less sensitive to segmentation noise).
    """
    return signature_rows(silhouettes, (knee_fraction,), band)[0]


def signature_rows(silhouettes: np.ndarray, fractions: tuple[float, ...], band: int = 1) -> np.ndarray:
    """Aligned silhouettes [T, H, W] -> one DHS per height float32 [R, W, T] in [0, 1], row r at
    ``fractions[r]`` of the height above the sole (each a band of ``band`` rows, as
    ``double_helical_signature``). One gather for all heights: the detector reads eight of them per sequence,
    and reading them one by one cost more than its network's first layer."""
    silhouettes = np.asarray(silhouettes)
    if silhouettes.ndim != 3:
        raise DataFormatError(f"silhouettes must be [T, H, W], got shape {silhouettes.shape}")
    if band < 1:
        raise DataFormatError(f"band must be at least 1 row, got {band}")
    height = silhouettes.shape[1]
    firsts = [min(max(knee_row(height, f) - (band - 1) // 2, 0), height - band) for f in fractions]
    indices = (np.asarray(firsts)[:, None] + np.arange(band)).ravel()  # [R * band]
    rows = silhouettes[:, indices, :].astype(np.float32)  # [T, R * band, W]
    rows = rows.reshape(rows.shape[0], len(fractions), band, rows.shape[2]).mean(axis=2)  # [T, R, W]
    scale = 1.0 if silhouettes.dtype == bool or silhouettes.max(initial=0) <= 1 else 255.0
    return np.ascontiguousarray((rows / scale).transpose(1, 2, 0))  # [R, W, T]
