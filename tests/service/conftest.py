"""Real servers for the service tests: redis-server and `gader serve` processes on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from gader.detector import DetectorConfig, DHSClassifier, GaitDetector
from gader.gar import GAR, GARConfig
from gader.model_io import ModelCard, save_detector, save_model
from service.processes import REPO, RedisServer, Server, free_port, start_redis, start_server
from tests.conftest import IN_CI

__all__ = ["REPO", "Server", "free_port", "start_server"]  # the service tests import these from here


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """A small GAR model and a permissive detector, saved as real model files.

    The weights are random: tests that need a *recognising* model use the shipped one; these check the
    service's mechanics, where an enrolled sequence still finds itself (identical embedding, score 1.0).
    """
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("service-models")
    gar = GAR(GARConfig("gaitbase", {"width": 0.125, "input_height": 32, "input_width": 22}, ratio_attention=True))
    card = ModelCard(id="test-model", gar={}, operating_points={"fmr=1e-2": 0.8, "fmr=1e-3": 0.9, "fmr=1e-4": 0.95})
    save_model(root / "model", gar.embedder(), card)
    # The shipped detector's input layout (rows + ratio channels, dilated layers), permissive thresholds.
    config = DetectorConfig(
        score_threshold=0.0,
        min_gait_fraction=0.0,
        min_gait_frames=1,
        extra_rows=(0.08, 0.45),
        ratio_inputs=True,
        dilations=(1, 2, 4, 8, 8),
        context=23,
    )
    save_detector(root / "detector", GaitDetector(DHSClassifier(config).eval(), config), {"id": "test-detector"})
    return root / "model", root / "detector"


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (make test installs it: scripts/install-services.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    running = start_redis(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def server(tmp_path, models) -> Iterator[Server]:
    running = start_server(tmp_path / "data", models)
    yield running
    running.stop()
