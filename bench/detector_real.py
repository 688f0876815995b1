"""Is every real CASIA-B sequence of the detector's held-out subjects found usable? Runs the detector on all
sequences of the CASIA-B subjects its training run held out (the same split as ``gader train detector``),
counts the usable ones, and lists the others with their length and what the detector saw. Then a stress
test on the same sequences: how many stay usable when the feet rows (the detector's rows below
``FEET_HEIGHT``) are held still as a failed feet segmentation would leave them (``hold_still``, as training
uses it), and when the rows above the hip are. A detector that reads gait from the feet rows alone loses
most walkers in the first case. Writes the "detector-real" section of docs/models.md.

    python -m bench.detector_real [--detector gader-detector] [--config configs/detector/gader-detector.toml]
                                  [--print-only]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader.data import open_dataset
from gader.detector import dhs_of
from gader.model_io import load_detector
from gader.progress import progress
from gader.training.detector_data import hold_still
from gader.training.detector_trainer import held_out_subjects, load_detector_config

ROOT = Path(__file__).resolve().parents[1]
MODELS_MD = ROOT / "docs" / "models.md"
CASIA = ROOT.parent / "shared" / "data" / "casia-b" / "train"
FEET_HEIGHT = 0.2  # rows below this share of the height above the sole are the feet rows
HIP_HEIGHT = 0.5  # rows above it are the upper body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--config", default=str(ROOT / "configs" / "detector" / "gader-detector.toml"))
    parser.add_argument("--data", default=str(CASIA))
    parser.add_argument("--print-only", action="store_true", help="print the section, leave docs/models.md alone")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data}: CASIA-B is not there (see ../shared/data/README.md)")
    detector = load_detector(args.detector)[0]
    subjects = held_out_subjects(args.data, load_detector_config(args.config))
    dataset = open_dataset(args.data).subset(subjects=subjects)
    rows = detector.config.row_heights  # input channel i shows the row at rows[i]
    stressed = {
        "feet rows": tuple(i for i, height in enumerate(rows) if height < FEET_HEIGHT),
        "rows above the hip": tuple(i for i, height in enumerate(rows) if height > HIP_HEIGHT),
    }
    stressed_usable = dict.fromkeys(stressed, 0)
    rng = np.random.default_rng(0)
    usable, misses = 0, []
    for record in progress(dataset, total=len(dataset), desc="detecting", unit="seq"):
        if record.frames == 0:
            misses.append((record.key, 0, "no frames"))
            continue
        dhs = dhs_of(record.silhouettes, detector.config, record.ratios)  # [C_in, W, T]
        for name, channels in stressed.items():
            stressed_usable[name] += bool(channels) and detector.detect_dhs(hold_still(dhs, channels, rng)).usable
        report = detector.detect_dhs(dhs)
        if report.usable:
            usable += 1
            continue
        labels = Counter(report.frame_labels).most_common(2)
        seen = ", ".join(f"{label} {count}" for label, count in labels)
        misses.append((record.key, record.frames, f"gait fraction {report.gait_fraction:.2f}; frames: {seen}"))
    short = [m for m in misses if m[1] < detector.config.min_gait_frames]
    lines = [
        f"Detector `{args.detector}` on every sequence of the {len(subjects)} CASIA-B subjects its training held out "
        f"({len(dataset):,} sequences): **{usable:,} usable ({100 * usable / len(dataset):.2f} %)**. "
        f"{len(short)} of the {len(misses)} others are stubs of fewer than {detector.config.min_gait_frames} frames "
        "(the usable rule asks all of such a stub to lie in gait segments).",
        "",
        "| sequence | frames | what the detector saw |",
        "|---|---:|---|",
        *[f"| {key} | {frames} | {seen} |" for key, frames, seen in misses],
        "",
        "Stress test, the same sequences with some rows held still (one frame's row throughout, with 0-30 % of its "
        "pixels missing in each frame: `hold_still`), as a failed segmentation of those body parts leaves them:",
        "",
        "| rows held still | heights above the sole | usable |",
        "|---|---|---:|",
        *[
            f"| {name} | {', '.join(f'{100 * h:.0f} %' for h in sorted(rows[i] for i in channels)) or 'none'} | "
            f"{stressed_usable[name]:,} ({100 * stressed_usable[name] / len(dataset):.1f} %) |"
            for name, channels in stressed.items()
        ],
    ]
    body = "\n".join(lines)
    print(body)
    if args.print_only:
        return
    update_section("detector-real", "Gait detector on held-out real CASIA-B sequences", body, document=MODELS_MD)


if __name__ == "__main__":
    main()
