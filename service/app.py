"""The FastAPI application: routers, error mapping, request metrics, lifecycle."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import routes
from service.core import MatchingCore
from service.errors import ServiceError
from service.runtime import build_core, close_core
from service.settings import Settings

DESCRIPTION = """
Gait matching with GADER: enroll people into galleries from silhouette sequences (or videos), then ask who a
probe is (1:N identify) or whether it is a claimed person (1:1 verify).

**Authentication**: every route except `/healthz`, `/readyz` and `/metrics` needs an `X-API-Key` header.
The first start prints an admin key once; `gader keys create --scopes enroll,identify` makes more.

**Scores** are similarities in [0, 1]: `(1 + mean part cosine) / 2` between GAR embeddings. A subject's score
is its best template's. **Decisions** use a threshold: give `threshold`, or an `operating_point` calibrated
on held-out data (`fmr=1e-2`, `fmr=1e-3`, `fmr=1e-4`: the false match rate it was set for); by default the
service's `GADER_DEFAULT_OPERATING_POINT` (`fmr=1e-3`). `GET /v1/models` lists the calibrated points.

**Uploads**: `.npz` with `silhouettes` uint8 `[T, H, W]` (aligned 64x44 / 64x64, or full-frame masks, which
the service pretreats and records ratios for), optional `ratios` float32 `[T]`, optional `rgb` uint8
`[T, H, W, 3]`; or a `.zip` of PNG masks in frame order. Nothing uploaded is ever unpickled.

**Timing**: every answer carries `Server-Timing: app;dur=<ms>`, the service's own time for the request;
identify and verify answers also break it down by stage in `timings_ms`.
"""


def _error(exc: ServiceError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


class RequestMetrics:
    """Request counts and latencies per route, and a ``Server-Timing: app;dur=<ms>`` header with the
    server's own time, so a client can tell its own and the network's time from the service's.

    A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``), which runs
    every request through an extra task and a wrapped body stream.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                server_ms = (time.perf_counter() - start) * 1e3
                headers = [*message.get("headers", []), (b"server-timing", f"app;dur={server_ms:.2f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
            if metrics is not None:
                name = getattr(scope.get("route"), "path", "unmatched")
                metrics.requests.labels(name, scope["method"], str(status)).inc()
                metrics.latency.labels(name, scope["method"]).observe(time.perf_counter() - start)


def create_app(settings: Settings | None = None, core: MatchingCore | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = core is None
        app.state.core = core or build_core(settings)
        app.state.metrics = app.state.core.metrics
        yield
        if owned:
            await close_core(app.state.core)

    app = FastAPI(title="GADER matching service", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    for router in (routes.galleries, routes.subjects, routes.matching, routes.analysis, routes.system):
        app.include_router(router)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Errors raised by the framework itself (unparsable body, unknown route): the same shape as ours.
        codes = {400: "invalid_argument", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        body = {"error": {"code": codes.get(exc.status_code, "error"), "message": str(exc.detail), "details": {}}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields, problems = [], []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            if error.get("type") == "json_invalid":  # its location is a character offset, not a field
                reason = error.get("ctx", {}).get("error", "")
                where, message = (
                    "body",
                    f"not valid JSON at character {where or 0}" + (f" ({reason})" if reason else ""),
                )
            else:
                where, message = where or "body", error.get("msg", "invalid")
            fields.append(where)
            problems.append(f"{where}: {message}")
        body = {
            "error": {
                "code": "invalid_argument",
                "message": "; ".join(problems) or "invalid request",
                "details": {"fields": fields},
            }
        }
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        # A fault of the service, not of the request: the client gets the documented envelope without the
        # internals; Starlette re-raises the exception after this answer, so the server's log has the traceback.
        body = {
            "error": {"code": "internal", "message": "internal error (the server's log has the details)", "details": {}}
        }
        return JSONResponse(body, status_code=500)

    app.add_middleware(RequestMetrics)
    return app
