"""Colour and imperfection: backgrounds, clothing palettes, RGB compositing, segmentation noise, long range.

Everything here works on whole frames with NumPy / OpenCV; nothing loops over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gader.data.synth import render as parts
from gader.data.synth.body import Appearance, Outfit
from gader.data.synth.render import Clothing


def make_background(rng: np.random.Generator, width: int, height: int, horizon: float) -> np.ndarray:
    """uint8 [H, W, 3]: a wall above ``horizon`` (image row), a floor below, low-frequency texture,
    a few doors and windows, a little noise."""
    wall = rng.uniform(60, 220, 3)
    floor = rng.uniform(40, 180, 3) * rng.uniform(0.6, 1.0)
    rows = np.arange(height)[:, None, None]
    image = np.where(rows < horizon, wall, floor) * np.ones((1, width, 1))
    shade = np.clip(1.0 - 0.25 * np.abs(rows - horizon) / max(height, 1), 0.6, 1.0)
    image = image * shade
    for _ in range(int(rng.integers(1, 5))):  # doors, windows, posters on the wall
        w, h = rng.uniform(0.05, 0.25) * width, rng.uniform(0.1, 0.4) * height
        x, y = rng.uniform(0, width - w), rng.uniform(0, max(horizon - h, 1))
        colour = rng.uniform(30, 230, 3)
        image[int(y) : int(y + h), int(x) : int(x + w)] = colour
    texture = cv2.resize(
        rng.normal(0, 1, (max(height // 16, 2), max(width // 16, 2))).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    image = image * (1 + 0.08 * texture[:, :, None]) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def palette(appearance: Appearance, outfit: Outfit, clothing: Clothing) -> np.ndarray:
    """float [PART_COUNT, 3] base colour of every part label."""
    colours = np.zeros((parts.PART_COUNT, 3))
    skin, hair = np.array(appearance.skin), np.array(appearance.hair)
    colours[parts.TORSO] = outfit.top
    colours[parts.TOP_ACCENT] = outfit.top_accent
    colours[[parts.NECK, parts.HEAD, parts.HAND_R, parts.HAND_L]] = skin
    colours[[parts.HAIR, parts.LONG_HAIR]] = hair
    sleeve = np.array(appearance.coat if clothing.coat else outfit.top)
    colours[[parts.UPPER_ARM_R, parts.UPPER_ARM_L]] = sleeve
    colours[[parts.FOREARM_R, parts.FOREARM_L]] = sleeve if (outfit.long_sleeves or clothing.coat) else skin
    colours[[parts.THIGH_R, parts.THIGH_L]] = outfit.bottom
    colours[[parts.SHANK_R, parts.SHANK_L]] = skin if outfit.shorts else np.array(outfit.bottom)
    colours[[parts.FOOT_R, parts.FOOT_L]] = outfit.shoes
    colours[parts.COAT] = appearance.coat
    colours[[parts.BAG, parts.STRAP]] = appearance.bag_colour
    return colours


@dataclass(frozen=True)
class Lighting:
    brightness: float  # global gain
    far_side: float  # gain of the body side turned away from the camera


def compose(
    labels: np.ndarray,
    colours: np.ndarray,
    background: np.ndarray,
    background_rows: np.ndarray,
    right_side_visible: np.ndarray,
    lighting: Lighting,
    pattern: str,
    stripe_period: np.ndarray,
    occluded: np.ndarray | None,
    occluder_colour: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB frames.

    labels [T, H, W]; colours [PART_COUNT, 3]; background [H', W, 3] with H' >= H, of which frame t shows
    rows ``background_rows[t]`` onwards (a tilting camera sees a different band); right_side_visible bool
    [T]; stripe_period [T] pixels. Only person and occluder pixels are written over the background, so
    the cost follows the person's size, not the frame's.
    """
    frames, height, width = labels.shape
    grain = rng.normal(0, 5, height * width).astype(np.int16)  # fabric / sensor grain on the person
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        gains = np.full(parts.PART_COUNT, lighting.brightness)
        hidden = parts.LEFT_PARTS if right_side_visible[t] else parts.RIGHT_PARTS
        gains[list(hidden)] *= lighting.far_side
        lut = np.clip(colours * gains[:, None], 0, 255).astype(np.int16)  # [PART_COUNT, 3]
        top = int(background_rows[t])
        frame = out[t]
        frame[:] = background[top : top + height]
        flat = labels[t].reshape(-1)
        pixels = np.flatnonzero(flat)  # [N] person pixels
        part = flat[pixels]
        if pattern != "solid" and pixels.size:
            period = max(int(stripe_period[t]), 2)
            rows, columns = pixels // width // period, pixels % width // period
            stripes = {
                "horizontal": rows % 2 == 1,
                "vertical": columns % 2 == 1,
                "checks": (rows + columns) % 2 == 1,
            }[pattern]
            part = np.where((part == parts.TORSO) & stripes, np.uint8(parts.TOP_ACCENT), part)
        colour = lut[part] + grain[pixels, None]  # [N, 3]
        frame.reshape(-1, 3)[pixels] = np.clip(colour, 0, 255).astype(np.uint8)
        if occluded is not None:
            frame[occluded[t]] = occluder_colour
    return out


