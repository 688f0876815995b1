"""SynthGait: determinism, labels that match the pixels, ratios that follow distance, realism against
real CASIA-B, and the CLI."""

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gader.data import open_dataset, write_sequence
from gader.data.synth import CASIA_CONDITIONS, VIEWS, SequenceSpec, plan_dataset, render_sequence
from gader.data.synth.body import sample_identity
from gader.data.synth.generator import render_frames
from gader.data.synth.kinematics import pose_sequence
from gader.data.synth.motion import STATE_STAND, straight_walk
from gader.dhs import double_helical_signature


def _digest(record) -> str:
    buffer = io.BytesIO()
    write_sequence(record, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def test_same_spec_gives_byte_identical_sequences():
    spec = SequenceSpec(seed=7, subject_index=3, condition="bg-02", view=54)
    assert _digest(render_sequence(spec)) == _digest(render_sequence(spec))
    other = SequenceSpec(seed=8, subject_index=3, condition="bg-02", view=54)
    assert _digest(render_sequence(other)) != _digest(render_sequence(spec))


def test_people_do_not_depend_on_who_else_is_generated():
    assert sample_identity(0, 12) == sample_identity(0, 12)
    assert sample_identity(0, 12) != sample_identity(0, 13)
    assert sample_identity(1, 12) != sample_identity(0, 12)


def test_casia_plan_has_ten_conditions_by_eleven_views():
    specs = plan_dataset(2, seed=0, preset="casia")
    assert len(specs) == 2 * 110
    assert {s.condition for s in specs} == set(CASIA_CONDITIONS) and {s.view for s in specs} == set(VIEWS)
    assert len({(s.subject_index, s.condition, s.view) for s in specs}) == 220
    wild = plan_dataset(3, seed=0, preset="wild", sequences_per_subject=4)
    assert len(wild) == 12 and all(s.condition.startswith("wild-") for s in wild)


def test_a_record_has_every_output():
    record = render_sequence(SequenceSpec(0, 0, "cl-01", 90))
    frames = record.frames
    assert record.silhouettes.shape == (frames, 64, 64) and record.rgb.shape == (frames, 64, 64, 3)
    assert record.ratios.shape == (frames,) and np.all(record.ratios > 0.5)
    assert (record.subject, record.condition, record.view) == ("001", "cl-01", "090")
    assert record.labels.gait.all() and record.labels.full_body.all()  # casia: straight walks in full view
    for key in ("distance_m", "camera_height_m", "pitch_deg", "clothing", "noise", "focal_px"):
        assert key in record.meta
    assert record.meta["clothing"] == "cl"
    assert set(record.frame_arrays) == {"frame_index", "state", "distance", "boxes"}


def test_feet_stay_on_the_ground_and_the_body_bobs():
    identity = sample_identity(0, 4)
    plan = straight_walk(100, 25.0, identity.body, identity.gait, np.random.default_rng(0))
    skeleton = pose_sequence(identity.body, identity.gait, plan.track, plan.jitter)
    feet = np.stack([skeleton.joints[k][:, 2] for k in ("heel_r", "toe_r", "heel_l", "toe_l")], axis=1)
    assert np.allclose(feet.min(axis=1), 0.0, atol=1e-9)
    bob = np.ptp(skeleton.joints["pelvis"][:, 2])
    assert 0.01 < bob < 0.09  # normal walking: a few centimetres
    # The person travels at the walking speed the plan says.
    travelled = np.linalg.norm(skeleton.joints["pelvis"][-1, :2] - skeleton.joints["pelvis"][0, :2])
    assert travelled == pytest.approx(plan.speed * 99 / 25.0, rel=0.1)


def test_ratios_follow_distance():
    """Walking towards the camera (view 0°): the body grows in the frame, ratio x distance stays constant."""
    record = render_sequence(SequenceSpec(0, 5, "nm-02", 0, noise=0.0))
    distance = record.frame_arrays["distance"]
    product = record.ratios * distance
    assert np.corrcoef(record.ratios, 1.0 / distance)[0, 1] > 0.95
    assert product.std() / product.mean() < 0.05
    assert record.ratios[-5:].mean() > record.ratios[:5].mean()  # closer at the end


def _wild_with(want: str):
    for subject in range(40):
        rendered = render_frames(SequenceSpec(0, subject, "wild-01", 90, "wild", noise=0.0))
        labels = rendered.record.labels
        count = (~labels.gait & labels.full_body).sum() if want == "stand" else (~labels.full_body).sum()
        if count >= 20 and labels.full_body.sum() >= 20 and labels.gait.sum() >= 20:
            return rendered
    pytest.fail(f"no wild sequence with {want} frames among 40 people")


def test_standing_labels_match_motion_in_the_pixels():
    rendered = _wild_with("stand")
    record = rendered.record
    assert (record.frame_arrays["state"] == STATE_STAND).sum() == (~record.labels.gait).sum()
    dhs = double_helical_signature(record.silhouettes)  # [W, T]
    change = np.abs(np.diff(dhs, axis=1)).mean(axis=0)  # [T - 1] how much the knee row moves
    steady = record.labels.full_body[1:] & record.labels.full_body[:-1]
    standing = steady & ~record.labels.gait[1:] & ~record.labels.gait[:-1]
    walking = steady & record.labels.gait[1:] & record.labels.gait[:-1]
    assert change[standing].mean() < 0.5 * change[walking].mean()


def test_partial_labels_match_the_visible_body():
    rendered = _wild_with("partial")
    record = rendered.record
    knee_row_fill = double_helical_signature(record.silhouettes).mean(axis=0)  # [T] share of the knee row
    partial, full = ~record.labels.full_body, record.labels.full_body
    # At the knee row a full body shows two legs; a cut body shows the trunk and arms: a wider band.
    assert knee_row_fill[partial].mean() > 1.5 * knee_row_fill[full].mean()
    # And in the full frames the visible body stops well above where the feet are.
    masks = rendered.masks[record.frame_arrays["frame_index"]]
    heights = np.array([np.ptp(np.flatnonzero(m.any(axis=1))) for m in masks])
    assert np.median(heights[partial]) < 0.8 * np.median(heights[full])


@pytest.mark.shared_data
def test_silhouettes_resemble_real_casia_b(casia_train):
    """Side view walking cycles: body width, area and gait period within the range of real CASIA-B."""
    people = [f"{i:03d}" for i in range(1, 41)]
    real = open_dataset(casia_train).subset(subjects=people, conditions=["nm-01"], views=["090"])
    synthetic = [render_sequence(SequenceSpec(0, i, "nm-01", 90)) for i in range(16)]

    def stats(silhouettes: np.ndarray) -> tuple[float, float, float]:
        binary = silhouettes[:, :, 10:-10] > 127  # [T, 64, 44]
        area = binary.mean()
        columns = binary.any(axis=1)
        width = np.mean([np.ptp(np.flatnonzero(c)) + 1 for c in columns if c.any()]) / 44
        knee = double_helical_signature(silhouettes).mean(axis=0)  # [T] knee-row fill follows the steps
        knee = knee - knee.mean()
        autocorrelation = np.correlate(knee, knee, mode="full")[len(knee) - 1 :]
        lag = int(np.argmax(autocorrelation[8:25])) + 8  # one step, in frames at 25 fps
        return area, width, lag

    real_stats = np.array([stats(r.silhouettes) for r in real if r.frames >= 40])
    synthetic_stats = np.array([stats(r.silhouettes) for r in synthetic])
    for name, column in (("area", 0), ("width", 1), ("step period", 2)):
        low, high = np.percentile(real_stats[:, column], [5, 95])
        mean = synthetic_stats[:, column].mean()
        assert low <= mean <= high, f"{name}: synthetic {mean:.3f}, real {low:.3f}..{high:.3f}"


def _gader(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gader", *args], capture_output=True, text=True, timeout=300)


def test_cli_make_is_deterministic_and_regenerates_subsets(tmp_path):
    args = [
        "synth",
        "make",
        "--subjects",
        "1",
        "--conditions",
        "nm-01,cl-01",
        "--views",
        "0,90",
        "--workers",
        "2",
    ]
    for name in ("a", "b"):
        result = _gader(*args, "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 + 2  # four sequences, index, header
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    stats = json.loads(_gader("data", "stats", str(tmp_path / "a"), "--json").stdout)
    assert stats["sequences"] == 4 and stats["with_ratios"] == 4 and stats["with_rgb"] == 4
    # Regenerating one sequence in place gives the same bytes again.
    target = tmp_path / "a" / "sequences" / "001" / "cl-01" / "090.npz"
    before = target.read_bytes()
    target.unlink()
    result = _gader(
        *args[:3], "1", "--conditions", "cl-01", "--views", "90", "--overwrite", "--out", str(tmp_path / "a")
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == before


def test_cli_preview_and_errors(tmp_path):
    result = _gader("synth", "preview", "--out", str(tmp_path / "sheet.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sheet.png").stat().st_size > 50_000
    bad = _gader("synth", "make", "--subjects", "1", "--preset", "mars", "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and bad.stderr.strip() == "gader: error: unknown preset 'mars': use one of casia, wild"
    bad = _gader("synth", "make", "--subjects", "1", "--frame-size", "big", "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "--frame-size must look like 320x240" in bad.stderr
    bad = _gader("synth", "make", "--subjects", "1", "--views", "45", "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "no sequence to render" in bad.stderr
    assert not Path(tmp_path / "x").exists() or not any(Path(tmp_path / "x").iterdir())
