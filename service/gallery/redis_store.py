"""The shared store: galleries in Redis, every change also appended to a Redis Stream.

Each replica loads a snapshot, then follows the stream (``XREAD BLOCK``) and applies changes to its own
FAISS index idempotently. Writes and their stream entry go in one MULTI/EXEC transaction, so a replica
never sees a change without its data or the reverse. If the stream was trimmed past a replica's position
(Redis reports ``max-deleted-entry-id``), the replica reloads its snapshot.

Key layout (prefix ``gader``):
  galleries                      hash  name -> gallery JSON
  subjects:{g}                   hash  subject_id -> subject JSON
  subject-order:{g}              zset  subject ids (score 0, ordered by name: cursor pagination)
  templates:{g}                  hash  template_id -> template JSON (no vector)
  vectors:{g}                    hash  template_id -> float32 bytes
  subject-templates:{g}:{s}      set   template ids of one subject
  keys                           hash  key hash -> key JSON
  audit                          stream
  changes                        stream op, gallery, subject, template, model, vector
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import redis

from service.errors import Conflict, NotFound, Unavailable
from service.gallery.records import ApiKey, Change, Gallery, Subject, Template

log = logging.getLogger("gader.gallery")

CHANGES_MAXLEN = 200_000  # approximate; a replica further behind than this reloads its snapshot
AUDIT_MAXLEN = 1_000_000


# KEYS: galleries hash, changes stream; ARGV: gallery name, key prefix ("gader:"), stream max length.
# Removes the gallery, its subjects, their template sets, its templates and vectors (UNLINK: freed in the
# background), and appends the remove_gallery change naming every template removed, all at once; false when
# there is no such gallery. It reads the gallery's keys by name, as every command here does: one Redis server,
# not a cluster. Cost: Redis serves nothing else meanwhile, 0.11 s for 100,000 templates and 1.8 s for a million
# (`python -m bench.bench_limits`; the ids are left unsorted: sorting them took another 0.9 s at a million).
DELETE_GALLERY_LUA = """
local name, prefix = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], name) == 0 then return false end
local subjects_key = prefix .. 'subjects:' .. name
local templates_key = prefix .. 'templates:' .. name
for _, subject in ipairs(redis.call('HKEYS', subjects_key)) do
  redis.call('UNLINK', prefix .. 'subject-templates:' .. name .. ':' .. subject)
end
local removed = redis.call('HKEYS', templates_key)
redis.call('UNLINK', subjects_key, prefix .. 'subject-order:' .. name, templates_key, prefix .. 'vectors:' .. name)
redis.call('HDEL', KEYS[1], name)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'op', 'remove_gallery', 'gallery', name,
  'template', '', 'subject', '', 'model', '', 'vector', '', 'removed', #removed == 0 and '[]' or cjson.encode(removed))
