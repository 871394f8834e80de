"""A small CelebA tree in the real layout, for tests: real 178x218 JPEGs and the partition file.

Each image is a smooth gradient (varying with the index) with a blue ellipse at its centre, pure
green bands outside the central 178x178 square (rows 0..19 and 198..217) and white 10x10 markers
just inside that square's top-left and bottom-right corners, so a centre crop can be checked.
"""

from __future__ import annotations

from pathlib import Path

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


def make_celeba_tree(
    root: Path, n_train: int = 12, n_val: int = 4, n_test: int = 6, torchvision_layout: bool = False
) -> Path:
    """Write ``n_train + n_val + n_test`` images numbered from 000001.jpg, split in that order as
    in CelebA, under ``root`` (or ``root/celeba`` for torchvision's layout); returns ``root``."""
    base = root / "celeba" if torchvision_layout else root
    (base / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, split in enumerate([0] * n_train + [1] * n_val + [2] * n_test, start=1):
        name = f"{i:06d}.jpg"
        celeba_image(i).save(base / "img_align_celeba" / name, quality=90)
        lines.append(f"{name} {split}\n")
    (base / "list_eval_partition.txt").write_text("".join(lines))
    return root
