"""A fault of the service itself (a bug, not a bad request) still answers in the documented shape: REST's
error envelope with status 500, gRPC's INTERNAL, and neither shows the exception's text to the client.

Every error a request can cause on purpose is tested for real elsewhere (test_bad_input.py, test_grpc.py).
A bug cannot be produced for real once fixed, so here one is injected: the core's authentication raises a
RuntimeError. That is the only stand-in in these tests.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.grpc_server import GaderServicer, pb
from service.runtime import build_core, close_core
from service.settings import Settings

SECRET = "secret internals of the failure"


@pytest.fixture
def failing_core(tmp_path, models):
    model, detector = models
    settings = Settings(data_dir=tmp_path / "data", model=str(model), detector=str(detector), device="cpu")
    core = build_core(settings, announce_admin_key=False)

    def broken(_key):
        raise RuntimeError(SECRET)

    core.authenticate = broken  # the injected bug
    yield settings, core
    asyncio.run(close_core(core))


def test_rest_answers_a_bug_with_the_error_envelope_and_no_internals(failing_core):
    settings, core = failing_core
    with TestClient(create_app(settings, core), raise_server_exceptions=False) as client:
        response = client.get("/v1/galleries", headers={"X-API-Key": "gdr_anything"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal" and "server's log" in error["message"]
    assert SECRET not in response.text


class Aborted(Exception):
    """What grpc.aio's context.abort does: end the call by raising."""


class RecordingContext:
    """The parts of a grpc.aio ServicerContext that GaderServicer._call uses."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self):
        return (("x-api-key", "gdr_anything"),)

    def set_trailing_metadata(self, _metadata) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted


def test_grpc_answers_a_bug_with_internal_and_no_internals(failing_core, caplog):
    _settings, core = failing_core
    context = RecordingContext()
    with pytest.raises(Aborted):
        asyncio.run(GaderServicer(core).ListGalleries(pb.ListGalleriesRequest(), context))
    assert context.code == grpc.StatusCode.INTERNAL and "server's log" in context.details
    assert SECRET not in context.details
    assert SECRET in caplog.text  # the traceback goes to the server's log