return #removed
"""


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, prefix: str = "gader") -> None:
        self.url = url
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self.position = "0-0"  # last change this replica has applied
        self.consumed = 0  # how many changes, ever, this replica's state includes (Redis's entries-added)

        # One script, atomic on the server: a deletion under WATCH read the whole gallery on every attempt and
        # started again after any enrolment into it, so a large gallery being enrolled into was never deleted
        # (measured: 199 attempts in 60 s at 100,000 templates and 10 enrolments/s).
        self._delete_gallery_script = self.client.register_script(DELETE_GALLERY_LUA)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _call(self, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except redis.exceptions.ConnectionError as exc:
            raise Unavailable(f"the Redis store is unreachable ({exc})", retry_after=2) from None
        except redis.exceptions.TimeoutError as exc:
            raise Unavailable(f"the Redis store timed out ({exc})", retry_after=2) from None

    def _change(self, pipe: redis.client.Pipeline, change: Change) -> None:
        fields = {
            "op": change.op,
            "gallery": change.gallery,
            "template": change.template_id,
            "subject": change.subject_id,
            "model": change.model,
            "vector": change.vector,
        }
        if change.removed is not None:
            fields["removed"] = json.dumps(change.removed)
        pipe.xadd(self._k("changes"), fields, maxlen=CHANGES_MAXLEN, approximate=True)

    def _transaction(self, run: Callable[[redis.client.Pipeline], Any], *watched: str) -> Any:
        """``run(pipe)`` as one optimistic transaction: it reads with ``pipe`` (the ``watched`` keys are
        WATCHed first), checks, then calls ``pipe.multi()`` and queues its writes; if another client changed a
        watched key in between, Redis refuses the EXEC and ``run`` starts again. So a check (the subject
        exists) and the writes that rely on it (add its template) cannot be split by another replica's
        write. Returns what ``run`` returns; a ServiceError it raises reaches the caller."""
        return self._call(lambda: self.client.transaction(run, *watched, value_from_callable=True))

    # galleries
    def create_gallery(self, name: str, metadata: dict[str, Any], owner: str | None) -> Gallery:
        from service.gallery.records import now

        gallery = Gallery(name, now(), metadata, owner)
        payload = json.dumps({"created": gallery.created, "metadata": metadata, "owner": owner})
        if not self._call(lambda: self.client.hsetnx(self._k("galleries"), name, payload)):
            raise Conflict(f"gallery {name!r} already exists")
        return gallery

    def get_gallery(self, name: str) -> Gallery | None:
        raw = self._call(lambda: self.client.hget(self._k("galleries"), name))
        if raw is None:
            return None
        data = json.loads(raw)
        return Gallery(name, data["created"], data["metadata"], data.get("owner"))

    def list_galleries(self) -> list[Gallery]:
        raw = self._call(lambda: self.client.hgetall(self._k("galleries")))
        galleries = []
        for name, value in raw.items():
            data = json.loads(value)
            galleries.append(Gallery(name.decode(), data["created"], data["metadata"], data.get("owner")))
        return sorted(galleries, key=lambda g: g.name)

    def delete_gallery(self, name: str) -> None:
        removed = self._call(
            lambda: self._delete_gallery_script(
                keys=[self._k("galleries"), self._k("changes")],
                args=[name, f"{self.prefix}:", CHANGES_MAXLEN],
            )
        )
        if removed is None:
            raise NotFound(f"no gallery {name!r}")

    # subjects
    def create_subject(self, gallery: str, subject_id: str, metadata: dict[str, Any]) -> Subject:
        from service.gallery.records import now

        subject = Subject(gallery, subject_id, now(), metadata)
        payload = json.dumps({"created": subject.created, "metadata": metadata})
        galleries, subjects_key = self._k("galleries"), self._k("subjects", gallery)

        def run(pipe: redis.client.Pipeline) -> None:
            if not pipe.hexists(galleries, gallery):  # a gallery deleted meanwhile makes EXEC fail: read again
                raise NotFound(f"no gallery {gallery!r}")
            if pipe.hexists(subjects_key, subject_id):
                raise Conflict(f"subject {subject_id!r} already exists in gallery {gallery!r}")
            pipe.multi()  # the subject and its place in the listing order, together
            pipe.hset(subjects_key, subject_id, payload)
            pipe.zadd(self._k("subject-order", gallery), {subject_id: 0})

        self._transaction(run, galleries, subjects_key)
        return subject

    def get_subject(self, gallery: str, subject_id: str) -> Subject | None:
        raw = self._call(lambda: self.client.hget(self._k("subjects", gallery), subject_id))
        if raw is None:
            return None
        data = json.loads(raw)
        count = self._call(lambda: self.client.scard(self._k("subject-templates", gallery, subject_id)))
        return Subject(gallery, subject_id, data["created"], data["metadata"], count)

    def list_subjects(self, gallery: str, after: str | None, limit: int) -> list[Subject]:
        start = f"({after}" if after else "-"
        ids = self._call(lambda: self.client.zrangebylex(self._k("subject-order", gallery), start, "+", 0, limit))
        subjects = [self.get_subject(gallery, i.decode()) for i in ids]
        return [s for s in subjects if s is not None]

    def delete_subject(self, gallery: str, subject_id: str) -> list[str]:
        subjects_key, members_key = self._k("subjects", gallery), self._k("subject-templates", gallery, subject_id)

        def run(pipe: redis.client.Pipeline) -> list[str]:
            if not pipe.hexists(subjects_key, subject_id):
                raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}")
            ids = sorted(i.decode() for i in pipe.smembers(members_key))  # a template added meanwhile: read again
            pipe.multi()
            if ids:
                pipe.hdel(self._k("templates", gallery), *ids)
                pipe.hdel(self._k("vectors", gallery), *ids)
            pipe.delete(members_key)
            pipe.hdel(subjects_key, subject_id)
            pipe.zrem(self._k("subject-order", gallery), subject_id)
            self._change(pipe, Change("remove_subject", gallery, subject_id=subject_id, removed=ids))
            return ids

        return self._transaction(run, subjects_key, members_key)

    # templates
    def add_template(self, template: Template) -> None:
        meta = json.dumps(
            {
                "subject": template.subject_id,
                "model": template.model,
                "created": template.created,
                "quality": template.quality,
            }
        )
        vector = template.vector_bytes()
        subjects_key = self._k("subjects", template.gallery)

        def run(pipe: redis.client.Pipeline) -> None:
            # the subject must still exist when the template is written: a deletion in between (another
            # replica's) changes the watched hash, and the check runs again
            if not pipe.hexists(subjects_key, template.subject_id):
                raise NotFound(f"no subject {template.subject_id!r} in gallery {template.gallery!r}")
            pipe.multi()
            pipe.hset(self._k("templates", template.gallery), template.template_id, meta)
            pipe.hset(self._k("vectors", template.gallery), template.template_id, vector)
            pipe.sadd(self._k("subject-templates", template.gallery, template.subject_id), template.template_id)
            self._change(
                pipe,
                Change(
                    "add_template", template.gallery, template.template_id, template.subject_id, template.model, vector
                ),
            )

        self._transaction(run, subjects_key)

    def _template(self, gallery: str, template_id: str, meta: bytes, vector: bytes) -> Template:
        data = json.loads(meta)
        return Template(
            template_id,
            gallery,
            data["subject"],
            data["model"],
            Template.vector_from(vector),
            data["created"],
            data["quality"],
        )

    def delete_template(self, gallery: str, template_id: str) -> Template | None:
        templates_key, vectors_key = self._k("templates", gallery), self._k("vectors", gallery)

        def run(pipe: redis.client.Pipeline) -> Template | None:
            meta, vector = pipe.hget(templates_key, template_id), pipe.hget(vectors_key, template_id)
            if meta is None or vector is None:  # gone already (another request's deletion): nothing to record
                return None
            template = self._template(gallery, template_id, meta, vector)
            pipe.multi()
            pipe.hdel(templates_key, template_id)
            pipe.hdel(vectors_key, template_id)
            pipe.srem(self._k("subject-templates", gallery, template.subject_id), template_id)
            self._change(pipe, Change("remove_template", gallery, template_id, template.subject_id))
            return template

        return self._transaction(run, templates_key)

    def subject_templates(self, gallery: str, subject_id: str) -> list[Template]:
        ids = [
            i.decode()
            for i in self._call(lambda: self.client.smembers(self._k("subject-templates", gallery, subject_id)))
        ]
        if not ids:
            return []
        metas = self._call(lambda: self.client.hmget(self._k("templates", gallery), ids))
        vectors = self._call(lambda: self.client.hmget(self._k("vectors", gallery), ids))
        found = [self._template(gallery, i, m, v) for i, m, v in zip(ids, metas, vectors, strict=True) if m and v]
        return sorted(found, key=lambda t: t.created)

    def all_templates(self, chunk: int = 1000) -> Iterator[Template]:
        """Every stored template, gallery by gallery, ``chunk`` at a time: HSCAN the metadata and one HMGET of
        the chunk's vectors, so a replica's restart costs two round trips per chunk instead of one per template
        (measured 15.5 s for 100,000 templates with one HGET each), and Redis is never blocked by one command
        over a whole large gallery."""
        for gallery in self.list_galleries():
            templates_key, vectors_key = self._k("templates", gallery.name), self._k("vectors", gallery.name)
            seen: set[bytes] = set()  # HSCAN may return a field twice while Redis rehashes the hash
            cursor = 0
            while True:
                cursor, metas = self._call(
                    lambda c=cursor, k=templates_key: self.client.hscan(k, c, count=chunk)
                )  # metas: {template id: meta JSON}
                fresh = [(i, m) for i, m in metas.items() if i not in seen]
                seen.update(i for i, _ in fresh)
                if fresh:
                    ids = [i for i, _ in fresh]
                    vectors = self._call(lambda i=ids, k=vectors_key: self.client.hmget(k, i))
                    for (template_id, meta), vector in zip(fresh, vectors, strict=True):
                        if vector is not None:  # removed between the two reads: the change stream says so
                            yield self._template(gallery.name, template_id.decode(), meta, vector)
                if cursor == 0:
                    break

    def count_templates(self, gallery: str | None = None) -> int:
        galleries = [gallery] if gallery else [g.name for g in self.list_galleries()]
        return sum(self._call(lambda g=g: self.client.hlen(self._k("templates", g))) for g in galleries)

    # keys
    def add_key(self, key: ApiKey) -> None:
        payload = json.dumps(
            {
                "key_id": key.key_id,
                "name": key.name,
                "scopes": key.scopes,
                "galleries": key.galleries,
                "created": key.created,
                "revoked": key.revoked,
            }
        )
        self._call(lambda: self.client.hset(self._k("keys"), key.key_hash, payload))

    def _key(self, key_hash: str, raw: bytes) -> ApiKey:
        data = json.loads(raw)
        return ApiKey(
            data["key_id"], key_hash, data["name"], data["scopes"], data["galleries"], data["created"], data["revoked"]
        )

    def find_key(self, key_hash: str) -> ApiKey | None:
        raw = self._call(lambda: self.client.hget(self._k("keys"), key_hash))
        return None if raw is None else self._key(key_hash, raw)

    def list_keys(self) -> list[ApiKey]:
        raw = self._call(lambda: self.client.hgetall(self._k("keys")))
        return sorted((self._key(h.decode(), v) for h, v in raw.items()), key=lambda k: k.created)

    def revoke_key(self, key_id: str) -> bool:
        for key in self.list_keys():
            if key.key_id == key_id:
                key.revoked = True
                self.add_key(key)
                return True
        return False

    # audit
    def audit(self, event: dict[str, Any]) -> None:
        self._call(
            lambda: self.client.xadd(
                self._k("audit"), {"event": json.dumps(event)}, maxlen=AUDIT_MAXLEN, approximate=True
            )
        )

    def read_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        entries = self._call(lambda: self.client.xrevrange(self._k("audit"), count=limit))
        return [json.loads(fields[b"event"]) for _id, fields in entries]

    def healthy(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.exceptions.RedisError:
            return False

    def close(self) -> None:
        self.client.close()

    # the change feed
    def _stream_info(self) -> dict[str, Any] | None:
        try:
            return self.client.xinfo_stream(self._k("changes"))
        except redis.exceptions.ResponseError:  # no stream yet
            return None

    def snapshot_marker(self) -> tuple[str, int]:
        """(position, changes ever added) to follow from after a snapshot taken *after* this call."""
        info = self._call(self._stream_info)
        if info is None:
            return "0-0", 0
        return info["last-generated-id"].decode(), int(info["entries-added"])

    def trimmed_past(self, position: str, consumed: int) -> bool:
        """Whether changes after ``position`` were trimmed away before this replica read them.

        Trimming drops the oldest entries. If the oldest entry left is newer than our position and fewer
        entries are left than were added since our position, some of ours are gone.
        """
        info = self._stream_info()
        if info is None or not info.get("first-entry"):
            return False
        first = info["first-entry"][0]
        unread = int(info["entries-added"]) - consumed
        return _stream_id(first) > _stream_id(position) and unread > int(info["length"])

    def follow(self, apply: Callable[[Change], None], reload: Callable[[], None], stop: threading.Event) -> None:
        """Apply changes after ``self.position`` until ``stop`` is set (runs in a thread)."""
        while not stop.is_set():
            try:
                if self.trimmed_past(self.position, self.consumed):
                    reload()
                    continue
                reply = self.client.xread({self._k("changes"): self.position}, count=500, block=1000)
            except redis.exceptions.RedisError:
                stop.wait(1.0)  # Redis away: retry; readiness reports it
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    try:
                        apply(
                            Change(
                                op=fields[b"op"].decode(),
                                gallery=fields[b"gallery"].decode(),
                                template_id=fields[b"template"].decode(),
                                subject_id=fields[b"subject"].decode(),
                                model=fields[b"model"].decode(),
                                vector=fields[b"vector"],
                                removed=json.loads(fields[b"removed"]) if b"removed" in fields else None,
                            )
                        )
                    except Exception:  # one bad entry must not stop this replica following the others
                        log.exception("change %s could not be applied; skipped", entry_id)
                    self.position = entry_id.decode()
                    self.consumed += 1
