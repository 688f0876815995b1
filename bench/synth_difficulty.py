"""How hard is SynthGait? A simple template matcher (the mean silhouette of a sequence, i.e. a GEI, and
the nearest neighbour) on a CASIA-like set, scored with the CASIA-B protocol. Writes its section of
docs/synthgait.md.

    python -m bench.synth_difficulty [--subjects 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader.data.synth.generator import plan_dataset
from gader.data.synth.make import generate
from gader.progress import progress
from gader.protocols import CASIA_PROBE_CONDITIONS, EmbeddingSet, casia_b

REPORT = Path(__file__).resolve().parents[1] / "docs" / "synthgait.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    specs = plan_dataset(args.subjects, seed=args.seed, preset="casia")
    start = time.perf_counter()
    geis, subjects, conditions, views = [], [], [], []
    for record in progress(generate(specs), total=len(specs), desc="rendering", unit="seq"):
        aligned = record.cut_sides().silhouettes.astype(np.float32) / 255.0  # [T, 64, 44]
        geis.append(aligned.mean(axis=0).ravel())
        subjects.append(record.subject)
        conditions.append(record.condition)
        views.append(record.view)
    seconds = time.perf_counter() - start
    result = casia_b(EmbeddingSet(np.array(geis), np.array(subjects), np.array(conditions), np.array(views)))
    rank1 = result.accuracy[..., 0]  # [conditions, probe views, gallery views]
    names = list(CASIA_PROBE_CONDITIONS)
    same_view = {name: float(np.nanmean(np.diagonal(rank1[c]))) for c, name in enumerate(names)}
    adjacent = {
        name: float(
            np.nanmean(
                [
                    rank1[c, i, i + d]
                    for i in range(len(result.views))
                    for d in (-1, 1)
                    if 0 <= i + d < len(result.views)
                ]
            )
        )
        for c, name in enumerate(names)
    }
    cross = result.summary["rank1"]
    chance = 100.0 / args.subjects
    rows = [f"| {name} | {same_view[name]:.1f} | {adjacent[name]:.1f} | {cross[name]:.1f} |" for name in names]
    body = (
        f"{args.subjects} people x 110 sequences (seed {args.seed}), rendered in {seconds:.0f} s. Matcher: mean "
        "of the aligned 64x44 silhouettes (GEI), Euclidean nearest neighbour; gallery NM#1-4, probes "
        f"NM#5-6 / BG#1-2 / CL#1-2, rank-1 %. Chance is {chance:.1f} %.\n\n"
        "| probes | same view | views 18° apart | cross-view (CASIA-B protocol, identical views excluded) |\n"
        "|---|---|---|---|\n" + "\n".join(rows)
    )
    print(body)
    update_section("difficulty", "Difficulty: a simple template matcher", body, document=REPORT)


if __name__ == "__main__":
    main()
