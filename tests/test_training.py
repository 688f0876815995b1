"""Training end to end on real files: a tiny GAR run, resume, export, evaluation, DDP with two processes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gader.errors import GaderError
from gader.model_io import load_model
from gader.training.config import load_config
from gader.training.data import PKSampler, sample_frames

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, data: Path, **extra: str) -> Path:
    text = f"""
id = "tiny"
description = "test run"
[model]
architecture = "gaitbase"
ratio_attention = true
distillation = true
[model.backbone]
width = 0.125
input_height = 32
input_width = 22
[data]
train = "{data}"
val_subjects = 2
val_protocol = "casia-b"
frames = 8
[optim]
iterations = 12
batch_subjects = 2
batch_sequences = 2
lr = 1e-3
log_every = 4
checkpoint_every = 6
rotate_probability = 0.5
erase_probability = 0.5
threads = 1
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def _gader(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "gader", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result


def test_frame_sampling_modes():
    rng = np.random.default_rng(0)
    unordered = sample_frames(50, 30, "fixed_unordered", 0, rng)
    assert len(set(unordered.tolist())) == 30  # no repeats when the sequence is long enough
    ordered = sample_frames(50, 30, "fixed_ordered", 10, rng)
    assert np.all(np.diff(ordered) > 0) and ordered[-1] - ordered[0] < 40
    short = sample_frames(7, 30, "fixed_ordered", 0, rng)
    assert len(short) == 30 and short.max() < 7  # tiled
    assert len(sample_frames(5, 30, "fixed_unordered", 0, rng)) == 30


def test_pk_sampler_draws_p_subjects_with_k_sequences():
    by_label = {0: [0, 1, 2], 1: [3], 2: [4, 5, 6, 7]}
    batch = next(iter(PKSampler(by_label, 2, 4, np.random.default_rng(0))))
    labels = [next(k for k, v in by_label.items() if i in v) for i in batch]
    assert len(batch) == 8 and all(labels.count(label) == 4 for label in set(labels)) and len(set(labels)) == 2


def test_config_errors_name_the_key(tmp_path, synth_casia):
    path = _config(tmp_path, synth_casia)
    with pytest.raises(GaderError, match="unknown key"):
        load_config(path, ["optim.learning_rate=0.1"])
    with pytest.raises(GaderError, match="sampling must be"):
        load_config(path, ["data.sampling='random'"])
    assert load_config(path, ["optim.lr=0.5"]).optim.lr == 0.5
    # A relative data path is read from the current directory, and the error says so (and where that is)
    from gader.training.trainer import data_splits

    with pytest.raises(GaderError, match=r"data.train 'not/here': no such directory here .* --set data.train="):
        data_splits(load_config(path, ["data.train='not/here'"]))


def test_train_resume_export_and_evaluate(tmp_path, synth_casia):
    config = _config(tmp_path, synth_casia)
    run = tmp_path / "run"
    _gader("train", "gar", "--config", str(config), "--out", str(run), "--set", "optim.iterations=6")
    first = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in first if "loss" in r] == [4, 6]
    assert {"sil_triplet", "rgb_triplet", "distill", "sil_ce", "lr"} <= set(first[0])
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 6
    _gader("train", "gar", "--config", str(config), "--out", str(run), "--resume")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [4, 6, 8, 12]
    validations = [r for r in records if "validation" in r]
    assert validations and validations[-1]["iteration"] == 12
    assert (run / "loss.png").stat().st_size > 5000
    # resuming a finished run (e.g. one that died in its final validation) trains nothing but still validates
    _gader("train", "gar", "--config", str(config), "--out", str(run), "--resume")
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in again if "loss" in r] == [4, 6, 8, 12]
    assert len([r for r in again if "validation" in r]) == len(validations) + 1
    model = load_model(run / "model", with_rgb=True)
    assert model.card.gar["ratio_attention"] and model.rgb is not None
    assert not any(k.startswith(("rgb", "adapters")) for k in model.embedder.state_dict())
    result = json.loads(
        _gader(
            "eval", "--model", str(run / "model"), "--data", str(synth_casia), "--protocol", "casia-b", "--json"
        ).stdout
    )
    assert set(result["rank1"]) == {"NM", "BG", "CL", "mean"} and len(result["per_view"]["NM"]) == 2
    verification = json.loads(
        _gader(
            "eval", "--model", str(run / "model"), "--data", str(synth_casia), "--protocol", "verification", "--json"
        ).stdout
    )
    assert set(verification["tar_at_far"]) == {"1e-04", "1e-03", "1e-02", "1e-01"}


def test_two_process_distributed_training_on_cpu(tmp_path, synth_casia):
    """torchrun with 2 processes (gloo): both train, rank 0 writes the checkpoint and the model."""
    config = _config(tmp_path, synth_casia)
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "gader", "train", "gar", "--config", str(config), "--out", str(run)]
    command += ["--set", "optim.iterations=4", "--set", "data.val_subjects=0"]
    # A session of its own: on a timeout the workers die with torchrun instead of lingering.
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(command, process.returncode, "", stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 4
    assert (run / "model" / "model.safetensors").is_file()


def test_overrides_read_toml_values_and_name_what_is_wrong():
    from gader.errors import GaderError
    from gader.overrides import apply_overrides, parse_override

    assert parse_override("optim.lr = 0.5") == ("optim.lr", 0.5)
    assert parse_override("window_lengths=[16, 32]") == ("window_lengths", [16, 32])
    assert parse_override("frame_label_windows=all") == ("frame_label_windows", "all")  # a bare word
    values = {"id": "x", "optim": {"lr": 0.1}}
    assert apply_overrides(values, ["optim.lr=0.2", "data.val_subjects=3"]) == {
        "id": "x",
        "optim": {"lr": 0.2},
        "data": {"val_subjects": 3},
    }
    for wrong, message in (("optim.lr", "key=value"), ("=3", "key=value"), ("id.x=1", "is a setting")):
        with pytest.raises(GaderError, match=message):
            apply_overrides({"id": "x"}, [wrong])
