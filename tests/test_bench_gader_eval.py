"""The GADER bench's own scoring helpers (bench/gader_eval.py): the per-probe rank-1 hits its bootstrap intervals
rest on agree with the library's ranking, and the fused-score evaluation with the plain one."""

import numpy as np
import pytest

from bench.gader_eval import evaluate, evaluate_fused, rank1_hits, ratio_interval
from gader import metrics
from gader.pipeline import PipelineResult, part_cosine


def gait_results(embeddings: list[np.ndarray]) -> list[PipelineResult]:
    return [PipelineResult(None, e, None, 1, 0, "m") for e in embeddings]


def test_rank1_hits_agree_with_rank_metrics_including_ties_and_probes_without_a_match():
    rng = np.random.default_rng(0)
    subjects = [str(i % 12) for i in range(90)] + ["stranger"]  # the last probe has no one in the gallery
    embeddings = [rng.normal(size=(8, 2)) + 0.3 * (i % 12 % 5) for i in range(len(subjects))]  # people alike in 5s
    # Ties go to the first gallery entry: probe 40 (person 4) scores the same against gallery 4 (its person) and
    # 7, probe 41 (person 5) the same against gallery 3 and 5 (its person)
    embeddings[4] = embeddings[7] = embeddings[40]
    embeddings[3] = embeddings[5] = embeddings[41]
    is_probe = np.arange(len(subjects)) >= 24
    hits = rank1_hits(gait_results(embeddings), subjects, is_probe)
    labels = np.array(subjects)
    probes, gallery = np.flatnonzero(is_probe), np.flatnonzero(~is_probe)
    similarity = np.array([[(1 + part_cosine(embeddings[i], embeddings[j])) / 2 for j in gallery] for i in probes])
    ranking = metrics.rank_metrics(-similarity, labels[probes], labels[gallery])
    assert len(hits) == ranking.valid_probes == len(probes) - 1
    assert hits.mean() == pytest.approx(ranking.cmc[0])
    assert hits[40 - 24] and not hits[41 - 24]


def test_fused_evaluation_of_gait_alone_is_the_plain_evaluation():
    rng = np.random.default_rng(1)
    subjects = [str(i % 20) for i in range(200)]
    embeddings = [rng.normal(size=(16, 4)).astype(np.float32) + 0.05 * int(s) for s in subjects]
    is_probe = np.arange(200) >= 20
    plain = evaluate(embeddings, subjects, is_probe)
    fused = evaluate_fused(gait_results(embeddings), subjects, is_probe, 0.8, None)
    assert fused == pytest.approx(plain, abs=1e-6)


def test_ratio_interval_is_paired_and_counts_the_probes_each_gets_alone():
    baseline = np.array([True] * 10 + [False] * 90)
    better = np.array([True] * 10 + [True] * 10 + [False] * 80)  # the same 10, and 10 more
    low, high, only_better, only_baseline = ratio_interval(better, baseline, draws=2000)
    assert (only_better, only_baseline) == (10, 0)
    assert 1.0 < low < 2.0 < high  # paired: never below 1, as every probe the baseline gets, `better` gets too
    same = ratio_interval(baseline, baseline, draws=200)
    assert same == (1.0, 1.0, 0, 0)
