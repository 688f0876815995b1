"""The DHS gait detector: windows, NMS and merging by hand, training on real files, the CLI, the pipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gader.data import open_dataset
from gader.data.record import DETECTOR_CLASSES
from gader.detector import (
    FULL_GAIT,
    DetectorConfig,
    DHSClassifier,
    GaitDetector,
    dhs_of,
    ratio_channels,
    report_from_windows,
    suppress_and_merge,
    window_masks,
    window_positions,
)
from gader.dhs import double_helical_signature, knee_row, signature_rows
from gader.errors import GaderError
from gader.training.detector_data import (
    LabelledDHS,
    contaminated_walk,
    hold_still,
    real_partial,
    real_standing,
    sample_windows,
    without_ratios,
)
from gader.training.detector_trainer import load_detector_config, longest_run


def test_dhs_is_the_knee_row_over_time():
    frames = np.zeros((5, 64, 44), np.uint8)
    frames[:, knee_row(64), 10:20] = 255
    dhs = double_helical_signature(frames)
    assert dhs.shape == (44, 5) and dhs[10:20].min() == 1.0 and dhs[:10].max() == 0.0
    assert knee_row(64) == 48  # a quarter of the height from the bottom
    with pytest.raises(GaderError):
        double_helical_signature(frames, band=0)


def test_signature_rows_average_each_band_of_rows_at_each_height():
    frames = np.random.default_rng(0).integers(0, 256, (7, 64, 44)).astype(np.uint8)
    heights = (0.25, 0.08, 0.8)
    rows = signature_rows(frames, heights, band=3)  # [3, 44, 7]
    assert rows.shape == (3, 44, 7) and rows.flags.c_contiguous
    for signature, height in zip(rows, heights, strict=True):
        centre = knee_row(64, height)
        expected = frames[:, centre - 1 : centre + 2, :].astype(np.float64).mean(axis=1).T / 255.0  # [44, 7]
        np.testing.assert_allclose(signature, expected, atol=1e-6)
    np.testing.assert_array_equal(rows[0], double_helical_signature(frames, 0.25, band=3))
    binary = frames > 127  # bool silhouettes: no 255 scale
    np.testing.assert_allclose(signature_rows(binary, (0.5,))[0], binary[:, knee_row(64, 0.5), :].T.astype(np.float32))


def test_windows_cover_every_frame_including_the_tail():
    config = DetectorConfig(window_lengths=(10, 20), stride=4)
    positions = window_positions(37, config)
    covered = np.zeros(37, bool)
    for start, end in positions:
        covered[start:end] = True
        assert end - start in (10, 20)
    assert covered.all() and (27, 37) in positions and (17, 37) in positions
    assert window_positions(6, config) == [(0, 6)]  # shorter than every window: one whole window


def test_nms_and_merge_by_hand():
    config = DetectorConfig(score_threshold=0.5, nms_iou=0.5, merge_gap=3)
    positions = [(0, 10), (2, 12), (14, 24), (40, 50), (60, 70)]
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.3])
    segments, kept = suppress_and_merge(positions, scores, config)
    # (2, 12) overlaps (0, 10) with IoU 8/12 > 0.5: suppressed; (60, 70) is below the threshold;
    # (0, 10) and (14, 24) are 4 frames apart... gap 14 - 9 - 1 = 4 > 3: not merged.
    assert sorted(positions[i] for i in kept) == [(0, 10), (14, 24), (40, 50)]
    assert [(s.start, s.end) for s in segments] == [(0, 9), (14, 23), (40, 49)]
    merged, _ = suppress_and_merge(positions, scores, DetectorConfig(merge_gap=4))
    assert (merged[0].start, merged[0].end, round(merged[0].score, 2)) == (0, 23, 0.9)


def _greedy_nms(positions, scores, threshold, nms_iou):
    """Non-maximum suppression written the plain way (a reference for the vectorised one)."""
    kept = []
    for index in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if scores[index] < threshold:
            continue
        (a0, a1) = positions[index]
        ious = [
            max(0, min(a1, b1) - max(a0, b0)) / (max(a1, b1) - min(a0, b0)) for b0, b1 in (positions[k] for k in kept)
        ]
        if all(iou <= nms_iou for iou in ious):
            kept.append(index)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_nms_keeps_what_plain_greedy_suppression_keeps(seed):
    rng = np.random.default_rng(seed)
    config = DetectorConfig(score_threshold=0.4, nms_iou=0.5)
    positions = window_positions(int(rng.integers(20, 150)), config)
    scores = rng.random(len(positions))  # distinct: the order of the candidates is the same for both
    _, kept = suppress_and_merge(positions, scores, config)
    assert kept == _greedy_nms(positions, scores, 0.4, 0.5)
    assert suppress_and_merge(positions, scores, config, dense_limit=0)[1] == kept  # the row-by-row path


@pytest.mark.parametrize("voting", ["shortest", "all"])
def test_each_frame_gets_the_mean_probabilities_of_the_windows_over_it(voting):
    rng = np.random.default_rng(0)
    config = DetectorConfig(frame_label_windows=voting)
    positions = window_positions(50, config)
    shortest = min(end - start for start, end in positions)
    probabilities = rng.dirichlet(np.ones(4), len(positions)).astype(np.float32)  # [m, 4]
    report = report_from_windows(50, positions, probabilities, config)
    for frame in (0, 17, 49):
        covering = [
            p
            for (start, end), p in zip(positions, probabilities, strict=True)
            if start <= frame < end and (voting == "all" or end - start == shortest)
        ]
        np.testing.assert_allclose(report.frame_probabilities[frame], np.mean(covering, axis=0), rtol=1e-6)
    assert (
        report.frame_labels[17]
        == ("full-gait", "full-standing", "partial-gait", "partial-standing")[
            int(report.frame_probabilities[17].argmax())
        ]
    )
    with pytest.raises(GaderError, match="frame_label_windows"):
        DetectorConfig(frame_label_windows="longest")


def probabilities_of(by_window, positions):
    return np.array([by_window[p] for p in positions], np.float32)  # [m, 4]


@pytest.mark.parametrize("seed", range(3))
def test_window_pooling_is_the_max_over_each_windows_own_columns_for_any_length(seed):
    from gader.detector import pool_spans

    rng = np.random.default_rng(seed)
    lengths = [int(t) for t in rng.integers(1, 60, size=3)]  # three sequences, padded to the longest
    features = torch.full((3, 4, 2, max(lengths)), 1e6)  # padding that must never be read
    for row, frames in enumerate(lengths):
        features[row, :, :, :frames] = torch.from_numpy(rng.normal(size=(4, 2, frames)).astype(np.float32))
    spans, owner = [], []
    for row, frames in enumerate(lengths):
        for _ in range(12):
            start = int(rng.integers(0, frames))
            spans.append((start, int(rng.integers(start + 1, frames + 1))))
            owner.append(row)
    pooled = pool_spans(features, torch.tensor(owner), torch.tensor(spans))  # [m, 4, 2]
    for i, ((start, end), row) in enumerate(zip(spans, owner, strict=True)):
        assert torch.equal(pooled[i], features[row, :, :, start:end].amax(dim=2)), (start, end)


def test_frames_no_shortest_window_covers_are_labelled_from_the_windows_that_do():
    positions = [(0, 10), (5, 30)]  # the shortest window stops at frame 9
    probabilities = np.array([[0.1, 0.7, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1]], np.float32)
    report = report_from_windows(30, positions, probabilities, DetectorConfig())
    np.testing.assert_allclose(report.frame_probabilities[:10], np.repeat(probabilities[:1], 10, axis=0))
    np.testing.assert_allclose(report.frame_probabilities[10:], np.repeat(probabilities[1:], 20, axis=0))


def test_recognition_gets_only_the_segment_frames_labelled_full_gait():
    """A 36-frame window with walking in most of it is called gait as a whole; the short windows over its first
    frames see a person standing, so those frames stay out of what GAR embeds (they stay in the segment)."""
    from gader.pipeline import PipelineConfig, route

    config = DetectorConfig(window_lengths=(12, 36), stride=12, merge_gap=0)
    positions = window_positions(36, config)  # (0, 12), (12, 24), (24, 36), (0, 36)
    gait, standing = [0.9, 0.05, 0.03, 0.02], [0.1, 0.85, 0.03, 0.02]
    by_window = {(0, 12): standing, (12, 24): gait, (24, 36): gait, (0, 36): gait}
    report = report_from_windows(36, positions, probabilities_of(by_window, positions), config)
    assert [(s.start, s.end) for s in report.segments] == [(0, 35)] and report.usable
    assert report.frame_labels[:12] == ["full-standing"] * 12
    assert [DETECTOR_CLASSES[c] for c in report.frame_classes] == report.frame_labels
    np.testing.assert_array_equal(report.walking_mask, np.arange(36) >= 12)
    # A frame labelled full-gait outside every segment is not walking to be embedded.
    below = probabilities_of(by_window, positions)
    below[:, 0] = np.minimum(below[:, 0], 0.45)  # every window under the 0.5 score threshold: no segment, ...
    lone = report_from_windows(36, positions, below, config)  # ... though full-gait still wins frames 12-35
    assert not lone.segments and "full-gait" in lone.frame_labels and not lone.walking_mask.any()
    frames, usable = route(36, report, PipelineConfig())
    assert usable and np.array_equal(frames, np.arange(36) >= 12)
    frames, _ = route(36, report, PipelineConfig(trim_to_frame_labels=False))
    assert frames.all()
    # Trimming never turns a usable sequence away: with too few walking frames left, the segments go whole.
    frames, usable = route(36, report, PipelineConfig(min_frames=30))
    assert usable and frames.all()


def test_inference_folds_batch_norm_into_the_convolutions_without_changing_the_probabilities():
    torch.manual_seed(0)
    config = DetectorConfig(extra_rows=(0.08,), dilations=(1, 2, 4, 8, 8), context=23)
    classifier = DHSClassifier(config)
    for norm in classifier.norms:  # statistics and affine terms far from the identity a fresh norm starts as
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.2, 3)
        norm.weight.data.uniform_(0.5, 2)
        norm.bias.data.uniform_(-1, 1)
    classifier.eval()
    dhs = np.random.default_rng(0).random((config.input_channels, 44, 70), dtype=np.float32)
    positions = window_positions(70, config)
    with torch.no_grad():
        unfolded = torch.softmax(
            classifier.classify(classifier.features(torch.from_numpy(dhs)[None]), window_masks(70, positions)), dim=1
        ).numpy()
    detector = GaitDetector(classifier, config)
    np.testing.assert_allclose(detector.window_probabilities(dhs, positions), unfolded, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.inference_network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.classifier.modules())  # what is saved


@pytest.mark.parametrize(
    ("extra_rows", "dilations", "ratio_inputs"),
    [((), (1, 1, 1, 1, 1), False), ((0.08, 0.45), (1, 1, 2, 2, 2), False), ((0.08,), (1, 2, 4, 8, 8), True)],
)
def test_shared_features_classify_each_window_like_a_crop_with_context(extra_rows, dilations, ratio_inputs):
    """One feature pass over the whole DHS equals classifying each window's crop (with its context) alone."""
    torch.manual_seed(0)
    config = DetectorConfig(
        extra_rows=extra_rows, dilations=dilations, ratio_inputs=ratio_inputs, context=sum(dilations)
    )
    classifier = DHSClassifier(config).eval()
    dhs = np.random.default_rng(0).random((config.input_channels, 44, 60), dtype=np.float32)  # [C, W, T]
    positions = [(0, 16), (20, 44), (44, 60)]
    detector = GaitDetector(classifier, config)
    shared = detector.window_probabilities(dhs, positions)
    context = config.receptive_half_width  # exactly the receptive field: the crops see everything that matters
    alone = []
    for start, end in positions:
        left, right = max(0, start - context), min(60, end + context)
        crop = torch.from_numpy(dhs[..., left:right])[None]  # [1, C, W, t]
        window = torch.zeros(1, right - left, dtype=torch.bool)
        window[0, start - left : end - left] = True
        with torch.no_grad():
            alone.append(torch.softmax(classifier(crop, None, window), dim=1).numpy())
    assert np.abs(shared - np.concatenate(alone)).max() < 1e-5


