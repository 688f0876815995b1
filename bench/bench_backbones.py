"""Inference throughput of every backbone and size on this CPU: sequences/s, frames/s, FLOPs per frame and
the share of the machine's measured matmul speed that the model achieves.

    python -m bench.bench_backbones [--threads 2] [--frames 30] [--batch 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.report import update_section
from gader.backbones import create_model, parameter_count

SIZES = (
    ("full", {"width": 1.0, "input_height": 64, "input_width": 44}),
    ("cpu", {"width": 0.25, "input_height": 32, "input_width": 22}),
    ("cpu-gaitset/part", {"width": 0.5, "input_height": 32, "input_width": 22}),
)


def matmul_gflops(seconds: float = 2.0) -> float:
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * 1024**3 * runs / (time.perf_counter() - start) / 1e9


def best_time(model: torch.nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    with torch.no_grad():
        model(x)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    rows = []
    for name in ("gaitset", "gaitpart", "gaitgl", "gaitbase"):
        for size, settings in SIZES:
            if size.startswith("cpu-") and name not in ("gaitset", "gaitpart"):
                continue
            model = create_model(name, **settings).eval()
            x = torch.rand(args.batch, 1, args.frames, settings["input_height"], settings["input_width"])
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(x[:1])
            flops_per_frame = counter.get_total_flops() / args.frames
            seconds = best_time(model, x)
            frames_per_second = args.batch * args.frames / seconds
            achieved = flops_per_frame * frames_per_second / 1e9
            label = size.split("-")[0]
            rows.append(
                f"| {name} | {label} (w{settings['width']:g}, {settings['input_height']}x{settings['input_width']}) | "
                f"{parameter_count(model) / 1e6:.2f} M | {flops_per_frame / 1e6:,.1f} | "
                f"{args.batch / seconds:,.1f} | {frames_per_second:,.0f} | "
                f"{achieved:,.1f} ({100 * achieved / peak:.0f} %) |"
            )
            print(rows[-1], flush=True)
    body = (
        f"Inference (no gradients), batches of {args.batch} sequences x {args.frames} frames, {args.threads} threads. "
        f"FLOPs counted by torch.utils.flop_counter (convolutions and matrix products). Matmul reference on this "
        f"machine: {peak:.0f} GFLOP/s (1024x1024 float32, same threads).\n\n"
        "| backbone | size | parameters | MFLOP / frame | sequences/s | frames/s "
        "| achieved GFLOP/s (share of matmul) |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    update_section("backbones", "Backbone inference throughput (CPU)", body)


if __name__ == "__main__":
    main()
