"""``gader compare``: the whole GADER pipeline on two sequences, and whether they show the same person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gader.cli.detector_commands import DEFAULT_DETECTOR
from gader.cli.output import print_json

DEFAULT_MODEL = "casia-b-default"  # the service's default model (GADER_MODEL)


def _side(name: str, frames: int, result) -> dict[str, Any]:
    """What the pipeline did with one sequence, for the report."""
    detection = result.detection
    return {
        "file": name,
        "frames": frames,
        "usable": None if detection is None else detection.usable,
        "gait_fraction": None if detection is None else round(detection.gait_fraction, 4),
        "segments": [] if detection is None else [segment.to_dict() for segment in detection.segments],
        "gait_frames_embedded": result.embedded_frames,
        "appearance_frames_embedded": result.appearance_frames,
    }


def _modalities(side: dict[str, Any]) -> str:
    """Which embeddings one side has, in words."""
    held = [name for name in ("gait", "appearance") if side[f"{name}_frames_embedded"]]
    return " and ".join(held) + " only" * (len(held) == 1) if held else "no embedding"


def _describe(side: dict[str, Any]) -> str:
    gait = (
        f"GAR embedded {side['gait_frames_embedded']} frames" if side["gait_frames_embedded"] else "no gait embedding"
    )
    look = (
        f"RGB branch {side['appearance_frames_embedded']} frames"
        if side["appearance_frames_embedded"]
        else "no appearance embedding"
    )
    if side["usable"] is None:
        detected = "no detector"
    else:
        segments = ", ".join(f"{s['start']}-{s['end']}" for s in side["segments"]) or "no segments"
        detected = (
            f"{'usable' if side['usable'] else 'NOT usable'} gait, fraction {side['gait_fraction']:.2f} ({segments})"
        )
    return f"{side['file']}: {side['frames']} frames, {detected}; {gait}, {look}"


def compare(
    first: Path = typer.Argument(
        ..., help="A video, or a sequence file (.npz or .zip of masks, aligned or full frame)."
    ),
    second: Path = typer.Argument(..., help="The sequence to compare it with (the same kinds of file)."),
    model: str = typer.Option(
        DEFAULT_MODEL, "--model", help="GAR model directory or shipped id (appearance needs one with an RGB branch)."
    ),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help="Detector directory or shipped id."),
    no_detector: bool = typer.Option(False, "--no-detector", help="Embed every frame (the plain-backbone way)."),
    fallback: bool | None = typer.Option(
        None,
        "--fallback-whole-sequence/--no-fallback-whole-sequence",
        help="A sequence without usable gait goes to GAR whole (else to the RGB branch whole). Default: as the "
        "model's fusion calibration routed, so that its operating points hold; off without one.",
    ),
    gait_weight: float | None = typer.Option(
        None,
        "--gait-weight",
        min=0.0,
        max=1.0,
        help="Weight of gait where both sides have both (default: the model's).",
    ),
    track_first: int | None = typer.Option(None, "--track-first", min=1, help="Videos: the first file's track."),
    track_second: int | None = typer.Option(None, "--track-second", min=1, help="Videos: the second file's track."),
    segmenter: str = typer.Option("selfie", "--segmenter", help="Videos: person segmenter (as gader extract)."),
    fps: float | None = typer.Option(None, "--fps", min=1.0, help="Videos: sub-sample to this frame rate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run GADER on two sequences and score them: the detector routes each one's gait frames to GAR and the
    rest to the RGB branch; the score fuses what both sides have (gader.pipeline.fuse), and the model's
    calibrated operating points decide match or not."""
    import torch

    from gader.model_io import load_detector, load_model
    from gader.pipeline import GaderPipeline, PipelineConfig
    from gader.sequence_input import InputLimits, read_sequence_file

    loaded = load_model(model, with_rgb=True)
    if fallback is None:
        calibration = loaded.card.metrics.get("fusion_calibration", {}) if loaded.card.fusion_statistics else {}
        fallback = bool(calibration.get("fallback_whole_sequence", False))
    config = PipelineConfig(use_detector=not no_detector, gait_weight=gait_weight, fallback_whole_sequence=fallback)
    gait_detector = None if no_detector else load_detector(detector)[0]
    pipeline = GaderPipeline(loaded, gait_detector, config)
    limits = InputLimits(video_fps=fps, segmenter=segmenter)
    results, sides = [], []
    with torch.inference_mode():
        for file, track in ((first, track_first), (second, track_second)):
            record = read_sequence_file(file, limits, track_id=track)
            result = pipeline.process(record)
            results.append(result)
            sides.append(_side(str(file), record.frames, result))
    breakdown = pipeline.score_breakdown(*results)
    points, basis = pipeline.operating_points(*results)
    score = breakdown["score"]
    decisions = {name: score >= threshold for name, threshold in points.items()} if score is not None else {}
    report = {
        "model": pipeline.model_id,
        "first": sides[0],
        "second": sides[1],
        **breakdown,
        "fallback_whole_sequence": fallback,
        "operating_points": points,
        "operating_points_basis": basis,
        "match": decisions,
    }
    if as_json:
        print_json(report)
        return
    print(_describe(sides[0]))
    print(_describe(sides[1]))
    if score is None:
        held = [_modalities(side) for side in sides]
        print(f"no score: the two sequences share no modality (the first has {held[0]}, the second has {held[1]})")
        return
    parts = []
    for modality in ("gait", "appearance"):
        raw, z = breakdown["similarity"][modality], breakdown["standardised"][modality]
        if raw is not None:
            parts.append(f"{modality} {raw:.4f}" + ("" if z is None else f" ({z:+.2f} impostor deviations)"))
    weighting = f", gait weight {breakdown['gait_weight']:g}" if breakdown["gait_weight"] is not None else ""
    print(
        f"score {score:.4f} ({breakdown['scale']}; scored on {breakdown['scored_on']}{weighting}): " + ", ".join(parts)
    )
    if not points:
        print(f"no decision: {basis}")
        return
    verdicts = ", ".join(
        f"{'MATCH' if decisions[name] else 'no match'} at {name} (threshold {threshold:.4f})"
        for name, threshold in points.items()
    )
    print(f"{verdicts}; thresholds: {basis}")
