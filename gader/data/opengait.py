"""OpenGait's own layout: ``<root>/<subject>/<condition>/<view>/*.pkl``.

Each ``.pkl`` is a pickled uint8 array ``[T, 64, 64]`` written by OpenGait's ``pretreatment.py``. Pickle
can run code, so this reader is for trusted local files only; nothing a client uploads ever reaches it.
Where a view folder holds several ``.pkl`` files (several modalities), the first in name order is taken as
the silhouettes, as OpenGait does with ``data_in_use`` left at its default.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from gader.data.dataset import SequenceDataset, SequenceInfo
from gader.data.record import SequenceRecord, to_uint8_range
from gader.errors import DataFormatError, DatasetLayoutError


def _sequence_dirs(root: Path) -> list[Path]:
    """View folders at depth 3 that hold at least one .pkl."""
    return sorted(view_dir for view_dir in root.glob("*/*/*") if view_dir.is_dir() and any(view_dir.glob("*.pkl")))


def is_opengait(root: Path) -> bool:
    return root.is_dir() and any(root.glob("*/*/*/*.pkl"))


class OpenGaitDataset(SequenceDataset):
    layout = "opengait-pkl"

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        dirs = _sequence_dirs(root)
        if not dirs:
            raise DatasetLayoutError(f"{root}: no <subject>/<condition>/<view>/*.pkl files")
        infos = [
            SequenceInfo(
                subject=view_dir.parent.parent.name,
                condition=view_dir.parent.name,
                view=view_dir.name,
                frames=None,  # only the pickle knows
                location=str(sorted(view_dir.glob("*.pkl"))[0].relative_to(root)),
            )
            for view_dir in dirs
        ]
        super().__init__(root, infos)

    def _read(self, info: SequenceInfo) -> SequenceRecord:
        path = self.root / info.location
        try:
            with path.open("rb") as handle:
                frames = pickle.load(handle)  # trusted local dataset files only (see module docstring)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise DataFormatError(f"{path}: not a readable OpenGait pickle ({exc})") from None
        frames = np.asarray(frames)
        if frames.ndim != 3:
            raise DataFormatError(f"{path}: expected frames [T, H, W], got shape {frames.shape}")
        return SequenceRecord(
            subject=info.subject,
            condition=info.condition,
            view=info.view,
            silhouettes=to_uint8_range(frames),
            source=str(path),
        )
