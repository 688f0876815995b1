"""The GADER pipeline: detection routes gait frames to GAR and the rest to the RGB branch; fusion rule."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gader.data import open_dataset
from gader.detector import DetectorConfig, DHSClassifier, GaitDetector
from gader.errors import GaderError
from gader.gar import GAR, GARConfig
from gader.model_io import ModelCard, load_detector, load_model, save_detector, save_model
from gader.pipeline import (
    GaderPipeline,
    PipelineConfig,
    PipelineResult,
    check_fusion_statistics,
    choose_gait_weight,
    fuse,
    fused_similarity,
    modality_statistics,
    retrieval_map,
    route,
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("artifacts")
    gar = GAR(
        GARConfig(
            "gaitset", {"width": 0.25, "input_height": 32, "input_width": 22}, ratio_attention=True, distillation=True
        )
    )
    save_model(root / "model", gar.embedder(), ModelCard(id="test-gar", gar={}), gar.rgb)
    config = DetectorConfig(score_threshold=0.0, min_gait_fraction=0.0, min_gait_frames=1)
    save_detector(root / "detector", GaitDetector(DHSClassifier(config).eval(), config), {"id": "test-detector"})
    return root


def test_saved_models_load_back(artifacts):
    model = load_model(artifacts / "model", with_rgb=True)
    assert model.card.embedding_shape == (64, 30) and model.rgb is not None
    detector, card = load_detector(artifacts / "detector")
    assert card["id"] == "test-detector" and detector.config.min_gait_frames == 1


def test_gait_frames_go_to_gar_and_the_rest_to_the_rgb_branch(artifacts, synth_wild):
    pipeline = GaderPipeline.load(artifacts / "model", artifacts / "detector")
    record = open_dataset(synth_wild).load(0)
    result = pipeline.process(record)
    gait, usable = route(record.frames, result.detection, pipeline.config)  # the segments' frames labelled full-gait
    assert usable and gait.any() and not (gait & ~result.detection.gait_mask).any()
    assert result.embedded_frames == int(gait.sum()) > 0
    expected = pipeline.embed_frames(record.select(gait))
    assert np.allclose(result.embedding, expected, atol=1e-6)
    if (~gait).sum() >= 3:
        assert result.appearance is not None and result.appearance_frames == int((~gait).sum())
    plain = GaderPipeline(pipeline.model, pipeline.detector, PipelineConfig(use_detector=False)).process(record)
    assert plain.detection is None and plain.embedded_frames == record.frames
    assert np.allclose(plain.embedding, pipeline.embed_frames(record), atol=1e-6)
    assert set(result.to_dict()) >= {"detection", "embedding_shape", "embedded_frames", "model"}


def test_the_rgb_branch_is_served_with_the_ratio_weights_it_was_trained_with(synth_wild, tmp_path):
    """GAR.forward weights the RGB branch's frames by the ratio attention, as the silhouettes'; the pipeline's
    appearance embedding must be that same function of the record, not the branch run unweighted."""
    from gader.embedding import resize_frames

    torch.manual_seed(1)
    config = GARConfig(
        "gaitbase", {"width": 0.25, "input_height": 32, "input_width": 22}, ratio_attention=True, distillation=True
    )
    gar = GAR(config).eval()
    with torch.no_grad():  # a trained attention: weights that vary with the ratios (a fresh one is 0.5 throughout)
        gar.ratio.conv.weight.normal_(0, 3.0)
    save_model(tmp_path / "model", gar.embedder(), ModelCard(id="weighted", gar={}), gar.rgb)
    pipeline = GaderPipeline(load_model(tmp_path / "model", with_rgb=True), None, PipelineConfig(use_detector=False))
    record = open_dataset(synth_wild).load(0)
    assert record.rgb is not None and record.ratios is not None
    rgb = resize_frames(record.rgb, 32, 22)  # [T, 32, 22, 3]
    frames = torch.from_numpy(rgb).float().div(255).permute(3, 0, 1, 2)[None]  # [1, 3, T, 32, 22]
    with torch.no_grad():
        weights = gar.frame_weights(torch.from_numpy(record.ratios.astype(np.float32))[None], None)  # [1, T]
        assert float(weights.max() - weights.min()) > 0.1
        trained = gar.rgb(frames, None, weights).embeddings[0].numpy()
        unweighted = gar.rgb(frames).embeddings[0].numpy()
    served = pipeline.embed_appearance(record)
    assert np.allclose(served, trained, atol=1e-5)
    assert not np.allclose(served, unweighted, atol=1e-3)
    without_ratios = GaderPipeline(pipeline.model, None, PipelineConfig(use_detector=False, use_ratios=False))
    assert np.allclose(without_ratios.embed_appearance(record), unweighted, atol=1e-5)  # as its gait side does


STATISTICS = {
    "gait": {"impostor_mean": 0.5, "impostor_std": 0.25},
    "appearance": {"impostor_mean": 0.25, "impostor_std": 0.5},
    "joint": {"impostor_correlation": 0.5},
}


def part_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The test's own oracle: mean over parts of the cosine of [d, p] embeddings, one part at a time."""
    return float(
        np.mean([a[:, k] @ b[:, k] / np.linalg.norm(a[:, k]) / np.linalg.norm(b[:, k]) for k in range(a.shape[1])])
    )


def test_fusion_rule_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])  # two parts: (1, 0) and (0, 1)
    b = np.array([[1.0, 1.0], [0.0, 0.0]])  # parts: (1, 0) and (1, 0): cosines 1 and 0, mean 0.5
    both = PipelineResult(None, a, a, 10, 5, "m")
    other = PipelineResult(None, b, -a, 10, 5, "m")
    gait_only = PipelineResult(None, b, None, 10, 0, "m")
    look_only = PipelineResult(None, None, a, 0, 5, "m")
    gait, look = (1 + 0.5) / 2, (1 - 1) / 2  # similarities in [0, 1]
    # Uncalibrated: two models' similarities are never summed; gait where both sides have it
    assert fuse(both, other, 0.8) == pytest.approx(gait)
    assert fuse(look_only, both) == pytest.approx(1.0)  # appearance alone: a with itself
    assert fuse(look_only, gait_only) is None
    # Calibrated: standardised by each modality's impostor statistics, weighted, and rescaled to unit impostor
    # spread for scores correlated by 0.5: sd(0.8 z_g + 0.2 z_l) = sqrt(0.64 + 0.04 + 2 * 0.8 * 0.2 * 0.5)
    z_gait, z_look = (gait - 0.5) / 0.25, (look - 0.25) / 0.5  # 1.0 and -0.5
    expected = (0.8 * z_gait + 0.2 * z_look) / np.sqrt(0.84)
    assert fuse(both, other, 0.8, STATISTICS) == pytest.approx(expected)
    assert fuse(both, gait_only, 0.8, STATISTICS) == pytest.approx(z_gait)
    assert fuse(look_only, other, 0.8, STATISTICS) == pytest.approx(z_look)
    assert fuse(look_only, gait_only, 0.8, STATISTICS) is None
    # A pair that shares one modality alone is standardised by that kind's own section when the card has one;
    # pairs with both keep the modality's section
    alone = {**STATISTICS, "gait_alone": {"impostor_mean": 0.7, "impostor_std": 0.1}}
    alone["appearance_alone"] = {"impostor_mean": 0.1, "impostor_std": 0.2}
    assert fuse(both, gait_only, 0.8, alone) == pytest.approx((gait - 0.7) / 0.1)
    assert fuse(look_only, other, 0.8, alone) == pytest.approx((look - 0.1) / 0.2)
    assert fuse(both, other, 0.8, alone) == pytest.approx(expected)


