"""The gRPC front end with a real grpc client against a real `gader serve --grpc-port` process."""

from __future__ import annotations

import contextlib
import io
import json

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.grpc_gen import modules
from tests.service.conftest import free_port, start_server

pb, pb_grpc = modules()


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory, models):
    port = free_port()
    running = start_server(
        tmp_path_factory.mktemp("grpc") / "data",
        models,
        extra={"GADER_GRPC_PORT": str(port), "GADER_RATE_PER_MINUTE": "0"},
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    yield running, channel
    channel.close()
    running.stop()


def frames(seed: int, count: int = 10) -> np.ndarray:
    return (np.random.default_rng(seed).random((count, 64, 44)) > 0.6).astype(np.uint8) * 255


def npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=array)
    return buffer.getvalue()


def test_the_same_operations_as_rest(grpc_server):
    running, channel = grpc_server
    stub = pb_grpc.GaderStub(channel)
    key = (("x-api-key", running.admin_key),)
    gallery = stub.CreateGallery(pb.CreateGalleryRequest(name="grpc", metadata_json='{"site": "x"}'), metadata=key)
    assert gallery.name == "grpc" and json.loads(gallery.metadata_json) == {"site": "x"}
    for subject, seed in (("alice", 1), ("bob", 2)):
        stub.CreateSubject(pb.CreateSubjectRequest(gallery="grpc", subject_id=subject), metadata=key)
        template = stub.Enroll(
            pb.EnrollRequest(
                gallery="grpc", subject_id=subject, sequence=pb.Sequence(file=npz(frames(seed)), filename="a.npz")
            ),
            metadata=key,
        )
        assert template.template_id.startswith("t_") and template.detection.frames == 10
    raw = frames(2)
    identify = stub.Identify(
        pb.IdentifyRequest(
            gallery="grpc",
            top_k=2,
            threshold=0.5,
            sequence=pb.Sequence(frames=pb.Frames(count=10, height=64, width=44, masks=raw.tobytes())),
        ),
        metadata=key,
    )
    assert identify.candidates[0].subject_id == "bob" and identify.decision == "match"
    assert identify.operating_point == "custom" and identify.candidates[0].score == pytest.approx(1.0, abs=1e-4)
    verify = stub.Verify(
        pb.VerifyRequest(gallery="grpc", subject_id="alice", sequence=pb.Sequence(file=npz(frames(1)))), metadata=key
    )
    assert verify.match and verify.operating_point == "fmr=1e-3"
    page = stub.ListSubjects(pb.ListSubjectsRequest(gallery="grpc", limit=1), metadata=key)
    assert [s.subject_id for s in page.subjects] == ["alice"] and page.next_cursor
    detail = stub.GetSubject(pb.SubjectRef(gallery="grpc", subject_id="alice"), metadata=key)
    assert detail.templates == 1 and len(detail.template_list) == 1
    detection = stub.Detect(pb.DetectRequest(sequence=pb.Sequence(file=npz(frames(3)))), metadata=key)
    assert detection.frames == 10 and len(detection.frame_labels) == 10
    inside = [t for s in detection.segments for t in range(s.start, s.end + 1)]
    assert inside and detection.gait_frames == len(inside)  # segments exist: the checks below have something to count
    assert detection.walking_frames == sum(detection.frame_labels[t] == "full-gait" for t in inside)
    embedding = stub.Embed(pb.EmbedRequest(sequence=pb.Sequence(file=npz(frames(3)))), metadata=key)
    assert len(embedding.embedding) == embedding.channels * embedding.parts
    # 1:1 between two uploads: verify's score for the same two sequences, nothing stored; per-side answers in
    # order (the sides differ in length)
    longer = frames(5, count=12)
    compared = stub.Compare(
        pb.CompareRequest(
            first=pb.Sequence(file=npz(frames(1))),
            second=pb.Sequence(frames=pb.Frames(count=12, height=64, width=44, masks=longer.tobytes())),
            operating_point="fmr=1e-2",
        ),
        metadata=key,
    )
    against_alice = stub.Verify(
        pb.VerifyRequest(
            gallery="grpc", subject_id="alice", operating_point="fmr=1e-2", sequence=pb.Sequence(file=npz(longer))
        ),
        metadata=key,
    )
    assert compared.score == pytest.approx(against_alice.score, abs=2e-6) and compared.match == against_alice.match
    assert compared.threshold == 0.8 and [d.frames for d in compared.detections] == [10, 12]
    assert [s.kind for s in compared.sources] == ["silhouettes", "silhouettes"] and "total" in compared.timings_ms
    stub.DeleteSubject(pb.SubjectRef(gallery="grpc", subject_id="bob"), metadata=key)
    assert [g.templates for g in stub.ListGalleries(pb.ListGalleriesRequest(), metadata=key).galleries] == [1]
    one = stub.GetGallery(pb.GetGalleryRequest(name="grpc"), metadata=key)
    assert (one.name, one.templates, json.loads(one.metadata_json)) == ("grpc", 1, {"site": "x"})
    with running.client() as api:  # the same answers as REST's
        rest_gallery = api.get("/v1/galleries/grpc").json()
        rest_models = api.get("/v1/models").json()
    assert rest_gallery["templates"] == one.templates and rest_gallery["created"] == pytest.approx(one.created)
    models = stub.ListModels(pb.ListModelsRequest(), metadata=key)
    model = models.models[0]
    assert model.id == rest_models["models"][0]["id"] == "test-model"
    assert dict(model.operating_points) == rest_models["models"][0]["operating_points"]
    assert list(model.embedding_shape) == rest_models["models"][0]["embedding_shape"]
    assert models.detector == rest_models["detector"] and models.default_operating_point == "fmr=1e-3"


