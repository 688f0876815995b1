"""GADER end to end on held-out SynthGait wild people whose probes mix standing and partial-body segments
into the walk: the plain backbone on the whole sequence, the same backbone on the detected gait frames (the
detector's own share), GAR on the whole sequence, and GADER (detector -> GAR on the detected gait frames);
then both recognisers on the frames the ground truth calls walking, as a perfect detector would give them. Last,
the paper's whole routing: GADER with the frames that hold no gait (standing, partial body) sent to a body
re-identification model on their RGB crops (GAR's RGB branch, shipped beside ``synth-wild-gar``), the two
scores fused by the pipeline's rule (``gader.pipeline.fuse``: each standardised by the impostor statistics
that ``gader calibrate-fusion`` stored in the card from other people, with the gait weight it chose there,
or ``--gait-weight``), beside that RGB model
alone on whole sequences and the same routing given the true frames. The GADER ratios come with a paired
bootstrap interval over the probes.
Writes the "gader-pipeline" section of docs/models.md (``--gallery clean``: "gader-pipeline-clean-gallery";
``--print-only``: neither).

    python -m bench.gader_eval --data data/synth-wild [data/synth-wild2 ...] [--plain synth-wild-plain]
        [--gar synth-wild-gar] [--detector gader-detector] [--val-subjects 50 [50 ...]]
        [--min-contamination 0.3] [--gallery first|clean] [--gait-weight W] [--print-only]

Probes are the sequences in which at least ``--min-contamination`` of the frames are standing or partial-body.
The gallery is either each person's first sequence, whatever it holds (``first``), or every sequence of the
person that is mostly clean walking (``clean``: contamination below the same share), as a deployment would
enrol people from good walking footage; every model embeds the gallery the way it embeds probes.

Each dataset contributes the people its training splits held out (the same ``--val-subjects`` people the
detector and the recognisers held out of that dataset); people of further SynthGait sets (made with
``--first-subject``) are new people to the recognisers, so they add probes, and the gallery grows with them.
``--val-subjects`` takes one count for every dataset or one per dataset: a set that nothing was trained on
can give more of its people (at most half, as the detector's split holds out).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader import metrics
from gader.data import open_dataset
from gader.data.record import SequenceRecord
from gader.errors import GaderError
from gader.model_io import load_detector, load_model
from gader.pipeline import (
    ALONE,
    DEFAULT_GAIT_WEIGHT,
    MODALITIES,
    GaderPipeline,
    PipelineConfig,
    PipelineResult,
    check_fusion_statistics,
    fused_similarity,
)
from gader.progress import progress
from gader.training.detector_trainer import held_out_split

MODELS_MD = Path(__file__).resolve().parents[1] / "docs" / "models.md"
UNTRIMMED = "GADER, untrimmed segments"
# A perfect detector: the frames the ground truth calls full-body walking. What the recognisers do on them
# bounds what any detector in front of them can gain.
TRUE_PLAIN = "plain backbone, true walking frames"
TRUE_GAR = "GAR, true walking frames"
# The paper's routing: gait frames to GAR, the others to a body re-identification model on RGB, scores fused.
RGB_ALONE = "body re-ID (RGB branch) alone, whole sequence"
ROUTED = "GADER + body re-ID on the other frames"
TRUE_ROUTED = "GAR + body re-ID, true walking frames"


def contamination(record: SequenceRecord) -> float:
    """Share of frames that are not full-body walking (ground truth)."""
    return float(1.0 - record.labels.walking.mean())


def measure(
    results: list[PipelineResult],
    subjects: list[str],
    is_probe: np.ndarray,
    gait_weight: float = DEFAULT_GAIT_WEIGHT,
    statistics: dict | None = None,
) -> tuple[dict, np.ndarray]:
    """Rank and verify probes against the gallery by the pipeline's fused score (``fused_similarity``: gait and
    appearance where both sides have both, else the one they share; results with a gait embedding alone rank by
    its cosine) -> (rank-1, rank-5, mAP, TAR@FAR and EER in %; bool [probes with a true match in the gallery]:
    whether each probe's best-scoring gallery sequence is its person, ties to the first as ranked). A pair that
    shares no modality can never match, so it scores below every real score."""
    probes, gallery = np.flatnonzero(is_probe), np.flatnonzero(~is_probe)
    similarity = fused_similarity([results[i] for i in probes], [results[i] for i in gallery], gait_weight, statistics)
    if np.isnan(similarity).all():
        raise SystemExit("no probe shares a modality with any gallery sequence")
    similarity = np.where(np.isnan(similarity), np.nanmin(similarity) - 1.0, similarity)  # [Np, Ng]
    labels = np.array(subjects)
    probe_labels, gallery_labels = labels[probes], labels[gallery]
    ranking = metrics.rank_metrics(-similarity, probe_labels, gallery_labels)
    roc = metrics.roc_curve(*metrics.pair_scores(similarity, probe_labels, gallery_labels))
    tar = metrics.tar_at_far(roc, (1e-2, 1e-1))
    has_match = (probe_labels[:, None] == gallery_labels[None, :]).any(axis=1)
    hits = (gallery_labels[np.argmax(similarity, axis=1)] == probe_labels)[has_match]
    measures = {
        "rank1": 100 * ranking.cmc[0],
        "rank5": 100 * ranking.cmc[4],
        "mAP": 100 * ranking.mAP,
        "tar_1e-2": 100 * tar[1e-2],
        "tar_1e-1": 100 * tar[1e-1],
        "eer": 100 * metrics.equal_error_rate(roc),
    }
    return measures, hits


def ratio_interval(
    hits: np.ndarray, baseline: np.ndarray, draws: int = 10_000, seed: int = 0
) -> tuple[float, float, int, int]:
    """Paired bootstrap over probes of rank-1(hits) / rank-1(baseline) -> (2.5 %, 97.5 % percentiles, probes only
    ``hits`` gets right, probes only ``baseline`` gets right). The same probes are drawn for both, as they were
    measured on the same probes."""
    rng = np.random.default_rng(seed)
    draws_idx = rng.integers(0, len(hits), size=(draws, len(hits)))  # [draws, probes]
    ratios = hits[draws_idx].sum(axis=1) / np.maximum(baseline[draws_idx].sum(axis=1), 1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high), int((hits & ~baseline).sum()), int((baseline & ~hits).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, nargs="+", help="SynthGait wild dataset(s)")
    parser.add_argument("--plain", default="synth-wild-plain")
    parser.add_argument("--gar", default="synth-wild-gar")
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument(
        "--val-subjects",
        type=int,
        nargs="+",
        default=[50],
        help="people held out of each dataset (at most half of its people): one count for all, or one per --data",
    )
    parser.add_argument("--min-contamination", type=float, default=0.3)
    parser.add_argument("--gallery", choices=("first", "clean"), default="first")
    parser.add_argument(
        "--gait-weight",
        type=float,
        help="fusion weight of gait in the routed rows (default: the GAR card's calibrated one, else 0.8)",
    )
    parser.add_argument("--print-only", action="store_true", help="print the table, leave docs/models.md alone")
    args = parser.parse_args()
    datasets, held_out = [], []
    if len(args.val_subjects) not in (1, len(args.data)):
        raise SystemExit(f"--val-subjects: one count, or one per dataset ({len(args.data)}); got {args.val_subjects}")
    counts = args.val_subjects * len(args.data) if len(args.val_subjects) == 1 else args.val_subjects
    for path, count in zip(args.data, counts, strict=True):
        people = held_out_split(open_dataset(path), count)[1]
        if set(people.subjects) & set(held_out):
            raise SystemExit(f"{path}: subject ids overlap an earlier dataset's (make it with --first-subject)")
        held_out += people.subjects
        datasets.append(people)
    detector = load_detector(args.detector)[0]
    plain_model, gar_model = load_model(args.plain), load_model(args.gar)
    gar_with_rgb = load_model(args.gar, with_rgb=True)
    if gar_with_rgb.rgb is None:
        raise SystemExit(f"{args.gar} ships no RGB branch (rgb.safetensors): the body re-ID rows need one")
    statistics = gar_with_rgb.card.fusion_statistics
    if not statistics:  # without them fusion never sums the two scores, and the routed rows would be gait alone
        raise SystemExit(
            f"{args.gar} has no fusion statistics: run gader calibrate-fusion --fallback-whole-sequence on it (on "
            "a copy of a shipped model), with SynthGait people of neither this bench nor its training"
        )
    check_fusion_statistics(statistics, f"model {args.gar}")
    plain = GaderPipeline(plain_model, None, PipelineConfig(use_detector=False))
    gar = GaderPipeline(gar_model, None, PipelineConfig(use_detector=False))
    # GADER's results carry the RGB-branch embedding of the frames it does not send to GAR (the "GADER" row
    # ranks by the gait embedding alone, ROUTED by both fused).
    try:
        routing = PipelineConfig(fallback_whole_sequence=True, gait_weight=args.gait_weight)
    except GaderError as exc:
        raise SystemExit(f"--gait-weight: {exc}") from None
    gader = GaderPipeline(gar_with_rgb, detector, routing)
    gait_weight = gader.gait_weight
    alone = [ALONE[m] for m in MODALITIES if ALONE[m] in statistics]
    kind_note = (
        "; a modality two sides share alone is standardised by its impostor statistics over such pairs, "
        + ", ".join(f"`{section}`" for section in alone)
        + " in the card, and then the modality's own section is measured over the pairs that share both, so that"
        " each kind of pair is centred on its own impostors"
        if alone
        else ""
    )
    if args.gait_weight is not None:
        weight_source = "fixed by --gait-weight"
    elif "gait_weight" in statistics["joint"]:
        weight_source = "the weight `gader calibrate-fusion` chose on those calibration people"
    else:
        weight_source = "the default: the card has no calibrated weight"
    # The detector's own share of the gain: the same plain backbone, given only the detected gait frames.
    plain_detected = GaderPipeline(plain_model, detector, PipelineConfig(fallback_whole_sequence=True))
    # The paper's segments: every frame of the merged windows goes to GAR (no trimming to the frames' labels).
    gader_untrimmed = GaderPipeline(
        gar_model, detector, PipelineConfig(fallback_whole_sequence=True, trim_to_frame_labels=False)
    )
    # Probes: the sequences that mix standing / partial segments in; gallery: see --gallery.
    first: dict[str, str] = {}
    for dataset in datasets:
        for info in dataset.infos:
            if info.frames >= gader.config.min_frames:
                first.setdefault(info.subject, info.key)
    records = (record for dataset in datasets for record in dataset)
    pipelines = {
        "plain backbone": plain,
        "plain backbone + detector": plain_detected,
        "GAR": gar,
        UNTRIMMED: gader_untrimmed,
        "GADER": gader,
    }
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in (*pipelines, TRUE_PLAIN, TRUE_GAR)}
    routed: dict[str, list[PipelineResult]] = {RGB_ALONE: [], ROUTED: [], TRUE_ROUTED: []}
    subjects, probe, fractions, gait_found = [], [], [], []
    too_short = 0
    for record in progress(records, total=sum(len(d) for d in datasets), desc="embedding", unit="seq"):
        if record.frames < gader.config.min_frames:  # too short to embed (SynthGait writes a few 1-2 frame clips)
            too_short += 1
            continue
        contaminated = contamination(record) >= args.min_contamination
        if args.gallery == "first":
            is_gallery = record.key == first[record.subject]
            if not is_gallery and not contaminated:
                continue
        else:
            is_gallery = not contaminated
        detection = gader.detect(record)  # once: the pipelines differ only after it
        processed = {name: pipeline.process(record, detection) for name, pipeline in pipelines.items()}
        walk = record.walking_frames(PipelineConfig().min_frames)  # too few: the whole sequence, as GADER falls back
        processed |= {TRUE_PLAIN: plain.process(walk), TRUE_GAR: gar.process(walk)}
        for name, result in processed.items():
            outputs[name].append(result.embedding)
        # What a perfect detector would send to body re-ID: the frames that are not full-body walking; nothing
        # when too few walking frames leave the whole sequence to GAR (as GADER's own fallback does)
        rest = ~record.labels.walking
        enough = walk.frames < record.frames and rest.sum() >= gader.config.min_frames
        true_look = gader.embed_appearance(record.select(rest)) if enough else None
        routed[RGB_ALONE].append(PipelineResult(None, None, gader.embed_appearance(record), 0, record.frames, "rgb"))
        routed[ROUTED].append(processed["GADER"])
        routed[TRUE_ROUTED].append(dataclasses.replace(processed[TRUE_GAR], appearance=true_look))
        subjects.append(record.subject)
        probe.append(not is_gallery)
        if not is_gallery:
            fractions.append(contamination(record))
            gait_found.append(processed["GADER"].detection.gait_fraction)
    is_probe = np.array(probe)
    scored = {  # gait-only rows rank by the recogniser's cosine, the routed rows by the fused score
        name: measure([PipelineResult(None, e, None, 1, 0, name) for e in embeddings], subjects, is_probe)
        for name, embeddings in outputs.items()
    }
    scored |= {name: measure(found, subjects, is_probe, gait_weight, statistics) for name, found in routed.items()}
    results = {name: measures for name, (measures, _) in scored.items()}
    hits = {name: found for name, (_, found) in scored.items()}
    plain_hits = hits["plain backbone"]
    baseline = max(results["plain backbone"]["rank1"], 1e-9)
    ratio = results["GADER"]["rank1"] / baseline
    detector_ratio = results["plain backbone + detector"]["rank1"] / baseline
    untrimmed_ratio = results[UNTRIMMED]["rank1"] / baseline
    ceiling_ratio = results[TRUE_GAR]["rank1"] / baseline
    routed_ratio = results[ROUTED]["rank1"] / baseline
    gader_interval = ratio_interval(hits["GADER"], plain_hits)
    routed_interval = ratio_interval(hits[ROUTED], plain_hits)
    routed_ceiling = results[TRUE_ROUTED]["rank1"] / baseline
    rows = [
        f"| {name} | {r['rank1']:.1f} | {r['rank5']:.1f} | {r['mAP']:.1f} | {r['tar_1e-2']:.1f} | "
        f"{r['tar_1e-1']:.1f} | {r['eer']:.1f} |"
        for name, r in results.items()
    ]
    calibration = gar_with_rgb.card.metrics.get("fusion_calibration", {})
    statistics_source = (
        f"{calibration['sequences']:,} sequences of {calibration['people']} other SynthGait people"
        if calibration
        else "data not recorded in the card"
    )
    if args.gallery == "first":
        gallery_text = "each person's first sequence; probes: the"
    else:
        gallery_text = (
            f"every sequence of the person that is at least {100 - 100 * args.min_contamination:.0f} % full-body "
            f"walking ({int((~is_probe).sum())} sequences); probes: the"
        )
    body = (
        f"{len(held_out)} held-out SynthGait `wild` people ({', '.join(args.data)}"
        + (f"; {too_short} sequences under {gader.config.min_frames} frames left out" if too_short else "")
        + f"); gallery: {gallery_text} "
        f"{int(is_probe.sum())} {'other ' if args.gallery == 'first' else ''}sequences in which at least "
        f"{100 * args.min_contamination:.0f} % "
        f"of the frames are standing or partial-body (mean {100 * np.mean(fractions):.0f} %; the detector kept "
        f"{100 * np.mean(gait_found):.0f} % of the frames as gait on average; rank-1, rank-5 and mAP count the "
        f"{len(plain_hits)} probes whose person has a sequence in the gallery). The plain backbone "
        f"(`{args.plain}`) and GAR (`{args.gar}`) see whole sequences; GADER runs `{args.detector}` first and "
        "embeds the detected gait frames with GAR (falling back to the whole sequence when nothing is usable); "
        "*plain backbone + detector* does the same with the plain backbone; *GADER, untrimmed segments* gives GAR "
        "every frame of the merged windows (the paper's segments) instead of only those the frames' own labels "
        "call full-body walking. The rows *true walking frames* give the recognisers the frames the ground truth "
        "calls full-body walking, in gallery and probes: what a perfect detector would give them. The last three "
        "rows route as the paper does: *GADER + body re-ID* also embeds the frames GADER does not send to GAR "
        "(at least 3) with GAR's RGB branch and ranks by the pipeline's fused score (`gader.pipeline.fuse`: each "
        "similarity standardised by the impostor statistics in the model card, measured by `gader "
        f"calibrate-fusion` on {statistics_source}; then {gait_weight:g} x gait + {1 - gait_weight:g} x "
        f"appearance ({weight_source}), rescaled to unit impostor spread, where both sides have both, else the one "
        f"they share{kind_note}); the "
        "RGB branch alone on whole sequences shows what appearance holds by itself; the last row routes the true "
        "frames. Cosine distance; percentages.\n\n"
        "| model | rank-1 | rank-5 | mAP | TAR@FAR=1e-2 | TAR@FAR=1e-1 | EER |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nGADER / plain backbone rank-1: **{ratio:.2f}x** (with untrimmed segments: {untrimmed_ratio:.2f}x; the "
        f"detector alone, in front of the plain backbone: {detector_ratio:.2f}x). With a perfect detector GAR would "
        f"reach {ceiling_ratio:.2f}x. With the paper's routing (GADER + body re-ID on the other frames): "
        f"**{routed_ratio:.2f}x** ({routed_ceiling:.2f}x given the true frames).\n\n"
        f"How sure these ratios are, over the {len(plain_hits)} probes (a paired bootstrap of the probes, 10,000 "
        f"draws, 95 % interval): GADER / plain {gader_interval[0]:.2f}-{gader_interval[1]:.2f}x (probes only GADER "
        f"gets right: {gader_interval[2]}, only the plain backbone: {gader_interval[3]}); GADER + body re-ID / plain "
        f"{routed_interval[0]:.2f}-{routed_interval[1]:.2f}x ({routed_interval[2]} and {routed_interval[3]})."
    )
    print(body)
    if args.print_only:
        return
    section = "gader-pipeline" if args.gallery == "first" else "gader-pipeline-clean-gallery"
    title = "GADER pipeline on contaminated SynthGait probes" + (
        "" if args.gallery == "first" else ", gallery of clean walking"
    )
    update_section(section, title, body, document=MODELS_MD)


if __name__ == "__main__":
    main()
