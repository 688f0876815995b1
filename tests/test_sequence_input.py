"""What users upload: npz of aligned or full-frame masks, zip of PNGs; every bad file named, none unpickled."""

import io
import zipfile

import cv2
import numpy as np
import pytest

from gader.data import write_sequence
from gader.data.record import FrameLabels, SequenceRecord
from gader.errors import DataFormatError
from gader.sequence_input import InputLimits, read_sequence_bytes


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _full_frames(count=6) -> np.ndarray:
    frames = np.zeros((count, 240, 320), np.uint8)
    for t, frame in enumerate(frames):
        cv2.ellipse(frame, (120 + 5 * t, 120), (18, 80), 0, 0, 360, 255, -1)
    return frames


def test_aligned_npz_with_ratios():
    record = read_sequence_bytes(_npz(silhouettes=np.zeros((5, 64, 44), np.uint8) + 255, ratios=np.ones(5)), "a.npz")
    assert record.frames == 5 and record.silhouettes.shape == (5, 64, 44) and record.ratios.dtype == np.float32


def test_full_frame_masks_are_pretreated_with_their_ratios():
    record = read_sequence_bytes(_npz(silhouettes=_full_frames() > 0), "full.npz")
    assert record.silhouettes.shape == (6, 64, 64)
    assert record.ratios == pytest.approx(np.full(6, 161 / 64))


def test_zip_of_png_masks():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for t, frame in enumerate(_full_frames()):
            archive.writestr(f"frames/{t:03d}.png", cv2.imencode(".png", frame)[1].tobytes())
    record = read_sequence_bytes(buffer.getvalue(), "masks.zip")
    assert record.frames == 6 and record.ratios is not None


def test_a_gader_file_keeps_its_labels():
    labels = FrameLabels(gait=np.array([1, 0, 1]), full_body=np.ones(3))
    buffer = io.BytesIO()
    write_sequence(SequenceRecord("7", "c", "v", np.full((3, 64, 64), 255, np.uint8), labels=labels), buffer)
    record = read_sequence_bytes(buffer.getvalue(), "gader.npz")
    assert record.labels.gait.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"GIF89a....", "not an .npz or .zip"),
        (b"PK\x03\x04broken", "corrupt archive"),
        (_npz(other=np.zeros(3)), "missing array 'silhouettes'"),
        (_npz(silhouettes=np.zeros((4, 64), np.uint8)), "must be \\[T, H, W\\]"),
        (_npz(silhouettes=np.zeros((4, 64, 44), np.float64)), "must be uint8"),
        (_npz(silhouettes=np.zeros((0, 64, 44), np.uint8)), "at least 1 are needed"),
        (
            _npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.ones(2)),
            "ratios must be numbers with shape \\[3\\]",
        ),
        (
            _npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.array([1.0, np.nan, 1.0])),
            "ratios must be finite and positive",
        ),
        (_npz(silhouettes=np.zeros((3, 64, 44), np.uint8), ratios=np.array([1.0, 0.0, 1.0])), "finite and positive"),
        (_npz(silhouettes=np.zeros((3, 64, 44), np.uint8), rgb=np.zeros((3, 64, 44), np.uint8)), "rgb must be uint8"),
        (_npz(silhouettes=np.zeros((3, 240, 320), np.uint8), ratios=np.ones(3)), "only with aligned"),
        (_npz(silhouettes=np.zeros((3, 240, 320), np.uint8)), "no frame holds a person"),
        (_npz(silhouettes=np.array([None, None], dtype=object)), "pickle"),
    ],
)
def test_bad_uploads_are_named(data, message):
    with pytest.raises(DataFormatError, match=message):
        read_sequence_bytes(data, "upload.npz")


def test_blank_aligned_frames_are_dropped_and_a_blank_sequence_is_refused():
    """A frame without a silhouette pixel holds nobody: dropped (with its ratio, RGB and labels), as pretreatment
    drops such full frames; a sequence of nothing else is refused, and so is one left with too few frames."""
    silhouettes = np.full((6, 64, 44), 255, np.uint8)
    silhouettes[[1, 4]] = 0
    ratios = np.arange(1.0, 7.0)
    record = read_sequence_bytes(_npz(silhouettes=silhouettes, ratios=ratios), "gaps.npz")
    assert record.frames == 4 and record.ratios.tolist() == [1.0, 3.0, 4.0, 6.0]
    labels = FrameLabels(gait=np.array([1, 0, 1, 1, 0, 0]), full_body=np.ones(6))
    buffer = io.BytesIO()
    write_sequence(SequenceRecord("7", "c", "v", silhouettes[:, :, :44], labels=labels), buffer)
    assert read_sequence_bytes(buffer.getvalue(), "gader.npz").labels.gait.tolist() == [True, True, True, False]
    with pytest.raises(DataFormatError, match=r"no frame holds a silhouette \(all 6 frames are blank\)"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((6, 64, 44), np.uint8)), "blank.npz")
    with pytest.raises(DataFormatError, match=r"4 frames of 6 hold a silhouette .* at least 5 are needed"):
        read_sequence_bytes(_npz(silhouettes=silhouettes), "gaps.npz", InputLimits(min_frames=5))


