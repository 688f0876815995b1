"""GPU code paths. This machine and CI have no CUDA, so these tests skip there (and say so); on a GPU host
(`pytest tests/test_gpu.py`) they check that every GPU path gives the CPU's answers."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from gader.backbones import create_model
from service.gallery.index import GalleryIndex, gpu_resources

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this host)")
needs_faiss_gpu = pytest.mark.skipif(
    gpu_resources() is None, reason="needs faiss-gpu and a CUDA device (this host has faiss-cpu only)"
)


@needs_cuda
@pytest.mark.parametrize("arch", ["gaitset", "gaitpart", "gaitgl", "gaitbase"])
def test_backbones_give_the_same_embeddings_on_cuda(arch):
    torch.manual_seed(0)
    model = create_model(arch, width=0.25, input_height=32, input_width=22, num_classes=6).eval()
    silhouettes = (torch.rand(2, 1, 20, 32, 22) > 0.5).float()  # [n, 1, t, h, w]
    with torch.no_grad():
        cpu = model(silhouettes).embeddings
        gpu = model.cuda()(silhouettes.cuda()).embeddings.cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3), (cpu - gpu).abs().max()


@needs_faiss_gpu
def test_gallery_search_on_the_gpu_matches_the_cpu():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [(f"t{i}", f"s{i % 500}", v) for i, v in enumerate(vectors)]
    cpu, gpu = GalleryIndex(256, use_gpu=False), GalleryIndex(256, use_gpu=True)
    cpu.add(items)
    gpu.add(items)
    assert gpu.wait_for_gpu() and gpu.on_gpu and not cpu.on_gpu
    queries = vectors[:50] + 0.05 * rng.standard_normal((50, 256)).astype(np.float32)
    for a, b in zip(cpu.search(queries, 10), gpu.search(queries, 10), strict=True):
        assert [h.template_id for h in a] == [h.template_id for h in b]
    gpu.remove(["t0"])  # a change drops the stale copy; searches stay correct meanwhile
    assert all(h.template_id != "t0" for h in gpu.search(vectors[:1], 5)[0])
    assert gpu.wait_for_gpu()


@needs_faiss_gpu
def test_a_search_wider_than_the_gpu_allows_runs_on_the_cpu_copy():
    """FAISS GPU indexes answer at most 2,048 neighbours; search_subjects widens its template search (4x top_k,
    then 4x more) until it has top_k subjects, which passes that limit with many templates per subject."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [(f"t{i}", f"s{i % 100}", v) for i, v in enumerate(vectors)]  # 60 templates per subject
    cpu, gpu = GalleryIndex(64, use_gpu=False), GalleryIndex(64, use_gpu=True)
    cpu.add(items)
    gpu.add(items)
    assert gpu.wait_for_gpu()
    wide = gpu.search_subjects(vectors[0], 100)  # k reaches 6,000
    assert [h.subject_id for h in wide] == [h.subject_id for h in cpu.search_subjects(vectors[0], 100)]
    assert len(wide) == 100


def test_the_cpu_build_reports_no_gpu_index():
    """Runs everywhere: without faiss-gpu the index never claims a GPU copy."""
    index = GalleryIndex(8)
    index.add([("t", "s", np.ones(8, np.float32) / np.sqrt(8))])
    if gpu_resources() is None:
        assert not index.use_gpu and not index.wait_for_gpu(0.05)
    assert hasattr(faiss, "IndexFlatIP")


@pytest.mark.parametrize("arch", ["gaitset", "gaitpart", "gaitgl", "gaitbase"])
def test_embedding_shape_is_measured_on_the_models_own_device(arch):
    """Runs everywhere: the "meta" device stands in for a GPU (weights off the CPU). A model trained on CUDA is
    saved from there, and saving measures its embedding shape; a CPU-only probe tensor made that fail."""
    model = create_model(arch, width=0.25, input_height=32, input_width=22, num_classes=6)
    expected = model.embedding_shape()
    model.to("meta")
    devices = []  # what the probe arrives on (some layers would accept a CPU tensor beside meta weights)
    model.register_forward_pre_hook(lambda module, inputs: devices.append(inputs[0].device))
    assert model.embedding_shape() == expected
    assert [d.type for d in devices] == ["meta"]


@needs_cuda
def test_a_model_trained_on_cuda_is_saved_from_there(tmp_path):
    from gader.gar import GAR, GARConfig
    from gader.model_io import ModelCard, load_model, save_model

    model = GAR(GARConfig(architecture="gaitbase", backbone={"width": 0.25, "num_classes": 6})).cuda()
    save_model(tmp_path / "m", model.embedder(), ModelCard(id="m", gar={}))
    assert load_model(tmp_path / "m").card.embedding_shape == model.embedder().silhouette.embedding_shape()
