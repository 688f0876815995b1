"""SynthGait throughput: rendered-and-pretreated frames per second, one process and all cores, with and
without writing the dataset.

    python -m bench.bench_synth [--subjects 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

from bench.report import update_section
from gader.data.synth.generator import plan_dataset
from gader.data.synth.make import generate, make_dataset


def rate(specs, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    frames = sum(int(record.meta["rendered_frames"]) for record in generate(specs, workers))
    return frames / (time.perf_counter() - start), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4, help="casia people (110 sequences each)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    casia = plan_dataset(args.subjects, seed=0, preset="casia")
    wild = plan_dataset(args.subjects, seed=0, preset="wild")
    rows = []
    for label, specs, workers in (
        ("casia 320x240, 1 process", casia[: len(casia) // 4], 1),
        (f"casia 320x240, {cores} processes", casia, cores),
        (f"wild 480x360, {cores} processes", wild, cores),
        (f"wild at 320x240, {cores} processes", [replace(s, frame_size=(320, 240)) for s in wild], cores),
    ):
        fps, frames = rate(specs, workers)
        rows.append(f"| {label} | {len(specs)} | {frames:,} | {fps:,.0f} |")
        print(rows[-1])
    with tempfile.TemporaryDirectory() as directory:
        report = make_dataset(directory, casia, workers=cores, progress=False)
    rows.append(
        f"| casia 320x240, {cores} processes, written to disk (`gader synth make`) | {report.sequences} | "
        f"{report.frames:,} | {report.frames_per_second:,.0f} |"
    )
    print(rows[-1])
    body = (
        "Render (kinematics, rasterising, colour, segmentation noise) + pretreatment (aligned silhouettes, "
        "ratios, RGB crops) per frame. Target: at least 500 frames/s for 320x240 frames on this machine.\n\n"
        "| workload | sequences | frames | frames/s |\n|---|---|---|---|\n" + "\n".join(rows)
    )
    update_section("synthgait", "SynthGait rendering", body)


if __name__ == "__main__":
    main()
