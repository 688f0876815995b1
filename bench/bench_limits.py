"""What two bounded operations cost: decoding a video into the frames the service keeps (peak memory against
the frames' own size), and deleting a large gallery from Redis (one Lua script: Redis serves nothing else
while it runs).

    python -m bench.bench_limits [--frames 600] [--templates 100000 1000000] [--print-only]

The video is 1280x720 at 30 fps (scaled to 640x360 for processing, as the service does); its peak resident
memory is measured in a fresh process, so nothing else the bench allocated counts. The gallery is written
straight into Redis (four templates per subject, 2 kB vectors), then deleted by ``RedisStore.delete_gallery``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import update_section

# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report the
# high-water mark of the bench process that forked it (the clip it encoded included).
DECODE = """
import sys
from pathlib import Path
from gader.video import decode_video
video = decode_video(open(sys.argv[1], "rb").read(), "clip.mp4")
peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
print(video.frames.nbytes, int(peak.split()[1]) * 1024)
"""


def decode_peak(frames: int) -> tuple[int, int, int]:
    """(frames kept, bytes of kept frames, peak RSS bytes of a process that decodes the clip)."""
    from tests.videos import encode

    rng = np.random.default_rng(0)
    clip = (rng.integers(0, 4, (frames, 720, 1280, 3), dtype=np.uint8) * 64).astype(np.uint8)  # [T, H, W, 3]
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(encode(clip, fps=30))
        file.flush()
        del clip
        out = subprocess.run([sys.executable, "-c", DECODE, file.name], capture_output=True, text=True, check=True)
    kept_bytes, peak = (int(v) for v in out.stdout.split())
    return frames, kept_bytes, peak


def deletion_seconds(sizes: list[int]) -> list[tuple[int, float]]:
    from service.gallery.redis_store import RedisStore
    from service.processes import start_redis

    rows = []
    redis = start_redis(Path(tempfile.mkdtemp()))
    try:
        store = RedisStore(redis.url)
        for size in sizes:
            subjects = max(1, size // 4)
            store.create_gallery("g", {}, None)
            pipe = store.client.pipeline(transaction=False)
            for i in range(size):
                subject, template = f"s{i % subjects}", f"t_{i:08d}"
                if i < subjects:
                    pipe.hset("gader:subjects:g", subject, "{}")
                pipe.hset("gader:templates:g", template, json.dumps({"subject": subject}))
                pipe.hset("gader:vectors:g", template, b"\0" * 2048)
                pipe.sadd(f"gader:subject-templates:g:{subject}", template)
                if i % 20_000 == 19_999:
                    pipe.execute()
            pipe.execute()
            start = time.perf_counter()
            store.delete_gallery("g")
            rows.append((size, time.perf_counter() - start))
            print(f"{size:,} templates: deleted in {rows[-1][1]:.2f} s", flush=True)
    finally:
        redis.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--templates", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--print-only", action="store_true", help="print the section, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    frames, kept_bytes, peak = decode_peak(args.frames)
    deletions = deletion_seconds(args.templates)
    body = "\n".join(
        [
            f"Decoding a {frames}-frame 1280x720 clip (kept at 640x360): {kept_bytes / 2**20:.0f} MiB of frames, "
            f"peak resident memory {peak / 2**20:.0f} MiB ({peak / kept_bytes:.2f}x; the process's own libraries "
            "included).",
            "",
            "| templates in the gallery | `delete_gallery` (Redis blocked), s |",
            "|---:|---:|",
            *(f"| {size:,} | {seconds:.2f} |" for size, seconds in deletions),
        ]
    )
    print(body)
    if not args.print_only:
        update_section("limits", "Video decoding memory and gallery deletion", body)


if __name__ == "__main__":
    main()
