"""The packed CASIA-B files: one ``NNN.npz`` per subject, one bit-packed array per sequence.

Keys are ``<condition>_<view>`` (``nm-01_090``), values ``np.packbits(frame > 127, axis=-1)``, uint8
``[T, 64, 8]``. Listing reads only the zip directory and each array's header (for T), so opening all 74
training subjects takes milliseconds and loading one sequence reads one zip member.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gader.data.dataset import SequenceDataset, SequenceInfo
from gader.data.npz import NpzArchive
from gader.data.record import ALIGNED_HEIGHT, SequenceRecord
from gader.errors import DataFormatError, DatasetLayoutError

KEY_PATTERN = re.compile(r"^(?P<condition>[A-Za-z]+-\d+)_(?P<view>\d{3})$")


def is_packed_casia(root: Path) -> bool:
    files = sorted(root.glob("*.npz")) if root.is_dir() else []
    if not files:
        return False
    with NpzArchive(files[0]) as archive:
        return any(KEY_PATTERN.match(key) for key in archive)


class PackedCasiaDataset(SequenceDataset):
    layout = "casia-packed"

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        files = sorted(root.glob("*.npz"))
        if not files:
            raise DatasetLayoutError(f"{root}: no <subject>.npz files")
        infos: list[SequenceInfo] = []
        for path in files:
            with NpzArchive(path) as archive:
                for key in sorted(archive):
                    match = KEY_PATTERN.match(key)
                    if match is None:
                        raise DataFormatError(f"{path}: key {key!r} is not <condition>_<view>")
                    shape, _dtype = archive.header(key)
                    infos.append(
                        SequenceInfo(
                            subject=path.stem,
                            condition=match["condition"],
                            view=match["view"],
                            frames=int(shape[0]) if shape else 0,
                            location=f"{path.name}:{key}",
                        )
                    )
        super().__init__(root, infos)

    def _read(self, info: SequenceInfo) -> SequenceRecord:
        file_name, key = info.location.split(":", 1)
        path = self.root / file_name
        with NpzArchive(path) as archive:
            packed = archive[key]
        if packed.dtype != np.uint8 or packed.ndim != 3 or packed.shape[1] != ALIGNED_HEIGHT:
            raise DataFormatError(f"{path}:{key}: expected packed uint8 [T, 64, 8], got {packed.shape}")
        bits = np.unpackbits(packed, axis=-1)  # [T, 64, 64] of 0/1
        return SequenceRecord(
            subject=info.subject,
            condition=info.condition,
            view=info.view,
            silhouettes=bits * np.uint8(255),
            source=f"{path}:{key}",
        )
