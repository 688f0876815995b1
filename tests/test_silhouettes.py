"""Pretreatment: bit-exact against a literal transcription of OpenGait's loop, round trips, rejections."""

import cv2
import numpy as np
import pytest

from gader.data import open_dataset
from gader.errors import DataFormatError
from gader.silhouettes import REJECT_NO_CENTRE, REJECT_TOO_FEW_PIXELS, pretreat
from tests.opengait_reference import opengait_pretreat


def _blob_frames(seed: int, frames: int = 12, height: int = 240, width: int = 320) -> np.ndarray:
    """Random person-like blobs (ellipses and limbs) at random sizes and places, some touching edges."""
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        body_h = int(rng.integers(30, height))
        cx, top = int(rng.integers(0, width)), int(rng.integers(0, height - body_h + 1))
        cv2.ellipse(out[t], (cx, top + body_h // 2), (max(body_h // 6, 1), body_h // 2), 0, 0, 360, 255, -1)
        cv2.line(
            out[t],
            (cx, top + body_h // 2),
            (cx + int(rng.integers(-40, 40)), top + body_h - 1),
            255,
            int(rng.integers(1, 8)),
        )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_bit_exact_with_opengait_on_random_blobs(seed):
    frames = _blob_frames(seed)
    reference, kept = opengait_pretreat(list(frames))
    result = pretreat(frames)
    assert result.frame_index.tolist() == kept
    assert np.array_equal(result.silhouettes, np.stack(reference) if reference else result.silhouettes)


def _paste(silhouette: np.ndarray, scale: float, frame_shape, rng) -> tuple[np.ndarray, int]:
    """A binary aligned silhouette scaled and pasted at a random place; returns (frame, body height)."""
    size = round(64 * scale)
    big = (cv2.resize(silhouette, (size, size), interpolation=cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255
    frame = np.zeros(frame_shape, np.uint8)
    y, x = rng.integers(0, frame_shape[0] - size), rng.integers(0, frame_shape[1] - size)
    frame[y : y + size, x : x + size] = big
    rows = np.flatnonzero(big.any(axis=1))
    return frame, int(rows[-1] - rows[0] + 1)


@pytest.mark.shared_data
def test_round_trip_of_real_silhouettes_gives_back_the_original_and_the_ratios(opengait_sample):
    """Acceptance: aligned silhouettes pasted at several sizes and places come back with IoU >= 0.95."""
    rng = np.random.default_rng(0)
    for record in open_dataset(opengait_sample):
        original = (record.silhouettes > 127).astype(np.uint8) * 255  # the binary mask a segmenter gives
        ious = []
        for scale in (1.5, 2.0, 2.5, 3.0, 4.5):
            pasted = [_paste(frame, scale, (480, 640), rng) for frame in original]
            frames = np.stack([frame for frame, _ in pasted])
            heights = np.array([height for _, height in pasted])
            result = pretreat(frames)
            assert result.frames == record.frames and not result.rejected
            assert np.array_equal(result.ratios, (heights / 64).astype(np.float32))
            back, truth = result.silhouettes > 127, original > 127
            ious.append((back & truth).sum((1, 2)) / (back | truth).sum((1, 2)))
        mean_iou = float(np.mean(ious))
        assert mean_iou >= 0.95, f"{record.key}: mean IoU {mean_iou:.3f}"


def test_opengait_bit_exact_on_real_frames_pasted(opengait_sample):
    rng = np.random.default_rng(1)
    record = open_dataset(opengait_sample).load("001/nm-01/090")
    frames = np.stack([_paste(frame, 2.7, (240, 320), rng)[0] for frame in record.silhouettes])
    reference, kept = opengait_pretreat(list(frames))
    result = pretreat(frames)
    assert result.frame_index.tolist() == kept and np.array_equal(result.silhouettes, np.stack(reference))


def test_rejected_frames_are_reported_with_index_and_reason():
    frames = np.zeros((4, 120, 160), np.uint8)
    frames[0, 20:100, 70:90] = 255  # a body
    frames[1, 50:55, 50:55] = 255  # 25 pixels: too few
    frames[3, 10:110, 0:1] = 255  # all mass in column 0: OpenGait finds "no centre"
    frames[3, 10:110, 0] = 255
    result = pretreat(frames)
    assert result.frame_index.tolist() == [0]
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, REJECT_TOO_FEW_PIXELS),
        (2, REJECT_TOO_FEW_PIXELS),
        (3, REJECT_NO_CENTRE),
    ]
    assert result.boxes.tolist() == [[70, 20, 89, 99]]
    assert result.ratios.tolist() == [80 / 64]


def test_all_rejected_gives_empty_arrays():
    result = pretreat(np.zeros((3, 50, 50), np.uint8))
    assert result.frames == 0 and result.silhouettes.shape == (0, 64, 64) and len(result.rejected) == 3


def test_rgb_crops_are_aligned_with_silhouettes():
    frames = _blob_frames(7, frames=5)
    colour = np.zeros((*frames.shape, 3), np.uint8)
    colour[frames > 0] = (200, 30, 90)  # the person is magenta, the background black
    result = pretreat(frames, colour)
    assert result.rgb.shape == (*result.silhouettes.shape, 3)
    # Colour coverage (area-resampled) and mask (bicubic) agree pixel for pixel, up to edge blur.
    colour_person = result.rgb[..., 0] > 100  # [T, 64, 64]
    mask_person = result.silhouettes > 127
    iou = (colour_person & mask_person).sum((1, 2)) / (colour_person | mask_person).sum((1, 2))
    assert iou.min() >= 0.9, iou
    shifted = np.roll(colour_person, 2, axis=2)  # a misalignment by 2 columns would be visible
    iou_shifted = (shifted & mask_person).sum((1, 2)) / (shifted | mask_person).sum((1, 2))
    assert iou_shifted.mean() < iou.mean() - 0.05
    assert np.abs(result.rgb[mask_person & (result.silhouettes == 255)].astype(int) - (200, 30, 90)).mean() < 10


def test_accepts_bool_and_01_masks_like_0_255():
    frames = _blob_frames(3, frames=3)
    as_255 = pretreat(frames)
    as_bool = pretreat(frames > 0)
    as_01 = pretreat((frames > 0).astype(np.uint8))
    assert np.array_equal(as_255.silhouettes, as_bool.silhouettes)
    assert np.array_equal(as_255.silhouettes, as_01.silhouettes)


@pytest.mark.parametrize(
    ("masks", "rgb", "message"),
    [
        (np.zeros((2, 3, 4, 5), np.uint8), None, "masks must be"),
        (np.zeros((2, 1, 40), np.uint8), None, "at least 2x2"),
        (np.zeros((2, 40, 40), np.uint8), np.zeros((2, 40, 40), np.uint8), "rgb must be uint8"),
        (np.full((2, 40, 40), 999, np.int32), None, "0..255"),
    ],
)
def test_bad_inputs_name_the_problem(masks, rgb, message):
    with pytest.raises(DataFormatError, match=message):
        pretreat(masks, rgb)


def test_aligned_iou_matches_frames_that_each_side_dropped_differently():
    from gader.silhouettes import aligned_iou, mask_iou

    rng = np.random.default_rng(4)
    walk = (rng.random((30, 64, 64)) > 0.5).astype(np.uint8) * 255  # every frame distinct
    ours, reference = np.delete(walk, [0, 7, 8], axis=0), np.delete(walk, [3, 29], axis=0)
    iou, pairs = aligned_iou(ours, reference)
    assert iou == 1.0 and len(pairs) == 30 - 5  # every frame both sides kept, matched to itself
    assert np.all(np.diff(pairs, axis=0) > 0)  # monotone in both sequences
    assert np.array_equal(mask_iou(ours[pairs[:, 0]], reference[pairs[:, 1]]), np.ones(len(pairs)))
    shifted, _ = aligned_iou(np.roll(ours, 3, axis=2), reference)  # a 3-column offset costs overlap
    assert 0.3 < shifted < 0.7


def test_chunked_canvases_give_the_same_silhouettes_as_one(monkeypatch):
    """pretreat resizes bands into canvases of at most CANVAS_BYTES; any chunking gives the same answer as one
    canvas (bit exact with OpenGait either way)."""
    import gader.silhouettes as silhouettes

    frames = np.concatenate([_blob_frames(seed) for seed in range(3)])
    rgb = np.random.default_rng(0).integers(0, 256, (*frames.shape, 3), dtype=np.uint8)
    whole = pretreat(frames, rgb)
    monkeypatch.setattr(silhouettes, "CANVAS_BYTES", 64 * 64 * 4 * 3)  # a few frames per chunk, some alone
    chunked = pretreat(frames, rgb)
    assert np.array_equal(whole.silhouettes, chunked.silhouettes) and np.array_equal(whole.rgb, chunked.rgb)
    assert np.array_equal(whole.frame_index, chunked.frame_index) and whole.rejected == chunked.rejected
    reference, kept = opengait_pretreat(list(frames))
    assert chunked.frame_index.tolist() == kept and np.array_equal(chunked.silhouettes, np.stack(reference))


def test_thin_bands_in_wide_frames_do_not_take_gigabytes():
    """A band one row high in a 1,920-wide frame resizes to 122,880 columns; one canvas for 300 such frames was
    2.4 GB (an upload of 3 kB). Chunks hold at most CANVAS_BYTES of them."""
    import tracemalloc

    masks = np.zeros((300, 2, 1920), np.uint8)
    masks[:, 0, 100:1900] = 255  # one row of foreground: enough pixels, no height
    tracemalloc.start()
    result = pretreat(masks)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 400 << 20, f"{peak / 2**20:.0f} MiB"
    assert len(result.frame_index) + len(result.rejected) == 300
