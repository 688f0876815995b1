"""Sequences as users hand them over: videos, ``.npz`` arrays or a ``.zip`` of PNG masks.

Accepted (the service's upload format, and what ``gader detect FILE`` reads):

- videos (``.mp4 .m4v .mov .avi .webm .mkv``): decoded, segmented and tracked (``gader.video``); the main
  person's track by default, another with ``track_id``; the record's ``meta["source"]`` lists the tracks;
- ``.npz`` with ``silhouettes`` uint8/bool ``[T, H, W]``: either aligned (64x44 or 64x64, OpenGait's
  geometry) or full-frame person masks, which are pretreated here (ratios recorded from the boxes);
  optional ``ratios`` float ``[T]`` (aligned input only), optional ``rgb`` uint8 ``[T, H, W, 3]``;
  optional gader metadata (a file written by ``gader`` keeps its labels and meta);
- ``.zip`` of PNG masks in file-name order (full frames or aligned).

Never unpickles: arrays are read with ``allow_pickle=False`` (``gader.data.npz``); every problem is a
``DataFormatError`` that names it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gader.data.native import read_sequence
from gader.data.npz import MEMBER_READ_ERRORS, NpzArchive
from gader.data.record import ALIGNED_HEIGHT, ALIGNED_WIDTHS, SequenceRecord, to_uint8_range
from gader.errors import DataFormatError
from gader.silhouettes import pretreat
from gader.video import VIDEO_EXTENSIONS, VideoLimits, looks_like_video, read_video

ARCHIVE_EXTENSIONS = (".npz", ".zip")


@dataclass(frozen=True)
class InputLimits:
    max_frames: int = 2000
    max_frame_pixels: int = 1920 * 1080
    min_frames: int = 1
    # Pixels of all frames of one upload, decoded (one byte each): what a zip of small PNGs or a compressed
    # .npz may unpack to. The same 1 GiB as a video's decoded frames (gader.video.VideoLimits).
    max_total_pixels: int = 1 << 30
    # Sides of a full-frame mask differ by at most this much (as a video's frames): a band one row high in a
    # frame a million pixels wide resizes to 66 million columns (8 GB for one frame, a 2 kB upload).
    max_aspect: float = 8.0
    video_seconds: float = 120.0
    video_fps: float | None = None  # sub-sample videos to this rate (None: every frame)
    segmenter: str = "selfie"

    def video_limits(self) -> VideoLimits:
        # A video's frames are bounded by its duration and the memory budget; the person's track, once
        # extracted, by max_frames like any sequence.
        return VideoLimits(max_pixels=self.max_frame_pixels, max_seconds=self.video_seconds, target_fps=self.video_fps)


def _check_total_pixels(total: int, limits: InputLimits, label: str) -> None:
    if total > limits.max_total_pixels:
        raise DataFormatError(
            f"{label}: its frames hold {total:,} pixels in all, over the {limits.max_total_pixels:,} one upload may "
            "decode to (send fewer or smaller frames)"
        )


def _check_frame_shape(width: int, height: int, limits: InputLimits, label: str) -> None:
    if max(width, height) > limits.max_aspect * max(1, min(width, height)):
        raise DataFormatError(
            f"{label}: frames of {width}x{height} are not a camera's shape (sides more than {limits.max_aspect:g} to 1)"
        )


def _check_arrays(arrays: NpzArchive, limits: InputLimits, label: str) -> None:
    """Every array of an upload, from its header alone: all of them together within the bytes one upload may
    decode to (``max_total_pixels``, one byte a mask pixel). Read first, a 558-byte file
    declaring an RGB array of terabytes made numpy try to allocate them."""
    total = 0
    for name in arrays:
        shape, dtype = arrays.header(name)  # an object array is refused when read (NpzArchive: no pickle)
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if total > limits.max_total_pixels:
        raise DataFormatError(
            f"{label}: its arrays hold {total:,} bytes in all, over the {limits.max_total_pixels:,} one upload may "
            "decode to (send fewer or smaller frames, or RGB crops instead of full frames)"
        )


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def _is_aligned(silhouettes: np.ndarray) -> bool:
    return silhouettes.shape[1] == ALIGNED_HEIGHT and silhouettes.shape[2] in ALIGNED_WIDTHS


def record_from_arrays(
    silhouettes: np.ndarray,
    ratios: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
    limits: InputLimits = InputLimits(),
    source: str = "upload",
) -> SequenceRecord:
    """Validate arrays and make a record; full-frame masks are pretreated (ratios from their boxes)."""
    silhouettes = np.asarray(silhouettes)
    if silhouettes.dtype == object:
        raise DataFormatError("silhouettes must be a numeric array")
    if silhouettes.ndim != 3:
        raise DataFormatError(f"silhouettes must be [T, H, W], got shape {silhouettes.shape}")
    frames = silhouettes.shape[0]
    if frames < limits.min_frames:
        raise DataFormatError(f"the sequence has {_frames(frames)}; at least {limits.min_frames} are needed")
    if frames > limits.max_frames:
        raise DataFormatError(f"the sequence has {_frames(frames)}; at most {limits.max_frames} are accepted")
    if silhouettes.shape[1] * silhouettes.shape[2] > limits.max_frame_pixels:
        raise DataFormatError(
            f"frames of {silhouettes.shape[2]}x{silhouettes.shape[1]} exceed {limits.max_frame_pixels:,} pixels"
        )
    _check_frame_shape(silhouettes.shape[2], silhouettes.shape[1], limits, source)
    if silhouettes.dtype not in (np.uint8, np.bool_):
        raise DataFormatError(f"silhouettes must be uint8 (0/1 or 0..255) or bool, got {silhouettes.dtype}")
    silhouettes = to_uint8_range(silhouettes)
    brightest = int(silhouettes.max(initial=0))
    if 1 < brightest < 128:  # 0/1 masks became 0/255 above; this is neither 0/1 nor 0/255
        raise DataFormatError(
            f"the masks' brightest value is {brightest}: a mask's foreground is 1 or 255 (a class-index map? set "
            "the person's pixels to 255)"
        )
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.shape != (*silhouettes.shape, 3):
            raise DataFormatError(
                f"rgb must be uint8 {(*silhouettes.shape, 3)} like the silhouettes, got {rgb.dtype} {rgb.shape}"
            )
    if _is_aligned(silhouettes):
        if ratios is not None:
            ratios = np.asarray(ratios)
            if ratios.shape != (frames,) or ratios.dtype.kind not in "fiu":
                raise DataFormatError(
                    f"ratios must be numbers with shape [{frames}], got {ratios.dtype} {ratios.shape}"
                )
        return SequenceRecord("probe", "upload", "unknown", silhouettes, ratios=ratios, rgb=rgb, source=source)
    if ratios is not None:
        raise DataFormatError("ratios come from the boxes of full-frame masks; send them only with aligned silhouettes")
    result = pretreat(silhouettes, rgb)
    if result.frames == 0:
        raise DataFormatError(f"no frame holds a person large enough to align ({len(result.rejected)} rejected)")
    return SequenceRecord(
        "probe",
        "upload",
        "unknown",
        result.silhouettes,
        ratios=result.ratios,
        rgb=result.rgb,
        source=source,
        frame_arrays={"frame_index": result.frame_index, "boxes": result.boxes},
        meta={"rejected_frames": len(result.rejected), "pretreated_here": True},
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's first 24 bytes (signature, then the IHDR chunk, which must come first), or
    None when they are not a PNG's."""
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_member(archive: zipfile.ZipFile, name: str, label: str, size: int = -1) -> bytes:
    """A member's bytes (its first ``size`` only, when given); a damaged member is the upload's fault."""
    try:
        with archive.open(name) as handle:
            return handle.read(size)
    except MEMBER_READ_ERRORS as exc:
        raise DataFormatError(f"{label}: {name} cannot be read from the archive ({exc})") from None


