"""Run a real Triton Inference Server on this machine: the ``tritonserver`` binary that the nvidia-pytriton
wheel ships (python backend only). A developer convenience and the tests' fixture (``gader triton-local``).

What it takes (measured on the fleet's CPU machines):
- the binary and its backends copied to a work directory, with the Python 3.11 backend stub placed in
  ``backends/python/``;
- ``LD_LIBRARY_PATH`` starting with this Python's own LIBDIR (otherwise the stub loads Debian's libpython
  and fails), then the wheel's ``nvidia_pytriton.libs``;
- numpy < 2 in the environment (with numpy 2 the python backend silently returns empty outputs). The stub
  embeds the base interpreter in isolated mode: it ignores PYTHONPATH and virtual environments and reads the
  base installation's site-packages (which may hold numpy 2), but its ``sys.path`` starts with the working
  directory. The server therefore runs in a directory of links to this environment's packages, so the
  stub imports this environment's numpy 1.x and torch first;
- on hosts without CUDA, the repository's ``KIND_GPU`` instance groups rewritten to ``KIND_CPU`` in the
  work directory's copy (the repository itself stays as production wants it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gader.errors import GaderError


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError:
        raise GaderError("nvidia-pytriton is not installed (it carries the tritonserver binary)") from None
    return Path(pytriton.__file__).resolve().parent


def prepare(repository: str | Path, workdir: str | Path, device: str = "auto") -> tuple[Path, Path]:
    """Lay out the server and a copy of the repository in ``workdir``; returns (server dir, models dir)."""
    import torch

    root = _pytriton_root()
    workdir = Path(workdir)
    server = workdir / "tritonserver"
    if server.exists():
        shutil.rmtree(server)
    shutil.copytree(root / "tritonserver", server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise GaderError(f"the pytriton wheel has no python backend stub for Python {version}")
    shutil.copy2(stub, server / "backends" / "python" / "triton_python_backend_stub")
    models = workdir / "models"
    if models.exists():
        shutil.rmtree(models)
    shutil.copytree(Path(repository), models)
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if cpu:
        for config in models.glob("*/config.pbtxt"):
            config.write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))
    return server, models


def package_links(workdir: Path) -> Path:
    """A directory of links to every package of this environment's site-packages (the stub's cwd)."""
    links = workdir / "site"
    if links.exists():
        shutil.rmtree(links)
    links.mkdir(parents=True)
    for site in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in Path(site).iterdir():
            target = links / entry.name
            if not target.exists() and not entry.name.startswith(("_distutils_hack", "__pycache__")):
                target.symlink_to(entry)
    return links


def environment() -> dict[str, str]:
    libraries = [sysconfig.get_config_var("LIBDIR") or ""]
    wheel_libraries = _pytriton_root().parent / "nvidia_pytriton.libs"
    if wheel_libraries.is_dir():
        libraries.append(str(wheel_libraries))
    existing = os.environ.get("LD_LIBRARY_PATH")
    if existing:
        libraries.append(existing)
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(libraries)}


@dataclass
class TritonProcess:
    process: subprocess.Popen
    grpc_port: int
    http_port: int
    workdir: Path
    log: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def start(
    repository: str | Path,
    grpc_port: int,
    http_port: int,
    metrics_port: int | None = None,
    workdir: str | Path | None = None,
    device: str = "auto",
    timeout: float = 180,
) -> TritonProcess:
    """Start tritonserver on a model repository and wait until every model is ready."""
    for port in (grpc_port, http_port, metrics_port):
        if port and not _port_free(port):
            raise GaderError(f"port {port} is in use (another tritonserver?)")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="gader-triton-"))
    server, models = prepare(repository, workdir, device)
    log = workdir / "tritonserver.log"
    command = [
        str(server / "bin" / "tritonserver"),
        "--model-repository",
        str(models),
        "--backend-directory",
        str(server / "backends"),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--log-verbose",
        "0",
        "--exit-on-error",
        "true",
    ]
    command += ["--metrics-port", str(metrics_port)] if metrics_port else ["--allow-metrics", "false"]
    handle = log.open("w")
    process = subprocess.Popen(
        command,
        env=environment(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=package_links(workdir),
        start_new_session=True,
    )
    triton = TritonProcess(process, grpc_port, http_port, workdir, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GaderError(f"tritonserver exited ({process.returncode}): {log.read_text()[-3000:]}")
        if triton.ready():
            return triton
        time.sleep(0.25)
    triton.kill()
    raise GaderError(f"tritonserver was not ready within {timeout:.0f} s: {log.read_text()[-3000:]}")
