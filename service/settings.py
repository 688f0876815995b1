"""Service configuration: environment variables with the ``GADER_`` prefix (pydantic-settings).

Defaults give an embedded service on a fresh machine: in-process models with the shipped weights, an
SQLite store in ``./gader-data``, FAISS on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GADER_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("./gader-data"), description="Where the SQLite store and the first admin key live.")
    store: str = Field(
        "sqlite", description="'sqlite' (embedded, default) or 'redis://host:port/db' (shared by replicas)."
    )
    inference: str = Field("local", description="'local' (in-process torch) or 'triton://host:8001'.")
    model: str = Field("casia-b-default", description="GAR model: a shipped id or a model directory.")
    detector: str = Field("gader-detector", description="Gait detector: a shipped id or a detector directory.")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda' for local inference.")
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None

    # Matching
    default_operating_point: str = Field("fmr=1e-3", description="Used when a request gives neither.")
    max_top_k: int = Field(100, description="Largest top_k a client may ask for.")
    ivf_threshold: int = Field(200_000, description="Galleries larger than this use an IVF index.")

    # Limits
    max_upload_bytes: int = Field(64 * 1024 * 1024, description="Largest accepted upload.")
    max_frames: int = Field(2000, description="Most frames per sequence.")
    max_frame_pixels: int = Field(1920 * 1080, description="Largest full frame (pixels).")
    min_frames: int = Field(5, ge=1, description="Fewest frames a probe or template must have.")
    video_seconds: float = Field(120.0, description="Longest accepted video (seconds).")
    video_fps: float | None = Field(None, description="Sub-sample videos to this frame rate (default: keep all).")
    segmenter: str = Field("selfie", description="Person segmenter for videos: selfie, selfie-landscape, background.")
    rate_per_minute: int = Field(600, description="Requests per API key per minute (0: unlimited).")
    inference_threads: int = Field(2, description="Threads that run models (requests queue for them).")
    decode_threads: int = Field(
        2, ge=1, description="Threads that parse uploads; each video may hold up to ~1 GiB of frames while decoded."
    )

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value != "sqlite" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("GADER_STORE must be 'sqlite' or a redis:// URL")
        return value

    @field_validator("inference")
    @classmethod
    def _inference(cls, value: str) -> str:
        if value != "local" and not value.startswith("triton://"):
            raise ValueError("GADER_INFERENCE must be 'local' or triton://host:port")
        return value

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "gader.sqlite3"


def redacted(url: str) -> str:
    """A store or inference URL fit for a log: its password replaced by *** (redis://:***@redis:6379/0)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]  # as written: an IPv6 host keeps its brackets, the port its digits
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
