"""Is every real CASIA-B sequence of the detector's held-out subjects found usable? Runs the detector on all
sequences of the CASIA-B subjects its training run held out (the same split as ``gader train detector``),
counts the usable ones, and lists the others with their length and what the detector saw. Writes the
"detector-real" section of docs/models.md.

    python -m bench.detector_real [--detector gader-detector] [--config configs/detector/gader-detector.toml]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bench.report import update_section
from gader.data import open_dataset
from gader.model_io import load_detector
from gader.progress import progress
from gader.training.detector_trainer import held_out_subjects, load_detector_config

ROOT = Path(__file__).resolve().parents[1]
MODELS_MD = ROOT / "docs" / "models.md"
CASIA = ROOT.parent / "shared" / "data" / "casia-b" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--config", default=str(ROOT / "configs" / "detector" / "gader-detector.toml"))
    parser.add_argument("--data", default=str(CASIA))
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data}: CASIA-B is not there (see ../shared/data/README.md)")
    detector = load_detector(args.detector)[0]
    subjects = held_out_subjects(args.data, load_detector_config(args.config))
    dataset = open_dataset(args.data).subset(subjects=subjects)
    usable, misses = 0, []
    for record in progress(dataset, total=len(dataset), desc="detecting", unit="seq"):
        if record.frames == 0:
            misses.append((record.key, 0, "no frames"))
            continue
        report = detector.detect(record.silhouettes, record.ratios)
        if report.usable:
            usable += 1
            continue
        labels = Counter(report.frame_labels).most_common(2)
        seen = ", ".join(f"{label} {count}" for label, count in labels)
        misses.append((record.key, record.frames, f"gait fraction {report.gait_fraction:.2f}; frames: {seen}"))
    short = [m for m in misses if m[1] < detector.config.min_gait_frames]
    lines = [
        f"Detector `{args.detector}` on every sequence of the {len(subjects)} CASIA-B subjects its training held out "
        f"({len(dataset):,} sequences): **{usable:,} usable ({100 * usable / len(dataset):.1f} %)**. "
        f"{len(short)} of the {len(misses)} others are stubs shorter than the usable rule's "
        f"{detector.config.min_gait_frames} frames.",
        "",
        "| sequence | frames | what the detector saw |",
        "|---|---:|---|",
        *[f"| {key} | {frames} | {seen} |" for key, frames, seen in misses],
    ]
    body = "\n".join(lines)
    print(body)
    update_section("detector-real", "Gait detector on held-out real CASIA-B sequences", body, document=MODELS_MD)


if __name__ == "__main__":
    main()
