"""Identities: an articulated body shape, a walking style and an appearance per synthetic person.

Ranges are adult anthropometry (segment lengths as fractions of stature after Drillis & Contini / Winter,
stature and BMI spreads of mixed adult populations) and normal-gait kinematics (Winter; Perry). Every
parameter is drawn around the population mean with a spread that keeps identities heavily overlapping:
no single parameter separates people, only shape and motion together do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gader.errors import GaderError


def _clipped_normal(rng: np.random.Generator, mean: float, std: float, low: float, high: float) -> float:
    return float(np.clip(rng.normal(mean, std), low, high))


@dataclass(frozen=True)
class BodyShape:
    """Lengths and girths in metres."""

    height: float
    thigh: float  # hip joint to knee
    shank: float  # knee to ankle
    ankle_height: float
    foot: float  # heel to toe
    pelvis_to_shoulder: float  # hip-joint height to shoulder-joint height along the spine
    neck: float
    head_height: float
    head_width: float
    head_depth: float
    upper_arm: float
    forearm: float
    hand: float
    hip_width: float  # distance between hip joints
    shoulder_width: float  # distance between shoulder joints
    pelvis_half_width: float  # outer half-width of the pelvis / buttocks
    pelvis_half_depth: float
    waist_half_width: float
    waist_half_depth: float
    chest_half_width: float
    chest_half_depth: float
    thigh_radius: float  # at the hip; tapers to the knee
    knee_radius: float
    calf_radius: float
    ankle_radius: float
    upper_arm_radius: float
    forearm_radius: float
    neck_radius: float
    torso_lean: float  # radians, forward lean of the trunk
    head_forward: float  # metres the head sits in front of the neck
    shoulder_drop: float  # metres one shoulder sits lower (asymmetry, sign = side)

    @property
    def leg_length(self) -> float:
        return self.thigh + self.shank + self.ankle_height


def sample_body(rng: np.random.Generator) -> BodyShape:
    female = rng.random() < 0.5
    height = _clipped_normal(rng, 1.64 if female else 1.77, 0.065, 1.45, 2.00)
    bmi = _clipped_normal(rng, 23.5, 3.2, 17.5, 34.0)
    girth = (bmi / 23.5) ** 0.5  # circumferences grow roughly with sqrt(mass / height^2)

    def fraction(mean: float, spread: float = 0.035) -> float:
        """A stature fraction with a relative spread (segment proportions vary by a few percent)."""
        return height * mean * float(np.clip(rng.normal(1.0, spread), 1 - 2.5 * spread, 1 + 2.5 * spread))

    shoulder_width = fraction(0.205 if female else 0.225, 0.05)
    hip_width = fraction(0.105 if female else 0.095, 0.06)
    return BodyShape(
        height=height,
        thigh=fraction(0.245),
        shank=fraction(0.246),
        ankle_height=fraction(0.039, 0.08),
        foot=fraction(0.11, 0.05),  # the foot a segmenter keeps: the sole merges with the floor
        pelvis_to_shoulder=fraction(0.30, 0.04),
        neck=fraction(0.052, 0.10),
        head_height=fraction(0.130, 0.04),
        head_width=fraction(0.088, 0.05),
        head_depth=fraction(0.112, 0.05),
        upper_arm=fraction(0.186),
        forearm=fraction(0.146),
        hand=fraction(0.108, 0.05),
        hip_width=hip_width,
        shoulder_width=shoulder_width,
        pelvis_half_width=fraction(0.105 if female else 0.097, 0.05) * girth,
        pelvis_half_depth=fraction(0.062, 0.07) * girth,
        waist_half_width=fraction(0.082 if female else 0.090, 0.06) * girth**1.4,
        waist_half_depth=fraction(0.058, 0.08) * girth**1.6,
        chest_half_width=fraction(0.098 if female else 0.108, 0.05) * girth,
        chest_half_depth=fraction(0.066 if female else 0.068, 0.07) * girth,
        thigh_radius=fraction(0.050, 0.07) * girth,
        knee_radius=fraction(0.030, 0.06) * girth**0.7,
        calf_radius=fraction(0.032, 0.07) * girth,
        ankle_radius=fraction(0.017, 0.06),
        upper_arm_radius=fraction(0.027, 0.08) * girth,
        forearm_radius=fraction(0.021, 0.07) * girth**0.8,
        neck_radius=fraction(0.030, 0.07) * girth**0.8,
        torso_lean=float(np.deg2rad(_clipped_normal(rng, 1.5, 2.0, -3.0, 7.0))),
        head_forward=fraction(0.012, 0.6),
        shoulder_drop=float(rng.normal(0.0, 0.008)),
    )


@dataclass(frozen=True)
class GaitStyle:
    """How a person walks. Angles in radians, phases as fractions of the gait cycle."""

    cadence: float  # steps per second
    stride_factor: float  # stride length / leg length
    hip_extension: float  # peak hip extension (behind the body) in late stance
    knee_stance: float  # knee flexion peak in loading response
    knee_swing: float  # knee flexion peak in swing
    swing_timing: float  # phase of the swing-knee peak (about 0.72)
    ankle_plantar: float  # plantarflexion at push-off
    ankle_dorsi: float  # dorsiflexion in late stance
    arm_swing: float  # shoulder flexion amplitude
    arm_swing_asymmetry: float  # left/right amplitude ratio - 1
    elbow_flexion: float
    elbow_swing: float
    arm_abduction: float  # how far the arms hang away from the trunk
    pelvis_rotation: float  # transverse pelvis rotation amplitude
    trunk_counter_rotation: float
    lateral_sway: float  # metres
    step_asymmetry: float  # phase offset of the second leg from half a cycle (limp)
    toe_out: float  # foot progression angle
    head_bob: float  # extra head pitch oscillation, radians

    def stride_length(self, body: BodyShape) -> float:
        return self.stride_factor * body.leg_length


def sample_gait(rng: np.random.Generator) -> GaitStyle:
    deg = np.deg2rad
    return GaitStyle(
        cadence=_clipped_normal(rng, 1.9, 0.11, 1.55, 2.25),
        stride_factor=_clipped_normal(rng, 1.15, 0.08, 0.9, 1.4),
        hip_extension=float(deg(_clipped_normal(rng, 11.0, 3.0, 4.0, 18.0))),
        knee_stance=float(deg(_clipped_normal(rng, 16.0, 5.0, 4.0, 28.0))),
        knee_swing=float(deg(_clipped_normal(rng, 56.0, 5.0, 44.0, 68.0))),
        swing_timing=_clipped_normal(rng, 0.72, 0.015, 0.68, 0.77),
        ankle_plantar=float(deg(_clipped_normal(rng, 12.0, 4.0, 3.0, 22.0))),
        ankle_dorsi=float(deg(_clipped_normal(rng, 10.0, 3.0, 3.0, 16.0))),
        arm_swing=float(deg(_clipped_normal(rng, 12.0, 5.0, 3.0, 28.0))),
        arm_swing_asymmetry=_clipped_normal(rng, 0.0, 0.18, -0.45, 0.45),
        elbow_flexion=float(deg(_clipped_normal(rng, 11.0, 5.0, 2.0, 28.0))),
        elbow_swing=float(deg(_clipped_normal(rng, 10.0, 4.0, 0.0, 20.0))),
        arm_abduction=float(deg(_clipped_normal(rng, 8.0, 3.0, 2.0, 16.0))),
        pelvis_rotation=float(deg(_clipped_normal(rng, 5.0, 2.0, 1.0, 10.0))),
        trunk_counter_rotation=float(deg(_clipped_normal(rng, 4.0, 2.0, 0.0, 9.0))),
        lateral_sway=_clipped_normal(rng, 0.025, 0.008, 0.008, 0.045),
        step_asymmetry=_clipped_normal(rng, 0.0, 0.015, -0.05, 0.05),
        toe_out=float(deg(_clipped_normal(rng, 7.0, 4.0, -3.0, 18.0))),
        head_bob=float(deg(_clipped_normal(rng, 2.0, 1.0, 0.0, 5.0))),
    )


# --- appearance ----------------------------------------------------------------------------------

SKIN_TONES = np.array(
    [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 57, 32)], float
)
HAIR_COLOURS = np.array(
    [(20, 16, 14), (60, 40, 25), (110, 75, 40), (170, 130, 80), (220, 200, 150), (120, 120, 120)], float
)
PATTERNS = ("solid", "horizontal", "vertical", "checks")
BAG_KINDS = ("backpack", "shoulder", "handbag")


@dataclass(frozen=True)
class Outfit:
    """Colours are RGB floats 0..255."""

    top: tuple[float, float, float]
    top_pattern: str
    top_accent: tuple[float, float, float]
    long_sleeves: bool
    bottom: tuple[float, float, float]
    shorts: bool  # shanks show skin
    shoes: tuple[float, float, float]
    top_looseness: float  # how much the top adds to the trunk and arm girth (1 = skin tight)
    bottom_looseness: float  # the same for trousers on the legs


@dataclass(frozen=True)
class Appearance:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_volume: float  # 0 short .. 1 big; shapes the hair cap
    long_hair: bool  # hair down the back: part of the silhouette
    outfits: tuple[Outfit, ...]  # one per recording day; NM and BG share day 0
    coat: tuple[float, float, float]  # worn in CL
    coat_length: float  # hem height as a fraction of thigh length below the hip (0.4 .. 1.1)
    bag_kind: str
    bag_colour: tuple[float, float, float]
    bag_side: int  # +1 left, -1 right


def _colour(rng: np.random.Generator, dark: float = 0.0) -> tuple[float, float, float]:
    """A clothing colour: mostly muted, sometimes saturated."""
    base = rng.uniform(20, 235, 3)
    grey = base.mean()
    saturation = rng.choice([0.15, 0.4, 0.9], p=[0.45, 0.35, 0.2])
    colour = grey + saturation * (base - grey)
    return tuple(float(c) for c in np.clip(colour * (1 - dark), 0, 255))


def _outfit(rng: np.random.Generator) -> Outfit:
    return Outfit(
        top=_colour(rng),
        top_pattern=str(rng.choice(PATTERNS, p=[0.55, 0.2, 0.1, 0.15])),
        top_accent=_colour(rng),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=_colour(rng, dark=0.3),
        shorts=bool(rng.random() < 0.12),
        shoes=_colour(rng, dark=0.5),
        top_looseness=float(rng.uniform(1.18, 1.48)),
        bottom_looseness=float(rng.uniform(1.3, 1.7)),
    )


def sample_appearance(rng: np.random.Generator, days: int = 3) -> Appearance:
    return Appearance(
        skin=tuple(float(c) for c in SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.05)),
        hair=tuple(float(c) for c in HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]),
        hair_volume=float(rng.uniform(0, 1)),
        long_hair=bool(rng.random() < 0.3),
        outfits=tuple(_outfit(rng) for _ in range(days)),
        coat=_colour(rng, dark=0.2),
        coat_length=float(rng.uniform(0.45, 1.1)),
        bag_kind=str(rng.choice(BAG_KINDS)),
        bag_colour=_colour(rng, dark=0.3),
        bag_side=int(rng.choice([-1, 1])),
    )


def vary_for_sequence(body: BodyShape, gait: GaitStyle, rng: np.random.Generator) -> tuple[BodyShape, GaitStyle]:
    """The same person on another walk: posture and swing amplitudes drift a little from day to day and
    walk to walk (mood, fatigue, shoes, attention), so that no two sequences of a person are alike."""

    def wobble(value: float, relative: float) -> float:
        return float(value * rng.normal(1.0, relative))

    body = replace(
        body,
        torso_lean=body.torso_lean + float(np.deg2rad(rng.normal(0.0, 1.5))),
        head_forward=body.head_forward + float(rng.normal(0.0, 0.006)),
    )
    gait = replace(
        gait,
        hip_extension=wobble(gait.hip_extension, 0.08),
        knee_stance=wobble(gait.knee_stance, 0.12),
        knee_swing=wobble(gait.knee_swing, 0.05),
        arm_swing=wobble(gait.arm_swing, 0.15),
        elbow_flexion=wobble(gait.elbow_flexion, 0.15),
        arm_abduction=wobble(gait.arm_abduction, 0.2),
        lateral_sway=wobble(gait.lateral_sway, 0.15),
    )
    return body, gait


@dataclass(frozen=True)
class Identity:
    subject: str
    body: BodyShape
    gait: GaitStyle
    appearance: Appearance


def sample_identity(seed: int, subject_index: int) -> Identity:
    """The person ``subject_index`` of the population drawn with ``seed`` (independent of other people)."""
    if subject_index < 0:
        raise GaderError(f"subject index must be >= 0, got {subject_index}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, subject_index, 0x1D]))
    return Identity(
        subject=f"{subject_index + 1:03d}",
        body=sample_body(rng),
        gait=sample_gait(rng),
        appearance=sample_appearance(rng),
    )
