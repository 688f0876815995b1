"""``gader serve``, ``gader keys``, ``gader client``, ``gader calibrate``: the service from the command line.

Registered into the ``gader`` command by ``gader.cli.app``; web imports happen inside the commands, so the
rest of the CLI starts without them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer

from gader.errors import GaderError

keys_app = typer.Typer(
    help="API keys: create, list, revoke (in the store GADER_STORE / GADER_DATA_DIR point at).", no_args_is_help=True
)
client_app = typer.Typer(help="Talk to a running service (GADER_URL, GADER_API_KEY).", no_args_is_help=True)


def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default GADER_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="HTTP port (default GADER_PORT or 8000)."),
    grpc_port: int | None = typer.Option(None, "--grpc-port", help="Also serve gRPC on this port (GADER_GRPC_PORT)."),
) -> None:
    """Start the matching service: REST (OpenAPI docs at /docs) and, with --grpc-port, gRPC, on one core."""
    import asyncio

    import uvicorn

    from service.app import create_app
    from service.runtime import build_core, close_core
    from service.settings import Settings, redacted

    settings = Settings()
    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "grpc_port": grpc_port}.items() if v}
    settings = settings.model_copy(update=overrides)

    async def run() -> None:
        core = build_core(settings)
        grpc_server = None
        if settings.grpc_port:
            from service.grpc_server import start_grpc

            grpc_server = await start_grpc(core, settings.host, settings.grpc_port)
        print(
            f"gader: serving on http://{settings.host}:{settings.port} (docs at /docs)"
            + (f" and gRPC {settings.host}:{settings.grpc_port}" if settings.grpc_port else "")
            + f"; store {redacted(settings.store)}, inference {redacted(settings.inference)}, "
            f"model {core.inference.model_id}",
            file=sys.stderr,
            flush=True,
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, core), host=settings.host, port=settings.port, log_level="info")
        )
        try:
            await server.serve()
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            await close_core(core)

    asyncio.run(run())


def _keyring():
    from service.runtime import open_store
    from service.security import KeyRing
    from service.settings import Settings

    return KeyRing(open_store(Settings()))


@keys_app.command("create")
def keys_create(
    scopes: str = typer.Option(..., "--scopes", help="Comma-separated: admin, enroll, identify, verify."),
    galleries: str | None = typer.Option(
        None, "--galleries", help="Limit the key to these galleries (comma-separated)."
    ),
    name: str = typer.Option("", "--name", help="A label for people reading `keys list`."),
) -> None:
    """Create a key and print it (alone, on stdout). Only its hash is stored: it cannot be shown again."""
    from service.errors import ServiceError

    try:
        secret, _record = _keyring().create(
            [s.strip() for s in scopes.split(",") if s.strip()],
            None if galleries is None else [g.strip() for g in galleries.split(",") if g.strip()],
            name,
        )
    except ServiceError as exc:
        raise GaderError(exc.message) from None
    print(secret)


@keys_app.command("list")
def keys_list() -> None:
    """Key ids, names, scopes, galleries and state (never the keys themselves)."""
    for key in _keyring().store.list_keys():
        galleries = "all galleries" if key.galleries is None else ",".join(key.galleries)
        state = "revoked" if key.revoked else "active"
        print(f"{key.key_id}\t{state}\t{','.join(key.scopes)}\t{galleries}\t{key.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id from `gader keys list`.")) -> None:
    if not _keyring().store.revoke_key(key_id):
        raise GaderError(f"no key {key_id!r}")
    print(f"revoked {key_id}", file=sys.stderr)


# --- client ----------------------------------------------------------------------------------------


def _client():
    import httpx

    url = os.environ.get("GADER_URL", "http://127.0.0.1:8000")
    key = os.environ.get("GADER_API_KEY")
    if not key:
        raise GaderError("set GADER_API_KEY to an API key (gader keys create)")
    return httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300)


def _call(method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
    import httpx

    try:
        with _client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise GaderError(f"cannot reach the service: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise GaderError(f"{response.status_code}: {message}")
    return response.json() if response.content else None


def _file(path: Path, field: str = "file") -> dict[str, Any]:
    if not path.is_file():
        raise GaderError(f"{path}: no such file")
    return {field: (path.name, path.read_bytes())}


def _decision(threshold: float | None, operating_point: str | None) -> dict[str, str]:
    form = {}
    if threshold is not None:
        form["threshold"] = str(threshold)
    if operating_point is not None:
        form["operating_point"] = operating_point
    return form


def _print_verdict(result: dict[str, Any], as_json: bool) -> None:
    """A 1:1 answer (verify, compare): the JSON as it came, or one line."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verdict = "MATCH" if result["match"] else "no match"
    print(f"{verdict}: score {result['score']:.4f}, threshold {result['threshold']:.3f} ({result['operating_point']})")


