"""SynthGait sequences: a person, a motion script, a camera, rendering, pretreatment, one record.

Everything about a sequence follows from its ``SequenceSpec`` (population seed, subject, condition, view,
preset): the same spec gives byte-identical output on any machine and in any worker, so any subset of a
dataset can be regenerated alone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from gader.data.record import FrameLabels, SequenceRecord
from gader.data.synth import render, scene
from gader.data.synth.body import Identity, sample_identity, vary_for_sequence
from gader.data.synth.camera import Camera
from gader.data.synth.kinematics import Skeleton, pose_sequence
from gader.data.synth.motion import STATE_STAND, MotionPlan, straight_walk, wild_walk
from gader.errors import GaderError
from gader.silhouettes import pretreat

GENERATOR_VERSION = 1
CASIA_CONDITIONS = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")
VIEWS = tuple(range(0, 181, 18))
FULL_BODY_MIN_VISIBLE = 0.85  # a frame shows the full body when >= 85 % of its height is visible


@dataclass(frozen=True)
class Preset:
    name: str
    frame_size: tuple[int, int]  # width, height
    fps: float
    frames: tuple[int, int]  # min, max rendered frames per sequence
    noise: tuple[float, float]  # range of the segmentation-noise level
    sequences_per_subject: int  # wild: sequences per person (casia: 10 conditions x 11 views)
    description: str


PRESETS = {
    "casia": Preset(
        name="casia",
        frame_size=(320, 240),
        fps=25.0,
        frames=(50, 80),
        noise=(0.05, 0.3),
        sequences_per_subject=len(CASIA_CONDITIONS) * len(VIEWS),
        description="CASIA-B-like: 10 sequences (nm-01..06, bg-01..02, cl-01..02) x 11 views per person, "
        "straight walks, static camera at about 1.2 m, 5-6.5 m away",
    ),
    "wild": Preset(
        name="wild",
        frame_size=(480, 360),
        fps=25.0,
        frames=(125, 250),
        noise=(0.0, 0.6),
        sequences_per_subject=8,
        description="unconstrained: walk / stop / stand / turn, occluders and a tilting camera (partial "
        "bodies), 4-50 m distance, eye-level to UAV-like cameras, low resolution and blur far away",
    ),
}


@dataclass(frozen=True)
class SequenceSpec:
    seed: int
    subject_index: int
    condition: str
    view: int  # degrees between the walking direction and the camera (0: walking towards it)
    preset: str = "casia"
    noise: float | None = None  # overrides the preset's segmentation-noise level
    frame_size: tuple[int, int] | None = None  # overrides the preset's (width, height)

    @property
    def seed_sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(
            [self.seed, self.subject_index, zlib.crc32(self.condition.encode()), self.view, 0x5E9]
        )


def plan_dataset(
    subjects: int,
    seed: int = 0,
    preset: str = "casia",
    first_subject: int = 0,
    sequences_per_subject: int | None = None,
) -> list[SequenceSpec]:
    """Every sequence of a dataset, in the order they are written."""
    if preset not in PRESETS:
        raise GaderError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    if subjects < 1:
        raise GaderError(f"need at least one subject, got {subjects}")
    specs = []
    for subject in range(first_subject, first_subject + subjects):
        if preset == "casia":
            specs += [SequenceSpec(seed, subject, c, v, preset) for c in CASIA_CONDITIONS for v in VIEWS]
            continue
        count = sequences_per_subject or PRESETS[preset].sequences_per_subject
        views = np.random.default_rng([seed, subject, 0xA11]).choice(VIEWS, size=count)
        specs += [SequenceSpec(seed, subject, f"wild-{i + 1:02d}", int(v), preset) for i, v in enumerate(views)]
    return specs


@dataclass
class _Scene:
    camera: Camera
    distance: float
    camera_height: float
    tilt: np.ndarray  # [T] pixels
    occluder: tuple[np.ndarray, np.ndarray] | None  # box min, max corners
    partial_mode: str


def _key_points(skeleton: Skeleton, identity: Identity) -> np.ndarray:
    """[T, K, 3] points that bound the body (head top, hands, feet)."""
    j = skeleton.joints
    head_top = j["head"] + np.array([0, 0, 0.55 * identity.body.head_height])
    names = ("toe_r", "toe_l", "heel_r", "heel_l", "hand_r", "hand_l", "shoulder_r", "shoulder_l")
    return np.stack([head_top, *(j[name] for name in names)], axis=1)


def _place_camera(
    skeleton: Skeleton,
    identity: Identity,
    plan: MotionPlan,
    view: int,
    distance: float,
    height_m: float,
    focal_max: float,
    focal_min: float,
    size: tuple[int, int],
) -> Camera:
    """A static camera ``distance`` metres from the middle of the path, at ``view`` degrees from the initial
    walking direction, looking at hip height, zoomed to keep the whole walk in frame (within limits)."""
    width, height = size
    pelvis = skeleton.joints["pelvis"][:, :2]
    centre = 0.5 * (pelvis.min(axis=0) + pelvis.max(axis=0))
    direction = plan.track.heading[0] + np.deg2rad(view)
    position = np.array([*(centre + distance * np.array([np.cos(direction), np.sin(direction)])), height_m])
    target = np.array([*centre, 0.5 * identity.body.height])
    camera = Camera.look_at(position, target, 1.0, width, height)
    normalised = camera.to_camera(_key_points(skeleton, identity))  # [T, K, 3]
    depth = np.maximum(normalised[..., 2], 0.1)
    reach_x = np.abs(normalised[..., 0] / depth).max()
    reach_y = np.abs(normalised[..., 1] / depth).max()
    fit = min(0.46 * width / max(reach_x, 1e-6), 0.46 * height / max(reach_y, 1e-6))
    camera.focal = float(max(min(focal_max, fit), focal_min))
    return camera


def _casia_scene(skeleton, identity, plan, spec, rng, size) -> _Scene:
    distance, height_m = rng.uniform(5.0, 6.5), rng.uniform(0.9, 1.4)
    camera = _place_camera(skeleton, identity, plan, spec.view, distance, height_m, 1.6 * size[0], 0.0, size)
    return _Scene(camera, distance, height_m, np.zeros(len(plan.state)), None, "none")


def _wild_scene(skeleton, identity, plan, spec, rng, size) -> _Scene:
    frames = len(plan.state)
    distance = float(np.exp(rng.uniform(np.log(4.0), np.log(50.0))))
    height_m = rng.uniform(8.0, 30.0) if rng.random() < 0.3 else rng.uniform(1.2, 5.0)
    focal_min = 26.0 * distance / identity.body.height  # keep the body at least ~26 pixels tall
    focal_max = rng.uniform(0.8, 6.0) * size[0]
    camera = _place_camera(skeleton, identity, plan, spec.view, distance, height_m, focal_max, focal_min, size)
    mode = str(rng.choice(["none", "occluder", "tilt"], p=[0.4, 0.35, 0.25]))
    tilt = np.zeros(frames)
    occluder = None
    pelvis = skeleton.joints["pelvis"]
    if mode == "occluder":
        # A box (car, wall, counter) between the camera and where the person is at some moment; its top
        # hides the body below hip-to-chest height as seen from the camera.
        moment = int(rng.integers(int(0.2 * frames), int(0.8 * frames)))
        person = pelvis[moment, :2]
        to_camera = camera.position[:2] - person
        span = float(np.linalg.norm(to_camera))
        gap = min(rng.uniform(0.8, 2.0), 0.5 * span)
        centre = person + to_camera / span * gap
        cut = rng.uniform(0.45, 0.75) * identity.body.height
        box_height = camera.position[2] + (cut - camera.position[2]) * (span - gap) / span
        half = rng.uniform(0.5, 1.3)
        occluder = (
            np.array([centre[0] - half, centre[1] - half, 0.0]),
            np.array([centre[0] + half, centre[1] + half, float(np.clip(box_height, 0.3, 3.0))]),
        )
    elif mode == "tilt":
        # The camera tilts up for a while: the frame's bottom edge crosses the body at hip-to-chest height.
        fps = PRESETS[spec.preset].fps
        start = int(rng.integers(0, max(frames - int(1.5 * fps), 1)))
        length = int(rng.uniform(1.5, 4.0) * fps)
        window = np.zeros(frames)
        window[start : start + length] = 1.0
        ramp = np.convolve(np.pad(window, 6, mode="edge"), np.ones(13) / 13, mode="valid")
        cut_points = pelvis.copy()
        cut_points[:, 2] = rng.uniform(0.45, 0.75) * identity.body.height
        cut_rows, _ = camera.project(cut_points[:, None, :])
        tilt = ramp * np.maximum(size[1] - cut_rows[:, 0, 1], 0.0)
        camera.tilt_pixels = tilt
    return _Scene(camera, distance, height_m, tilt, occluder, mode)


@dataclass
class Rendered:
    """A rendered sequence before and after pretreatment."""

    record: SequenceRecord  # aligned silhouettes, ratios, RGB crops, labels: what datasets store
    masks: np.ndarray  # uint8 [T, H, W] full-frame person masks, 0/255, with segmentation noise
    rgb: np.ndarray  # uint8 [T, H, W, 3] full frames
    gait: np.ndarray  # bool [T] ground truth per rendered frame
    full_body: np.ndarray  # bool [T]


def render_sequence(spec: SequenceSpec) -> SequenceRecord:
    """Render one sequence and pretreat it into a record (aligned silhouettes, ratios, RGB, labels)."""
    return render_frames(spec).record


def render_frames(spec: SequenceSpec) -> Rendered:
    """Render one sequence; keeps the full frames (for previews and tests)."""
    if spec.preset not in PRESETS:
        raise GaderError(f"unknown preset {spec.preset!r}")
    preset = PRESETS[spec.preset]
    size = spec.frame_size or preset.frame_size
    identity = sample_identity(spec.seed, spec.subject_index)
    look = identity.appearance
    rng = np.random.default_rng(spec.seed_sequence)
    body, gait = vary_for_sequence(identity.body, identity.gait, rng)
    frames = int(rng.integers(preset.frames[0], preset.frames[1] + 1))

    # What the person wears and does.
    if spec.preset == "casia":
        kind, day = spec.condition[:2], 0
        plan = straight_walk(frames, preset.fps, body, gait, rng, speed_scale=rng.uniform(0.92, 1.08))
    else:
        kind, day = (
            str(rng.choice(["nm", "bg", "cl"], p=[0.5, 0.25, 0.25])),
            int(rng.integers(len(look.outfits))),
        )
        plan = wild_walk(frames, preset.fps, body, gait, rng)
    outfit = look.outfits[day]
    clothing = render.Clothing(
        coat=kind == "cl",
        coat_length=look.coat_length,
        bag_kind=look.bag_kind if kind == "bg" else None,
        bag_side=look.bag_side,
        long_hair=look.long_hair,
        hair_volume=look.hair_volume,
        top_looseness=outfit.top_looseness,
        bottom_looseness=outfit.bottom_looseness,
        shorts=outfit.shorts,
    )
    carry = float(look.bag_side) if clothing.bag_kind == "handbag" else 0.0
    skeleton = pose_sequence(body, gait, plan.track, plan.jitter, plan.stride_scale, carry)

    # Where the camera is, and what stands in the way.
    make_scene = _casia_scene if spec.preset == "casia" else _wild_scene
    setting = make_scene(skeleton, identity, plan, spec, rng, size)
    camera = setting.camera
    raster = render.rasterise(render.build_shapes(skeleton, body, clothing), camera, skeleton.joints["pelvis"])
    labels = raster.labels
    occluded = None
    if setting.occluder is not None:
        occluded = render.occluder_mask(camera, *setting.occluder, frames)
        labels = np.where(occluded, np.uint8(0), labels)
    visible = labels > 0  # [T, H, W]

    # Per-frame ground truth from what is actually visible.
    rows_visible = visible.any(axis=2)  # [T, H]
    has_rows = rows_visible.any(axis=1)
    top = np.where(has_rows, rows_visible.argmax(axis=1), 0)
    bottom = np.where(has_rows, size[1] - 1 - rows_visible[:, ::-1].argmax(axis=1), -1)
    full_height = raster.body_bottom - raster.body_top
    full_body = (bottom - top + 1) >= FULL_BODY_MIN_VISIBLE * full_height
    gait_frames = plan.state != STATE_STAND

    # Colour.
    max_tilt = int(np.ceil(setting.tilt.max()))
    horizon = size[1] / 2 - camera.focal * np.tan(np.deg2rad(camera.pitch_degrees)) + max_tilt
    background = scene.make_background(rng, size[0], size[1] + max_tilt, horizon)
    to_camera = camera.position[None, :2] - skeleton.joints["pelvis"][:, :2]
    right_visible = np.einsum("ti,ti->t", to_camera, -skeleton.body_axes[:, :2, 1]) > 0
    rgb = scene.compose(
        labels,
        scene.palette(look, outfit, clothing),
        background,
        (max_tilt - setting.tilt).astype(int),
        right_visible,
        scene.Lighting(rng.uniform(0.75, 1.15), rng.uniform(0.7, 0.9)),
        outfit.top_pattern,
        0.035 * full_height,
        occluded,
        rng.uniform(40, 200, 3),
        rng,
    )

    # Imperfect segmentation, and long range.
    noise = spec.noise if spec.noise is not None else rng.uniform(*preset.noise)
    feet, _ = camera.project(np.stack([skeleton.joints["toe_r"], skeleton.joints["toe_l"]], axis=1))
    thickness = float(rng.uniform(-1.0, 1.0)) if spec.noise is None else 0.0
    masks = scene.degrade_masks(
        visible.copy(), labels, raster.body_bottom, feet[..., 0].mean(axis=1), full_height, noise, rng, thickness
    )
    masks = masks.astype(np.uint8) * np.uint8(255)
    body_pixels = float(np.median(full_height))
    scale, blur = 1.0, 0.0
    if spec.preset == "wild" and body_pixels < 90:
        scale = float(np.clip(body_pixels / 110.0, 0.35, 1.0))
        blur = float(rng.uniform(0.0, 1.0))
        masks = np.where(scene.long_range(masks, scale, blur) >= 128, np.uint8(255), np.uint8(0))
        rgb = scene.long_range(rgb, scale, blur)

    result = pretreat(masks, rgb)
    kept = result.frame_index
    meta = {
        "generator": "synthgait",
        "generator_version": GENERATOR_VERSION,
        "preset": spec.preset,
        "seed": spec.seed,
        "subject_index": spec.subject_index,
        "view_deg": spec.view,
        "clothing": kind,
        "bag": clothing.bag_kind,
        "outfit_day": day,
        "distance_m": round(float(setting.distance), 3),
        "camera_height_m": round(float(setting.camera_height), 3),
        "pitch_deg": round(camera.pitch_degrees, 2),
        "focal_px": round(camera.focal, 1),
        "frame_size": list(size),
        "fps": preset.fps,
        "speed_mps": round(float(plan.speed), 3),
        "noise": round(float(noise), 3),
        "mask_thickness": round(thickness, 3),
        "long_range_scale": round(scale, 3),
        "partial_mode": setting.partial_mode,
        "rendered_frames": frames,
        "rejected_frames": len(result.rejected),
    }
    record = SequenceRecord(
        subject=identity.subject,
        condition=spec.condition,
        view=f"{spec.view:03d}",
        silhouettes=result.silhouettes,
        ratios=result.ratios,
        rgb=result.rgb,
        labels=FrameLabels(gait=gait_frames[kept], full_body=full_body[kept]),
        source=f"synthgait:{spec.preset}:{spec.seed}:{spec.subject_index}:{spec.condition}:{spec.view}",
        meta=meta,
        frame_arrays={
            "frame_index": kept,
            "state": plan.state[kept],
            "distance": raster.depth[kept].astype(np.float32),
            "boxes": result.boxes,
        },
    )
    return Rendered(record=record, masks=masks, rgb=rgb, gait=gait_frames, full_body=full_body)
