"""The data layer: gader's own format, the packed CASIA-B and OpenGait readers, layout detection."""

import io
import json
import zipfile

import numpy as np
import pytest

from gader.data import (
    DatasetWriter,
    FrameLabels,
    NativeDataset,
    OpenGaitDataset,
    PackedCasiaDataset,
    SequenceRecord,
    dataset_stats,
    open_dataset,
    read_sequence,
    write_sequence,
)
from gader.errors import DataFormatError, DatasetLayoutError


def _record(subject="001", condition="nm-01", view="090", frames=6, seed=0, rich=True) -> SequenceRecord:
    rng = np.random.default_rng(seed)
    return SequenceRecord(
        subject,
        condition,
        view,
        silhouettes=(rng.random((frames, 64, 44)) > 0.5).astype(np.uint8) * 255,
        ratios=rng.uniform(1, 4, frames).astype(np.float32) if rich else None,
        rgb=rng.integers(0, 255, (frames, 64, 44, 3), dtype=np.uint8) if rich else None,
        labels=FrameLabels(rng.random(frames) > 0.5, rng.random(frames) > 0.5) if rich else None,
        meta={"distance_m": 12.5, "pitch_deg": 30} if rich else {},
        frame_arrays={"frame_index": np.arange(frames) * 2} if rich else {},
    )


def _assert_same(a: SequenceRecord, b: SequenceRecord) -> None:
    assert (a.subject, a.condition, a.view, a.meta) == (b.subject, b.condition, b.view, b.meta)
    assert np.array_equal(a.silhouettes, b.silhouettes)
    for name in ("ratios", "rgb"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None)
        if left is not None:
            assert left.dtype == right.dtype and np.array_equal(left, right)
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        assert np.array_equal(a.labels.classes, b.labels.classes)
    assert a.frame_arrays.keys() == b.frame_arrays.keys()
    for key in a.frame_arrays:
        assert np.array_equal(a.frame_arrays[key], b.frame_arrays[key])


def test_native_round_trip_keeps_every_field(tmp_path):
    records = [_record(), _record("002", "bg-01", "000", frames=3, seed=1, rich=False)]
    with DatasetWriter(tmp_path / "ds", description="unit test") as writer:
        for record in records:
            writer.write(record)
    dataset = open_dataset(tmp_path / "ds")
    assert isinstance(dataset, NativeDataset)
    assert len(dataset) == 2 and dataset.subjects == ["001", "002"]
    for record in records:
        _assert_same(record, dataset.load(record.key))
    info = dataset.infos[0]
    assert (info.frames, info.has_ratios, info.has_rgb, info.has_labels) == (6, True, True, True)
    stats = dataset_stats(dataset)
    assert stats["sequences"] == 2 and stats["frames"] == 9 and stats["with_rgb"] == 1
    header = json.loads((tmp_path / "ds" / "gader-dataset.json").read_text())
    assert header["format"] == "gader-dataset" and header["sequences"] == 2


def test_native_files_hold_no_pickle_and_are_self_describing(tmp_path):
    target = tmp_path / "one.npz"
    write_sequence(_record(), target)
    with np.load(target, allow_pickle=False) as archive:  # would raise on any object array
        assert {"silhouettes", "ratios", "rgb", "meta"} <= set(archive.files)
    _assert_same(_record(), read_sequence(target))