def test_each_upload_is_held_to_the_limit_while_compare_carries_two(tmp_path, models):
    """The transport admits a message with two uploads (Compare), so every RPC holds each upload to
    GADER_MAX_UPLOAD_BYTES itself, files and raw frames alike, before frames are converted; REST does the same."""
    limit = 2_000_000
    port = free_port()
    running = start_server(
        tmp_path / "data",
        models,
        extra={"GADER_GRPC_PORT": str(port), "GADER_MAX_UPLOAD_BYTES": str(limit), "GADER_RATE_PER_MINUTE": "0"},
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = pb_grpc.GaderStub(channel)
            key = (("x-api-key", running.admin_key),)
            near = npz(frames(6, count=640))  # 1.8 MB: under the limit; two of them are over limit + 1 MiB
            over = frames(7, count=800)  # 2.25 MB
            assert len(near) < limit < 2 * len(near) - (1 << 20) and over.nbytes > limit
            both = stub.Compare(
                pb.CompareRequest(first=pb.Sequence(file=near), second=pb.Sequence(file=near)), metadata=key
            )
            assert both.score == pytest.approx(1.0, abs=1e-4) and [d.frames for d in both.detections] == [640, 640]
            for call, message in (
                ("Detect", pb.DetectRequest(sequence=pb.Sequence(file=npz(over)))),
                (
                    "Embed",
                    pb.EmbedRequest(
                        sequence=pb.Sequence(frames=pb.Frames(count=800, height=64, width=44, masks=over.tobytes()))
                    ),
                ),
                ("Compare", pb.CompareRequest(first=pb.Sequence(file=near), second=pb.Sequence(file=npz(over)))),
            ):
                with pytest.raises(grpc.RpcError) as raised:
                    getattr(stub, call)(message, metadata=key)
                assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call
                assert f"exceeds the limit of {limit:,}" in raised.value.details()
                assert raised.value.details().startswith("second: ") == (call == "Compare")
            # Ratios count too (4 bytes each): 10 frames with 600,000 ratios carry 2.4 MB, in one message or
            # spread over a stream's chunks (the stream is refused as it grows, before its ratios are joined)
            few = frames(8, count=10)
            heavy = pb.Frames(count=10, height=64, width=44, masks=few.tobytes(), ratios=np.ones(600_000).tolist())
            with pytest.raises(grpc.RpcError) as raised:
                stub.Embed(pb.EmbedRequest(sequence=pb.Sequence(frames=heavy)), metadata=key)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "upload of 2,428,160 bytes exceeds" in raised.value.details()
            one = pb.Frames(count=1, height=64, width=44, masks=few[:1].tobytes(), ratios=np.ones(100_000).tolist())
            chunks = [pb.SequenceChunk(gallery="g", frames=one)] + [pb.SequenceChunk(frames=one) for _ in range(5)]
            with pytest.raises(grpc.RpcError) as raised:
                stub.IdentifyStream(iter(chunks), metadata=key)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the stream exceeds the upload limit" in raised.value.details()
        with running.client() as api:
            files = {"first": ("a.npz", near), "second": ("b.npz", npz(over))}
            refused = api.post("/v1/compare", files=files)
            assert refused.status_code == 413 and refused.json()["error"]["message"].startswith("second: ")
            assert refused.json()["error"]["details"] == {"side": "second"}
    finally:
        running.stop()


def test_client_streaming_upload_of_long_sequences(grpc_server):
    running, channel = grpc_server
    stub = pb_grpc.GaderStub(channel)
    key = (("x-api-key", running.admin_key),)
    stub.CreateGallery(pb.CreateGalleryRequest(name="stream"), metadata=key)
    stub.CreateSubject(pb.CreateSubjectRequest(gallery="stream", subject_id="long"), metadata=key)
    long_walk = frames(9, count=300)

    def chunks(gallery: str, **params):
        for start in range(0, 300, 50):  # six messages of 50 frames
            part = long_walk[start : start + 50]
            header = {"gallery": gallery, **params} if start == 0 else {}
            yield pb.SequenceChunk(**header, frames=pb.Frames(count=50, height=64, width=44, masks=part.tobytes()))

    template = stub.EnrollStream(chunks("stream", subject_id="long"), metadata=key)
    assert template.detection.frames == 300
    found = stub.IdentifyStream(chunks("stream", top_k=1, threshold=0.5), metadata=key)
    assert found.candidates[0].subject_id == "long" and found.decision == "match"
    file_bytes = npz(long_walk)
    pieces = [file_bytes[i : i + 65536] for i in range(0, len(file_bytes), 65536)]
    by_file = stub.VerifyStream(
        iter(
            [pb.SequenceChunk(gallery="stream", subject_id="long", file_part=pieces[0])]
            + [pb.SequenceChunk(file_part=p) for p in pieces[1:]]
        ),
        metadata=key,
    )
    assert by_file.match
    # A frames chunk whose RGB bytes do not fit its frames: named, INVALID_ARGUMENT (not UNKNOWN)
    bad_rgb = pb.Frames(count=50, height=64, width=44, masks=long_walk[:50].tobytes(), rgb=b"\x00" * 10)
    with pytest.raises(grpc.RpcError) as raised:
        stub.IdentifyStream(iter([pb.SequenceChunk(gallery="stream", frames=bad_rgb)]), metadata=key)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frames.rgb holds 10 bytes" in raised.value.details()


def test_a_video_streamed_in_parts_is_segmented_tracked_and_matched(grpc_server, shared_videos):
    running, channel = grpc_server
    stub = pb_grpc.GaderStub(channel)
    key = (("x-api-key", running.admin_key),)
    stub.CreateGallery(pb.CreateGalleryRequest(name="videos"), metadata=key)
    stub.CreateSubject(pb.CreateSubjectRequest(gallery="videos", subject_id="walker"), metadata=key)
    clip = (shared_videos / "casia-b-001-bg-01-000.avi").read_bytes()
    pieces = [clip[i : i + 65536] for i in range(0, len(clip), 65536)]

    def stream(**params):
        yield pb.SequenceChunk(**params, filename="walk.avi", file_part=pieces[0])
        yield from (pb.SequenceChunk(file_part=p) for p in pieces[1:])

    template = stub.EnrollStream(stream(gallery="videos", subject_id="walker"), metadata=key)
    assert template.source.kind == "video" and template.source.track_id == 1
    assert template.source.video_frames == 99 and template.source.tracks[0].frames >= 90
    found = stub.IdentifyStream(stream(gallery="videos", top_k=1, threshold=0.5), metadata=key)
    assert found.candidates[0].subject_id == "walker" and found.candidates[0].score == pytest.approx(1.0, abs=1e-4)
    detection = stub.Detect(pb.DetectRequest(sequence=pb.Sequence(file=clip, filename="walk.avi")), metadata=key)
    assert detection.source.kind == "video" and detection.frames == template.source.tracks[0].frames
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(pb.DetectRequest(sequence=pb.Sequence(file=clip, filename="walk.avi", track_id=5)), metadata=key)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no track 5" in raised.value.details()


@pytest.mark.parametrize(
    ("call", "request_message", "key", "code", "fragment"),
    [
        ("ListGalleries", pb.ListGalleriesRequest(), None, grpc.StatusCode.UNAUTHENTICATED, "missing API key"),
        ("ListGalleries", pb.ListGalleriesRequest(), "gdr_wrong", grpc.StatusCode.UNAUTHENTICATED, "invalid"),
        (
            "CreateGallery",
            pb.CreateGalleryRequest(name="Bad Name"),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "gallery name",
        ),
        (
            "CreateGallery",
            pb.CreateGalleryRequest(name="dup"),
            "admin",
            grpc.StatusCode.ALREADY_EXISTS,
            "already exists",
        ),
        (
            "CreateGallery",
            pb.CreateGalleryRequest(name="m", metadata_json="[1]"),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "JSON object",
        ),
        (
            "CreateGallery",
            pb.CreateGalleryRequest(name="m", metadata_json='{"note": "\\ud83d"}'),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "lone surrogate",
        ),
        (
            "CreateSubject",
            pb.CreateSubjectRequest(gallery="dup", subject_id="s", metadata_json='{"n": ' + "1" * 5000 + "}"),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "metadata_json: ",
        ),
        (
            "CreateSubject",
            pb.CreateSubjectRequest(
                gallery="dup", subject_id="s", metadata_json='{"n": ' + "[" * 3000 + "]" * 3000 + "}"
            ),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "nested too deeply",
        ),
        (
            "GetSubject",
            pb.SubjectRef(gallery="nowhere", subject_id="x"),
            "admin",
            grpc.StatusCode.NOT_FOUND,
            "no gallery",
        ),
        (
            "Identify",
            pb.IdentifyRequest(gallery="dup", sequence=pb.Sequence(file=b"junk")),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "not an .npz or .zip",
        ),
        (
            "Identify",
            pb.IdentifyRequest(gallery="dup"),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "give a file or frames",
        ),
        (
            "Identify",
            pb.IdentifyRequest(
                gallery="dup", sequence=pb.Sequence(frames=pb.Frames(count=2, height=64, width=44, masks=b"xx"))
            ),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "count x height x width",
        ),
        (
            "Compare",
            pb.CompareRequest(first=pb.Sequence(file=npz(frames(4)))),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "second: give a sequence",
        ),
        (
            "Compare",
            pb.CompareRequest(first=pb.Sequence(file=b"junk"), second=pb.Sequence(file=npz(frames(4)))),
            "admin",
            grpc.StatusCode.INVALID_ARGUMENT,
            "first: ",
        ),
        (
            "Identify",
            pb.IdentifyRequest(gallery="dup", operating_point="fmr=0.5", sequence=pb.Sequence(file=npz(frames(4)))),
            "admin",
            grpc.StatusCode.FAILED_PRECONDITION,
            "unknown operating point",
        ),
    ],
)
def test_errors_map_to_status_codes(grpc_server, call, request_message, key, code, fragment):
    running, channel = grpc_server
    stub = pb_grpc.GaderStub(channel)
    admin = (("x-api-key", running.admin_key),)
    with contextlib.suppress(grpc.RpcError):  # exists from an earlier case
        stub.CreateGallery(pb.CreateGalleryRequest(name="dup"), metadata=admin)
    metadata = None if key is None else (("x-api-key", running.admin_key if key == "admin" else key),)
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, call)(request_message, metadata=metadata)
    assert raised.value.code() == code
    assert fragment in raised.value.details()
    trailers = dict(raised.value.trailing_metadata())
    assert trailers["gader-http-status"][0] == "4" and trailers["gader-error-code"]  # what REST's envelope says
    names = [g.name for g in stub.ListGalleries(pb.ListGalleriesRequest(), metadata=admin).galleries]
    assert "m" not in names  # nothing refused was stored


