"""Real service processes on free ports: ``redis-server`` and ``gader serve``, started and waited for.

The test suite and the benchmarks run the real thing through these helpers (never an in-process fake), so
both measure exactly what a deployment runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s") from None
            time.sleep(0.05)


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_redis(directory: Path, binary: str | None = None, password: str | None = None) -> RedisServer:
    """An unpersisted redis-server on a free loopback port (its files, if any, under ``directory``), with
    ``password`` required when given (the URL then carries it, as a deployment's GADER_STORE does)."""
    binary = binary or shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (scripts/install-services.sh installs it)")
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
            str(directory),
            *(["--requirepass", password] if password else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    credentials = f":{password}@" if password else ""
    return RedisServer(f"redis://{credentials}127.0.0.1:{port}/0", process)


@dataclass
class Server:
    """A running ``gader serve`` process; ``admin_key`` is the key it printed on first start, if any."""

    url: str
    admin_key: str | None
    process: subprocess.Popen
    env: dict[str, str]
    log: Path

    def client(self, key: str | None = None, timeout: float = 120) -> httpx.Client:
        headers = {"X-API-Key": key or self.admin_key or ""}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


def start_server(
    data_dir: Path,
    models: tuple[Path | str, Path | str],
    store: str = "sqlite",
    extra: dict | None = None,
    log: Path | None = None,
    ready_timeout: float = 120,
) -> Server:
    """Start ``gader serve`` (model, detector) on free ports and return once ``/readyz`` answers 200."""
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
    command = [sys.executable, "-m", "gader", "serve", "--port", str(port)]  # gRPC too if GADER_GRPC_PORT is set
    log = log or data_dir.parent / f"server-{port}.log"
    handle = log.open("w")
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
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
