"""Real video files made with PyAV's encoders, for the tests (nothing mocked: real containers, real codecs)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def encode(frames: np.ndarray, codec: str = "mpeg4", container: str = "mp4", fps: int = 25) -> bytes:
    """uint8 RGB [T, H, W, 3] -> a real video file's bytes."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def walking_box(frames: int = 30, height: int = 120, width: int = 160) -> np.ndarray:
    """A bright 'person' box moving across a dark background (decodable, segmentable by background)."""
    video = np.full((frames, height, width, 3), 30, np.uint8)
    for t in range(frames):
        x = 10 + 3 * t
        video[t, 30:100, x : x + 24] = (220, 180, 160)
    return video


def headers_only_avi() -> bytes:
    """A valid AVI header and stream list that announce frames, and no frame data."""
    clip = encode(walking_box(10), container="avi")
    return clip[: clip.index(b"movi") + 4]


def audio_only_mp4(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """An .mp4 holding one AAC audio stream (silence) and no video."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("aac", rate=rate)
        for start in range(0, int(seconds * rate), 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def truncated_avi(frames: int = 40) -> bytes:
    """An AVI cut in the middle of its frame data: the header still announces every frame."""
    clip = encode(walking_box(frames), container="avi")
    movi = clip.index(b"movi")
    return clip[: movi + (len(clip) - movi) // 2]
