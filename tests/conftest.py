"""Shared fixtures: where the real data lives, and how tests that need it behave without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GADER_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"shared data not found at {path} (set GADER_SHARED_DATA to its location)"
        if IN_CI:  # CI has the data: a missing copy is a broken setup, not a reason to skip
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def casia_train() -> Path:
    """../shared/data/casia-b/train: packed CASIA-B, subjects 001-074."""
    return _require(SHARED_DATA / "casia-b" / "train")


@pytest.fixture(scope="session")
def opengait_sample() -> Path:
    """../shared/data/casia-b/opengait-pkl-sample: three sequences in OpenGait's .pkl layout."""
    return _require(SHARED_DATA / "casia-b" / "opengait-pkl-sample")
