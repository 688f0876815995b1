"""The store interface, and the embedded SQLite store.

SQLite runs in WAL mode with ``synchronous=FULL``: a write returns only after it is on disk, so an
acknowledged enrollment survives ``kill -9`` and power loss. The audit log has its own connection with
``synchronous=NORMAL``: an audit record is in the WAL (it survives the process being killed) before the
request returns, without paying an fsync on every search; a power loss may drop the last few. One connection
per thread and purpose; writes are serialised by SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from service.errors import Conflict, NotFound
from service.gallery.records import ApiKey, Change, Gallery, Subject, Template, now


class Store(Protocol):
    """Where galleries, subjects, templates, keys and the audit log live. The FAISS index is derived."""

    kind: str

    def create_gallery(self, name: str, metadata: dict[str, Any], owner: str | None) -> Gallery: ...
    def get_gallery(self, name: str) -> Gallery | None: ...
    def list_galleries(self) -> list[Gallery]: ...
    def delete_gallery(self, name: str) -> None: ...
    def create_subject(self, gallery: str, subject_id: str, metadata: dict[str, Any]) -> Subject: ...
    def get_subject(self, gallery: str, subject_id: str) -> Subject | None: ...
    def list_subjects(self, gallery: str, after: str | None, limit: int) -> list[Subject]: ...
    def delete_subject(self, gallery: str, subject_id: str) -> list[str]: ...
    def add_template(self, template: Template) -> None: ...
    def delete_template(self, gallery: str, template_id: str) -> Template | None: ...
    def subject_templates(self, gallery: str, subject_id: str) -> list[Template]: ...
    def all_templates(self) -> Iterator[Template]: ...
    def count_templates(self, gallery: str | None = None) -> int: ...
    def add_key(self, key: ApiKey) -> None: ...
    def find_key(self, key_hash: str) -> ApiKey | None: ...
    def list_keys(self) -> list[ApiKey]: ...
    def revoke_key(self, key_id: str) -> bool: ...
    def audit(self, event: dict[str, Any]) -> None: ...
    def read_audit(self, limit: int = 100) -> list[dict[str, Any]]: ...
    def healthy(self) -> bool: ...
    def close(self) -> None: ...


# A subject with its template count.
SUBJECT_ROW = (
    "SELECT s.*, (SELECT COUNT(*) FROM templates t WHERE t.gallery = s.gallery AND t.subject_id = s.subject_id)"
    " AS templates FROM subjects s"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS galleries (
    name TEXT PRIMARY KEY, created REAL NOT NULL, metadata TEXT NOT NULL, owner TEXT
);
CREATE TABLE IF NOT EXISTS subjects (
    gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
    subject_id TEXT NOT NULL, created REAL NOT NULL, metadata TEXT NOT NULL,
    PRIMARY KEY (gallery, subject_id)
);
CREATE TABLE IF NOT EXISTS templates (
    template_id TEXT PRIMARY KEY, gallery TEXT NOT NULL, subject_id TEXT NOT NULL, model TEXT NOT NULL,
    vector BLOB NOT NULL, created REAL NOT NULL, quality TEXT NOT NULL,
    FOREIGN KEY (gallery, subject_id) REFERENCES subjects(gallery, subject_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS templates_by_subject ON templates(gallery, subject_id);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, name TEXT NOT NULL, scopes TEXT NOT NULL,
    galleries TEXT, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, event TEXT NOT NULL);
"""


