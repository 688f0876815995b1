"""The four backbones and GAR: parameter counts, shapes, padding, gradients, the inference view."""

import pytest
import torch

from gader.backbones import create_model, model_names, parameter_count
from gader.errors import GaderError
from gader.gar import GAR, GARConfig
from gader.losses import triplet_loss

# OpenGait's CASIA-B configurations (trainable parameters, classifier included where it has one).
OPENGAIT_PARAMETERS = {"gaitset": 2_594_592, "gaitpart": 1_204_000, "gaitgl": 3_096_673, "gaitbase": 7_305_408}
CASIA_SETTINGS = {"gaitset": {}, "gaitpart": {}, "gaitgl": {"num_classes": 74}, "gaitbase": {"num_classes": 74}}
EMBEDDINGS = {"gaitset": (256, 62), "gaitpart": (128, 16), "gaitgl": (128, 64), "gaitbase": (256, 16)}
SLIM = {"width": 0.25, "input_height": 32, "input_width": 22, "num_classes": 6}


def test_registry_lists_the_four_architectures():
    assert model_names() == ["gaitbase", "gaitgl", "gaitpart", "gaitset"]


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
def test_parameter_counts_match_opengait(name):
    model = create_model(name, **CASIA_SETTINGS[name])
    count = parameter_count(model)
    assert abs(count - OPENGAIT_PARAMETERS[name]) <= 0.01 * OPENGAIT_PARAMETERS[name]
    assert count == OPENGAIT_PARAMETERS[name]  # in fact exactly
    assert model.embedding_shape() == EMBEDDINGS[name]


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
@pytest.mark.parametrize("frames", [1, 2, 7, 31])
def test_any_sequence_length_gives_the_embedding_shape(name, frames):
    model = create_model(name, **SLIM).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, frames, 32, 22))
    channels, parts = model.embedding_shape()
    assert out.embeddings.shape == (2, channels, parts)
    assert torch.isfinite(out.embeddings).all()


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
def test_a_sequence_embeds_the_same_alone_or_padded_in_a_batch(name):
    torch.manual_seed(0)
    model = create_model(name, **SLIM).eval()
    short, long = torch.rand(1, 1, 11, 32, 22), torch.rand(1, 1, 26, 32, 22)
    weights_short, weights_long = torch.rand(1, 11), torch.rand(1, 26)
    batch = torch.zeros(2, 1, 26, 32, 22)
    batch[0, :, :11], batch[1] = short[0], long[0]
    mask = torch.zeros(2, 26, dtype=torch.bool)
    mask[0, :11], mask[1] = True, True
    weights = torch.zeros(2, 26)
    weights[0, :11], weights[1] = weights_short, weights_long
    with torch.no_grad():
        alone = torch.cat(
            [model(short, frame_weights=weights_short).embeddings, model(long, frame_weights=weights_long).embeddings]
        )
        together = model(batch, mask=mask, frame_weights=weights).embeddings
    assert (alone - together).abs().max() < 1e-5


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
def test_one_and_two_frame_sequences_embed_the_same_batched_with_longer_ones(name):
    """embed_sequences batches by length: a 1- or 2-frame sequence next to longer ones must get the embedding it
    gets alone. GaitGL pools time by 3, so such a sequence is tiled first (OpenGait: 1 frame 3x, 2 frames 2x);
    tiling the padded batch as a whole never reached it, and it came out as the same constant for every input."""
    import numpy as np

    from gader.embedding import PreparedSequence, embed_sequences
    from gader.gar import GAR, GARConfig

    torch.manual_seed(0)
    embedder = GAR(GARConfig(name, dict(SLIM))).embedder().eval()
    rng = np.random.default_rng(0)
    sequences = [PreparedSequence((rng.random((n, 32, 22)) > 0.5).astype(np.uint8) * 255, None) for n in (1, 2, 7)]
    with torch.no_grad():
        together = embed_sequences(embedder, sequences)  # [3, d, p], one padded batch
        alone = np.stack([embed_sequences(embedder, [sequence])[0] for sequence in sequences])
    assert np.abs(together - alone).max() < 1e-5
    assert np.abs(together[0] - together[1]).max() > 1e-4  # two different short inputs, two embeddings


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, **SLIM).train()
    out = model(torch.rand(6, 1, 9, 32, 22))
    loss = triplet_loss(out.triplet_features, torch.tensor([0, 0, 1, 1, 2, 2])).loss
    if out.logits is not None:
        loss = loss + out.logits.mean()
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    assert sum(int((p.grad != 0).any()) for p in model.parameters()) >= 0.9 * len(list(model.parameters()))


