"""Image grids and sending images to whatever loggers a run has (W&B, TensorBoard) and to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from PIL import Image


def grid(rows: list[torch.Tensor], pad: int = 2, background: float = 1.0) -> np.ndarray:
    """Lay out rows of ``[N, 3, H, W]`` images in [0, 1] as one uint8 ``[H', W', 3]`` picture."""
    n, _, h, w = rows[0].shape
    canvas = torch.full((3, len(rows) * (h + pad) + pad, n * (w + pad) + pad), background)
    for r, row in enumerate(rows):
        for c, image in enumerate(row.detach().float().cpu().clamp(0, 1)):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, top : top + h, left : left + w] = image
    return (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def takes_images(loggers: list[Logger]) -> bool:
    """Whether any of ``loggers`` takes images (:func:`log_image` sends them to no other)."""
    return any(isinstance(logger, (WandbLogger, TensorBoardLogger)) for logger in loggers)


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int, caption: str | None = None) -> None:
    """Log a uint8 ``[H, W, 3]`` image to every logger that takes images (others are skipped)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step, **({"caption": [caption]} if caption else {}))
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step, dataformats="HWC")


def read_png(path: Path) -> np.ndarray:
    """A PNG file as a uint8 ``[H, W, 3]`` image."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
