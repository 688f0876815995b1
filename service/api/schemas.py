"""Request and response models of the REST API (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code: invalid_argument, not_found, ...")
    message: str = Field(description="What is wrong, for a person.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorBody


class GalleryCreate(BaseModel):
    name: str = Field(description="1-64 characters a-z 0-9 _ -, starting with a letter or digit.", examples=["lobby"])
    metadata: dict[str, Any] = Field(default_factory=dict)


class GalleryOut(BaseModel):
    name: str
    created: float = Field(description="Unix time.")
    metadata: dict[str, Any]
    templates: int = Field(description="Templates in the index (enrolled with the current model).")


class GalleryList(BaseModel):
    galleries: list[GalleryOut]


class SubjectCreate(BaseModel):
    subject_id: str = Field(
        description="The caller's own id for the person (1-128 printable characters).", examples=["employee-0042"]
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free JSON object, at most 16 KB.")


QUALITY = (
    "What the template was made from: frames (of the sequence), gait_frames (inside gait segments), "
    "embedded_frames (the frames GAR embedded), gait_fraction. Without a detector every frame is embedded."
)


class TemplateInfo(BaseModel):
    template_id: str
    model: str
    created: float
    quality: dict[str, Any] = Field(description=QUALITY)


class SubjectOut(BaseModel):
    subject_id: str
    created: float
    metadata: dict[str, Any]
    templates: int


class SubjectDetail(SubjectOut):
    template_list: list[TemplateInfo]


class SubjectPage(BaseModel):
    subjects: list[SubjectOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class Segment(BaseModel):
    start: int
    end: int
    score: float


class DetectionOut(BaseModel):
    usable: bool = Field(description="Whether the sequence holds enough full-body walking to recognise gait.")
    gait_fraction: float = Field(description="Share of frames inside gait segments (0-1).")
    frames: int
    gait_frames: int = Field(description="Frames inside gait segments.")
    walking_frames: int = Field(
        description="Frames inside gait segments that frame_labels calls full-gait: what recognition embeds "
        "from a usable sequence (all gait_frames when fewer than 3 are)."
    )
    segments: list[Segment]
    frame_labels: list[str] = Field(
        description="Per frame: full-gait, full-standing, partial-gait or partial-standing."
    )


class TrackOut(BaseModel):
    track_id: int
    frames: int = Field(description="Aligned frames of this person.")
    first_frame: int = Field(description="Index in the video of the track's first frame.")
    last_frame: int


class SourceOut(BaseModel):
    kind: Literal["video", "masks", "silhouettes"] = Field(
        description="video: decoded and segmented here; masks: full-frame masks pretreated here; silhouettes: aligned."
    )
    track_id: int | None = Field(
        None, description="Videos: the track used (the main person unless track_id was given)."
    )
    tracks: list[TrackOut] = Field(default_factory=list, description="Videos: every person tracked, main first.")
    video_frames: int | None = Field(
        None, description="Videos: frames processed (after sub-sampling); track frame numbers index the original video."
    )
    fps: float | None = Field(None, description="Videos: the video's frame rate.")


class DetectOut(DetectionOut):
    source: SourceOut


class TemplateOut(BaseModel):
    template_id: str
    subject_id: str
    model: str
    detection: DetectionOut | None
    quality: dict[str, Any] = Field(description=QUALITY)
    source: SourceOut


class CandidateOut(BaseModel):
    subject_id: str
    score: float = Field(description="Similarity in [0, 1]: (1 + mean part cosine) / 2, best template of the subject.")
    template_id: str


class IdentifyOut(BaseModel):
    candidates: list[CandidateOut] = Field(description="Subjects, best first (each aggregated over its templates).")
    decision: Literal["match", "no_match"]
    operating_point: str
    threshold: float
    detection: DetectionOut | None
    model: str
    timings_ms: dict[str, float]
    source: SourceOut


class VerifyOut(BaseModel):
    score: float
    match: bool
    threshold: float
    operating_point: str
    detection: DetectionOut | None
    model: str
    template_id: str = Field(description="The subject's template that scored best.")
    timings_ms: dict[str, float]
    source: SourceOut


class CompareOut(BaseModel):
    score: float = Field(description="Similarity in [0, 1] of the two sequences' gait: the score verify gives.")
    match: bool
    threshold: float
    operating_point: str
    detections: list[DetectionOut | None] = Field(description="What the gait detector found: [first, second].")
    model: str
    timings_ms: dict[str, float] = Field(description="first_decode, first_inference, second_..., total.")
    sources: list[SourceOut] = Field(description="[first, second].")


class EmbedOut(BaseModel):
    model: str
    shape: list[int] = Field(description="[channels, parts]")
    embedding: list[list[float]] = Field(description="Part embedding, channels x parts.")
    detection: DetectionOut | None
    source: SourceOut


class ModelOut(BaseModel):
    id: str
    version: str
    architecture: str
    embedding_shape: list[int]
    distance: str = Field(
        description="The distance the model was evaluated with offline (euc or cos, docs/evaluation.md). The "
        "service's scores are always the mean part cosine mapped to [0, 1], whatever this says."
    )
    ratio_attention: bool
    operating_points: dict[str, float] = Field(description="Name (fmr=1e-3) -> similarity threshold.")
    description: str


class ModelsOut(BaseModel):
    models: list[ModelOut]
    detector: str
    default_operating_point: str


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    models: bool
    store: bool