def test_ratio_channels_show_a_box_that_grows_and_a_box_that_does_not():
    frames = 60
    approaching = 0.5 * 1.01 ** np.arange(frames)  # the box grows 1 % a frame: walking towards the camera
    still = np.full(frames, 0.5) + np.random.default_rng(0).normal(0, 0.01, frames)  # noise only
    grow, stay = ratio_channels(approaching, frames, 44), ratio_channels(still, frames, 44)
    assert grow.shape == (3, 44, frames) and (grow[2] == 1).all()
    # the slope of log(ratio): exact for a pure trend away from the ends (which repeat the end values)
    assert np.allclose(grow[0][:, 8:-8], 50 * np.log(1.01), atol=1e-6) and (grow[0] > 0).all()
    assert np.abs(stay[0]).mean() < 0.2 * np.abs(grow[0]).mean()  # 2 % mask noise a frame averages out
    assert (grow[:, 0] == grow[:, 43]).all()  # constant across the width
    unknown = ratio_channels(None, frames, 44)
    assert not unknown.any()  # the "known" flag is 0 too
    with pytest.raises(GaderError, match="frames"):
        ratio_channels(approaching[:-1], frames, 44)


def test_ratio_inputs_are_appended_and_training_blanks_some_of_them():
    config = DetectorConfig(extra_rows=(0.08,), ratio_inputs=True)
    silhouettes = np.zeros((30, 64, 44), np.uint8)
    silhouettes[:, 20:, 15:30] = 255
    with_ratios = dhs_of(silhouettes, config, np.linspace(0.5, 0.8, 30))
    assert with_ratios.shape == (config.input_channels, 44, 30) == (5, 44, 30)
    assert (with_ratios[4] == 1).all() and not dhs_of(silhouettes, config)[2:].any()
    assert np.array_equal(with_ratios[:2], dhs_of(silhouettes, DetectorConfig(extra_rows=(0.08,))))
    assert not without_ratios(with_ratios)[2:].any() and with_ratios[4].all()  # a copy: the input is untouched
    item = LabelledDHS(with_ratios, np.zeros(30, np.int64), "synthetic", "s")
    rng = np.random.default_rng(0)
    windows, _ = sample_windows([item], 400, (8, 16), rng, balanced=False, blank_ratios=0.25)
    blanked = np.mean([not crop[4].any() for crop, _first, _last in windows])
    assert 0.15 < blanked < 0.35
    detector = GaitDetector(DHSClassifier(config).eval(), config)
    assert len(detector.detect(silhouettes, np.linspace(0.5, 0.8, 30)).frame_labels) == 30
    assert len(detector.detect(silhouettes).frame_labels) == 30  # no ratios: still a report


