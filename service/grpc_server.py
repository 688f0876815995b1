"""The gRPC front end (grpc.aio): the same operations as REST, on the same ``MatchingCore``.

The API key travels in the ``x-api-key`` metadata entry. Service errors become standard status codes with
the same messages as REST. Long sequences can be sent as a client stream of chunks. Standard health
checking (``grpc.health.v1``) and server reflection are on.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.core import MatchingCore, Probe
from service.errors import InvalidInput, PayloadTooLarge, ServiceError
from service.grpc_gen import modules

pb, pb_grpc = modules()
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gader"].full_name

log = logging.getLogger("gader.service")

STATUS = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "payload_too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


def _json(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{field} is not valid JSON ({exc})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
        raise InvalidInput(f"{field}: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{field} is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object")
    return value


MAX_DETAILS_TRAILER = 4096  # bytes of JSON; gRPC clients refuse metadata past 8 kB by default


def error_trailers(exc: ServiceError) -> tuple[tuple[str, str], ...]:
    """What REST's error envelope says beyond the status and message, as trailing metadata: the HTTP status
    (gRPC's FAILED_PRECONDITION is REST's 409 "nothing to compare" and 422 "no usable gait" alike), the error
    code, the details as JSON (the detection report of a refused probe, the side of a compare) and Retry-After.
    Details over 4 kB lose their per-frame labels first, then everything but their keys."""
    trailers = [("gader-http-status", str(exc.status)), ("gader-error-code", exc.code)]
    if exc.details:
        text = json.dumps(exc.details)
        if len(text) > MAX_DETAILS_TRAILER:
            text = json.dumps(_without_frame_labels(exc.details))
        if len(text) > MAX_DETAILS_TRAILER:
            text = json.dumps({"truncated": True, "keys": sorted(exc.details)})
        trailers.append(("gader-error-details", text))
    if exc.retry_after:
        trailers.append(("retry-after", str(exc.retry_after)))
    return tuple(trailers)


def _without_frame_labels(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_frame_labels(v) for k, v in value.items() if k != "frame_labels"}
    if isinstance(value, list):
        return [_without_frame_labels(v) for v in value]
    return value


def frame_arrays(frames: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A Frames message's masks uint8 [count, h, w] and RGB uint8 [count, h, w, 3] (or None), after checking
    their byte counts: the one check for unary requests and stream chunks alike."""
    count, height, width = int(frames.count), int(frames.height), int(frames.width)
    if count * height * width != len(frames.masks):
        raise InvalidInput(
            f"frames.masks holds {len(frames.masks)} bytes, not count x height x width = {count} x {height} x {width}"
        )
    masks = np.frombuffer(frames.masks, np.uint8).reshape(count, height, width)
    if not frames.rgb:
        return masks, None
    if len(frames.rgb) != count * height * width * 3:
        raise InvalidInput(
            f"frames.rgb holds {len(frames.rgb)} bytes, not count x height x width x 3 = {count * height * width * 3}"
        )
    return masks, np.frombuffer(frames.rgb, np.uint8).reshape(count, height, width, 3)


def frames_to_npz(frames: Any) -> bytes:
    """A Frames message -> the .npz bytes the core decodes (so the core checks every rule once)."""
    masks, rgb = frame_arrays(frames)
    arrays: dict[str, np.ndarray] = {"silhouettes": masks}
    if len(frames.ratios):
        arrays["ratios"] = np.asarray(frames.ratios, np.float32)
    if rgb is not None:
        arrays["rgb"] = rgb
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def frames_message_bytes(frames: Any) -> int:
    """What a Frames message carries, in bytes: masks, RGB and its float32 ratios (4 bytes each)."""
    return len(frames.masks) + len(frames.rgb) + 4 * len(frames.ratios)


def sequence_bytes(sequence: Any, limit: int) -> tuple[bytes, str, int | None]:
    """(bytes, file name, track id or None) of a Sequence message, refused (413) beyond ``limit`` bytes before
    frames are converted: the transport admits Compare's two uploads in one message, so one upload is held to
    the limit here, as the core holds REST uploads to it."""
    kind = sequence.WhichOneof("source")
    track_id = sequence.track_id or None
    size = len(sequence.file) if kind == "file" else frames_message_bytes(sequence.frames)
    if size > limit:
        raise PayloadTooLarge(f"upload of {size:,} bytes exceeds the limit of {limit:,}")
    if kind == "file":
        return sequence.file, sequence.filename or "upload", track_id
    if kind == "frames":
        return frames_to_npz(sequence.frames), "frames.npz", track_id
    raise InvalidInput("sequence: give a file or frames")