def _from_png_zip(archive: zipfile.ZipFile, limits: InputLimits, label: str) -> SequenceRecord:
    names = sorted(
        n
        for n in archive.namelist()
        if n.lower().endswith(".png")
        and not n.endswith("/")
        # macOS Finder adds resource forks (__MACOSX/..., ._name.png) to the zips it makes: not frames
        and not n.startswith("__MACOSX/")
        and not n.rsplit("/", 1)[-1].startswith("._")
    )
    if not names:
        raise DataFormatError(f"{label}: the zip holds no .png masks")
    if len(names) > limits.max_frames:
        raise DataFormatError(f"{label}: {len(names)} frames; at most {limits.max_frames} are accepted")
    sizes = []  # every PNG's (width, height), from its header: the whole upload is sized before decoding
    for name in names:
        info = archive.getinfo(name)
        if info.file_size > 4 * limits.max_frame_pixels + 1024:  # a PNG mask never needs more
            raise DataFormatError(f"{label}: {name} is too large ({info.file_size:,} bytes)")
        size = png_size(_read_member(archive, name, label, 24))
        if size is None:
            raise DataFormatError(f"{label}: {name} is not a readable PNG")
        if size[0] * size[1] > limits.max_frame_pixels:  # checked before decoding: a small PNG can hold a huge image
            raise DataFormatError(f"{label}: {name} is {size[0]}x{size[1]}, over {limits.max_frame_pixels:,} pixels")
        sizes.append(size)
    if len(set(sizes)) > 1:
        raise DataFormatError(f"{label}: the PNG masks differ in size")
    _check_frame_shape(*sizes[0], limits, label)
    _check_total_pixels(sum(width * height for width, height in sizes), limits, label)
    width, height = sizes[0]
    frames = np.empty((len(names), height, width), np.uint8)  # [T, H, W], filled in place: no second copy
    for index, name in enumerate(names):
        image = png_mask(_read_member(archive, name, label), f"{label}: {name}")
        if image.shape != (height, width):
            raise DataFormatError(f"{label}: {name} is not a readable PNG")
        frames[index] = image
    frames = to_uint8_range(frames, in_place=True)  # our own array: 0/1 masks scaled without a copy
    return record_from_arrays(frames, limits=limits, source=label)