def test_listing_reads_no_frames_and_load_reads_one_sequence(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write(_record("001"))
        writer.write(_record("002"))
    (tmp_path / "ds" / "sequences" / "002" / "nm-01" / "090.npz").write_bytes(b"garbage")
    dataset = open_dataset(tmp_path / "ds")  # opening does not touch sequence files
    assert len(dataset) == 2
    dataset.load("001/nm-01/090")
    with pytest.raises(DataFormatError, match=r"not a valid \.npz"):
        dataset.load("002/nm-01/090")


def test_writer_appends_and_refuses_silent_duplicates(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write(_record("001"))
    with DatasetWriter(tmp_path / "ds") as writer:  # reopening appends
        writer.write(_record("002"))
        with pytest.raises(DataFormatError, match="already in"):
            writer.write(_record("001"))
    assert open_dataset(tmp_path / "ds").subjects == ["001", "002"]
    with DatasetWriter(tmp_path / "ds", overwrite=True) as writer:  # regenerate one sequence
        writer.write(_record("001", frames=2))
    assert open_dataset(tmp_path / "ds").load("001/nm-01/090").frames == 2


def test_dataset_files_get_the_permissions_of_ordinary_new_files(tmp_path):
    """Written through temporary files (atomic), they must not keep mkstemp's 0600: another user (the service's
    container user) reads the datasets that the CLI writes. With umask 022: 0644."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        import gader.data.native as native

        saved, native._UMASK = native._UMASK, 0o022  # the module reads the umask once, at import
        with DatasetWriter(tmp_path / "ds") as writer:
            writer.write(_record("001"))
    finally:
        os.umask(previous)
        native._UMASK = saved
    files = [p for p in (tmp_path / "ds").rglob("*") if p.is_file()]
    assert len(files) >= 3  # header, index, one sequence
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}, [(p.name, oct(p.stat().st_mode)) for p in files]


def test_index_is_written_even_when_generation_fails(tmp_path):
    def generate() -> None:
        with DatasetWriter(tmp_path / "ds") as writer:
            writer.write(_record("001"))
            raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError):
        generate()
    assert len(open_dataset(tmp_path / "ds")) == 1


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 65, ".hidden", "abc\n"])
def test_unsafe_names_are_refused(tmp_path, bad):
    with DatasetWriter(tmp_path / "ds") as writer, pytest.raises(DataFormatError, match="cannot be stored"):
        writer.write(_record(subject=bad))


def test_writer_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "other.txt").write_text("not a dataset")
    with pytest.raises(DatasetLayoutError, match="not an empty directory"):
        DatasetWriter(tmp_path)


def test_pickled_arrays_are_refused(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DataFormatError, match="pickle"):
        read_sequence(buffer.getvalue(), label="upload.npz")


def test_minimal_upload_without_meta_is_read(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, silhouettes=np.zeros((3, 64, 64), np.uint8), ratios=np.ones(3, np.float32))
    record = read_sequence(buffer.getvalue(), subject="probe")
    assert record.subject == "probe" and record.frames == 3 and record.ratios.tolist() == [1, 1, 1]


def test_corrupt_archives_give_clear_errors(tmp_path):
    with pytest.raises(DataFormatError, match=r"not a valid \.npz"):
        read_sequence(b"PK\x03\x04 truncated", label="x.npz")
    target = tmp_path / "trunc.npz"
    write_sequence(_record(frames=50), target)
    data = target.read_bytes()
    with pytest.raises(DataFormatError):
        read_sequence(data[: len(data) // 2], label="trunc.npz")
    with zipfile.ZipFile(tmp_path / "nosil.npz", "w") as archive:
        archive.writestr("ratios.npy", b"")
    with pytest.raises(DataFormatError, match="silhouettes"):
        read_sequence(tmp_path / "nosil.npz")


def test_unknown_layouts_are_named(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no such directory"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="not a dataset gader can read"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "file.npz").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="is a file"):
        open_dataset(tmp_path / "file.npz")


def test_subset_is_a_view(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        for subject in ("001", "002", "003"):
            for condition in ("nm-01", "cl-01"):
                writer.write(_record(subject, condition, rich=False))
    dataset = open_dataset(tmp_path / "ds")
    part = dataset.subset(subjects=["002", "003"], conditions=["cl-01"])
    assert [info.key for info in part.infos] == ["002/cl-01/090", "003/cl-01/090"]
    assert len(dataset) == 6
    with pytest.raises(KeyError):
        part.load("001/cl-01/090")


@pytest.mark.shared_data
def test_packed_casia_b_train(casia_train):
    dataset = open_dataset(casia_train)
    assert isinstance(dataset, PackedCasiaDataset)
    stats = dataset_stats(dataset)
    assert stats["subjects"] == 74 and stats["sequences"] == 8107
    assert len(stats["views"]) == 11 and len(stats["conditions"]) == 10
    record = dataset.load("001/bg-01/000")
    assert record.silhouettes.shape[1:] == (64, 64) and set(np.unique(record.silhouettes)) <= {0, 255}
    assert record.frames == dataset.subset(subjects=["001"], conditions=["bg-01"], views=["000"]).infos[0].frames
    assert record.ratios is None  # CASIA-B keeps no boxes: no invented ratios


@pytest.mark.shared_data
def test_opengait_layout_matches_packed_casia(opengait_sample, casia_train):
    dataset = open_dataset(opengait_sample)
    assert isinstance(dataset, OpenGaitDataset)
    assert sorted(info.key for info in dataset.infos) == ["001/bg-01/090", "001/cl-01/090", "001/nm-01/090"]
    packed = open_dataset(casia_train)
    for record in dataset:
        assert record.silhouettes.dtype == np.uint8 and record.silhouettes.shape[1:] == (64, 64)
        # The packed files are the same sequences thresholded at 127.
        reference = packed.load(record.key).silhouettes
        assert np.array_equal((record.silhouettes > 127) * 255, reference)


def test_embedding_a_dataset_leaves_out_sequences_without_frames(tmp_path):
    """A sequence whose every frame pretreatment rejected has no embedding; the others keep theirs."""
    from gader.embedding import embed_dataset
    from gader.gar import GAR, GARConfig

    with DatasetWriter(tmp_path / "ds") as writer:
        writer.write(_record("001", rich=False))
        writer.write(_record("002", frames=0, rich=False))
        writer.write(_record("003", frames=4, rich=False))
    dataset = open_dataset(tmp_path / "ds")
    embedder = GAR(GARConfig("gaitbase", {"width": 0.125, "input_height": 32, "input_width": 22})).embedder().eval()
    embeddings, infos = embed_dataset(embedder, dataset, (32, 22), show_progress=False)
    assert [info.subject for info in infos] == ["001", "003"]
    assert embeddings.shape[0] == 2 and np.isfinite(embeddings).all()


def test_walking_frames_are_the_full_body_gait_frames_or_the_whole_sequence():
    labels = FrameLabels(gait=np.array([1, 1, 0, 1, 1, 1]), full_body=np.array([1, 1, 1, 0, 1, 1]))
    assert labels.walking.tolist() == [True, True, False, False, True, True]
    silhouettes = np.zeros((6, 64, 44), np.uint8)
    silhouettes[:, 0, 0] = np.arange(6)  # each frame marked with its index
    record = SequenceRecord("1", "c", "v", silhouettes, labels=labels)
    assert record.walking_frames().silhouettes[:, 0, 0].tolist() == [0, 1, 4, 5]
    assert record.walking_frames(min_frames=5) is record  # too few to embed: the whole sequence
    unlabelled = SequenceRecord("1", "c", "v", record.silhouettes)
    assert unlabelled.walking_frames() is unlabelled