def test_a_clip_gets_the_ratio_channels_of_its_own_frames():
    """A short clip cut from a sequence's input must be what dhs_of makes from the clip's frames and ratios alone
    (a short upload): the trend and size channels of the whole sequence carry frames around the clip. The
    sampler's short training clips and eval-detector's short-clip report both cut with clip_of."""
    from gader.detector import clip_of

    config = DetectorConfig(extra_rows=(0.08,), ratio_inputs=True)
    rng = np.random.default_rng(3)
    silhouettes = ((rng.random((50, 64, 44)) > 0.5) * 255).astype(np.uint8)
    ratios = 0.4 * 1.02 ** np.arange(50) * rng.uniform(0.98, 1.02, 50)  # approaching, with mask noise
    whole = dhs_of(silhouettes, config, ratios)
    for start, end in ((20, 28), (0, 3), (45, 50), (10, 11)):
        alone = dhs_of(silhouettes[start:end], config, ratios[start:end])
        assert np.allclose(clip_of(whole, start, end, True), alone, atol=1e-5)
    assert not np.allclose(whole[..., 20:28], dhs_of(silhouettes[20:28], config, ratios[20:28]), atol=1e-3)
    unknown = dhs_of(silhouettes, config)  # no ratios: channels stay zero, as a clip uploaded without them
    assert np.array_equal(clip_of(unknown, 5, 9, True), dhs_of(silhouettes[5:9], config))
    plain = DetectorConfig(extra_rows=(0.08,))
    assert np.array_equal(clip_of(dhs_of(silhouettes, plain), 5, 9, False), dhs_of(silhouettes[5:9], plain))
    item = LabelledDHS(whole, np.zeros(50, np.int64), "synthetic", "s")
    windows, _ = sample_windows(
        [item], 200, (16, 24), rng, balanced=False, context=8, short_share=0.5, short_lengths=(2, 6), ratio_inputs=True
    )
    short = [crop for crop, first, last in windows if last - first <= 6]
    assert short and all(abs(np.median(crop[-2, 0])) < 1e-6 for crop in short)  # sized against its own median
    for crop in short:  # each is some clip of the sequence, with channels recomputed on it alone
        length = crop.shape[-1]
        starts = [s for s in range(50 - length + 1) if np.array_equal(whole[:2, :, s : s + length], crop[:2])]
        assert any(np.allclose(crop, clip_of(whole, s, s + length, True), atol=1e-6) for s in starts)


