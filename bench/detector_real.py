"""Is every real CASIA-B sequence of the detector's held-out subjects found usable? Runs the detector on all
sequences of the CASIA-B subjects its training run held out (the same split as ``gader train detector``),
counts the usable ones, and lists the others with their length and what the detector saw. Then a stress
test on the same sequences: how many stay usable when the feet rows (the detector's rows below
``FEET_HEIGHT``) are held still as a failed feet segmentation would leave them (``hold_still``, as training
uses it), and when the rows above the hip are. A detector that reads gait from the feet rows alone loses
most walkers in the first case. Last, short clips (``SHORT_CLIPS`` frames) of the same walks, and of a
standing person and a partial body derived from every ``--derived-every``-th of them (as training derives
them): how many of each are called usable, where only the walks should be. Writes the "detector-real"
section of docs/models.md, and draws every refused sequence above a usable one of the same person and view
(``--misses-plot``; docs/images/detector-real-misses.png unless ``--print-only``), so a person can judge them.

    python -m bench.detector_real [--detector gader-detector] [--config configs/detector/gader-detector.toml]
                                  [--derived-every 5] [--misses-plot PNG] [--print-only]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader.data import open_dataset
from gader.data.record import SequenceRecord
from gader.detector import DetectorConfig, dhs_of
from gader.errors import GaderError
from gader.model_io import load_detector
from gader.plots import image_path, plot_sequence_strips
from gader.progress import progress
from gader.training.detector_data import hold_still, real_partial, real_standing
from gader.training.detector_trainer import held_out_subjects, load_detector_config

ROOT = Path(__file__).resolve().parents[1]
MODELS_MD = ROOT / "docs" / "models.md"
CASIA = ROOT.parent / "shared" / "data" / "casia-b" / "train"
FEET_HEIGHT = 0.2  # rows below this share of the height above the sole are the feet rows
HIP_HEIGHT = 0.5  # rows above it are the upper body
SHORT_CLIPS = (1, 2, 3, 5, 8, 12)  # frames; a clip is the middle of a longer sequence
CLIP_KINDS = ("walking", "standing", "partial body")
MISSES_PLOT = ROOT / "docs" / "images" / "detector-real-misses.png"


def derived_clip_sources(
    record: SequenceRecord, config: DetectorConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """DHS [C_in, W, T] of a standing person and a partial body derived from a real walk (when it yields them)."""
    sources = {}
    for kind, derived in (
        ("standing", real_standing(record, rng, frames=max(SHORT_CLIPS) + 2)),
        ("partial body", real_partial(record, rng)),
    ):
        if derived is not None:
            sources[kind] = dhs_of(derived.silhouettes, config, derived.ratios)
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--config", default=str(ROOT / "configs" / "detector" / "gader-detector.toml"))
    parser.add_argument("--data", default=str(CASIA))
    parser.add_argument(
        "--derived-every", type=int, default=5, help="derive standing and partial clips from every N-th sequence"
    )
    parser.add_argument(
        "--misses-plot",
        help=f"draw the refused sequences here (default: {MISSES_PLOT.relative_to(ROOT)}, none with --print-only)",
    )
    parser.add_argument("--print-only", action="store_true", help="print the section, leave docs/models.md alone")
    args = parser.parse_args()
    if args.derived_every < 1:
        raise SystemExit(f"--derived-every must be at least 1, got {args.derived_every}")
    misses_plot = args.misses_plot or (None if args.print_only else MISSES_PLOT)
    if misses_plot is not None:
        try:
            misses_plot = image_path(misses_plot)  # a name matplotlib cannot write is refused before the work
        except GaderError as exc:
            raise SystemExit(f"--misses-plot: {exc}") from None
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
    rng = np.random.default_rng(0)  # the stress test's own stream: its numbers do not depend on the clips below
    clip_rng = np.random.default_rng(1)
    usable, misses = 0, []
    usable_keys = set()
    clips = {kind: {length: [0, 0] for length in SHORT_CLIPS} for kind in CLIP_KINDS}  # kind -> length -> [usable, n]
    for index, record in enumerate(progress(dataset, total=len(dataset), desc="detecting", unit="seq")):
        if record.frames == 0:
            misses.append((record.key, 0, "no frames"))
            continue
        dhs = dhs_of(record.silhouettes, detector.config, record.ratios)  # [C_in, W, T]
        sources = {"walking": dhs}
        if index % args.derived_every == 0:
            sources |= derived_clip_sources(record, detector.config, clip_rng)
        for kind, source in sources.items():
            for length in SHORT_CLIPS:
                if source.shape[-1] > length:  # a clip of a longer sequence: its middle frames
                    start = (source.shape[-1] - length) // 2
                    clips[kind][length][0] += detector.detect_dhs(source[..., start : start + length]).usable
                    clips[kind][length][1] += 1
        for name, channels in stressed.items():
            stressed_usable[name] += bool(channels) and detector.detect_dhs(hold_still(dhs, channels, rng)).usable
        report = detector.detect_dhs(dhs)
        if report.usable:
            usable += 1
            usable_keys.add(record.key)
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
    lines += [
        "",
        f"Short clips: the middle {', '.join(map(str, SHORT_CLIPS))} frames of the same sequences, and of a standing "
        f"person and a partial body derived from every {args.derived_every}th of them (`real_standing`, "
        "`real_partial`, as training derives them). Share called usable; only walking should be:",
        "",
        "| clip | " + " | ".join(f"{n} frame{'s' if n > 1 else ''}" for n in SHORT_CLIPS) + " |",
        "|---|" + "---:|" * len(SHORT_CLIPS),
        *[
            f"| {kind} | " + " | ".join(f"{100 * u / max(n, 1):.1f} % of {n:,}" for u, n in clips[kind].values()) + " |"
            for kind in CLIP_KINDS
        ],
    ]
    if misses_plot is not None and any(frames for _, frames, _ in misses):  # a sequence of no frames has no picture
        drawn = draw_misses(dataset, misses, usable_keys, misses_plot)
        shown = drawn.resolve()
        picture = (
            f"![refused sequences]({shown.relative_to(MODELS_MD.parent).as_posix()})"
            if shown.is_relative_to(MODELS_MD.parent)
            else f"Drawn to {drawn}."
        )
        lines += [
            "",
            "Every refused sequence that has frames (spread evenly, grey where a stub ends), each person and view "
            "with a usable sequence of theirs, as `--misses-plot` draws them:",
            "",
            picture,
        ]
    body = "\n".join(lines)
    print(body)
    if args.print_only:
        return
    update_section("detector-real", "Gait detector on held-out real CASIA-B sequences", body, document=MODELS_MD)


def draw_misses(dataset, misses: list[tuple[str, int, str]], usable_keys: set[str], path: Path) -> Path:
    """The refused sequences of each person and view, then the first usable sequence of that person and view
    (if any), one strip each."""
    groups: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for key, frames, seen in misses:
        if frames:
            subject, _, view = key.split("/")
            groups.setdefault((subject, view), []).append((key, frames, seen))
    rows = []
    for (subject, view), refused in groups.items():
        rows += [
            (f"refused: {key}, {frames} frames ({seen})", dataset.load(key).silhouettes)
            for key, frames, seen in refused
        ]
        same = [info for info in dataset.infos if (info.subject, info.view) == (subject, view)]
        reference = next((info for info in same if info.key in usable_keys), None)
        if reference is not None:
            label = f"usable, for comparison: {reference.key}, {reference.frames} frames"
            rows.append((label, dataset.load(reference.key).silhouettes))
    return plot_sequence_strips(
        rows, path, title="CASIA-B sequences the detector refused, each person and view with a usable one"
    )


if __name__ == "__main__":
    main()
