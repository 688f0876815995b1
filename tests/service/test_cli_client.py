"""`gader client` against a running server, and `gader calibrate` on labelled data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from gader.model_io import ZOO, load_model


def gader(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gader", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_client_enroll_identify_verify(server, models, synth_casia):
    env = {"GADER_URL": server.url, "GADER_API_KEY": server.admin_key}
    sequence = next((synth_casia / "sequences" / "001").rglob("*.npz"))
    other = next((synth_casia / "sequences" / "002").rglob("*.npz"))
    assert gader("client", "create-gallery", "front", env=env).returncode == 0
    for subject, path in (("alice", sequence), ("bob", other)):
        enrolled = gader("client", "enroll", str(path), "--gallery", "front", "--subject", subject, env=env)
        assert enrolled.returncode == 0, enrolled.stderr
        assert json.loads(enrolled.stdout)["subject_id"] == subject
    identified = gader("client", "identify", str(sequence), "--gallery", "front", "--json", env=env)
    assert json.loads(identified.stdout)["candidates"][0]["subject_id"] == "alice"
    human = gader("client", "identify", str(sequence), "--gallery", "front", "--threshold", "0.5", env=env).stdout
    assert human.startswith("match") and "1. alice" in human
    verified = gader("client", "verify", str(other), "--gallery", "front", "--subject", "bob", env=env)
    assert verified.stdout.startswith("MATCH")
    # compare: two files, no gallery; the same score as verifying one against the other enrolled
    compared = gader("client", "compare", str(other), str(sequence), "--json", env=env)
    assert compared.returncode == 0, compared.stderr
    as_alice = gader("client", "verify", str(other), "--gallery", "front", "--subject", "alice", "--json", env=env)
    assert abs(json.loads(compared.stdout)["score"] - json.loads(as_alice.stdout)["score"]) <= 2e-6
    # the service's compare and the local `gader compare` with the same model and detector: one score
    local = gader(
        "compare", str(other), str(sequence), "--model", str(models[0]), "--detector", str(models[1]), "--json"
    )
    assert local.returncode == 0, local.stderr
    assert abs(json.loads(local.stdout)["score"] - json.loads(compared.stdout)["score"]) <= 2e-6
    itself = gader("client", "compare", str(sequence), str(sequence), env=env)
    assert itself.stdout.startswith("MATCH: score 1.0000")
    absent = gader("client", "compare", str(sequence), str(sequence.parent / "none.npz"), env=env)
    assert absent.returncode == 1 and "none.npz: no such file" in absent.stderr
    missing = gader("client", "identify", str(sequence), "--gallery", "nowhere", env=env)
    assert missing.returncode == 1 and missing.stderr.strip() == "gader: error: 404: no gallery 'nowhere'"
    no_key = gader("client", "identify", str(sequence), "--gallery", "front", env={"GADER_API_KEY": ""})
    assert no_key.returncode == 1 and "GADER_API_KEY" in no_key.stderr


def test_calibrate_writes_operating_points(tmp_path, models, synth_casia):
    model = tmp_path / "model"
    shutil.copytree(models[0], model)
    result = gader("calibrate", "--model", str(model), "--data", str(synth_casia), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    points = load_model(model).card.operating_points
    assert set(points) == {"fmr=1e-2", "fmr=1e-3", "fmr=1e-4"} and points == report["operating_points"]
    assert 0 <= points["fmr=1e-2"] <= points["fmr=1e-3"] <= points["fmr=1e-4"] <= 1  # stricter, higher
    assert report["impostor_pairs"] > 0 and report["genuine_pairs"] > 0
    missing = gader("calibrate", "--model", str(tmp_path / "none"), "--data", str(synth_casia))
    assert missing.returncode == 1 and "no model" in missing.stderr
    # too few pairs to resolve fmr=1e-4 is said, not hidden (and not said when there are enough)
    assert ("warning: fmr=1e-4 is below what" in result.stderr) == (report["impostor_pairs"] < 10_000)
    # A shipped model's card is part of the package: refused, and left as it is
    shipped = ZOO / "casia-b-default" / "model.json"
    before = shipped.read_bytes()
    refused = gader("calibrate", "--model", "casia-b-default", "--data", str(synth_casia))
    assert refused.returncode == 1 and "is a shipped model" in refused.stderr and "copy" in refused.stderr
    assert shipped.read_bytes() == before
