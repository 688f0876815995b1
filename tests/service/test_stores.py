"""Durability and sharing: kill -9 during enrollment (SQLite), two replicas on one Redis, a trimmed stream."""

from __future__ import annotations

import io
import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from service.gallery.index import GalleryIndex, flatten_embedding
from service.gallery.records import Template, now
from service.gallery.redis_store import RedisStore
from tests.service.conftest import start_server


def sequence(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, silhouettes=(rng.random((8, 64, 44)) > 0.6).astype(np.uint8) * 255)
    return buffer.getvalue()


def files(data: bytes) -> dict:
    return {"file": ("probe.npz", data, "application/octet-stream")}


def test_kill_9_during_enrollment_loses_no_acknowledged_template(tmp_path, models):
    data_dir = tmp_path / "data"
    running = start_server(data_dir, models)
    key = running.admin_key
    with running.client() as api:
        api.post("/v1/galleries", json={"name": "door"})
        api.post("/v1/galleries/door/subjects", json={"subject_id": "visitor"})
    acknowledged: list[str] = []
    stop = threading.Event()

    def enroll_forever() -> None:
        with httpx.Client(base_url=running.url, headers={"X-API-Key": key}, timeout=30) as api:
            seed = 0
            while not stop.is_set():
                seed += 1
                try:
                    response = api.post("/v1/galleries/door/subjects/visitor/templates", files=files(sequence(seed)))
                except httpx.HTTPError:
                    return  # the server died mid-request: that one was never acknowledged
                if response.status_code == 201:
                    acknowledged.append(response.json()["template_id"])

    worker = threading.Thread(target=enroll_forever)
    worker.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    running.stop(signal.SIGKILL)  # no shutdown, no flush: only what is on disk survives
    stop.set()
    worker.join(timeout=30)
    assert len(acknowledged) >= 8

    restarted = start_server(data_dir, models)
    try:
        with restarted.client(key) as api:
            stored = {t["template_id"] for t in api.get("/v1/galleries/door/subjects/visitor").json()["template_list"]}
            assert set(acknowledged) <= stored  # every acknowledged template survived
            assert api.get("/v1/galleries/door").json()["templates"] == len(stored)  # index == store after restart
    finally:
        restarted.stop()