STATISTICS_BY_KIND = {
    **STATISTICS,
    "gait_alone": {"impostor_mean": 0.6, "impostor_std": 0.2},
    "appearance_alone": {"impostor_mean": 0.3, "impostor_std": 0.4},
}


@pytest.mark.parametrize(
    "statistics", [None, STATISTICS, STATISTICS_BY_KIND], ids=["uncalibrated", "calibrated", "calibrated-by-kind"]
)
def test_fused_similarity_matrix_is_the_fusion_rule_for_every_pair(statistics):
    """The vectorised matrix the GADER bench and ``fuse`` rank with: each entry follows the documented rule for
    that pair, computed here one pair at a time, whichever modalities the two sides have (NaN where they share
    none)."""
    rng = np.random.default_rng(0)

    def result(gait: bool, look: bool) -> PipelineResult:
        embedding = rng.normal(size=(6, 4)).astype(np.float32) if gait else None
        appearance = rng.normal(size=(5, 2)).astype(np.float32) if look else None
        return PipelineResult(None, embedding, appearance, 10 * gait, 5 * look, "m")

    def rule(a: PipelineResult, b: PipelineResult) -> float | None:
        scores = {}
        pairs = (("gait", a.embedding, b.embedding), ("appearance", a.appearance, b.appearance))
        shared = sum(x is not None and y is not None for _, x, y in pairs)
        for name, x, y in pairs:
            if x is not None and y is not None:
                similarity = (1 + part_cosine(x, y)) / 2
                section = f"{name}_alone" if shared == 1 and f"{name}_alone" in (statistics or {}) else name
                mean, std = (
                    (0, 1)
                    if statistics is None
                    else (statistics[section]["impostor_mean"], statistics[section]["impostor_std"])
                )
                scores[name] = (similarity - mean) / std
        if len(scores) == 2 and statistics is not None:
            rho = statistics["joint"]["impostor_correlation"]
            spread = np.sqrt(0.7**2 + 0.3**2 + 2 * 0.7 * 0.3 * rho)
            return (0.7 * scores["gait"] + 0.3 * scores["appearance"]) / spread
        return scores.get("gait", scores.get("appearance"))

    kinds = [(True, True), (True, False), (False, True)]
    probes = [result(*kinds[i % 3]) for i in range(7)]
    gallery = [result(*kinds[i % 3]) for i in range(5)]
    matrix = fused_similarity(probes, gallery, 0.7, statistics)
    assert matrix.shape == (7, 5)
    for i, probe in enumerate(probes):
        for j, enrolled in enumerate(gallery):
            expected = rule(probe, enrolled)
            if expected is None:
                assert np.isnan(matrix[i, j]) and fuse(probe, enrolled, 0.7, statistics) is None
            else:
                assert matrix[i, j] == pytest.approx(expected, abs=1e-6)
                assert fuse(probe, enrolled, 0.7, statistics) == pytest.approx(expected, abs=1e-6)
    assert np.isnan(matrix).any() and not np.isnan(matrix[0]).any()  # gait-only vs look-only pairs, and the rest
    with pytest.raises(GaderError, match="needs probes and gallery"):
        fused_similarity([], gallery)


def test_modality_statistics_count_each_pair_of_different_people_once():
    x, y = np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])  # one part, orthogonal: similarity 0.5
    results = [
        PipelineResult(None, x, x, 1, 1, "m"),  # person a
        PipelineResult(None, x, y, 1, 1, "m"),  # person a: a genuine pair with the first, never counted
        PipelineResult(None, y, None, 1, 0, "m"),  # person b, no appearance
        PipelineResult(None, -x, x, 1, 1, "m"),  # person c
    ]
    statistics = modality_statistics(results, ["a", "a", "b", "c"])
    # gait impostor pairs: (0,2) 0.5, (0,3) 0, (1,2) 0.5, (1,3) 0, (2,3) 0.5
    assert statistics["gait"]["impostor_pairs"] == 5
    assert statistics["gait"]["impostor_mean"] == pytest.approx(0.3)
    assert statistics["gait"]["impostor_std"] == pytest.approx(np.std([0.5, 0, 0.5, 0, 0.5]))
    # appearance impostor pairs (result 2 has none): (0,3) 1.0, (1,3) 0.5
    assert statistics["appearance"]["impostor_pairs"] == 2
    assert statistics["appearance"]["impostor_mean"] == pytest.approx(0.75)
    # both modalities on the impostor pairs (0,3) and (1,3): gait 0 and 0, too few (< 3) for a correlation
    assert statistics["joint"] == {"impostor_correlation": 0.0, "impostor_pairs": 2}
    rng = np.random.default_rng(1)
    many = [PipelineResult(None, rng.normal(size=(4, 2)), rng.normal(size=(3, 2)), 1, 1, "m") for _ in range(30)]
    joint = modality_statistics(many, [str(i) for i in range(30)])["joint"]
    assert joint["impostor_pairs"] == 30 * 29 // 2 and abs(joint["impostor_correlation"]) < 0.2  # independent
    twins = [PipelineResult(None, r.embedding, r.embedding, 1, 1, "m") for r in many]  # appearance = gait
    assert modality_statistics(twins, [str(i) for i in range(30)])["joint"]["impostor_correlation"] == pytest.approx(1)
    opposite = [PipelineResult(None, r.embedding, -r.embedding, 1, 1, "m") for r in many]  # cos(-a, -b) = cos(a, b)
    assert modality_statistics(opposite, [str(i) for i in range(30)])["joint"]["impostor_correlation"] == pytest.approx(
        1
    )
    noisy = [PipelineResult(None, r.embedding, r.embedding + rng.normal(size=(4, 2)), 1, 1, "m") for r in many]
    assert 0.2 < modality_statistics(noisy, [str(i) for i in range(30)])["joint"]["impostor_correlation"] < 0.95
    with pytest.raises(GaderError, match="at least 2 people, got 1"):
        modality_statistics(many[:3], ["a", "a", "a"])
    no_look = [results[0], results[2], PipelineResult(None, -x, None, 1, 0, "m")]  # one appearance embedding only
    with pytest.raises(GaderError, match="appearance: 0 impostor pairs found, at least 2"):
        modality_statistics(no_look, ["a", "b", "c"])
    with pytest.raises(GaderError, match="gait: all 2 impostor pairs score the same"):
        modality_statistics(results[:3], ["a", "a", "b"])
    with pytest.raises(GaderError, match="different shapes"):
        modality_statistics([results[0], PipelineResult(None, np.ones((3, 1)), None, 1, 0, "m")], ["a", "b"])


