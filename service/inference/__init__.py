"""Inference backends: where the detector and GAR run. One interface, chosen by GADER_INFERENCE."""

from __future__ import annotations

from typing import Any, Protocol

from gader.data.record import SequenceRecord
from gader.detector import DetectionReport
from gader.pipeline import PipelineResult


class InferenceBackend(Protocol):
    model_id: str
    model_card: dict[str, Any]
    detector_id: str

    async def process(self, record: SequenceRecord) -> PipelineResult:
        """Detect, route and embed one sequence."""

    async def detect(self, record: SequenceRecord) -> DetectionReport: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


def create_backend(settings) -> InferenceBackend:
    if settings.inference == "local":
        from service.inference.local import LocalBackend

        return LocalBackend(settings)
    from service.inference.triton import TritonBackend

    return TritonBackend(settings)
