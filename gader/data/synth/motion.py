"""Motion scripts: what a person does over a sequence (walk, stop, stand, walk on, turn), per frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gader.data.synth.body import BodyShape, GaitStyle
from gader.data.synth.kinematics import MotionTrack

STATE_WALK, STATE_STAND, STATE_TURN = 0, 1, 2
STATE_NAMES = ("walk", "stand", "turn")


@dataclass
class MotionPlan:
    track: MotionTrack
    state: np.ndarray  # uint8 [T] STATE_*
    jitter: np.ndarray  # [T, 4] per-cycle amplitude variation of hip, knee, ankle, arm
    speed: float  # walking speed, m/s
    stride_scale: float  # this sequence's steps relative to the person's usual stride


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average with edge padding (transitions between motion states take ``width`` frames)."""
    if width <= 1:
        return values.astype(float)
    padded = np.pad(values.astype(float), (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _cycle_jitter(phase: np.ndarray, rng: np.random.Generator, spread: tuple[float, ...]) -> np.ndarray:
    """[T, len(spread)]: one random amplitude factor per gait cycle, interpolated along the phase."""
    cycles = np.arange(np.floor(phase.min()) - 1, np.ceil(phase.max()) + 2)
    return np.stack([np.interp(phase, cycles, rng.normal(0.0, s, len(cycles))) for s in spread], axis=1)


def _track(
    walk_target: np.ndarray,
    heading_rate: np.ndarray,
    fps: float,
    gait: GaitStyle,
    body: BodyShape,
    rng: np.random.Generator,
    speed_scale: float,
    start: np.ndarray,
    heading0: float,
) -> tuple[MotionTrack, float]:
    frames = len(walk_target)
    walk = np.clip(_smooth(walk_target, int(0.6 * fps)), 0.0, 1.0)
    cycles_per_second = gait.cadence / 2.0 * speed_scale**0.5
    speed = gait.stride_length(body) * cycles_per_second * speed_scale**0.5
    phase = rng.uniform(0, 1) + np.concatenate([[0.0], np.cumsum(walk[:-1])]) * cycles_per_second / fps
    heading = heading0 + np.concatenate([[0.0], np.cumsum(_smooth(heading_rate, int(0.4 * fps))[:-1])]) / fps
    velocity = speed * walk[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    position = start + np.concatenate([[[0.0, 0.0]], np.cumsum(velocity[:-1], axis=0)]) / fps
    # Standing: slow postural sway and an occasional weight shift from one leg to the other.
    t = np.arange(frames) / fps
    sway = (
        (1 - walk) * rng.uniform(0.004, 0.012) * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 6.3))
    )
    shifts = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=frames // int(2 * fps) + 2), int(2 * fps))[:frames]
    weight = (1 - walk) * _smooth(shifts, int(0.8 * fps))
    track = MotionTrack(phase=phase, walk=walk, heading=heading, position=position, sway=sway, weight_shift=weight)
    return track, speed


def straight_walk(
    frames: int,
    fps: float,
    body: BodyShape,
    gait: GaitStyle,
    rng: np.random.Generator,
    speed_scale: float = 1.0,
) -> MotionPlan:
    """Walking in a straight line along +x, centred on the origin (CASIA-B style)."""
    track, speed = _track(np.ones(frames), np.zeros(frames), fps, gait, body, rng, speed_scale, np.zeros(2), 0.0)
    track.position = track.position - track.position.mean(axis=0) + np.array([0.0, rng.normal(0, 0.05)])
    jitter = _cycle_jitter(track.phase, rng, (0.05, 0.05, 0.08, 0.08))
    return MotionPlan(track, np.zeros(frames, np.uint8), jitter, speed, speed_scale**0.5)


def wild_walk(frames: int, fps: float, body: BodyShape, gait: GaitStyle, rng: np.random.Generator) -> MotionPlan:
    """Walk, stop, stand, walk on, turn, in realistic orders and durations."""
    states = np.zeros(frames, np.uint8)
    heading_rate = np.zeros(frames)
    t = 0
    state = STATE_STAND if rng.random() < 0.3 else STATE_WALK
    while t < frames:
        if state == STATE_WALK:
            length = int(rng.uniform(1.5, 4.5) * fps)
            following = rng.choice([STATE_STAND, STATE_TURN, STATE_WALK], p=[0.5, 0.35, 0.15])
        elif state == STATE_STAND:
            length = int(rng.uniform(1.5, 4.0) * fps)
            following = STATE_WALK
        else:
            length = int(rng.uniform(0.8, 1.8) * fps)
            heading_rate[t : t + length] = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(50, 140)) / (length / fps)
            following = STATE_WALK
        states[t : t + length] = state
        t += length
        state = following
    walk_target = (states != STATE_STAND).astype(float)
    speed_scale = rng.uniform(0.9, 1.08)
    track, speed = _track(
        walk_target, heading_rate, fps, gait, body, rng, speed_scale, np.zeros(2), rng.uniform(0, 2 * np.pi)
    )
    track.position = track.position - 0.5 * (track.position.min(axis=0) + track.position.max(axis=0))
    # The state a frame is labelled with follows the smoothed walk weight, not the script's target:
    # a person still decelerating is still walking.
    states = np.where(track.walk >= 0.5, np.where(states == STATE_TURN, STATE_TURN, STATE_WALK), STATE_STAND)
    jitter = _cycle_jitter(track.phase, rng, (0.06, 0.06, 0.1, 0.1))
    return MotionPlan(track, states.astype(np.uint8), jitter, speed, speed_scale**0.5)