def test_two_replicas_share_a_gallery_through_redis(tmp_path, models, redis_server):
    first = start_server(tmp_path / "a", models, store=redis_server.url)
    second = start_server(tmp_path / "b", models, store=redis_server.url)
    try:
        assert first.admin_key and second.admin_key is None  # one admin key for the shared store, made once
        with first.client() as a, second.client(first.admin_key) as b:
            assert a.post("/v1/galleries", json={"name": "shared"}).status_code == 201
            a.post("/v1/galleries/shared/subjects", json={"subject_id": "walker"})
            probe = sequence(7)
            enrolled = a.post("/v1/galleries/shared/subjects/walker/templates", files=files(probe))
            assert enrolled.status_code == 201
            acknowledged = time.monotonic()
            while True:  # the other replica finds it within a second
                result = b.post("/v1/galleries/shared/identify", files=files(probe), data={"threshold": "0.5"}).json()
                if result["candidates"]:
                    break
                assert time.monotonic() - acknowledged < 1.0, "replica B did not see the template within 1 s"
                time.sleep(0.05)
            assert result["candidates"][0]["subject_id"] == "walker"
            assert time.monotonic() - acknowledged < 1.0
            # deletions travel too
            assert b.delete("/v1/galleries/shared/subjects/walker").status_code == 204
            deadline = time.monotonic() + 2
            while a.get("/v1/galleries/shared").json()["templates"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert a.get("/v1/galleries/shared").json()["templates"] == 0, first.log.read_text()[-3000:]
    finally:
        first.stop()
        second.stop()


def test_the_store_password_never_reaches_the_log(tmp_path, models):
    """GADER_STORE carries the Redis password (docs/deploy.md); the startup line names the store without it,
    so container logs (docker logs, kubectl logs) do not hold the secret."""
    import shutil

    from service.processes import start_redis
    from tests.conftest import IN_CI

    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (make test installs it: scripts/install-services.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    password = "s3cret-in-the-url"
    redis = start_redis(tmp_path, password=password)
    try:
        running = start_server(tmp_path / "data", models, store=redis.url)
        try:
            log = running.log.read_text()
        finally:
            running.stop()
    finally:
        redis.stop()
    assert "store redis://:***@127.0.0.1:" in log and password not in log


def test_a_replica_behind_a_trimmed_stream_reloads(redis_server):
    from service.gallery.manager import GalleryManager

    writer, reader = RedisStore(redis_server.url), RedisStore(redis_server.url)
    writer.create_gallery("g", {}, None)
    writer.create_subject("g", "s", {})
    manager = GalleryManager(reader, "m", 4)
    manager.load()
    stale = (reader.position, reader.consumed)
    for i in range(20):
        writer.add_template(Template(f"t{i}", "g", "s", "m", np.full(4, 0.5, np.float32), now(), {}))
    writer.client.xtrim("gader:changes", maxlen=5, approximate=False)  # entries this replica never read are gone
    assert reader.trimmed_past(*stale)
    assert not writer.trimmed_past(*writer.snapshot_marker())  # an up-to-date replica has missed nothing
    manager.start()
    deadline = time.monotonic() + 5
    while manager.sizes().get("g") != 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    manager.stop()
    assert manager.sizes()["g"] == 20  # recovered by reloading the snapshot, not by the trimmed stream


def test_a_snapshot_reads_every_template_once_in_chunks(redis_server):
    """all_templates scans each gallery in chunks (HSCAN + HMGET): with chunks far smaller than the galleries,
    every template comes back exactly once, with its own subject and vector; one whose vector is gone (removed
    between the two reads) is left to the change stream."""
    store = RedisStore(redis_server.url)
    expected = {}
    for gallery, count in (("a", 95), ("b", 3), ("empty", 0)):
        store.create_gallery(gallery, {}, None)
        for subject in ("s1", "s2"):
            store.create_subject(gallery, subject, {})
        for i in range(count):
            vector = np.full(4, i, np.float32) + (gallery == "b")
            template = Template(f"{gallery}-t{i}", gallery, f"s{i % 2 + 1}", "m", vector, now(), {})
            store.add_template(template)
            expected[(gallery, template.template_id)] = (template.subject_id, vector)
    store.client.hdel("gader:vectors:a", "a-t7")
    del expected[("a", "a-t7")]
    found = [(t.gallery, t.template_id, t.subject_id, t.vector) for t in store.all_templates(chunk=7)]
    assert len(found) == len(expected) == 97
    assert {(g, i) for g, i, _, _ in found} == set(expected)
    for gallery, template_id, subject, vector in found:
        assert subject == expected[(gallery, template_id)][0]
        np.testing.assert_array_equal(vector, expected[(gallery, template_id)][1])


def test_changes_apply_idempotently():
    vector = flatten_embedding(np.eye(4, 2, dtype=np.float32))  # [4 channels, 2 parts] -> 8 dims
    index = GalleryIndex(8)
    assert index.add([("t1", "s", vector)]) == 1
    assert index.add([("t1", "s", vector)]) == 0
    assert index.remove(["t1"]) == 1 and index.remove(["t1"]) == 0 and len(index) == 0


def test_a_late_add_does_not_undo_a_removal():
    """With Redis a replica applies its own writes at once and the stream's copies later, so an add can
    reach the index after the removal that followed it, in either order of local and streamed copies."""
    vector = flatten_embedding(np.eye(4, 2, dtype=np.float32))
    index = GalleryIndex(8)
    index.add([("t1", "s", vector)])
    index.remove_subject("s")  # another replica deleted the subject; its change arrived first
    assert index.add([("t1", "s", vector)]) == 0 and len(index) == 0  # our own late add of t1
    index.remove(["t2"])  # removed here before the stream delivered its add
    assert index.add([("t2", "s", vector)]) == 0 and len(index) == 0
    assert index.add([("t3", "s", vector)]) == 1  # fresh ids still go in


def test_concurrent_removals_of_one_template_are_safe():
    vector = flatten_embedding(np.eye(4, 2, dtype=np.float32))
    for _ in range(20):
        index = GalleryIndex(8)
        index.add([(f"t{i}", "s", vector) for i in range(50)])
        errors: list[BaseException] = []

        def remove(index=index, errors=errors) -> None:
            try:
                index.remove([f"t{i}" for i in range(50)])
            except BaseException as error:  # any failure in a thread is the finding
                errors.append(error)

        threads = [threading.Thread(target=remove) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len(index) == 0


def test_index_aggregates_subjects_and_switches_to_ivf():
    rng = np.random.default_rng(0)
    index = GalleryIndex(16, ivf_threshold=300)
    centres = rng.normal(size=(50, 16))
    items = []
    for t in range(400):
        subject = t % 50
        vector = centres[subject] + 0.05 * rng.normal(size=16)
        items.append((f"t{t}", f"s{subject}", (vector / np.linalg.norm(vector)).astype(np.float32)))
    index.add(items[:200])
    assert index.kind == "flat"
    index.add(items[200:])
    assert index.kind == "ivf" and len(index) == 400
    query = (centres[7] / np.linalg.norm(centres[7])).astype(np.float32)
    hits = index.search_subjects(query, 5)
    assert hits[0].subject_id == "s7" and len({h.subject_id for h in hits}) == 5  # subjects, not templates
    index.remove_subject("s7")
    assert all(h.subject_id != "s7" for h in index.search_subjects(query, 5))


@pytest.mark.parametrize("readers", [4])
def test_readers_writer_lock_lets_readers_share(readers):
    from service.gallery.index import ReadWriteLock

    lock = ReadWriteLock()
    inside, peak = 0, 0
    guard = threading.Lock()

    def read() -> None:
        nonlocal inside, peak
        with lock.read():
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.1)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak > 1
    with lock.write():  # a writer gets in once the readers are done
        assert inside == 0


def test_redacted_urls_keep_everything_but_the_password():
    from service.settings import redacted

    assert redacted("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted("redis://user:pw@[::1]:6379/2") == "redis://user:***@[::1]:6379/2"  # IPv6 keeps its brackets
    assert redacted("redis://redis:6379/0") == "redis://redis:6379/0" and redacted("sqlite") == "sqlite"


def interleave(store: RedisStore, interfere) -> None:
    """Make ``interfere()`` (another client's write) land inside each of ``store``'s next transactions, once,
    between its checks and its EXEC: where a concurrent replica's write lands by chance."""
    original = store._transaction
    pending = [True]

    def transaction(run, *watched):
        def run_then_interfere(pipe):
            value = run(pipe)
            if pending[0]:
                pending[0] = False
                interfere()
            return value

        return original(run_then_interfere, *watched)

    store._transaction = transaction


def test_a_template_for_a_subject_deleted_by_another_replica_is_refused(redis_server):
    from service.errors import NotFound

    store, other = RedisStore(redis_server.url), RedisStore(redis_server.url)
    store.create_gallery("g", {}, None)
    store.create_subject("g", "alice", {})
    interleave(store, lambda: other.delete_subject("g", "alice"))
    with pytest.raises(NotFound, match="no subject 'alice'"):
        store.add_template(Template("t1", "g", "alice", "m", np.ones(4, np.float32), now(), {}))
    assert not store.client.hlen("gader:templates:g") and not store.client.exists("gader:subject-templates:g:alice")
    store.create_subject("g", "alice", {})  # a new alice starts without the old one's template
    assert store.subject_templates("g", "alice") == []


def test_a_subject_deletion_takes_a_template_added_meanwhile(redis_server):
    store, other = RedisStore(redis_server.url), RedisStore(redis_server.url)
    store.create_gallery("g", {}, None)
    store.create_subject("g", "alice", {})
    store.add_template(Template("t1", "g", "alice", "m", np.ones(4, np.float32), now(), {}))
    late = Template("t2", "g", "alice", "m", np.ones(4, np.float32), now(), {})
    interleave(store, lambda: other.add_template(late))
    assert store.delete_subject("g", "alice") == ["t1", "t2"]
    assert not store.client.hlen("gader:templates:g") and not store.client.hlen("gader:vectors:g")
    entries = store.client.xrange("gader:changes")
    assert json.loads(entries[-1][1][b"removed"]) == ["t1", "t2"]  # the change names what it removed


def test_a_subject_in_a_gallery_deleted_meanwhile_is_refused_and_listed_whole_otherwise(redis_server):
    from service.errors import NotFound

    store, other = RedisStore(redis_server.url), RedisStore(redis_server.url)
    store.create_gallery("g", {}, None)
    interleave(store, lambda: other.delete_gallery("g"))
    with pytest.raises(NotFound, match="no gallery 'g'"):
        store.create_subject("g", "alice", {})
    assert not store.client.exists("gader:subjects:g") and not store.client.exists("gader:subject-order:g")
    store.create_gallery("g", {}, None)
    store.create_subject("g", "bob", {})
    assert [s.subject_id for s in store.list_subjects("g", None, 10)] == ["bob"]  # hash and order together


def test_the_writers_own_removal_coming_back_keeps_a_subject_created_again(tmp_path):
    """A replica applies its own writes at once and the stream's copies later. Deleted, created again and
    enrolled before the stream's remove_subject arrives, the subject keeps its new template: the change
    removes the templates it names, not whatever the subject has by then."""
    from service.gallery.manager import GalleryManager
    from service.gallery.records import Change
    from service.gallery.store import SQLiteStore

    manager = GalleryManager(SQLiteStore(tmp_path / "g.db"), "m", 4)
    old = Template("t1", "g", "alice", "m", np.ones(4, np.float32), now(), {})
    new = Template("t2", "g", "alice", "m", np.full(4, 0.5, np.float32), now(), {})
    manager.add(old)
    manager.index("g").remove(["t1"])  # the local deletion
    manager.add(new)  # alice again, enrolled
    manager.apply(Change("remove_subject", "g", subject_id="alice", removed=["t1"]))  # the echo
    assert manager.index("g").subject_templates("alice") == ["t2"]
    manager.apply(Change("remove_gallery", "other", removed=["x"]))  # a gallery this replica never indexed
    manager.apply(Change("remove_gallery", "g", removed=["t1"]))  # the gallery's echo, from before t2
    assert manager.sizes() == {"g": 1}
    manager.apply(Change("remove_gallery", "g", removed=["t2"]))
    assert "g" not in manager.sizes()  # emptied by its removal: dropped
    legacy = GalleryManager(SQLiteStore(tmp_path / "g.db"), "m", 4)
    legacy.add(new)
    legacy.apply(Change("remove_subject", "g", subject_id="alice"))  # entries without ids: as before
    assert legacy.sizes() == {"g": 0}


def test_a_search_waiting_while_the_last_template_is_removed_finds_nothing():
    """A waiting writer holds new readers back: a search that found the index non-empty, then waited behind a
    removal of its last template, must answer no hits (FAISS refuses k = 0)."""
    index = GalleryIndex(8)
    vector = flatten_embedding(np.eye(4, 2, dtype=np.float32))
    index.add([("t1", "s", vector)])
    found: list = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            found.append(index.search_subjects(vector, 5))
        except BaseException as error:  # the finding
            errors.append(error)

    with index.lock.read():  # another request's search in progress
        remover = threading.Thread(target=index.remove, args=(["t1"],))
        remover.start()
        deadline = time.monotonic() + 5
        while index.lock._waiting_writers == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        searcher = threading.Thread(target=search)
        searcher.start()
        time.sleep(0.3)  # the search queues behind the waiting removal
    remover.join(5)
    searcher.join(5)
    assert not errors and found == [[]]


def test_a_gallery_is_deleted_whole_in_one_step_and_its_change_names_its_templates(redis_server):
    """One server-side script: no retries for a large gallery being enrolled into, nothing of it left behind
    (subjects, their template sets, templates, vectors, listing order), and the change lists what went."""
    from service.errors import NotFound

    store = RedisStore(redis_server.url)
    for name in ("g", "g2", "empty"):
        store.create_gallery(name, {}, None)
    for subject, templates in (("alice", ("t2", "t1")), ("bob", ("t3",))):
        store.create_subject("g", subject, {})
        for template_id in templates:
            store.add_template(Template(template_id, "g", subject, "m", np.ones(4, np.float32), now(), {}))
    store.create_subject("g2", "alice", {})  # another gallery's keys share the prefix: they stay
    store.delete_gallery("g")
    assert not [k for k in store.client.keys("gader:*") if k.decode().split(":")[2:3] == ["g"]]
    assert store.get_gallery("g") is None and store.get_subject("g2", "alice") is not None
    change = store.client.xrange("gader:changes")[-1][1]
    assert change[b"op"] == b"remove_gallery" and sorted(json.loads(change[b"removed"])) == ["t1", "t2", "t3"]
    store.delete_gallery("empty")
    assert json.loads(store.client.xrange("gader:changes")[-1][1][b"removed"]) == []
    with pytest.raises(NotFound, match="no gallery 'g'"):
        store.delete_gallery("g")
