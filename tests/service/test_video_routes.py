"""Real videos through the real service with the shipped models: walking clips are usable gait, standing
clips are not (the detector says standing), and a video enrolls and identifies like any sequence."""

from __future__ import annotations

import pytest

from service.processes import start_server

WALKING = ["casia-b-001-bg-01-000.avi", "walk-hallway-1.mp4", "walk-hallway-2.mp4"]
STANDING = ["stand-1.mp4", "stand-2.mp4"]


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    running = start_server(
        tmp_path_factory.mktemp("video") / "data",
        ("casia-b-default", "gader-detector"),
        extra={"GADER_RATE_PER_MINUTE": "0"},
    )
    yield running
    running.stop()


def detect(server, path):
    with server.client() as api:
        response = api.post("/v1/detect", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("clip", WALKING)
def test_walking_clips_are_usable_gait(shipped_server, shared_videos, clip):
    report = detect(shipped_server, shared_videos / clip)
    source = report["source"]
    # the main person's track is used: the first one listed (track ids count every blob ever tracked)
    assert source["kind"] == "video" and source["track_id"] == source["tracks"][0]["track_id"]
    assert report["usable"], report
    walking = sum(label.endswith("gait") for label in report["frame_labels"])
    assert walking > 0.5 * report["frames"]


@pytest.mark.parametrize("clip", STANDING)
def test_standing_clips_are_not_usable_and_labelled_standing(shipped_server, shared_videos, clip):
    report = detect(shipped_server, shared_videos / clip)
    assert not report["usable"], report
    standing = sum(label.endswith("standing") for label in report["frame_labels"])
    assert standing > 0.5 * report["frames"]


def test_a_video_enrolls_and_identifies_itself(shipped_server, shared_videos):
    clip = shared_videos / "casia-b-001-bg-01-000.avi"
    with shipped_server.client() as api:
        api.post("/v1/galleries", json={"name": "videos"}).raise_for_status()
        api.post("/v1/galleries/videos/subjects", json={"subject_id": "walker"}).raise_for_status()
        enrolled = api.post(
            "/v1/galleries/videos/subjects/walker/templates", files={"file": (clip.name, clip.read_bytes())}
        )
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["source"]["kind"] == "video"
        found = api.post("/v1/galleries/videos/identify", files={"file": (clip.name, clip.read_bytes())}).json()
        assert found["candidates"][0]["subject_id"] == "walker"
        assert found["candidates"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        standing = shared_videos / "stand-1.mp4"
        refused = api.post("/v1/galleries/videos/identify", files={"file": (standing.name, standing.read_bytes())})
        assert refused.status_code == 422 and "no usable gait" in refused.json()["error"]["message"]


def test_compare_names_the_side_and_the_track_that_fail(shipped_server, shared_videos):
    """POST /v1/compare with real videos: each side's track id goes to its own video, and a side that cannot be
    used (a standing person: no usable gait; a track the video does not have) fails the request by its name,
    with the other side's problem in the details when both fail."""
    walk = shared_videos / "casia-b-001-bg-01-000.avi"
    stand = shared_videos / "stand-1.mp4"

    def compare(first, second, **form):
        files = {"first": (first.name, first.read_bytes()), "second": (second.name, second.read_bytes())}
        with shipped_server.client() as api:
            return api.post("/v1/compare", files=files, data=form)

    same = compare(walk, walk, first_track_id="1")
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["score"] == pytest.approx(1.0, abs=1e-4) and body["match"] is True
    assert [s["track_id"] for s in body["sources"]] == [1, 1] and [s["kind"] for s in body["sources"]] == ["video"] * 2
    no_gait = compare(walk, stand)
    assert no_gait.status_code == 422
    error = no_gait.json()["error"]
    assert error["message"].startswith("second: no usable gait") and error["details"]["side"] == "second"
    assert error["details"]["detection"]["usable"] is False
    wrong_track = compare(walk, walk, second_track_id="7")  # the track id is the second side's
    assert wrong_track.status_code == 400 and wrong_track.json()["error"]["message"].startswith("second: ")
    assert "no track 7" in wrong_track.json()["error"]["message"]
    both = compare(walk, stand, first_track_id="7").json()["error"]  # both fail: the first is said, the second kept
    assert both["message"].startswith("first: ") and "no track 7" in both["message"]
    assert both["details"]["second_error"].startswith("no usable gait")
