"""One FAISS index per gallery, derived from the store, with subject-level search.

Vectors are L2-normalised flattenings of part embeddings (each part normalised, scaled by 1/sqrt(parts)),
so an inner product is the mean per-part cosine; the service reports similarity = (1 + cosine) / 2 in
[0, 1]. Exact search (``IndexIDMap2(IndexFlatIP)``) by default; galleries beyond a size use an IVF index
(trained on the gallery, ``nprobe`` tuned for recall). A readers-writer lock lets searches run together
while an enrollment waits for them. When faiss-gpu and CUDA are present a GPU copy serves searches; GPU
indexes cannot remove ids, so it is rebuilt in the background after changes and swapped in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)
_gpu_resources = None
_gpu_lock = threading.Lock()
# Removed template ids a gallery remembers: a stale add is a change stream entry the replica has not read
# yet, so only the most recent removals matter.
REMOVED_MEMORY = 100_000
GPU_MAX_K = 2048  # the most neighbours a FAISS GPU index returns per query (its k-selection limit)


def gpu_resources():
    """The process's shared FAISS GPU resources, or None without faiss-gpu or a CUDA device."""
    global _gpu_resources
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    with _gpu_lock:
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        return _gpu_resources


def flatten_embedding(embedding: np.ndarray) -> np.ndarray:
    """[d, p] part embedding -> float32 [d * p] unit vector whose inner products are mean part cosines."""
    parts = embedding.shape[-1]
    unit = embedding / np.maximum(np.linalg.norm(embedding, axis=0, keepdims=True), 1e-12)  # [d, p]
    return (unit.T.reshape(-1) / np.sqrt(parts)).astype(np.float32)  # part-major [p * d]


def similarity(cosine: np.ndarray | float) -> np.ndarray | float:
    """Mean part cosine in [-1, 1] -> the service's similarity in [0, 1]."""
    return (1.0 + np.clip(cosine, -1.0, 1.0)) / 2.0


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self):
        with self._condition:
            while self._writer or self._waiting_writers:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def write(self):
        with self._condition:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._condition.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


@dataclass
class Hit:
    template_id: str
    subject_id: str
    score: float  # similarity in [0, 1]


@dataclass
class SubjectHit:
    subject_id: str
    score: float  # best template similarity
    template_id: str  # that template


