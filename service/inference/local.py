"""In-process inference: the GADER pipeline in a small thread pool, so the event loop never waits on torch."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from gader.data.record import SequenceRecord
from gader.detector import DetectionReport
from gader.pipeline import GaderPipeline, PipelineConfig, PipelineResult


class LocalBackend:
    def __init__(self, settings) -> None:
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        threads = max(1, settings.inference_threads)
        if device == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // threads))
        self.pipeline = GaderPipeline.load(settings.model, settings.detector, PipelineConfig(min_frames=3), device)
        self.model_id = self.pipeline.model_id
        self.model_card = dataclasses.asdict(self.pipeline.model.card)
        self.detector_id = str(settings.detector)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gader-infer")

    async def process(self, record: SequenceRecord) -> PipelineResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.pipeline.process, record)

    async def detect(self, record: SequenceRecord) -> DetectionReport:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.pipeline.detect, record)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
