"""Inference on NVIDIA Triton (``GADER_INFERENCE=triton://host:8001``): tritonclient's asyncio gRPC client.

The networks run in Triton (``model_repository/``: ``gait_detector`` and ``gar_<model id>``, written by
``gader export``); everything around them (the DHS, windows, NMS and merging, routing gait frames, resizing)
runs here with the same ``gader`` code as in-process inference, so both give the same answers.

Every call has a timeout and is retried on UNAVAILABLE with a short backoff; while Triton is down the
service answers 503 with ``Retry-After``, and recovers by itself when Triton is back (the gRPC channel
reconnects; nothing is cached across the outage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from gader.data.record import SequenceRecord
from gader.detector import DetectionReport, dhs_of, report_from_windows, window_positions
from gader.embedding import prepare
from gader.export import triton_name
from gader.model_io import load_detector, load_model
from gader.pipeline import PipelineConfig, PipelineResult, route
from service.errors import Unavailable

RETRY_AFTER_SECONDS = 5


class TritonBackend:
    def __init__(self, settings, timeout: float = 30.0, attempts: int = 3) -> None:
        self.url = settings.inference.removeprefix("triton://")
        # The cards (ids, sizes, operating points, detector settings) are read locally; the weights run in Triton.
        model = load_model(settings.model)
        self.model_card = dataclasses.asdict(model.card)
        self.model_id = model.id
        self.input_size = model.embedder.input_size
        self.uses_ratios = model.embedder.ratio is not None
        self.detector_config = load_detector(settings.detector)[0].config
        self.detector_id = str(settings.detector)
        self.gar_name = triton_name(model.id)
        self.config = PipelineConfig(min_frames=3)
        self.timeout = timeout
        self.attempts = attempts
        self._client: triton.InferenceServerClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> triton.InferenceServerClient:
        """The asyncio client, created in (and bound to) the running event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = triton.InferenceServerClient(self.url), loop
        return self._client

    async def _infer(self, model: str, inputs: list[InferInput], output: str) -> np.ndarray:
        for attempt in range(self.attempts):
            try:
                result = await self.client.infer(
                    model, inputs, outputs=[InferRequestedOutput(output)], client_timeout=self.timeout
                )
                return result.as_numpy(output)
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                retryable = "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status
                if not retryable or attempt == self.attempts - 1:
                    raise Unavailable(
                        f"Triton at {self.url} failed on {model}: {exc.message()}", retry_after=RETRY_AFTER_SECONDS
                    ) from None
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def detect(self, record: SequenceRecord) -> DetectionReport:
        dhs = dhs_of(record.silhouettes, self.detector_config, record.ratios)  # [C, W, T]
        positions = window_positions(int(dhs.shape[-1]), self.detector_config)
        signature = InferInput("DHS", [1, *dhs.shape], "FP32")
        signature.set_data_from_numpy(dhs[None].astype(np.float32))
        windows = InferInput("WINDOWS", [1, len(positions), 2], "INT32")
        windows.set_data_from_numpy(np.asarray(positions, np.int32)[None])
        probabilities = (await self._infer("gait_detector", [signature, windows], "PROBABILITIES"))[0]
        return report_from_windows(int(dhs.shape[-1]), positions, probabilities, self.detector_config)

    async def embed_frames(self, record: SequenceRecord) -> np.ndarray:
        item = prepare(record, *self.input_size, max_frames=self.config.max_frames)
        silhouettes = (item.silhouettes.astype(np.float32) / 255.0)[None]  # [1, T, h, w]
        inputs = [InferInput("SILHOUETTES", list(silhouettes.shape), "FP32")]
        inputs[0].set_data_from_numpy(silhouettes)
        if self.uses_ratios and item.ratios is not None:
            ratios = InferInput("RATIOS", [1, item.frames], "FP32")
            ratios.set_data_from_numpy(item.ratios[None].astype(np.float32))
            inputs.append(ratios)
        return (await self._infer(self.gar_name, inputs, "EMBEDDING"))[0]

    async def process(self, record: SequenceRecord) -> PipelineResult:
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        detection = await self.detect(record)
        timings["detector"] = 1000 * (time.perf_counter() - clock)
        gait, usable = route(record.frames, detection, self.config)
        clock = time.perf_counter()
        embedding = await self.embed_frames(record.select(gait)) if usable else None
        timings["embedding"] = 1000 * (time.perf_counter() - clock)
        # The RGB branch is not exported to Triton: appearance matching needs in-process inference.
        return PipelineResult(detection, embedding, None, int(gait.sum()) if usable else 0, 0, self.model_id, timings)

    async def ready(self) -> bool:
        try:
            if not await self.client.is_server_ready(client_timeout=2):
                return False
            for name in ("gait_detector", self.gar_name):
                if not await self.client.is_model_ready(name, client_timeout=2):
                    return False
            return True
        except (TimeoutError, InferenceServerException, OSError):
            return False

    async def statistics(self) -> dict[str, Any]:
        stats = await self.client.get_inference_statistics(as_json=True)
        return {
            s["name"]: {
                "inference_count": int(s.get("inference_count", 0)),
                "execution_count": int(s.get("execution_count", 0)),
            }
            for s in stats.get("model_stats", [])
        }

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