def degrade_masks(
    masks: np.ndarray,
    labels: np.ndarray,
    feet_rows: np.ndarray,
    feet_columns: np.ndarray,
    body_height: np.ndarray,
    level: float,
    rng: np.random.Generator,
    thickness: float = 0.0,
) -> np.ndarray:
    """Segmentation errors at a controlled ``level`` (0 clean .. 1 poor), in place on bool masks [T, H, W]:
    missing thin limbs, holes, ragged edges, and false blobs (a shadow at the feet, clutter).

    ``thickness`` (-1 .. 1) is a segmenter's systematic bias for the whole sequence (its threshold): the
    silhouette grows or shrinks by up to 0.8 % of the body height.
    """
    if thickness:
        for t in range(len(masks)):
            radius = abs(thickness) * 0.008 * float(body_height[t])
            if radius >= 0.5:
                size = 2 * round(radius) + 1
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
                operation = cv2.dilate if thickness > 0 else cv2.erode
                masks[t] = operation(masks[t].astype(np.uint8), kernel).astype(bool)
    if level <= 0:
        return masks
    frames, height, width = masks.shape
    kernel = np.ones((3, 3), np.uint8)
    for t in range(frames):
        mask = masks[t]
        size = max(float(body_height[t]), 8.0)
        if rng.random() < 0.5 * level:  # a weak segmenter drops forearms and hands
            mask &= ~np.isin(labels[t], parts.THIN_PARTS)
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            continue
        canvas = mask.astype(np.uint8)
        for _ in range(rng.poisson(2.0 * level)):  # holes inside the body's box
            centre = (
                int(rng.integers(columns[0], columns[-1] + 1)),
                int(rng.integers(rows[0], rows[-1] + 1)),
            )
            axes = (max(int(rng.uniform(0.02, 0.06) * size), 1), max(int(rng.uniform(0.02, 0.08) * size), 1))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 0, -1)
        feet_visible = rows[-1] >= feet_rows[t] - 0.05 * size  # no shadow under an occluder or off-frame
        if feet_visible and rng.random() < 0.5 * level:  # a shadow at the feet
            centre = (int(feet_columns[t] + rng.normal(0, 0.05 * size)), int(feet_rows[t]))
            axes = (max(int(rng.uniform(0.08, 0.25) * size), 1), max(int(rng.uniform(0.01, 0.04) * size), 1))
            cv2.ellipse(canvas, centre, axes, 0, 0, 360, 1, -1)
        for _ in range(rng.poisson(0.15 * level)):  # clutter somewhere in the frame
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (max(int(rng.uniform(0.02, 0.08) * size), 1), max(int(rng.uniform(0.02, 0.08) * size), 1))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if level > 0.05:  # ragged edges: flip a share of the boundary pixels
            boundary = np.flatnonzero(cv2.morphologyEx(canvas, cv2.MORPH_GRADIENT, kernel))
            flips = boundary[rng.random(len(boundary)) < 0.35 * level]
            canvas.reshape(-1)[flips] ^= 1
        masks[t] = canvas.astype(bool)
    return masks


def long_range(frames: np.ndarray, scale: float, blur: float) -> np.ndarray:
    """Low resolution and atmospheric blur: down-sample by ``scale`` (< 1), blur, up-sample back.

    frames: [T, H, W] or [T, H, W, 3] uint8. Returns the same shape and dtype.
    """
    if scale >= 0.999 and blur <= 0:
        return frames
    height, width = frames.shape[1:3]
    small = (max(int(width * scale), 4), max(int(height * scale), 4))
    out = np.empty_like(frames)
    for t in range(len(frames)):
        image = cv2.resize(frames[t], small, interpolation=cv2.INTER_AREA)
        if blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        out[t] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return out
