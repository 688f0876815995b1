"""Metrics against small cases computed by hand, and properties that must hold for any data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gader import metrics
from gader.errors import GaderError


def test_euclidean_is_the_mean_of_per_part_distances():
    assert metrics.pairwise_distance(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0], [3.0, 0.0]])).tolist() == [
        [5.0, 4.0]
    ]
    x = np.array([[[1.0, 0.0], [0.0, 2.0]]])  # one sequence, two parts
    y = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    assert metrics.pairwise_distance(x, y, "euc") == pytest.approx(np.array([[1.0]]))  # (0 + 2) / 2


def test_cosine_is_one_minus_mean_part_similarity():
    x = np.array([[[1.0, 0.0], [0.0, 2.0]]])
    y = np.array([[[0.0, 1.0], [0.0, 3.0]]])  # part similarities 0 and 1
    assert metrics.pairwise_distance(x, y, "cos") == pytest.approx(np.array([[0.5]]))


def test_rank_metrics_by_hand():
    # probe a: sorted gallery labels b, c, a, a -> first hit at rank 3, AP (1/3 + 2/4) / 2, INP 2/4
    # probe b: sorted gallery labels a, b, a, c -> first hit at rank 2, AP 1/2, INP 1/2
    distance = np.array([[0.5, 0.1, 0.9, 0.3], [0.2, 0.4, 0.6, 0.8]])
    result = metrics.rank_metrics(distance, np.array(["a", "b"]), np.array(["a", "b", "a", "c"]), max_rank=5)
    assert result.cmc.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert result.mAP == pytest.approx(((1 / 3 + 2 / 4) / 2 + 1 / 2) / 2)
    assert result.mINP == pytest.approx((2 / 4 + 1 / 2) / 2)
    assert result.valid_probes == 2


def test_probes_without_a_true_match_are_left_out_of_ranking_metrics():
    distance = np.array([[0.1, 0.2], [0.3, 0.4]])
    result = metrics.rank_metrics(distance, np.array(["a", "z"]), np.array(["a", "b"]), max_rank=2)
    assert result.valid_probes == 1 and result.cmc.tolist() == [1.0, 1.0] and result.mAP == 1.0


def test_roc_tar_at_far_and_eer_by_hand():
    curve = metrics.roc_curve(np.array([0.9, 0.8, 0.4]), np.array([0.7, 0.3, 0.2, 0.1]))
    assert curve.far.tolist() == [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1.0]
    assert curve.tar.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    tar = metrics.tar_at_far(curve, (0.0, 0.1, 0.25, 1.0))
    assert tar == pytest.approx({0.0: 2 / 3, 0.1: 2 / 3, 0.25: 1.0, 1.0: 1.0})
    # FAR - FRR goes from -1/12 (threshold 0.7) to +1/4 (threshold 0.4); they meet at FAR = FRR = 1/4.
    assert metrics.equal_error_rate(curve) == pytest.approx(0.25)


def test_a_threshold_from_impostor_scores_alone_by_hand():
    """For a kind of pair with no genuine pair: the lowest impostor score that accepts no more than the target
    share of impostors, a tie counted whole; none (inf) when even the highest score accepts too many."""
    impostor = np.array([0.9, 0.7, 0.7, 0.5, 0.3, 0.1, 0.1, 0.0, -0.2, -0.5])
    assert metrics.impostor_threshold_at_far(impostor, 0.1) == 0.9
    assert metrics.impostor_threshold_at_far(impostor, 0.2) == 0.9  # 0.7 would accept 3 of 10: the tie counts
    assert metrics.impostor_threshold_at_far(impostor, 0.3) == 0.7
    assert metrics.impostor_threshold_at_far(impostor, 0.05) == np.inf
    assert metrics.impostor_threshold_at_far(impostor, 1.0) == -0.5
    with pytest.raises(GaderError, match="finite impostor scores"):
        metrics.impostor_threshold_at_far(np.array([]), 0.1)


def test_ties_are_accepted_together():
    curve = metrics.roc_curve(np.array([0.5, 0.5]), np.array([0.5, 0.1]))
    assert curve.far.tolist() == [0.0, 0.5, 1.0] and curve.tar.tolist() == [0.0, 1.0, 1.0]


def test_fnir_at_fpir_by_hand():
    # probe a: mate 0.9 at rank 1; strangers' best 0.5. probe b: the stranger c (0.6) outranks the mate.
    similarity = np.array([[0.9, 0.5, 0.2], [0.3, 0.4, 0.6]])
    result = metrics.open_set_identification(similarity, np.array(["a", "b"]), np.array(["a", "b", "c"]))
    assert (result.mated, result.non_mated) == (2, 2)
    assert metrics.fnir_at_fpir(result, (0.0, 0.5, 1.0)) == pytest.approx({0.0: 0.5, 0.5: 0.5, 1.0: 0.5})
    wider = metrics.open_set_identification(similarity, np.array(["a", "b"]), np.array(["a", "b", "c"]), rank=2)
    # rank 2 finds b's mate at 0.4; FPIR 0 needs T > 0.6, which loses it again.
    assert metrics.fnir_at_fpir(wider, (0.0, 1.0)) == pytest.approx({0.0: 0.5, 1.0: 0.0})


def test_det_coordinates_are_probits():
    curve = metrics.roc_curve(np.array([1.0, 0.0]), np.array([0.5, -1.0]))
    far, frr = metrics.det_coordinates(curve)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(frr) <= 0)
    assert 0.0 in far.round(6)  # FAR 0.5 -> probit 0


@pytest.mark.parametrize(
    ("genuine", "impostor"), [(np.array([]), np.array([1.0])), (np.array([np.nan]), np.array([1.0]))]
)
def test_bad_scores_are_refused(genuine, impostor):
    with pytest.raises(GaderError):
        metrics.roc_curve(genuine, impostor)


def _perfect(subjects: int, per_subject: int, dim: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(subjects), per_subject)
    embeddings = np.zeros((len(labels), parts, dim))
    embeddings[np.arange(len(labels)), :, labels % dim] = 1.0 + labels[:, None] // dim
    return embeddings, labels


@settings(max_examples=40, deadline=None)
@given(
    subjects=st.integers(2, 12),
    per_subject=st.integers(2, 5),
    parts=st.integers(1, 4),
    metric=st.sampled_from(["euc", "cos"]),
)
def test_identity_perfect_embeddings_score_perfectly(subjects, per_subject, parts, metric):
    dim = subjects if metric == "cos" else 4  # cosine ignores length: one axis per subject
    embeddings, labels = _perfect(subjects, per_subject, dim, parts)
    probe = np.arange(len(labels)) % per_subject == 0
    distance = metrics.pairwise_distance(embeddings[probe], embeddings[~probe], metric)
    ranking = metrics.rank_metrics(distance, labels[probe], labels[~probe], max_rank=3)
    assert ranking.cmc[0] == 1.0 and ranking.mAP == pytest.approx(1.0) and ranking.mINP == pytest.approx(1.0)
    genuine, impostor = metrics.pair_scores(-distance, labels[probe], labels[~probe])
    curve = metrics.roc_curve(genuine, impostor)
    assert metrics.tar_at_far(curve, (1e-4,))[1e-4] == 1.0 and metrics.equal_error_rate(curve) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_labels_fall_to_chance(seed):
    rng = np.random.default_rng(seed)
    subjects, per_subject = 40, 6
    embeddings, labels = _perfect(subjects, per_subject, subjects, 2)
    shuffled = rng.permutation(labels)
    probe = np.arange(len(labels)) % per_subject == 0
    distance = metrics.pairwise_distance(embeddings[probe], embeddings[~probe], "cos")
    ranking = metrics.rank_metrics(distance, shuffled[probe], shuffled[~probe], max_rank=1)
    chance = 1.0 / subjects
    assert ranking.cmc[0] < chance + 0.15  # 40 probes: chance is 2.5 %
    genuine, impostor = metrics.pair_scores(-distance, shuffled[probe], shuffled[~probe])
    assert metrics.equal_error_rate(metrics.roc_curve(genuine, impostor)) > 0.35  # chance is 0.5


def _opengait_distance(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """A numpy transcription of OpenGait's evaluator distance (``cuda_dist``): embeddings [n, c, p], the distance
    over the channels c of each part, averaged over the parts p."""
    if metric == "cos":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
    parts = x.shape[2]
    total = np.zeros((x.shape[0], y.shape[0]))
    for i in range(parts):
        xi, yi = x[:, :, i], y[:, :, i]  # [n, c]
        if metric == "cos":
            total += xi @ yi.T
        else:
            total += np.sqrt(np.maximum((xi**2).sum(1)[:, None] + (yi**2).sum(1)[None, :] - 2 * xi @ yi.T, 0))
    return 1 - total / parts if metric == "cos" else total / parts


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_model_embeddings_are_compared_part_by_part_as_opengait_does(metric):
    """The networks emit [N, d, p] (channels by parts); gader.metrics compares [N, P, D]. part_major turns one
    into the other, and the distance is then OpenGait's; taken as they come, the channels would be the parts."""
    from gader.embedding import part_major

    rng = np.random.default_rng(0)
    probe, gallery = rng.normal(size=(5, 16, 4)), rng.normal(size=(7, 16, 4))  # [n, d = 16, p = 4]
    expected = _opengait_distance(probe, gallery, metric)
    compared = metrics.pairwise_distance(part_major(probe), part_major(gallery), metric)
    np.testing.assert_allclose(compared, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(metrics.pairwise_distance(probe, gallery, metric), expected, rtol=1e-3)


def test_a_cmc_with_nothing_to_rank_says_so_instead_of_an_empty_legend(tmp_path):
    """CASIA-B's cross-view CMC of single-view data has no valid probe: the figure says so, without
    matplotlib's 'no artists with labels' warning; a real curve gets whole-number rank ticks."""
    import warnings

    from gader.plots import plot_cmc

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        empty = plot_cmc({"NM": np.full(5, np.nan)}, tmp_path / "empty.png")
        drawn = plot_cmc({"NM": np.array([0.5, 0.7, 0.9])}, tmp_path / "cmc.png")
    assert empty.stat().st_size > 5000 and drawn.stat().st_size > 5000


def test_sequence_strips_draw_each_sequence_and_refuse_what_they_cannot(tmp_path):
    """plot_sequence_strips: one row per sequence, frames spread over it (all of a stub, grey after it); rows of
    different frame sizes or an empty sequence are refused by a message, not a matplotlib error."""
    from matplotlib.image import imread

    from gader.plots import plot_sequence_strips

    walk = np.zeros((30, 64, 44), np.uint8)
    walk[:, 10:60, 15:30] = 255  # a white body on black
    stub = np.full((2, 64, 44), 255, np.uint8)  # two all-white frames

    def rows_of(path) -> list[np.ndarray]:
        """The drawn strips, top to bottom: runs of image rows that hold black or white pixels ([h, W] each)."""
        image = imread(path)[..., :3].mean(axis=-1)  # [H, W] in 0..1; the figure's background is light grey
        inked = ((image < 0.05) | (image > 0.97)).any(axis=1)
        edges = np.flatnonzero(np.diff(np.r_[0, inked.astype(int), 0]))
        return [image[start:stop] for start, stop in zip(edges[::2], edges[1::2], strict=True) if stop - start > 20]

    one = rows_of(plot_sequence_strips([("walk", walk)], tmp_path / "one.png"))
    path = plot_sequence_strips([("walk", walk), ("stub", stub)], tmp_path / "strips", title="two")
    assert path == tmp_path / "strips.png"
    drawn = rows_of(path)
    assert len(one) == 1 and len(drawn) == 2  # one strip per sequence
    walk_strip, stub_strip = drawn
    assert (walk_strip < 0.05).mean() > 0.3 and (walk_strip > 0.97).mean() > 0.1  # black ground, white bodies
    middle = stub_strip[len(stub_strip) // 2]  # one row of pixels across the stub's strip
    white = np.flatnonzero(middle > 0.97)
    after = middle[white.max() + 10 :]
    assert white.size and ((after > 0.3) & (after < 0.9)).all()  # its two frames, then only grey to the end
    assert white.max() < middle.size / 4  # two of the twelve slots
    with pytest.raises(GaderError, match="one frame size"):
        plot_sequence_strips([("a", walk), ("b", np.zeros((3, 64, 64), np.uint8))], tmp_path / "x.png")
    with pytest.raises(GaderError, match=r"^empty: strips need \[T, H, W\] silhouettes with T >= 1"):
        plot_sequence_strips([("a", walk), ("empty", walk[:0])], tmp_path / "x.png")
    with pytest.raises(GaderError, match="no sequences"):
        plot_sequence_strips([], tmp_path / "x.png")


def test_operating_point_names_read_back_and_strangers_are_told_apart():
    for fmr in (*metrics.OPERATING_FMRS, 0.02, 0.5):
        assert metrics.operating_point_fmr(metrics.operating_point_name(fmr)) == pytest.approx(fmr)
    for stranger in ("fmr=2", "fmr=0", "fmr=x", "strict", "FMR=1e-3", 1e-3, None):
        assert metrics.operating_point_fmr(stranger) is None
