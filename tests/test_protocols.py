"""Protocols on small sets whose answers are worked out by hand."""

import numpy as np
import pytest

from gader import protocols
from gader.errors import DataFormatError
from gader.protocols import EmbeddingSet


def casia_toy() -> EmbeddingSet:
    """Two subjects, views 000 and 018; gallery items are one-hot axes, so a probe's nearest gallery item
    in a view is the axis it weighs most (|p - e_i|^2 = |p|^2 - 2 p_i + 1).

    gallery axes: 0 = (s0, 000), 1 = (s1, 000), 2 = (s0, 018), 3 = (s1, 018)
    probe (s0, 000) -> view 000: s1 (wrong, same view, excluded); view 018: s0 (right)
    probe (s1, 000) -> view 000: s1 (right, excluded);             view 018: s0 (wrong)
    probe (s0, 018) -> view 000: s0 (right);                       view 018: s1 (wrong, excluded)
    probe (s1, 018) -> view 000: s1 (right);                       view 018: s0 (wrong, excluded)
    => NM probe view 000: 50 %, probe view 018: 100 %, NM rank-1 75 %.
    """
    gallery = np.eye(4)
    probes = np.array([[0, 0.9, 0.8, 0.1], [0, 0.9, 0.8, 0.1], [0.7, 0.2, 0, 0.9], [0.1, 0.6, 0.5, 0]])
    return EmbeddingSet(
        embeddings=np.vstack([gallery, probes]),
        subjects=np.array(["s0", "s1", "s0", "s1"] * 2),
        conditions=np.array(["nm-01"] * 4 + ["nm-05"] * 4),
        views=np.array(["000", "000", "018", "018", "000", "000", "018", "018"]),
    )


def test_casia_b_excludes_identical_views_and_averages_by_hand():
    result = protocols.casia_b(casia_toy())
    assert result.summary["rank1"] == {"NM": 75.0, "BG": None, "CL": None, "mean": 75.0}
    assert result.summary["per_view"]["NM"] == [50.0, 100.0]
    assert result.summary["views"] == ["000", "018"]
    # The excluded same-view cells are still computed (50 % and 0 %), just not averaged in.
    assert result.accuracy[0, 0, 0, 0] == 50.0 and result.accuracy[0, 1, 1, 0] == 0.0
    assert result.summary["rank5"]["NM"] == 100.0


def test_casia_b_conditions_are_case_insensitive():
    data = casia_toy()
    data.conditions = np.char.upper(data.conditions)
    assert (
        protocols.casia_b(EmbeddingSet(data.embeddings, data.subjects, data.conditions, data.views)).summary["rank1"][
            "NM"
        ]
        == 75.0
    )


def test_open_set_and_verification_by_hand():
    # Gallery a, b; probe a is nearest to a, probe b nearest to a as well.
    data = EmbeddingSet(
        embeddings=np.array([[0.0], [10.0], [1.0], [4.0]]),
        subjects=np.array(["a", "b", "a", "b"]),
        is_probe=np.array([False, False, True, True]),
    )
    summary = protocols.open_set(data).summary
    assert summary["rank1"] == 50.0 and summary["rank5"] == 100.0
    assert summary["mAP"] == pytest.approx(75.0) and summary["mINP"] == pytest.approx(75.0)
    # Genuine distances 1 and 6, impostor 9 and 4: a threshold between 4 and 1 accepts one genuine pair.
    verification = protocols.verification(data).summary
    assert verification["tar_at_far"]["1e-01"] == 50.0
    assert verification["eer"] == pytest.approx(50.0)
    assert set(verification["tar_at_far"]) == {"1e-04", "1e-03", "1e-02", "1e-01"}


def test_verification_without_probes_uses_each_pair_once():
    data = EmbeddingSet(np.array([[0.0], [0.1], [5.0], [5.1]]), np.array(["a", "a", "b", "b"]))
    summary = protocols.verification(data).summary
    assert (summary["genuine_pairs"], summary["impostor_pairs"]) == (2, 4)
    assert summary["eer"] == 0.0


def test_distance_buckets_split_probes_by_field():
    data = EmbeddingSet(
        embeddings=np.array([[0.0], [10.0], [0.5], [9.0], [6.0], [4.0]]),
        subjects=np.array(["a", "b", "a", "b", "a", "b"]),
        is_probe=np.array([False, False, True, True, True, True]),
        groups={"distance": np.array(["", "", "near", "near", "far", "far"])},
    )
    report = protocols.distance_buckets(data, "distance")
    assert report["near"]["rank1"] == 100.0 and report["far"]["rank1"] == 0.0
    assert report["near"]["probes"] == report["far"]["probes"] == 2


def test_a_bucket_without_enrolled_people_does_not_sink_the_others():
    data = EmbeddingSet(
        embeddings=np.array([[0.0], [10.0], [0.5], [9.0], [6.0], [4.0]]),
        subjects=np.array(["a", "b", "a", "b", "c", "d"]),
        is_probe=np.array([False, False, True, True, True, True]),
        groups={"distance": np.array(["", "", "near", "near", "uav", "uav"])},
    )
    report = protocols.distance_buckets(data, "distance")
    assert report["near"]["rank1"] == 100.0 and report["near"]["probes"] == 2
    assert report["uav"]["probes"] == 2 and "no probe has a true match" in report["uav"]["error"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embeddings": np.zeros((2,))}, "embeddings must be"),
        ({"embeddings": np.full((2, 3), np.nan)}, "NaN"),
        ({"subjects": np.array(["a"])}, "subjects must have shape"),
        ({"is_probe": np.array([0.5, 1.0])}, "is_probe"),
        ({"embeddings": np.zeros((0, 3)), "subjects": np.array([], dtype=str)}, "non-empty"),
    ],
)
def test_bad_embedding_sets_name_the_problem(kwargs, message):
    base = {"embeddings": np.zeros((2, 3)), "subjects": np.array(["a", "b"])}
    with pytest.raises(DataFormatError, match=message):
        EmbeddingSet(**{**base, **kwargs})


def test_protocols_say_what_they_need():
    data = EmbeddingSet(np.zeros((2, 3)), np.array(["a", "b"]))
    with pytest.raises(DataFormatError, match="conditions, views"):
        protocols.casia_b(data)
    with pytest.raises(DataFormatError, match="is_probe"):
        protocols.open_set(data)
