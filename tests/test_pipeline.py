"""The GADER pipeline: detection routes gait frames to GAR and the rest to the RGB branch; fusion rule."""

import numpy as np
import pytest
import torch

from gader.data import open_dataset
from gader.detector import DetectorConfig, DHSClassifier, GaitDetector
from gader.gar import GAR, GARConfig
from gader.model_io import ModelCard, load_detector, load_model, save_detector, save_model
from gader.pipeline import GaderPipeline, PipelineConfig, PipelineResult, fuse, part_cosine, route


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("artifacts")
    gar = GAR(
        GARConfig(
            "gaitset", {"width": 0.25, "input_height": 32, "input_width": 22}, ratio_attention=True, distillation=True
        )
    )
    save_model(root / "model", gar.embedder(), ModelCard(id="test-gar", gar={}), gar.rgb)
    config = DetectorConfig(score_threshold=0.0, min_gait_fraction=0.0, min_gait_frames=1)
    save_detector(root / "detector", GaitDetector(DHSClassifier(config).eval(), config), {"id": "test-detector"})
    return root


def test_saved_models_load_back(artifacts):
    model = load_model(artifacts / "model", with_rgb=True)
    assert model.card.embedding_shape == (64, 30) and model.rgb is not None
    detector, card = load_detector(artifacts / "detector")
    assert card["id"] == "test-detector" and detector.config.min_gait_frames == 1


def test_gait_frames_go_to_gar_and_the_rest_to_the_rgb_branch(artifacts, synth_wild):
    pipeline = GaderPipeline.load(artifacts / "model", artifacts / "detector")
    record = open_dataset(synth_wild).load(0)
    result = pipeline.process(record)
    gait, usable = route(record.frames, result.detection, pipeline.config)  # the segments' frames labelled full-gait
    assert usable and gait.any() and not (gait & ~result.detection.gait_mask).any()
    assert result.embedded_frames == int(gait.sum()) > 0
    expected = pipeline.embed_frames(record.select(gait))
    assert np.allclose(result.embedding, expected, atol=1e-6)
    if (~gait).sum() >= 3:
        assert result.appearance is not None and result.appearance_frames == int((~gait).sum())
    plain = GaderPipeline(pipeline.model, pipeline.detector, PipelineConfig(use_detector=False)).process(record)
    assert plain.detection is None and plain.embedded_frames == record.frames
    assert np.allclose(plain.embedding, pipeline.embed_frames(record), atol=1e-6)
    assert set(result.to_dict()) >= {"detection", "embedding_shape", "embedded_frames", "model"}


def test_fusion_rule_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])  # two parts: (1, 0) and (0, 1)
    b = np.array([[1.0, 1.0], [0.0, 0.0]])  # parts: (1, 0) and (1, 0)
    assert part_cosine(a, b) == pytest.approx(0.5)  # (1 + 0) / 2
    both = PipelineResult(None, a, a, 10, 5, "m")
    other = PipelineResult(None, b, -a, 10, 5, "m")
    gait, look = (1 + 0.5) / 2, (1 - 1) / 2
    assert fuse(both, other, 0.8) == pytest.approx(0.8 * gait + 0.2 * look)
    gait_only = PipelineResult(None, b, None, 10, 0, "m")
    assert fuse(both, gait_only) == pytest.approx(gait)
    assert fuse(PipelineResult(None, None, a, 0, 5, "m"), gait_only) is None


def test_a_detection_made_already_is_reused_not_recomputed(artifacts, synth_wild):
    """Pipelines that differ only in what they do with a detection (bench.gader_eval, bench.gader_real) run the
    detector once: the report given is the one routed and returned."""
    from gader.errors import GaderError
    from gader.pipeline import GaderPipeline

    trimmed = GaderPipeline.load(artifacts / "model", artifacts / "detector")
    untrimmed = GaderPipeline.load(
        artifacts / "model", artifacts / "detector", PipelineConfig(trim_to_frame_labels=False)
    )
    record = open_dataset(synth_wild).load(0)
    first = trimmed.process(record)
    again = untrimmed.process(record, first.detection)
    assert again.detection is first.detection
    frames, _ = route(record.frames, first.detection, untrimmed.config)
    assert again.embedded_frames == int(frames.sum())
    assert untrimmed.process(record).detection.to_dict() == first.detection.to_dict()  # what it would have made
    without = GaderPipeline.load(artifacts / "model", artifacts / "detector", PipelineConfig(use_detector=False))
    assert without.process(record, first.detection).detection is None  # a pipeline without a detector ignores it
    shorter = record.select(np.arange(record.frames) < record.frames // 2)  # another sequence's report is refused
    with pytest.raises(GaderError, match="the detection covers"):
        trimmed.process(shorter, first.detection)
