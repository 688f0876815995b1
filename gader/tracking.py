"""People tracks from per-frame person masks: connected components linked frame to frame.

Each frame's mask is dilated a little (so that a limb separated from the body by a segmentation gap stays
with its body), split into connected components, and small components are dropped. Components are linked
to the active tracks greedily, largest first: by box IoU, else by centroid distance relative to the track's
body height (fast walkers at low frame rates move more than their width between frames). A track ends after
``max_gap`` frames without a match. Tracks are ordered by presence (sum of their mask areas over frames):
the main person, who is both large and present for long, comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Observation:
    frame: int  # position in the mask array
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive end
    region: np.ndarray  # bool [y1 - y0, x1 - x0]: the component's (dilated) pixels inside the box
    area: int  # foreground pixels of the undilated mask inside the region


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)

    @property
    def frames(self) -> np.ndarray:
        return np.array([o.frame for o in self.observations], dtype=np.int64)

    @property
    def presence(self) -> int:
        return sum(o.area for o in self.observations)

    def union_box(
        self, margin: int, width: int, height: int, horizontal_margin: int | None = None
    ) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) covering every observation, widened by the margins and clipped to the frame."""
        boxes = np.array([o.box for o in self.observations])
        side = margin if horizontal_margin is None else horizontal_margin
        return (
            max(0, int(boxes[:, 0].min()) - side),
            max(0, int(boxes[:, 1].min()) - margin),
            min(width, int(boxes[:, 2].max()) + side),
            min(height, int(boxes[:, 3].max()) + margin),
        )

    def masks(self, masks: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W]: the frame masks restricted to this person's component, for each observation."""
        out = np.zeros((len(self.observations), *masks.shape[1:]), np.uint8)
        for slot, o in enumerate(self.observations):
            x0, y0, x1, y1 = o.box
            out[slot, y0:y1, x0:x1] = masks[o.frame, y0:y1, x0:x1] * o.region
        return out


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _components(mask: np.ndarray, frame: int, kernel: np.ndarray, min_area: int) -> list[Observation]:
    binary = (mask > 127).astype(np.uint8)
    count, labels, stats, _centroids = cv2.connectedComponentsWithStats(cv2.dilate(binary, kernel), connectivity=8)
    found = []
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        region = labels[y : y + h, x : x + w] == label
        area = int((binary[y : y + h, x : x + w] * region).sum())
        if area >= min_area:
            found.append(Observation(frame, (int(x), int(y), int(x + w), int(y + h)), region, area))
    return sorted(found, key=lambda o: -o.area)


def track_people(
    masks: np.ndarray,
    min_area_fraction: float = 0.001,
    max_gap: int = 15,
    min_iou: float = 0.1,
    max_centre_shift: float = 0.75,
) -> list[Track]:
    """Tracks in uint8 ``[T, H, W]`` masks, the main person first. ``min_area_fraction`` of the frame is the
    smallest person kept; ``max_centre_shift`` is in units of the track's last box height."""
    frames, height, width = masks.shape
    size = max(3, round(0.015 * height) | 1)  # odd kernel, ~1.5 % of the frame height
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    min_area = max(1, int(min_area_fraction * height * width))
    tracks: list[Track] = []
    active: list[Track] = []
    for frame in range(frames):
        active = [t for t in active if frame - t.observations[-1].frame <= max_gap]
        free = list(active)
        for observation in _components(masks[frame], frame, kernel, min_area):
            best, best_score = None, 0.0
            for track in free:
                last = track.observations[-1].box
                score = _iou(observation.box, last)
                if score < min_iou:  # no overlap: accept a nearby centre, scored below any overlap
                    shift = np.hypot(
                        (observation.box[0] + observation.box[2] - last[0] - last[2]) / 2,
                        (observation.box[1] + observation.box[3] - last[1] - last[3]) / 2,
                    )
                    body = max(1, last[3] - last[1])
                    score = min_iou * (1 - shift / (max_centre_shift * body)) if shift < max_centre_shift * body else 0
                if score > best_score:
                    best, best_score = track, score
            if best is None:
                best = Track(track_id=len(tracks) + 1)
                tracks.append(best)
                active.append(best)
            else:
                free.remove(best)
            best.observations.append(observation)
    return sorted(tracks, key=lambda t: -t.presence)