def test_training_holds_the_feet_rows_still_in_a_share_of_the_windows():
    frames, width = 40, 44
    dhs = np.zeros((3, width, frames), np.float32)
    for t in range(frames):  # every row moves: one lit column that walks across the width
        dhs[:, t % width, t] = 1.0
    rng = np.random.default_rng(0)
    still = hold_still(dhs, (1, 2), rng)
    assert np.array_equal(still[0], dhs[0]) and dhs[1].any(axis=0).all()  # other rows and the input untouched
    for channel in (1, 2):
        lit = np.flatnonzero(still[channel].any(axis=1))
        assert len(lit) == 1 and still[channel].any(axis=0).sum() > frames // 2  # one column, mostly not a hole
    item = LabelledDHS(dhs, np.zeros(frames, np.int64), "synthetic", "s")
    windows, labels = sample_windows([item], 400, (8, 16), rng, balanced=False, still_channels=(1, 2), still_share=0.3)
    held = np.mean([crop[1].any(axis=1).sum() <= 1 and crop[0].any(axis=1).sum() > 1 for crop, _f, _l in windows])
    assert 0.2 < held < 0.4 and (labels == 0).all()  # labels unchanged


def test_training_draws_a_share_of_whole_short_clips_without_context():
    frames = 60
    item = LabelledDHS(np.ones((2, 44, frames), np.float32), np.zeros(frames, np.int64), "synthetic", "s")
    rng = np.random.default_rng(0)
    windows, _ = sample_windows(
        [item], 400, (8, 16), rng, balanced=False, context=10, short_share=0.25, short_lengths=(1, 3)
    )
    short = [(crop, first, last) for crop, first, last in windows if last - first <= 3]
    assert 0.15 < len(short) / len(windows) < 0.35
    # a short clip is the whole crop (no context around it); every other window carries its context
    assert all(first == 0 and last == crop.shape[-1] for crop, first, last in short)
    assert {last - first for _crop, first, last in short} == {1, 2, 3}
    longer = [(crop, first, last) for crop, first, last in windows if last - first > 3]
    assert all(8 <= last - first <= 16 and crop.shape[-1] > last - first for crop, first, last in longer)
    # off: the windows the code before the option drew from the same seed (recorded with it), so old runs replay
    replay, _ = sample_windows([item], 6, (8, 16), np.random.default_rng(1), balanced=False, context=10)
    recorded = [(32, 10, 22), (26, 10, 24), (25, 7, 15), (27, 10, 25), (30, 10, 20), (35, 10, 25)]
    assert [(crop.shape[-1], first, last) for crop, first, last in replay] == recorded


