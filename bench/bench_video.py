"""Video to silhouettes: throughput of each stage (decode, segmentation, tracking + pretreatment) on the
shared clips, for each segmenter; and the accuracy check on the raw CASIA-B clip against the dataset's own
silhouettes (mean IoU over aligned frames), with a side-by-side figure for docs/video.md.

    python -m bench.bench_video [--videos ../shared/data/videos] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bench.report import update_section
from gader.data import open_dataset
from gader.segmentation import create_segmenter
from gader.silhouettes import aligned_iou, mask_iou
from gader.tracking import track_people
from gader.video import decode_video, track_sequence

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = Path(__file__).resolve().parents[1] / "docs" / "images" / "video-casia-side-by-side.png"
CLIPS = [
    "casia-b-001-bg-01-000.avi",
    "walk-hallway-1.mp4",
    "walk-hallway-2.mp4",
    "stand-1.mp4",
    "stand-2.mp4",
]


def best_of(repeats: int, function):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def throughput(path: Path, segmenter_name: str, repeats: int) -> dict:
    data = path.read_bytes()
    decode_s, video = best_of(repeats, lambda: decode_video(data, path.name))
    segmenter = create_segmenter(segmenter_name)
    segment_s, masks = best_of(repeats, lambda: segmenter.segment(video.frames))

    def tracks():
        found = track_people(masks)
        return [track_sequence(video, masks, t, path.name) for t in found]

    track_s, sequences = best_of(repeats, tracks)
    frames = len(video.frames)
    total = decode_s + segment_s + track_s
    main = next((s for s in sequences if s is not None), None)
    return {
        "clip": path.name,
        "segmenter": segmenter_name,
        "size": f"{video.width}x{video.height}",
        "processed": f"{video.frames.shape[2]}x{video.frames.shape[1]}",
        "frames": frames,
        "decode": frames / decode_s,
        "segment": frames / segment_s,
        "track": frames / track_s,
        "total": frames / total,
        "main_frames": 0 if main is None else main.record.frames,
    }


def casia_accuracy(videos: Path) -> tuple[dict[str, float], dict]:
    reference = open_dataset(SHARED / "casia-b" / "train").load("001/bg-01/000").silhouettes
    video = decode_video(videos / CLIPS[0])
    scores, kept = {}, {}
    for name in ("selfie", "selfie-landscape", "background"):
        masks = create_segmenter(name).segment(video.frames)
        tracks = [s for s in (track_sequence(video, masks, t, "casia") for t in track_people(masks)) if s]
        ours = tracks[0].record.silhouettes
        iou, pairs = aligned_iou(ours, reference)
        scores[name] = iou
        kept[name] = {"frames": len(ours), "pairs": len(pairs), "video": video, "masks": masks, "track": tracks[0]}
    return scores, {"reference": reference, **kept}


def side_by_side(details: dict, path: Path, columns: int = 8) -> None:
    """Rows: video frame, selfie mask, our aligned silhouette, the dataset's silhouette, their difference."""
    selfie = details["selfie"]
    ours = selfie["track"].record
    reference = details["reference"]
    _iou, pairs = aligned_iou(ours.silhouettes, reference)
    picks = pairs[np.linspace(0, len(pairs) - 1, columns).astype(int)]
    positions = {int(f): i for i, f in enumerate(selfie["video"].frame_index)}
    figure, axes = plt.subplots(5, columns, figsize=(1.5 * columns, 8.4))
    labels = ["video frame", "selfie mask", "ours (aligned)", "dataset", "difference"]
    for column, (mine, theirs) in enumerate(picks):
        frame = positions[int(ours.frame_arrays["frame_index"][mine])]
        a, b = ours.silhouettes[mine] > 127, reference[theirs] > 127
        difference = np.zeros((*a.shape, 3), np.uint8)
        difference[a & b] = (255, 255, 255)
        difference[a & ~b] = (230, 60, 60)  # only ours
        difference[~a & b] = (60, 120, 230)  # only the dataset's
        images = [
            selfie["video"].frames[frame],
            selfie["masks"][frame],
            ours.silhouettes[mine],
            reference[theirs],
            difference,
        ]
        for row, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(labels[row], fontsize=8)
        axes[4, column].set_xlabel(f"IoU {mask_iou(a[None] * 255, b[None] * 255)[0]:.2f}", fontsize=8)
    figure.suptitle(
        "casia-b-001-bg-01-000.avi: our pipeline vs the dataset's silhouettes (red: only ours, blue: only theirs)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=SHARED / "videos")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.videos.is_dir():
        raise SystemExit(f"{args.videos}: the shared videos are not there (see ../shared/data/README.md)")
    rows = [throughput(args.videos / clip, name, args.repeats) for clip in CLIPS for name in ("selfie", "background")]
    for row in rows:
        print(row, flush=True)
    scores, details = casia_accuracy(args.videos)
    side_by_side(details, IMAGE)
    lines = [
        "Frames per second from video bytes to aligned silhouettes, per stage (best of "
        f"{args.repeats}); frames larger than 640x360 pixels are scaled down to that many pixels before "
        "segmentation. Total is the whole path, bytes in, pretreated tracks out.",
        "",
        "| clip | size (processed) | segmenter | frames | decode fps | segment fps | track + pretreat fps | total fps "
        "| main track frames |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['size']} ({r['processed']}) | {r['segmenter']} | {r['frames']} | {r['decode']:.0f} "
            f"| {r['segment']:.0f} | {r['track']:.0f} | {r['total']:.0f} | {r['main_frames']} |"
        )
    lines += [
        "",
        "Accuracy on `casia-b-001-bg-01-000.avi` against the dataset's `001/bg-01/000` silhouettes, after the "
        "same pretreatment: mean IoU over frames matched by monotone alignment (`gader.silhouettes.aligned_iou`).",
        "",
        "| segmenter | mean IoU | aligned pairs / dataset frames |",
        "|---|---:|---:|",
    ]
    for name, iou in scores.items():
        lines.append(f"| {name} | {iou:.3f} | {details[name]['pairs']} / {len(details['reference'])} |")
    lines += ["", f"Side by side: `docs/images/{IMAGE.name}` (shown in docs/video.md)."]
    update_section("video", "Video to silhouettes", "\n".join(lines))


if __name__ == "__main__":
    main()