def test_a_png_is_measured_from_its_header_before_it_is_decoded():
    from gader.sequence_input import png_size

    image = cv2.imencode(".png", np.zeros((30, 70), np.uint8))[1].tobytes()
    assert png_size(image[:24]) == (70, 30)
    assert png_size(b"GIF89a" + bytes(18)) is None and png_size(image[:20]) is None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("0.png", cv2.imencode(".png", np.zeros((200, 120), np.uint8))[1].tobytes())
    with pytest.raises(DataFormatError, match=r"0\.png is 120x200, over 10,000 pixels"):
        read_sequence_bytes(buffer.getvalue(), "masks.zip", InputLimits(max_frame_pixels=100 * 100))


def _png_zip(frames, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for t, frame in enumerate(frames):
            archive.writestr(f"{t:03d}.png", cv2.imencode(".png", frame)[1].tobytes())
    return buffer.getvalue()


def test_a_damaged_archive_member_is_the_files_fault():
    """A bad CRC or a broken deflate stream inside the zip is a 400-type error naming the member, not a crash
    (the service would answer 500 'internal' to an exception it does not expect)."""
    frames = _full_frames(3)
    stored = bytearray(_png_zip(frames))
    data_at = stored.index(b"IDAT") + 8  # inside the first PNG's image data: its CRC no longer matches
    stored[data_at] ^= 0xFF
    with pytest.raises(DataFormatError, match=r"000\.png cannot be read from the archive"):
        read_sequence_bytes(bytes(stored), "masks.zip")
    deflated = bytearray(_png_zip(frames, zipfile.ZIP_DEFLATED))
    first = zipfile.ZipFile(io.BytesIO(bytes(deflated))).infolist()[0]
    stream = first.header_offset + 30 + len(first.filename) + len(first.extra)  # after the local file header
    deflated[stream] = 0xFF  # a deflate block of the reserved type 3: zlib.error "invalid block type"
    with pytest.raises(DataFormatError, match=r"000\.png cannot be read from the archive \(Error -3"):
        read_sequence_bytes(bytes(deflated), "masks.zip")


def test_the_whole_upload_is_sized_before_it_is_decoded():
    """Each frame may be small enough and the total still too much: refused from the headers (PNG) and the
    array header (.npz), with nothing decoded."""
    limits = InputLimits(max_total_pixels=2 * 240 * 320)
    with pytest.raises(DataFormatError, match="pixels in all, over the 153,600"):
        read_sequence_bytes(_png_zip(_full_frames(3)), "masks.zip", limits)
    assert read_sequence_bytes(_png_zip(_full_frames(2)), "masks.zip", limits).frames == 2
    with pytest.raises(DataFormatError, match="pixels in all"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((3, 240, 320), np.uint8)), "big.npz", limits)


def test_one_frame_is_one_frame():
    with pytest.raises(DataFormatError, match="the sequence has 1 frame; at least 5"):
        read_sequence_bytes(_npz(silhouettes=np.full((1, 64, 44), 255, np.uint8)), "one.npz", InputLimits(min_frames=5))


