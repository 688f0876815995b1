"""The galleries a replica serves: FAISS indexes built from the store, kept current from local writes
and (with Redis) from the change stream other replicas write to."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from service.gallery.index import GalleryIndex
from service.gallery.records import Change, Template
from service.gallery.store import Store

log = logging.getLogger("gader.gallery")


class GalleryManager:
    def __init__(self, store: Store, model_id: str, dim: int, ivf_threshold: int = 200_000) -> None:
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self._indexes: dict[str, GalleryIndex] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.load_seconds = 0.0
        self.skipped_other_models = 0

    def index(self, gallery: str) -> GalleryIndex:
        with self._lock:
            if gallery not in self._indexes:
                self._indexes[gallery] = GalleryIndex(self.dim, self.ivf_threshold)
            return self._indexes[gallery]

    def find(self, gallery: str) -> GalleryIndex | None:
        """The gallery's index if this replica has one (reads must not create one: a request in flight while
        its gallery is deleted would bring the index back)."""
        with self._lock:
            return self._indexes.get(gallery)

    def drop(self, gallery: str) -> None:
        with self._lock:
            self._indexes.pop(gallery, None)

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {name: len(index) for name, index in self._indexes.items()}

    def load(self) -> None:
        """(Re)build every index from the store: the index is derived data."""
        start = time.perf_counter()
        marker = self.store.snapshot_marker() if self.store.kind == "redis" else None  # before the snapshot
        fresh: dict[str, list[tuple[str, str, np.ndarray]]] = {}
        skipped = 0
        for gallery in self.store.list_galleries():
            fresh.setdefault(gallery.name, [])
        for template in self.store.all_templates():
            if template.model != self.model_id or template.vector.shape != (self.dim,):
                skipped += 1  # enrolled with another model: its embeddings live in another space
                continue
            fresh.setdefault(template.gallery, []).append((template.template_id, template.subject_id, template.vector))
        indexes = {}
        for name, items in fresh.items():
            index = GalleryIndex(self.dim, self.ivf_threshold)
            for start_at in range(0, len(items), 50_000):
                index.add(items[start_at : start_at + 50_000])
            indexes[name] = index
        with self._lock:
            self._indexes = indexes
        if marker is not None:
            self.store.position, self.store.consumed = marker
        self.skipped_other_models = skipped
        self.load_seconds = time.perf_counter() - start
        log.info(
            "loaded %d templates in %d galleries in %.2f s (%d of other models skipped)",
            sum(len(i) for i in indexes.values()),
            len(indexes),
            self.load_seconds,
            skipped,
        )

    def add(self, template: Template) -> None:
        self.index(template.gallery).add([(template.template_id, template.subject_id, template.vector)])

    def apply(self, change: Change) -> None:
        """One change from the stream; applying it twice changes nothing."""
        if change.op == "add_template":
            vector = Template.vector_from(change.vector)
            if change.model == self.model_id and vector.shape == (self.dim,):
                self.index(change.gallery).add([(change.template_id, change.subject_id, vector)])
        elif change.op == "remove_template":
            with self._lock:
                index = self._indexes.get(change.gallery)
            if index is not None:
                index.remove([change.template_id])
        elif change.op == "remove_subject":
            with self._lock:
                index = self._indexes.get(change.gallery)
            if index is None:
                return
            if change.removed is None:  # an entry from before changes named their templates
                index.remove_subject(change.subject_id)
            else:  # exactly those: the subject may have been created again here since, with new templates
                index.remove(change.removed)
        elif change.op == "remove_gallery":
            if change.removed is None:
                self.drop(change.gallery)
                return
            with self._lock:
                index = self._indexes.get(change.gallery)
                if index is not None:
                    index.remove(change.removed)  # remembered as removed: a late copy of their add stays out
                    if len(index) == 0:
                        del self._indexes[change.gallery]

    def start(self) -> None:
        """Follow the change stream (Redis) in a background thread."""
        if self.store.kind != "redis" or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.store.follow, args=(self.apply, self.load, self._stop), name="gader-follow", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