def test_width_and_input_size_knobs():
    full = create_model("gaitbase", num_classes=0)
    slim = create_model("gaitbase", width=0.25, input_height=32, input_width=22)
    assert slim.embedding_shape() == (64, 8) and full.embedding_shape() == (256, 16)
    assert parameter_count(slim) < parameter_count(full) / 10
    with pytest.raises(ValueError, match="do not divide"):
        create_model("gaitset", input_height=40)
    with pytest.raises(GaderError, match="unknown setting"):
        create_model("gaitset", widht=0.5)
    with pytest.raises(GaderError, match="unknown architecture"):
        create_model("gaitformer")


def _gar(architecture: str, **flags) -> GAR:
    return GAR(GARConfig(architecture, dict(SLIM), **flags))


@pytest.mark.parametrize("name", sorted(OPENGAIT_PARAMETERS))
def test_inference_view_has_only_the_silhouette_path_and_the_ratio_conv(name):
    model = _gar(name, ratio_attention=True, distillation=True)
    embedder = model.embedder()
    keys = set(embedder.state_dict())
    assert not any(k.startswith(("rgb", "adapters")) for k in keys)
    assert not any("classifier" in k or "bnneck" in k for k in keys)
    plain = create_model(name, **{**SLIM, "num_classes": 0})
    assert parameter_count(embedder) == parameter_count(plain) + 3 + 1  # the Conv1d(1, 1, 3) and its bias
    assert parameter_count(model) > 2 * parameter_count(plain)  # training carries the RGB branch


def test_ratio_attention_uses_ratios_and_never_invents_them():
    torch.manual_seed(0)
    model = _gar("gaitset", ratio_attention=True)
    with torch.no_grad():
        model.ratio.conv.weight.fill_(1.0)
    embedder = model.embedder().eval()
    frames = torch.rand(1, 1, 12, 32, 22)
    with torch.no_grad():
        near, far = embedder(frames, ratios=torch.full((1, 12), 3.0)), embedder(frames, ratios=torch.full((1, 12), 0.5))
        without = embedder(frames)
        backbone_alone = embedder.silhouette(frames).embeddings
    assert (near - far).abs().max() > 1e-4
    assert torch.equal(without, backbone_alone)  # no ratios: no attention, nothing made up


def test_a_sequence_with_ratios_embeds_the_same_beside_one_without():
    """A batch keeps ratios only when all of its sequences have them; embed_sequences batches the two kinds
    apart, so a sequence with ratios keeps its ratio attention whatever else is embedded with it."""
    import numpy as np

    from gader.embedding import PreparedSequence, embed_sequences

    torch.manual_seed(0)
    model = _gar("gaitset", ratio_attention=True)
    with torch.no_grad():
        model.ratio.conv.weight.normal_(0, 3.0)
    embedder = model.embedder().eval()
    rng = np.random.default_rng(0)
    frames = [(rng.random((n, 32, 22)) > 0.5).astype(np.uint8) * 255 for n in (9, 10, 11)]
    sequences = [
        PreparedSequence(frames[0], rng.uniform(0.5, 2.0, 9).astype(np.float32)),
        PreparedSequence(frames[1], None),
        PreparedSequence(frames[2], rng.uniform(0.5, 2.0, 11).astype(np.float32)),
    ]
    together = embed_sequences(embedder, sequences)  # [3, d, p]
    alone = np.stack([embed_sequences(embedder, [sequence])[0] for sequence in sequences])
    assert np.abs(together - alone).max() < 1e-5
    unweighted = embed_sequences(embedder, [PreparedSequence(frames[0], None)])[0]
    assert np.abs(alone[0] - unweighted).max() > 1e-3  # the ratios matter to this embedder


def test_distillation_pulls_silhouettes_towards_rgb_with_a_stop_gradient():
    torch.manual_seed(0)
    model = _gar("gaitbase", ratio_attention=True, distillation=True).train()
    sil, rgb, ratios = torch.rand(4, 1, 8, 32, 22), torch.rand(4, 3, 8, 32, 22), torch.rand(4, 8) + 1
    out = model(sil, None, ratios, rgb)
    out.distillation.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.rgb.parameters())  # stop-gradient
    assert any(p.grad is not None and p.grad.any() for p in model.silhouette.parameters())
    assert all(p.grad is not None for p in model.adapters.parameters())
    assert model.ratio.conv.weight.grad is not None


def test_each_part_of_gar_can_be_switched_off():
    assert _gar("gaitset").rgb is None and _gar("gaitset").ratio is None
    assert _gar("gaitset", distillation=True).ratio is None
    assert _gar("gaitset", ratio_attention=True).rgb is None
    with pytest.raises(GaderError, match="odd"):
        _gar("gaitset", ratio_attention=True, ratio_kernel=2)
