"""Videos in: decode (PyAV), segment people, track them, and pretreat each track into a sequence.

``decode_video`` checks limits before it decodes (bytes, resolution from the stream header, duration),
sub-samples to a target frame rate, scales large frames down to a pixel budget for processing, applies the
rotation metadata of phone videos, holds at most ``max_memory_bytes`` of frames, and refuses corrupt,
truncated, size-changing or video-less files with a message that names the problem.

``extract_tracks`` runs a person segmenter (``gader.segmentation``) and a tracker (``gader.tracking``) and
sends every track's full-frame masks and RGB frames through the project's pretreatment
(``gader.silhouettes.pretreat``), so a video gives exactly what a dataset gives: aligned silhouettes, true
resize ratios (in the video's own pixels), aligned RGB crops and, per frame, its index in the video.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from gader.data.record import SequenceRecord
from gader.errors import DataFormatError
from gader.segmentation import PersonSegmenter, create_segmenter
from gader.silhouettes import pretreat
from gader.tracking import Track, track_people

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv")


class VideoError(DataFormatError):
    """A video that cannot be used: corrupt, truncated, without a video stream, or beyond a limit."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 256 * 1024 * 1024
    max_seconds: float = 120.0
    max_pixels: int = 1920 * 1080  # per frame as stored, either orientation
    target_fps: float | None = None  # None: keep the video's rate; lower rates drop frames evenly
    processing_pixels: int = 640 * 360  # larger frames are scaled down (aspect kept) before segmentation
    max_memory_bytes: int = 1 << 30  # decoded RGB frames held at once, after scaling
    # The duration limit alone admits any frame rate (a 15 MB clip of 16x16 frames at 10,000 fps held 1.2 million
    # frames: minutes of decoding and segmentation). Frames decoded at most, kept or dropped (two minutes at
    # 240 fps: slow motion, sub-sampled with target_fps), and frames kept for segmentation (two minutes at 60 fps).
    max_decoded_frames: int = 28_800
    max_kept_frames: int = 7_200
    # Frames far from any camera's shape (a reviewer's 36000x6 clip) are refused: MediaPipe's segmenter aborts
    # the whole process on a side of 32,767 pixels or more, which no Python handler can catch.
    max_aspect: float = 8.0

    def max_frames(self, width: int, height: int) -> int:
        """How many processed frames of a ``width`` x ``height`` video fit the memory budget."""
        scale = processing_scale(width, height, self.processing_pixels)
        per_frame = 3 * max(1, round(width * scale)) * max(1, round(height * scale))
        return max(1, self.max_memory_bytes // per_frame)


def processing_scale(width: int, height: int, pixels: int) -> float:
    return min(1.0, (pixels / max(1, width * height)) ** 0.5)


@dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB, possibly scaled down (see ``scale``)
    frame_index: np.ndarray  # int64 [T]: each frame's index in the video
    fps: float  # the video's own frame rate
    width: int  # the video's own size, as displayed (after its rotation metadata)
    height: int
    scale: float  # processed frame size / original size (1.0 when not scaled)
    codec: str
    container: str


def looks_like_video(data: bytes) -> bool:
    """Container signatures: RIFF/AVI, ISO-BMFF (mp4, mov, m4v: 'ftyp' at byte 4), Matroska/WebM (EBML)."""
    return (
        (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
        or data[4:8] == b"ftyp"
        or data[:4] == b"\x1a\x45\xdf\xa3"
        or data[4:8] in (b"moov", b"mdat", b"wide", b"free")  # QuickTime files without an ftyp box
    )


def decode_video(
    source: bytes | str | Path, label: str | None = None, limits: VideoLimits = VideoLimits()
) -> DecodedVideo:
    """Decode every frame (or every n-th, for ``limits.target_fps``) into RGB arrays; see the module doc."""
    if isinstance(source, str | Path):
        path = Path(source)
        label = label or path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VideoError(f"{path}: cannot read ({exc.strerror})") from None
    else:
        data, label = source, label or "video"
    if not data:
        raise VideoError(f"{label}: empty file")
    if len(data) > limits.max_bytes:
        raise VideoError(f"{label}: {len(data):,} bytes exceed the video limit of {limits.max_bytes:,}")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"{label}: not a readable video ({_reason(exc)})") from None
    with container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise VideoError(f"{label}: the file has no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV found no decoder for the stream's codec
            raise VideoError(f"{label}: unsupported video codec")
        stored_width, stored_height = stream.codec_context.width, stream.codec_context.height
        if stored_width == 0 or stored_height == 0:
            raise VideoError(f"{label}: the video stream has no frame size")
        if stored_width * stored_height > limits.max_pixels:
            raise VideoError(f"{label}: frames of {stored_width}x{stored_height} exceed {limits.max_pixels:,} pixels")
        if max(stored_width, stored_height) > limits.max_aspect * min(stored_width, stored_height):
            raise VideoError(
                f"{label}: frames of {stored_width}x{stored_height} are not a camera's shape (sides more than "
                f"{limits.max_aspect:g} to 1)"
            )
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        seconds = _duration(container, stream)
        if seconds is not None and seconds > limits.max_seconds:
            raise VideoError(f"{label}: {seconds:.1f} s long; at most {limits.max_seconds:.0f} s are accepted")
        step = max(1.0, fps / limits.target_fps) if limits.target_fps else 1.0
        too_many = f"{label}: more than {limits.max_decoded_frames:,} frames; trim the clip"
        too_many_kept = (
            f"{label}: more than {limits.max_kept_frames:,} frames to segment; trim the clip or sub-sample it "
            "(GADER_VIDEO_FPS, gader's --fps)"
        )
        announced = max(stream.frames, (seconds or 0) * fps)  # from the header, before any decoding
        if announced > limits.max_decoded_frames + fps:
            raise VideoError(too_many)
        if announced / step > limits.max_kept_frames + fps:
            raise VideoError(too_many_kept)
        scale = processing_scale(stored_width, stored_height, limits.processing_pixels)
        size = (max(1, round(stored_width * scale)), max(1, round(stored_height * scale)))
        budget = limits.max_frames(stored_width, stored_height)  # frames the memory budget holds
        max_frames = min(budget, limits.max_kept_frames)
        # Frames are written into one array as they are decoded (its pages cost memory only once written): a
        # list stacked at the end peaked at 988 MiB for 396 MiB of frames (600 of 1280x720 scaled to 640x360),
        # this at 590 (`python -m bench.bench_limits`).
        kept: np.ndarray | None = None  # [max_frames, h, w, 3] once the first frame's shape is known
        count, indices, decoded, next_keep, rotation = 0, [], 0, 0.0, 0
        try:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (stored_width, stored_height):
                    raise VideoError(
                        f"{label}: the frame size changes from {stored_width}x{stored_height} to "
                        f"{frame.width}x{frame.height} at frame {decoded}; re-encode the clip at one size"
                    )
                if decoded >= next_keep:
                    next_keep += step
                    if count >= budget:
                        raise VideoError(
                            f"{label}: more than {budget} frames of {size[0]}x{size[1]} after scaling "
                            f"(the memory budget for one video); trim the clip or lower the frame rate"
                        )
                    if count >= limits.max_kept_frames:
                        raise VideoError(too_many_kept)
                    image = frame.to_ndarray(format="rgb24")  # [H, W, 3] as stored
                    if scale < 1.0:
                        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                    rotation = round((frame.rotation or 0) / 90) % 4  # display matrix, counterclockwise
                    if rotation:
                        image = np.rot90(image, rotation)
                    if kept is None:
                        kept = np.empty((max_frames, *image.shape), np.uint8)
                    kept[count] = image
                    count += 1
                    indices.append(decoded)
                decoded += 1
                if decoded / fps > limits.max_seconds + 1:  # a header may under-state the duration
                    raise VideoError(f"{label}: longer than {limits.max_seconds:.0f} s")
                if decoded > limits.max_decoded_frames:  # or the frame count
                    raise VideoError(too_many)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{label}: corrupt or truncated video ({_reason(exc)}) after {decoded} frames") from None
        declared = stream.frames
        codec, container_name = stream.codec_context.name, container.format.name
    if kept is None or count == 0:
        raise VideoError(f"{label}: no frame could be decoded")
    if declared and decoded < 0.9 * declared:  # AVI decodes a cut file silently: compare with its header
        raise VideoError(f"{label}: truncated: the header declares {declared} frames, only {decoded} could be read")
    width, height = (stored_height, stored_width) if rotation % 2 else (stored_width, stored_height)
    return DecodedVideo(
        frames=kept[:count],  # [T, H, W, 3]
        frame_index=np.asarray(indices, dtype=np.int64),
        fps=fps,
        width=width,
        height=height,
        scale=scale,
        codec=codec,
        container=container_name,
    )


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if text else type(exc).__name__


@dataclass
class VideoTrack:
    """One person's sequence from a video."""

    track_id: int
    record: SequenceRecord  # aligned silhouettes, ratios, RGB crops; frame_arrays['frame_index'] into the video
    first_frame: int  # video frame indices
    last_frame: int
    mean_box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the video's pixels


@dataclass
class VideoExtraction:
    video: DecodedVideo
    tracks: list[VideoTrack]  # the main track first
    masks: np.ndarray = field(repr=False)  # uint8 [T, h, w] 0/255 segmentation of the processed frames

    @property
    def main(self) -> VideoTrack:
        return self.tracks[0]

    def track(self, track_id: int | None) -> VideoTrack:
        if track_id is None:
            return self.main
        for candidate in self.tracks:
            if candidate.track_id == track_id:
                return candidate
        ids = ", ".join(str(t.track_id) for t in self.tracks)
        raise VideoError(f"no track {track_id} in the video (tracks: {ids})")


def extract_tracks(
    video: DecodedVideo,
    segmenter: PersonSegmenter | str = "selfie",
    min_frames: int = 1,
    label: str = "video",
) -> VideoExtraction:
    """Segment, track and pretreat: one sequence per person, the main (largest, longest present) first."""
    segmenter = create_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
    masks = segmenter.segment(video.frames)  # uint8 [T, h, w]
    tracks = [t for t in track_people(masks) if len(t.frames) >= min_frames]
    results = []
    for track in tracks:
        sequence = track_sequence(video, masks, track, label)
        if sequence is not None:
            results.append(sequence)
    if not results:
        raise VideoError(f"{label}: no person found in {len(video.frames)} frames")
    return VideoExtraction(video, results, masks)


def track_sequence(video: DecodedVideo, masks: np.ndarray, track: Track, label: str) -> VideoTrack | None:
    # Crop the track's frames to its union box, so memory follows the person's size, not the frame's. The
    # silhouettes depend only on the body box; the RGB crops take a 64-column window as wide as the body is
    # tall around the body's centre, so the crop keeps half the tallest body height on each side.
    tallest = max(o.box[3] - o.box[1] for o in track.observations)
    x0, y0, x1, y1 = track.union_box(
        margin=4, width=masks.shape[2], height=masks.shape[1], horizontal_margin=tallest // 2 + 4
    )
    person = track.masks(masks)[:, y0:y1, x0:x1]  # uint8 [n, h', w']
    rgb = video.frames[track.frames, y0:y1, x0:x1]  # uint8 [n, h', w', 3]
    result = pretreat(person, rgb)
    if result.frames == 0:
        return None
    kept = track.frames[result.frame_index]  # positions among the decoded frames
    ratios = (result.ratios / video.scale).astype(np.float32)  # in the video's own pixels
    boxes = (result.boxes + np.array([x0, y0, x0, y0])) / video.scale  # [n, 4] in the video's pixels
    frame_index = video.frame_index[kept]
    record = SequenceRecord(
        "probe",
        "video",
        "unknown",
        result.silhouettes,
        ratios=ratios,
        rgb=result.rgb,
        source=f"{label}#track{track.track_id}",
        frame_arrays={"frame_index": frame_index, "boxes": boxes.astype(np.float32)},
        meta={"track_id": track.track_id, "video_fps": video.fps, "rejected_frames": len(result.rejected)},
    )
    return VideoTrack(
        track_id=track.track_id,
        record=record,
        first_frame=int(frame_index[0]),
        last_frame=int(frame_index[-1]),
        mean_box=tuple(float(v) for v in boxes.mean(axis=0)),
    )


def read_video(
    source: bytes | str | Path,
    label: str | None = None,
    limits: VideoLimits = VideoLimits(),
    segmenter: PersonSegmenter | str = "selfie",
) -> VideoExtraction:
    """Decode and extract in one call."""
    video = decode_video(source, label, limits)
    name = label or (Path(source).name if isinstance(source, str | Path) else "video")
    return extract_tracks(video, segmenter, label=name)