def test_training_window_ranges_are_checked(tmp_path):
    config = tmp_path / "detector.toml"
    config.write_text('id = "d"\n')
    assert load_detector_config(config, ["short_range=[2, 9]"]).short_range == (2, 9)
    for bad in ("[0, 9]", "[9, 2]", "[4]", "[1.5, 4]", "4"):
        for key in ("window_range", "short_range"):
            with pytest.raises(GaderError, match=f"{key} must be \\[shortest, longest\\] frames"):
                load_detector_config(config, [f"{key}={bad}"])


def test_still_rows_must_be_rows_of_the_detector(tmp_path):
    config = tmp_path / "detector.toml"
    config.write_text('id = "d"\nstill_rows = [0.08, 0.5]\n[detector]\nextra_rows = [0.08, 0.45]\n')
    with pytest.raises(GaderError, match=r"still_rows \[0.5\] are not rows of the detector"):
        load_detector_config(config)
    config.write_text('id = "d"\nstill_rows = [0.08]\nstill_rows_share = 1.5\n[detector]\nextra_rows = [0.08]\n')
    with pytest.raises(GaderError, match="still_rows_share"):
        load_detector_config(config)
    with pytest.raises(GaderError, match="still_rows_share"):
        load_detector_config(config, ["still_rows_share=often"])
    for key in ("synthetic_share", "derived_share", "blank_ratios", "short_share"):  # the same check for every share
        with pytest.raises(GaderError, match=f"{key} must be a number in"):
            load_detector_config(config, ["still_rows_share=0.1", f"{key}=-0.5"])


def test_overrides_set_detector_settings_inside_their_section(tmp_path):
    config = tmp_path / "detector.toml"
    config.write_text('id = "d"\n[detector]\nextra_rows = [0.08]\n')
    loaded = load_detector_config(config, ["detector.stride=2", "detector.channels=[8, 8, 8, 8, 16]"])
    assert loaded.detector.stride == 2 and loaded.detector.channels == (8, 8, 8, 8, 16)
    assert loaded.detector.extra_rows == (0.08,)  # the file's own settings stay
    with pytest.raises(GaderError, match="unknown key"):  # a section the detector config does not have
        load_detector_config(config, ["optim.lr=0.1"])
    with pytest.raises(GaderError, match="unknown setting"):
        load_detector_config(config, ["detector.kernel=5"])


def test_a_training_context_narrower_than_the_receptive_field_is_refused():
    with pytest.raises(GaderError, match="receptive field"):
        DetectorConfig(dilations=(1, 1, 2, 3, 3), context=8)  # sees +-10 frames


@pytest.mark.shared_data
def test_real_derived_partial_and_standing_examples(casia_train):
    record = open_dataset(casia_train).load("002/nm-01/090")
    rng = np.random.default_rng(0)
    partial = real_partial(record, rng)
    assert partial is not None and not partial.labels.full_body.any() and partial.labels.gait.all()
    # The cut body is stretched to the full aligned height: its knee row crosses the trunk, a wide band.
    assert (
        double_helical_signature(partial.silhouettes).mean() > 1.5 * double_helical_signature(record.silhouettes).mean()
    )
    standing = real_standing(record, rng)
    assert standing is not None and not standing.labels.gait.any() and standing.labels.full_body.all()
    moving = np.abs(np.diff(double_helical_signature(record.silhouettes), axis=1)).mean()
    still = np.abs(np.diff(double_helical_signature(standing.silhouettes), axis=1)).mean()
    assert still < 0.5 * moving