def test_pairs_that_share_one_modality_alone_get_their_own_statistics_when_there_are_enough():
    """gait_alone / appearance_alone: a modality's impostor mean and deviation over the pairs of different people
    that share it alone (each pair once), checked pair by pair; left out below MIN_ALONE_PAIRS such pairs."""
    from gader.pipeline import MIN_ALONE_PAIRS

    rng = np.random.default_rng(7)
    kinds = [(True, True), (True, False), (False, True)]  # both, gait only, appearance only
    results, subjects = [], []
    for i in range(45):
        gait, look = kinds[i % 3]
        results.append(
            PipelineResult(
                None,
                rng.normal(size=(4, 2)) if gait else None,
                rng.normal(size=(3, 2)) + 2.0 if look else None,
                10 * gait,
                5 * look,
                "m",
            )
        )
        subjects.append(f"p{i // 2}")
    statistics = modality_statistics(results, subjects)
    for modality, field in (("gait", "embedding"), ("appearance", "appearance")):
        other = "appearance" if field == "embedding" else "embedding"
        alone = []
        for i in range(len(results)):
            for j in range(i + 1, len(results)):
                a, b = results[i], results[j]
                shares = getattr(a, field) is not None and getattr(b, field) is not None
                shares_other = getattr(a, other) is not None and getattr(b, other) is not None
                if subjects[i] != subjects[j] and shares and not shares_other:
                    alone.append((1 + part_cosine(getattr(a, field), getattr(b, field))) / 2)
        section = statistics[f"{modality}_alone"]
        assert section["impostor_pairs"] == len(alone) >= MIN_ALONE_PAIRS
        assert section["impostor_mean"] == pytest.approx(np.mean(alone))
        assert section["impostor_std"] == pytest.approx(np.std(alone))
        # ... and the modality's own section then covers the other pairs, those that share both modalities
        rest = [
            (1 + part_cosine(getattr(results[i], field), getattr(results[j], field))) / 2
            for i in range(len(results))
            for j in range(i + 1, len(results))
            if subjects[i] != subjects[j]
            and all(getattr(r, f) is not None for r in (results[i], results[j]) for f in ("embedding", "appearance"))
        ]
        assert statistics[modality]["impostor_pairs"] == len(rest) > 0
        assert statistics[modality]["impostor_mean"] == pytest.approx(np.mean(rest))
        assert statistics[modality]["impostor_std"] == pytest.approx(np.std(rest))
    check_fusion_statistics(statistics, "calibrated here")
    few = modality_statistics(results[:20], subjects[:20])  # too few pairs of each lone kind
    assert "gait_alone" not in few and "appearance_alone" not in few and {"gait", "appearance", "joint"} <= set(few)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("joint", None, None, "must hold gait, appearance and joint sections"),
        ("joint", "impostor_correlation", None, "joint.impostor_correlation is missing"),
        ("gait", "impostor_std", 0.0, "gait.impostor_std must be positive"),
        ("appearance", "impostor_mean", float("nan"), "appearance.impostor_mean is missing or not a finite number"),
        ("joint", "impostor_correlation", 1.5, "must lie in \\(-1, 1\\]"),
        ("joint", "impostor_correlation", -1.0, "must lie in \\(-1, 1\\]"),
        ("joint", "gait_weight", 1.2, "joint.gait_weight must lie in \\[0, 1\\]"),
        ("joint", "gait_weight", "0.8", "joint.gait_weight is missing or not a finite number"),
        ("gait_alone", "impostor_std", -0.1, "gait_alone.impostor_std must be positive"),
        ("appearance_alone", "impostor_mean", None, "appearance_alone.impostor_mean is missing"),
    ],
)
def test_bad_fusion_statistics_in_a_card_are_refused_by_name(artifacts, section, key, value, message):
    """A card's statistics are checked where they are used: a clear error naming the model and the field, not a
    KeyError or a division by zero at the first comparison."""
    import copy

    statistics = copy.deepcopy(STATISTICS)
    if key is None:
        del statistics[section]
    else:  # an optional section (gait_alone, appearance_alone) is made good first, then spoiled
        statistics.setdefault(section, {"impostor_mean": 0.5, "impostor_std": 0.1})[key] = value
    with pytest.raises(GaderError, match=message):
        check_fusion_statistics(statistics, "model m")
    pipeline = GaderPipeline.load(artifacts / "model", None)
    pipeline.model.card.fusion_statistics = statistics
    a = PipelineResult(None, np.ones((64, 30)), None, 1, 0, "m")
    with pytest.raises(GaderError, match=f"model test-gar: fusion_statistics.*{message}"):
        pipeline.similarity(a, a)
    check_fusion_statistics(STATISTICS, "model m")  # the good ones pass


