"""What users upload: npz of aligned or full-frame masks, zip of PNGs; every bad file named, none unpickled."""

import io
import zipfile

import cv2
import numpy as np
import pytest

from gader.data import write_sequence
from gader.data.record import FrameLabels, SequenceRecord
from gader.errors import DataFormatError
from gader.sequence_input import InputLimits, read_sequence_bytes


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _full_frames(count=6) -> np.ndarray:
    frames = np.zeros((count, 240, 320), np.uint8)
    for t, frame in enumerate(frames):
        cv2.ellipse(frame, (120 + 5 * t, 120), (18, 80), 0, 0, 360, 255, -1)
    return frames


def test_aligned_npz_with_ratios():
    record = read_sequence_bytes(_npz(silhouettes=np.zeros((5, 64, 44), np.uint8) + 255, ratios=np.ones(5)), "a.npz")
    assert record.frames == 5 and record.silhouettes.shape == (5, 64, 44) and record.ratios.dtype == np.float32


def test_full_frame_masks_are_pretreated_with_their_ratios():
    record = read_sequence_bytes(_npz(silhouettes=_full_frames() > 0), "full.npz")
    assert record.silhouettes.shape == (6, 64, 64)
    assert record.ratios == pytest.approx(np.full(6, 161 / 64))


def test_zip_of_png_masks():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for t, frame in enumerate(_full_frames()):
            archive.writestr(f"frames/{t:03d}.png", cv2.imencode(".png", frame)[1].tobytes())
    record = read_sequence_bytes(buffer.getvalue(), "masks.zip")
    assert record.frames == 6 and record.ratios is not None


def test_a_gader_file_keeps_its_labels():
    labels = FrameLabels(gait=np.array([1, 0, 1]), full_body=np.ones(3))
    buffer = io.BytesIO()
    write_sequence(SequenceRecord("7", "c", "v", np.zeros((3, 64, 64), np.uint8), labels=labels), buffer)
    record = read_sequence_bytes(buffer.getvalue(), "gader.npz")
    assert record.labels.gait.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"GIF89a....", "not an .npz or .zip"),
        (b"PK\x03\x04broken", "corrupt archive"),
        (_npz(other=np.zeros(3)), "missing array 'silhouettes'"),
        (_npz(silhouettes=np.zeros((4, 64), np.uint8)), "must be \\[T, H, W\\]"),
        (_npz(silhouettes=np.zeros((4, 64, 44), np.float64)), "must be uint8"),
        (_npz(silhouettes=np.zeros((0, 64, 44), np.uint8)), "at least 1 are needed"),
        (
            _npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.ones(2)),
            "ratios must be numbers with shape \\[3\\]",
        ),
        (
            _npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.array([1.0, np.nan, 1.0])),
            "ratios must be finite and positive",
        ),
        (_npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.array([1.0, 0.0, 1.0])), "finite and positive"),
        (_npz(silhouettes=np.zeros((3, 64, 44), np.uint8), rgb=np.zeros((3, 64, 44), np.uint8)), "rgb must be uint8"),
        (_npz(silhouettes=np.zeros((3, 240, 320), np.uint8), ratios=np.ones(3)), "only with aligned"),
        (_npz(silhouettes=np.zeros((3, 240, 320), np.uint8)), "no frame holds a person"),
        (_npz(silhouettes=np.array([None, None], dtype=object)), "pickle"),
    ],
)
def test_bad_uploads_are_named(data, message):
    with pytest.raises(DataFormatError, match=message):
        read_sequence_bytes(data, "upload.npz")


def test_limits_are_checked_before_reading_big_arrays():
    limits = InputLimits(max_frames=10, max_frame_pixels=100 * 100)
    with pytest.raises(DataFormatError, match="at most 10"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((11, 64, 44), np.uint8)), "long.npz", limits)
    with pytest.raises(DataFormatError, match="exceed"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((2, 200, 200), np.uint8)), "big.npz", limits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(DataFormatError, match=r"no \.png masks"):
        read_sequence_bytes(buffer.getvalue(), "x.zip")


def test_the_source_is_the_readers_finding_never_the_files_metadata():
    record = SequenceRecord(
        "s", "nm-01", "090", np.full((6, 64, 44), 255, np.uint8), meta={"source": "x", "pretreated_here": True}
    )
    buffer = io.BytesIO()
    write_sequence(record, buffer)
    read = read_sequence_bytes(buffer.getvalue(), "mine.npz")
    assert read.meta["source"] == {"kind": "silhouettes"}
    assert "pretreated_here" not in read.meta
