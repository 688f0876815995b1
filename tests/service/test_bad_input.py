"""Bad input: each case gets the right 4xx with a message that names the problem, and nothing stored changes."""

from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import pytest

from tests.videos import audio_only_mp4, encode, headers_only_avi, truncated_avi, walking_box


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # small on the wire: the limits tested are frames, not bytes
    return buffer.getvalue()


GOOD = npz(silhouettes=(np.random.default_rng(0).random((12, 64, 44)) > 0.6).astype(np.uint8) * 255)
PICKLED = npz(silhouettes=np.array([{"os": "system"}], dtype=object))
TRUNCATED = GOOD[: len(GOOD) // 2]
BLANK = npz(silhouettes=np.zeros((50, 64, 64), np.uint8))  # no person in any frame
# A gader-written file (aligned uint8 with meta) whose meta's own "meta" entry is not an object
BAD_META = npz(
    silhouettes=(np.random.default_rng(1).random((12, 64, 44)) > 0.6).astype(np.uint8) * 255,
    meta=np.array(json.dumps({"meta": "abc"})),
)
# 2200x1000 pixels (over the 1920x1080 limit) in a PNG of a few kB: refused from its header, never decoded
HUGE_PNG = cv2.imencode(".png", np.zeros((1000, 2200), np.uint8))[1].tobytes()
WALKING_AVI = encode(walking_box(40), container="avi")


def zip_of(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def f(data: bytes, name: str = "probe.npz") -> dict:
    return {"file": (name, data, "application/octet-stream")}


# (name, method, path, kwargs, status, message fragment, key) -- key: "admin", "none", "bad", "identify-only"
CASES = [
    ("corrupt npz", "post", "/v1/galleries/g/identify", {"files": f(b"PK\x03\x04garbage")}, 400, "corrupt", "admin"),
    ("truncated npz", "post", "/v1/galleries/g/identify", {"files": f(TRUNCATED)}, 400, "", "admin"),
    (
        "not an archive",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(b"\x89PNG....")},
        400,
        "not an .npz or .zip",
        "admin",
    ),
    ("empty file", "post", "/v1/galleries/g/identify", {"files": f(b"")}, 400, "empty file", "admin"),
    ("pickle inside npz", "post", "/v1/galleries/g/identify", {"files": f(PICKLED)}, 400, "pickle", "admin"),
    (
        "wrong dtype",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((9, 64, 44))))},
        400,
        "must be uint8",
        "admin",
    ),
    (
        "wrong shape",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((9, 64), np.uint8)))},
        400,
        "[T, H, W]",
        "admin",
    ),
    (
        "no silhouettes array",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(masks=np.zeros((9, 64, 44), np.uint8)))},
        400,
        "missing array 'silhouettes'",
        "admin",
    ),
    (
        "empty sequence",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((0, 64, 44), np.uint8)))},
        400,
        "at least 5",
        "admin",
    ),
    (
        "one frame",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((1, 64, 44), np.uint8) + 255))},
        400,
        "at least 5",
        "admin",
    ),
    (
        "too many frames",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((301, 64, 44), np.uint8)))},
        400,
        "at most 300",
        "admin",
    ),
    (
        "ratios of the wrong length",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((9, 64, 44), np.uint8), ratios=np.ones(3)))},
        400,
        "ratios",
        "admin",
    ),
    (
        "huge upload",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(b"PK" + b"\0" * 300_000)},
        413,
        "exceeds the limit",
        "admin",
    ),
    (
        "zip without png",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(zip_of(**{"a.txt": b"x"}), "masks.zip")},
        400,
        "no .png masks",
        "admin",
    ),
    (
        "full frames without a person",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(npz(silhouettes=np.zeros((9, 240, 320), np.uint8)))},
        400,
        "no frame holds a person",
        "admin",
    ),
    ("missing file", "post", "/v1/galleries/g/identify", {"data": {"top_k": "3"}}, 400, "file", "admin"),
    (
        "unknown gallery",
        "post",
        "/v1/galleries/nowhere/identify",
        {"files": f(GOOD)},
        404,
        "no gallery 'nowhere'",
        "admin",
    ),
    ("missing key", "get", "/v1/galleries", {}, 401, "missing API key", "none"),
    ("invalid key", "get", "/v1/galleries", {}, 401, "invalid or revoked", "bad"),
    (
        "wrong scope",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "eve"}},
        403,
        "'enroll' scope",
        "identify-only",
    ),
    (
        "other tenant",
        "post",
        "/v1/galleries/other/identify",
        {"files": f(GOOD)},
        404,
        "no gallery 'other'",
        "identify-only",
    ),
    (
        "NaN threshold",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"threshold": "nan"}},
        400,
        "threshold",
        "admin",
    ),
    (
        "threshold above 1",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"threshold": "1.5"}},
        400,
        "threshold: Input should be less than or equal to 1",
        "admin",
    ),
    (
        "threshold and operating point",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"threshold": "0.5", "operating_point": "fmr=1e-3"}},
        400,
        "either",
        "admin",
    ),
    (
        "unknown operating point",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"operating_point": "fmr=0.5"}},
        422,
        "unknown operating point",
        "admin",
    ),
    ("top_k 0", "post", "/v1/galleries/g/identify", {"files": f(GOOD), "data": {"top_k": "0"}}, 400, "top_k", "admin"),
    (
        "top_k 10^6",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"top_k": "1000000"}},
        400,
        "top_k",
        "admin",
    ),
    (
        "top_k not a number",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"top_k": "many"}},
        400,
        "top_k",
        "admin",
    ),
    ("bad gallery name", "post", "/v1/galleries", {"json": {"name": "Bad Name!"}}, 400, "gallery name", "admin"),
    ("duplicate gallery", "post", "/v1/galleries", {"json": {"name": "g"}}, 409, "already exists", "admin"),
    (
        "duplicate subject",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "alice"}},
        409,
        "already exists",
        "admin",
    ),
    (
        "metadata not an object",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "x", "metadata": [1, 2]}},
        400,
        "metadata",
        "admin",
    ),
    (
        "subject id with control characters",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "a\nb"}},
        400,
        "subject_id",
        "admin",
    ),
    (
        "enroll into unknown subject",
        "post",
        "/v1/galleries/g/subjects/nobody/templates",
        {"files": f(GOOD)},
        404,
        "no subject 'nobody'",
        "admin",
    ),
    (
        "verify unknown subject",
        "post",
        "/v1/galleries/g/verify",
        {"files": f(GOOD), "data": {"subject_id": "nobody"}},
        404,
        "no subject 'nobody'",
        "admin",
    ),
    ("verify without subject", "post", "/v1/galleries/g/verify", {"files": f(GOOD)}, 400, "subject_id", "admin"),
    (
        "delete unknown template",
        "delete",
        "/v1/galleries/g/subjects/alice/templates/t_missing",
        {},
        404,
        "no template",
        "admin",
    ),
    (
        "truncated video",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(truncated_avi(), "walk.avi")},
        400,
        "truncated",
        "admin",
    ),
    (
        "video without frames",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(headers_only_avi(), "walk.avi")},
        400,
        "no frame could be decoded",
        "admin",
    ),
    ("audio only", "post", "/v1/detect", {"files": f(audio_only_mp4(), "talk.mp4")}, 400, "no video stream", "admin"),
    (
        "huge video resolution",
        "post",
        "/v1/embed",
        {"files": f(encode(np.zeros((2, 1088, 2048, 3), np.uint8)), "big.mp4")},
        400,
        "2048x1088 exceed",
        "admin",
    ),
    (
        "video named .npz",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(WALKING_AVI, "walk.npz")},
        400,
        "this is a video",
        "admin",
    ),
    (
        "unsupported extension",
        "post",
        "/v1/galleries/g/subjects/alice/templates",
        {"files": f(WALKING_AVI, "walk.exe")},
        400,
        "unsupported file type '.exe'",
        "admin",
    ),
    (
        "unknown video track",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(WALKING_AVI, "walk.avi"), "data": {"track_id": "7"}},
        400,
        "no track 7",
        "admin",
    ),
    (
        "track of a non-video",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(GOOD), "data": {"track_id": "1"}},
        400,
        "videos only",
        "admin",
    ),
    (
        "blank frames only",
        "post",
        "/v1/galleries/g/subjects/alice/templates",
        {"files": f(BLANK)},
        400,
        "no frame holds a silhouette",
        "admin",
    ),
    ("meta's meta not an object", "post", "/v1/galleries/g/identify", {"files": f(BAD_META)}, 400, "'meta'", "admin"),
    (
        "huge frame in a small PNG",
        "post",
        "/v1/galleries/g/identify",
        {"files": f(zip_of(**{"0001.png": HUGE_PNG}), "masks.zip")},
        400,
        "2200x1000, over 2,073,600 pixels",
        "admin",
    ),
    ("gallery name with a newline", "post", "/v1/galleries", {"json": {"name": "abc\n"}}, 400, "gallery name", "admin"),
    (
        "subject id with a slash",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "a/b"}},
        400,
        "other than / % ? #",
        "admin",
    ),
    (
        "subject id with a percent sign (x%41 would reach xA)",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "x%41"}},
        400,
        "subject_id",
        "admin",
    ),
    ("subject id '..'", "post", "/v1/galleries/g/subjects", {"json": {"subject_id": ".."}}, 400, "subject_id", "admin"),
    (
        "NaN in metadata",
        "post",
        "/v1/galleries",
        {"content": b'{"name": "n", "metadata": {"a": NaN}}', "headers": {"Content-Type": "application/json"}},
        400,
        "NaN",
        "admin",
    ),
    (
        "lone surrogate in gallery metadata (half of an escaped emoji)",
        "post",
        "/v1/galleries",
        {"content": b'{"name": "n", "metadata": {"note": "\\ud83d"}}', "headers": {"Content-Type": "application/json"}},
        400,
        "lone surrogate \\ud83d",
        "admin",
    ),
    (
        "lone surrogate in subject metadata",
        "post",
        "/v1/galleries/g/subjects",
        {
            "content": b'{"subject_id": "zed", "metadata": {"n": ["\\ud800"]}}',
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "valid unicode",
        "admin",
    ),
    (
        "subject id with a lone surrogate",
        "post",
        "/v1/galleries/g/subjects",
        {"content": b'{"subject_id": "ab\\ud800"}', "headers": {"Content-Type": "application/json"}},
        400,
        "printable",
        "admin",
    ),
    (
        "subject id with a zero-width space",
        "post",
        "/v1/galleries/g/subjects",
        {"json": {"subject_id": "a\u200bb"}},
        400,
        "printable",
        "admin",
    ),
    (
        "malformed JSON",
        "post",
        "/v1/galleries",
        {"content": b'{"name": ', "headers": {"Content-Type": "application/json"}},
        400,
        "body: not valid JSON at character",
        "admin",
    ),
    (
        "no body",
        "post",
        "/v1/galleries",
        {"headers": {"Content-Type": "application/json"}},
        400,
        "body: Field required",
        "admin",
    ),
    (
        "verify against a subject without templates",
        "post",
        "/v1/galleries/g/verify",
        {"files": f(GOOD), "data": {"subject_id": "carol"}},
        409,
        "no template enrolled",
        "admin",
    ),
    ("bad cursor", "get", "/v1/galleries/g/subjects", {"params": {"cursor": "%%%"}}, 400, "cursor", "admin"),
    ("limit 0", "get", "/v1/galleries/g/subjects", {"params": {"limit": "0"}}, 400, "limit", "admin"),
]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, models):
    from tests.service.conftest import start_server

    running = start_server(
        tmp_path_factory.mktemp("bad-input") / "data",
        models,
        extra={"GADER_MAX_UPLOAD_BYTES": "200000", "GADER_MAX_FRAMES": "300", "GADER_SEGMENTER": "background"},
    )
    with running.client() as admin:
        for name in ("g", "other"):
            admin.post("/v1/galleries", json={"name": name})
        admin.post("/v1/galleries/g/subjects", json={"subject_id": "alice"})
        assert admin.post("/v1/galleries/g/subjects/alice/templates", files=f(GOOD)).status_code == 201
        admin.post("/v1/galleries/g/subjects", json={"subject_id": "carol"})  # no template
    keys = running.env.copy()
    import subprocess
    import sys

    identify_key = subprocess.run(
        [sys.executable, "-m", "gader", "keys", "create", "--scopes", "identify", "--galleries", "g"],
        capture_output=True,
        text=True,
        env=keys,
        timeout=120,
    ).stdout.strip()
    yield running, identify_key
    running.stop()


def snapshot(running) -> dict:
    with running.client() as admin:
        galleries = admin.get("/v1/galleries").json()
        subjects = {g["name"]: admin.get(f"/v1/galleries/{g['name']}/subjects").json() for g in galleries["galleries"]}
    return {"galleries": galleries, "subjects": subjects}


def test_the_table_has_at_least_twenty_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize(
    ("name", "method", "path", "kwargs", "status", "fragment", "key"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(limited_server, name, method, path, kwargs, status, fragment, key):
    running, identify_key = limited_server
    before = snapshot(running)
    headers = {"admin": running.admin_key, "none": None, "bad": "gdr_not-a-real-key", "identify-only": identify_key}[
        key
    ]
    with running.client(headers) as api:
        if headers is None:
            api.headers.pop("X-API-Key")
        response = getattr(api, method)(path, **kwargs)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    error = response.json()["error"]
    assert fragment.lower() in error["message"].lower(), f"{name}: {error['message']}"
    if status == 409:  # nothing to verify against is a precondition, not a duplicate
        assert error["code"] == ("failed_precondition" if "verify" in path else "already_exists"), name
    assert snapshot(running) == before, f"{name} changed the store"
