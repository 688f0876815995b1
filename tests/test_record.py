import numpy as np
import pytest

from gader.data import DETECTOR_CLASSES, FrameLabels, SequenceRecord, cut_sides
from gader.data.record import to_uint8_range
from gader.errors import DataFormatError


def _record(frames: int = 5, width: int = 64, **kwargs) -> SequenceRecord:
    silhouettes = np.zeros((frames, 64, width), np.uint8)
    return SequenceRecord("001", "nm-01", "090", silhouettes, **kwargs)


def test_detector_classes_round_trip():
    labels = FrameLabels(gait=np.array([1, 0, 1, 0]), full_body=np.array([1, 1, 0, 0]))
    assert labels.classes.tolist() == [0, 1, 2, 3]
    assert [DETECTOR_CLASSES[i] for i in labels.classes] == [
        "full-gait",
        "full-standing",
        "partial-gait",
        "partial-standing",
    ]
    again = FrameLabels.from_classes(labels.classes)
    assert np.array_equal(again.gait, labels.gait)
    assert np.array_equal(again.full_body, labels.full_body)


def test_select_keeps_every_per_frame_field_aligned():
    record = _record(
        4,
        ratios=np.arange(1, 5, dtype=np.float32),
        rgb=np.arange(4, dtype=np.uint8)[:, None, None, None].repeat(64, 1).repeat(64, 2).repeat(3, 3),
        labels=FrameLabels(gait=np.array([1, 0, 1, 0]), full_body=np.ones(4)),
        frame_arrays={"frame_index": np.array([10, 11, 12, 13])},
    )
    part = record.select(np.array([1, 3]))
    assert part.frames == 2
    assert part.ratios.tolist() == [2.0, 4.0]
    assert part.rgb[:, 0, 0, 0].tolist() == [1, 3]
    assert part.labels.gait.tolist() == [False, False]
    assert part.frame_arrays["frame_index"].tolist() == [11, 13]


def test_cut_sides_is_opengaits_ten_columns():
    frames = np.zeros((2, 64, 64), np.uint8)
    frames[:, :, 10] = 255
    frames[:, :, 53] = 255
    cut = cut_sides(frames)
    assert cut.shape == (2, 64, 44)
    assert cut[0, 0, 0] == 255 and cut[0, 0, 43] == 255
    record = _record(2, rgb=np.zeros((2, 64, 64, 3), np.uint8)).cut_sides()
    assert record.silhouettes.shape == (2, 64, 44) and record.rgb.shape == (2, 64, 44, 3)
    assert record.cut_sides() is record


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"silhouettes": np.zeros((3, 64, 64), np.float32)}, "uint8"),
        ({"silhouettes": np.zeros((3, 32, 32), np.uint8)}, "aligned"),
        ({"silhouettes": np.zeros((64, 64), np.uint8)}, "aligned"),
        ({"ratios": np.ones(4, np.float32)}, "ratios must have shape"),
        ({"ratios": np.array([1, 0, 1], np.float32)}, "finite and positive"),
        ({"ratios": np.array([1, np.nan, 1], np.float32)}, "finite and positive"),
        ({"rgb": np.zeros((3, 64, 64), np.uint8)}, "rgb must be uint8"),
        ({"labels": FrameLabels(np.ones(2), np.ones(2))}, "labels have 2 frames"),
    ],
)
def test_invalid_records_name_the_problem(kwargs, message):
    base = {"silhouettes": np.zeros((3, 64, 64), np.uint8)}
    with pytest.raises(DataFormatError, match=message):
        SequenceRecord("1", "c", "v", **{**base, **kwargs})


def test_to_uint8_range_scales_binary_sources():
    assert to_uint8_range(np.array([[True, False]])).tolist() == [[255, 0]]
    assert to_uint8_range(np.array([[1, 0]], np.int64)).tolist() == [[255, 0]]
    assert to_uint8_range(np.array([[0.5, 1.0]])).tolist() == [[128, 255]]
    assert to_uint8_range(np.array([[17, 255]], np.int32)).tolist() == [[17, 255]]
    with pytest.raises(DataFormatError, match=r"0\.\.255"):
        to_uint8_range(np.array([[-1, 300]]))
    with pytest.raises(DataFormatError, match="NaN"):
        to_uint8_range(np.array([[np.nan]]))
