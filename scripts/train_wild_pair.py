"""Train the SynthGait `wild` recogniser pair (plain GaitBase and GAR, the shipped CPU size) side by side on one
machine, for as many iterations as a time budget allows: the run a lent GPU makes of the ablation's configs.

    python scripts/train_wild_pair.py --data data/synth-wild --out runs/wild-pair [--render 200]
                                      [--iterations N | --budget-minutes M] [--threads T]

1. ``--render S`` renders the training data first if ``--data`` holds none (``gader synth make --subjects S
   --preset wild --seed 0``, every core).
2. Without ``--iterations``, a probe trains both models 60 iterations side by side and times their last 40;
   the iteration count is then the budget over the slower model's time per iteration, rounded down to a
   multiple of 500, the same for both (the comparison is one budget).
3. Both configs train side by side (``configs/gar/synth-wild-gaitbase-{plain,gar}.toml``, learning rate x0.1
   at three quarters of the iterations), each validated at the end on the 50 held-out people.

It calls the library, not the ``gader`` CLI, so it runs under any Python that has torch, numpy, OpenCV,
safetensors and tqdm (a GPU machine's own environment, without the service's packages). The run directories
are ``<out>/synth-wild-plain`` and ``<out>/synth-wild-gar``, each with its ``model/``, ``metrics.jsonl``,
``config.json`` and ``train.log``; ``<out>/pair.json`` records the command's choices and timings.

The shipped ``synth-wild-plain`` and ``synth-wild-gar`` come from ``--render 200 --iterations 6000 --threads 8``
on one NVIDIA H200 (docs/models.md has the times and scores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {
    "synth-wild-plain": REPO / "configs" / "gar" / "synth-wild-gaitbase-plain.toml",
    "synth-wild-gar": REPO / "configs" / "gar" / "synth-wild-gaitbase-gar.toml",
}
PROBE_ITERATIONS = 60
PROBE_TIMED_FROM = 20  # the first iterations warm up kernels and caches


def render(data: Path, subjects: int) -> float:
    from gader.data.synth.generator import plan_dataset
    from gader.data.synth.make import make_dataset

    started = time.perf_counter()
    report = make_dataset(data, plan_dataset(subjects, 0, "wild", 0, None), workers=os.cpu_count())
    print(f"rendered {report.sequences} sequences ({report.frames:,} frames) in {report.seconds:.0f} s", flush=True)
    return time.perf_counter() - started


def overrides(data: Path, iterations: int, threads: int) -> list[str]:
    return [
        f"data.train={json.dumps(str(data))}",
        f"optim.iterations={iterations}",
        f"optim.milestones=[{iterations * 3 // 4}]",
        f"optim.threads={threads}",
        f"optim.checkpoint_every={max(iterations, 1)}",
    ]


def train_one(name: str, data: str, run_dir: str, iterations: int, threads: int) -> None:
    """One training run in its own process; its output goes to <run_dir>/train.log."""
    from gader.training.config import load_config
    from gader.training.trainer import train

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "train.log", "w", buffering=1) as log:
        sys.stdout = sys.stderr = log  # this process is the run's alone
        try:
            settings = load_config(CONFIGS[name], overrides(Path(data), iterations, threads))
            result = train(settings, run_dir, show_progress=False)
        except BaseException:
            traceback.print_exc(file=log)  # before the log closes; the parent prints its end
            raise SystemExit(1) from None
        print(f"trained {result.iterations} iterations in {result.seconds:.0f} s", file=log)


def side_by_side(data: Path, out: Path, iterations: int, threads: int) -> float:
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    started = time.perf_counter()
    jobs = [
        context.Process(target=train_one, args=(name, str(data), str(out / name), iterations, threads))
        for name in CONFIGS
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    failed = [name for name, job in zip(CONFIGS, jobs, strict=True) if job.exitcode != 0]
    if failed:
        for name in failed:
            log = out / name / "train.log"
            print(f"--- {name} failed; the end of {log}:", flush=True)
            print("\n".join(log.read_text().splitlines()[-30:]) if log.is_file() else "(no log)", flush=True)
        raise SystemExit(f"training failed: {', '.join(failed)}")
    return time.perf_counter() - started


def seconds_per_iteration(run_dir: Path) -> float:
    """Mean time per iteration over the probe's logged windows after PROBE_TIMED_FROM."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [row["sec_per_iter"] for row in rows if "sec_per_iter" in row and row["iteration"] > PROBE_TIMED_FROM]
    return sum(timed) / len(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="SynthGait wild training data (gader format)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two run directories")
    parser.add_argument(
        "--render", type=int, default=0, metavar="SUBJECTS", help="render this many people into --data if it is empty"
    )
    parser.add_argument("--iterations", type=int, help="iterations for both (default: from the probe and the budget)")
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="training time to fill without --iterations")
    parser.add_argument(
        "--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="torch threads per training process"
    )
    args = parser.parse_args()
    record: dict = {"command": " ".join(sys.argv), "cpus": os.cpu_count()}
    try:
        import torch

        record["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        record["torch"] = torch.__version__
    except ImportError:
        raise SystemExit("torch is not installed") from None
    if not (args.data / "index.jsonl").is_file():
        if not args.render:
            raise SystemExit(f"{args.data} holds no dataset; pass --render SUBJECTS to render one")
        record["render_seconds"] = round(render(args.data, args.render), 1)
    iterations = args.iterations
    if iterations is None:
        probe = args.out / "probe"
        record["probe_seconds"] = round(side_by_side(args.data, probe, PROBE_ITERATIONS, args.threads), 1)
        rates = {name: seconds_per_iteration(probe / name) for name in CONFIGS}
        record["probe_seconds_per_iteration"] = {name: round(rate, 4) for name, rate in rates.items()}
        iterations = max(500, int(args.budget_minutes * 60 / max(rates.values())) // 500 * 500)
        print(f"probe: {rates} s/it side by side -> {iterations} iterations", flush=True)
    record["iterations"] = iterations
    record["train_seconds"] = round(side_by_side(args.data, args.out, iterations, args.threads), 1)
    for name in CONFIGS:
        rows = [json.loads(line) for line in (args.out / name / "metrics.jsonl").read_text().splitlines()]
        record[name] = next((row["validation"] for row in reversed(rows) if "validation" in row), None)
    (args.out / "pair.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2), flush=True)


if __name__ == "__main__":
    main()