@pytest.mark.parametrize("seed", range(4))
def test_a_contaminated_real_walk_keeps_a_labelled_stretch_of_the_walk(casia_train, seed):
    record = open_dataset(casia_train).load("002/bg-01/054")
    cut = contaminated_walk(record, np.random.default_rng(seed), 0.5)
    assert cut is not None and cut.subject == "002" and cut.condition == "bg-01"
    walking = cut.labels.gait & cut.labels.full_body
    standing = ~cut.labels.gait & cut.labels.full_body
    partial = cut.labels.gait & ~cut.labels.full_body
    assert walking.sum() == record.frames - round(0.5 * record.frames) and standing.any() and partial.any()
    assert cut.frames <= record.frames  # pretreatment may drop an empty cut frame, never adds one
    # The walk is one unbroken run of the original frames, with standing on one side and the partial body on the other.
    runs = np.flatnonzero(np.diff(walking.astype(int)))
    assert len(runs) == 2
    first = int(np.flatnonzero(walking)[0])
    matches = [
        s
        for s in range(record.frames - walking.sum() + 1)
        if np.array_equal(record.silhouettes[s : s + walking.sum()], cut.silhouettes[walking])
    ]
    assert matches, "the kept walk is not a stretch of the original frames"
    assert standing[:first].all() or partial[:first].all()
    assert (
        contaminated_walk(
            record.__class__("002", "bg-01", "054", record.silhouettes[:1]), np.random.default_rng(0), 0.5
        )
        is None
    )


