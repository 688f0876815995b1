"""Gallery search at scale: latency and memory of exact and IVF indexes for 10^3, 10^5 and 10^6 templates,
IVF recall against exact search, and how long a replica takes to rebuild its indexes from the store
(restart) with 10^5 templates in SQLite and in Redis.

    python -m bench.bench_search [--sizes 1000 100000 1000000] [--restart 100000]

Vectors are synthetic but shaped like enrolled gait templates, at the dimension of the shipped model
(GaitBase w0.25: 64 channels x 8 parts = 512): subject centres lie in a 64-dimensional subspace (trained
embeddings concentrate in few directions, so look-alike subjects exist and neighbours are meaningful), each
subject has 4 templates scattered around its centre (mean intra-subject cosine ~0.75). Queries are new samples
of enrolled subjects.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from bench.report import update_section
from service.gallery.index import GalleryIndex
from service.gallery.manager import GalleryManager
from service.gallery.records import Template, now
from service.gallery.store import SQLiteStore

DIM = 512
TEMPLATES_PER_SUBJECT = 4
SPREAD = 0.58  # noise norm relative to the unit centre: cosine(template, centre) ~ 0.86
SUBSPACE = 64


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_gallery(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """centres [s, D], vectors [n, D], subject of each vector [n]."""
    subjects = max(1, size // TEMPLATES_PER_SUBJECT)
    basis = rng.standard_normal((SUBSPACE, DIM), dtype=np.float32)  # [k, D]
    centres = unit(rng.standard_normal((subjects, SUBSPACE), dtype=np.float32) @ basis)  # [s, D]
    owner = np.arange(size) % subjects
    vectors = np.empty((size, DIM), np.float32)
    for start in range(0, size, 100_000):  # chunks keep the temporaries small at 10^6
        stop = min(size, start + 100_000)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) * (SPREAD / np.sqrt(DIM))
        vectors[start:stop] = unit(centres[owner[start:stop]] + noise)
    return centres, vectors, owner


def queries_for(centres: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    who = rng.integers(0, len(centres), count)
    noise = rng.standard_normal((count, DIM), dtype=np.float32) * (SPREAD / np.sqrt(DIM))
    return unit(centres[who] + noise), who


def latencies(index: GalleryIndex, queries: np.ndarray, top_k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
    times, results = [], []
    for query in queries:
        start = time.perf_counter()
        hits = index.search_subjects(query, top_k)
        times.append(time.perf_counter() - start)
        results.append([h.subject_id for h in hits])
    return np.array(times) * 1e3, results


def bench_size(size: int, rng: np.random.Generator, query_count: int) -> list[dict]:
    centres, vectors, owner = make_gallery(size, rng)
    queries, truth = queries_for(centres, query_count, rng)
    items = [(f"t{i}", f"s{owner[i]}", vectors[i]) for i in range(size)]
    rows = []
    exact_top: list[list[str]] = []
    for kind in ("exact", "ivf"):
        before = rss_bytes()
        start = time.perf_counter()
        index = GalleryIndex(DIM, ivf_threshold=10**9, use_gpu=False)
        for chunk in range(0, size, 50_000):
            index.add(items[chunk : chunk + 50_000])
        if kind == "ivf":
            index.rebuild("ivf")
        build = time.perf_counter() - start
        memory = rss_bytes() - before
        index.search_subjects(queries[0], 10)  # warm up
        ms, top = latencies(index, queries)
        rank1 = float(np.mean([t[0] == f"s{w}" for t, w in zip(top, truth, strict=True)]))
        if kind == "exact":
            exact_top = top
            recall = 1.0
        else:  # how many of exact search's top-10 subjects the IVF search also returns
            recall = float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact_top, top, strict=True)]))
        detail = ""
        if kind == "ivf":
            inner = faiss.downcast_index(index._index)
            detail = f"{inner.nlist} lists, nprobe {inner.nprobe}"
        rows.append(
            {
                "size": size,
                "kind": kind,
                "detail": detail,
                "build_s": build,
                "memory_mb": memory / 2**20,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "recall": recall,
                "rank1": rank1,
            }
        )
        print(rows[-1], flush=True)
        del index
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(store, size: int, rng: np.random.Generator, label: str) -> None:
    _centres, vectors, owner = make_gallery(size, rng)
    store.create_gallery("bench", {}, None)
    for subject in tqdm(range(int(owner.max()) + 1), desc=f"{label}: subjects", leave=False):
        store.create_subject("bench", f"s{subject}", {})
    for i in tqdm(range(size), desc=f"{label}: templates", leave=False):
        store.add_template(Template(f"t{i}", "bench", f"s{owner[i]}", "bench-model", vectors[i], now()))


def restart(size: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "gallery.db")
        # Filling is not what is measured: skip the per-write fsync the service does for durability.
        store._connection().execute("PRAGMA synchronous=OFF")
        fill(store, size, rng, "sqlite")
        store.close()
        manager = GalleryManager(SQLiteStore(Path(tmp) / "gallery.db"), "bench-model", DIM)
        manager.load()
        rows.append({"store": "SQLite (WAL)", "templates": sum(manager.sizes().values()), "s": manager.load_seconds})

        if shutil.which("redis-server"):
            from service.gallery.redis_store import RedisStore

            port = free_port()
            server = subprocess.Popen(
                ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
                stdout=subprocess.DEVNULL,
            )
            try:
                url = f"redis://127.0.0.1:{port}/0"
                for _ in range(100):
                    try:
                        RedisStore(url).client.ping()
                        break
                    except Exception:
                        time.sleep(0.05)
                fill(RedisStore(url), size, rng, "redis")
                manager = GalleryManager(RedisStore(url), "bench-model", DIM)
                manager.load()
                rows.append({"store": "Redis 7", "templates": sum(manager.sizes().values()), "s": manager.load_seconds})
            finally:
                server.terminate()
                server.wait()
    for row in rows:
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--restart", type=int, default=100_000, help="templates for the restart measurement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = [row for size in args.sizes for row in bench_size(size, rng, args.queries)]
    restarts = restart(args.restart, rng) if args.restart else []

    lines = [
        f"Synthetic {DIM}-d templates ({TEMPLATES_PER_SUBJECT} per subject), {args.queries} single-probe "
        f"subject searches (top 10) per row, FAISS {faiss.__version__} on {args.threads} threads. Memory is the "
        "process's resident-set growth while building the index (vectors, FAISS structures and the id maps). "
        "Recall: share of exact search's top-10 subjects that IVF also returns; rank-1: the probe's own subject "
        "first.",
        "",
        "| templates | index | build s | memory MiB | p50 ms | p99 ms | recall@10 vs exact | rank-1 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = r["kind"] + (f" ({r['detail']})" if r["detail"] else "")
        lines.append(
            f"| {r['size']:,} | {kind} | {r['build_s']:.2f} | {r['memory_mb']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['recall']:.3f} | {r['rank1']:.3f} |"
        )
    if restarts:
        lines += [
            "",
            "Restart: a replica rebuilding every gallery index from the store (`GalleryManager.load`).",
            "",
            "| store | templates | load s |",
            "|---|---:|---:|",
        ]
        lines += [f"| {r['store']} | {r['templates']:,} | {r['s']:.2f} |" for r in restarts]
    update_section("search", "Gallery search and restart", "\n".join(lines))


if __name__ == "__main__":
    main()
