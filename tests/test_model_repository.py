"""The Triton model repository committed in model_repository/ (mounted by docker-compose) must be the export of
the shipped models: retraining or recalibrating a shipped model without re-running ``gader export`` fails here."""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from gader.detector import DetectorConfig
from gader.export import TRITON_TEMPLATES
from gader.model_io import ZOO

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


def test_committed_gar_export_matches_the_shipped_model_and_template():
    version = REPOSITORY / "gar_casia_b_default" / "1"
    assert (version / "model.py").read_text() == (TRITON_TEMPLATES / "gar_model.py").read_text()
    exported = json.loads((version / "card.json").read_text())
    shipped = json.loads((ZOO / "casia-b-default" / "model.json").read_text())
    for key in ("id", "gar", "embedding_shape", "input_size", "operating_points", "training"):
        assert exported[key] == shipped[key], key
    _assert_same_weights(version / "model.pt", ZOO / "casia-b-default" / "model.safetensors", "embedder.")


def test_committed_detector_export_matches_the_shipped_detector_and_template():
    version = REPOSITORY / "gait_detector" / "1"
    assert (version / "model.py").read_text() == (TRITON_TEMPLATES / "detector_model.py").read_text()
    exported = json.loads((version / "card.json").read_text())
    shipped = json.loads((ZOO / "gader-detector" / "detector.json").read_text())
    assert exported == shipped
    config = DetectorConfig.from_dict(shipped["config"])
    channels, width = config.input_channels, config.width  # DHS rows (+ ratio channels)
    assert f"dims: [ {channels}, {width}, -1 ]" in (version.parent / "config.pbtxt").read_text()  # the DHS input
    _assert_same_weights(version / "model.pt", ZOO / "gader-detector" / "detector.safetensors", "classifier.")


def test_committed_detector_graph_takes_the_templates_inputs_and_matches_the_local_detector():
    """The traced graph is called the way model.py calls it (a padded batch, window spans and their owners) and
    gives the in-process detector's window probabilities: an export from before a change of that interface
    fails here, not in a running Triton."""
    from gader.detector import window_positions
    from gader.model_io import load_detector

    detector = load_detector("gader-detector")[0]
    network = torch.jit.load(REPOSITORY / "gait_detector" / "1" / "model.pt").eval()
    rng = np.random.default_rng(0)
    lengths = (70, 45)
    signatures = [
        rng.random((detector.config.input_channels, detector.config.width, t)).astype(np.float32) for t in lengths
    ]
    batch = np.zeros((2, *signatures[0].shape[:2], max(lengths)), np.float32)
    valid = np.zeros((2, max(lengths)), bool)
    spans, owner, expected = [], [], []
    for row, signature in enumerate(signatures):
        batch[row, :, :, : signature.shape[-1]] = signature
        valid[row, : signature.shape[-1]] = True
        positions = window_positions(signature.shape[-1], detector.config)
        spans += positions
        owner += [row] * len(positions)
        expected.append(detector.window_probabilities(signature, positions))
    with torch.no_grad():
        logits = network(torch.from_numpy(batch), torch.from_numpy(valid), torch.tensor(spans), torch.tensor(owner))
    probabilities = torch.softmax(logits, dim=1).numpy()
    np.testing.assert_allclose(probabilities, np.concatenate(expected), atol=1e-5)


def _assert_same_weights(traced_file: Path, shipped_file: Path, prefix: str) -> None:
    """The traced module's tensors (its keys: ``prefix`` + the shipped model's keys) equal the shipped ones."""
    traced = torch.jit.load(traced_file).state_dict()
    weights = load_file(shipped_file)
    assert {key.removeprefix(prefix) for key in traced} == set(weights)
    for key, value in traced.items():
        assert torch.equal(value, weights[key.removeprefix(prefix)]), key
