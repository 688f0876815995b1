"""Generating SynthGait datasets: many sequences rendered in parallel, written in a fixed order."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gader.data.native import DatasetWriter
from gader.data.record import SequenceRecord
from gader.data.synth.generator import PRESETS, SequenceSpec, render_sequence
from gader.progress import progress as progress_bar


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only contend


@dataclass
class MakeReport:
    sequences: int
    frames: int  # rendered frames
    aligned_frames: int  # frames that survived pretreatment
    seconds: float
    empty: list[str] = field(default_factory=list)  # keys not written: pretreatment rejected every frame

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def generate(specs: list[SequenceSpec], workers: int | None = None) -> Iterable[SequenceRecord]:
    """Records in the order of ``specs``, rendered by ``workers`` processes (1: in this process)."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(specs) <= 1:
        _init_worker()
        yield from map(render_sequence, specs)
        return
    # spawn, not fork: the parent may hold threads (torch, OpenCV) that a forked child must not inherit.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        yield from pool.map(render_sequence, specs, chunksize=max(1, min(8, len(specs) // (4 * workers))))


def make_dataset(
    out: str | Path,
    specs: list[SequenceSpec],
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> MakeReport:
    """Render ``specs`` into a gader dataset at ``out`` (created, or extended / regenerated in place)."""
    presets = sorted({spec.preset for spec in specs})
    description = "SynthGait " + ", ".join(f"{name}: {PRESETS[name].description}" for name in presets)
    start = time.perf_counter()
    frames = aligned = 0
    empty: list[str] = []
    with DatasetWriter(out, description=description, overwrite=overwrite) as writer:
        bar = progress_bar(total=len(specs), enabled=progress, desc="rendering", unit="seq")
        for record in generate(specs, workers):
            frames += int(record.meta["rendered_frames"])
            # A far or fully occluded person can lose every frame in pretreatment (too few pixels); an empty
            # sequence is not data, so it is reported and not written.
            if record.frames == 0:
                empty.append(record.key)
            else:
                writer.write(record)
                aligned += record.frames
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - start):.0f}")
        bar.close()
    return MakeReport(len(specs) - len(empty), frames, aligned, time.perf_counter() - start, empty)
