"""Walking and standing poses, and forward kinematics to 3D joint positions.

Joint angles follow normative sagittal-plane gait curves (Winter, *Biomechanics and Motor Control of
Human Movement*): keyframes over the gait cycle (phase 0 = heel strike of the right foot), shaped by each
person's ``GaitStyle`` and interpolated with a periodic Catmull-Rom spline. Standing is a pose of its own
with slow postural sway and weight shifts; a per-frame ``walk`` weight blends the two, so stopping and
starting are smooth.

Coordinates: world x/y on the ground, z up (metres). The body frame has x forward, y to the body's left.
The body is lowered until its lowest foot point touches the ground, so the vertical bob of walking comes
out of the leg geometry instead of being added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gader.data.synth.body import BodyShape, GaitStyle

TAU = 2.0 * np.pi


def periodic_spline(keys: np.ndarray, values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Catmull-Rom interpolation of (keys [K] in [0, 1), values [K]) at ``phase`` (any shape), period 1."""
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    k = len(keys)
    phase = np.mod(phase, 1.0)
    # Segment i runs from keys[i] to keys[i + 1] (wrapping).
    extended = np.concatenate([keys, keys[:1] + 1.0])
    segment = np.searchsorted(extended, phase, side="right") - 1
    segment = np.where(phase < keys[0], k - 1, segment)
    start = extended[segment]
    start = np.where(phase < keys[0], keys[-1] - 1.0, start)
    end = np.where(phase < keys[0], keys[0], extended[np.minimum(segment + 1, k)])
    t = (phase - start) / (end - start)
    p0, p1 = values[(segment - 1) % k], values[segment % k]
    p2, p3 = values[(segment + 1) % k], values[(segment + 2) % k]
    t2, t3 = t * t, t * t * t
    return 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)


@dataclass(frozen=True)
class LegCurves:
    hip: tuple[np.ndarray, np.ndarray]
    knee: tuple[np.ndarray, np.ndarray]
    ankle: tuple[np.ndarray, np.ndarray]


def leg_curves(body: BodyShape, gait: GaitStyle, stride_scale: float = 1.0) -> LegCurves:
    """Keyframes of hip flexion, knee flexion and ankle dorsiflexion for one person (radians)."""
    deg = np.deg2rad
    # Hip: shaped so that the step length comes out right. At heel strike the leading hip is flexed by
    # `flex` while the trailing one (half a cycle later) is extended by `hip_extension`:
    # step = leg * (sin(flex) + sin(extension)).
    leg = body.thigh + body.shank
    step = 0.5 * gait.stride_length(body) * stride_scale
    flex = float(np.arcsin(np.clip(step / leg - np.sin(gait.hip_extension), 0.05, 0.75)))
    amplitude = (flex + gait.hip_extension) / 1.9
    middle = amplitude - gait.hip_extension
    hip_shape = np.array([0.9, 0.8, 0.2, -0.6, -1.0, -0.75, 0.25, 1.0, 0.95])
    hip_keys = np.array([0.0, 0.1, 0.3, 0.45, 0.52, 0.6, 0.72, 0.86, 0.95])
    swing = gait.swing_timing
    knee_keys = np.array([0.0, 0.15, 0.3, 0.42, swing - 0.12, swing, swing + 0.13, 0.95])
    knee_values = np.array(
        [
            deg(3),
            gait.knee_stance,
            deg(8),
            deg(6),
            0.6 * gait.knee_swing,
            gait.knee_swing,
            0.55 * gait.knee_swing,
            deg(4),
        ]
    )
    ankle_keys = np.array([0.0, 0.07, 0.3, 0.45, 0.62, 0.75, 0.9])
    ankle_values = np.array([0.0, deg(-6), deg(4), gait.ankle_dorsi, -gait.ankle_plantar, deg(0), deg(2)])
    return LegCurves(
        hip=(hip_keys, middle + amplitude * hip_shape),
        knee=(knee_keys, knee_values),
        ankle=(ankle_keys, ankle_values),
    )


@dataclass
class MotionTrack:
    """What the body does, per frame (all arrays [T])."""

    phase: np.ndarray  # gait phase of the right leg, cycles (monotonic)
    walk: np.ndarray  # 0 standing .. 1 walking
    heading: np.ndarray  # walking direction, radians in the world
    position: np.ndarray  # [T, 2] ground position of the pelvis
    sway: np.ndarray  # [T] standing lateral sway, metres
    weight_shift: np.ndarray  # [T] -1 .. 1, standing weight on the left (+) or right (-) leg


