"""SynthGait against real CASIA-B: side-view silhouette statistics of walking cycles, and ratios against
distance. Writes its section of docs/synthgait.md (the same checks run as tests/test_synth.py).

    python -m bench.synth_realism [--real-subjects 40] [--synthetic 40]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader.data import open_dataset
from gader.data.synth import SequenceSpec, render_sequence
from gader.dhs import double_helical_signature

REPORT = Path(__file__).resolve().parents[1] / "docs" / "synthgait.md"
SHARED = Path(os.environ.get("GADER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def cycle_statistics(silhouettes: np.ndarray) -> tuple[float, float, float]:
    """(foreground share of the 64x44 frame, mean body width / 44, step period in frames)."""
    binary = silhouettes[:, :, 10:-10] > 127
    columns = binary.any(axis=1)
    width = np.mean([np.ptp(np.flatnonzero(c)) + 1 for c in columns if c.any()]) / 44
    knee = double_helical_signature(silhouettes).mean(axis=0)
    knee = knee - knee.mean()
    autocorrelation = np.correlate(knee, knee, mode="full")[len(knee) - 1 :]
    return float(binary.mean()), float(width), float(np.argmax(autocorrelation[8:25]) + 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-subjects", type=int, default=40)
    parser.add_argument("--synthetic", type=int, default=40)
    args = parser.parse_args()
    people = [f"{i:03d}" for i in range(1, args.real_subjects + 1)]
    real = open_dataset(SHARED / "casia-b" / "train").subset(subjects=people, conditions=["nm-01"], views=["090"])
    real_stats = np.array([cycle_statistics(r.silhouettes) for r in real if r.frames >= 40])
    synthetic = np.array(
        [cycle_statistics(render_sequence(SequenceSpec(0, i, "nm-01", 90)).silhouettes) for i in range(args.synthetic)]
    )
    rows = []
    for name, column in (
        ("foreground share of the 64x44 frame", 0),
        ("body width / 44", 1),
        ("step period (frames)", 2),
    ):
        low, high = np.percentile(real_stats[:, column], [5, 95])
        rows.append(
            f"| {name} | {real_stats[:, column].mean():.3f} ({low:.3f}-{high:.3f}) | "
            f"{synthetic[:, column].mean():.3f} |"
        )
    approach = render_sequence(SequenceSpec(0, 5, "nm-02", 0, noise=0.0))
    product = approach.ratios * approach.frame_arrays["distance"]
    body = (
        f"Side view (90°), NM: {len(real_stats)} real CASIA-B sequences (subjects 001-{args.real_subjects:03d}, "
        f"nm-01) against {args.synthetic} SynthGait people (seed 0, nm-01). Real: mean (5th-95th percentile).\n\n"
        "| statistic | real CASIA-B | SynthGait |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Ratios follow distance: walking towards the camera (view 0°) the ratio grows from "
        f"{approach.ratios[:5].mean():.2f} to {approach.ratios[-5:].mean():.2f} while ratio x distance stays "
        f"{product.mean():.2f} ± {100 * product.std() / product.mean():.1f} % (correlation of ratio with "
        f"1/distance {np.corrcoef(approach.ratios, 1 / approach.frame_arrays['distance'])[0, 1]:.3f}).\n\n"
        "Per-frame labels match the pixels: in `wild` sequences the knee row moves less than half as much in "
        "frames labelled standing as in frames labelled walking, and frames labelled partial show a knee-row "
        "band at least 1.5x as wide (`tests/test_synth.py`)."
    )
    print(body)
    update_section("realism", "Realism against CASIA-B", body, document=REPORT)


if __name__ == "__main__":
    main()
