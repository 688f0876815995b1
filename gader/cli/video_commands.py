"""``gader extract`` (a video to a sequence file) and ``gader prepare`` (a folder of videos to a dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from gader.cli.output import console, err_console
from gader.errors import GaderError

SEGMENTER_HELP = "Person segmenter: selfie (default), selfie-landscape, or background (static cameras)."


def _limits(fps: float | None):
    from gader.video import VideoLimits

    return VideoLimits(target_fps=fps)


def extract(
    video: Path = typer.Argument(..., help="A video file (.mp4 .m4v .mov .avi .webm .mkv)."),
    out: Path = typer.Option(..., "--out", help="The .npz to write."),
    preview: Path | None = typer.Option(None, "--preview", help="Also write an overview PNG of the tracks."),
    segmenter: str = typer.Option("selfie", "--segmenter", help=SEGMENTER_HELP),
    fps: float | None = typer.Option(None, "--fps", min=1.0, help="Sub-sample the video to this frame rate."),
) -> None:
    """A video to silhouettes: segment, track, pretreat. The .npz holds the main person's ``silhouettes``
    (uint8 [T, 64, 64], 0/255), ``ratios``, ``rgb`` and ``frame_index`` (into the video); other people's tracks
    under ``track_<id>_...``. Every upload route of the service accepts the file as it is."""
    from gader.plots import image_path, plot_video_extraction
    from gader.video import read_video

    if out.suffix.lower() != ".npz":
        raise GaderError(f"{out}: the output must be an .npz file")
    preview = None if preview is None else image_path(preview)  # a bad name is refused before the work
    extraction = read_video(video, limits=_limits(fps), segmenter=segmenter)
    arrays: dict[str, np.ndarray] = {}
    for position, track in enumerate(extraction.tracks):
        record = track.record
        prefix = "" if position == 0 else f"track_{track.track_id}_"
        arrays[f"{prefix}silhouettes"] = record.silhouettes
        arrays[f"{prefix}ratios"] = record.ratios
        arrays[f"{prefix}frame_index"] = record.frame_arrays["frame_index"]
        arrays[f"{prefix}boxes"] = record.frame_arrays["boxes"]
        if record.rgb is not None:
            arrays[f"{prefix}rgb"] = record.rgb
    arrays["track_id"] = np.array(extraction.main.track_id, np.int64)
    arrays["fps"] = np.array(extraction.video.fps, np.float64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    for track in extraction.tracks:
        console.print(
            f"track {track.track_id}{' (main)' if track is extraction.main else ''}: {track.record.frames} aligned "
            f"frames, video frames {track.first_frame}-{track.last_frame}"
        )
    err_console.print(f"wrote {out}")
    if preview is not None:
        written = plot_video_extraction(extraction, preview, title=f"{video.name}: {len(extraction.tracks)} track(s)")
        err_console.print(f"wrote {written}")


def prepare(
    videos: Path = typer.Argument(..., help="A folder of per-subject folders of videos: VIDEOS/<subject>/<clip>.mp4"),
    out: Path = typer.Option(..., "--out", help="The dataset (gader format) to create or add to."),
    segmenter: str = typer.Option("selfie", "--segmenter", help=SEGMENTER_HELP),
    fps: float | None = typer.Option(None, "--fps", min=1.0, help="Sub-sample videos to this frame rate."),
    view: str = typer.Option("unknown", "--view", help="View label stored with every sequence."),
) -> None:
    """Build a training dataset from videos: the subject is the folder name, the condition the file name; the
    main person's track of every video becomes one sequence (silhouettes, ratios, RGB crops)."""
    from rich.progress import Progress

    from gader.data.native import NAME_PATTERN, DatasetWriter
    from gader.errors import DataFormatError
    from gader.video import VIDEO_EXTENSIONS, read_video

    if not videos.is_dir():
        raise GaderError(f"{videos}: not a directory")
    if not NAME_PATTERN.match(view):
        raise GaderError(f"view {view!r} must be 1-64 characters from A-Z a-z 0-9 . _ -")
    clips = sorted(p for p in videos.glob("*/*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not clips:
        raise GaderError(f"{videos}: no videos in per-subject folders (expected {videos}/<subject>/<clip>.mp4)")
    written, skipped, seen = 0, [], set()
    with (
        DatasetWriter(out, description=f"prepared from videos in {videos}") as writer,
        Progress(console=err_console) as progress,
    ):
        task = progress.add_task("videos", total=len(clips))
        for clip in clips:
            progress.advance(task)
            subject, condition = clip.parent.name, clip.stem
            if not (NAME_PATTERN.match(subject) and NAME_PATTERN.match(condition)):
                skipped.append(f"{clip}: subject and clip names must be 1-64 characters from A-Z a-z 0-9 . _ -")
                continue
            if (subject, condition) in seen:
                skipped.append(f"{clip}: another clip of {subject} is also named {condition!r}")
                continue
            seen.add((subject, condition))
            try:
                record = read_video(clip, limits=_limits(fps), segmenter=segmenter).main.record
                record.subject, record.condition, record.view = subject, condition, view
                writer.write(record)
            except DataFormatError as exc:  # a bad video, or a sequence the dataset already holds
                skipped.append(f"{clip}: {exc}")
            else:
                written += 1
    for reason in skipped:
        err_console.print(f"skipped {reason}")
    console.print(f"{out}: {written} sequences written, {len(skipped)} videos skipped")
