"""Deletions that land while a request is embedding its probe (seconds for a long upload): the request answers
as if it had come after them (404, 409, no candidates), never 500, and leaves no trace of a deleted gallery.

The interleaving is real (the core's own delete methods on the real store and index) but forced: the probe's
embedding is wrapped so that the deletion runs right after it, where a concurrent client's would land by
chance, so the test does not depend on timing.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from service.errors import NotFound, NothingToCompare
from service.runtime import build_core, close_core
from service.settings import Settings


def npz(seed: int, frames: int = 12) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=(np.random.default_rng(seed).random((frames, 64, 44)) > 0.6).astype(np.uint8) * 255)
    return buffer.getvalue()


@pytest.fixture
def core(tmp_path, models):
    model, detector = models
    settings = Settings(data_dir=tmp_path / "data", model=str(model), detector=str(detector), device="cpu")
    core = build_core(settings, announce_admin_key=False)
    key, _ = core.keys.create(["admin"], None, "test admin")
    admin = core.authenticate(key)
    core.create_gallery(admin, "g", {})
    core.create_subject(admin, "g", "alice", {})
    template = asyncio.run(core.enroll(admin, "g", "alice", npz(0), "a.npz")).template_id
    yield core, admin, template
    asyncio.run(close_core(core))


def delete_after_embedding(core, delete) -> None:
    embed = core._embed

    async def embed_then_delete(*args, **kwargs):
        found = await embed(*args, **kwargs)
        delete()
        return found

    core._embed = embed_then_delete


def test_a_template_deleted_during_verify_answers_409(core):
    core, admin, template = core
    delete_after_embedding(core, lambda: core.delete_template(admin, "g", "alice", template))
    with pytest.raises(NothingToCompare, match="deleted during the request"):
        asyncio.run(core.verify(admin, "g", npz(1), "p.npz", "alice"))


def test_a_subject_deleted_during_verify_answers_404(core):
    core, admin, _template = core
    delete_after_embedding(core, lambda: core.delete_subject(admin, "g", "alice"))
    with pytest.raises(NotFound, match="no subject 'alice'"):
        asyncio.run(core.verify(admin, "g", npz(1), "p.npz", "alice"))


def test_one_of_two_templates_deleted_during_verify_leaves_the_other(core):
    core, admin, template = core
    other = asyncio.run(core.enroll(admin, "g", "alice", npz(2), "b.npz")).template_id
    delete_after_embedding(core, lambda: core.delete_template(admin, "g", "alice", template))
    result = asyncio.run(core.verify(admin, "g", npz(2), "p.npz", "alice"))
    assert result.template_id == other and result.score == pytest.approx(1.0, abs=1e-4)


def test_a_gallery_deleted_during_identify_is_not_brought_back(core):
    core, admin, _template = core
    delete_after_embedding(core, lambda: core.delete_gallery(admin, "g"))
    result = asyncio.run(core.identify(admin, "g", npz(0), "p.npz"))
    assert result.candidates == [] and result.decision == "no_match"
    assert "g" not in core.galleries.sizes()  # no index re-created for it (nor a series in /metrics)


def test_a_gallery_deleted_during_verify_answers_404(core):
    core, admin, _template = core
    delete_after_embedding(core, lambda: core.delete_gallery(admin, "g"))
    with pytest.raises(NotFound, match="no gallery 'g'"):
        asyncio.run(core.verify(admin, "g", npz(0), "p.npz", "alice"))


def test_a_subject_created_again_during_verify_is_compared_with_its_new_template(core):
    core, admin, _template = core
    embed = core._embed

    async def embed_then_replace(*args, **kwargs):
        found = await embed(*args, **kwargs)
        core._embed = embed  # the enrolment below embeds as usual
        core.delete_subject(admin, "g", "alice")
        core.create_subject(admin, "g", "alice", {})
        await core.enroll(admin, "g", "alice", npz(3), "c.npz")
        return found

    core._embed = embed_then_replace
    result = asyncio.run(core.verify(admin, "g", npz(3), "p.npz", "alice"))
    assert result.score == pytest.approx(1.0, abs=1e-4)  # the new alice's template: the probe's own frames
