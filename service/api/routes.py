"""REST routers, one per resource. No business logic here: every route authenticates, calls the core,
and shapes the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.security import APIKeyHeader

from service.api import schemas
from service.core import MatchingCore, Probe
from service.errors import PayloadTooLarge
from service.security import Principal

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from `gader keys create`.")
ERRORS = {status: {"model": schemas.ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


# Both dependencies are ``async`` so they run on the event loop: FastAPI runs a plain ``def`` dependency in
# its thread pool, and those two thread hand-offs cost more than the work (a dict read; a hashed key lookup by
# primary key, as the async routes do with the store elsewhere): 2.3 -> 2.0 ms of server overhead per identify
# in bench/bench_service.py.
async def core(request: Request) -> MatchingCore:
    return request.app.state.core


async def principal(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
    return request.app.state.core.authenticate(key)


Core = Annotated[MatchingCore, Depends(core)]
Caller = Annotated[Principal, Depends(principal)]
Upload = Annotated[
    UploadFile,
    File(
        description="A sequence: a video (.mp4 .m4v .mov .avi .webm .mkv), an .npz (silhouettes [T,H,W], optional "
        "ratios, rgb) or a .zip of PNG masks."
    ),
]
TrackId = Annotated[
    int | None, Form(description="Videos: which person's track to use (from `source.tracks`; default: the main one).")
]


async def read_upload(upload: UploadFile, limit: int) -> tuple[bytes, str]:
    """The uploaded bytes, refusing early (413) beyond the limit."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"upload exceeds the limit of {limit:,} bytes")
    return data, upload.filename or "upload"


def detection_out(report: dict | None) -> schemas.DetectionOut | None:
    return None if report is None else schemas.DetectionOut(**report)


galleries = APIRouter(prefix="/v1/galleries", tags=["galleries"], responses=ERRORS)
subjects = APIRouter(prefix="/v1/galleries/{gallery}/subjects", tags=["subjects"], responses=ERRORS)
matching = APIRouter(prefix="/v1/galleries/{gallery}", tags=["matching"], responses=ERRORS)
analysis = APIRouter(prefix="/v1", tags=["analysis"], responses=ERRORS)
system = APIRouter(tags=["system"])


@galleries.post("", status_code=201, response_model=schemas.GalleryOut, summary="Create a gallery")
def create_gallery(body: schemas.GalleryCreate, service: Core, caller: Caller) -> schemas.GalleryOut:
    gallery = service.create_gallery(caller, body.name, body.metadata)
    return schemas.GalleryOut(name=gallery.name, created=gallery.created, metadata=gallery.metadata, templates=0)


@galleries.get("", response_model=schemas.GalleryList, summary="List the galleries this key may use")
def list_galleries(service: Core, caller: Caller) -> schemas.GalleryList:
    return schemas.GalleryList(
        galleries=[
            schemas.GalleryOut(name=g.name, created=g.created, metadata=g.metadata, templates=size)
            for g, size in service.list_galleries(caller)
        ]
    )


@galleries.get("/{gallery}", response_model=schemas.GalleryOut, summary="One gallery")
def get_gallery(gallery: str, service: Core, caller: Caller) -> schemas.GalleryOut:
    found, size = service.gallery_info(caller, gallery)
    return schemas.GalleryOut(name=found.name, created=found.created, metadata=found.metadata, templates=size)


@galleries.delete("/{gallery}", status_code=204, summary="Delete a gallery with all its subjects and templates")
def delete_gallery(gallery: str, service: Core, caller: Caller) -> Response:
    service.delete_gallery(caller, gallery)
    return Response(status_code=204)


@subjects.post("", status_code=201, response_model=schemas.SubjectOut, summary="Create a subject")
def create_subject(gallery: str, body: schemas.SubjectCreate, service: Core, caller: Caller) -> schemas.SubjectOut:
    subject = service.create_subject(caller, gallery, body.subject_id, body.metadata)
    return schemas.SubjectOut(
        subject_id=subject.subject_id, created=subject.created, metadata=subject.metadata, templates=0
    )