def source_message(source: dict[str, Any]) -> Any:
    return pb.Source(
        kind=source["kind"],
        track_id=source.get("track_id") or 0,
        tracks=[pb.Track(**track) for track in source.get("tracks", [])],
        video_frames=source.get("video_frames") or 0,
        fps=source.get("fps") or 0.0,
    )


def detection_message(report: dict[str, Any] | None) -> Any:
    if report is None:
        return None
    return pb.Detection(
        usable=report["usable"],
        gait_fraction=report["gait_fraction"],
        frames=report["frames"],
        gait_frames=report["gait_frames"],
        walking_frames=report["walking_frames"],
        segments=[pb.Segment(start=s["start"], end=s["end"], score=s["score"]) for s in report["segments"]],
        frame_labels=report["frame_labels"],
    )


class GaderServicer(pb_grpc.GaderServicer):
    def __init__(self, core: MatchingCore) -> None:
        self.core = core

    async def _call(self, context: grpc.aio.ServicerContext, action):
        """Authenticate from metadata, run, map service errors to status codes."""
        metadata = dict(context.invocation_metadata() or ())
        try:
            principal = self.core.authenticate(metadata.get("x-api-key"))
            return await action(principal)
        except ServiceError as exc:
            context.set_trailing_metadata(error_trailers(exc))
            await context.abort(STATUS.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            # A fault of the service, not of the request: grpc would answer UNKNOWN with the exception's type
            # and text; the client gets INTERNAL without the internals, the log gets the traceback.
            log.exception("unexpected error in a gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (the server's log has the details)")

    # galleries
    async def CreateGallery(self, request, context):
        async def run(p):
            gallery = self.core.create_gallery(p, request.name, _json(request.metadata_json, "metadata_json"))
            return pb.Gallery(name=gallery.name, created=gallery.created, metadata_json=json.dumps(gallery.metadata))

        return await self._call(context, run)

    async def ListGalleries(self, request, context):
        async def run(p):
            return pb.ListGalleriesResponse(
                galleries=[
                    pb.Gallery(name=g.name, created=g.created, metadata_json=json.dumps(g.metadata), templates=size)
                    for g, size in self.core.list_galleries(p)
                ]
            )

        return await self._call(context, run)

    async def GetGallery(self, request, context):
        async def run(p):
            gallery, size = self.core.gallery_info(p, request.name)
            return pb.Gallery(
                name=gallery.name, created=gallery.created, metadata_json=json.dumps(gallery.metadata), templates=size
            )

        return await self._call(context, run)

    async def ListModels(self, request, context):
        async def run(p):
            info = self.core.models_info(p)
            return pb.ListModelsResponse(
                models=[pb.Model(**model) for model in info["models"]],
                detector=info["detector"] or "",
                default_operating_point=info["default_operating_point"],
            )

        return await self._call(context, run)

    async def DeleteGallery(self, request, context):
        async def run(p):
            self.core.delete_gallery(p, request.name)
            return pb.Empty()

        return await self._call(context, run)

    # subjects
    def _subject(self, subject, templates=None) -> Any:
        return pb.Subject(
            subject_id=subject.subject_id,
            created=subject.created,
            metadata_json=json.dumps(subject.metadata),
            templates=len(templates) if templates is not None else subject.templates,
            template_list=[
                pb.TemplateInfo(
                    template_id=t.template_id, model=t.model, created=t.created, quality_json=json.dumps(t.quality)
                )
                for t in templates or []
            ],
        )

    async def CreateSubject(self, request, context):
        async def run(p):
            metadata = _json(request.metadata_json, "metadata_json")
            return self._subject(self.core.create_subject(p, request.gallery, request.subject_id, metadata))

        return await self._call(context, run)

    async def GetSubject(self, request, context):
        async def run(p):
            subject, templates = self.core.get_subject(p, request.gallery, request.subject_id)
            return self._subject(subject, templates)

        return await self._call(context, run)

    async def ListSubjects(self, request, context):
        async def run(p):
            page, cursor = self.core.list_subjects(p, request.gallery, request.cursor or None, request.limit or 100)
            return pb.ListSubjectsResponse(subjects=[self._subject(s) for s in page], next_cursor=cursor or "")

        return await self._call(context, run)

    async def DeleteSubject(self, request, context):
        async def run(p):
            self.core.delete_subject(p, request.gallery, request.subject_id)
            return pb.Empty()

        return await self._call(context, run)

    # templates
    def _template(self, result) -> Any:
        return pb.Template(
            template_id=result.template_id,
            subject_id=result.subject_id,
            model=result.model,
            detection=detection_message(result.detection),
            quality_json=json.dumps(result.quality),
            source=source_message(result.source),
        )

    async def Enroll(self, request, context):
        async def run(p):
            data, name, track = sequence_bytes(request.sequence, self.core.settings.max_upload_bytes)
            return self._template(await self.core.enroll(p, request.gallery, request.subject_id, data, name, track))

        return await self._call(context, run)

    async def DeleteTemplate(self, request, context):
        async def run(p):
            self.core.delete_template(p, request.gallery, request.subject_id, request.template_id)
            return pb.Empty()

        return await self._call(context, run)

    # matching
    def _identify(self, result) -> Any:
        return pb.IdentifyResponse(
            candidates=[
                pb.Candidate(subject_id=c.subject_id, score=c.score, template_id=c.template_id)
                for c in result.candidates
            ],
            decision=result.decision,
            operating_point=result.operating_point,
            threshold=result.threshold,
            detection=detection_message(result.detection),
            model=result.model,
            timings_ms=result.timings_ms,
            source=source_message(result.source),
        )

    def _verify(self, result) -> Any:
        return pb.VerifyResponse(
            score=result.score,
            match=result.match,
            threshold=result.threshold,
            operating_point=result.operating_point,
            detection=detection_message(result.detection),
            model=result.model,
            template_id=result.template_id,
            timings_ms=result.timings_ms,
            source=source_message(result.source),
        )

    async def Identify(self, request, context):
        async def run(p):
            data, name, track = sequence_bytes(request.sequence, self.core.settings.max_upload_bytes)
            threshold = request.threshold if request.HasField("threshold") else None
            result = await self.core.identify(
                p, request.gallery, data, name, request.top_k or 5, threshold, request.operating_point or None, track
            )
            return self._identify(result)

        return await self._call(context, run)

    async def Verify(self, request, context):
        async def run(p):
            data, name, track = sequence_bytes(request.sequence, self.core.settings.max_upload_bytes)
            threshold = request.threshold if request.HasField("threshold") else None
            result = await self.core.verify(
                p,
                request.gallery,
                data,
                name,
                request.subject_id,
                request.template_id or None,
                threshold,
                request.operating_point or None,
                track,
            )
            return self._verify(result)

        return await self._call(context, run)

    async def Compare(self, request, context):
        async def run(p):
            probes = []
            for side in ("first", "second"):
                if not request.HasField(side):
                    raise InvalidInput("give a sequence").for_side(side)
                try:
                    data, name, track = sequence_bytes(getattr(request, side), self.core.settings.max_upload_bytes)
                except (InvalidInput, PayloadTooLarge) as exc:
                    raise exc.for_side(side) from None
                probes.append(Probe(data, name, track))
            threshold = request.threshold if request.HasField("threshold") else None
            result = await self.core.compare(p, *probes, threshold, request.operating_point or None)
            # A side without a detection report (no detector configured) is an empty Detection here: a repeated
            # field cannot hold "none", and detections[i].frames == 0 says it.
            return pb.CompareResponse(
                score=result.score,
                match=result.match,
                threshold=result.threshold,
                operating_point=result.operating_point,
                detections=[detection_message(report) or pb.Detection() for report in result.detections],
                model=result.model,
                timings_ms=result.timings_ms,
                sources=[source_message(source) for source in result.sources],
            )

        return await self._call(context, run)

    # client streams: parameters from the first chunk, frames or file parts from every chunk
    async def _assemble(self, chunks: AsyncIterator[Any]) -> tuple[Any, bytes, str, int | None]:
        """(first chunk, bytes, file name, track id) of a client stream."""
        first, parts, masks, ratios, rgb = None, [], [], [], []
        size, shape = 0, None
        async for chunk in chunks:
            first = first or chunk
            size += len(chunk.file_part) + frames_message_bytes(chunk.frames)
            if size > self.core.settings.max_upload_bytes:
                raise PayloadTooLarge(
                    f"the stream exceeds the upload limit of {self.core.settings.max_upload_bytes:,} bytes"
                )
            if chunk.file_part:
                parts.append(chunk.file_part)
            if chunk.frames.count:
                frames = chunk.frames
                if shape is not None and (frames.height, frames.width) != shape:
                    raise InvalidInput("every frames chunk must have the same height and width")
                shape = (frames.height, frames.width)
                chunk_masks, chunk_rgb = frame_arrays(frames)
                masks.append(chunk_masks)
                ratios.append(np.asarray(frames.ratios, np.float32))  # not Python floats: 8x the wire's size
                if chunk_rgb is not None:
                    rgb.append(chunk_rgb)
        if first is None:
            raise InvalidInput("the stream carried no chunk")
        if parts and masks:
            raise InvalidInput("send either file parts or frames in one stream, not both")
        name, track = first.filename or "stream", first.track_id or None
        if parts:
            return first, b"".join(parts), name, track
        if not masks:
            raise InvalidInput("the stream carried no frames and no file")
        stacked = np.concatenate(masks)
        message = pb.Frames(
            count=stacked.shape[0],
            height=shape[0],
            width=shape[1],
            masks=stacked.tobytes(),
            ratios=np.concatenate(ratios).tolist() if ratios else [],
            rgb=np.concatenate(rgb).tobytes() if rgb else b"",
        )
        return first, frames_to_npz(message), "frames.npz", track

    async def EnrollStream(self, request_iterator, context):
        async def run(p):
            first, data, name, track = await self._assemble(request_iterator)
            return self._template(await self.core.enroll(p, first.gallery, first.subject_id, data, name, track))

        return await self._call(context, run)

    async def IdentifyStream(self, request_iterator, context):
        async def run(p):
            first, data, name, track = await self._assemble(request_iterator)
            threshold = first.threshold if first.HasField("threshold") else None
            result = await self.core.identify(
                p, first.gallery, data, name, first.top_k or 5, threshold, first.operating_point or None, track
            )
            return self._identify(result)

        return await self._call(context, run)

    async def VerifyStream(self, request_iterator, context):
        async def run(p):
            first, data, name, track = await self._assemble(request_iterator)
            threshold = first.threshold if first.HasField("threshold") else None
            result = await self.core.verify(
                p,
                first.gallery,
                data,
                name,
                first.subject_id,
                first.template_id or None,
                threshold,
                first.operating_point or None,
                track,
            )
            return self._verify(result)

        return await self._call(context, run)

    # analysis
    async def Detect(self, request, context):
        async def run(p):
            data, name, track = sequence_bytes(request.sequence, self.core.settings.max_upload_bytes)
            report, source = await self.core.detect(p, data, name, track)
            message = detection_message(report.to_dict())
            message.source.CopyFrom(source_message(source))
            return message

        return await self._call(context, run)

    async def Embed(self, request, context):
        async def run(p):
            data, name, track = sequence_bytes(request.sequence, self.core.settings.max_upload_bytes)
            result, _vector, source = await self.core.embed(p, data, name, track)
            channels, parts = result.embedding.shape
            detection = None if result.detection is None else detection_message(result.detection.to_dict())
            return pb.EmbedResponse(
                model=result.model_id,
                channels=channels,
                parts=parts,
                embedding=result.embedding.reshape(-1).tolist(),
                detection=detection,
                source=source_message(source),
            )

        return await self._call(context, run)


async def start_grpc(core: MatchingCore, host: str, port: int) -> grpc.aio.Server:
    """Start (not wait for) the gRPC server on host:port."""
    limit = 2 * core.settings.max_upload_bytes + (1 << 20)  # Compare carries two uploads; each is checked alone
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", 64 << 20)]
    )
    pb_grpc.add_GaderServicer_to_server(GaderServicer(core), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC to {host}:{port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server