def _rotation_z(angle: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotations about z."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2)


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], -2)


def _apply(rotation: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """rotation [T, 3, 3] applied to vectors [T, 3] or [T, K, 3]."""
    if vectors.ndim == 2:
        return np.einsum("tij,tj->ti", rotation, vectors)
    return np.einsum("tij,tkj->tki", rotation, vectors)


@dataclass
class Skeleton:
    """3D joint positions in the world, each [T, 3], plus the frames the renderer needs."""

    joints: dict[str, np.ndarray]
    body_axes: np.ndarray  # [T, 3, 3] columns: body forward, left, up (pelvis frame)
    thorax_axes: np.ndarray  # [T, 3, 3] columns: thorax forward, left, up (leaning, counter-rotating)


def pose_sequence(
    body: BodyShape,
    gait: GaitStyle,
    motion: MotionTrack,
    jitter: np.ndarray | None = None,
    stride_scale: float = 1.0,
    carry_side: float = 0.0,
) -> Skeleton:
    """Forward kinematics for every frame.

    ``jitter`` [T, 4] perturbs the (hip, knee, ankle, arm) amplitudes per frame (per-cycle variation,
    smooth in time); ``stride_scale`` lengthens or shortens the steps (a faster or slower walk);
    ``carry_side`` (+1 left, -1 right) is the hand that carries a bag: that arm hardly swings.
    """
    frames = len(motion.phase)
    w = np.clip(motion.walk, 0.0, 1.0)  # [T]
    if jitter is None:
        jitter = np.zeros((frames, 4))
    curves = leg_curves(body, gait, stride_scale)
    deg = np.deg2rad

    def leg_angles(phase: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hip = periodic_spline(*curves.hip, phase) * (1 + jitter[:, 0])
        knee = periodic_spline(*curves.knee, phase) * (1 + jitter[:, 1])
        ankle = periodic_spline(*curves.ankle, phase) * (1 + jitter[:, 2])
        # Standing: nearly straight legs; the leg carrying the weight is straight, the other relaxed.
        relaxed = np.clip(-side * motion.weight_shift, 0, 1)
        stand_hip = deg(1.5) + deg(4) * relaxed
        stand_knee = deg(3) + deg(10) * relaxed
        stand_ankle = -deg(2) * relaxed
        return (
            w * hip + (1 - w) * stand_hip,
            w * knee + (1 - w) * stand_knee,
            w * ankle + (1 - w) * stand_ankle,
        )

    right_phase = motion.phase
    left_phase = motion.phase + 0.5 + gait.step_asymmetry
    cycle = TAU * right_phase

    # Pelvis and thorax rotations (about z) and the trunk's forward lean (about the body y axis).
    pelvis_yaw = w * gait.pelvis_rotation * np.cos(cycle)
    thorax_yaw = -w * gait.trunk_counter_rotation * np.cos(cycle)
    heading = motion.heading
    body_rotation = _rotation_z(heading)  # [T, 3, 3]
    pelvis_rotation = body_rotation @ _rotation_z(pelvis_yaw)
    lean = body.torso_lean + w * deg(2.0)  # people lean a little more when walking
    thorax_rotation = body_rotation @ _rotation_z(thorax_yaw) @ _rotation_y(np.full(frames, lean))

    joints: dict[str, np.ndarray] = {}
    origin = np.zeros((frames, 3))
    joints["pelvis"] = origin
    _forward, left_axis, up = np.eye(3)

    def leg(side: float, phase: np.ndarray, name: str) -> None:
        hip_angle, knee_angle, ankle_angle = leg_angles(phase, side)
        hip = _apply(pelvis_rotation, np.tile(left_axis * side * body.hip_width / 2, (frames, 1)))
        abduction = deg(2.0) * side
        thigh_dir = np.stack([np.sin(hip_angle), np.full(frames, np.sin(abduction)), -np.cos(hip_angle)], -1)
        knee = hip + body.thigh * _apply(body_rotation, thigh_dir)
        shank = hip_angle - knee_angle
        shank_dir = np.stack([np.sin(shank), np.zeros(frames), -np.cos(shank)], -1)
        ankle = knee + body.shank * _apply(body_rotation, shank_dir)
        foot_pitch = shank + ankle_angle
        toe_out = _rotation_z(np.full(frames, side * gait.toe_out))
        foot_forward = _apply(
            body_rotation @ toe_out, np.stack([np.cos(foot_pitch), np.zeros(frames), np.sin(foot_pitch)], -1)
        )
        foot_up = _apply(body_rotation, np.stack([-np.sin(foot_pitch), np.zeros(frames), np.cos(foot_pitch)], -1))
        heel = ankle - body.ankle_height * foot_up - 0.22 * body.foot * foot_forward
        joints[f"hip_{name}"], joints[f"knee_{name}"], joints[f"ankle_{name}"] = hip, knee, ankle
        joints[f"heel_{name}"], joints[f"toe_{name}"] = heel, heel + body.foot * foot_forward

    leg(-1.0, right_phase, "r")
    leg(+1.0, left_phase, "l")

    spine_up = thorax_rotation[:, :, 2]  # [T, 3] the leaning trunk's up axis
    neck_base = origin + body.pelvis_to_shoulder * spine_up
    joints["waist"] = origin + 0.45 * body.pelvis_to_shoulder * spine_up
    joints["chest"] = origin + 0.78 * body.pelvis_to_shoulder * spine_up
    joints["neck_base"] = neck_base
    head_pitch = w * gait.head_bob * np.sin(2 * cycle)
    head_up = _apply(
        thorax_rotation @ _rotation_y(-np.full(frames, body.torso_lean) + head_pitch),
        np.tile(up, (frames, 1)),
    )
    head_forward_axis = thorax_rotation[:, :, 0]
    neck_top = neck_base + body.neck * head_up
    joints["neck_top"] = neck_top
    joints["head"] = neck_top + 0.45 * body.head_height * head_up + body.head_forward * head_forward_axis

    # Arms swing opposite to the leg on the same side; standing arms hang with a little motion.
    for side, name, phase in ((-1.0, "r", right_phase), (+1.0, "l", left_phase)):
        asymmetry = (1 + side * gait.arm_swing_asymmetry) * (0.3 if side == carry_side else 1.0)
        swing = -gait.arm_swing * asymmetry * np.cos(TAU * phase) * (1 + jitter[:, 3])
        shoulder_flex = w * (deg(4) + swing) + (1 - w) * deg(2)
        elbow = w * (gait.elbow_flexion + gait.elbow_swing * 0.5 * (1 - np.cos(TAU * phase + np.pi))) + (1 - w) * deg(
            12
        )
        drop = body.shoulder_drop * side
        shoulder = neck_base + _apply(
            thorax_rotation,
            np.tile(left_axis * side * body.shoulder_width / 2 - up * (0.03 + drop), (frames, 1)),
        )
        abduct = gait.arm_abduction
        upper_dir = np.stack(
            [
                np.sin(shoulder_flex) * np.cos(abduct),
                np.full(frames, side * np.sin(abduct)),
                -np.cos(shoulder_flex) * np.cos(abduct),
            ],
            -1,
        )
        fore = shoulder_flex + elbow
        fore_dir = np.stack(
            [
                np.sin(fore) * np.cos(abduct),
                np.full(frames, side * np.sin(abduct) * 0.7),
                -np.cos(fore) * np.cos(abduct),
            ],
            -1,
        )
        arm_frame = body_rotation @ _rotation_z(thorax_yaw)
        elbow_joint = shoulder + body.upper_arm * _apply(arm_frame, upper_dir)
        wrist = elbow_joint + body.forearm * _apply(arm_frame, fore_dir)
        joints[f"shoulder_{name}"], joints[f"elbow_{name}"], joints[f"wrist_{name}"] = (
            shoulder,
            elbow_joint,
            wrist,
        )
        joints[f"hand_{name}"] = wrist + 0.75 * body.hand * _apply(arm_frame, fore_dir)

    # Put the body on the ground: lowest foot point at z = 0; then into the world.
    feet = np.stack([joints[k][:, 2] for k in ("heel_r", "toe_r", "heel_l", "toe_l")], -1)  # [T, 4]
    lift = -feet.min(axis=1)  # [T]
    lateral = _apply(
        body_rotation,
        np.stack([np.zeros(frames), w * gait.lateral_sway * np.sin(cycle) + motion.sway, np.zeros(frames)], -1),
    )
    offset = np.concatenate([motion.position, np.zeros((frames, 1))], axis=1) + lateral
    offset[:, 2] += lift
    for name in joints:
        joints[name] = joints[name] + offset
    return Skeleton(joints=joints, body_axes=pelvis_rotation, thorax_axes=thorax_rotation)
