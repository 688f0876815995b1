"""Pretreatment throughput: full-frame masks (+ RGB) to aligned silhouettes, frames per second.

Real CASIA-B silhouettes (from ../shared/data when present, random person-like blobs otherwise) are scaled
and pasted into full frames of two sizes; the vectorised ``gader.silhouettes.pretreat`` is timed side by
side with a literal transcription of OpenGait's per-frame loop on the same frames.

    python -m bench.bench_pretreatment [--frames 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from bench.report import update_section
from gader.silhouettes import pretreat
from tests.opengait_reference import opengait_pretreat

SHARED = Path(os.environ.get("GADER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def source_silhouettes(count: int) -> tuple[np.ndarray, str]:
    casia = SHARED / "casia-b" / "train"
    if casia.exists():
        from gader.data import open_dataset

        dataset = open_dataset(casia).subset(subjects=["001", "002"], conditions=["nm-01", "bg-01", "cl-01"])
        frames = np.concatenate([record.silhouettes for record in dataset])[:count]
        return frames, "real CASIA-B silhouettes (subjects 001-002)"
    rng = np.random.default_rng(0)
    frames = np.zeros((count, 64, 64), np.uint8)
    for frame in frames:
        cv2.ellipse(frame, (32 + int(rng.integers(-4, 5)), 32), (10, 31), 0, 0, 360, 255, -1)
    return frames, "synthetic ellipses (shared data absent)"


def make_frames(silhouettes: np.ndarray, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(silhouettes), height, width), np.uint8)
    rgb = rng.integers(0, 255, (len(silhouettes), height, width, 3), dtype=np.uint8)
    for frame, silhouette in zip(masks, silhouettes, strict=True):
        size = int(rng.integers(height // 3, int(height * 0.9)))
        big = cv2.resize(silhouette, (size, size), interpolation=cv2.INTER_LINEAR)
        y, x = int(rng.integers(0, height - size)), int(rng.integers(0, width - size))
        frame[y : y + size, x : x + size] = (big > 127) * 255
    return masks, rgb


def best_rate(function, frames: int, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return frames / min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    silhouettes, origin = source_silhouettes(args.frames)
    rows = []
    for height, width in ((240, 320), (720, 1280)):
        masks, rgb = make_frames(silhouettes, height, width)
        vectorised = best_rate(lambda masks=masks: pretreat(masks), len(masks), args.repeats)
        with_rgb = best_rate(lambda masks=masks, rgb=rgb: pretreat(masks, rgb), len(masks), args.repeats)
        loop = best_rate(lambda masks=masks: opengait_pretreat(list(masks)), len(masks), args.repeats)
        rates = f"{vectorised:,.0f} | {with_rgb:,.0f} | {loop:,.0f} | {vectorised / loop:.2f}x"
        rows.append(f"| {width}x{height} | {rates} |")
        print(rows[-1])
    body = (
        f"{len(silhouettes)} frames of {origin}, pasted at random sizes (1/3 to 9/10 of the frame height) "
        f"and places; best of {args.repeats} runs; OpenCV threads: {cv2.getNumThreads()}.\n\n"
        "| frame size | `pretreat` masks (frames/s) | `pretreat` masks + RGB (frames/s) "
        "| OpenGait loop, masks (frames/s) | speed-up |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
    update_section("pretreatment", "Pretreatment (masks to aligned silhouettes)", body)


if __name__ == "__main__":
    main()
