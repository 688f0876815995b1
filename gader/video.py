"""Videos in: decode (PyAV), segment people, track them, and pretreat each track into a sequence.

``decode_video`` checks limits before it decodes (bytes, resolution from the stream header, duration),
sub-samples to a target frame rate, scales large frames down for processing, and refuses corrupt, truncated
or video-less files with a message that names the problem. ``extract_tracks`` runs a person segmenter
(``gader.segmentation``) and a tracker (``gader.tracking``) and sends every track's full-frame masks and RGB
frames through the project's pretreatment (``gader.silhouettes.pretreat``), so a video gives exactly what a
dataset gives: aligned silhouettes, true resize ratios (in the video's own pixels), aligned RGB crops and,
per frame, its index in the video.
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
    max_pixels: int = 1920 * 1080  # per frame, either orientation
    max_frames: int = 2000  # after sub-sampling
    target_fps: float | None = None  # None: keep the video's rate; lower rates drop frames evenly
    processing_height: int = 480  # taller frames are scaled down before segmentation (ratios are not)


@dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB, possibly scaled down (see ``scale``)
    frame_index: np.ndarray  # int64 [T]: each frame's index in the video
    fps: float  # the video's own frame rate
    width: int  # the video's own size
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
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_pixels:
            raise VideoError(f"{label}: frames of {width}x{height} exceed {limits.max_pixels:,} pixels")
        if width == 0 or height == 0:
            raise VideoError(f"{label}: the video stream has no frame size")
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        seconds = _duration(container, stream)
        if seconds is not None and seconds > limits.max_seconds:
            raise VideoError(f"{label}: {seconds:.1f} s long; at most {limits.max_seconds:.0f} s are accepted")
        step = max(1.0, fps / limits.target_fps) if limits.target_fps else 1.0
        scale = min(1.0, limits.processing_height / height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frames, indices, decoded, next_keep = [], [], 0, 0.0
        try:
            for frame in container.decode(stream):
                if decoded >= next_keep:
                    next_keep += step
                    if len(frames) >= limits.max_frames:
                        raise VideoError(
                            f"{label}: more than {limits.max_frames} frames"
                            f"{f' at {limits.target_fps:g} fps' if limits.target_fps else ''}; trim the clip"
                        )
                    image = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                    if scale < 1.0:
                        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                    frames.append(image)
                    indices.append(decoded)
                decoded += 1
                if decoded / fps > limits.max_seconds + 1:  # a header may under-state the duration
                    raise VideoError(f"{label}: longer than {limits.max_seconds:.0f} s")
        except av.error.FFmpegError as exc:
            raise VideoError(f"{label}: corrupt or truncated video ({_reason(exc)}) after {decoded} frames") from None
        declared = stream.frames
        codec, container_name = stream.codec_context.name, container.format.name
    if not frames:
        raise VideoError(f"{label}: no frame could be decoded")
    if declared and decoded < 0.9 * declared:  # AVI decodes a cut file silently: compare with its header
        raise VideoError(f"{label}: truncated: the header declares {declared} frames, only {decoded} could be read")
    return DecodedVideo(
        frames=np.stack(frames),
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
    # Crop every frame of the track to the track's union box: pretreatment depends only on the body box,
    # and the crop keeps memory at the person's size instead of the frame's.
    x0, y0, x1, y1 = track.union_box(margin=4, width=masks.shape[2], height=masks.shape[1])
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
