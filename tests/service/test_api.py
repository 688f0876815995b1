"""The REST API end to end: a real `gader serve` process, real SQLite, real CASIA-B sequences."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from gader.data import open_dataset

pytestmark = pytest.mark.shared_data


def upload(record) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=record.silhouettes)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sequences(casia_train) -> dict[str, bytes]:
    dataset = open_dataset(casia_train)
    keys = ["001/nm-01/090", "001/nm-02/090", "002/nm-01/090", "002/nm-02/090", "003/nm-01/090", "004/nm-01/072"]
    return {key: upload(dataset.load(key)) for key in keys}


def files(data: bytes, name: str = "probe.npz") -> dict:
    return {"file": (name, data, "application/octet-stream")}


def test_galleries_subjects_templates_identify_verify_delete(server, sequences):
    with server.client() as api:
        assert api.post("/v1/galleries", json={"name": "lobby", "metadata": {"site": "north"}}).status_code == 201
        for subject, key in (("alice", "001/nm-01/090"), ("bob", "002/nm-01/090"), ("carol", "003/nm-01/090")):
            assert (
                api.post("/v1/galleries/lobby/subjects", json={"subject_id": subject, "metadata": {"n": 1}}).status_code
                == 201
            )
            response = api.post(f"/v1/galleries/lobby/subjects/{subject}/templates", files=files(sequences[key]))
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["template_id"].startswith("t_") and body["model"] == "test-model"
            assert body["detection"]["frames"] > 0 and "gait_fraction" in body["quality"]
            # the template says how many frames its embedding came from, and how they relate to the detection
            detection, quality = body["detection"], body["quality"]
            assert quality["gait_frames"] == detection["gait_frames"] >= detection["walking_frames"]
            walking = detection["walking_frames"]
            assert quality["embedded_frames"] == (walking if walking >= 3 else detection["gait_frames"])
        second = api.post(
            "/v1/galleries/lobby/subjects/alice/templates", files=files(sequences["001/nm-02/090"])
        ).json()

        # identify: candidates are subjects (alice's two templates count once), the enrolled sequence finds itself
        result = api.post(
            "/v1/galleries/lobby/identify", files=files(sequences["002/nm-01/090"]), data={"top_k": "10"}
        ).json()
        assert result["candidates"][0]["subject_id"] == "bob"
        assert result["candidates"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert len(result["candidates"]) == 3 == len({c["subject_id"] for c in result["candidates"]})
        assert result["decision"] == "match" and result["operating_point"] == "fmr=1e-3" and result["threshold"] == 0.9
        assert {"decode", "inference", "search", "total"} <= set(result["timings_ms"])
        strict = api.post(
            "/v1/galleries/lobby/identify", files=files(sequences["004/nm-01/072"]), data={"threshold": "0.99999"}
        ).json()
        assert strict["decision"] == "no_match" and strict["operating_point"] == "custom"

        # verify compares with every template of the claimed subject and reports the best one
        verdict = api.post(
            "/v1/galleries/lobby/verify", files=files(sequences["001/nm-02/090"]), data={"subject_id": "alice"}
        ).json()
        assert verdict["match"] is True and verdict["template_id"] == second["template_id"]
        one = api.post(
            "/v1/galleries/lobby/verify",
            files=files(sequences["001/nm-02/090"]),
            data={"subject_id": "alice", "template_id": second["template_id"], "operating_point": "fmr=1e-2"},
        ).json()
        assert one["score"] == pytest.approx(1.0, abs=1e-4) and one["threshold"] == 0.8

        # subjects: detail, pagination by cursor
        detail = api.get("/v1/galleries/lobby/subjects/alice").json()
        assert detail["templates"] == 2 and detail["metadata"] == {"n": 1}
        first_page = api.get("/v1/galleries/lobby/subjects", params={"limit": 2}).json()
        assert [s["subject_id"] for s in first_page["subjects"]] == ["alice", "bob"] and first_page["next_cursor"]
        last_page = api.get(
            "/v1/galleries/lobby/subjects", params={"limit": 2, "cursor": first_page["next_cursor"]}
        ).json()
        assert [s["subject_id"] for s in last_page["subjects"]] == ["carol"] and last_page["next_cursor"] is None

        # deleting a template, then a subject, removes them from matching
        assert api.delete(f"/v1/galleries/lobby/subjects/alice/templates/{second['template_id']}").status_code == 204
        assert api.get("/v1/galleries/lobby/subjects/alice").json()["templates"] == 1
        assert api.delete("/v1/galleries/lobby/subjects/bob").status_code == 204
        after = api.post("/v1/galleries/lobby/identify", files=files(sequences["002/nm-01/090"])).json()
        assert "bob" not in {c["subject_id"] for c in after["candidates"]}
        assert api.get("/v1/galleries/lobby").json()["templates"] == 2

        # stateless analysis, models, metrics, audit trail
        detection = api.post("/v1/detect", files=files(sequences["003/nm-01/090"])).json()
        assert set(detection) >= {"usable", "gait_fraction", "segments", "frame_labels"}
        embedding = api.post("/v1/embed", files=files(sequences["003/nm-01/090"])).json()
        assert np.array(embedding["embedding"]).shape == tuple(embedding["shape"])
        models = api.get("/v1/models").json()
        assert models["models"][0]["id"] == "test-model" and models["models"][0]["operating_points"]["fmr=1e-3"] == 0.9
        metrics = api.get("/metrics").text
        # counts, and no gallery's name: /metrics needs no key, and tenants must not learn each other's galleries
        assert "gader_galleries 1.0" in metrics and "gader_templates 2.0" in metrics and "lobby" not in metrics
        # requests are counted per route template and status, errors included
        assert 'route="/v1/galleries/{gallery}/identify"' in metrics and 'status="204"' in metrics
        timing = api.get("/v1/models").headers["server-timing"]  # the server's own time, for clients
        assert timing.startswith("app;dur=") and float(timing.split("=")[1]) >= 0
        assert api.delete("/v1/galleries/lobby").status_code == 204
        assert api.get("/v1/galleries").json() == {"galleries": []}


def test_compare_two_sequences_scores_as_verify_does_and_stores_nothing(server, sequences):
    """POST /v1/compare: 1:1 between two uploads. Its score is the one verify gives for the same two sequences
    (one enrolled, the other the probe), either way round; the decision is at the requested operating point;
    nothing lands in any gallery; a side that cannot be read is named in the error."""
    from service.gallery.store import SQLiteStore

    alice, bob = sequences["001/nm-01/090"], sequences["002/nm-01/090"]

    def compare(first: bytes, second: bytes, **form: str):
        return api.post("/v1/compare", files={"first": ("a.npz", first), "second": ("b.npz", second)}, data=form)

    with server.client() as api:
        itself = compare(alice, alice)
        assert itself.status_code == 200, itself.text
        same = itself.json()
        assert same["score"] == pytest.approx(1.0, abs=1e-4) and same["match"] is True
        assert same["operating_point"] == "fmr=1e-3" and same["threshold"] == 0.9 and same["model"] == "test-model"
        pair = compare(alice, bob, operating_point="fmr=1e-2").json()
        assert pair["threshold"] == 0.8 and pair["match"] == (pair["score"] >= 0.8)
        assert [d["frames"] for d in pair["detections"]] == [
            int(np.load(io.BytesIO(data))["silhouettes"].shape[0]) for data in (alice, bob)
        ]
        assert [s["kind"] for s in pair["sources"]] == ["silhouettes", "silhouettes"]
        sides = {f"{side}_{stage}" for side in ("first", "second") for stage in ("decode", "inference")}
        assert sides | {"total"} <= set(pair["timings_ms"])
        assert compare(bob, alice, operating_point="fmr=1e-2").json()["score"] == pair["score"]
        assert api.get("/v1/galleries").json() == {"galleries": []}  # nothing was stored

        api.post("/v1/galleries", json={"name": "one"})
        api.post("/v1/galleries/one/subjects", json={"subject_id": "alice"})
        api.post("/v1/galleries/one/subjects/alice/templates", files=files(alice))
        verdict = api.post(
            "/v1/galleries/one/verify", files=files(bob), data={"subject_id": "alice", "operating_point": "fmr=1e-2"}
        ).json()
        assert verdict["score"] == pytest.approx(pair["score"], abs=2e-6) and verdict["match"] == pair["match"]
        strict = compare(alice, bob, threshold=str(min(1.0, pair["score"] + 1e-3))).json()
        assert strict["match"] is False and strict["operating_point"] == "custom"

        broken = compare(alice, b"not a sequence")
        assert broken.status_code == 400 and broken.json()["error"]["message"].startswith("second: ")
        unknown = compare(alice, bob, operating_point="fmr=0.5")
        assert unknown.status_code == 422 and "unknown operating point" in unknown.json()["error"]["message"]
        one_file = api.post("/v1/compare", files={"first": ("a.npz", alice)})
        assert one_file.status_code == 400 and "second" in one_file.json()["error"]["message"]
    events = SQLiteStore(server.env["GADER_DATA_DIR"] + "/gader.sqlite3").read_audit()
    audited = [e for e in events if e["action"] == "compare"]
    assert len(audited) == 4 and all(len(e["probe_sha256"]) == 2 for e in audited)  # the answered ones


def test_openapi_docs_are_served(server):
    with server.client() as api:
        assert "swagger" in api.get("/docs").text.lower()
        schema = api.get("/openapi.json").json()
        assert "/v1/galleries/{gallery}/identify" in schema["paths"]
        assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        # The bounds a client generator can check before sending: top_k >= 1, threshold in [0, 1]
        form = schema["components"]["schemas"]["Body_identify_v1_galleries__gallery__identify_post"]["properties"]
        assert form["top_k"]["minimum"] == 1
        assert {"type": "number", "minimum": 0.0, "maximum": 1.0} in form["threshold"]["anyOf"]


def test_keys_scopes_tenants_and_revocation(server, sequences):
    env = server.env

    def gader(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gader", *args], capture_output=True, text=True, env=env, timeout=120
        )

    with server.client() as admin:
        for name in ("north", "south"):
            admin.post("/v1/galleries", json={"name": name})
        admin.post("/v1/galleries/north/subjects", json={"subject_id": "alice"})
    created = gader("keys", "create", "--scopes", "identify", "--galleries", "north", "--name", "kiosk")
    assert created.returncode == 0, created.stderr
    kiosk = created.stdout.strip()
    assert kiosk.startswith("gdr_") and "\n" not in kiosk  # the key alone on stdout
    with server.client(kiosk) as api:
        assert [g["name"] for g in api.get("/v1/galleries").json()["galleries"]] == ["north"]
        denied = api.post("/v1/galleries/north/subjects", json={"subject_id": "mallory"})
        assert denied.status_code == 403 and "enroll" in denied.json()["error"]["message"]
        hidden = api.post("/v1/galleries/south/identify", files=files(sequences["001/nm-01/090"]))
        assert hidden.status_code == 404 and "no gallery 'south'" in hidden.json()["error"]["message"]
    clerk = gader("keys", "create", "--scopes", "enroll", "--galleries", "north", "--name", "clerk").stdout.strip()
    with server.client(clerk) as api:  # allowed to create galleries, but only those its key names: a permission
        refused = api.post("/v1/galleries", json={"name": "east"})
        assert refused.status_code == 403 and "may only create galleries named" in refused.json()["error"]["message"]
    listed = gader("keys", "list")
    key_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if line.endswith("kiosk"))
    assert kiosk not in listed.stdout  # never the key itself
    assert gader("keys", "revoke", key_id).returncode == 0
    with server.client(kiosk) as api:
        assert api.get("/v1/galleries").status_code == 401
    bad = gader("keys", "create", "--scopes", "superuser")
    assert bad.returncode == 1 and "unknown scope" in bad.stderr


def test_audit_log_records_who_did_what(server, sequences):
    from service.gallery.store import SQLiteStore

    with server.client() as api:
        api.post("/v1/galleries", json={"name": "audit"})
        api.post("/v1/galleries/audit/subjects", json={"subject_id": "x"})
        api.post("/v1/galleries/audit/subjects/x/templates", files=files(sequences["001/nm-01/090"]))
        api.post("/v1/galleries/audit/identify", files=files(sequences["001/nm-01/090"]))
    events = SQLiteStore(server.env["GADER_DATA_DIR"] + "/gader.sqlite3").read_audit()
    identify = next(e for e in events if e["action"] == "identify")
    assert identify["gallery"] == "audit" and identify["decision"] == "match" and identify["threshold"] == 0.9
    assert identify["candidates"][0]["subject"] == "x" and len(identify["probe_sha256"]) == 64
    assert identify["key"].startswith("k_") and identify["model"] == "test-model"
    assert {"create_gallery", "create_subject", "enroll"} <= {e["action"] for e in events}


def test_rate_limit_answers_429_with_retry_after(tmp_path, models):
    from tests.service.conftest import start_server

    running = start_server(tmp_path / "data", models, extra={"GADER_RATE_PER_MINUTE": "3"})
    try:
        with running.client() as api:
            statuses = [api.get("/v1/galleries").status_code for _ in range(5)]
            assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429
            limited = api.get("/v1/galleries")
            assert int(limited.headers["Retry-After"]) >= 1 and "rate limit" in limited.json()["error"]["message"]
    finally:
        running.stop()