def test_errors_carry_the_rest_envelopes_status_code_and_details(grpc_server):
    """FAILED_PRECONDITION is REST's 409 (nothing to compare) and 422 (no usable gait, unknown operating point)
    alike: the trailers say which, and carry the details REST gives (here the side of a compare; a refused
    probe's detection report is checked below)."""
    running, channel = grpc_server
    stub = pb_grpc.GaderStub(channel)
    admin = (("x-api-key", running.admin_key),)
    with contextlib.suppress(grpc.RpcError):
        stub.CreateGallery(pb.CreateGalleryRequest(name="trailers"), metadata=admin)
    with contextlib.suppress(grpc.RpcError):
        stub.CreateSubject(pb.CreateSubjectRequest(gallery="trailers", subject_id="empty"), metadata=admin)
    walk = pb.Sequence(file=npz(frames(8, 30)))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Verify(pb.VerifyRequest(gallery="trailers", subject_id="empty", sequence=walk), metadata=admin)
    trailers = dict(raised.value.trailing_metadata())
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION and trailers["gader-http-status"] == "409"
    assert trailers["gader-error-code"] == "failed_precondition" and "gader-error-details" not in trailers
    with pytest.raises(grpc.RpcError) as raised:
        stub.Identify(pb.IdentifyRequest(gallery="trailers", operating_point="fmr=0.5", sequence=walk), metadata=admin)
    trailers = dict(raised.value.trailing_metadata())
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION and trailers["gader-http-status"] == "422"
    with pytest.raises(grpc.RpcError) as raised:
        stub.Compare(pb.CompareRequest(first=walk, second=pb.Sequence(file=b"junk")), metadata=admin)
    trailers = dict(raised.value.trailing_metadata())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and trailers["gader-http-status"] == "400"
    assert json.loads(trailers["gader-error-details"]) == {"side": "second"}


def test_details_over_4_kb_lose_their_frame_labels_then_all_but_their_keys():
    from service.errors import Unprocessable
    from service.grpc_server import error_trailers

    report = {"usable": False, "segments": [], "frame_labels": ["full-standing"] * 2000}
    trailers = dict(error_trailers(Unprocessable("no usable gait", {"detection": report, "source": {"kind": "npz"}})))
    assert json.loads(trailers["gader-error-details"]) == {
        "detection": {"usable": False, "segments": []},
        "source": {"kind": "npz"},
    }
    huge = dict(error_trailers(Unprocessable("x", {"a": "y" * 5000, "b": 1}, retry_after=3)))
    assert json.loads(huge["gader-error-details"]) == {"truncated": True, "keys": ["a", "b"]}
    assert huge["retry-after"] == "3" and huge["gader-http-status"] == "422"


def test_health_checking_and_reflection(grpc_server):
    _running, channel = grpc_server
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "gader.v1.Gader"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=service)).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"gader.v1.Gader", "grpc.health.v1.Health"} <= names
