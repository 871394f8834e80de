"""A small CelebA tree in one of the real layouts, for tests: real 178x218 JPEGs and the partition file.

Each image is a smooth gradient (varying with the index, with period 200) with a blue ellipse at its centre, pure
green bands outside the central 178x178 square (rows 0..19 and 198..217) and white 10x10 markers
just inside that square's top-left and bottom-right corners, so a centre crop can be checked.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, TOP = 178, 218, 20
GREEN, WHITE, BLUE = (0, 255, 0), (255, 255, 255), (0, 0, 255)


def celeba_image(index: int) -> Image.Image:
    """The synthetic CelebA-sized image number ``index``."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.stack([x * 255 // WIDTH, (y * 3 + index * 17) % 200, np.full_like(x, 60)], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH - 1, TOP - 1), fill=GREEN)
    draw.rectangle((0, TOP + WIDTH, WIDTH - 1, HEIGHT - 1), fill=GREEN)
    draw.rectangle((0, TOP, 9, TOP + 9), fill=WHITE)
    draw.rectangle((WIDTH - 10, TOP + WIDTH - 10, WIDTH - 1, TOP + WIDTH - 1), fill=WHITE)
    draw.ellipse((WIDTH // 2 - 30, HEIGHT // 2 - 40, WIDTH // 2 + 30, HEIGHT // 2 + 40), fill=BLUE)
    return image


@functools.cache
def celeba_jpeg(index: int) -> bytes:
    """``celeba_image(index)`` as a JPEG file's bytes (quality 90)."""
    buffer = io.BytesIO()
    celeba_image(index).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_celeba_tree(
    root: Path,
    n_train: int = 12,
    n_val: int = 4,
    n_test: int = 6,
    layout: Literal["celeba", "torchvision", "kaggle"] = "celeba",
    start: int = 1,
) -> Path:
    """Write ``n_train + n_val + n_test`` images numbered from ``start`` (000001.jpg), split in
    that order as in CelebA, under ``root`` in one of the layouts CelebA ships in; returns ``root``.

    - ``celeba``: ``img_align_celeba/*.jpg`` and ``list_eval_partition.txt`` (lines "000001.jpg 0");
    - ``torchvision``: the same under ``root/celeba``;
    - ``kaggle``: ``img_align_celeba/img_align_celeba/*.jpg``, ``list_eval_partition.csv`` (header
      "image_id,partition", lines "000001.jpg,0") and an attribute file the loader ignores.
    """
    base = root / "celeba" if layout == "torchvision" else root
    images = base / "img_align_celeba" / "img_align_celeba" if layout == "kaggle" else base / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    sep = "," if layout == "kaggle" else " "
    lines = ["image_id,partition\n"] if layout == "kaggle" else []
    for i, split in enumerate([0] * n_train + [1] * n_val + [2] * n_test, start=start):
        name = f"{i:06d}.jpg"
        (images / name).write_bytes(celeba_jpeg(i % 200))  # the same pixels: each encoded once
        lines.append(f"{name}{sep}{split}\n")
    if layout == "kaggle":
        (base / "list_eval_partition.csv").write_text("".join(lines))
        (base / "list_attr_celeba.csv").write_text(f"image_id,Smiling\n{start:06d}.jpg,1\n")
    else:
        (base / "list_eval_partition.txt").write_text("".join(lines))
    return root
