"""Detector cost against GAR cost on the same sequences: the gait detector's time per sequence (DHS,
one feature pass, every window, NMS, merge, labels) as a share of the GAR embedding time, for the shipped
CPU-sized GAR and for the full-size GaitBase GAR the paper runs (same architecture as OpenGait's CASIA-B
GaitBase, 64x44 input; random weights: the cost does not depend on them).

    python -m bench.bench_detector [--model casia-b-default] [--detector gader-detector] [--sequences 40]
                                   [--print-only]

It also counts the network's arithmetic (torch.utils.flop_counter) and the rate it runs at against a
1024x1024 matmul on the same threads: whether the detector's time is arithmetic or per-call overhead. And it
times each convolution layer alone on a median-length sequence and on a quarter of its columns: whether a
network with less arithmetic per sequence (fewer feature columns) would take proportionally less time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.bench_backbones import matmul_gflops
from bench.report import update_section
from gader.data import open_dataset
from gader.detector import dhs_of, halve_width, report_from_windows, window_positions
from gader.gar import GAR, GARConfig
from gader.model_io import LoadedModel, ModelCard, load_detector, load_model
from gader.pipeline import GaderPipeline, PipelineConfig

CASIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "casia-b" / "train"


def timed(function, repeats: int) -> float:
    """Best of ``repeats`` calls, in milliseconds (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def layer_rates(detector, dhs, repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Each convolution of the inference network, alone, on the feature columns it gets for a DHS [C, W, T]
    and for its first T // 4 columns -> (layer, ms and GFLOP/s at T, ms and GFLOP/s at T // 4)."""
    network = detector.inference_network
    full, quarter = dhs.shape[-1], dhs.shape[-1] // 4
    timings: dict[int, list[tuple[float, float]]] = {}  # columns -> (ms, GFLOP/s) per layer
    names = []
    with torch.no_grad():
        for columns in (full, quarter):
            x = torch.from_numpy(dhs[..., :columns].copy())[None]  # [1, C, W, t]
            timings[columns] = []
            for index, conv in enumerate(network.convs):
                milliseconds = timed(lambda c=conv, v=x: c(v), repeats * 5)
                y = torch.relu(conv(x))  # [1, C', W, t]
                flops = 2 * conv.weight.numel() * y.shape[2] * y.shape[3]
                timings[columns].append((milliseconds, flops / milliseconds / 1e6))
                if columns == full:
                    names.append(f"{index + 1}: {x.shape[1]} -> {conv.out_channels} channels, width {x.shape[2]}")
                x = halve_width(y) if index in network.pool_after else y
    return [(name, *timings[full][i], *timings[quarter][i]) for i, name in enumerate(names)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="casia-b-default")
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--print-only", action="store_true", help="print the table, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = load_detector(args.detector)[0]
    shipped = GaderPipeline(load_model(args.model), None, PipelineConfig(use_detector=False))
    full_config = GARConfig("gaitbase", {"num_classes": 74})  # OpenGait's CASIA-B GaitBase: w1.0, 64x44
    full_gar = GAR(full_config).eval()
    full = GaderPipeline(
        LoadedModel(ModelCard(id="gaitbase-full", gar={}), full_gar.embedder(), None, Path(".")),
        None,
        PipelineConfig(use_detector=False),
    )
    dataset = open_dataset(CASIA)
    keys = [info.key for info in dataset.infos if info.condition == "nm-05"][: args.sequences]
    rows = []
    for key in keys:
        record = dataset.load(key)
        detector.detect(record.silhouettes)  # warm up
        detect_ms = timed(lambda r=record: detector.detect(r.silhouettes), args.repeats)
        # The detector's stages, each timed alone (their sum is close to the whole, less Python glue).
        dhs = dhs_of(record.silhouettes, detector.config)
        positions = window_positions(record.frames, detector.config)
        probabilities = detector.window_probabilities(dhs, positions)
        stages = (
            timed(lambda r=record: dhs_of(r.silhouettes, detector.config), args.repeats),
            timed(lambda d=dhs, w=positions: detector.window_probabilities(d, w), args.repeats),
            timed(
                lambda t=record.frames, w=positions, p=probabilities: report_from_windows(t, w, p, detector.config),
                args.repeats,
            ),
        )
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            detector.window_probabilities(dhs, positions)
        network_gflop = counter.get_total_flops() / 1e9
        shipped_ms = timed(lambda r=record: shipped.embed_frames(r), args.repeats)
        full_ms = timed(lambda r=record: full.embed_frames(r), 1)
        rows.append((record.frames, detect_ms, shipped_ms, full_ms, *stages, network_gflop))
        print(
            f"{key}: {record.frames} frames, detector {detect_ms:.1f} ms, shipped GAR {shipped_ms:.1f} ms, "
            f"full-size GAR {full_ms:.0f} ms",
            flush=True,
        )
    frames = statistics.median(r[0] for r in rows)
    median_record = min((dataset.load(key) for key in keys), key=lambda record: abs(record.frames - frames))
    median_dhs = dhs_of(median_record.silhouettes, detector.config)
    layers = layer_rates(detector, median_dhs, args.repeats)
    detect = statistics.median(r[1] for r in rows)
    shipped_share = statistics.median(100 * r[1] / r[2] for r in rows)
    full_share = statistics.median(100 * r[1] / r[3] for r in rows)
    network_mflop = 1e3 * statistics.median(r[7] for r in rows)
    network_rate = statistics.median(r[7] / (r[5] / 1e3) for r in rows)  # GFLOP/s, per sequence
    peak = matmul_gflops()
    shipped_ms = statistics.median(r[2] for r in rows)
    body = "\n".join(
        [
            f"{len(rows)} CASIA-B sequences (nm-05, all views; median {frames:.0f} frames), {args.threads} threads, "
            f"best of {args.repeats} per sequence. Medians over sequences.",
            "",
            "| | ms per sequence | detector share |",
            "|---|---:|---:|",
            f"| detector `{args.detector}` (DHS, all windows, NMS, merge) | {detect:.2f} | |",
            f"| - DHS rows from the silhouettes | {statistics.median(r[4] for r in rows):.2f} | |",
            f"| - network: shared features, window pooling, MLP ({len(window_positions(int(frames), detector.config))} "
            f"windows at {frames:.0f} frames) | {statistics.median(r[5] for r in rows):.2f} | |",
            f"| - NMS, merge, frame labels | {statistics.median(r[6] for r in rows):.2f} | |",
            f"| shipped GAR `{args.model}` embedding | {shipped_ms:.1f} | {shipped_share:.1f}% |",
            f"| full-size GaitBase GAR (64x44, OpenGait's CASIA-B size) embedding | "
            f"{statistics.median(r[3] for r in rows):.0f} | {full_share:.2f}% |",
            "",
            f"The network's arithmetic: {network_mflop:.0f} MFLOP per sequence (median; convolutions and matrix "
            f"products, counted by torch.utils.flop_counter), run at {network_rate:.0f} GFLOP/s against "
            f"{peak:.0f} GFLOP/s for a 1024x1024 float32 matmul on the same threads. 2 % of the shipped GAR's "
            f"median time is {shipped_ms * 0.02:.2f} ms.",
            "",
            f"Each convolution alone (best of {args.repeats * 5}), on the {median_dhs.shape[-1]}-frame sequence "
            f"nearest the median and on a quarter of its columns ({median_dhs.shape[-1] // 4}): a network with a "
            "quarter of the columns does a quarter of the arithmetic, but small convolutions run at a lower rate.",
            "",
            f"| layer | ms, {median_dhs.shape[-1]} columns | GFLOP/s | ms, {median_dhs.shape[-1] // 4} columns | "
            "GFLOP/s |",
            "|---|---:|---:|---:|---:|",
            *(f"| {name} | {a:.3f} | {ra:.0f} | {b:.3f} | {rb:.0f} |" for name, a, ra, b, rb in layers),
            f"| all five | {sum(r[1] for r in layers):.3f} | | {sum(r[3] for r in layers):.3f} | |",
        ]
    )
    print(body)
    if not args.print_only:
        update_section("detector-cost", "Gait detector cost against GAR", body)


if __name__ == "__main__":
    main()
