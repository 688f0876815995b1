"""``gader compare`` and ``gader calibrate-fusion``: the whole GADER pipeline on two sequences and whether they
show the same person, and the calibration of its fused score (statistics, gait weight, operating points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gader.cli.detector_commands import DEFAULT_DETECTOR
from gader.cli.output import err_console, print_json
from gader.errors import GaderError

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
    pipeline = GaderPipeline(loaded, gait_detector, config, None if no_detector else detector)
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
    print(f"{verdicts}; {basis}")


def calibrate_fusion(
    model: str = typer.Option(..., "--model", help="Model directory with an RGB branch (its model.json is updated)."),
    data: Path = typer.Option(..., "--data", help="Labelled sequences with RGB crops, of people the model never saw."),
    detector: str = typer.Option("gader-detector", "--detector", help="Detector directory or shipped id."),
    fallback: bool = typer.Option(
        False,
        "--fallback-whole-sequence",
        help="Route as GaderPipeline with fallback_whole_sequence does (bench.gader_eval's GADER): a sequence "
        "without usable gait goes to GAR whole, instead of to the RGB branch whole.",
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the fused scores' false and true match rates, with the thresholds, to this PNG."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Impostor statistics of gait and appearance scores, stored with the model for score fusion.

    Runs the GADER pipeline on every sequence: gait frames to GAR, the rest to the RGB branch.

    Measures each score over the pairs of different people, and the two scores' correlation.

    Fusion standardises by them, so that the two models' scores can be summed (gader.pipeline.fuse), and sums them
    with the gait weight that retrieves these people best (leave-one-out mAP, weights 0 to 1 by 0.05). Pairs that
    share one modality alone get their own statistics when there are enough of them.

    Then sets thresholds on the fused score at FMR 1e-2, 1e-3 and 1e-4, over all pairs and for each kind of pair
    (gait alone, appearance alone, both), which gader compare decides with; --plot draws the score curves."""
    import torch

    from gader.data import open_dataset
    from gader.model_io import ModelCard, writable_model
    from gader.pipeline import (
        DEFAULT_GAIT_WEIGHT,
        JOINT,
        GaderPipeline,
        PipelineConfig,
        choose_gait_weight,
        fused_operating_points,
        modality_statistics,
    )
    from gader.plots import image_path, plot_fused_scores
    from gader.progress import progress

    plot = None if plot is None else image_path(plot)  # a bad name is refused before the work
    path = writable_model(model, "gader calibrate-fusion")
    config = PipelineConfig(fallback_whole_sequence=fallback)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline = GaderPipeline.load(path, detector, config, device=device)
    if pipeline.model.rgb is None:
        raise GaderError(f"{model} ships no RGB branch (rgb.safetensors): it has no appearance score to fuse")
    dataset = open_dataset(data)
    if len(dataset) == 0:
        raise GaderError(f"{data}: no sequences")
    results, subjects, short = [], [], 0
    for record in progress(dataset, total=len(dataset), desc="calibrating fusion", unit="seq"):
        if record.rgb is None:  # checked before any work on it, so data without crops fails at once
            raise GaderError(f"{data}: sequence {record.key} has no RGB crops; fusion needs both modalities")
        if record.frames < config.min_frames:
            short += 1
            continue
        results.append(pipeline.process(record))
        subjects.append(record.subject)
    if not results:
        raise GaderError(f"{data}: no sequence of at least {config.min_frames} frames ({short} shorter ones skipped)")
    statistics = modality_statistics(results, subjects)
    try:
        weight, mean_ap = choose_gait_weight(results, subjects, statistics)
        statistics[JOINT]["gait_weight"] = weight
    except GaderError as exc:  # the statistics still hold; the pipeline then fuses with the default weight
        weight, mean_ap = None, {}
        err_console.print(
            f"[yellow]warning:[/yellow] no gait weight chosen on {data} ({exc}); the pipeline will use "
            f"{DEFAULT_GAIT_WEIGHT:g}"
        )
    try:
        points = fused_operating_points(
            results, subjects, DEFAULT_GAIT_WEIGHT if weight is None else weight, statistics
        )
    except GaderError as exc:  # the statistics still hold; scores then come without a calibrated decision
        points = {"operating_points": {}, "unresolved": [], "problem": str(exc)}
        err_console.print(f"[yellow]warning:[/yellow] no operating points for fused scores on {data} ({exc})")
    card = ModelCard.from_json((path / "model.json").read_text(), str(path))
    card.fusion_statistics = statistics
    if "problem" in points:
        card.fusion_operating_points = {}
    else:  # thresholds over all pairs, and over each kind of pair (what a decision on a pair of that kind uses)
        tables = {"all": points["operating_points"]}
        tables.update({kind: found["operating_points"] for kind, found in points["by_kind"].items()})
        card.fusion_operating_points = {
            table: {name: round(value, 6) for name, value in thresholds.items()} for table, thresholds in tables.items()
        }
    card.metrics["fusion_calibration"] = {
        "data": str(data),
        "detector": detector,
        "fallback_whole_sequence": fallback,
        "sequences": len(results),
        "people": len(set(subjects)),
        "skipped_short_sequences": short,
        # leave-one-out retrieval mAP (%) of the fused scores for each gait weight tried
        "map_by_gait_weight": {f"{w:g}": round(100 * value, 3) for w, value in mean_ap.items()},
        # thresholds on the fused score, the true match rate (%) there, and the false match rate (%) each kind of
        # pair (scored on gait only, appearance only, both) gets at them
        "operating_points": {"problem": points["problem"]}
        if "problem" in points
        else {
            **{key: points[key] for key in ("genuine_pairs", "impostor_pairs", "unresolved")},
            "tmr": {name: round(100 * value, 3) for name, value in points["tmr"].items()},
            "fmr_by_pairs": {
                name: {kind: None if rate is None else round(100 * rate, 4) for kind, rate in rates.items()}
                for name, rates in points["fmr_by_pairs"].items()
            },
            "by_kind": {
                kind: {
                    **{key: found[key] for key in ("genuine_pairs", "impostor_pairs", "unresolved")},
                    "tmr": {name: round(100 * value, 3) for name, value in found["tmr"].items()},
                }
                for kind, found in points["by_kind"].items()
            },
        },
    }
    (path / "model.json").write_text(card.to_json())
    if plot is not None and "problem" not in points:
        plot = plot_fused_scores(
            points["scores"]["genuine"],
            points["scores"]["impostors"],
            points["operating_points"],
            plot,
            title=f"{card.id}: fused scores on {len(set(subjects))} calibration people",
        )
        err_console.print(f"wrote {plot}")
    if as_json:
        print_json(
            {
                "fusion_statistics": statistics,
                "fusion_operating_points": card.fusion_operating_points,
                **card.metrics["fusion_calibration"],
            }
        )
        return
    _print_fusion_calibration(
        path, len(results), subjects, short, config.min_frames, statistics, weight, mean_ap, points
    )


