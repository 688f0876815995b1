"""A literal, frame-by-frame transcription of OpenGait's ``imgs2pickle`` geometry (datasets/pretreatment.py).

It is the oracle that ``gader.silhouettes.pretreat`` (vectorised) is checked against, so it keeps
OpenGait's loop structure and quirks on purpose: the ``sum <= 10000`` rejection, the full-width resize,
``if not x_center`` (which also rejects a centre at column 0) and the 32-column padding whenever the
window touches an edge.
"""

from __future__ import annotations

import cv2
import numpy as np


def opengait_pretreat(frames: list[np.ndarray], img_size: int = 64) -> tuple[list[np.ndarray], list[int]]:
    """frames: uint8 0..255 masks. Returns (aligned frames, indices of the kept input frames)."""
    out, kept = [], []
    for index, img in enumerate(frames):
        if img.sum() <= 10000:
            continue
        y_sum = img.sum(axis=1)
        y_top = (y_sum != 0).argmax(axis=0)
        y_btm = (y_sum != 0).cumsum(axis=0).argmax(axis=0)
        img = img[y_top : y_btm + 1, :]
        ratio = img.shape[1] / img.shape[0]
        img = cv2.resize(img, (int(img_size * ratio), img_size), interpolation=cv2.INTER_CUBIC)
        x_csum = img.sum(axis=0).cumsum()
        x_center = None
        for idx, csum in enumerate(x_csum):
            if csum > img.sum() / 2:
                x_center = idx
                break
        if not x_center:
            continue
        half_width = img_size // 2
        left = x_center - half_width
        right = x_center + half_width
        if left <= 0 or right >= img.shape[1]:
            left += half_width
            right += half_width
            pad = np.zeros((img.shape[0], half_width))
            img = np.concatenate([pad, img, pad], axis=1)
        out.append(img[:, left:right].astype("uint8"))
        kept.append(index)
    return out, kept
