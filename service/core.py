"""The use cases: enroll, identify, verify, detect, embed, and the gallery bookkeeping around them.

REST (``service.api``) and gRPC (``service.grpc_server``) both call this class and nothing else, so every
rule (scopes, tenancy, limits, thresholds, the order of operations, the audit trail) exists once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gader.data.record import SequenceRecord
from gader.detector import DetectionReport
from gader.errors import GaderError
from gader.pipeline import PipelineResult
from gader.sequence_input import InputLimits, read_sequence_bytes
from service.errors import (
    InvalidInput,
    NotFound,
    NothingToCompare,
    PayloadTooLarge,
    PermissionDenied,
    ServiceError,
    Unprocessable,
)
from service.gallery.index import flatten_embedding, similarity
from service.gallery.manager import GalleryManager
from service.gallery.records import (
    Gallery,
    Subject,
    Template,
    check_gallery_name,
    check_subject_id,
    new_template_id,
    now,
)
from service.gallery.store import Store
from service.inference import InferenceBackend
from service.observability import Metrics
from service.security import KeyRing, Principal
from service.settings import Settings

MAX_METADATA_BYTES = 16 * 1024


@dataclass
class Timings:
    values: dict[str, float] = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter)
    _mark: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        current = time.perf_counter()
        self.values[name] = round(1000 * (current - self._mark), 3)
        self._mark = current

    def total(self) -> dict[str, float]:
        self.values["total"] = round(1000 * (time.perf_counter() - self._start), 3)
        return self.values


@dataclass
class Candidate:
    subject_id: str
    score: float
    template_id: str


@dataclass
class IdentifyResult:
    candidates: list[Candidate]
    decision: str  # match | no_match
    operating_point: str
    threshold: float
    detection: dict[str, Any] | None
    model: str
    timings_ms: dict[str, float]
    source: dict[str, Any]


@dataclass
class VerifyResult:
    score: float
    match: bool
    threshold: float
    operating_point: str
    detection: dict[str, Any] | None
    model: str
    template_id: str
    timings_ms: dict[str, float]
    source: dict[str, Any]


@dataclass
class CompareResult:
    """1:1 between two uploaded sequences, nothing stored: per-side lists are [first, second]."""

    score: float
    match: bool
    threshold: float
    operating_point: str
    detections: list[dict[str, Any] | None]
    model: str
    timings_ms: dict[str, float]
    sources: list[dict[str, Any]]


@dataclass
class Probe:
    """One uploaded sequence of a request that takes two."""

    data: bytes
    filename: str
    track_id: int | None = None


COMPARED_SIDES = ("first", "second")
# Errors about one upload of a compare, said with the side they concern (others concern the request or service)
SIDE_ERRORS = (InvalidInput, PayloadTooLarge, Unprocessable)


@dataclass
class EnrollResult:
    template_id: str
    subject_id: str
    model: str
    detection: dict[str, Any] | None
    quality: dict[str, Any]
    source: dict[str, Any]


def source_of(record: SequenceRecord) -> dict[str, Any]:
    """What the probe was (set by gader.sequence_input from what it decoded): a video's tracks and the one
    used, or the kind of array upload."""
    return {"track_id": None, "tracks": [], **record.meta["source"]}


def _metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object")
    try:
        # allow_nan=False: NaN and infinities are not JSON; stored, they would come back as null over REST
        # and as a bare NaN (which JSON parsers refuse) in gRPC's metadata_json.
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except ValueError:
        raise InvalidInput("metadata must be plain JSON: NaN and infinite numbers are not allowed") from None
    except RecursionError:
        raise InvalidInput("metadata is nested too deeply") from None
    try:
        # A lone UTF-16 surrogate ("\ud83d", half of an emoji) parses from JSON escapes but is not Unicode text:
        # stored, it would make every later listing fail to encode its answer.
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode()
        raise InvalidInput(f"metadata must be valid Unicode text: a lone surrogate {bad} is not") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return metadata


def encode_cursor(subject_id: str) -> str:
    return base64.urlsafe_b64encode(subject_id.encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor is not one this service issued") from None


class MatchingCore:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        keys: KeyRing,
        galleries: GalleryManager,
        inference: InferenceBackend,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.galleries = galleries
        self.inference = inference
        self.metrics = metrics
        # Uploads are parsed (videos decoded, segmented, tracked) by a few threads: a bound on the memory that
        # concurrent videos can take, and the event loop never waits on them.
        self._decoder = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="gader-decode")
        self.limits = InputLimits(
            settings.max_frames,
            settings.max_frame_pixels,
            settings.min_frames,
            video_seconds=settings.video_seconds,
            video_fps=settings.video_fps,
            segmenter=settings.segmenter,
        )

    # --- who -------------------------------------------------------------------------------------

    def authenticate(self, key: str | None) -> Principal:
        return self.keys.authenticate(key)

    def _gallery(self, principal: Principal, name: str) -> Gallery:
        principal.gallery(name)  # other tenants' galleries do not exist for this key
        gallery = self.store.get_gallery(name)
        if gallery is None:
            raise NotFound(f"no gallery {name!r}")
        return gallery

    def _audit(self, principal: Principal, action: str, **fields: Any) -> None:
        self.store.audit(
            {"time": now(), "key": principal.key_id, "action": action, "model": self.inference.model_id, **fields}
        )

    # --- galleries and subjects --------------------------------------------------------------------

    def create_gallery(self, principal: Principal, name: str, metadata: dict[str, Any] | None) -> Gallery:
        principal.require("enroll")
        check_gallery_name(name)
        if not principal.may_use(name):
            raise PermissionDenied(f"this API key may only create galleries named {sorted(principal.galleries or [])}")
        gallery = self.store.create_gallery(name, _metadata(metadata), principal.key_id)
        self.galleries.index(name)
        self._audit(principal, "create_gallery", gallery=name)
        return gallery

    def list_galleries(self, principal: Principal) -> list[tuple[Gallery, int]]:
        sizes = self.galleries.sizes()
        return [(g, sizes.get(g.name, 0)) for g in self.store.list_galleries() if principal.may_use(g.name)]

    def models_info(self, principal: Principal) -> dict[str, Any]:
        """The model answering, its calibrated operating points and the detector (any valid key may ask)."""
        card = self.inference.model_card
        gar = card.get("gar", {})
        model = {
            "id": card["id"],
            "version": str(card.get("version", "1")),
            "architecture": gar.get("architecture", ""),
            "embedding_shape": list(card.get("embedding_shape", [])),
            "distance": card.get("distance", "euc"),
            "ratio_attention": bool(gar.get("ratio_attention", False)),
            "operating_points": card.get("operating_points", {}),
            "description": card.get("description", ""),
        }
        return {
            "models": [model],
            "detector": self.inference.detector_id,
            "default_operating_point": self.settings.default_operating_point,
        }

    def gallery_info(self, principal: Principal, name: str) -> tuple[Gallery, int]:
        gallery = self._gallery(principal, name)
        return gallery, self.galleries.sizes().get(name, 0)

    def delete_gallery(self, principal: Principal, name: str) -> None:
        principal.require("enroll")
        self._gallery(principal, name)
        self.store.delete_gallery(name)
        self.galleries.drop(name)
        self._audit(principal, "delete_gallery", gallery=name)

    def create_subject(
        self, principal: Principal, gallery: str, subject_id: str, metadata: dict[str, Any] | None
    ) -> Subject:
        principal.require("enroll")
        self._gallery(principal, gallery)
        subject = self.store.create_subject(gallery, check_subject_id(subject_id), _metadata(metadata))
        self._audit(principal, "create_subject", gallery=gallery, subject=subject_id)
        return subject

    def get_subject(self, principal: Principal, gallery: str, subject_id: str) -> tuple[Subject, list[Template]]:
        principal.require("enroll")
        self._gallery(principal, gallery)
        subject = self.store.get_subject(gallery, subject_id)
        if subject is None:
            raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}")
        return subject, self.store.subject_templates(gallery, subject_id)

    def list_subjects(
        self, principal: Principal, gallery: str, cursor: str | None, limit: int
    ) -> tuple[list[Subject], str | None]:
        principal.require("enroll")
        self._gallery(principal, gallery)
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        subjects = self.store.list_subjects(gallery, decode_cursor(cursor), limit + 1)
        more = len(subjects) > limit
        subjects = subjects[:limit]
        return subjects, encode_cursor(subjects[-1].subject_id) if more else None

    def delete_subject(self, principal: Principal, gallery: str, subject_id: str) -> int:
        principal.require("enroll")
        self._gallery(principal, gallery)
        removed = self.store.delete_subject(gallery, subject_id)
        self.galleries.index(gallery).remove(removed)
        self._audit(principal, "delete_subject", gallery=gallery, subject=subject_id, templates=len(removed))
        return len(removed)

    def delete_template(self, principal: Principal, gallery: str, subject_id: str, template_id: str) -> None:
        principal.require("enroll")
        self._gallery(principal, gallery)
        templates = {t.template_id for t in self.store.subject_templates(gallery, subject_id)}
        if template_id not in templates:
            raise NotFound(f"no template {template_id!r} of subject {subject_id!r} in gallery {gallery!r}")
        self.store.delete_template(gallery, template_id)
        self.galleries.index(gallery).remove([template_id])
        self._audit(principal, "delete_template", gallery=gallery, subject=subject_id, template=template_id)

    # --- sequences in ------------------------------------------------------------------------------

    def _decode_now(self, data: bytes, filename: str, track_id: int | None) -> SequenceRecord:
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"upload of {len(data):,} bytes exceeds the limit of {self.settings.max_upload_bytes:,}"
            )
        try:
            return read_sequence_bytes(data, filename or "upload", self.limits, track_id)
        except GaderError as exc:
            raise InvalidInput(str(exc)) from None

    async def _decode(self, data: bytes, filename: str, track_id: int | None = None) -> SequenceRecord:
        """Parse an upload off the event loop (a video is decoded, segmented and tracked here)."""
        if track_id is not None and track_id < 1:
            raise InvalidInput("track_id must be a positive track number from the video's track list")
        return await asyncio.get_running_loop().run_in_executor(
            self._decoder, self._decode_now, data, filename, track_id
        )

    async def _embed(
        self, data: bytes, filename: str, timings: Timings, track_id: int | None = None
    ) -> tuple[PipelineResult, np.ndarray, dict[str, Any]]:
        record = await self._decode(data, filename, track_id)
        timings.lap("decode")
        result = await self.inference.process(record)
        for name, value in result.timings_ms.items():
            timings.values[name] = round(value, 3)
        timings.lap("inference")
        self.metrics.inference_seconds.observe(timings.values["inference"] / 1000)
        if result.embedding is None:
            detection = None if result.detection is None else result.detection.to_dict()
            fraction = 0.0 if result.detection is None else result.detection.gait_fraction
            raise Unprocessable(
                f"no usable gait in the sequence (gait fraction {fraction:.2f} of {record.frames} frames)",
                details={"detection": detection, "source": source_of(record)},
            )
        return result, flatten_embedding(result.embedding), source_of(record)

    # --- enroll, identify, verify ------------------------------------------------------------------

    async def enroll(
        self,
        principal: Principal,
        gallery: str,
        subject_id: str,
        data: bytes,
        filename: str,
        track_id: int | None = None,
    ) -> EnrollResult:
        principal.require("enroll")
        self._gallery(principal, gallery)
        if self.store.get_subject(gallery, subject_id) is None:
            raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}")
        result, vector, source = await self._embed(data, filename, Timings(), track_id)
        detection = result.detection
        # gait_frames as in the detection report (inside gait segments); embedded_frames: what GAR embedded
        quality = {
            "frames": detection.frames if detection else result.embedded_frames,
            "gait_frames": int(detection.gait_mask.sum()) if detection else result.embedded_frames,
            "embedded_frames": result.embedded_frames,
            "gait_fraction": round(detection.gait_fraction, 4) if detection else 1.0,
        }
        template = Template(new_template_id(), gallery, subject_id, result.model_id, vector, now(), quality)
        self.store.add_template(template)  # durable before it is acknowledged
        self.galleries.add(template)
        self._audit(
            principal,
            "enroll",
            gallery=gallery,
            subject=subject_id,
            template=template.template_id,
            probe_sha256=hashlib.sha256(data).hexdigest(),
        )
        return EnrollResult(
            template.template_id,
            subject_id,
            result.model_id,
            None if detection is None else detection.to_dict(),
            quality,
            source,
        )

    def threshold(self, threshold: float | None, operating_point: str | None) -> tuple[float, str]:
        """(threshold, operating point name) from the request, or the service default."""
        if threshold is not None and operating_point is not None:
            raise InvalidInput("give either threshold or operating_point, not both")
        if threshold is not None:
            if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
                raise InvalidInput("threshold must be a number between 0 and 1")
            return float(threshold), "custom"
        name = operating_point or self.settings.default_operating_point
        points = self.inference.model_card.get("operating_points", {})
        if name not in points:
            available = ", ".join(sorted(points)) or "none (the model is not calibrated)"
            raise Unprocessable(
                f"unknown operating point {name!r} for model {self.inference.model_id}; "
                f"available: {available}; or give a threshold"
            )
        return float(points[name]), name

    async def identify(
        self,
        principal: Principal,
        gallery: str,
        data: bytes,
        filename: str,
        top_k: int = 5,
        threshold: float | None = None,
        operating_point: str | None = None,
        track_id: int | None = None,
    ) -> IdentifyResult:
        principal.require("identify")
        self._gallery(principal, gallery)
        if not 1 <= top_k <= self.settings.max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self.settings.max_top_k}")
        limit, point = self.threshold(threshold, operating_point)
        timings = Timings()
        result, vector, source = await self._embed(data, filename, timings, track_id)
        index = self.galleries.find(gallery)
        hits = [] if index is None else index.search_subjects(vector, top_k)
        timings.lap("search")
        self.metrics.search_seconds.observe(timings.values["search"] / 1000)
        candidates = [Candidate(h.subject_id, round(h.score, 6), h.template_id) for h in hits]
        decision = "match" if candidates and candidates[0].score >= limit else "no_match"
        timings.lap("aggregation")
        self._audit(
            principal,
            "identify",
            gallery=gallery,
            decision=decision,
            threshold=limit,
            candidates=[{"subject": c.subject_id, "score": c.score} for c in candidates[:5]],
            probe_sha256=hashlib.sha256(data).hexdigest(),
        )
        return IdentifyResult(
            candidates,
            decision,
            point,
            limit,
            None if result.detection is None else result.detection.to_dict(),
            result.model_id,
            timings.total(),
            source,
        )

    def _compared_templates(
        self, gallery: str, subject_id: str, template_id: str | None, after_embedding: bool = False
    ) -> tuple[list[str], np.ndarray]:
        """The templates a verification compares with (the subject's, or the one named) and their vectors
        [n, dim], read under the index's lock: a template, subject or gallery deleted (or a gallery reloaded)
        while the probe was embedded is not compared with, and the answer is what a request arriving after that
        change would get (404, or 409 when the subject is there without templates)."""
        during = " (deleted during the request)" if after_embedding else ""
        index = self.galleries.find(gallery)  # looked up again: a deleted gallery's index is dropped
        if index is None and after_embedding and self.store.get_gallery(gallery) is None:
            raise NotFound(f"no gallery {gallery!r}{during}")
        wanted = [] if index is None else index.subject_templates(subject_id)
        if template_id is not None:
            if template_id not in wanted:
                raise NotFound(f"no template {template_id!r} of subject {subject_id!r} (with this model){during}")
            wanted = [template_id]
        templates, stored = index.present_vectors(wanted) if index is not None else ([], None)
        if not templates:
            if after_embedding and self.store.get_subject(gallery, subject_id) is None:
                raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}{during}")
            raise NothingToCompare(
                f"subject {subject_id!r} has no template enrolled with model {self.inference.model_id}{during}"
            )
        return templates, stored

    async def verify(
        self,
        principal: Principal,
        gallery: str,
        data: bytes,
        filename: str,
        subject_id: str,
        template_id: str | None = None,
        threshold: float | None = None,
        operating_point: str | None = None,
        track_id: int | None = None,
    ) -> VerifyResult:
        principal.require("verify")
        self._gallery(principal, gallery)
        if self.store.get_subject(gallery, subject_id) is None:
            raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}")
        limit, point = self.threshold(threshold, operating_point)
        # Checked before the embedding (seconds for a long upload) so that a request that cannot be answered
        # fails fast, and again after it, against what the gallery holds then
        self._compared_templates(gallery, subject_id, template_id)
        timings = Timings()
        result, vector, source = await self._embed(data, filename, timings, track_id)
        templates, stored = self._compared_templates(gallery, subject_id, template_id, after_embedding=True)
        scores = similarity(stored @ vector)  # every template of the subject
        best = int(np.argmax(scores))
        timings.lap("search")
        score = round(float(scores[best]), 6)
        match = score >= limit
        self._audit(
            principal,
            "verify",
            gallery=gallery,
            subject=subject_id,
            template=templates[best],
            score=score,
            decision="match" if match else "no_match",
            threshold=limit,
            probe_sha256=hashlib.sha256(data).hexdigest(),
        )
        return VerifyResult(
            score,
            match,
            limit,
            point,
            None if result.detection is None else result.detection.to_dict(),
            result.model_id,
            templates[best],
            timings.total(),
            source,
        )

    async def compare(
        self,
        principal: Principal,
        first: Probe,
        second: Probe,
        threshold: float | None = None,
        operating_point: str | None = None,
    ) -> CompareResult:
        """1:1 between two uploads, without a gallery: each runs the detector and GAR as a probe does, the score
        is the same similarity verify gives, decided at the same operating points. Nothing is stored. A side
        that cannot be used fails the request with its error, named by side (``first: ...``)."""
        principal.require("verify")
        limit, point = self.threshold(threshold, operating_point)
        start = Timings()
        side_timings = {side: Timings() for side in COMPARED_SIDES}
        # Both sides at once (decoding and inference run in thread pools). On 2 cores, where one inference keeps
        # both busy, that saves little: a compare costs 1.9x a verify (bench/bench_compare.py).
        outcomes = await asyncio.gather(
            *(
                self._embed(probe.data, probe.filename, side_timings[side], probe.track_id)
                for side, probe in zip(COMPARED_SIDES, (first, second), strict=True)
            ),
            return_exceptions=True,
        )
        failures = {
            side: outcome
            for side, outcome in zip(COMPARED_SIDES, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        }
        for outcome in failures.values():
            if not isinstance(outcome, ServiceError):
                raise outcome  # a fault of the service: the error handlers log it, whatever the other side did
        for side, outcome in failures.items():
            if not isinstance(outcome, SIDE_ERRORS):
                raise outcome  # not about this side's upload (inference unavailable, say): as any request gets it
            error = outcome.for_side(side)
            # the other side's problem too, so that one answer names both
            error.details.update({f"{name}_error": f.message for name, f in failures.items() if name != side})
            raise error
        (result_a, vector_a, source_a), (result_b, vector_b, source_b) = outcomes
        score = round(float(similarity(float(vector_a @ vector_b))), 6)
        match = score >= limit
        timings = {
            f"{side}_{name}": value for side in COMPARED_SIDES for name, value in side_timings[side].values.items()
        }
        timings["total"] = start.total()["total"]
        self._audit(
            principal,
            "compare",
            score=score,
            decision="match" if match else "no_match",
            threshold=limit,
            probe_sha256=[hashlib.sha256(probe.data).hexdigest() for probe in (first, second)],
        )
        return CompareResult(
            score,
            match,
            limit,
            point,
            [None if r.detection is None else r.detection.to_dict() for r in (result_a, result_b)],
            result_a.model_id,
            timings,
            [source_a, source_b],
        )

    # --- stateless ---------------------------------------------------------------------------------

    def _any_scope(self, principal: Principal) -> None:
        if not principal.scopes:
            raise InvalidInput("this API key has no scope")

    async def detect(
        self, principal: Principal, data: bytes, filename: str, track_id: int | None = None
    ) -> tuple[DetectionReport, dict[str, Any]]:
        self._any_scope(principal)
        record = await self._decode(data, filename, track_id)
        return await self.inference.detect(record), source_of(record)

    async def embed(
        self, principal: Principal, data: bytes, filename: str, track_id: int | None = None
    ) -> tuple[PipelineResult, np.ndarray, dict[str, Any]]:
        self._any_scope(principal)
        return await self._embed(data, filename, Timings(), track_id)

    def close(self) -> None:
        self._decoder.shutdown(wait=False, cancel_futures=True)

    async def ready(self) -> dict[str, bool]:
        return {"models": await self.inference.ready(), "store": self.store.healthy()}