def _print_fusion_calibration(
    path: Path,
    sequences: int,
    subjects: list[str],
    short: int,
    min_frames: int,
    statistics: dict[str, Any],
    weight: float | None,
    mean_ap: dict[float, float],
    points: dict[str, Any],
) -> None:
    """calibrate-fusion's report for a person, on stderr: statistics, the weight, the thresholds."""
    from gader.pipeline import ALONE, DEFAULT_GAIT_WEIGHT

    skipped = f" ({short} sequence{'s' * (short != 1)} under {min_frames} frames skipped)" if short else ""
    err_console.print(f"calibrated fusion of {path} on {sequences} sequences of {len(set(subjects))} people{skipped}:")
    for modality in ("gait", "appearance"):
        for section, what in ((modality, modality), (ALONE[modality], f"{modality}, pairs sharing it alone")):
            if section in statistics:
                values = statistics[section]
                err_console.print(
                    f"  {what}: impostor similarity {values['impostor_mean']:.4f} +- {values['impostor_std']:.4f} "
                    f"({values['impostor_pairs']:,} pairs)"
                )
    joint = statistics["joint"]
    err_console.print(
        f"  correlation of the two over impostor pairs: {joint['impostor_correlation']:.3f} "
        f"({joint['impostor_pairs']:,} pairs with both)"
    )
    if weight is not None:
        err_console.print(
            f"  gait weight {weight:g}: leave-one-out retrieval mAP {100 * mean_ap[weight]:.2f} % (gait alone where "
            f"both exist: {100 * mean_ap[1.0]:.2f} %; {DEFAULT_GAIT_WEIGHT:g}: "
            f"{100 * mean_ap[DEFAULT_GAIT_WEIGHT]:.2f} %; appearance alone where both exist: "
            f"{100 * mean_ap[0.0]:.2f} %)"
        )
    if "problem" in points:
        return
    by_kind = {kind: found["impostor_pairs"] for kind, found in points["by_kind"].items()}
    err_console.print(
        f"  fused score thresholds over {points['genuine_pairs']:,} genuine and {points['impostor_pairs']:,} impostor "
        f"pairs ({by_kind['gait']:,} scored on gait alone, {by_kind['appearance']:,} on appearance alone, "
        f"{by_kind['both']:,} on both):"
    )
    for name, threshold in points["operating_points"].items():
        rates = ", ".join(
            f"{kind} {'-' if rate is None else f'{100 * rate:.3f} %'}"
            for kind, rate in points["fmr_by_pairs"][name].items()
        )
        err_console.print(
            f"    {name}: {threshold:.3f} impostor deviations, TMR {100 * points['tmr'][name]:.2f} %; "
            f"false match rate by pairs: {rates}"
        )
    for name in points["unresolved"]:
        err_console.print(f"    {name}: not set, {points['impostor_pairs']:,} impostor pairs cannot resolve it")
    err_console.print("  per kind of pair (what a decision on a pair of that kind uses):")
    for kind, found in points["by_kind"].items():
        if not found["impostor_pairs"]:
            continue
        thresholds = ", ".join(
            f"{name} {value:.3f} ("
            + (f"TMR {100 * found['tmr'][name]:.2f} %" if name in found["tmr"] else "no genuine pairs: TMR unknown")
            + ")"
            for name, value in found["operating_points"].items()
        )
        unresolved = f"; unresolved: {', '.join(found['unresolved'])}" if found["unresolved"] else ""
        err_console.print(
            f"    scored on {kind} ({found['genuine_pairs']:,} genuine, {found['impostor_pairs']:,} impostor pairs): "
            f"{thresholds or 'none'}{unresolved}"
        )
