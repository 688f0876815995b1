"""GADER end to end on held-out SynthGait wild people whose probes mix standing and partial-body segments
into the walk: the plain backbone on the whole sequence, the same backbone on the detected gait frames (the
detector's own share), GAR on the whole sequence, and GADER (detector -> GAR on the detected gait frames);
then both recognisers on the frames the ground truth calls walking, as a perfect detector would give them.
Writes the "gader-pipeline" section of docs/models.md (``--gallery clean``: "gader-pipeline-clean-gallery";
``--print-only``: neither).

    python -m bench.gader_eval --data data/synth-wild [data/synth-wild2 ...] [--plain synth-wild-plain]
        [--gar synth-wild-gar] [--detector gader-detector] [--min-contamination 0.3] [--gallery first|clean]
        [--print-only]

Probes are the sequences in which at least ``--min-contamination`` of the frames are standing or partial-body.
The gallery is either each person's first sequence, whatever it holds (``first``), or every sequence of the
person that is mostly clean walking (``clean``: contamination below the same share), as a deployment would
enrol people from good walking footage; every model embeds the gallery the way it embeds probes.

Each dataset contributes the people its training splits held out (the same ``--val-subjects`` people the
detector and the recognisers held out of that dataset); people of further SynthGait sets (made with
``--first-subject``) are new people to the recognisers, so they add probes, and the gallery grows with them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader import protocols
from gader.data import open_dataset
from gader.data.record import SequenceRecord
from gader.embedding import part_major
from gader.model_io import load_detector, load_model
from gader.pipeline import GaderPipeline, PipelineConfig
from gader.progress import progress
from gader.training.detector_trainer import held_out_split

MODELS_MD = Path(__file__).resolve().parents[1] / "docs" / "models.md"
UNTRIMMED = "GADER, untrimmed segments"
# A perfect detector: the frames the ground truth calls full-body walking. What the recognisers do on them
# bounds what any detector in front of them can gain.
TRUE_PLAIN = "plain backbone, true walking frames"
TRUE_GAR = "GAR, true walking frames"


def contamination(record: SequenceRecord) -> float:
    """Share of frames that are not full-body walking (ground truth)."""
    return float(1.0 - record.labels.walking.mean())


def evaluate(embeddings: list[np.ndarray], subjects: list[str], is_probe: np.ndarray) -> dict:
    data = protocols.EmbeddingSet(part_major(np.stack(embeddings)), np.array(subjects), is_probe=is_probe)
    ranking = protocols.open_set(data, "cos").summary
    verification = protocols.verification(data, "cos").summary
    return {
        "rank1": ranking["rank1"],
        "rank5": ranking["rank5"],
        "mAP": ranking["mAP"],
        "tar_1e-2": verification["tar_at_far"]["1e-02"],
        "tar_1e-1": verification["tar_at_far"]["1e-01"],
        "eer": verification["eer"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, nargs="+", help="SynthGait wild dataset(s)")
    parser.add_argument("--plain", default="synth-wild-plain")
    parser.add_argument("--gar", default="synth-wild-gar")
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--val-subjects", type=int, default=50)
    parser.add_argument("--min-contamination", type=float, default=0.3)
    parser.add_argument("--gallery", choices=("first", "clean"), default="first")
    parser.add_argument("--print-only", action="store_true", help="print the table, leave docs/models.md alone")
    args = parser.parse_args()
    datasets, held_out = [], []
    for path in args.data:
        people = held_out_split(open_dataset(path), args.val_subjects)[1]
        if set(people.subjects) & set(held_out):
            raise SystemExit(f"{path}: subject ids overlap an earlier dataset's (make it with --first-subject)")
        held_out += people.subjects
        datasets.append(people)
    detector = load_detector(args.detector)[0]
    plain_model, gar_model = load_model(args.plain), load_model(args.gar)
    plain = GaderPipeline(plain_model, None, PipelineConfig(use_detector=False))
    gar = GaderPipeline(gar_model, None, PipelineConfig(use_detector=False))
    gader = GaderPipeline(gar_model, detector, PipelineConfig(fallback_whole_sequence=True))
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
            if info.frames > 0:
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
    subjects, probe, fractions, gait_found = [], [], [], []
    for record in progress(records, total=sum(len(d) for d in datasets), desc="embedding", unit="seq"):
        if record.frames == 0:  # datasets made before SynthGait stopped writing empty sequences
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
        subjects.append(record.subject)
        probe.append(not is_gallery)
        if not is_gallery:
            fractions.append(contamination(record))
            gait_found.append(processed["GADER"].detection.gait_fraction)
    is_probe = np.array(probe)
    results = {name: evaluate(embeddings, subjects, is_probe) for name, embeddings in outputs.items()}
    baseline = max(results["plain backbone"]["rank1"], 1e-9)
    ratio = results["GADER"]["rank1"] / baseline
    detector_ratio = results["plain backbone + detector"]["rank1"] / baseline
    untrimmed_ratio = results[UNTRIMMED]["rank1"] / baseline
    ceiling_ratio = results[TRUE_GAR]["rank1"] / baseline
    rows = [
        f"| {name} | {r['rank1']:.1f} | {r['rank5']:.1f} | {r['mAP']:.1f} | {r['tar_1e-2']:.1f} | "
        f"{r['tar_1e-1']:.1f} | {r['eer']:.1f} |"
        for name, r in results.items()
    ]
    if args.gallery == "first":
        gallery_text = "each person's first sequence; probes: the"
    else:
        gallery_text = (
            f"every sequence of the person that is at least {100 - 100 * args.min_contamination:.0f} % full-body "
            f"walking ({int((~is_probe).sum())} sequences); probes: the"
        )
    body = (
        f"{len(held_out)} held-out SynthGait `wild` people ({', '.join(args.data)}); gallery: {gallery_text} "
        f"{int(is_probe.sum())} {'other ' if args.gallery == 'first' else ''}sequences in which at least "
        f"{100 * args.min_contamination:.0f} % "
        f"of the frames are standing or partial-body (mean {100 * np.mean(fractions):.0f} %; the detector kept "
        f"{100 * np.mean(gait_found):.0f} % of the frames as gait on average). The plain backbone "
        f"(`{args.plain}`) and GAR (`{args.gar}`) see whole sequences; GADER runs `{args.detector}` first and "
        "embeds the detected gait frames with GAR (falling back to the whole sequence when nothing is usable); "
        "*plain backbone + detector* does the same with the plain backbone; *GADER, untrimmed segments* gives GAR "
        "every frame of the merged windows (the paper's segments) instead of only those the frames' own labels "
        "call full-body walking. The last two rows give the recognisers the frames the ground truth calls "
        "full-body walking, in gallery and probes: what a perfect detector would give them. Cosine distance; "
        "percentages.\n\n"
        "| model | rank-1 | rank-5 | mAP | TAR@FAR=1e-2 | TAR@FAR=1e-1 | EER |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nGADER / plain backbone rank-1: **{ratio:.2f}x** (with untrimmed segments: {untrimmed_ratio:.2f}x; the "
        f"detector alone, in front of the plain backbone: {detector_ratio:.2f}x). With a perfect detector GAR would "
        f"reach {ceiling_ratio:.2f}x."
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
