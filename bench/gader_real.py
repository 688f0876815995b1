"""GADER on real people: held-out CASIA-B subjects whose probe walks are cut short by standing and partial-body
stretches made from their own frames (``contaminated_walk``), matched against a gallery of their clean walks.
Writes the "gader-real" section of docs/models.md (``--print-only``: leaves it alone).

The recogniser must not have seen these people. The detector holds out 37 CASIA-B subjects (val_seed 0), the
same people as a recogniser trained with ``data.val_subjects=37``:

    gader train gar --config configs/gar/casia-b-gaitbase-cpu.toml --set data.val_subjects=37 \\
        --set optim.iterations=2000 --set "optim.milestones=[1400, 1800]" --set id=casia-b-held-out-37 \\
        --out runs/casia-b-held-out-37   # 25.6 min on 2 cores; held-out rank-1 NM 78.9 / BG 67.9 / CL 50.4 %
    python -m bench.gader_real --model runs/casia-b-held-out-37/model [--detector gader-detector] [--config C]
        [--share 0.3 0.7] [--seed 0] [--print-only]

CASIA-B has no resize ratios and no RGB, so GAR is its plain backbone and GADER is the detector in front of it.
The rows give the same recogniser: the clean walk (the ceiling), the whole contaminated sequence (what a
recogniser without a detector gets), the detected gait frames (GADER; the whole sequence when the detector finds
nothing usable), the same with the paper's untrimmed segments (every frame of the merged windows), and the true
walking frames (an oracle detector).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.report import update_section
from gader import protocols
from gader.data import open_dataset, split_dataset
from gader.embedding import part_major
from gader.model_io import load_detector, load_model
from gader.pipeline import GaderPipeline, PipelineConfig, route
from gader.progress import progress
from gader.training.detector_data import contaminated_walk
from gader.training.detector_trainer import held_out_subjects, load_detector_config

CASIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "casia-b" / "train"
MODELS_MD = Path(__file__).resolve().parents[1] / "docs" / "models.md"
DETECTOR_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "detector" / "gader-detector.toml"
GALLERY = protocols.CASIA_GALLERY_CONDITIONS
UNTRIMMED = "GADER, untrimmed segments (every frame of the merged windows)"
MIN_PROBE_FRAMES = 20  # a walk shorter than this (CASIA-B has a few stubs) leaves too little to cut


def recogniser_held_out(model, dataset) -> list[str]:
    """The CASIA-B subjects the recogniser's training split held out (from its card); none: it saw them all."""
    data = model.card.training.get("config", {}).get("data", {})
    if not data.get("val_subjects"):
        return []
    return split_dataset(dataset, val_count=data["val_subjects"], seed=data.get("val_seed", 0))[1].subjects