@subjects.get("", response_model=schemas.SubjectPage, summary="List subjects (cursor pagination, by subject_id)")
def list_subjects(
    gallery: str,
    service: Core,
    caller: Caller,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> schemas.SubjectPage:
    page, next_cursor = service.list_subjects(caller, gallery, cursor, limit)
    return schemas.SubjectPage(
        subjects=[
            schemas.SubjectOut(subject_id=s.subject_id, created=s.created, metadata=s.metadata, templates=s.templates)
            for s in page
        ],
        next_cursor=next_cursor,
    )


@subjects.get("/{subject_id}", response_model=schemas.SubjectDetail, summary="One subject and its templates")
def get_subject(gallery: str, subject_id: str, service: Core, caller: Caller) -> schemas.SubjectDetail:
    subject, templates = service.get_subject(caller, gallery, subject_id)
    return schemas.SubjectDetail(
        subject_id=subject.subject_id,
        created=subject.created,
        metadata=subject.metadata,
        templates=len(templates),
        template_list=[
            schemas.TemplateInfo(template_id=t.template_id, model=t.model, created=t.created, quality=t.quality)
            for t in templates
        ],
    )


@subjects.delete("/{subject_id}", status_code=204, summary="Delete a subject and its templates")
def delete_subject(gallery: str, subject_id: str, service: Core, caller: Caller) -> Response:
    service.delete_subject(caller, gallery, subject_id)
    return Response(status_code=204)


@subjects.post(
    "/{subject_id}/templates",
    status_code=201,
    response_model=schemas.TemplateOut,
    summary="Enroll a template from a sequence",
)
async def enroll(
    gallery: str, subject_id: str, file: Upload, service: Core, caller: Caller, track_id: TrackId = None
) -> schemas.TemplateOut:
    data, name = await read_upload(file, service.settings.max_upload_bytes)
    result = await service.enroll(caller, gallery, subject_id, data, name, track_id)
    return schemas.TemplateOut(
        template_id=result.template_id,
        subject_id=result.subject_id,
        model=result.model,
        detection=detection_out(result.detection),
        quality=result.quality,
        source=schemas.SourceOut(**result.source),
    )


@subjects.delete("/{subject_id}/templates/{template_id}", status_code=204, summary="Delete one template")
def delete_template(gallery: str, subject_id: str, template_id: str, service: Core, caller: Caller) -> Response:
    service.delete_template(caller, gallery, subject_id, template_id)
    return Response(status_code=204)


# Declared in the schema too (OpenAPI clients validate them); the core checks them again for gRPC.
Threshold = Annotated[
    float | None, Form(ge=0.0, le=1.0, description="Similarity threshold in [0, 1] (instead of an operating point).")
]
OperatingPoint = Annotated[
    str | None,
    Form(description="A calibrated operating point, e.g. fmr=1e-3 (default: GADER_DEFAULT_OPERATING_POINT)."),
]


@matching.post("/identify", response_model=schemas.IdentifyOut, summary="1:N: who is this?")
async def identify(
    gallery: str,
    file: Upload,
    service: Core,
    caller: Caller,
    top_k: Annotated[int, Form(ge=1, description="Subjects to return (1..max_top_k, GADER_MAX_TOP_K).")] = 5,
    threshold: Threshold = None,
    operating_point: OperatingPoint = None,
    track_id: TrackId = None,
) -> schemas.IdentifyOut:
    data, name = await read_upload(file, service.settings.max_upload_bytes)
    result = await service.identify(caller, gallery, data, name, top_k, threshold, operating_point, track_id)
    return schemas.IdentifyOut(
        candidates=[
            schemas.CandidateOut(subject_id=c.subject_id, score=c.score, template_id=c.template_id)
            for c in result.candidates
        ],
        decision=result.decision,
        operating_point=result.operating_point,
        threshold=result.threshold,
        detection=detection_out(result.detection),
        model=result.model,
        timings_ms=result.timings_ms,
        source=schemas.SourceOut(**result.source),
    )


@matching.post("/verify", response_model=schemas.VerifyOut, summary="1:1: is this the claimed subject?")
async def verify(
    gallery: str,
    file: Upload,
    service: Core,
    caller: Caller,
    subject_id: Annotated[str, Form(description="The claimed subject.")],
    template_id: Annotated[
        str | None, Form(description="Compare with this template only (default: all of them).")
    ] = None,
    threshold: Threshold = None,
    operating_point: OperatingPoint = None,
    track_id: TrackId = None,
) -> schemas.VerifyOut:
    data, name = await read_upload(file, service.settings.max_upload_bytes)
    result = await service.verify(
        caller, gallery, data, name, subject_id, template_id, threshold, operating_point, track_id
    )
    return schemas.VerifyOut(
        score=result.score,
        match=result.match,
        threshold=result.threshold,
        operating_point=result.operating_point,
        detection=detection_out(result.detection),
        model=result.model,
        template_id=result.template_id,
        timings_ms=result.timings_ms,
        source=schemas.SourceOut(**result.source),
    )


@analysis.post("/compare", response_model=schemas.CompareOut, summary="1:1 between two sequences, no gallery")
async def compare(
    first: Annotated[UploadFile, File(description="One sequence (formats as for `file` elsewhere).")],
    second: Annotated[UploadFile, File(description="The other sequence.")],
    service: Core,
    caller: Caller,
    threshold: Threshold = None,
    operating_point: OperatingPoint = None,
    first_track_id: Annotated[int | None, Form(description="Videos: the first one's track (default: main).")] = None,
    second_track_id: Annotated[int | None, Form(description="Videos: the second one's track (default: main).")] = None,
) -> schemas.CompareOut:
    """Are these two walks the same person? Both run the detector and GAR as probes do; the answer is the
    similarity verify would give between them and the decision at an operating point. Nothing is stored."""
    probes = []
    for side, upload, track_id in (("first", first, first_track_id), ("second", second, second_track_id)):
        try:
            data, name = await read_upload(upload, service.settings.max_upload_bytes)
        except PayloadTooLarge as exc:
            raise exc.for_side(side) from None
        probes.append(Probe(data, name, track_id))
    result = await service.compare(caller, *probes, threshold, operating_point)
    return schemas.CompareOut(
        score=result.score,
        match=result.match,
        threshold=result.threshold,
        operating_point=result.operating_point,
        detections=[detection_out(report) for report in result.detections],
        model=result.model,
        timings_ms=result.timings_ms,
        sources=[schemas.SourceOut(**source) for source in result.sources],
    )


@analysis.post("/detect", response_model=schemas.DetectOut, summary="Gait detection report of a sequence")
async def detect(file: Upload, service: Core, caller: Caller, track_id: TrackId = None) -> schemas.DetectOut:
    data, name = await read_upload(file, service.settings.max_upload_bytes)
    report, source = await service.detect(caller, data, name, track_id)
    return schemas.DetectOut(**report.to_dict(), source=schemas.SourceOut(**source))


@analysis.post("/embed", response_model=schemas.EmbedOut, summary="GAR embedding of a sequence's gait frames")
async def embed(file: Upload, service: Core, caller: Caller, track_id: TrackId = None) -> schemas.EmbedOut:
    data, name = await read_upload(file, service.settings.max_upload_bytes)
    result, _vector, source = await service.embed(caller, data, name, track_id)
    return schemas.EmbedOut(
        model=result.model_id,
        shape=list(result.embedding.shape),
        embedding=result.embedding.round(6).tolist(),
        detection=detection_out(None if result.detection is None else result.detection.to_dict()),
        source=schemas.SourceOut(**source),
    )


@analysis.get("/models", response_model=schemas.ModelsOut, summary="Models, versions and calibrated operating points")
def models(service: Core, caller: Caller) -> schemas.ModelsOut:
    return schemas.ModelsOut(**service.models_info(caller))


@system.get("/healthz", response_model=schemas.HealthOut, summary="Liveness")
def healthz() -> schemas.HealthOut:
    return schemas.HealthOut(status="ok")


@system.get(
    "/readyz",
    response_model=schemas.ReadyOut,
    responses={503: {"model": schemas.ReadyOut}},
    summary="Readiness: models loaded, store reachable",
)
async def readyz(service: Core, response: Response) -> schemas.ReadyOut:
    checks = await service.ready()
    ready = all(checks.values())
    if not ready:
        response.status_code = 503
    return schemas.ReadyOut(ready=ready, **checks)


@system.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
