"""Folders of real photographs for tests and benchmarks: views of the packaged photographs
(inpaint.data.photos.load_photos, offline) written as image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inpaint.data.photos import load_photos


def write_photographs(folder: Path, count: int, size: tuple[int, int] = (200, 160), suffixes: tuple[str, ...] = (".jpg", ".png"),
                      seed: int = 0) -> list[Path]:
    """Write ``count`` files of ``size`` (width, height) into ``folder``: file i is a random window
    of photograph i mod 18, of the same aspect ratio, resized; alternately each suffix's format."""
    photos = list(load_photos().items())
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        name, photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        scale = rng.uniform(0.6, 1.0) * min(w / size[0], h / size[1])
        cw, ch = round(size[0] * scale), round(size[1] * scale)
        x, y = rng.integers(w - cw + 1), rng.integers(h - ch + 1)
        image = Image.fromarray(photo[y : y + ch, x : x + cw]).resize(size, Image.BICUBIC)
        path = folder / f"{name}_{i:04d}{suffixes[i % len(suffixes)]}"
        image.save(path, quality=90)  # (JPEG's; the other formats ignore it)
        paths.append(path)
    return paths