def summarise(embeddings: list[np.ndarray], subjects, conditions, views, is_probe, metric: str) -> dict:
    data = protocols.EmbeddingSet(part_major(np.stack(embeddings)), subjects, conditions, views, is_probe)
    rank1 = protocols.casia_b(data, metric).summary["rank1"]
    verification = protocols.verification(data, metric).summary
    return {**rank1, "tar_1e-2": verification["tar_at_far"]["1e-02"], "eer": verification["eer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a recogniser trained without the held-out subjects")
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--config", default=str(DETECTOR_CONFIG), help="the detector's training config (its split)")
    parser.add_argument("--data", default=str(CASIA))
    parser.add_argument("--share", type=float, nargs=2, default=(0.3, 0.7), help="replaced share of each probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print-only", action="store_true", help="print the table, leave docs/models.md alone")
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"{args.data}: CASIA-B is not here (../shared/data/casia-b/train)")
    dataset = open_dataset(args.data)
    model = load_model(args.model)
    detector = load_detector(args.detector)[0]
    detector_held_out = held_out_subjects(args.data, load_detector_config(args.config))  # as bench.detector_real
    unseen = sorted(set(recogniser_held_out(model, dataset)) & set(detector_held_out))
    if not unseen:
        raise SystemExit(
            f"{args.model}: no CASIA-B subject is held out by both it and {args.detector}; train the recogniser "
            "with data.val_subjects=37 (see this script's docstring)"
        )
    people = dataset.subset(subjects=unseen)
    plain = GaderPipeline(model, None, PipelineConfig(use_detector=False))
    gader = GaderPipeline(model, detector, PipelineConfig(fallback_whole_sequence=True))
    # The paper's segments: every frame of the merged windows goes to the recogniser (no trimming).
    untrimmed = GaderPipeline(model, detector, PipelineConfig(fallback_whole_sequence=True, trim_to_frame_labels=False))
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[np.ndarray]] = {
        "clean walk (no contamination)": [],
        "whole contaminated sequence": [],
        UNTRIMMED: [],
        "GADER": [],
        "true walking frames": [],
    }
    subjects, conditions, views, is_probe = [], [], [], []
    shares, skipped = [], 0
    usable: list[bool] = []
    kept, recall, precision = ({"trimmed": [], "untrimmed": []} for _ in range(3))
    for record in progress(people, total=len(people), desc="embedding", unit="seq"):
        if record.condition in GALLERY:
            if record.frames < plain.config.min_frames:
                skipped += 1
                continue
            embedding = plain.process(record).embedding
            for name in rows:
                rows[name].append(embedding)  # the gallery is the people's clean walks, enrolled once
        else:
            cut = (
                contaminated_walk(record, rng, rng.uniform(*args.share)) if record.frames >= MIN_PROBE_FRAMES else None
            )
            if cut is None:
                skipped += 1
                continue
            truth = cut.labels.walking  # [T]
            result = gader.process(cut)
            rows["clean walk (no contamination)"].append(plain.process(record).embedding)
            rows["whole contaminated sequence"].append(plain.process(cut).embedding)
            rows["GADER"].append(result.embedding)
            wide = untrimmed.process(cut, result.detection)
            rows[UNTRIMMED].append(wide.embedding)
            rows["true walking frames"].append(plain.process(cut.walking_frames()).embedding)
            shares.append(1.0 - truth.mean())
            usable.append(result.detection.usable)
            for name, pipeline in (("trimmed", gader), ("untrimmed", untrimmed)):
                found, _ = route(cut.frames, result.detection, pipeline.config)  # the frames it embedded
                kept[name].append(found.mean())
                recall[name].append((found & truth).sum() / truth.sum())
                precision[name].append((found & truth).sum() / max(found.sum(), 1))
        subjects.append(record.subject)
        conditions.append(record.condition)
        views.append(record.view)
        is_probe.append(record.condition not in GALLERY)
    results = {
        name: summarise(embeddings, subjects, conditions, views, np.array(is_probe), model.card.distance)
        for name, embeddings in rows.items()
    }
    baseline = max(results["whole contaminated sequence"]["mean"], 1e-9)
    probes = int(np.sum(is_probe))
    table = [
        f"| {name} | {r['NM']:.1f} | {r['BG']:.1f} | {r['CL']:.1f} | **{r['mean']:.1f}** | {r['tar_1e-2']:.1f} | "
        f"{r['eer']:.1f} |"
        for name, r in results.items()
    ]
    body = (
        f"{len(unseen)} CASIA-B subjects that neither `{model.id}` nor `{args.detector}` saw in training; gallery: "
        f"their clean nm-01..04 walks ({len(is_probe) - probes} sequences); probes: their {probes} nm-05/06, bg and "
        f"cl walks of at least {MIN_PROBE_FRAMES} frames, each with {100 * args.share[0]:.0f}–"
        f"{100 * args.share[1]:.0f} % of its frames replaced (mean {100 * np.mean(shares):.0f} %) by a standing "
        "stretch built from one of its own frames and by its other frames cut at hip or chest height, one before "
        f"and one after the walk that is kept (`contaminated_walk`, seed {args.seed}; {skipped} shorter sequences "
        f"left out). The detector called {100 * np.mean(usable):.1f} % of the probes usable; GADER embedded "
        f"{100 * np.mean(kept['trimmed']):.0f} % of their frames: {100 * np.mean(recall['trimmed']):.0f} % of the "
        f"true walking frames (recall), and {100 * np.mean(precision['trimmed']):.0f} % of what it embedded was "
        f"walking (precision); with untrimmed segments {100 * np.mean(kept['untrimmed']):.0f} % of the frames, "
        f"recall {100 * np.mean(recall['untrimmed']):.0f} %, precision {100 * np.mean(precision['untrimmed']):.0f} %. "
        "CASIA-B "
        "protocol rank-1 (identical views excluded), verification over every probe-gallery pair; "
        f"{model.card.distance} distance; percentages.\n\n"
        "| probe frames given to the recogniser | NM | BG | CL | mean rank-1 | TAR@FAR=1e-2 | EER |\n"
        "|---|---|---|---|---|---|---|\n"
        + "\n".join(table)
        + f"\n\nGADER / whole contaminated sequence, mean rank-1: **{results['GADER']['mean'] / baseline:.2f}x**."
    )
    print(body)
    if not args.print_only:
        update_section("gader-real", "GADER on contaminated real CASIA-B walks", body, document=MODELS_MD)


if __name__ == "__main__":
    main()
