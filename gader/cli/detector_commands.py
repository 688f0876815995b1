"""``gader train detector``, ``gader eval-detector``, ``gader detect``: the gait detector from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from gader.cli.output import console, err_console, print_json
from gader.errors import GaderError

DEFAULT_DETECTOR = "gader-detector"


def train_detector(
    config: Path = typer.Option(..., "--config", help="TOML detector config (configs/detector/*.toml)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: runs/<id>)."),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config value: key=value, or detector.key=value in the detector section (repeatable).",
    ),
) -> None:
    """Train the DHS gait detector on labelled synthetic sequences and real walking data."""
    from gader.training.detector_trainer import load_detector_config
    from gader.training.detector_trainer import train_detector as run

    settings = load_detector_config(config, overrides)
    run_dir = out or Path("runs") / settings.id
    report = run(settings, run_dir)
    err_console.print(
        f"detector in {run_dir / 'detector'}; validation window accuracy {report['all']['window_accuracy']} %"
    )


def eval_detector(
    model: str = typer.Option(DEFAULT_DETECTOR, "--model", help="Detector directory or shipped detector id."),
    data: Path = typer.Option(..., "--data", help="Dataset: labelled per frame (SynthGait) or real walking (CASIA-B)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    max_sequences: int | None = typer.Option(None, "--max-sequences", min=1, help="Evaluate a random subset."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random windows (and of the subset)."),
    held_out: int | None = typer.Option(
        None,
        "--held-out",
        min=1,
        help="Only the N people a training run with val_subjects = N (val_seed 0) held out of this dataset "
        "(a dataset the run used whole; for the sub-sampled CASIA-B see bench/detector_real.py).",
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override an inference setting, key=value (repeatable): window_lengths, stride, score_threshold, "
        "nms_iou, merge_gap, min_gait_fraction, min_gait_frames, frame_label_windows.",
    ),
) -> None:
    """Window, frame and sequence accuracy, the four-class confusion, and split windows vs whole DHS."""
    from gader.data import open_dataset
    from gader.detector import GaitDetector, with_inference_settings
    from gader.model_io import load_detector
    from gader.training.detector_data import SOURCE_REAL, SOURCE_SYNTHETIC, labelled
    from gader.training.detector_trainer import evaluate_items, held_out_split

    detector, _card = load_detector(model)
    if overrides:
        detector = GaitDetector(detector.classifier, with_inference_settings(detector.config, overrides))
    dataset = open_dataset(data)
    if held_out is not None:
        dataset = held_out_split(dataset, held_out)[1]
        if not dataset.subjects:  # training holds out at most half the people: one person gives nobody
            raise GaderError(
                f"{data}: --held-out {held_out} leaves nobody here (training holds out at most half the people)"
            )
    infos = dataset.infos
    if max_sequences is not None and len(infos) > max_sequences:
        chosen = np.random.default_rng(seed).choice(len(infos), size=max_sequences, replace=False)
        keys = {infos[i].key for i in chosen}
        dataset = dataset.subset(where=lambda info: info.key in keys)
    items = [
        labelled(record, detector.config, SOURCE_SYNTHETIC if record.labels is not None else SOURCE_REAL)
        for record in dataset
        if record.frames >= 3
    ]
    report = evaluate_items(detector, items, np.random.default_rng(seed))
    if as_json:
        print_json(report)
        return
    table = Table(title=f"detector on {data}")
    for column in (
        "data",
        "sequences",
        "window acc. %",
        "frame acc. %",
        "frame acc. whole DHS %",
        "sequence acc. %",
        "sequence acc. whole DHS %",
        "walking frames to GAR: precision / recall %",
    ):
        table.add_column(column, justify="right")
    for name, row in report.items():
        table.add_row(
            name,
            str(row["sequences"]),
            f"{row['window_accuracy']:.1f}",
            f"{row['frame_accuracy']:.1f}",
            f"{row['frame_accuracy_whole_dhs']:.1f}",
            f"{row['sequence_accuracy']:.1f}",
            f"{row['sequence_accuracy_whole_dhs']:.1f}",
            f"{row['walking_frames']['walking_mask']['precision']:.1f} / "
            f"{row['walking_frames']['walking_mask']['recall']:.1f}",
        )
    console.print(table)
    if not report:  # no sequence to judge: the empty table above says so
        return
    lengths = next(iter(report.values()))["short_clips"]["frames"]
    clips = Table(title="short clips (no context) called usable, %: only walking should be")
    clips.add_column("data", justify="right")
    for kind in ("walking", "not walking"):
        for frames in lengths:
            clips.add_column(f"{kind}, {frames} frames", justify="right")
    for name, row in report.items():
        short = row["short_clips"]
        cells = [f"{share:.1f}" for kind in ("walking", "not_walking") for share in short[f"{kind}_usable"]]
        clips.add_row(name, *cells)
    console.print(clips)


def detect(
    file: Path = typer.Argument(
        ..., help="A video, or a sequence file (.npz or .zip of masks, aligned or full frame)."
    ),
    model: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Detector directory or shipped id."),
    track: int | None = typer.Option(None, "--track", min=1, help="Videos: which person's track (default: main)."),
    segmenter: str = typer.Option("selfie", "--segmenter", help="Videos: person segmenter (as gader extract)."),
    fps: float | None = typer.Option(None, "--fps", min=1.0, help="Videos: sub-sample to this frame rate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the DHS with detections to this PNG."),
) -> None:
    """Find the frames that hold gait with a full body: segments, per-frame labels, gait fraction, usable."""
    from gader.dhs import double_helical_signature
    from gader.model_io import load_detector
    from gader.plots import image_path, plot_detection
    from gader.sequence_input import InputLimits, read_sequence_file

    plot = None if plot is None else image_path(plot)  # a bad name is refused before the work
    detector, _card = load_detector(model)
    record = read_sequence_file(file, InputLimits(video_fps=fps, segmenter=segmenter), track_id=track)
    report = detector.detect(record.silhouettes, record.ratios)
    if plot is not None:
        truth = None if record.labels is None else record.labels.classes
        aligned = record.silhouettes[:, :, 10:-10] if record.silhouettes.shape[2] == 64 else record.silhouettes
        dhs = double_helical_signature(aligned, detector.config.knee_fraction, detector.config.band)
        plot = plot_detection(
            dhs,
            report,
            plot,
            truth,
            title=f"{file.name}: gait fraction {report.gait_fraction:.2f}, "
            f"{'usable' if report.usable else 'not usable'}",
        )
        err_console.print(f"wrote {plot}")
    if as_json:
        print_json(report.to_dict())
        return
    console.print(
        f"{file}: {'usable' if report.usable else 'NOT usable'} gait, fraction {report.gait_fraction:.2f} "
        f"of {report.frames} frames; segments: "
        + (", ".join(f"{s.start}-{s.end} ({s.score:.2f})" for s in report.segments) or "none")
    )
