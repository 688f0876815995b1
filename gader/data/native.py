"""The project's own dataset format (spec: ``docs/data-format.md``).

::

    DATASET/
      gader-dataset.json                      header: format, version, counts, description
      index.jsonl                             one line per sequence (what SequenceInfo holds)
      sequences/<subject>/<condition>/<view>.npz

Each sequence file is a compressed ``.npz`` of plain arrays plus a JSON ``meta`` string, so it is
self-describing, loads without pickle and can be read alone (it is also the upload format of the
service). One writer (``DatasetWriter``), one reader (``NativeDataset`` / ``read_sequence``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from gader import __version__
from gader.data.dataset import SequenceDataset, SequenceInfo
from gader.data.npz import NpzArchive, Source, json_scalar, read_json_scalar, save_npz
from gader.data.record import FrameLabels, SequenceRecord
from gader.errors import DataFormatError, DatasetLayoutError

FORMAT_NAME = "gader-dataset"
SEQUENCE_FORMAT_NAME = "gader-sequence"
FORMAT_VERSION = 1
HEADER_FILE = "gader-dataset.json"
INDEX_FILE = "index.jsonl"
SEQUENCES_DIR = "sequences"
FRAME_ARRAY_PREFIX = "frame__"
# Names become path components: keep them portable and free of traversal.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # matched whole: "$" would let a final "\n" in


def check_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise DataFormatError(
            f"{kind} {value!r} cannot be stored: use 1-64 characters from A-Z a-z 0-9 . _ - "
            "(starting with a letter or digit)"
        )
    return value


def sequence_arrays(record: SequenceRecord) -> dict[str, np.ndarray]:
    """The arrays of one sequence file, in the on-disk naming."""
    arrays: dict[str, np.ndarray] = {"silhouettes": record.silhouettes}
    if record.ratios is not None:
        arrays["ratios"] = record.ratios.astype(np.float32)
    if record.rgb is not None:
        arrays["rgb"] = record.rgb
    if record.labels is not None:
        arrays["labels_gait"] = record.labels.gait
        arrays["labels_full_body"] = record.labels.full_body
    for name, array in record.frame_arrays.items():
        arrays[FRAME_ARRAY_PREFIX + name] = np.asarray(array)
    meta = {
        "format": SEQUENCE_FORMAT_NAME,
        "version": FORMAT_VERSION,
        "subject": record.subject,
        "condition": record.condition,
        "view": record.view,
        "meta": record.meta,
    }
    arrays["meta"] = json_scalar(json.dumps(meta, sort_keys=True))
    return arrays


def write_sequence(record: SequenceRecord, target: str | Path | IO[bytes]) -> None:
    """Write one sequence file (atomically when ``target`` is a path)."""
    arrays = sequence_arrays(record)
    if not isinstance(target, str | Path):
        save_npz(target, arrays)
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            save_npz(handle, arrays)
        _as_a_new_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_sequence(source: Source, *, label: str | None = None, **defaults: str) -> SequenceRecord:
    """Read one sequence file. ``defaults`` fill subject/condition/view when ``meta`` is absent.

    Files without ``meta`` (a client's minimal upload: just ``silhouettes`` and maybe ``ratios``/``rgb``)
    are accepted; everything is validated by ``SequenceRecord``.
    """
    with NpzArchive(source, label=label) as archive:
        meta: dict[str, Any] = {}
        if "meta" in archive:
            meta = read_json_scalar(archive["meta"], f"{archive.label}: meta")
            if not isinstance(meta, dict):
                raise DataFormatError(f"{archive.label}: meta must be a JSON object")
            if not isinstance(meta.get("meta", {}), dict):
                raise DataFormatError(f"{archive.label}: meta's 'meta' entry must be a JSON object")
        if "silhouettes" not in archive:
            raise DataFormatError(f"{archive.label}: missing array 'silhouettes'")
        labels = None
        if "labels_gait" in archive or "labels_full_body" in archive:
            labels = FrameLabels(gait=archive["labels_gait"], full_body=archive["labels_full_body"])
        frame_arrays = {
            key[len(FRAME_ARRAY_PREFIX) :]: archive[key] for key in archive if key.startswith(FRAME_ARRAY_PREFIX)
        }
        return SequenceRecord(
            subject=str(meta.get("subject", defaults.get("subject", "unknown"))),
            condition=str(meta.get("condition", defaults.get("condition", "unknown"))),
            view=str(meta.get("view", defaults.get("view", "unknown"))),
            silhouettes=archive["silhouettes"],
            ratios=archive.get("ratios"),
            rgb=archive.get("rgb"),
            labels=labels,
            source=archive.label,
            meta=dict(meta.get("meta", {})),
            frame_arrays=frame_arrays,
        )


def _info_to_json(info: SequenceInfo) -> dict[str, Any]:
    return {
        "subject": info.subject,
        "condition": info.condition,
        "view": info.view,
        "frames": info.frames,
        "file": info.location,
        "ratios": info.has_ratios,
        "rgb": info.has_rgb,
        "labels": info.has_labels,
        "meta": info.meta,
    }


def _info_from_json(line: dict[str, Any]) -> SequenceInfo:
    return SequenceInfo(
        subject=line["subject"],
        condition=line["condition"],
        view=line["view"],
        frames=line["frames"],
        location=line["file"],
        has_ratios=line["ratios"],
        has_rgb=line["rgb"],
        has_labels=line["labels"],
        meta=line.get("meta", {}),
    )


def _read_umask() -> int:
    umask = os.umask(0)  # reading it means setting it: done once, at import, before any thread writes files
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _as_a_new_file(path: str) -> None:
    """Give a temporary file the permissions of a file created the usual way (0666 less the umask): mkstemp
    makes it 0600, which would leave datasets unreadable to other users, such as the service's container user."""
    os.chmod(path, 0o666 & ~_UMASK)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    _as_a_new_file(tmp)
    os.replace(tmp, path)


def is_native(root: Path) -> bool:
    return (root / HEADER_FILE).is_file()


def _read_header(root: Path) -> dict[str, Any]:
    try:
        header = json.loads((root / HEADER_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetLayoutError(f"{root / HEADER_FILE}: unreadable ({exc})") from None
    if header.get("format") != FORMAT_NAME:
        raise DatasetLayoutError(f"{root}: {HEADER_FILE} is not a {FORMAT_NAME} header")
    if header.get("version", 0) > FORMAT_VERSION:
        raise DatasetLayoutError(
            f"{root}: format version {header['version']} is newer than this gader ({FORMAT_VERSION})"
        )
    return header


def _read_index(root: Path) -> list[SequenceInfo]:
    path = root / INDEX_FILE
    if not path.is_file():
        return []
    infos = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    infos.append(_info_from_json(json.loads(line)))
                except (json.JSONDecodeError, KeyError) as exc:
                    raise DatasetLayoutError(f"{path}:{number}: bad index line ({exc})") from None
    return infos


class DatasetWriter:
    """The only writer of the format. Adds sequences to a new or existing dataset.

    Sequence files are written atomically as they come; the index and header are rewritten on
    ``close()`` (also on an exception, so that whatever was written is listed). ``overwrite`` lets a
    sequence key be replaced (regenerating a subset); otherwise a repeated key is an error.
    """

    def __init__(self, root: str | Path, *, description: str = "", overwrite: bool = False) -> None:
        self.root = Path(root)
        self.overwrite = overwrite
        self.description = description
        if self.root.exists() and not is_native(self.root) and any(self.root.iterdir()):
            raise DatasetLayoutError(f"{self.root}: exists and is not an empty directory or a gader dataset")
        self.root.mkdir(parents=True, exist_ok=True)
        self.header: dict[str, Any] = _read_header(self.root) if is_native(self.root) else {}
        self._infos = {info.key: info for info in _read_index(self.root)}
        self._written_now: set[str] = set()

    def write(self, record: SequenceRecord) -> SequenceInfo:
        for kind, value in (
            ("subject", record.subject),
            ("condition", record.condition),
            ("view", record.view),
        ):
            check_name(kind, value)
        if record.key in self._written_now or (record.key in self._infos and not self.overwrite):
            raise DataFormatError(f"sequence {record.key} is already in {self.root}")
        location = f"{SEQUENCES_DIR}/{record.subject}/{record.condition}/{record.view}.npz"
        write_sequence(record, self.root / location)
        info = SequenceInfo(
            subject=record.subject,
            condition=record.condition,
            view=record.view,
            frames=record.frames,
            location=location,
            has_ratios=record.ratios is not None,
            has_rgb=record.rgb is not None,
            has_labels=record.labels is not None,
            meta=record.meta,
        )
        self._infos[record.key] = info
        self._written_now.add(record.key)
        return info

    def close(self) -> None:
        infos = sorted(self._infos.values(), key=lambda info: (info.subject, info.condition, info.view))
        _atomic_write_text(
            self.root / INDEX_FILE,
            "".join(json.dumps(_info_to_json(info), sort_keys=True) + "\n" for info in infos),
        )
        header = {
            **self.header,
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "sequences": len(infos),
            "subjects": len({info.subject for info in infos}),
            "writer": f"gader {__version__}",
        }
        if self.description:
            header["description"] = self.description
        # Header last: a dataset is listed as complete only after its index is in place.
        _atomic_write_text(self.root / HEADER_FILE, json.dumps(header, indent=2, sort_keys=True) + "\n")

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class NativeDataset(SequenceDataset):
    layout = "gader"

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        self.header = _read_header(root)
        super().__init__(root, _read_index(root))

    def _read(self, info: SequenceInfo) -> SequenceRecord:
        record = read_sequence(self.root / info.location)
        if (record.subject, record.condition, record.view) != (info.subject, info.condition, info.view):
            raise DataFormatError(f"{record.source}: holds {record.key}, the index says {info.key}")
        return record
