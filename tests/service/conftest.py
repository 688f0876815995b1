"""Real servers for the service tests: redis-server and `gader serve` processes on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from gader.detector import DetectorConfig, DHSClassifier, GaitDetector
from gader.gar import GAR, GARConfig
from gader.model_io import ModelCard, save_detector, save_model
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    config = DetectorConfig(score_threshold=0.0, min_gait_fraction=0.0, min_gait_frames=1)
    save_detector(root / "detector", GaitDetector(DHSClassifier(config).eval(), config), {"id": "test-detector"})
    return root / "model", root / "detector"


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (make test installs it: scripts/install-services.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield RedisServer(url, process)
    process.terminate()
    process.wait(timeout=10)


@dataclass
class Server:
    url: str
    admin_key: str | None
    process: subprocess.Popen
    env: dict[str, str]
    log: Path

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": key or self.admin_key or ""}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


def start_server(
    data_dir: Path, models: tuple[Path, Path], store: str = "sqlite", extra: dict | None = None, log: Path | None = None
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "GADER_DATA_DIR": str(data_dir),
        "GADER_STORE": store,
        "GADER_MODEL": str(models[0]),
        "GADER_DETECTOR": str(models[1]),
        "GADER_DEVICE": "cpu",
        "GADER_INFERENCE_THREADS": "1",
        **(extra or {}),
    }
    log = log or data_dir.parent / f"server-{port}.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gader", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")
    found = re.search(r"(gdr_[A-Za-z0-9_-]+)", log.read_text())
    return Server(url, found.group(1) if found else None, process, env, log)


@pytest.fixture
def server(tmp_path, models) -> Iterator[Server]:
    running = start_server(tmp_path / "data", models)
    yield running
    running.stop()
