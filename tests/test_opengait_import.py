"""OpenGait checkpoints: key tables as OpenGait writes them, round trips, clear refusals."""

import collections
import json
import subprocess
import sys

import pytest
import torch

from gader.errors import GaderError
from gader.gar import GAR, GARConfig
from gader.model_io import load_model
from gader.opengait_import import convert, export_opengait_state, import_checkpoint, opengait_keys

# state_dict entries of OpenGait's CASIA-B models (parameters and BatchNorm buffers).
OPENGAIT_ENTRIES = {"gaitset": 11, "gaitpart": 71, "gaitgl": 16, "gaitbase": 79}
SETTINGS = {"gaitset": {}, "gaitpart": {}, "gaitgl": {"num_classes": 74}, "gaitbase": {"num_classes": 74}}


def _checkpoint(tmp_path, architecture):
    torch.manual_seed(1)
    model = GAR(GARConfig(architecture, SETTINGS[architecture])).eval()
    state = export_opengait_state(model)
    path = tmp_path / f"{architecture}-40000.pt"
    scheduler = {"milestones": collections.Counter({10000: 1, 20000: 1}), "gamma": 0.1}  # as MultiStepLR saves it
    torch.save({"model": state, "optimizer": {"state": {}}, "scheduler": scheduler, "iteration": 40000}, path)
    return model, state, path


@pytest.mark.parametrize("architecture", sorted(OPENGAIT_ENTRIES))
def test_key_tables_match_opengait(architecture):
    assert len(opengait_keys(architecture)) == OPENGAIT_ENTRIES[architecture]
    model = GAR(GARConfig(architecture, SETTINGS[architecture]))
    assert set(export_opengait_state(model)) == opengait_keys(architecture)


def test_known_opengait_names_land_where_they_should():
    assert "Backbone.forward_block.layer4.0.downsample.1.running_var" in opengait_keys("gaitbase")
    assert "TFA.pooling_func.conv1d3x3.15.2.conv.weight" in opengait_keys("gaitpart")
    assert {"HPP.p", "Bn.num_batches_tracked", "Head1.fc_bin"} <= opengait_keys("gaitgl")
    assert {"gl_block3.2.conv.weight", "Head.fc_bin"} <= opengait_keys("gaitset")


@pytest.mark.parametrize("architecture", sorted(OPENGAIT_ENTRIES))
def test_round_trip_gives_identical_embeddings(tmp_path, architecture):
    model, _state, path = _checkpoint(tmp_path, architecture)
    imported, iteration = import_checkpoint(path, architecture)
    assert iteration == 40000
    frames = torch.rand(2, 1, 12, 64, 44)
    with torch.no_grad():
        assert torch.equal(model.embedder()(frames), imported.embedder()(frames))


def test_cli_import_writes_a_servable_model(tmp_path):
    model, _state, path = _checkpoint(tmp_path, "gaitbase")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gader",
            "import-opengait",
            str(path),
            "--arch",
            "gaitbase",
            "--out",
            str(tmp_path / "imported"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = load_model(tmp_path / "imported")
    card = json.loads((tmp_path / "imported" / "model.json").read_text())
    assert card["embedding_shape"] == [256, 16] and card["training"]["iteration"] == 40000
    frames = torch.rand(1, 1, 9, 64, 44)
    with torch.no_grad():
        assert torch.equal(loaded.embedder(frames), model.embedder()(frames))


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    _model, state, path = _checkpoint(tmp_path, "gaitset")
    with pytest.raises(GaderError, match="unknown architecture"):
        import_checkpoint(path, "gaitformer")
    with pytest.raises(GaderError, match="keys this importer does not know"):
        convert("gaitset", {**state, "extra.weight": torch.zeros(1)})
    partial = dict(state)
    del partial["gl_block2.0.conv.weight"]
    torch.save({"model": partial}, tmp_path / "partial.pt")
    with pytest.raises(GaderError, match="lacks weights for"):
        import_checkpoint(tmp_path / "partial.pt", "gaitset")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GaderError, match="not a PyTorch checkpoint that loads as plain tensors"):
        import_checkpoint(tmp_path / "junk.pt", "gaitset")
    torch.save({"model": state, "trainer": PickledObject()}, tmp_path / "objects.pt")  # needs unpickling code
    with pytest.raises(GaderError, match="Unsupported global") as refused:
        import_checkpoint(tmp_path / "objects.pt", "gaitset")
    assert "\n" not in str(refused.value) and "weights_only=False" not in str(refused.value)  # one line, no advice
    # to unpickle
    with pytest.raises(GaderError, match="missing"):
        import_checkpoint(path, "gaitbase")  # a GaitSet checkpoint is not a GaitBase one


class PickledObject:
    """Something only unpickling could rebuild: a checkpoint holding it is refused."""


def test_old_part_major_bnneck_is_reordered():
    model = GAR(GARConfig("gaitbase", {"width": 0.25, "num_classes": 4}))
    state = export_opengait_state(model)
    channel_major = state["BNNecks.bn1d.weight"].clone()  # ours: index = channel * parts + part
    parts = state["FCs.fc_bin"].shape[0]
    state["BNNecks.bn1d.weight"] = channel_major.reshape(-1, parts).t().reshape(-1)  # as old OpenGait stored it
    for suffix in ("bias", "running_mean", "running_var"):
        key = f"BNNecks.bn1d.{suffix}"
        state[key] = state[key].reshape(-1, parts).t().reshape(-1)
    converted = convert("gaitbase", state, bnneck_part_major=True)
    assert torch.equal(converted["bnneck.norm.weight"], channel_major)