def png_mask(data: bytes, label: str) -> np.ndarray:
    """A mask PNG -> uint8 [H, W] by what the PNG holds (its size already checked from its header):
    - a palette image (VOC-style label masks): every colour but black (or transparent) is the person (255);
      read as grey, VOC's dark-red person would come out at 38 of 255 and match nothing;
    - 1-bit: 255 where set; grey 8-bit: as it is (0/1 masks are scaled later, as for arrays);
    - 16-bit grey: as 8-bit values when they stay within 0..255 (0/1 or 0/255 saved wide), else scaled by 255/65535;
    - with an alpha channel that is fully transparent somewhere: the alpha is the mask; otherwise the colours as
      grey. What Pillow cannot read, OpenCV is asked to (as grey)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode == "P":
                return _palette_mask(image)
            if mode == "1":
                return np.asarray(image, np.uint8) * np.uint8(255)
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                wide = np.asarray(image).astype(np.int64)
                if wide.max(initial=0) <= 255:
                    return wide.astype(np.uint8)
                return np.clip(np.round(wide * (255 / 65535)), 0, 255).astype(np.uint8)
            if mode in ("LA", "RGBA", "PA"):
                alpha = np.asarray(image.getchannel("A"))
                if alpha.min(initial=255) == 0:  # fully transparent somewhere: the alpha is the mask
                    return alpha.astype(np.uint8, copy=False)
            return np.asarray(image.convert("L"))
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow refuses what libpng reads (a bad
        # CRC in an ancillary chunk: "cannot identify image file"): try OpenCV
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataFormatError(f"{label} is not a readable PNG ({type(exc).__name__})") from None
        return image


def _palette_mask(image) -> np.ndarray:
    """A palette PNG's mask: background where the palette colour is black or fully transparent, the person
    everywhere else. By colour, not index: VOC's masks put black at 0, Pillow's two-colour quantisation puts
    white there."""
    indices = np.asarray(image)  # [H, W] palette indices
    colours = np.asarray(image.getpalette() or [], np.int64).reshape(-1, 3)  # [P, 3]
    background = np.zeros(256, bool)
    background[: len(colours)] = colours.sum(axis=1) == 0
    transparency = image.info.get("transparency")
    if isinstance(transparency, int):
        background[transparency] = True
    elif isinstance(transparency, bytes):
        alphas = np.frombuffer(transparency, np.uint8)[:256]
        background[: len(alphas)] |= alphas == 0
    return np.where(background[indices], 0, 255).astype(np.uint8)


def read_sequence_bytes(
    data: bytes, filename: str = "upload", limits: InputLimits = InputLimits(), track_id: int | None = None
) -> SequenceRecord:
    """A record from uploaded bytes: a video, an .npz of arrays or a .zip of PNG masks. The file name's
    extension says which, and must agree with the content; without an extension the content decides."""
    if not data:
        raise DataFormatError(f"{filename}: empty file")
    extension = Path(filename).suffix.lower()
    video = looks_like_video(data)
    if extension in VIDEO_EXTENSIONS or (not extension and video):
        if data.startswith(b"PK"):
            raise DataFormatError(f"{filename}: named as a video but it is a zip/npz archive; name it .npz or .zip")
        return _from_video(data, filename, limits, track_id)
    if extension and extension not in ARCHIVE_EXTENSIONS:
        accepted = ", ".join((*ARCHIVE_EXTENSIONS, *VIDEO_EXTENSIONS))
        raise DataFormatError(f"{filename}: unsupported file type {extension!r} (accepted: {accepted})")
    if video:
        raise DataFormatError(f"{filename}: this is a video, not an .npz or .zip archive; name it after its format")
    if track_id is not None:
        raise DataFormatError("track_id applies to videos only")
    if not data.startswith(b"PK"):
        raise DataFormatError(f"{filename}: not an .npz or .zip archive")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DataFormatError(f"{filename}: corrupt archive ({exc})") from None
    with archive:
        if any(n.endswith(".npy") for n in archive.namelist()):
            record = _from_npz(data, filename, limits)
        else:
            record = _from_png_zip(archive, limits, filename)
    record = without_empty_frames(record, filename, limits.min_frames)
    # Set here, never taken from the file: a client's own metadata must not pose as the service's finding.
    record.meta["source"] = {"kind": "masks" if record.meta.pop("pretreated_here", False) else "silhouettes"}
    return record


def without_empty_frames(record: SequenceRecord, label: str, min_frames: int = 1) -> SequenceRecord:
    """Aligned frames without a single silhouette pixel hold nobody (a segmentation that found no one): they
    are dropped, as pretreatment drops such frames from full-frame masks, and a sequence with nothing else is
    refused. Left in, the detector would read gait into blank frames (it never saw any in training)."""
    if record.frames == 0:
        raise DataFormatError(f"{label}: the sequence has no frame")
    present = record.silhouettes.any(axis=(1, 2))  # [T]
    if present.all():
        return record
    if not present.any():
        raise DataFormatError(f"{label}: no frame holds a silhouette (all {_frames(record.frames)} are blank)")
    kept = int(present.sum())
    if kept < min_frames:
        raise DataFormatError(
            f"{label}: {_frames(kept)} of {record.frames} hold a silhouette (the others are blank); at least "
            f"{min_frames} are needed"
        )
    return record.select(np.flatnonzero(present))


def _from_video(data: bytes, filename: str, limits: InputLimits, track_id: int | None) -> SequenceRecord:
    extraction = read_video(data, filename, limits.video_limits(), limits.segmenter)
    track = extraction.track(track_id)
    record = track.record
    if record.frames > limits.max_frames:
        raise DataFormatError(
            f"{filename}: the person's track has {record.frames} frames; at most {limits.max_frames} are accepted"
            " (trim the clip, or lower the frame rate)"
        )
    if record.frames < limits.min_frames:
        raise DataFormatError(
            f"{filename}: track {track.track_id} has {_frames(record.frames)} usable; at least {limits.min_frames}"
            " are needed"
        )
    record.meta["source"] = {  # built here from what the service decoded
        "kind": "video",
        "track_id": track.track_id,
        "video_frames": len(extraction.video.frames),
        "fps": round(extraction.video.fps, 3),
        "tracks": [
            {
                "track_id": t.track_id,
                "frames": t.record.frames,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
            }
            for t in extraction.tracks
        ],
    }
    return record


def _from_npz(data: bytes, filename: str, limits: InputLimits) -> SequenceRecord:
    with NpzArchive(data, label=filename) as arrays:
        if "silhouettes" not in arrays:
            raise DataFormatError(f"{filename}: missing array 'silhouettes' (has: {', '.join(arrays) or 'none'})")
        shape, dtype = arrays.header("silhouettes")  # check the size before reading anything big
        if dtype.hasobject:
            raise DataFormatError(f"{filename}: array 'silhouettes' holds Python objects (pickle); refused")
        if len(shape) != 3:
            raise DataFormatError(f"{filename}: silhouettes must be [T, H, W], got shape {shape}")
        if shape[0] > limits.max_frames:
            raise DataFormatError(f"the sequence has {_frames(shape[0])}; at most {limits.max_frames} are accepted")
        if shape[1] * shape[2] > limits.max_frame_pixels:
            raise DataFormatError(f"frames of {shape[2]}x{shape[1]} exceed {limits.max_frame_pixels:,} pixels")
        _check_total_pixels(shape[0] * shape[1] * shape[2], limits, filename)
        _check_frame_shape(shape[2], shape[1], limits, filename)
        _check_arrays(arrays, limits, filename)
        aligned = shape[1] == ALIGNED_HEIGHT and shape[2] in ALIGNED_WIDTHS
        if "meta" in arrays and aligned and dtype == np.uint8:
            record = read_sequence(data, label=filename)  # a gader file: keeps labels and metadata
            for reserved in ("source", "pretreated_here"):  # the service's own findings, never the file's
                record.meta.pop(reserved, None)
            if record.frames < limits.min_frames:
                raise DataFormatError(
                    f"the sequence has {_frames(record.frames)}; at least {limits.min_frames} are needed"
                )
            return record
        return record_from_arrays(arrays["silhouettes"], arrays.get("ratios"), arrays.get("rgb"), limits, filename)


def read_sequence_file(
    path: str | Path, limits: InputLimits = InputLimits(), track_id: int | None = None
) -> SequenceRecord:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFormatError(f"{path}: is a directory") from None
    return read_sequence_bytes(data, path.name, limits, track_id)
