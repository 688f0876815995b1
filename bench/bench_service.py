"""The identify workload end to end, against real `gader serve` processes: where a request's time goes
(decode, detector, embedding, search, aggregation, overhead), and throughput / p50 / p99 with 1 and 16
concurrent clients for in-process inference and for Triton (the tritonserver binary of the nvidia-pytriton
wheel, on the CPU here), with Triton's batching effect (model executions per inference).

    python -m bench.bench_service [--model casia-b-default] [--detector gader-detector] [--subjects 40]
                                  [--requests 96] [--clients 1 16] [--backends local triton]

Gallery: CASIA-B nm-01 at 90 degrees of the first ``--subjects`` subjects; probes: their nm-05 and nm-06 at
90 and 72 degrees (real silhouette sequences, 60-120 frames each), posted as .npz files.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from bench.report import update_section
from gader import triton_local
from gader.data import open_dataset
from gader.export import export_detector, export_gar, triton_name
from gader.model_io import load_model
from service.processes import free_port, start_server

CASIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "casia-b" / "train"
STAGES = ["decode", "detector", "embedding", "search", "aggregation"]


def npz(record) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=record.silhouettes)
    return buffer.getvalue()


MIN_PROBE_FRAMES = 20


def workload(subjects: int) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
    dataset = open_dataset(CASIA)
    ids = dataset.subjects[:subjects]
    keys = {info.key for info in dataset.infos}
    gallery = {s: npz(dataset.load(f"{s}/nm-01/090")) for s in tqdm(ids, desc="gallery", leave=False)}
    records = [
        dataset.load(f"{s}/{c}/{v}")
        for s in tqdm(ids, desc="probes", leave=False)
        for c in ("nm-05", "nm-06")
        for v in ("090", "072")
        if f"{s}/{c}/{v}" in keys
    ]
    # CASIA-B has a few stubs of 1-10 frames (e.g. 005/nm-06/090 has 3): the service rightly refuses them
    # as probes, and they are not the workload this measures.
    probes = [(record.subject, npz(record)) for record in records if record.frames >= MIN_PROBE_FRAMES]
    return gallery, probes


def enroll(server, gallery: dict[str, bytes]) -> None:
    with server.client() as api:
        api.post("/v1/galleries", json={"name": "bench"}).raise_for_status()
        for subject, data in gallery.items():
            api.post("/v1/galleries/bench/subjects", json={"subject_id": subject}).raise_for_status()
            api.post(
                f"/v1/galleries/bench/subjects/{subject}/templates", files={"file": ("g.npz", data)}
            ).raise_for_status()


def run_clients(server, probes: list[tuple[str, bytes]], clients: int, requests: int) -> dict:
    """``requests`` identify calls spread over ``clients`` threads, each with its own connection."""
    latencies: list[float] = []
    server_ms: list[float] = []  # the server's own time per request (its Server-Timing header)
    timings: list[dict[str, float]] = []
    correct = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal correct
        with server.client(timeout=600) as api:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                subject, data = probes[i % len(probes)]
                start = time.perf_counter()
                response = api.post(
                    "/v1/galleries/bench/identify", files={"file": ("p.npz", data)}, data={"top_k": "5"}
                )
                elapsed = (time.perf_counter() - start) * 1e3
                response.raise_for_status()
                body = response.json()
                with lock:
                    latencies.append(elapsed)
                    server_ms.append(float(response.headers["server-timing"].partition("dur=")[2]))
                    timings.append(body["timings_ms"])
                    correct += body["candidates"][0]["subject_id"] == subject

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies)
    return {
        "clients": clients,
        "requests": len(ms),
        "throughput": len(ms) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "rank1": correct / len(ms),
        "latencies": latencies,
        "server_ms": server_ms,
        "timings": timings,
    }


def triton_counts(http_port: int, model: str) -> tuple[int, int]:
    stats = httpx.get(f"http://127.0.0.1:{http_port}/v2/models/{model}/stats", timeout=10).json()
    entry = stats["model_stats"][0]
    return int(entry["inference_count"]), int(entry["execution_count"])


def split(result: dict) -> dict[str, float]:
    """Median time per stage, and the rest: the server's own overhead (its time from request to response
    minus the stages: upload parsing, auth, thread hand-offs, audit, JSON) and the client's (multipart
    encoding, loopback, response parsing: the client's latency minus the server's time)."""
    stages = {name: statistics.median(t.get(name, 0.0) for t in result["timings"]) for name in STAGES}
    stages["server overhead"] = statistics.median(
        server - sum(t.get(name, 0.0) for name in STAGES)
        for server, t in zip(result["server_ms"], result["timings"], strict=True)
    )
    stages["client + network"] = statistics.median(
        latency - server for latency, server in zip(result["latencies"], result["server_ms"], strict=True)
    )
    stages["server"] = statistics.median(result["server_ms"])
    stages["client"] = statistics.median(result["latencies"])
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="casia-b-default")
    parser.add_argument("--detector", default="gader-detector")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--backends", nargs="+", default=["local", "triton"], choices=["local", "triton"])
    args = parser.parse_args()
    if not CASIA.is_dir():
        raise SystemExit(f"{CASIA}: CASIA-B is not there (see ../shared/data/README.md)")
    gallery, probes = workload(args.subjects)
    model_id = load_model(args.model).card.id
    results: dict[str, list[dict]] = {}
    batching: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for backend in args.backends:
            extra = {"GADER_RATE_PER_MINUTE": "0"}
            triton = None
            if backend == "triton":
                repository = root / "model_repository"
                export_gar(args.model, repository)
                export_detector(args.detector, repository)
                grpc_port, http_port = free_port(), free_port()
                triton = triton_local.start(repository, grpc_port, http_port, workdir=root / "triton", device="cpu")
                extra["GADER_INFERENCE"] = f"triton://127.0.0.1:{grpc_port}"
            server = start_server(root / backend, (args.model, args.detector), extra=extra)
            try:
                enroll(server, gallery)
                run_clients(server, probes, 1, 4)  # warm up
                results[backend] = []
                for clients in args.clients:
                    before = triton_counts(http_port, triton_name(model_id)) if triton else None
                    result = run_clients(server, probes, clients, args.requests)
                    if triton:
                        after = triton_counts(http_port, triton_name(model_id))
                        batching[clients] = (after[0] - before[0], after[1] - before[1])
                    results[backend].append(result)
                    summary = {k: v for k, v in result.items() if k not in ("latencies", "timings", "server_ms")}
                    print(backend, clients, summary)
            finally:
                server.stop()
                if triton:
                    triton.stop()
    write_report(args, results, batching, len(probes))


def write_report(args, results: dict[str, list[dict]], batching: dict[int, tuple[int, int]], probes: int) -> None:
    lines = [
        f"Model `{args.model}`, detector `{args.detector}`; gallery of {args.subjects} CASIA-B subjects, "
        f"{args.requests} identify requests per row cycling over {probes} real probe sequences (.npz uploads); "
        "server and clients on the same machine. Latency is what the client measures.",
        "",
        "| backend | clients | requests/s | p50 ms | p99 ms | rank-1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in results.items():
        for r in rows:
            lines.append(
                f"| {backend} | {r['clients']} | {r['throughput']:.2f} | {r['p50']:.0f} | {r['p99']:.0f} | "
                f"{r['rank1']:.3f} |"
            )
    if batching:
        lines += ["", "Triton's dynamic batching (GAR model, from its statistics endpoint):", ""]
        lines += [
            f"- {clients} client(s): {inferences} inferences in {executions} model executions "
            f"({inferences / max(executions, 1):.2f} sequences per execution)"
            for clients, (inferences, executions) in batching.items()
        ]
    lines += [
        "",
        "Where one request's time goes (single client, medians, ms). The server reports its own time per "
        "request (`Server-Timing: app;dur=`): *server overhead* is that minus the stages (upload parsing, auth, "
        "thread hand-offs, audit, JSON); *client + network* is the client's latency minus it (multipart encoding "
        "of the upload, loopback, response parsing; here client and server share the same 2 cores). "
        "Non-model share: everything but detector, embedding and search, of the server's time and of the "
        "client's.",
        "",
        "| backend | " + " | ".join(STAGES) + " | server overhead | client + network | server | client "
        "| non-model, server | non-model, client |",
        "|---|" + "---:|" * (len(STAGES) + 6),
    ]
    for backend, rows in results.items():
        single = next((r for r in rows if r["clients"] == 1), rows[0])
        stages = split(single)
        core = stages["detector"] + stages["embedding"] + stages["search"]
        lines.append(
            f"| {backend} | "
            + " | ".join(f"{stages[name]:.1f}" for name in STAGES)
            + f" | {stages['server overhead']:.1f} | {stages['client + network']:.1f} | {stages['server']:.1f} | "
            f"{stages['client']:.1f} | {100 * (1 - core / stages['server']):.1f}% | "
            f"{100 * (1 - core / stages['client']):.1f}% |"
        )
    update_section("service", "Identify: latency split, local vs Triton, concurrency", "\n".join(lines))


if __name__ == "__main__":
    main()
