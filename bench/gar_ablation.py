"""GAR ablation on SynthGait (the paper's Table 5, on our data): plain backbone, + ratio attention,
+ distillation, both; several seeds, same data and budget. Writes the "ablation" section of docs/models.md
and keeps each run (its exported model and ``result.json``) under --runs.

    python -m bench.gar_ablation --data data/synth-wild [--seeds 0 1 2] [--variants backbone gar] [--runs runs/ablation]
    python -m bench.gar_ablation --data data/synth-wild --report-only

A run whose ``result.json`` exists is not trained again, so the grid can be split over several processes
(``--threads 1`` each: on 2 cores two single-thread runs side by side finish sooner than one after the
other) and the report written once all of them are done. The table shows every variant that has runs.
A run that another live process is training (``running.pid``) is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
from pathlib import Path

from bench.report import update_section
from gader.training.config import load_config
from gader.training.trainer import train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gar" / "synth-wild-gaitbase-gar.toml"
MODELS_MD = Path(__file__).resolve().parents[1] / "docs" / "models.md"
# name in the table -> (short name for --variants and run folders, ratio attention, distillation)
VARIANTS = {
    "backbone": ("backbone", False, False),
    "+ ratio attention": ("ratio", True, False),
    "+ distillation": ("distill", False, True),
    "GAR (both)": ("gar", True, True),
}


def train_variant(data: str, name: str, seed: int, runs: Path, iterations: int | None, threads: int) -> dict:
    short, ratio, distill = VARIANTS[name]
    directory = runs / f"{short}-seed{seed}"
    done = directory / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    owner = directory / "running.pid"
    if owner.is_file() and _alive(int(owner.read_text())):
        return {"variant": name, "seed": seed, "skipped": f"being trained by process {owner.read_text()}"}
    directory.mkdir(parents=True, exist_ok=True)
    owner.write_text(str(os.getpid()))
    config = load_config(CONFIG, [f'data.train="{data}"'])
    model = dataclasses.replace(config.model, ratio_attention=ratio, distillation=distill)
    optim = dataclasses.replace(
        config.optim, seed=seed, iterations=iterations or config.optim.iterations, threads=threads
    )
    config = dataclasses.replace(config, id=f"ablation-{short}-seed{seed}", model=model, optim=optim)
    # resume: a run stopped part-way (or in its final validation) continues from its last checkpoint
    result = train(config, directory, resume=True, show_progress=False)
    validation = result.validation or {}
    record = {
        "variant": name,
        "seed": seed,
        "rank1": validation.get("rank1"),
        "mAP": validation.get("mAP"),
        "tar_1e-2": (validation.get("tar_at_far") or {}).get("1e-02"),
        "iterations": optim.iterations,
        "minutes": _training_seconds(directory / "metrics.jsonl") / 60,
        "threads": threads,
    }
    done.write_text(json.dumps(record, indent=2) + "\n")
    owner.unlink(missing_ok=True)
    return record


def _training_seconds(metrics: Path) -> float:
    """Training time from the logged seconds per iteration (counts every part of a resumed run)."""
    seconds, previous = 0.0, 0
    for line in metrics.read_text().splitlines():
        entry = json.loads(line)
        if "sec_per_iter" in entry:
            seconds += entry["sec_per_iter"] * max(entry["iteration"] - previous, 0)
            previous = entry["iteration"]
    return seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def report(data: str, runs: Path) -> str:
    records = [json.loads(path.read_text()) for path in sorted(runs.glob("*/result.json"))]
    if not records:
        raise SystemExit(f"no finished runs under {runs}")
    base = {r["seed"]: r["rank1"] for r in records if r["variant"] == "backbone"}
    rows = []
    for name in VARIANTS:
        mine = sorted((r for r in records if r["variant"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        paired = [r for r in mine if r["seed"] in base]
        wins = f"{sum(r['rank1'] > base[r['seed']] for r in paired)} of {len(paired)}" if name != "backbone" else "-"
        rows.append(
            f"| {name} | {', '.join(str(r['seed']) for r in mine)} | {summary([r['rank1'] for r in mine])} | "
            f"{summary([r['tar_1e-2'] for r in mine])} | {summary([r['mAP'] for r in mine])} | {wins} | "
            f"{statistics.mean(r['minutes'] for r in mine):.1f} "
            f"({'/'.join(sorted({str(r['threads'] or 'all') for r in mine}))} thread(s)) |"
        )
    iterations = sorted({r["iterations"] for r in records})
    return (
        f"GaitBase (width 0.25, 32x22) on SynthGait `wild` ({data}), trained on 150 people and evaluated on 50 "
        "held-out people (open-set protocol: the first sequence of each person is the gallery, the others are "
        "probes; gait frames from the ground-truth labels), "
        f"{'/'.join(map(str, iterations))} iterations per run, identical data and budget per variant. "
        "Mean ± standard deviation over seeds; 'wins' counts the seeds where the variant beats the plain backbone "
        f"trained with the same seed. The table collects every finished run under `{runs}` (the grid may be "
        "trained by several processes, see the script's docstring); minutes are training time, with other "
        "jobs sharing the 2 cores.\n\n"
        "| variant | seeds | rank-1 % | TAR@FAR=1e-2 % | mAP % | wins over backbone | minutes per run |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    shorts = [short for short, _, _ in VARIANTS.values()]
    parser.add_argument("--variants", nargs="+", default=shorts, choices=shorts)
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: all cores)")
    parser.add_argument("--report-only", action="store_true", help="write the table from the finished runs")
    args = parser.parse_args()
    if not args.report_only:
        for seed in args.seeds:
            for name, (short, _, _) in VARIANTS.items():
                if short in args.variants:
                    record = train_variant(args.data, name, seed, args.runs, args.iterations, args.threads)
                    print(json.dumps(record), flush=True)
    body = report(args.data, args.runs)
    print(body)
    update_section("ablation", "GAR ablation on SynthGait", body, document=MODELS_MD)


if __name__ == "__main__":
    main()
