"""The GADER bench's own scoring helpers (bench/gader_eval.py): the per-probe rank-1 hits its bootstrap intervals
rest on agree with the library's ranking, and its fused-score measures of gait alone with the library's
embedding protocols."""

import numpy as np
import pytest

from bench.gader_eval import measure, ratio_interval
from gader import metrics, protocols
from gader.embedding import part_major
from gader.pipeline import PipelineResult


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
    measures, hits = measure(gait_results(embeddings), subjects, is_probe)
    labels = np.array(subjects)
    probes, gallery = np.flatnonzero(is_probe), np.flatnonzero(~is_probe)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:  # mean over parts, one part at a time
        return float(np.mean([a[:, k] @ b[:, k] / np.linalg.norm(a[:, k]) / np.linalg.norm(b[:, k]) for k in range(2)]))

    similarity = np.array([[cosine(embeddings[i], embeddings[j]) for j in gallery] for i in probes])
    ranking = metrics.rank_metrics(-similarity, labels[probes], labels[gallery])
    assert measures["rank1"] == pytest.approx(100 * ranking.cmc[0])
    assert len(hits) == ranking.valid_probes == len(probes) - 1
    assert hits.mean() == pytest.approx(ranking.cmc[0])
    assert hits[40 - 24] and not hits[41 - 24]


def test_fused_measures_of_gait_alone_are_the_embedding_protocols():
    """Gait-only rows go through the fused-score path; they must read what the library's own protocols read
    from the embeddings (open-set ranking and verification, cosine distance)."""
    rng = np.random.default_rng(1)
    subjects = [str(i % 20) for i in range(200)]
    embeddings = [rng.normal(size=(16, 4)).astype(np.float32) + 0.05 * int(s) for s in subjects]
    is_probe = np.arange(200) >= 20
    data = protocols.EmbeddingSet(part_major(np.stack(embeddings)), np.array(subjects), is_probe=is_probe)
    ranking = protocols.open_set(data, "cos").summary
    verification = protocols.verification(data, "cos").summary
    measures, hits = measure(gait_results(embeddings), subjects, is_probe)
    assert measures == pytest.approx(
        {
            "rank1": ranking["rank1"],
            "rank5": ranking["rank5"],
            "mAP": ranking["mAP"],
            "tar_1e-2": verification["tar_at_far"]["1e-02"],
            "tar_1e-1": verification["tar_at_far"]["1e-01"],
            "eer": verification["eer"],
        },
        abs=1e-6,
    )
    assert 100 * hits.mean() == pytest.approx(ranking["rank1"])


def test_ratio_interval_is_paired_and_counts_the_probes_each_gets_alone():
    baseline = np.array([True] * 10 + [False] * 90)
    better = np.array([True] * 10 + [True] * 10 + [False] * 80)  # the same 10, and 10 more
    low, high, only_better, only_baseline = ratio_interval(better, baseline, draws=2000)
    assert (only_better, only_baseline) == (10, 0)
    assert 1.0 < low < 2.0 < high  # paired: never below 1, as every probe the baseline gets, `better` gets too
    same = ratio_interval(baseline, baseline, draws=200)
    assert same == (1.0, 1.0, 0, 0)


def test_the_bench_refuses_bad_options_by_name_before_measuring(synth_wild, tmp_path):
    """--val-subjects takes one count or one per dataset; datasets whose people share ids are refused (their
    held-out people would merge); --gait-weight must be a weight. Each exits with a message naming the option,
    before any sequence is embedded."""
    import subprocess
    import sys

    def bench(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "bench.gader_eval", "--print-only", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    data = str(synth_wild)
    counts = bench("--data", data, data, data, "--val-subjects", "1", "2")
    assert counts.returncode == 1 and "--val-subjects: one count, or one per dataset (3); got [1, 2]" in counts.stderr
    overlap = bench("--data", data, data, "--val-subjects", "1", "2")  # one count per dataset is taken...
    assert overlap.returncode == 1 and "subject ids overlap an earlier dataset's" in overlap.stderr  # ...and checked
    weight = bench("--data", data, "--val-subjects", "2", "--gait-weight", "1.5")
    assert weight.returncode == 1 and "--gait-weight: gait_weight must be a number in [0, 1]" in weight.stderr
    for done in (counts, overlap, weight):
        assert "Traceback" not in done.stderr and not done.stdout.strip()  # no table: nothing was measured
