"""Rasterising a posed body: 3D part shapes -> per-pixel part labels -> masks and RGB frames.

Every body part is a convex 3D shape (tapered capsules for limbs, stacked elliptical slices for the
trunk, ellipsoids for the head, hair and bags) whose projection is filled as a convex polygon, far parts
first. The result is a *part label map* per frame: the person mask is ``labels > 0``, the RGB frame is a
palette lookup, and degradations (missing limbs, holes) can act on named parts. Trunk slices are
ellipses with their own width and depth, so the silhouette width changes with the view as a real body's
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from gader.data.synth.body import BodyShape
from gader.data.synth.camera import Camera
from gader.data.synth.kinematics import Skeleton

# Part labels. 0 is background; the order only matters for the palette.
TORSO, NECK, HEAD, HAIR, LONG_HAIR = 1, 2, 3, 4, 5
UPPER_ARM_R, UPPER_ARM_L, FOREARM_R, FOREARM_L, HAND_R, HAND_L = 6, 7, 8, 9, 10, 11
THIGH_R, THIGH_L, SHANK_R, SHANK_L, FOOT_R, FOOT_L = 12, 13, 14, 15, 16, 17
COAT, BAG, STRAP, TOP_ACCENT = 18, 19, 20, 21
PART_COUNT = 22
RIGHT_PARTS = (UPPER_ARM_R, FOREARM_R, HAND_R, THIGH_R, SHANK_R, FOOT_R)
LEFT_PARTS = (UPPER_ARM_L, FOREARM_L, HAND_L, THIGH_L, SHANK_L, FOOT_L)
THIN_PARTS = (FOREARM_R, FOREARM_L, HAND_R, HAND_L)  # what a weak segmenter loses first

SUBPIXEL_BITS = 4  # cv2 fill with 1/16 pixel precision
_CIRCLE = np.stack(
    [
        np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
        np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
    ],
    -1,
)  # [12, 2]


@dataclass(frozen=True)
class Clothing:
    coat: bool = False
    coat_length: float = 0.8  # hem below the hip, as a fraction of the thigh
    bag_kind: str | None = None  # backpack, shoulder, handbag
    bag_side: int = 1
    long_hair: bool = False
    hair_volume: float = 0.5
    top_looseness: float = 1.0  # girth factor of the trunk and arms (clothes)
    bottom_looseness: float = 1.0  # girth factor of the legs (trousers)
    shorts: bool = False  # shanks are bare: trousers stop at the knee


@dataclass
class Shapes:
    """All part geometry for T frames."""

    solids: list[tuple[int, np.ndarray, tuple[int, ...]]] = field(default_factory=list)
    # (part, points [T, K, 3], hull boundaries: the points split into consecutive convex pieces)
    capsules: list[tuple[int, np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    # (part, end a [T, 3], end b [T, 3], radius at a, radius at b)


def _ellipse(centre: np.ndarray, axis_a: np.ndarray, axis_b: np.ndarray, points: int = 14) -> np.ndarray:
    """[T, points, 3] on the ellipse centre + a cos t + b sin t."""
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return centre[:, None] + np.cos(t)[None, :, None] * axis_a[:, None] + np.sin(t)[None, :, None] * axis_b[:, None]


def _ellipsoid(centre: np.ndarray, ax: np.ndarray, ay: np.ndarray, az: np.ndarray) -> np.ndarray:
    """[T, 36, 3]: three great ellipses of the ellipsoid with semi-axis vectors ax, ay, az [T, 3]."""
    return np.concatenate([_ellipse(centre, ax, ay, 12), _ellipse(centre, ax, az, 12), _ellipse(centre, ay, az, 12)], 1)


def build_shapes(skeleton: Skeleton, body: BodyShape, clothing: Clothing) -> Shapes:
    j = skeleton.joints
    pelvis_fwd, pelvis_left = skeleton.body_axes[:, :, 0], skeleton.body_axes[:, :, 1]
    fwd, left, up = (
        skeleton.thorax_axes[:, :, 0],
        skeleton.thorax_axes[:, :, 1],
        skeleton.thorax_axes[:, :, 2],
    )
    shapes = Shapes()
    world_up = np.array([0.0, 0.0, 1.0])

    # Trunk: elliptical slices from the buttocks to the shoulders, filled pairwise (keeps the waist).
    crotch = j["pelvis"] - 0.085 * world_up
    slices = [
        (
            crotch,
            (body.hip_width / 2 + 0.8 * body.thigh_radius) * pelvis_left,
            0.9 * body.pelvis_half_depth * pelvis_fwd,
        ),
        (
            j["pelvis"] + 0.02 * world_up,
            body.pelvis_half_width * pelvis_left,
            body.pelvis_half_depth * pelvis_fwd,
        ),
        (j["waist"], body.waist_half_width * left, body.waist_half_depth * fwd),
        (j["chest"], body.chest_half_width * left, body.chest_half_depth * fwd),
        (
            j["neck_base"] - 0.035 * up,
            (body.shoulder_width / 2 + 0.6 * body.upper_arm_radius) * left,
            0.8 * body.chest_half_depth * fwd,
        ),
    ]
    scale = clothing.top_looseness * (1.12 if clothing.coat else 1.0)  # a coat adds bulk on top of it all
    trunk_points = np.concatenate([_ellipse(c, a * scale, b * scale) for c, a, b in slices], axis=1)
    # Slice boundaries; the rasteriser fills the hull of each pair of neighbouring slices.
    pieces = tuple(14 * i for i in range(len(slices) + 1))
    if clothing.coat:
        hem = clothing.coat_length
        right = j["hip_r"] + hem * (j["knee_r"] - j["hip_r"])
        left_leg = j["hip_l"] + hem * (j["knee_l"] - j["hip_l"])
        centre = 0.5 * (right + left_leg)
        spread = right - left_leg
        half_width = np.abs(np.einsum("ti,ti->t", spread, pelvis_left))[:, None] / 2 + body.thigh_radius + 0.05
        half_depth = np.abs(np.einsum("ti,ti->t", spread, pelvis_fwd))[:, None] / 2 + body.thigh_radius + 0.05
        hem_points = _ellipse(centre, half_width * pelvis_left, half_depth * pelvis_fwd)
        coat_points = np.concatenate([hem_points, trunk_points[:, 14:]], axis=1)
        shapes.solids.append((COAT, coat_points, pieces))
    else:
        shapes.solids.append((TORSO, trunk_points, pieces))

    # Head, hair, neck.
    head_fwd, head_left = fwd, left
    head = j["head"]
    shapes.solids.append(
        (
            HEAD,
            _ellipsoid(
                head,
                body.head_depth / 2 * head_fwd,
                body.head_width / 2 * head_left,
                body.head_height / 2 * up,
            ),
            (0, 36),
        )
    )
    volume = 1.04 + 0.12 * clothing.hair_volume
    hair_centre = head + 0.12 * body.head_height * up - 0.08 * body.head_depth * head_fwd
    shapes.solids.append(
        (
            HAIR,
            _ellipsoid(
                hair_centre,
                volume * body.head_depth / 2 * head_fwd,
                volume * body.head_width / 2 * head_left,
                0.8 * volume * body.head_height / 2 * up,
            ),
            (0, 36),
        )
    )
    if clothing.long_hair:
        top = head - 0.35 * body.head_depth * head_fwd
        bottom = j["neck_base"] - (body.chest_half_depth * 0.7) * fwd - 0.16 * up
        shapes.capsules.append((LONG_HAIR, top, bottom, 0.065 * volume, 0.05 * volume))
    shapes.capsules.append((NECK, j["neck_base"], j["neck_top"], body.neck_radius, body.neck_radius))

    sleeve = clothing.top_looseness * (1.2 if clothing.coat else 1.0)
    trousers = clothing.bottom_looseness
    shank_cloth = 1.0 if clothing.shorts else trousers
    for name, upper, fore, hand in (
        ("r", UPPER_ARM_R, FOREARM_R, HAND_R),
        ("l", UPPER_ARM_L, FOREARM_L, HAND_L),
    ):
        shapes.capsules.append(
            (
                upper,
                j[f"shoulder_{name}"],
                j[f"elbow_{name}"],
                sleeve * body.upper_arm_radius,
                sleeve * 0.85 * body.upper_arm_radius,
            )
        )
        shapes.capsules.append(
            (
                fore,
                j[f"elbow_{name}"],
                j[f"wrist_{name}"],
                sleeve * body.forearm_radius,
                sleeve * 0.72 * body.forearm_radius,
            )
        )
        shapes.capsules.append(
            (
                hand,
                j[f"wrist_{name}"],
                j[f"hand_{name}"],
                0.75 * body.forearm_radius,
                0.6 * body.forearm_radius,
            )
        )
    for name, thigh, shank, foot in (("r", THIGH_R, SHANK_R, FOOT_R), ("l", THIGH_L, SHANK_L, FOOT_L)):
        thigh_r, knee_r = trousers * body.thigh_radius, trousers * body.knee_radius
        shapes.capsules.append((thigh, j[f"hip_{name}"], j[f"knee_{name}"], thigh_r, knee_r))
        calf = j[f"knee_{name}"] + 0.3 * (j[f"ankle_{name}"] - j[f"knee_{name}"])
        calf_r = shank_cloth * body.calf_radius
        shapes.capsules.append((shank, j[f"knee_{name}"], calf, shank_cloth * body.knee_radius, calf_r))
        hem = max(shank_cloth * 0.8, 1.0) * body.ankle_radius  # trousers stay wide down to the ankle
        shapes.capsules.append((shank, calf, j[f"ankle_{name}"], calf_r, hem))
        lift = 0.45 * body.ankle_height * world_up
        shapes.capsules.append((foot, j[f"heel_{name}"] + lift, j[f"toe_{name}"] + 0.6 * lift, 0.032, 0.026))

    if clothing.bag_kind == "backpack":
        centre = j["chest"] - (body.chest_half_depth * scale + 0.08) * fwd - 0.06 * up
        shapes.solids.append((BAG, _ellipsoid(centre, 0.085 * fwd, 0.16 * left, 0.21 * up), (0, 36)))
    elif clothing.bag_kind == "shoulder":
        side = clothing.bag_side
        centre = j["pelvis"] + (side * (body.pelvis_half_width * scale + 0.055)) * pelvis_left + 0.02 * world_up
        shapes.solids.append((BAG, _ellipsoid(centre, 0.15 * pelvis_fwd, 0.045 * pelvis_left, 0.12 * up), (0, 36)))
        shoulder = j["shoulder_l" if side < 0 else "shoulder_r"]
        shapes.capsules.append((STRAP, shoulder, centre + 0.1 * up, 0.014, 0.014))
    elif clothing.bag_kind == "handbag":
        hand = j["hand_l" if clothing.bag_side > 0 else "hand_r"]
        centre = hand - 0.13 * world_up
        vertical = np.broadcast_to(world_up, hand.shape)
        shapes.solids.append((BAG, _ellipsoid(centre, 0.13 * pelvis_fwd, 0.05 * pelvis_left, 0.11 * vertical), (0, 36)))
    return shapes


@dataclass
class Raster:
    labels: np.ndarray  # uint8 [T, H, W] part labels, 0 = background
    body_top: np.ndarray  # float [T] image row of the highest body point (may be outside the image)
    body_bottom: np.ndarray  # float [T] image row of the lowest body point
    depth: np.ndarray  # float [T] distance of the body (pelvis) from the camera, metres


def rasterise(shapes: Shapes, camera: Camera, pelvis: np.ndarray) -> Raster:
    """Fill every part's projected hull, far parts first, into one label map per frame."""
    frames = pelvis.shape[0]
    polygons: list[tuple[int, np.ndarray, tuple[int, ...]]] = []  # (part, uv [T, K, 2], hull bounds)
    depths: list[np.ndarray] = []
    for part, points, bounds in shapes.solids:
        uv, depth = camera.project(points)
        polygons.append((part, uv, bounds))
        depths.append(depth.mean(axis=1))
    for part, a, b, radius_a, radius_b in shapes.capsules:
        ends = np.stack([a, b], axis=1)  # [T, 2, 3]
        uv, depth = camera.project(ends)  # [T, 2, 2], [T, 2]
        radii = camera.focal * np.array([radius_a, radius_b])[None, :] / depth  # [T, 2] pixels
        circles = uv[:, :, None, :] + radii[:, :, None, None] * _CIRCLE[None, None]  # [T, 2, 12, 2]
        polygons.append((part, circles.reshape(frames, 24, 2), (0, 24)))
        depths.append(depth.mean(axis=1))
    order = np.argsort(-np.stack(depths, axis=1), axis=1, kind="stable")  # [T, parts] far first
    all_v = np.concatenate([uv[..., 1] for _, uv, _ in polygons], axis=1)  # [T, N]
    labels = np.zeros((frames, camera.height, camera.width), np.uint8)
    scale = float(1 << SUBPIXEL_BITS)
    fixed = [np.round(uv * scale).astype(np.int32) for _, uv, _ in polygons]
    for t in range(frames):
        canvas = labels[t]
        for index in order[t]:
            part, _uv, bounds = polygons[index]
            points = fixed[index][t]
            if len(bounds) == 2:
                cv2.fillConvexPoly(canvas, cv2.convexHull(points), int(part), cv2.LINE_8, SUBPIXEL_BITS)
                continue
            for start, end in zip(bounds[:-2], bounds[2:], strict=True):  # consecutive slice pairs
                cv2.fillConvexPoly(canvas, cv2.convexHull(points[start:end]), int(part), cv2.LINE_8, SUBPIXEL_BITS)
    _uv, pelvis_depth = camera.project(pelvis[:, None, :])
    return Raster(labels=labels, body_top=all_v.min(axis=1), body_bottom=all_v.max(axis=1), depth=pelvis_depth[:, 0])


def occluder_mask(camera: Camera, box_min: np.ndarray, box_max: np.ndarray, frames: int) -> np.ndarray:
    """bool [T, H, W]: pixels covered by an axis-aligned 3D box (an object between camera and person)."""
    corners = np.array(
        [
            [x, y, z]
            for x in (box_min[0], box_max[0])
            for y in (box_min[1], box_max[1])
            for z in (box_min[2], box_max[2])
        ]
    )
    masks = np.zeros((frames, camera.height, camera.width), np.uint8)
    uv, _ = camera.project(np.broadcast_to(corners, (frames, 8, 3)))
    fixed = np.round(uv * (1 << SUBPIXEL_BITS)).astype(np.int32)
    for t in range(frames):
        cv2.fillConvexPoly(masks[t], cv2.convexHull(fixed[t]), 1, cv2.LINE_8, SUBPIXEL_BITS)
    return masks.astype(bool)