def _train(tmp_path, synth_wild, casia_train=None, extra: str = ""):
    real = f'real = ["{casia_train}"]\nreal_max_sequences = 40' if casia_train else ""
    config = tmp_path / "detector.toml"
    config.write_text(
        f'id = "tiny-detector"\nsynthetic = ["{synth_wild}"]\n{real}\nval_subjects = 1\niterations = 60\nbatch = 32\n'
        + extra
    )
    result = subprocess.run(
        [sys.executable, "-m", "gader", "train", "detector", "--config", str(config), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "run" / "detector"


def test_train_evaluate_and_detect_from_the_cli(tmp_path, synth_wild, casia_train):
    # the shipped recipe's options: windows mostly from the synthetic scenes, feet rows held still in some,
    # rows beside the knee row, ratio inputs, dilated layers
    extra = (
        "synthetic_share = 0.7\nstill_rows = [0.08]\nstill_rows_share = 0.2\n"
        "[detector]\nextra_rows = [0.08, 0.45]\nratio_inputs = true\n"
        "dilations = [1, 2, 4, 8, 8]\ncontext = 23\n"
    )
    detector_dir = _train(tmp_path, synth_wild, casia_train, extra)
    card = json.loads((detector_dir / "detector.json").read_text())
    assert card["config"]["window_lengths"] and card["config"]["ratio_inputs"]
    assert set(card["metrics"]) >= {"all", "synthetic", "real", "synthetic, no ratios"}
    assert card["config"]["extra_rows"] == [0.08, 0.45] and card["training"]["config"]["synthetic_share"] == 0.7
    assert card["training"]["config"]["still_rows"] == [0.08]
    for group in card["metrics"].values():
        assert {"window_accuracy", "frame_accuracy", "sequence_accuracy", "sequence_accuracy_whole_dhs"} <= set(group)
        assert np.array(group["confusion"]["rows_truth"]).shape == (4, 4)
    evaluation = subprocess.run(
        [
            sys.executable,
            "-m",
            "gader",
            "eval-detector",
            "--model",
            str(detector_dir),
            "--data",
            str(synth_wild),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout)["all"]["sequences"] == 8
    # --held-out: only the people the training run held out (val_subjects = 1): the card's synthetic numbers
    held_out = subprocess.run(
        [*evaluation.args, "--held-out", "1"], capture_output=True, text=True, timeout=600, check=True
    )
    report = json.loads(held_out.stdout)
    assert report["synthetic"]["sequences"] == card["metrics"]["synthetic"]["sequences"] < 8
    # The table, piped as into a log: whole headers and row names, not folded at 80 columns
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    as_table = [arg for arg in held_out.args if arg != "--json"]
    table = subprocess.run(as_table, capture_output=True, text=True, timeout=600, check=True, env=environment).stdout
    assert "sequences" in table and "synthetic, no ratios" in table and "…" not in table, table
    assert "short clips" in table and "not walking, 12 frames" in table, table
    # no random windows: the same numbers
    for key in ("frame_accuracy", "sequence_accuracy", "walking_frames", "short_clips"):
        assert report["synthetic"][key] == card["metrics"]["synthetic"][key], key
    short = report["synthetic"]["short_clips"]
    assert short["frames"] == [4, 8, 12] and set(short["clips"]) == {"walking", "not_walking"}
    assert short["clips"]["walking"][0] >= short["clips"]["walking"][-1] > 0  # fewer stretches hold longer clips
    assert all(0 <= share <= 100 for kind in ("walking", "not_walking") for share in short[f"{kind}_usable"])
    walking = report["synthetic"]["walking_frames"]
    assert set(walking) == {"segments", "walking_mask"}
    assert all(0 <= value <= 100 for scores in walking.values() for value in scores.values())
    # --set changes an inference setting without retraining: frame labels from every window's vote leave the
    # windows' own classes alone; no window reaches a full-gait score of 1, so no segment is found (a softmax
    # saturates to 1.0 in float32 only past a logit margin of about 17); a network setting is refused
    every_window = subprocess.run(
        [*held_out.args, "--set", "frame_label_windows=all"], capture_output=True, text=True, timeout=600, check=True
    )
    assert json.loads(every_window.stdout)["synthetic"]["window_accuracy"] == report["synthetic"]["window_accuracy"]
    unreachable = subprocess.run(
        [*held_out.args, "--set", "score_threshold=1"], capture_output=True, text=True, timeout=600, check=True
    )
    assert walking["segments"]["recall"] > 0
    assert json.loads(unreachable.stdout)["synthetic"]["walking_frames"]["segments"] == {"precision": 0, "recall": 0}
    refused = subprocess.run([*held_out.args, "--set", "channels=[8, 8, 8, 8, 8]"], capture_output=True, text=True)
    assert refused.returncode != 0 and "only inference settings" in refused.stderr
    sequence = next((synth_wild / "sequences").rglob("*.npz"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gader",
            "detect",
            str(sequence),
            "--detector",
            str(detector_dir),
            "--json",
            "--plot",
            str(tmp_path / "dhs.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"usable", "gait_fraction", "segments", "frame_labels"}
    assert isinstance(report["usable"], bool) and 0 <= report["gait_fraction"] <= 1
    assert len(report["frame_labels"]) == report["frames"]
    assert (tmp_path / "dhs.png").stat().st_size > 10_000


def test_detector_report_is_consistent():
    torch.manual_seed(0)
    detector = GaitDetector(DHSClassifier(DetectorConfig()), DetectorConfig(score_threshold=0.0, min_gait_fraction=0.0))
    report = detector.detect((np.random.default_rng(0).random((40, 64, 64)) > 0.5).astype(np.uint8) * 255)
    assert report.frames == 40 and len(report.frame_labels) == 40
    assert report.gait_fraction == pytest.approx(report.gait_mask.mean())
    assert all(0 <= s.start <= s.end < 40 for s in report.segments)
    assert np.allclose(report.frame_probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert report.windows and all(w[2] == FULL_GAIT for w in report.windows)
    with pytest.raises(GaderError, match="empty"):
        detector.detect(np.zeros((0, 64, 44), np.uint8))


@pytest.mark.parametrize("frames", [5, 16, 57, 130])
def test_sliding_window_pooling_equals_masked_pooling(frames):
    from gader.detector import DetectorConfig, DHSClassifier, pool_windows, window_masks, window_positions

    torch.manual_seed(frames)
    config = DetectorConfig()
    network = DHSClassifier(config).eval()
    features = torch.randn(1, 48, 11, frames)
    positions = window_positions(frames, config)
    with torch.no_grad():
        masked = network.classify(features, window_masks(frames, positions))
        sliding = network.mlp(pool_windows(features, positions).flatten(1))
    assert torch.equal(masked, sliding)


def test_a_second_stage_starts_from_a_trained_detector_with_the_same_network(tmp_path):
    from gader.model_io import save_detector
    from gader.training.detector_trainer import initial_weights

    torch.manual_seed(0)
    config = DetectorConfig(extra_rows=(0.45,), ratio_inputs=True)
    first = GaitDetector(DHSClassifier(config), config)
    save_detector(tmp_path / "first", first, {"id": "first"})
    weights = initial_weights(str(tmp_path / "first"), DetectorConfig(extra_rows=(0.45,), ratio_inputs=True, stride=2))
    reference = first.classifier.state_dict()
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in reference)
    with pytest.raises(GaderError, match="channels, dilations"):
        initial_weights(
            str(tmp_path / "first"),
            DetectorConfig(extra_rows=(0.45,), ratio_inputs=True, channels=(8,) * 5, dilations=(1, 1, 2, 2, 2)),
        )
    with pytest.raises(GaderError, match="ratio_inputs"):
        initial_weights(str(tmp_path / "first"), DetectorConfig(extra_rows=(0.45,)))


@pytest.mark.parametrize("width", [44, 11])
def test_halving_the_width_is_a_2x1_max_pool(width):
    import torch.nn.functional as F

    from gader.detector import halve_width

    x = torch.randn(2, 5, width, 9)
    assert torch.equal(halve_width(x), F.max_pool2d(x, (2, 1)))


def test_pooling_a_batch_of_sequences_reads_only_each_windows_own_columns():
    from gader.detector import pool_spans

    torch.manual_seed(0)
    features = torch.randn(2, 3, 4, 30)
    features[1, :, :, 20:] = 100.0  # past the second sequence's end (20 frames): must never be read
    spans = torch.tensor([[0, 16], [10, 30], [14, 30], [0, 16], [4, 20], [19, 20]])
    owner = torch.tensor([0, 0, 0, 1, 1, 1])
    pooled = pool_spans(features, owner, spans)  # [6, 3, 4]
    for i, ((start, end), sequence) in enumerate(zip(spans.tolist(), owner.tolist(), strict=True)):
        assert torch.equal(pooled[i], features[sequence, :, :, start:end].amax(dim=2)), i


def test_inference_settings_change_without_retraining_and_network_settings_are_refused():
    from gader.detector import with_inference_settings

    config = DetectorConfig(extra_rows=(0.08,))
    changed = with_inference_settings(config, ["frame_label_windows=all", "window_lengths=[16, 32]", "stride=2"])
    assert changed.frame_label_windows == "all" and changed.window_lengths == (16, 32) and changed.stride == 2
    assert changed.extra_rows == (0.08,) and config.stride == 4  # the rest kept, the original untouched
    with pytest.raises(GaderError, match="only inference settings"):
        with_inference_settings(config, ["channels=[8, 8, 8, 8, 8]"])
    with pytest.raises(GaderError, match="frame_label_windows must be one of"):
        with_inference_settings(config, ["frame_label_windows=most"])
    with pytest.raises(GaderError, match="key=value"):
        with_inference_settings(config, ["stride"])
    for wrong in ("stride=often", "window_lengths=16", "window_lengths=[16, 2.5]", "score_threshold=high"):
        with pytest.raises(GaderError, match="must be like"):
            with_inference_settings(config, [wrong])
    with pytest.raises(GaderError, match=r"must be like window_lengths=\[16, 24, 36\] \(a TOML value\)") as raised:
        with_inference_settings(config, ["window_lengths=16,24"])
    suggested = str(raised.value).split("must be like ")[1].split(" (")[0]
    assert with_inference_settings(config, [suggested]).window_lengths == (16, 24, 36)  # what it suggests works
    for wrong, message in (
        ("window_lengths=[16, -2]", "positive frame counts"),
        ("window_lengths=[]", "positive frame counts"),
        ("stride=0", "positive frame counts"),
        ("nms_iou=-1", r"nms_iou must be in \[0, 1\]"),
        ("score_threshold=1.5", r"score_threshold must be in \[0, 1\]"),
        ("min_gait_frames=-1", "must not be negative"),
    ):
        with pytest.raises(GaderError, match=message):
            with_inference_settings(config, [wrong])
    assert with_inference_settings(config, ["score_threshold=1"]).score_threshold == 1


def test_a_second_stage_config_takes_its_base_and_sets_what_changes(tmp_path):
    (tmp_path / "first.toml").write_text(
        'id = "d"\niterations = 6000\nlr = 2e-3\n[detector]\nextra_rows = [0.08]\nchannels = [8, 8, 8, 8, 16]\n'
    )
    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "second.toml").write_text(
        'base = "../first.toml"\ninit = "runs/d/detector"\niterations = 1500\n[detector]\nstride = 2\n'
    )
    second = load_detector_config(stages / "second.toml", ["lr=3e-4"])
    assert (second.id, second.init, second.iterations, second.lr) == ("d", "runs/d/detector", 1500, 3e-4)
    assert second.detector.extra_rows == (0.08,) and second.detector.channels == (8, 8, 8, 8, 16)
    assert second.detector.stride == 2  # the section merges key by key
    (tmp_path / "first.toml").write_text('id = "d"\nwindows = [8, 48]\n')
    with pytest.raises(GaderError, match=r"second\.toml \(or its base .*first\.toml\): unknown key\(s\) windows"):
        load_detector_config(stages / "second.toml")
    # the shipped second stage: the first stage's settings, its own on top
    shipped = Path(__file__).resolve().parents[1] / "configs" / "detector"
    first, second = (
        load_detector_config(shipped / name) for name in ("gader-detector.toml", "gader-detector-short-clips.toml")
    )
    assert (second.init, second.short_share, second.short_range) == ("runs/gader-detector/detector", 0.1, (4, 16))
    assert second.detector == first.detector and second.still_rows == first.still_rows and first.short_share == 0
    (tmp_path / "loop.toml").write_text('base = "loop.toml"\nid = "d"\n')
    with pytest.raises(GaderError, match="leads back to itself"):
        load_detector_config(tmp_path / "loop.toml")
    (tmp_path / "missing.toml").write_text('base = "nowhere.toml"\nid = "d"\n')
    with pytest.raises(GaderError, match=r"nowhere\.toml: no such config file"):
        load_detector_config(tmp_path / "missing.toml")


def test_longest_run_finds_the_longest_stretch():
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == (4, 3)
    assert longest_run(np.array([1, 1, 0], bool)) == (0, 2)
    assert longest_run(np.array([0, 1, 1, 1], bool)) == (1, 3)
    assert longest_run(np.zeros(5, bool)) == (0, 0) and longest_run(np.ones(4, bool)) == (0, 4)
