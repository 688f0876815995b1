"""``gader synth ...``: make SynthGait datasets and preview them."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from gader.cli.output import err_console
from gader.errors import GaderError

app = typer.Typer(help="SynthGait: procedurally generated walking people (docs/synthgait.md).", no_args_is_help=True)

SHARED_CASIA = Path(os.environ.get("GADER_SHARED_DATA", "../shared/data")) / "casia-b" / "train"


def _frame_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise GaderError(f"--frame-size must look like 320x240, got {text!r}") from None
    if not (64 <= width <= 4096 and 64 <= height <= 4096):
        raise GaderError(f"--frame-size must be between 64 and 4096 pixels per side, got {text}")
    return width, height


@app.command()
def make(
    subjects: int = typer.Option(..., "--subjects", min=1, help="Number of people."),
    out: Path = typer.Option(..., "--out", help="Dataset directory (gader format)."),
    seed: int = typer.Option(0, "--seed", help="Population seed: the same seed gives the same people and files."),
    preset: str = typer.Option("casia", "--preset", help="casia (10 sequences x 11 views per person) or wild."),
    first_subject: int = typer.Option(
        0, "--first-subject", min=0, help="Index of the first person (to regenerate a subset)."
    ),
    sequences: int | None = typer.Option(
        None, "--sequences-per-subject", min=1, help="wild: sequences per person (default 8)."
    ),
    conditions: str | None = typer.Option(
        None, "--conditions", help="Only these conditions, comma-separated (nm-01,cl-02)."
    ),
    views: str | None = typer.Option(None, "--views", help="Only these views in degrees, comma-separated (0,90)."),
    noise: float | None = typer.Option(
        None, "--noise", min=0.0, max=1.0, help="Segmentation-noise level 0..1 for every sequence."
    ),
    frame_size: str | None = typer.Option(None, "--frame-size", help="Rendered frame size, e.g. 640x480."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Rendering processes (default: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace sequences that are already in the dataset."),
) -> None:
    """Render a dataset: frames -> masks + RGB -> pretreatment -> silhouettes, ratios, crops, labels."""
    from dataclasses import replace

    from gader.data.synth.generator import plan_dataset
    from gader.data.synth.make import make_dataset

    specs = plan_dataset(subjects, seed, preset, first_subject, sequences)
    if conditions:
        wanted = {c.strip() for c in conditions.split(",") if c.strip()}
        specs = [spec for spec in specs if spec.condition in wanted]
    if views:
        try:
            wanted_views = {int(v) for v in views.split(",") if v.strip()}
        except ValueError:
            raise GaderError(f"--views must be degrees separated by commas, got {views!r}") from None
        specs = [spec for spec in specs if spec.view in wanted_views]
    if not specs:
        raise GaderError("the filters leave no sequence to render")
    size = _frame_size(frame_size)
    specs = [replace(spec, noise=noise, frame_size=size) for spec in specs]
    report = make_dataset(out, specs, workers=workers, overwrite=overwrite)
    err_console.print(
        f"wrote {report.sequences} sequence{'' if report.sequences == 1 else 's'} ({report.frames:,} frames rendered, "
        f"{report.aligned_frames:,} kept) to {out} in {report.seconds:.1f} s: "
        f"{report.frames_per_second:.0f} frames/s"
    )
    if report.empty:
        err_console.print(
            f"skipped {len(report.empty)} sequence(s) whose every frame pretreatment rejected (person too small "
            f"or hidden): {', '.join(report.empty[:10])}{' ...' if len(report.empty) > 10 else ''}"
        )


@app.command()
def preview(
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    seed: int = typer.Option(0, "--seed", help="Population seed."),
    casia: Path | None = typer.Option(
        None,
        "--casia",
        help="A CASIA-B dataset (e.g. the packed ../shared/data/casia-b/train) to show subject 001's nm-01 090°"
        " walk beside (default: that folder when it exists here).",
    ),
) -> None:
    """Contact sheet: frames, aligned silhouettes, RGB crops and DHS of a few sequences, beside CASIA-B."""
    from gader.data.synth.preview import make_preview
    from gader.plots import image_path

    out = image_path(out)  # a bad name is refused before rendering
    path = make_preview(out, seed, casia if casia is not None else (SHARED_CASIA if SHARED_CASIA.exists() else None))
    err_console.print(f"wrote {path}")
