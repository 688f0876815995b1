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
    # Oracle: each resolved threshold is the k-th highest impostor score (k = rate x impostor pairs; 6 decimals,
    # rounded up), so that a new impostor passes with about the rate named (a genuine score just above the
    # (k+1)-th impostor passes the same share of these impostors but about (k+1) / n of new ones).
    import math

    import numpy as np

    from gader.data import open_dataset
    from gader.embedding import embed_dataset
    from service.gallery.index import flatten_embedding, similarity

    loaded = load_model(model)
    embeddings, infos = embed_dataset(
        loaded.embedder, open_dataset(synth_casia), loaded.embedder.input_size, show_progress=False
    )
    vectors = np.stack([flatten_embedding(e) for e in embeddings])
    subjects = np.array([i.subject for i in infos])
    enrolled = np.isin([i.condition.lower() for i in infos], ["nm-01", "nm-02", "nm-03", "nm-04"])
    scores = similarity(vectors[~enrolled] @ vectors[enrolled].T)
    same = subjects[~enrolled][:, None] == subjects[enrolled][None, :]
    impostor, genuine = np.sort(scores[~same])[::-1], scores[same]
    assert report["impostor_pairs"] == impostor.size and report["genuine_pairs"] == genuine.size
    resolved = 0
    for name, fmr in (("fmr=1e-2", 1e-2), ("fmr=1e-3", 1e-3), ("fmr=1e-4", 1e-4)):
        k = int(fmr * impostor.size + 1e-9)
        if k >= 1:
            resolved += 1
            assert points[name] == math.ceil(impostor[k - 1] * 1e6) / 1e6
            assert np.mean(impostor >= points[name]) <= fmr
            assert report["tmr_at_fmr"][f"{fmr:.0e}"] == round(100 * float(np.mean(genuine >= points[name])), 2)
    assert resolved >= 1  # the oracle ran
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


def test_an_operating_threshold_below_what_the_impostors_resolve_stays_above_them_all():
    """With fewer impostor pairs than 1 / rate the threshold is just above the highest impostor, even when that
    impostor outscores every genuine pair (the ROC curve's lowest admissible threshold is then +inf)."""
    import numpy as np

    from service.cli import operating_threshold

    impostor = np.r_[np.linspace(0.1, 0.7, 399), 0.95]  # one impostor above every genuine score
    assert operating_threshold(impostor, 1e-2) == 0.696985  # the 4th highest (0.6969849), 6 decimals rounded up
    for far in (1e-3, 1e-4):
        threshold = operating_threshold(impostor, far)
        assert 0.95 < threshold <= 0.950001 and not (impostor >= threshold).any()
    assert operating_threshold(np.array([1.0, 0.2]), 1e-3) == 1.0  # never above the scale
