"""Sequence records, dataset readers (OpenGait .pkl, packed CASIA-B, gader's own format), splits."""

from __future__ import annotations

from pathlib import Path

from gader.data.casia_packed import PackedCasiaDataset, is_packed_casia
from gader.data.dataset import SequenceDataset, SequenceInfo, dataset_stats
from gader.data.native import DatasetWriter, NativeDataset, is_native, read_sequence, write_sequence
from gader.data.opengait import OpenGaitDataset, is_opengait
from gader.data.record import DETECTOR_CLASSES, FrameLabels, SequenceRecord, cut_sides
from gader.data.split import split_dataset, split_subjects
from gader.errors import DatasetLayoutError

__all__ = [
    "DETECTOR_CLASSES",
    "DatasetWriter",
    "FrameLabels",
    "NativeDataset",
    "OpenGaitDataset",
    "PackedCasiaDataset",
    "SequenceDataset",
    "SequenceInfo",
    "SequenceRecord",
    "cut_sides",
    "dataset_stats",
    "open_dataset",
    "read_sequence",
    "split_dataset",
    "split_subjects",
    "write_sequence",
]


def open_dataset(path: str | Path) -> SequenceDataset:
    """Open any supported layout, detected from what is on disk (nothing is loaded yet)."""
    root = Path(path)
    if not root.exists():
        raise DatasetLayoutError(f"{root}: no such directory")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: is a file; a dataset is a directory")
    if is_native(root):
        return NativeDataset(root)
    if is_packed_casia(root):
        return PackedCasiaDataset(root)
    if is_opengait(root):
        return OpenGaitDataset(root)
    raise DatasetLayoutError(
        f"{root}: not a dataset gader can read (expected a gader dataset with {'gader-dataset.json'}, "
        "packed CASIA-B <subject>.npz files, or OpenGait <subject>/<condition>/<view>/*.pkl)"
    )