class SQLiteStore:
    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(SCHEMA)

    def _connection(self, purpose: str = "db") -> sqlite3.Connection:
        db = getattr(self._local, purpose, None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            # data: durable on return (fsync per commit); audit: in the WAL on return, synced at checkpoints
            db.execute("PRAGMA synchronous=FULL" if purpose == "db" else "PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            setattr(self._local, purpose, db)
        return db

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._connection().execute(sql, params)

    # galleries
    def create_gallery(self, name: str, metadata: dict[str, Any], owner: str | None) -> Gallery:
        gallery = Gallery(name, now(), metadata, owner)
        try:
            self._write(
                "INSERT INTO galleries VALUES (?, ?, ?, ?)", (name, gallery.created, json.dumps(metadata), owner)
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"gallery {name!r} already exists") from None
        return gallery

    def get_gallery(self, name: str) -> Gallery | None:
        row = self._connection().execute("SELECT * FROM galleries WHERE name = ?", (name,)).fetchone()
        return None if row is None else Gallery(row["name"], row["created"], json.loads(row["metadata"]), row["owner"])

    def list_galleries(self) -> list[Gallery]:
        rows = self._connection().execute("SELECT * FROM galleries ORDER BY name").fetchall()
        return [Gallery(r["name"], r["created"], json.loads(r["metadata"]), r["owner"]) for r in rows]

    def delete_gallery(self, name: str) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM templates WHERE gallery = ?", (name,))
            db.execute("DELETE FROM subjects WHERE gallery = ?", (name,))
            deleted = db.execute("DELETE FROM galleries WHERE name = ?", (name,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not deleted:
            raise NotFound(f"no gallery {name!r}")

    # subjects
    def create_subject(self, gallery: str, subject_id: str, metadata: dict[str, Any]) -> Subject:
        subject = Subject(gallery, subject_id, now(), metadata)
        try:
            self._write(
                "INSERT INTO subjects VALUES (?, ?, ?, ?)", (gallery, subject_id, subject.created, json.dumps(metadata))
            )
        except sqlite3.IntegrityError:
            if self.get_gallery(gallery) is None:
                raise NotFound(f"no gallery {gallery!r}") from None
            raise Conflict(f"subject {subject_id!r} already exists in gallery {gallery!r}") from None
        return subject

    def _subject(self, row: sqlite3.Row) -> Subject:
        return Subject(row["gallery"], row["subject_id"], row["created"], json.loads(row["metadata"]), row["templates"])

    def get_subject(self, gallery: str, subject_id: str) -> Subject | None:
        row = (
            self._connection()
            .execute(
                f"{SUBJECT_ROW} WHERE gallery = ? AND subject_id = ?",
                (gallery, subject_id),
            )
            .fetchone()
        )
        return None if row is None else self._subject(row)

    def list_subjects(self, gallery: str, after: str | None, limit: int) -> list[Subject]:
        rows = (
            self._connection()
            .execute(
                f"{SUBJECT_ROW} WHERE gallery = ? AND subject_id > ? ORDER BY subject_id LIMIT ?",
                (gallery, after or "", limit),
            )
            .fetchall()
        )
        return [self._subject(r) for r in rows]

    def delete_subject(self, gallery: str, subject_id: str) -> list[str]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT template_id FROM templates WHERE gallery = ? AND subject_id = ?", (gallery, subject_id)
                )
            ]
            db.execute("DELETE FROM templates WHERE gallery = ? AND subject_id = ?", (gallery, subject_id))
            deleted = db.execute(
                "DELETE FROM subjects WHERE gallery = ? AND subject_id = ?", (gallery, subject_id)
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not deleted:
            raise NotFound(f"no subject {subject_id!r} in gallery {gallery!r}")
        return ids

    # templates
    def add_template(self, template: Template) -> None:
        try:
            self._write(
                "INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    template.template_id,
                    template.gallery,
                    template.subject_id,
                    template.model,
                    template.vector_bytes(),
                    template.created,
                    json.dumps(template.quality),
                ),
            )
        except sqlite3.IntegrityError:
            raise NotFound(f"no subject {template.subject_id!r} in gallery {template.gallery!r}") from None

    def _template(self, row: sqlite3.Row) -> Template:
        return Template(
            row["template_id"],
            row["gallery"],
            row["subject_id"],
            row["model"],
            Template.vector_from(row["vector"]),
            row["created"],
            json.loads(row["quality"]),
        )

    def delete_template(self, gallery: str, template_id: str) -> Template | None:
        db = self._connection()
        row = db.execute(
            "SELECT * FROM templates WHERE gallery = ? AND template_id = ?", (gallery, template_id)
        ).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM templates WHERE template_id = ?", (template_id,))
        return self._template(row)

    def subject_templates(self, gallery: str, subject_id: str) -> list[Template]:
        rows = (
            self._connection()
            .execute(
                "SELECT * FROM templates WHERE gallery = ? AND subject_id = ? ORDER BY created", (gallery, subject_id)
            )
            .fetchall()
        )
        return [self._template(r) for r in rows]

    def all_templates(self) -> Iterator[Template]:
        cursor = self._connection().execute("SELECT * FROM templates ORDER BY gallery, created")
        for row in cursor:
            yield self._template(row)

    def count_templates(self, gallery: str | None = None) -> int:
        if gallery is None:
            return self._connection().execute("SELECT COUNT(*) FROM templates").fetchone()[0]
        return self._connection().execute("SELECT COUNT(*) FROM templates WHERE gallery = ?", (gallery,)).fetchone()[0]

    # keys
    def add_key(self, key: ApiKey) -> None:
        self._write(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.key_id,
                key.key_hash,
                key.name,
                json.dumps(key.scopes),
                None if key.galleries is None else json.dumps(key.galleries),
                key.created,
                int(key.revoked),
            ),
        )

    def _key(self, row: sqlite3.Row) -> ApiKey:
        galleries = None if row["galleries"] is None else json.loads(row["galleries"])
        return ApiKey(
            row["key_id"],
            row["key_hash"],
            row["name"],
            json.loads(row["scopes"]),
            galleries,
            row["created"],
            bool(row["revoked"]),
        )

    def find_key(self, key_hash: str) -> ApiKey | None:
        row = self._connection().execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return None if row is None else self._key(row)

    def list_keys(self) -> list[ApiKey]:
        return [self._key(r) for r in self._connection().execute("SELECT * FROM api_keys ORDER BY created")]

    def revoke_key(self, key_id: str) -> bool:
        return self._write("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,)).rowcount > 0

    # audit
    def audit(self, event: dict[str, Any]) -> None:
        self._connection("audit").execute(
            "INSERT INTO audit_log (time, event) VALUES (?, ?)", (event.get("time", now()), json.dumps(event))
        )

    def read_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._connection().execute("SELECT event FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def healthy(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        for purpose in ("db", "audit"):
            db = getattr(self._local, purpose, None)
            if db is not None:
                db.close()
                setattr(self._local, purpose, None)


__all__ = ["Change", "SQLiteStore", "Store"]