def test_retrieval_map_by_hand():
    """Leave-one-out retrieval: each item queries the others; AP = mean precision at the ranks of its matches."""
    labels = np.array(["a", "a", "b", "b", "c"])
    similarity = np.array(
        [
            [9.0, 0.5, 0.9, 0.1, 0.0],  # query 0: b, a, ...: its match at rank 2 -> AP 1/2
            [0.5, 9.0, 0.3, 0.1, 0.0],  # query 1: a first -> AP 1
            [0.9, 0.3, 9.0, np.nan, 0.0],  # query 2: its match cannot be scored (NaN): last of 4 -> AP 1/4
            [0.1, 0.1, 0.8, 9.0, 0.0],  # query 3: b first -> AP 1
            [0.7, 0.0, 0.0, 0.0, 9.0],  # c has no other item: left out
        ]
    )  # the diagonal (the query itself) is never ranked, however high
    assert retrieval_map(similarity, labels) == pytest.approx((0.5 + 1 + 0.25 + 1) / 4)
    # Ties, unscoreable pairs among them, go against the query: its own person ranks after the others
    tied = np.array(
        [
            [1.0, np.nan, np.nan, np.nan],  # query 0: nothing scored: its match last of 3 -> AP 1/3
            [0.5, 1.0, 0.5, 0.1],  # query 1: its match ties with b at 0.5 and ranks second -> AP 1/2
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert retrieval_map(tied, ["a", "a", "b", "c"]) == pytest.approx((1 / 3 + 1 / 2) / 2)
    with pytest.raises(GaderError, match="no person has two sequences"):
        retrieval_map(np.zeros((2, 2)), np.array(["a", "b"]))
    with pytest.raises(GaderError, match="square score matrix for 3 items"):
        retrieval_map(np.zeros((3, 2)), ["a", "a", "b"])


@pytest.mark.parametrize("informative", ["gait", "appearance"])
def test_the_calibrated_gait_weight_follows_the_modality_that_tells_people_apart(informative):
    """Five people, four sequences each; one modality places each person's sequences near a person-specific
    direction, the other is noise. The weight that retrieves them best leans on the informative one: all gait
    (1.0) when gait tells them apart, less than half when appearance does."""
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(5), 4)
    centres = rng.normal(size=(5, 16, 2))
    telling = [centres[p] + 0.3 * rng.normal(size=(16, 2)) for p in people]  # [d, p] each
    noise = [rng.normal(size=(16, 2)) for _ in people]
    gait, look = (telling, noise) if informative == "gait" else (noise, telling)
    results = [PipelineResult(None, g, a, 10, 5, "m") for g, a in zip(gait, look, strict=True)]
    subjects = [str(p) for p in people]
    statistics = modality_statistics(results, subjects)
    weight, mean_ap = choose_gait_weight(results, subjects, statistics)
    assert set(mean_ap) == {round(0.05 * i, 2) for i in range(21)}
    if informative == "gait":
        assert weight == 1.0 and mean_ap[1.0] > mean_ap[0.0] + 0.3
    else:
        # standardised, the informative modality's genuine pairs lie far above its impostors, so it carries
        # the ranking even at under half the weight; a tie goes to the higher gait weight
        assert weight < 0.5 and mean_ap[0.0] > mean_ap[1.0] + 0.3
    no_pair_with_both = [PipelineResult(None, g, None, 10, 0, "m") for g in gait]
    with pytest.raises(GaderError, match="no pair of results carries both"):
        choose_gait_weight(no_pair_with_both, subjects, statistics)


def test_a_tie_between_gait_weights_goes_to_gait():
    """The same embedding as gait and as appearance: every weight fuses to the same scores (the two standardised
    scores are equal and perfectly correlated), so every weight ties, and the tie goes to the highest."""
    rng = np.random.default_rng(2)
    people = np.repeat(np.arange(4), 3)
    embeddings = [rng.normal(size=(8, 2)) + 0.5 * p for p in people]
    results = [PipelineResult(None, e, e.copy(), 10, 5, "m") for e in embeddings]
    subjects = [str(p) for p in people]
    weight, mean_ap = choose_gait_weight(results, subjects, modality_statistics(results, subjects))
    assert max(mean_ap.values()) - min(mean_ap.values()) < 1e-9
    assert weight == 1.0


def test_the_pipeline_fuses_with_the_configured_then_the_calibrated_then_the_default_weight(artifacts):
    import copy

    from gader.pipeline import DEFAULT_GAIT_WEIGHT

    pipeline = GaderPipeline.load(artifacts / "model", None)
    pipeline.model.card.fusion_statistics = copy.deepcopy(STATISTICS)
    assert pipeline.gait_weight == DEFAULT_GAIT_WEIGHT  # no weight in the card
    pipeline.model.card.fusion_statistics["joint"]["gait_weight"] = 0.35
    assert pipeline.gait_weight == 0.35
    a = PipelineResult(None, np.eye(64, 30), np.eye(64, 30), 10, 5, "m")
    b = PipelineResult(None, np.ones((64, 30)), -np.eye(64, 30), 10, 5, "m")
    calibrated = pipeline.model.card.fusion_statistics
    assert pipeline.similarity(a, b) == pytest.approx(fuse(a, b, 0.35, calibrated))
    assert pipeline.similarity(a, b) != pytest.approx(fuse(a, b, DEFAULT_GAIT_WEIGHT, calibrated))
    fixed = GaderPipeline(pipeline.model, None, PipelineConfig(gait_weight=0.9))
    assert fixed.gait_weight == 0.9 and fixed.similarity(a, b) == pytest.approx(fuse(a, b, 0.9, calibrated))
    for bad in (1.5, -0.1, float("nan"), "0.8", True):
        with pytest.raises(GaderError, match="gait_weight must be a number in \\[0, 1\\]"):
            PipelineConfig(gait_weight=bad)
    pipeline.model.card.fusion_statistics["joint"]["gait_weight"] = 2.0  # a card's weight is checked where read
    with pytest.raises(GaderError, match=r"model test-gar: fusion_statistics\.joint\.gait_weight must lie in"):
        _ = pipeline.gait_weight


def test_a_detection_made_already_is_reused_not_recomputed(artifacts, synth_wild):
    """Pipelines that differ only in what they do with a detection (bench.gader_eval, bench.gader_real) run the
    detector once: the report given is the one routed and returned."""
    from gader.pipeline import GaderPipeline

    trimmed = GaderPipeline.load(artifacts / "model", artifacts / "detector")
    untrimmed = GaderPipeline.load(
        artifacts / "model", artifacts / "detector", PipelineConfig(trim_to_frame_labels=False)
    )
    record = open_dataset(synth_wild).load(0)
    first = trimmed.process(record)
    again = untrimmed.process(record, first.detection)
    assert again.detection is first.detection
    frames, _ = route(record.frames, first.detection, untrimmed.config)
    assert again.embedded_frames == int(frames.sum())
    assert untrimmed.process(record).detection.to_dict() == first.detection.to_dict()  # what it would have made
    without = GaderPipeline.load(artifacts / "model", artifacts / "detector", PipelineConfig(use_detector=False))
    assert without.process(record, first.detection).detection is None  # a pipeline without a detector ignores it
    shorter = record.select(np.arange(record.frames) < record.frames // 2)  # another sequence's report is refused
    with pytest.raises(GaderError, match="the detection covers"):
        trimmed.process(shorter, first.detection)


def test_calibrate_fusion_stores_the_statistics_the_pipeline_then_fuses_with(artifacts, synth_wild, tmp_path):
    """`gader calibrate-fusion` writes each modality's impostor statistics into the card (the same numbers as
    ``modality_statistics`` over the pipeline's results), and the pipeline's similarity uses them."""
    import json
    import shutil
    import subprocess
    import sys

    model = tmp_path / "model"
    shutil.copytree(artifacts / "model", model)

    def gader(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gader", *args], capture_output=True, text=True, timeout=120)

    # The shipped detector (the default), which sends synth_wild's standing and partial stretches to the RGB branch
    done = gader("calibrate-fusion", "--model", str(model), "--data", str(synth_wild))
    assert done.returncode == 0, done.stderr
    card = json.loads((model / "model.json").read_text())
    pipeline = GaderPipeline.load(model, "gader-detector")
    dataset = open_dataset(synth_wild)
    records = list(dataset)
    results = [pipeline.process(record) for record in records]
    expected = modality_statistics(results, [record.subject for record in records])
    for section, key in [(m, k) for m in ("gait", "appearance") for k in ("impostor_mean", "impostor_std")] + [
        ("joint", "impostor_correlation")
    ]:
        assert card["fusion_statistics"][section][key] == pytest.approx(expected[section][key], rel=1e-5, abs=1e-9)
    for section in ("gait", "appearance", "joint"):
        assert card["fusion_statistics"][section]["impostor_pairs"] == expected[section]["impostor_pairs"] > 0
    assert card["metrics"]["fusion_calibration"]["people"] == len(dataset.subjects)
    assert pipeline.model.card.fusion_statistics == card["fusion_statistics"]
    both = [r for r in results if r.embedding is not None and r.appearance is not None]
    assert len(both) >= 2  # the shipped detector leaves standing / partial frames to the RGB branch
    # The gait weight is the one that retrieves the calibration people best, recorded with every weight's mAP
    weight, mean_ap = choose_gait_weight(results, [record.subject for record in records], expected)
    assert card["fusion_statistics"]["joint"]["gait_weight"] == weight == pipeline.gait_weight
    recorded = card["metrics"]["fusion_calibration"]["map_by_gait_weight"]
    assert recorded == {f"{w:g}": pytest.approx(100 * m, abs=1e-3) for w, m in mean_ap.items()}
    # ... and the fused score's operating points at that weight, with what they measured
    from gader.pipeline import fused_operating_points

    points = fused_operating_points(results, [record.subject for record in records], weight, expected)
    tables = card["fusion_operating_points"]
    assert set(tables) == {"all", "gait", "appearance", "both"}
    assert tables["all"] == pytest.approx(points["operating_points"], abs=1e-6)
    assert set(tables["all"]) | set(points["unresolved"]) == {"fmr=1e-2", "fmr=1e-3", "fmr=1e-4"}
    for kind in ("gait", "appearance", "both"):
        assert tables[kind] == pytest.approx(points["by_kind"][kind]["operating_points"], abs=1e-6)
    stored = card["metrics"]["fusion_calibration"]["operating_points"]
    assert {kind: stored["by_kind"][kind]["impostor_pairs"] for kind in stored["by_kind"]} == {
        kind: found["impostor_pairs"] for kind, found in points["by_kind"].items()
    }
    assert stored["tmr"] == {name: pytest.approx(100 * v, abs=1e-3) for name, v in points["tmr"].items()}
    a, b = both[0], both[-1]
    fused = pipeline.similarity(a, b)
    assert fused is not None and fused == pytest.approx(fuse(a, b, weight, card["fusion_statistics"]))
    assert fused != pytest.approx(fuse(a, b, weight))  # a standardised score, not the raw gait similarity
    # --fallback-whole-sequence routes as the GADER bench does (no usable gait: GAR on the whole sequence);
    # --json prints what it stored. A stricter copy of the detector (usable only with at least the median gait
    # fraction of these sequences) leaves about half of them unusable, so that the two routings differ here.
    from gader.model_io import resolve_detector

    fractions = [result.detection.gait_fraction for result in results]
    strict = tmp_path / "strict-detector"
    shutil.copytree(resolve_detector("gader-detector"), strict)
    detector_card = json.loads((strict / "detector.json").read_text())
    detector_card["config"]["min_gait_fraction"] = float(np.median(fractions))
    (strict / "detector.json").write_text(json.dumps(detector_card))
    done = gader(
        "calibrate-fusion", "--model", str(model), "--data", str(synth_wild), "--detector", str(strict),
        "--fallback-whole-sequence", "--json", "--plot", str(tmp_path / "fused-scores"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fused-scores.png").stat().st_size > 10_000  # the score curves, drawn
    printed = json.loads(done.stdout)
    card = json.loads((model / "model.json").read_text())
    assert printed["fusion_statistics"] == card["fusion_statistics"]
    assert (
        printed["fallback_whole_sequence"] is card["metrics"]["fusion_calibration"]["fallback_whole_sequence"] is True
    )
    subjects = [record.subject for record in records]
    routed = [
        GaderPipeline.load(model, strict, PipelineConfig(fallback_whole_sequence=True)).process(record)
        for record in records
    ]
    without = [GaderPipeline.load(model, strict).process(record) for record in records]
    assert sum(r.embedding is None for r in without) > 0 == sum(r.embedding is None for r in routed)
    expected = modality_statistics(routed, subjects)
    assert expected["gait"]["impostor_pairs"] > modality_statistics(without, subjects)["gait"]["impostor_pairs"]
    for section in ("gait", "appearance"):
        assert card["fusion_statistics"][section]["impostor_pairs"] == expected[section]["impostor_pairs"]
        assert card["fusion_statistics"][section]["impostor_mean"] == pytest.approx(expected[section]["impostor_mean"])
    # A shipped card is not rewritten; a model without an RGB branch has nothing to fuse
    bad_plot = gader("calibrate-fusion", "--model", str(model), "--data", str(synth_wild), "--plot", "p.txt")
    assert bad_plot.returncode == 1 and "'.txt'" in bad_plot.stderr and "calibrating" not in bad_plot.stderr
    shipped = gader("calibrate-fusion", "--model", "synth-wild-gar", "--data", str(synth_wild))
    assert shipped.returncode == 1 and "is a shipped model" in shipped.stderr
    (model / "rgb.safetensors").unlink()
    no_rgb = gader("calibrate-fusion", "--model", str(model), "--data", str(synth_wild))
    assert no_rgb.returncode == 1 and "ships no RGB branch" in no_rgb.stderr


# What each person's four sequences carry, (gait, appearance): "mixed" gives every kind of pair genuine and
# impostor pairs; in "lone-look" odd people have one appearance-only sequence and nothing else with appearance,
# so pairs scored on appearance alone are all between different people.
LAYOUTS = {
    "mixed": lambda person: [(True, True), (True, False), (False, True), (True, True)],
    "lone-look": lambda person: (
        [(True, True), (True, False)] * 2 if person % 2 == 0 else [(False, True)] + [(True, False)] * 3
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("statistics", [STATISTICS, STATISTICS_BY_KIND], ids=["shared", "by-kind"])
def test_fused_operating_points_by_hand(statistics, layout, capsys):
    """Thresholds on the fused score at each false match rate, checked against a brute-force oracle over every
    pair once: the lowest impostor score at which no more than that share of impostor pairs is accepted, the share of
    genuine pairs accepted there, and the false match rate of each kind of pair at it. A kind of pair without
    genuine pairs still gets thresholds (they need impostors only), without a true match rate."""
    from gader.pipeline import fused_operating_points

    rng = np.random.default_rng(4)
    people = np.repeat(np.arange(6), 4)
    results = []
    for i, person in enumerate(people):
        gait, look = LAYOUTS[layout](person)[i % 4]
        centre = np.full((4, 2), float(person))
        results.append(
            PipelineResult(
                None,
                centre + rng.normal(size=(4, 2)) if gait else None,
                -centre + rng.normal(size=(4, 2)) if look else None,
                10 * gait,
                5 * look,
                "m",
            )
        )
    subjects = [f"p{p}" for p in people]
    fmrs = (0.1, 0.02, 1e-3)
    found = fused_operating_points(results, subjects, 0.6, statistics, fmrs)

    genuine = {"gait": [], "appearance": [], "both": []}
    impostor = {"gait": [], "appearance": [], "both": []}
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            score = fuse(results[i], results[j], 0.6, statistics)
            if score is None:
                continue  # gait-only against appearance-only: no shared modality
            a, b = results[i], results[j]
            has_gait = a.embedding is not None and b.embedding is not None
            has_look = a.appearance is not None and b.appearance is not None
            kind = "both" if has_gait and has_look else "gait" if has_gait else "appearance"
            (genuine if subjects[i] == subjects[j] else impostor)[kind].append(score)

    def threshold_at(genuine_scores: list[float], impostor_scores: list[float], fmr: float) -> float:
        """The lowest impostor score at which at most ``fmr`` of the impostor scores pass, by trying every one
        (a genuine score in between would pass as many of these impostors and more new ones)."""
        return min(t for t in set(impostor_scores) if np.mean(np.array(impostor_scores) >= t) <= fmr)

    every_genuine = [score for scores in genuine.values() for score in scores]
    every_impostor = [score for scores in impostor.values() for score in scores]
    assert found["genuine_pairs"] == len(every_genuine) and found["impostor_pairs"] == len(every_impostor)
    for kind in impostor:
        assert found["by_kind"][kind]["impostor_pairs"] == len(impostor[kind]) > 0
        assert found["by_kind"][kind]["genuine_pairs"] == len(genuine[kind])
    for fmr in fmrs[:2]:
        name = f"fmr={fmr:.0e}".replace("e-0", "e-")
        threshold = threshold_at(every_genuine, every_impostor, fmr)
        assert found["operating_points"][name] == pytest.approx(threshold)
        assert found["tmr"][name] == pytest.approx(np.mean(np.array(every_genuine) >= threshold))
        for kind, scores in impostor.items():
            assert found["fmr_by_pairs"][name][kind] == pytest.approx(np.mean(np.array(scores) >= threshold))
            if fmr * len(scores) >= 1:  # each kind's own threshold, over its own pairs
                own = threshold_at(genuine[kind], scores, fmr)
                assert found["by_kind"][kind]["operating_points"][name] == pytest.approx(own)
                if genuine[kind]:
                    tmr = np.mean(np.array(genuine[kind]) >= own)
                    assert found["by_kind"][kind]["tmr"][name] == pytest.approx(tmr)
                else:
                    assert name not in found["by_kind"][kind]["tmr"]
            else:
                assert name in found["by_kind"][kind]["unresolved"]
    assert bool(genuine["appearance"]) == (layout == "mixed")  # the layouts give what they promise
    if layout == "lone-look":  # calibrate-fusion's report says so, rather than failing on the missing rate
        from gader.cli.pipeline_commands import _print_fusion_calibration

        counted = {section: {**values, "impostor_pairs": 1} for section, values in statistics.items()}
        _print_fusion_calibration(Path("m"), len(results), subjects, 0, 10, counted, None, {}, found)
        report = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
        appearance = report.split("scored on appearance ")[1]
        assert appearance.startswith("(0 genuine,") and "fmr=1e-1 " in appearance
        assert "(no genuine pairs: TMR unknown)" in appearance
    assert sum(len(found["by_kind"][kind]["operating_points"]) for kind in impostor) >= 4  # the oracle ran
    assert 0 < found["operating_points"]["fmr=1e-1"] < found["operating_points"]["fmr=2e-2"]
    # 1e-3 of the impostor pairs is less than one pair: no threshold is claimed for it
    assert len(every_impostor) < 1000 and found["unresolved"] == ["fmr=1e-3"]
    assert all("fmr=1e-3" in found["by_kind"][kind]["unresolved"] for kind in impostor)
    assert "fmr=1e-3" not in found["operating_points"]
    with pytest.raises(GaderError, match="pairs of the same person and of different people, got 0"):
        fused_operating_points(results[::4], subjects[::4], 0.6, statistics)  # one sequence per person


def test_an_operating_point_sits_on_an_impostor_score_not_on_a_genuine_one_above_the_next():
    """A genuine score between the k-th and (k+1)-th highest impostor would pass as few of these impostors, but
    about (k+1) / n of new ones: up to twice the rate named when k is small. The threshold is the k-th impostor."""
    from gader.pipeline import _thresholds

    impostor = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    genuine = np.array([0.95, 0.85, 0.82])
    found = _thresholds(genuine, impostor, (0.1, 0.2, 0.01))
    assert found["operating_points"] == {"fmr=1e-1": 0.9, "fmr=2e-1": 0.8}
    assert found["tmr"] == {"fmr=1e-1": pytest.approx(1 / 3), "fmr=2e-1": pytest.approx(1.0)}
    assert found["unresolved"] == ["fmr=1e-2"]


def test_compare_scores_two_files_with_the_pipeline_and_decides_at_the_calibrated_points(synth_wild, tmp_path):
    """`gader compare` runs the shipped pipeline on two sequence files: its score is the pipeline's own fused
    score for the two records, and its decisions are that score against the model card's operating points
    (the fused score's, from calibrate-fusion; a gait-only model's, from calibrate)."""
    import json
    import subprocess
    import sys

    from gader.data import write_sequence

    dataset = open_dataset(synth_wild)
    records = [dataset.load(i) for i in range(len(dataset))]
    first = records[0]
    same = next(r for r in records[1:] if r.subject == first.subject)
    for name, record in (("first.npz", first), ("same.npz", same)):
        write_sequence(record, tmp_path / name)

    def gader(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gader", *args], capture_output=True, text=True, timeout=180)

    files = (str(tmp_path / "first.npz"), str(tmp_path / "same.npz"))
    done = gader("compare", *files, "--model", "synth-wild-gar", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    pipeline = GaderPipeline.load("synth-wild-gar", "gader-detector", PipelineConfig(fallback_whole_sequence=True))
    assert report["fallback_whole_sequence"] is True  # as the card's fusion calibration routed
    a, b = pipeline.process(first), pipeline.process(same)
    assert report["score"] == pytest.approx(pipeline.similarity(a, b), abs=1e-5)
    assert report["scale"] == "impostor standard deviations" and report["scored_on"] in ("gait", "both")
    # the score is the documented rule over the standardised parts it reports
    z = report["standardised"]
    if report["scored_on"] == "both":
        w, rho = report["gait_weight"], pipeline.model.card.fusion_statistics["joint"]["impostor_correlation"]
        expected = (w * z["gait"] + (1 - w) * z["appearance"]) / np.sqrt(w**2 + (1 - w) ** 2 + 2 * w * (1 - w) * rho)
    else:
        expected = z["gait"]
    assert report["score"] == pytest.approx(expected, abs=1e-6)
    assert report["first"]["gait_fraction"] == pytest.approx(a.detection.gait_fraction, abs=1e-4)
    assert report["second"]["gait_frames_embedded"] == b.embedded_frames
    tables = pipeline.model.card.fusion_operating_points
    kind = report["scored_on"]
    # the pair's kind's own thresholds; a rate its pairs cannot resolve, the all-pairs one
    points = {name: tables[kind].get(name, pooled) for name, pooled in tables["all"].items()}
    assert set(points) == {"fmr=1e-2", "fmr=1e-3", "fmr=1e-4"} and report["operating_points"] == points
    assert report["operating_points"]["fmr=1e-2"] == tables[kind]["fmr=1e-2"]
    assert f"thresholds for pairs scored on {kind}" in report["operating_points_basis"]
    assert report["match"] == {name: report["score"] >= threshold for name, threshold in points.items()}
    # Another weight than the calibrated one: the score changes where both modalities are fused, and no
    # decision is claimed from thresholds set for another weight
    other = json.loads(gader("compare", *files, "--model", "synth-wild-gar", "--gait-weight", "0.3", "--json").stdout)
    calibrated = pipeline.model.card.fusion_statistics["joint"]["gait_weight"]
    if kind == "both":  # the weight enters only pairs scored on both modalities
        assert other["operating_points"] == {} and other["match"] == {}
        assert f"calibrated at gait weight {calibrated:g}, not 0.3" in other["operating_points_basis"]
    else:
        assert other["operating_points"] == points and other["score"] == report["score"]
    # Routed otherwise than the calibration: the decision stands, with the caveat said
    unfallen = json.loads(
        gader("compare", *files, "--model", "synth-wild-gar", "--no-fallback-whole-sequence", "--json").stdout
    )
    assert unfallen["fallback_whole_sequence"] is False and unfallen["operating_points"] == points
    assert "calibrated with fallback_whole_sequence on and used with it off" in unfallen["operating_points_basis"]
    assert "calibrated with" not in report["operating_points_basis"]
    # A model without an RGB branch or fusion statistics: the raw gait similarity, against `gader calibrate`'s points
    plain = gader("compare", *files, "--json")  # the service's default model, casia-b-default
    assert plain.returncode == 0, plain.stderr
    plain = json.loads(plain.stdout)
    card = load_model("casia-b-default").card
    assert plain["scored_on"] == "gait" and plain["similarity"]["appearance"] is None
    assert plain["score"] == pytest.approx(plain["similarity"]["gait"]) and 0 <= plain["score"] <= 1
    assert plain["operating_points"] == card.operating_points != {}
    # Read by a person: one line per file, the score, and a verdict per operating point
    human = gader("compare", *files, "--model", "synth-wild-gar")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"{files[0]}: {first.frames} frames, ") and lines[1].startswith(f"{files[1]}: ")
    assert "impostor deviations" in lines[2]
    assert all(f"at {name} (threshold" in human.stdout for name in points)
    # A stretch without gait (the frames the ground truth calls standing) and a model without an RGB branch: nothing
    # to compare with, said in words, and no decision in the JSON
    standing = first.select(~first.labels.gait)
    write_sequence(standing, tmp_path / "standing.npz")
    assert (
        standing.frames >= 10
        and GaderPipeline.load("casia-b-default", "gader-detector").process(standing).embedding is None
    )
    nothing = gader("compare", files[0], str(tmp_path / "standing.npz"))
    assert nothing.returncode == 0, nothing.stderr
    assert (
        "no score: the two sequences share no modality (the first has gait only, the second has no embedding)"
        in nothing.stdout
    )
    nothing = json.loads(gader("compare", files[0], str(tmp_path / "standing.npz"), "--json").stdout)
    assert nothing["score"] is None and nothing["scored_on"] is None and nothing["match"] == {}
    missing = gader("compare", files[0], str(tmp_path / "nothing.npz"))
    assert missing.returncode == 1 and missing.stderr.startswith("gader: error:") and "nothing.npz" in missing.stderr


def test_calibrate_fusion_refuses_data_without_rgb_crops_at_its_first_sequence(artifacts, casia_train, tmp_path):
    """Real CASIA-B silhouettes carry no RGB: there is no appearance score to calibrate, said at once by name."""
    import shutil
    import subprocess
    import sys

    model = tmp_path / "model"
    shutil.copytree(artifacts / "model", model)
    before = (model / "model.json").read_text()
    command = [sys.executable, "-m", "gader", "calibrate-fusion", "--model", str(model), "--data", str(casia_train)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("gader: error:")
    assert "has no RGB crops; fusion needs both modalities" in done.stderr
    assert (model / "model.json").read_text() == before  # the card is left as it was


def test_a_decision_uses_the_thresholds_of_its_pairs_kind_and_says_where_it_borrows(artifacts):
    """Pipeline.operating_points: the fused-score thresholds of the pair's kind (gait alone, appearance alone,
    both); the all-pairs one for a rate its kind could not resolve, said; none for a pair with nothing shared,
    at another weight, or for a card without fused-score thresholds."""
    import copy

    pipeline = GaderPipeline.load(artifacts / "model", None)
    card = pipeline.model.card
    card.fusion_statistics = copy.deepcopy(STATISTICS)
    card.fusion_statistics["joint"]["gait_weight"] = 0.8
    card.fusion_operating_points = {
        "all": {"fmr=1e-2": 2.0, "fmr=1e-3": 3.0},
        "gait": {"fmr=1e-2": 2.1, "fmr=1e-3": 3.1},
        "appearance": {"fmr=1e-2": 2.5},  # too few appearance-alone pairs for 1e-3
        "both": {},
    }
    e = np.eye(64, 30)
    both, gait_only, look_only = (PipelineResult(None, e, e, 1, 1, "m"), PipelineResult(None, e, None, 1, 0, "m"),
                                  PipelineResult(None, None, e, 0, 1, "m"))  # fmt: skip
    points, basis = pipeline.operating_points(gait_only, both)
    assert points == {"fmr=1e-2": 2.1, "fmr=1e-3": 3.1} and "pairs scored on gait" in basis and "from all" not in basis
    # a routing other than the calibration's is said beside the thresholds
    card.metrics["fusion_calibration"] = {"detector": "gader-detector", "fallback_whole_sequence": False}
    _, basis = pipeline.operating_points(gait_only, both)
    assert "calibrated with the detector gader-detector and used without one" in basis
    _, basis = GaderPipeline(pipeline.model, None, pipeline.config, "my-detector").operating_points(gait_only, both)
    assert "calibrated with the detector gader-detector and used without one" in basis  # no detector object
    named = GaderPipeline.load(artifacts / "model", artifacts / "detector")
    named.model.card.fusion_statistics, named.model.card.fusion_operating_points = (
        card.fusion_statistics,
        {"all": {"fmr=1e-2": 2.0}},
    )
    named.model.card.metrics["fusion_calibration"] = card.metrics["fusion_calibration"]
    _, basis = named.operating_points(gait_only, both)
    assert f"calibrated with the detector gader-detector, used with {artifacts / 'detector'}" in basis
    card.metrics.pop("fusion_calibration")
    points, basis = pipeline.operating_points(look_only, both)
    assert points == {"fmr=1e-2": 2.5, "fmr=1e-3": 3.0}
    assert "fmr=1e-3 from all pairs (calibration set none for pairs scored on appearance)" in basis
    points, _ = pipeline.operating_points(both, both)
    assert points == {"fmr=1e-2": 2.0, "fmr=1e-3": 3.0}  # the kind has no table: every rate from all pairs
    # a kind with a heavier impostor tail: its own 1e-2 threshold lies above the all-pairs 1e-3 one, so the
    # borrowed finer threshold is raised to it (a finer rate must never accept more pairs)
    card.fusion_operating_points["appearance"] = {"fmr=1e-2": 3.4}
    points, basis = pipeline.operating_points(look_only, both)
    assert points == {"fmr=1e-2": 3.4, "fmr=1e-3": 3.4}
    assert "fmr=1e-3 raised to the threshold at a coarser rate" in basis
    # a rate the kind owns and all pairs left unresolved (tied top impostors, say) is kept and raises the rest
    card.fusion_operating_points["appearance"] = {"fmr=1e-2": 3.4}
    card.fusion_operating_points["all"] = {"fmr=1e-3": 3.0}
    points, basis = pipeline.operating_points(look_only, both)
    assert points == {"fmr=1e-2": 3.4, "fmr=1e-3": 3.4} and "fmr=1e-3 from all pairs" in basis
    card.fusion_operating_points["all"] = {"fmr=1e-2": 2.0, "fmr=1e-3": 3.0}
    card.fusion_operating_points["appearance"] = {"fmr=1e-2": 2.5}
    assert pipeline.operating_points(gait_only, look_only) == ({}, "the two share no modality")
    other = GaderPipeline(pipeline.model, None, PipelineConfig(gait_weight=0.5))
    points, basis = other.operating_points(both, both)
    assert points == {} and "calibrated at gait weight 0.8, not 0.5" in basis
    points, _ = other.operating_points(gait_only, both)  # the weight does not enter a pair scored on gait alone
    assert points == {"fmr=1e-2": 2.1, "fmr=1e-3": 3.1}
    for bad, message in (
        ({"all": {"fmr=1e-2": "2.0"}}, r"fusion_operating_points\.all\.fmr=1e-2 is not a finite number"),
        ({"all": {"fmr=1e-2": float("nan")}}, "is not a finite number"),
        ({"walking": {}}, r"fusion_operating_points\.walking is not a table of thresholds"),
        ({"all": 2.0}, r"fusion_operating_points\.all is not a table"),
        ({"all": {"strict": 2.0}}, r"fusion_operating_points\.all\.strict is not named fmr=<rate>"),
        ({"all": {"fmr=2": 2.0}}, r"fusion_operating_points\.all\.fmr=2 is not named fmr=<rate> with a rate between"),
    ):  # a hand-edited card: refused by name, not a TypeError at the comparison
        card.fusion_operating_points = bad
        with pytest.raises(GaderError, match=f"model test-gar: .*{message}"):
            pipeline.operating_points(both, both)
    card.fusion_operating_points = {"all": {}, "gait": {}}
    points, basis = pipeline.operating_points(both, both)
    assert points == {} and "set no operating point for model test-gar: too few pairs" in basis
    card.fusion_operating_points = {}
    points, basis = pipeline.operating_points(both, both)
    assert points == {} and "re-run gader calibrate-fusion" in basis
    card.fusion_statistics = {}  # no fusion: the raw gait similarity and gader calibrate's thresholds
    card.operating_points = {"fmr=1e-3": 0.97}
    assert pipeline.operating_points(gait_only, both) == (
        {"fmr=1e-3": 0.97},
        "gait-similarity thresholds (gader calibrate)",
    )
    points, basis = pipeline.operating_points(look_only, both)
    assert points == {} and "no operating points for appearance scores" in basis
