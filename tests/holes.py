"""Hole shapes the tests share."""

import cv2
import numpy as np


def brush(seed: int, size: int = 128, strokes: int = 4, width: int = 9) -> np.ndarray:
    """A free-form hole: a few thick line segments away from the image's edges, as free-form
    (brush-stroke) masks are drawn; ``(size, size)`` bool, True on the hole."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(strokes):
        (x0, y0), (x1, y1) = rng.integers(size // 8, size - size // 8, (2, 2)).tolist()
        cv2.line(canvas, (x0, y0), (x1, y1), 1, width)
    return canvas.astype(bool)
