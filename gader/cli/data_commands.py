"""``gader data ...``: inspect, convert, split datasets and pretreat mask folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import typer
from rich.table import Table

from gader.cli.output import console, err_console, print_json
from gader.data import DatasetWriter, SequenceRecord, dataset_stats, open_dataset, split_subjects
from gader.errors import DataFormatError, GaderError
from gader.progress import progress
from gader.silhouettes import pretreat

app = typer.Typer(
    help="Inspect, convert and split datasets; pretreat folders of full-frame masks.", no_args_is_help=True
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@app.command()
def stats(
    path: Path = typer.Argument(..., help="Dataset directory (gader, packed CASIA-B or OpenGait .pkl layout)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Subjects, sequences, frames and frames per sequence, conditions and views."""
    summary = dataset_stats(open_dataset(path), progress=not as_json)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{summary['path']} ({summary['layout']})", show_header=False)
    per_sequence = summary["frames_per_sequence"]
    rows = [
        ("subjects", f"{summary['subjects']:,}"),
        ("sequences", f"{summary['sequences']:,}"),
        ("frames", f"{summary['frames']:,}"),
        (
            "frames per sequence",
            f"min {per_sequence['min']}, median {per_sequence['median']:g}, max {per_sequence['max']}",
        ),
        ("conditions", ", ".join(f"{name} ({count})" for name, count in summary["conditions"].items())),
        ("views", ", ".join(f"{name} ({count})" for name, count in summary["views"].items())),
        (
            "with ratios / rgb / labels",
            f"{summary['with_ratios']} / {summary['with_rgb']} / {summary['with_labels']}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Dataset to read (any supported layout)."),
    out: Path = typer.Option(..., "--out", help="New gader dataset directory."),
    cut_sides: bool = typer.Option(False, "--cut-sides", help="Store 64x44 frames instead of 64x64."),
) -> None:
    """Copy a dataset into gader's own format (docs/data-format.md)."""
    dataset = open_dataset(source)
    with DatasetWriter(out, description=f"converted from {source} ({dataset.layout})") as writer:
        for record in progress(dataset, total=len(dataset), desc="converting", unit="seq"):
            writer.write(record.cut_sides() if cut_sides else record)
    err_console.print(f"wrote {len(dataset)} sequence{'' if len(dataset) == 1 else 's'} to {out}")


@app.command()
def split(
    path: Path = typer.Argument(..., help="Dataset directory."),
    val_fraction: float = typer.Option(0.2, help="Share of subjects held out for validation."),
    val_count: int | None = typer.Option(None, help="Number of subjects held out (overrides the fraction)."),
    seed: int = typer.Option(0, help="Seed of the deterministic permutation."),
) -> None:
    """Print a subject-disjoint train/validation split as JSON."""
    dataset = open_dataset(path)
    train, val = split_subjects(dataset.subjects, val_fraction=val_fraction, val_count=val_count, seed=seed)
    print_json({"train": train, "validation": val, "seed": seed})


def _read_images(folder: Path, flags: int) -> tuple[list[Path], list[np.ndarray]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GaderError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
    images = []
    for file in files:
        image = cv2.imread(str(file), flags)
        if image is None:
            raise DataFormatError(f"{file}: not a readable image")
        images.append(image)
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataFormatError(f"{folder}: images differ in size ({', '.join(map(str, sorted(shapes)))})")
    return files, images


@app.command("pretreat")
def pretreat_folder(
    masks: Path = typer.Argument(..., help="Folder of full-frame person masks, one image per frame, in name order."),
    out: Path = typer.Option(..., "--out", help="Sequence file to write (.npz, gader format)."),
    rgb: Path | None = typer.Option(None, "--rgb", help="Folder of the matching RGB frames (same names order)."),
    subject: str = typer.Option("unknown", help="Subject id stored in the file."),
    condition: str = typer.Option("unknown", help="Condition stored in the file."),
    view: str = typer.Option("unknown", help="View stored in the file."),
) -> None:
    """Full-frame masks -> aligned 64x64 silhouettes, resize ratios (and RGB crops), as OpenGait + ratios."""
    from gader.data import write_sequence
    from gader.data.native import check_name

    if out.suffix.lower() != ".npz":
        raise GaderError(f"{out}: the output must be an .npz file")
    for kind, value in (("subject", subject), ("condition", condition), ("view", view)):
        check_name(kind, value)  # as a dataset would store them
    if not masks.is_dir():
        raise GaderError(f"{masks}: not a directory")
    files, mask_images = _read_images(masks, cv2.IMREAD_GRAYSCALE)
    rgb_frames = None
    if rgb is not None:
        rgb_files, colour = _read_images(rgb, cv2.IMREAD_COLOR)
        if len(rgb_files) != len(files):
            raise GaderError(f"{len(files)} masks but {len(rgb_files)} RGB frames")
        rgb_frames = np.stack([cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in colour])
    result = pretreat(np.stack(mask_images), rgb_frames)
    for rejected in result.rejected:
        err_console.print(f"frame {rejected.index} ({files[rejected.index].name}) rejected: {rejected.reason}")
    if result.frames == 0:
        raise GaderError("every frame was rejected; nothing to write")
    record = SequenceRecord(
        subject=subject,
        condition=condition,
        view=view,
        silhouettes=result.silhouettes,
        ratios=result.ratios,
        rgb=result.rgb,
        source=str(masks),
        frame_arrays={"frame_index": result.frame_index, "boxes": result.boxes},
    )
    write_sequence(record, out)
    err_console.print(f"wrote {result.frames} aligned frames ({len(result.rejected)} rejected) to {out}")