def test_limits_are_checked_before_reading_big_arrays():
    limits = InputLimits(max_frames=10, max_frame_pixels=100 * 100)
    with pytest.raises(DataFormatError, match="at most 10"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((11, 64, 44), np.uint8)), "long.npz", limits)
    with pytest.raises(DataFormatError, match="exceed"):
        read_sequence_bytes(_npz(silhouettes=np.zeros((2, 200, 200), np.uint8)), "big.npz", limits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(DataFormatError, match=r"no \.png masks"):
        read_sequence_bytes(buffer.getvalue(), "x.zip")


def test_the_source_is_the_readers_finding_never_the_files_metadata():
    record = SequenceRecord(
        "s", "nm-01", "090", np.full((6, 64, 44), 255, np.uint8), meta={"source": "x", "pretreated_here": True}
    )
    buffer = io.BytesIO()
    write_sequence(record, buffer)
    read = read_sequence_bytes(buffer.getvalue(), "mine.npz")
    assert read.meta["source"] == {"kind": "silhouettes"}
    assert "pretreated_here" not in read.meta


def _npy_header_only(shape, dtype="|u1") -> bytes:
    """A .npy member that declares ``shape`` and holds no data (what a hostile upload sends)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_every_array_of_an_npz_is_sized_from_its_header_before_it_is_read():
    """Only the silhouettes' header was checked: a 558-byte file declaring an RGB array of terabytes made numpy
    allocate it (MemoryError, answered 500). Every member is now sized first, and a member that declares more
    data than it holds is refused before it is read."""
    silhouettes = np.full((6, 64, 44), 255, np.uint8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("silhouettes.npy", "w") as member:
            np.save(member, silhouettes)
        archive.writestr("rgb.npy", _npy_header_only((6, 100_000, 100_000, 100)))
    with pytest.raises(DataFormatError, match="arrays hold 6,000,000,016,896 bytes in all"):
        read_sequence_bytes(buffer.getvalue(), "bomb.npz")
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w") as archive:
        with archive.open("silhouettes.npy", "w") as member:
            np.save(member, silhouettes)
        archive.writestr("ratios.npy", _npy_header_only((6,), "<f4"))  # 24 bytes declared, none held
    with pytest.raises(DataFormatError, match="'ratios' declares 24 bytes of data"):
        read_sequence_bytes(small.getvalue(), "short.npz")
    rgb = np.zeros((3, 240, 320, 3), np.uint8)  # real, and over a budget the masks alone fit
    limits = InputLimits(max_total_pixels=4 * 240 * 320)
    with pytest.raises(DataFormatError, match="bytes in all, over the 307,200"):
        read_sequence_bytes(_npz(silhouettes=_full_frames(3), rgb=rgb), "rgb.npz", limits)
    assert read_sequence_bytes(_npz(silhouettes=_full_frames(3)), "masks.npz", limits).frames >= 1


def _png(array: np.ndarray, mode: str, palette: list[int] | None = None) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)  # uint8 [H, W] -> L, [H, W, 4] -> RGBA, uint16 -> I;16
    assert mode == "P" or image.mode == mode
    if mode == "P":
        image = Image.fromarray(array.astype(np.uint8), "L").convert("P")
        image.putpalette(palette or [0, 0, 0, 128, 0, 0] + [0] * 762)  # index 1: VOC's dark red
        image.frombytes(array.astype(np.uint8).tobytes())
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _png_zip_of(pngs: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, data in enumerate(pngs):
            archive.writestr(f"{index:04d}.png", data)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["grey", "palette", "16-bit 0/255", "16-bit 0/1", "16-bit 0/65535", "alpha"])
def test_mask_pngs_are_read_by_what_they_hold(kind):
    """A VOC-style palette mask read as grey came out at 38 of 255 (a silent non-match); 16-bit and alpha masks
    were refused as holding nobody. Each gives the same silhouettes as the plain 0/255 grey PNG."""
    masks = (_full_frames(6) > 0).astype(np.uint8)  # 0/1 [T, H, W]
    if kind == "grey":
        pngs = [_png(m * 255, "L") for m in masks]
    elif kind == "palette":
        pngs = [_png(m, "P") for m in masks]
    elif kind.startswith("16-bit"):
        scale = {"16-bit 0/255": 255, "16-bit 0/1": 1, "16-bit 0/65535": 65535}[kind]
        pngs = [_png((m * scale).astype(np.uint16), "I;16") for m in masks]
    else:
        rgba = np.zeros((*masks.shape[1:], 4), np.uint8)
        pngs = []
        for m in masks:
            rgba[..., :3], rgba[..., 3] = 200, m * 255  # the colour is flat; the alpha holds the person
            pngs.append(_png(rgba.copy(), "RGBA"))
    expected = read_sequence_bytes(_npz(silhouettes=masks * 255), "masks.npz")
    found = read_sequence_bytes(_png_zip_of(pngs), "masks.zip")
    assert np.array_equal(found.silhouettes, expected.silhouettes)


def test_a_dim_mask_is_refused_by_name():
    """Values 0/2 (or a class index such as VOC's person, 15) are neither 0/1 nor 0/255: taken as grey, the
    silhouettes were near-black and matched nothing."""
    with pytest.raises(DataFormatError, match="brightest value is 15: a mask's foreground is 1 or 255"):
        read_sequence_bytes(_npz(silhouettes=(_full_frames(6) > 0).astype(np.uint8) * 15), "classes.npz")


def test_a_zip_made_by_the_macos_finder_reads_its_frames_only():
    pngs = [_png(m * 255, "L") for m in (_full_frames(6) > 0).astype(np.uint8)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, data in enumerate(pngs):
            archive.writestr(f"walk/{index:04d}.png", data)
            archive.writestr(f"__MACOSX/walk/._{index:04d}.png", b"\x00\x05\x16\x07 resource fork")
    assert (
        read_sequence_bytes(buffer.getvalue(), "walk.zip").frames
        == read_sequence_bytes(_png_zip_of(pngs), "plain.zip").frames
    )


def test_a_two_colour_palette_png_with_white_first_is_not_inverted():
    """Pillow's two-colour quantisation puts white at palette index 0: the person is read by colour (not black),
    not by index, or the whole frame would be the person."""
    from PIL import Image

    masks = (_full_frames(6) > 0).astype(np.uint8) * 255
    pngs = []
    for m in masks:
        quantised = Image.fromarray(m, "L").convert("RGB").quantize(2)
        assert quantised.getpalette()[:3] == [255, 255, 255]  # white first: an index rule would invert it
        buffer = io.BytesIO()
        quantised.save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    expected = read_sequence_bytes(_npz(silhouettes=masks), "masks.npz")
    found = read_sequence_bytes(_png_zip_of(pngs), "quantised.zip")
    assert np.array_equal(found.silhouettes, expected.silhouettes)


def test_mask_frames_far_from_a_cameras_shape_are_refused_from_their_headers():
    """One 1,036,800x2 mask frame (within the pixel limit) with a one-row band resized to 66 million columns
    (8 GB, from a 2 kB upload); mask uploads now meet the 8-to-1 bound videos meet."""
    thin = np.zeros((6, 2, 1920), np.uint8)
    thin[:, 0, 100:1900] = 255
    with pytest.raises(DataFormatError, match="frames of 1920x2 are not a camera's shape"):
        read_sequence_bytes(_npz(silhouettes=thin), "thin.npz")
    tall = np.zeros((6, 400, 40), np.uint8)
    tall[:, 100:300, 10:30] = 255
    with pytest.raises(DataFormatError, match="frames of 40x400"):
        read_sequence_bytes(_png_zip_of([_png(m, "L") for m in tall]), "tall.zip")
    assert read_sequence_bytes(_npz(silhouettes=tall[:, :320]), "eight-to-one.npz").frames == 6


def test_a_zip_of_0_1_masks_is_scaled_in_place():
    """0/1 PNG masks decode into one array; scaling them there keeps the upload's peak near one copy of its
    frames (to_uint8_range would make two more)."""
    import tracemalloc

    masks = np.zeros((40, 480, 640), np.uint8)
    masks[:, 100:400, 300:360] = 1
    data = _png_zip_of([_png(m, "L") for m in masks])
    tracemalloc.start()
    record = read_sequence_bytes(data, "zeros-and-ones.zip")
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert record.frames == 40 and record.silhouettes.max() == 255
    assert peak < 1.5 * masks.nbytes, f"{peak / masks.nbytes:.1f} copies of the frames"  # measured 1.1 (2.1 before)


def test_a_png_pillow_refuses_but_libpng_reads_is_read_as_grey():
    """A bad CRC in an ancillary chunk (here a tEXt chunk) makes Pillow refuse the file; libpng, through OpenCV,
    skips the chunk, as the service read such masks before it decoded with Pillow."""
    import struct

    masks = (_full_frames(6) > 0).astype(np.uint8) * 255
    broken = []
    for m in masks:
        png = cv2.imencode(".png", m)[1].tobytes()
        text = b"Comment\x00made by a scanner"
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + b"\x00\x00\x00\x00"  # CRC left wrong
        broken.append(png[:33] + chunk + png[33:])  # after the signature and IHDR
    from PIL import Image

    with pytest.raises(OSError, match="cannot identify image file"):
        Image.open(io.BytesIO(broken[0])).load()
    expected = read_sequence_bytes(_npz(silhouettes=masks), "masks.npz")
    assert np.array_equal(read_sequence_bytes(_png_zip_of(broken), "broken.zip").silhouettes, expected.silhouettes)
