"""Safe ``.npz`` access: never unpickles, reads array headers without the data, names the problem.

Used for the project's own files and, later, for files clients upload; both go through here so that the
rules (no object arrays, clear errors on corrupt archives) are written once.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from gader.errors import DataFormatError, MissingArrayError

Source = str | Path | bytes | IO[bytes]

# What reading one member of a zip can raise on a damaged or unusual archive: a bad CRC (BadZipFile), a broken
# deflate stream (zlib.error), a truncated one (EOFError), an encrypted member (RuntimeError), an unsupported
# compression method (NotImplementedError). All are the file's fault, never the reader's.
MEMBER_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError)


def _open_zip(source: Source, label: str) -> zipfile.ZipFile:
    try:
        if isinstance(source, bytes):
            return zipfile.ZipFile(io.BytesIO(source))
        return zipfile.ZipFile(source)
    except FileNotFoundError:
        raise DataFormatError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise DataFormatError(f"{label}: is a directory, not an .npz file") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataFormatError(f"{label}: not a valid .npz archive ({exc})") from None


class NpzArchive(Mapping[str, np.ndarray]):
    """Lazy, pickle-free view of an ``.npz``: keys without ``.npy``; arrays read on access."""

    def __init__(self, source: Source, *, label: str | None = None) -> None:
        self.label = label or (str(source) if isinstance(source, str | Path) else "upload")
        self._zip = _open_zip(source, self.label)
        self._members = {name[: -len(".npy")]: name for name in self._zip.namelist() if name.endswith(".npy")}

    def __getitem__(self, key: str) -> np.ndarray:
        member = self._members.get(key)
        if member is None:
            raise MissingArrayError(f"{self.label}: missing array {key!r} (has: {', '.join(self) or 'none'})")
        shape, dtype, offset = self._header(key)
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        held = self._zip.getinfo(member).file_size - offset  # the bytes after the .npy header
        if not dtype.hasobject and declared > held:  # read_array would allocate it before finding the data short
            raise DataFormatError(
                f"{self.label}: array {key!r} declares {declared:,} bytes of data ({shape}) but holds {held:,}"
            )
        try:
            with self._zip.open(member) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise DataFormatError(f"{self.label}: array {key!r} holds Python objects (pickle); refused") from None
            raise DataFormatError(f"{self.label}: array {key!r} is corrupt ({exc})") from None
        except MEMBER_READ_ERRORS as exc:
            raise DataFormatError(f"{self.label}: array {key!r} is corrupt ({exc})") from None

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of one array, read from its .npy header without reading the data."""
        shape, dtype, _offset = self._header(key)
        return shape, dtype

    def _header(self, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
        """(shape, dtype, where the data starts in the member) from one array's .npy header."""
        member = self._members.get(key)
        if member is None:
            raise MissingArrayError(f"{self.label}: missing array {key!r}")
        try:
            with self._zip.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                reader = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, dtype = reader(handle)
                offset = handle.tell()
        except (ValueError, *MEMBER_READ_ERRORS) as exc:
            raise DataFormatError(f"{self.label}: array {key!r} has a corrupt header ({exc})") from None
        return tuple(shape), dtype, offset

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# zip's earliest date: archives carry no clock, so equal data gives equal bytes.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def save_npz(target: str | Path | IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write an ``.npz`` that ``numpy.load`` reads, byte-identical for identical arrays.

    ``numpy.savez_compressed`` stamps each member with the current time; this writer does not, so a
    deterministic generator gives byte-identical files. Object arrays are refused (they would need pickle).
    """
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            value = np.asanyarray(value)
            if value.dtype.hasobject:
                raise DataFormatError(f"array {name!r} holds Python objects; gader files never use pickle")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


def json_scalar(text: str) -> np.ndarray:
    """A JSON document stored as a 0-d unicode array (loads without pickle)."""
    return np.array(text, dtype=np.str_)


def read_json_scalar(array: np.ndarray, what: str) -> Any:
    if array.dtype.kind != "U" or array.ndim != 0:
        raise DataFormatError(f"{what} must be a 0-d string array holding JSON")
    try:
        return json.loads(str(array))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{what} is not valid JSON ({exc})") from None