class GalleryIndex:
    """Templates of one gallery: FAISS ids <-> template ids, subjects, and the index itself."""

    def __init__(self, dim: int, ivf_threshold: int = 200_000, use_gpu: bool | None = None) -> None:
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.use_gpu = gpu_resources() is not None if use_gpu is None else use_gpu
        self._gpu = None  # GPU copy of _index serving searches, None while stale
        self._generation = 0  # bumped by every change; a GPU copy of an older generation is dropped
        self.lock = ReadWriteLock()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._kind = "flat"
        self._next_id = 0
        self._template_of: dict[int, str] = {}
        self._id_of: dict[str, int] = {}
        self._subject_of: dict[int, str] = {}
        self._templates_by_subject: dict[str, set[str]] = {}
        # Template ids removed recently. Ids are random and never reused, so an add of a removed id is stale:
        # with Redis a replica applies its own writes at once and the change stream's copies later, so an
        # add can arrive after the removal that followed it (and must not bring the template back).
        self._removed: OrderedDict[str, None] = OrderedDict()

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def on_gpu(self) -> bool:
        return self._gpu is not None

    def _changed(self) -> None:
        """Called under the write lock after every change: drop the GPU copy and clone a fresh one in the
        background (GPU indexes cannot remove ids, so a copy is rebuilt rather than patched)."""
        self._generation += 1
        self._gpu = None
        if self.use_gpu and len(self._id_of):
            threading.Thread(target=self._clone_to_gpu, args=(self._generation,), daemon=True).start()

    def _clone_to_gpu(self, generation: int) -> None:
        resources = gpu_resources()
        if resources is None:
            return
        with self.lock.read():
            if generation != self._generation:
                return
            try:
                copy = faiss.index_cpu_to_gpu(resources, 0, self._index)
            except RuntimeError as error:  # e.g. an index type without a GPU implementation
                log.warning("gallery index stays on the CPU: %s", error)
                self.use_gpu = False
                return
        with self.lock.write():
            if generation == self._generation:
                self._gpu = copy

    def wait_for_gpu(self, timeout: float = 30.0) -> bool:
        """Block until the GPU copy is current (tests and benchmarks); False when there is none."""
        deadline = time.monotonic() + timeout
        while self._gpu is None and self.use_gpu and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._gpu is not None

    def __len__(self) -> int:
        return len(self._id_of)

    def __contains__(self, template_id: str) -> bool:
        return template_id in self._id_of

    def add(self, items: Iterable[tuple[str, str, np.ndarray]]) -> int:
        """Add (template_id, subject_id, vector [dim]) items; ids already present or removed before are
        skipped (idempotent, and a late copy of an add does not undo a removal)."""
        fresh = [(t, s, v) for t, s, v in items if t not in self._id_of and t not in self._removed]
        if not fresh:
            return 0
        with self.lock.write():
            fresh = [(t, s, v) for t, s, v in fresh if t not in self._id_of and t not in self._removed]
            if not fresh:
                return 0
            ids = np.arange(self._next_id, self._next_id + len(fresh), dtype=np.int64)
            self._next_id += len(fresh)
            vectors = np.stack([np.asarray(v, dtype=np.float32) for _t, _s, v in fresh])  # [n, dim]
            if self._kind == "ivf" and not self._index.is_trained:
                self._index.train(vectors)
            self._index.add_with_ids(vectors, ids)
            for faiss_id, (template_id, subject_id, _v) in zip(ids.tolist(), fresh, strict=True):
                self._template_of[faiss_id] = template_id
                self._id_of[template_id] = faiss_id
                self._subject_of[faiss_id] = subject_id
                self._templates_by_subject.setdefault(subject_id, set()).add(template_id)
            self._changed()
        if self._kind == "flat" and len(self) > self.ivf_threshold:
            self.rebuild("ivf")
        return len(fresh)

    def remove(self, template_ids: Iterable[str]) -> int:
        """Remove templates (unknown ids are remembered too: their add may still be on its way)."""
        with self.lock.write():
            return self._remove_locked(list(template_ids))

    def remove_subject(self, subject_id: str) -> int:
        with self.lock.write():  # the subject's templates are read under the lock: a writer may be changing them
            return self._remove_locked(list(self._templates_by_subject.get(subject_id, ())))

    def _remove_locked(self, template_ids: list[str]) -> int:
        """``remove`` with the write lock held (ids are looked up here: the stream follower and a request
        may remove the same template at once)."""
        for template_id in template_ids:
            self._removed[template_id] = None
            self._removed.move_to_end(template_id)
        while len(self._removed) > REMOVED_MEMORY:
            self._removed.popitem(last=False)
        ids = [self._id_of[t] for t in template_ids if t in self._id_of]
        if not ids:
            return 0
        ids_array = np.array(ids, dtype=np.int64)
        if self._kind == "ivf":  # the IVF's hash-table direct map removes by an explicit id array only
            self._index.remove_ids(faiss.IDSelectorArray(len(ids_array), faiss.swig_ptr(ids_array)))
        else:
            self._index.remove_ids(ids_array)
        for faiss_id in ids:
            template_id = self._template_of.pop(faiss_id)
            del self._id_of[template_id]
            subject = self._subject_of.pop(faiss_id)
            members = self._templates_by_subject.get(subject)
            if members is not None:
                members.discard(template_id)
                if not members:
                    del self._templates_by_subject[subject]
        self._changed()
        return len(ids)

    def subject_templates(self, subject_id: str) -> list[str]:
        with self.lock.read():  # a writer may be changing the set
            return sorted(self._templates_by_subject.get(subject_id, ()))

    def present_vectors(self, template_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """The templates of ``template_ids`` still in the index and their vectors [n, dim] (the exact index keeps
        them; IVF reconstructs), read under one lock: a removal between a request's lookup and its read leaves
        the others, not a KeyError."""
        with self.lock.read():
            present = [t for t in template_ids if t in self._id_of]
            vectors = [self._index.reconstruct(self._id_of[t]) for t in present]
        return present, np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Nearest templates of each query [q, dim]."""
        with self.lock.read():
            k = min(k, len(self))  # read under the lock: a removal may empty the index while a search waits
            if k == 0:
                return [[] for _ in range(len(queries))]
            # FAISS's GPU indexes answer at most 2,048 neighbours; search_subjects may widen k past that
            index = self._gpu if self._gpu is not None and k <= GPU_MAX_K else self._index
            cosines, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
            results = []  # names looked up under the same lock: a removal cannot run between the two
            for row_cosines, row_ids in zip(cosines, ids, strict=True):
                results.append(
                    [
                        Hit(self._template_of[i], self._subject_of[i], float(similarity(c)))
                        for c, i in zip(row_cosines, row_ids, strict=True)
                        if i >= 0 and i in self._template_of
                    ]
                )
        return results

    def search_subjects(self, query: np.ndarray, top_k: int) -> list[SubjectHit]:
        """The ``top_k`` best subjects (each scored by its best template), widening the template search until
        enough distinct subjects are found or the gallery is exhausted."""
        k = max(top_k * 4, 16)
        while True:
            hits = self.search(query[None], k)[0]
            best: dict[str, SubjectHit] = {}
            for hit in hits:  # hits are sorted by score: the first per subject is its best
                if hit.subject_id not in best:
                    best[hit.subject_id] = SubjectHit(hit.subject_id, hit.score, hit.template_id)
            if len(best) >= top_k or k >= len(self):
                return list(best.values())[:top_k]
            k = min(k * 4, len(self))

    def rebuild(self, kind: str) -> None:
        """Rebuild as ``flat`` or ``ivf`` from the stored vectors (same ids)."""
        with self.lock.write():
            ids = np.array(sorted(self._template_of), dtype=np.int64)
            vectors = np.zeros((0, self.dim), np.float32)
            if len(ids):
                vectors = np.stack([self._index.reconstruct(int(i)) for i in ids])
            if kind == "ivf":
                # ~4 sqrt(n) lists, but at least 39 training points per list (FAISS's k-means minimum)
                lists = max(1, min(int(4 * np.sqrt(max(len(ids), 1))), len(ids) // 39))
                quantizer = faiss.IndexFlatIP(self.dim)
                inner = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
                inner.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
                if len(ids):
                    inner.train(vectors)
                inner.nprobe = min(lists, max(8, lists // 16))
                index = inner  # IVF keeps ids itself; its direct map reconstructs them
            else:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if len(ids):
                index.add_with_ids(vectors, ids)
            self._index, self._kind = index, kind
            self._changed()
