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


@pytest.fixture(scope="session")
def synth_casia(tmp_path_factory) -> Path:
    """A small SynthGait casia-preset dataset (ratios and RGB included): 4 people, 8 conditions, 2 views."""
    from gader.data.synth.generator import plan_dataset
    from gader.data.synth.make import make_dataset

    out = tmp_path_factory.mktemp("synth") / "casia"
    keep = {"nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "cl-01"}
    specs = [s for s in plan_dataset(4, seed=3) if s.condition in keep and s.view in (54, 90)]
    make_dataset(out, specs, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def synth_wild(tmp_path_factory) -> Path:
    """A small SynthGait wild dataset (walk / stand / partial, labelled per frame): 4 people x 2 sequences."""
    from gader.data.synth.generator import plan_dataset
    from gader.data.synth.make import make_dataset

    out = tmp_path_factory.mktemp("synth") / "wild"
    make_dataset(out, plan_dataset(4, seed=5, preset="wild", sequences_per_subject=2), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """../shared/data/videos: a raw CASIA-B clip, two walking and two standing phone clips."""
    return _require(SHARED_DATA / "videos")
