"""The ``gader`` command as users run it: a real process, JSON on stdout, one-line errors on stderr."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_protocols import casia_toy


def gader(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "gader", *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"gader {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.mark.shared_data
def test_data_stats_on_casia_b_train(casia_train):
    stats = json.loads(gader("data", "stats", str(casia_train), "--json").stdout)
    assert stats["subjects"] == 74 and stats["sequences"] == 8107
    assert stats["frames_per_sequence"]["min"] >= 1 and stats["frames_per_sequence"]["max"] >= 200
    assert stats["layout"] == "casia-packed"
    human = gader("data", "stats", str(casia_train)).stdout
    assert "8,107" in human


@pytest.mark.shared_data
def test_shipped_model_evaluates_a_packed_casia_b_folder(casia_train, tmp_path):
    """The command we run on the withheld test subjects (075-124, same packed format), on 4 training subjects:
    it must run end to end on such a folder and print the CASIA-B JSON; these subjects were trained on, so the
    accuracy only has to be far above chance (1/4), not a held-out figure."""
    folder = tmp_path / "casia-b-subset"
    folder.mkdir()
    for subject in ("001", "002", "003", "004"):
        (folder / f"{subject}.npz").symlink_to(casia_train / f"{subject}.npz")
    saved = tmp_path / "embeddings.npz"
    command = ("eval", "--model", "casia-b-default", "--data", str(folder), "--protocol", "casia-b", "--json")
    result = json.loads(gader(*command, "--save-embeddings", str(saved)).stdout)
    assert {"NM", "BG", "CL"} <= set(result["rank1"])
    assert result["rank1"]["NM"] > 80
    # Saved and compared part-major, [N, P, D] as docs/evaluation.md says: the model's 64 x 8 embedding as 8 parts
    with np.load(saved) as arrays:
        assert arrays["embeddings"].shape[1:] == (8, 64)


def test_data_stats_and_convert_on_opengait_layout(opengait_sample, tmp_path):
    stats = json.loads(gader("data", "stats", str(opengait_sample), "--json").stdout)
    assert (stats["subjects"], stats["sequences"], stats["frames"]) == (1, 3, 171)
    gader("data", "convert", str(opengait_sample), "--out", str(tmp_path / "native"), "--cut-sides")
    converted = json.loads(gader("data", "stats", str(tmp_path / "native"), "--json").stdout)
    assert (converted["layout"], converted["sequences"], converted["frames"]) == ("gader", 3, 171)


def test_eval_embeddings_json_contract(tmp_path):
    casia_toy().save(tmp_path / "casia.npz")
    casia = json.loads(gader("eval-embeddings", str(tmp_path / "casia.npz"), "--protocol", "casia-b", "--json").stdout)
    assert casia["rank1"]["NM"] == 75.0 and casia["per_view"]["NM"] == [50.0, 100.0]

    rng = np.random.default_rng(0)
    subjects = np.repeat(np.array([f"s{i}" for i in range(10)]), 4)
    embeddings = np.eye(10)[np.repeat(np.arange(10), 4)] + 0.05 * rng.normal(size=(40, 10))
    is_probe = np.tile([True, False, False, False], 10)
    np.savez(
        tmp_path / "open.npz",
        embeddings=embeddings,
        subjects=subjects,
        is_probe=is_probe,
        conditions=np.array(["x"] * 40),
        views=np.array(["000"] * 40),
    )
    open_set = json.loads(
        gader("eval-embeddings", str(tmp_path / "open.npz"), "--protocol", "open-set", "--json").stdout
    )
    assert {"rank1", "rank5", "rank10", "mAP", "mINP"} <= set(open_set) and open_set["rank1"] == 100.0
    verification = json.loads(
        gader(
            "eval-embeddings",
            str(tmp_path / "open.npz"),
            "--protocol",
            "verification",
            "--distance",
            "cos",
            "--json",
            "--plot",
            str(tmp_path / "plots"),
        ).stdout
    )
    assert set(verification["tar_at_far"]) == {"1e-04", "1e-03", "1e-02", "1e-01"}
    assert 0 <= verification["eer"] <= 100
    assert (tmp_path / "plots" / "det.png").stat().st_size > 5000
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 5000


def test_pretreat_a_folder_of_masks(tmp_path):
    import cv2

    (tmp_path / "masks").mkdir()
    for t in range(5):
        frame = np.zeros((240, 320), np.uint8)
        cv2.ellipse(frame, (100 + 10 * t, 120), (20, 90), 0, 0, 360, 255, -1)
        cv2.imwrite(str(tmp_path / "masks" / f"{t:04d}.png"), frame)
    cv2.imwrite(str(tmp_path / "masks" / "0005.png"), np.zeros((240, 320), np.uint8))
    result = gader("data", "pretreat", str(tmp_path / "masks"), "--out", str(tmp_path / "seq.npz"))
    assert "frame 5 (0005.png) rejected: too_few_pixels" in result.stderr
    with np.load(tmp_path / "seq.npz") as archive:
        assert archive["silhouettes"].shape == (5, 64, 64)
        assert archive["ratios"] == pytest.approx(np.full(5, 181 / 64))
    # The file is an .npz whatever it is called, and its names must be storable in a dataset: refused up front
    named_txt = gader("data", "pretreat", str(tmp_path / "masks"), "--out", str(tmp_path / "seq.txt"), check=False)
    assert named_txt.returncode == 1 and "must be an .npz file" in named_txt.stderr
    spaced = gader(
        "data", "pretreat", str(tmp_path / "masks"), "--out", str(tmp_path / "s.npz"), "--subject", "a b", check=False
    )
    assert spaced.returncode == 1 and "subject 'a b' cannot be stored" in spaced.stderr


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_inputs(tmp_path):
    good = {
        "embeddings": np.zeros((4, 3)),
        "subjects": np.array(list("abab")),
        "conditions": np.array(["nm-01", "nm-01", "nm-05", "nm-05"]),
        "views": np.array(["000"] * 4),
    }
    pickled = io.BytesIO()
    np.savez(pickled, embeddings=np.array([object()], dtype=object), subjects=np.array(["a"]))
    (tmp_path / "pickled.npz").write_bytes(pickled.getvalue())
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("hello")
    return [
        (
            "missing key",
            _npz(tmp_path / "nosubj.npz", embeddings=np.zeros((4, 3))),
            "casia-b",
            "missing array 'subjects'",
        ),
        (
            "wrong shape",
            _npz(tmp_path / "shape.npz", **{**good, "embeddings": np.zeros(4)}),
            "casia-b",
            "embeddings must be",
        ),
        (
            "NaN embeddings",
            _npz(tmp_path / "nan.npz", **{**good, "embeddings": np.full((4, 3), np.nan)}),
            "casia-b",
            "NaN",
        ),
        (
            "length mismatch",
            _npz(tmp_path / "len.npz", **{**good, "subjects": np.array(list("abc"))}),
            "casia-b",
            "subjects must have shape",
        ),
        ("unknown protocol", _npz(tmp_path / "ok.npz", **good), "rank-99", "Invalid value for '--protocol'"),
        ("empty file", tmp_path / "empty.npz", "casia-b", "not a valid .npz"),
        ("not an npz", tmp_path / "text.npz", "casia-b", "not a valid .npz"),
        ("empty archive", _npz(tmp_path / "noarrays.npz"), "casia-b", "empty file"),
        ("pickle inside", tmp_path / "pickled.npz", "casia-b", "pickle"),
        ("missing file", tmp_path / "nope.npz", "casia-b", "no such file"),
        ("open-set without is_probe", _npz(tmp_path / "ok2.npz", **good), "open-set", "is_probe"),
        (
            "complex embeddings",
            _npz(tmp_path / "cplx.npz", **{**good, "embeddings": np.zeros((4, 3), complex)}),
            "casia-b",
            "real numbers",
        ),
    ]


def test_bad_input_exits_non_zero_with_one_clear_line(tmp_path):
    for name, path, protocol, message in _bad_inputs(tmp_path):
        result = gader("eval-embeddings", str(path), "--protocol", protocol, "--json", check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, name
        assert result.stdout == "", name
        assert len(lines) == 1 and "Traceback" not in result.stderr, f"{name}: {result.stderr}"
        assert message in lines[0], f"{name}: {lines[0]}"


def test_data_stats_on_a_non_dataset_is_one_line(tmp_path):
    result = gader("data", "stats", str(tmp_path), check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "not a dataset gader can read" in result.stderr


def test_output_paths_a_command_cannot_use_are_one_line_errors(tmp_path):
    """Figures: a suffix matplotlib cannot write is refused before the work, a name without one gets the .png
    the command then names; a path that cannot be created, or a file where a folder goes, is one line too."""
    rng = np.random.default_rng(0)
    sequence = tmp_path / "walk.npz"
    np.savez(sequence, silhouettes=(rng.random((30, 64, 44)) > 0.6).astype(np.uint8) * 255)

    def one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("gader: error:") and fragment in result.stderr, result.stderr

    one_line_error(gader("detect", str(sequence), "--plot", str(tmp_path / "p.txt"), check=False), "'.txt'")
    named = gader("detect", str(sequence), "--plot", str(tmp_path / "dhs"))
    assert (tmp_path / "dhs.png").is_file() and f"wrote {tmp_path / 'dhs.png'}" in named.stderr
    (tmp_path / "a-file").write_text("")
    one_line_error(gader("detect", str(sequence), "--plot", str(tmp_path / "a-file" / "p.png"), check=False), "a-file")
    exported = gader("export", "--model", "casia-b-default", "--to", str(tmp_path / "a-file"), check=False)
    one_line_error(exported, "Not a directory")
    one_line_error(
        gader("synth", "preview", "--out", str(tmp_path / "s.png"), "--casia", str(tmp_path / "none"), check=False),
        "no such directory",
    )


def test_eval_detector_says_when_held_out_leaves_nobody(tmp_path):
    from gader.data import DatasetWriter
    from gader.data.record import SequenceRecord

    silhouettes = (np.random.default_rng(0).random((20, 64, 44)) > 0.6).astype(np.uint8) * 255
    with DatasetWriter(tmp_path / "one-person") as writer:
        writer.write(SequenceRecord("001", "nm-01", "090", silhouettes))
    result = gader("eval-detector", "--data", str(tmp_path / "one-person"), "--held-out", "1", "--json", check=False)
    assert result.returncode == 1 and "leaves nobody here" in result.stderr, (result.stdout, result.stderr)


def test_eval_names_the_conditions_when_the_gallery_matches_none(tmp_path):
    from gader.data import DatasetWriter
    from gader.data.record import SequenceRecord

    silhouettes = (np.random.default_rng(0).random((10, 64, 44)) > 0.6).astype(np.uint8) * 255
    with DatasetWriter(tmp_path / "two") as writer:
        for subject in ("001", "002"):
            writer.write(SequenceRecord(subject, "nm-01", "090", silhouettes))
    for conditions in ("", "bg-01"):
        result = gader(
            "eval", "--model", "casia-b-default", "--data", str(tmp_path / "two"), "--protocol", "open-set",
            "--gallery-conditions", conditions, check=False,
        )  # fmt: skip
        assert result.returncode == 1 and "names no condition of this data (it has: nm-01)" in result.stderr


@pytest.mark.shared_data
def test_detect_takes_the_video_options_of_extract(shared_videos):
    """--fps sub-samples and --segmenter picks the segmenter, as for gader extract (the service reads the same
    settings from GADER_* variables)."""
    clip = str(shared_videos / "walk-hallway-2.mp4")  # 83 frames at 30 fps
    every = json.loads(gader("detect", clip, "--segmenter", "background", "--json").stdout)
    halved = json.loads(gader("detect", clip, "--segmenter", "background", "--fps", "15", "--json").stdout)
    assert halved["frames"] < 0.6 * every["frames"]
    unknown = gader("detect", clip, "--segmenter", "magic", check=False)
    assert unknown.returncode == 1 and "unknown segmenter 'magic'" in unknown.stderr
