"""A pinhole camera: world (x, y on the ground, z up) to image pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Camera:
    position: np.ndarray  # [3] metres
    rotation: np.ndarray  # [3, 3] rows: camera right, down, forward, in world coordinates
    focal: float  # pixels
    width: int
    height: int
    # Principal point; a per-frame vertical offset tilts the framing (the body can leave the bottom edge).
    tilt_pixels: np.ndarray | None = field(default=None)  # [T] added to cy

    @classmethod
    def look_at(cls, position, target, focal: float, width: int, height: int) -> Camera:
        position, target = np.asarray(position, float), np.asarray(target, float)
        forward = target - position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return cls(
            position=position,
            rotation=np.stack([right, down, forward]),
            focal=focal,
            width=width,
            height=height,
        )

    @property
    def pitch_degrees(self) -> float:
        """Downward pitch of the optical axis."""
        return float(np.degrees(np.arcsin(-self.rotation[2, 2])))

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world -> [..., 3] camera coordinates (x right, y down, z forward)."""
        return (points - self.position) @ self.rotation.T

    def project(self, points: np.ndarray, frame_axis: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """[T, ..., 3] world points -> (uv [T, ..., 2] pixels, depth [T, ...] metres).

        ``frame_axis`` says which axis is time, so a per-frame tilt can be applied; None for static points.
        """
        camera = self.to_camera(points)
        depth = np.maximum(camera[..., 2], 1e-3)
        u = self.focal * camera[..., 0] / depth + self.width / 2.0
        v = self.focal * camera[..., 1] / depth + self.height / 2.0
        if self.tilt_pixels is not None and frame_axis is not None:
            shape = [1] * v.ndim
            shape[frame_axis] = -1
            v = v + self.tilt_pixels.reshape(shape)
        return np.stack([u, v], axis=-1), depth
