"""What the stores keep."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import InvalidInput

# Matched whole (fullmatch): "$" alone would also accept a trailing newline. A subject id becomes one path
# segment of the REST routes (/subjects/{subject_id}): no "/", no "%" (servers decode it: "x%41" would reach
# subject "xA"), no "?" or "#" (they end a path), and not "." or ".." (path dots).
GALLERY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SUBJECT_ID = re.compile(r"(?!\.{1,2}$)[^\x00-\x1f\x7f/%?#]{1,128}")


def check_gallery_name(name: str) -> str:
    if not GALLERY_NAME.fullmatch(name):
        raise InvalidInput(f"gallery name {name!r}: use 1-64 characters a-z 0-9 _ -, starting with a letter or digit")
    return name


def check_subject_id(subject_id: str) -> str:
    # isprintable: no control, format (zero-width), separator other than the space, or lone surrogate characters,
    # which look like nothing in a listing or cannot be encoded at all
    if not SUBJECT_ID.fullmatch(subject_id) or subject_id.strip() != subject_id or not subject_id.isprintable():
        raise InvalidInput(
            "subject_id: 1-128 printable characters other than / % ? #, not '.' or '..', no leading or trailing spaces"
        )
    return subject_id


def now() -> float:
    return round(time.time(), 3)


def new_template_id() -> str:
    return "t_" + uuid.uuid4().hex


@dataclass
class Gallery:
    name: str
    created: float
    metadata: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # the key that created it


@dataclass
class Subject:
    gallery: str
    subject_id: str
    created: float
    metadata: dict[str, Any] = field(default_factory=dict)
    templates: int = 0


@dataclass
class Template:
    template_id: str
    gallery: str
    subject_id: str
    model: str
    vector: np.ndarray  # float32 [D], L2-normalised: inner product = mean per-part cosine
    created: float
    quality: dict[str, Any] = field(default_factory=dict)

    def vector_bytes(self) -> bytes:
        return np.ascontiguousarray(self.vector, dtype=np.float32).tobytes()

    @staticmethod
    def vector_from(data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.float32).copy()


@dataclass
class ApiKey:
    key_id: str
    key_hash: str
    name: str
    scopes: list[str]
    galleries: list[str] | None  # None: every gallery
    created: float
    revoked: bool = False


@dataclass
class Change:
    """One entry of the change feed replicas follow (Redis Stream); applied idempotently."""

    op: str  # add_template, remove_template, remove_subject, remove_gallery
    gallery: str
    template_id: str = ""
    subject_id: str = ""
    model: str = ""
    vector: bytes = b""
    # remove_subject / remove_gallery: the template ids removed, exactly (None in entries written before
    # they carried them). A replica applies its own writes at once and their stream copies later; by
    # then the subject or gallery may have been created again with new templates, which must stay.
    removed: list[str] | None = None
