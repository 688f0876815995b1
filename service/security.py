"""API keys (stored hashed), scopes, gallery tenancy, rate limits and the audit log.

- A key is ``gdr_`` + 32 random bytes (URL-safe base64). Only its SHA-256 is stored: a stolen store does not
  reveal usable keys, and a 256-bit random secret needs no slow hash.
- Scopes: ``admin`` (everything, including keys), ``enroll`` (galleries, subjects, templates), ``identify``,
  ``verify``. ``detect`` and ``embed`` need any scope.
- A key may be limited to some galleries; any other gallery answers 404, as if it did not exist, so tenants
  cannot even learn each other's gallery names.
- Rate limit: a token bucket per key and replica.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from service.errors import NotFound, PermissionDenied, RateLimited, Unauthenticated
from service.gallery.records import ApiKey, check_gallery_name, now
from service.gallery.store import Store

SCOPES = ("admin", "enroll", "identify", "verify")
KEY_PREFIX = "gdr_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    key_id: str
    name: str
    scopes: frozenset[str]
    galleries: frozenset[str] | None  # None: all

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def require(self, scope: str) -> None:
        if not self.admin and scope not in self.scopes:
            raise PermissionDenied(f"this API key lacks the {scope!r} scope")

    def may_use(self, gallery: str) -> bool:
        return self.galleries is None or gallery in self.galleries

    def gallery(self, name: str) -> str:
        """A gallery this key may touch; any other is reported as missing (tenants stay invisible)."""
        if not self.may_use(name):
            raise NotFound(f"no gallery {name!r}")
        return name


class KeyRing:
    def __init__(self, store: Store, rate_per_minute: int = 0) -> None:
        self.store = store
        self.rate_per_minute = rate_per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)
        self._lock = threading.Lock()

    def create(self, scopes: list[str], galleries: list[str] | None = None, name: str = "") -> tuple[str, ApiKey]:
        """A new key: returns (the key itself, shown once; its stored record)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise PermissionDenied(f"unknown scope(s) {', '.join(unknown) or '(none given)'}: use {', '.join(SCOPES)}")
        for gallery in galleries or []:
            check_gallery_name(gallery)
        secret = new_key()
        digest = hash_key(secret)
        record = ApiKey(
            key_id="k_" + digest[:12],
            key_hash=digest,
            name=name,
            scopes=sorted(set(scopes)),
            galleries=None if galleries is None else sorted(set(galleries)),
            created=now(),
        )
        self.store.add_key(record)
        return secret, record

    def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthenticated("missing API key (the X-API-Key header, or x-api-key gRPC metadata)")
        record = self.store.find_key(hash_key(key))
        if record is None or record.revoked:
            raise Unauthenticated("invalid or revoked API key")
        self._rate(record.key_id)
        return Principal(
            record.key_id,
            record.name,
            frozenset(record.scopes),
            None if record.galleries is None else frozenset(record.galleries),
        )

    def _rate(self, key_id: str) -> None:
        if self.rate_per_minute <= 0:
            return
        capacity = float(self.rate_per_minute)
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, time.monotonic()))
            current = time.monotonic()
            tokens = min(capacity, tokens + (current - last) * capacity / 60.0)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, current)
                wait = int((1.0 - tokens) * 60.0 / capacity) + 1
                raise RateLimited(
                    f"rate limit of {self.rate_per_minute} requests per minute exceeded", retry_after=wait
                )
            self._buckets[key_id] = (tokens - 1.0, current)

    def ensure_admin(self) -> str | None:
        """On first start (no keys at all) create an admin key; return it (to print once), else None."""
        if self.store.list_keys():
            return None
        secret, _record = self.create(["admin"], None, name="first admin")
        return secret
