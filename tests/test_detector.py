"""The DHS gait detector: windows, NMS and merging by hand, training on real files, the CLI, the pipeline."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gader.data import open_dataset
from gader.detector import (
    FULL_GAIT,
    DetectorConfig,
    DHSClassifier,
    GaitDetector,
    suppress_and_merge,
    window_positions,
)
from gader.dhs import double_helical_signature, knee_row
from gader.errors import GaderError
from gader.training.detector_data import real_partial, real_standing


def test_dhs_is_the_knee_row_over_time():
    frames = np.zeros((5, 64, 44), np.uint8)
    frames[:, knee_row(64), 10:20] = 255
    dhs = double_helical_signature(frames)
    assert dhs.shape == (44, 5) and dhs[10:20].min() == 1.0 and dhs[:10].max() == 0.0
    assert knee_row(64) == 48  # a quarter of the height from the bottom
    with pytest.raises(GaderError):
        double_helical_signature(frames, band=0)


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


@pytest.mark.parametrize(("extra_rows", "dilations"), [((), (1, 1, 1, 1, 1)), ((0.08, 0.45), (1, 1, 2, 2, 2))])
def test_shared_features_classify_each_window_like_a_crop_with_context(extra_rows, dilations):
    """One feature pass over the whole DHS equals classifying each window's crop (with its context) alone."""
    torch.manual_seed(0)
    config = DetectorConfig(extra_rows=extra_rows, dilations=dilations)
    classifier = DHSClassifier(config).eval()
    dhs = np.random.default_rng(0).random((1 + len(extra_rows), 44, 60), dtype=np.float32)  # [C, W, T]
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
    # the shipped recipe's options: windows mostly from the synthetic scenes, two rows beside the knee row
    extra = "synthetic_share = 0.7\n[detector]\nextra_rows = [0.08, 0.45]\n"
    detector_dir = _train(tmp_path, synth_wild, casia_train, extra)
    card = json.loads((detector_dir / "detector.json").read_text())
    assert card["config"]["window_lengths"] and set(card["metrics"]) >= {"all", "synthetic", "real"}
    assert card["config"]["extra_rows"] == [0.08, 0.45] and card["training"]["config"]["synthetic_share"] == 0.7
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