@client_app.command("create-gallery")
def client_create_gallery(name: str = typer.Argument(...)) -> None:
    print(json.dumps(_call("POST", "/v1/galleries", json={"name": name}), indent=2))


@client_app.command("enroll")
def client_enroll(
    file: Path = typer.Argument(..., help="Sequence file (.npz or .zip of PNG masks)."),
    gallery: str = typer.Option(..., "--gallery"),
    subject: str = typer.Option(..., "--subject", help="The subject's id (created if it does not exist yet)."),
) -> None:
    """Enroll a template for a subject."""
    try:
        _call("POST", f"/v1/galleries/{gallery}/subjects", json={"subject_id": subject})
    except GaderError as exc:
        if not str(exc).startswith("409"):  # 409: the subject exists already, which is fine
            raise
    print(
        json.dumps(
            _call("POST", f"/v1/galleries/{gallery}/subjects/{quote(subject, safe='')}/templates", files=_file(file)),
            indent=2,
        )
    )


@client_app.command("identify")
def client_identify(
    file: Path = typer.Argument(...),
    gallery: str = typer.Option(..., "--gallery"),
    top_k: int = typer.Option(5, "--top-k"),
    threshold: float | None = typer.Option(None, "--threshold"),
    operating_point: str | None = typer.Option(None, "--operating-point"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Who is this? Ranked subjects and the decision."""
    result = _call(
        "POST",
        f"/v1/galleries/{gallery}/identify",
        files=_file(file),
        data={"top_k": str(top_k), **_decision(threshold, operating_point)},
    )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['decision']} (threshold {result['threshold']:.3f} at {result['operating_point']})")
    for rank, candidate in enumerate(result["candidates"], 1):
        print(f"{rank:3d}. {candidate['subject_id']}\t{candidate['score']:.4f}")


@client_app.command("verify")
def client_verify(
    file: Path = typer.Argument(...),
    gallery: str = typer.Option(..., "--gallery"),
    subject: str = typer.Option(..., "--subject"),
    threshold: float | None = typer.Option(None, "--threshold"),
    operating_point: str | None = typer.Option(None, "--operating-point"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Is this the claimed subject?"""
    result = _call(
        "POST",
        f"/v1/galleries/{gallery}/verify",
        files=_file(file),
        data={"subject_id": subject, **_decision(threshold, operating_point)},
    )
    _print_verdict(result, as_json)


@client_app.command("compare")
def client_compare(
    first: Path = typer.Argument(..., help="One sequence file or video."),
    second: Path = typer.Argument(..., help="The other."),
    threshold: float | None = typer.Option(None, "--threshold"),
    operating_point: str | None = typer.Option(None, "--operating-point"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Are these two walks the same person? 1:1 without a gallery; nothing is stored."""
    result = _call(
        "POST",
        "/v1/compare",
        files={**_file(first, "first"), **_file(second, "second")},
        data=_decision(threshold, operating_point),
    )
    _print_verdict(result, as_json)


# --- calibration -----------------------------------------------------------------------------------


def operating_threshold(impostor: Any, far: float) -> float:
    """The service's similarity threshold at a false match rate, from impostor similarities in [0, 1]: the k-th
    highest (k = rate x pairs; ``metrics.impostor_threshold_at_far``), or where the pairs are too few for
    the rate (k < 1) just above the highest, so that no calibration impostor passes; 6 decimals, rounded up
    (never below the score it stands for), at most 1."""
    import math

    import numpy as np

    from gader import metrics

    threshold = metrics.impostor_threshold_at_far(impostor, far)
    if not math.isfinite(threshold):
        threshold = float(np.nextafter(np.max(impostor), np.inf))
    return min(1.0, math.ceil(threshold * 1e6) / 1e6)


def calibrate(
    model: str = typer.Option(..., "--model", help="Model directory (its model.json is updated)."),
    data: Path = typer.Option(..., "--data", help="Held-out labelled data: people the model has not seen."),
    gallery: str = typer.Option(
        "nm-01,nm-02,nm-03,nm-04", "--gallery-conditions", help="Conditions that form the gallery; empty: all pairs."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Thresholds on the service's similarity at FMR 1e-2 / 1e-3 / 1e-4, stored with the model."""
    import numpy as np

    from gader import metrics
    from gader.data import open_dataset
    from gader.embedding import embed_dataset
    from gader.model_io import ModelCard, load_model, writable_model
    from service.gallery.index import flatten_embedding, similarity

    path = writable_model(model, "gader calibrate")  # calibrating writes model.json
    loaded = load_model(path)
    embeddings, infos = embed_dataset(loaded.embedder, open_dataset(data), loaded.embedder.input_size)
    vectors = np.stack([flatten_embedding(e) for e in embeddings])
    subjects = np.array([i.subject for i in infos])
    conditions = np.array([i.condition.lower() for i in infos])
    wanted = [c.strip().lower() for c in gallery.split(",") if c.strip()]
    in_gallery = np.isin(conditions, wanted) if wanted else np.ones(len(infos), bool)
    probes = ~in_gallery if wanted and (~in_gallery).any() else np.ones(len(infos), bool)
    scores = similarity(vectors[probes] @ vectors[in_gallery].T)
    same = subjects[probes][:, None] == subjects[in_gallery][None, :]
    if not wanted:  # all pairs once, no self-pairs
        upper = np.triu(np.ones(scores.shape, bool), k=1)
        genuine, impostor = scores[upper & same], scores[upper & ~same]
    else:
        genuine, impostor = scores[same], scores[~same]
    metrics.roc_curve(genuine, impostor)  # refuses, by name, calibration data without pairs of both kinds
    fmrs = metrics.OPERATING_FMRS
    names = {far: metrics.operating_point_name(far) for far in fmrs}
    points = {names[far]: operating_threshold(impostor, far) for far in fmrs}
    tar = {far: float(np.mean(genuine >= points[names[far]])) for far in fmrs}
    for far in fmrs:
        if far * impostor.size < 1:
            print(
                f"warning: {names[far]} is below what {impostor.size:,} impostor pairs can resolve "
                f"(1/{impostor.size:,} = {1 / impostor.size:.1e}): its threshold is that of no false match on "
                "this data",
                file=sys.stderr,
            )
    card = ModelCard.from_json((path / "model.json").read_text(), str(path))
    card.operating_points = points
    card.metrics["calibration"] = {
        "data": str(data),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "fmr_resolution": 1.0 / impostor.size,
        "tmr_at_fmr": {f"{k:.0e}": round(100 * v, 2) for k, v in tar.items()},
    }
    (path / "model.json").write_text(card.to_json())
    result = {"operating_points": points, **card.metrics["calibration"]}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"calibrated {path} on {data}: {int(genuine.size):,} genuine and {int(impostor.size):,} impostor pairs")
    for far in fmrs:
        print(f"  {names[far]}: similarity threshold {points[names[far]]:.4f}, TMR {100 * tar[far]:.2f} %")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(client_app, name="client")
    app.command("calibrate")(calibrate)
