"""Decode caches: images decoded once into a folder that later epochs and runs memory-map.

A cache is a folder of two files::

    index.npy    int64 [N, 4]: each image's byte offset in pixels.bin and its shape (C, H, W)
    pixels.bin   the images' uint8 [C, H, W] bytes back to back

so images of any size share one memory map and an item is a view of it: nothing is decoded or
copied until a crop is taken. A cache is written into a hidden temporary folder beside its final
one and renamed into place when complete, so an interrupted build leaves nothing a later run could
take for a cache. Its name should carry a :func:`fingerprint` of what it was built from, so changed
inputs get a new cache (old ones stay until deleted).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from inpaint.errors import InpaintError

INDEX, PIXELS = "index.npy", "pixels.bin"


def fingerprint(files: Sequence[Path], base: Path, *settings: object) -> str:
    """A hex key of ``settings`` and every file's POSIX path relative to ``base``, size and
    modification time. It changes when a file is added, removed, renamed or rewritten, not when
    ``base`` moves: a copy that keeps the times (``cp -a``, ``rsync -a``) keeps its cache."""
    digest = hashlib.sha1(repr(settings).encode())
    for path in files:
        try:
            stat = path.stat()
        except OSError as error:
            raise InpaintError(f"cannot read '{path}' ({error.strerror or error}): it was listed, then moved or removed.") from error
        digest.update(f"\0{path.relative_to(base).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class ImageCache:
    """The images of a built cache, uint8 ``[C, H, W]`` read-only views of its pixels. The file is
    mapped on first access, so each DataLoader worker maps it itself and a pickled cache carries
    no pixels."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = np.load(folder / INDEX)
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.folder / PIXELS, dtype=np.uint8, mode="r")
        offset, *shape = (int(v) for v in self.index[i])
        return self._pixels[offset : offset + math.prod(shape)].reshape(shape)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}


class CachedImages(Dataset):
    """A cache's images as uint8 tensors, each copied out of the map (for data sets of one image
    size, served whole: CelebA's)."""

    def __init__(self, cache: ImageCache) -> None:
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.cache[i]))


def build_cache(folder: Path, images: Sequence[np.ndarray]) -> Path:
    """Write ``images`` (uint8 ``[C, H, W]`` arrays, read in order, at least one) into the cache
    ``folder`` unless it is there already; returns ``folder``. When two processes build the same
    cache at once (one per node on a shared disk), the first to finish serves both."""
    if (folder / INDEX).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        index = np.empty((len(images), 4), dtype=np.int64)
        offset = 0
        with open(partial / PIXELS, "wb") as out:
            for i in range(len(images)):
                image = np.ascontiguousarray(images[i], dtype=np.uint8)
                index[i] = (offset, *image.shape)
                out.write(image.data)
                offset += image.nbytes
        np.save(partial / INDEX, index)
        try:
            os.replace(partial, folder)
        except OSError:  # the other process's complete cache is in place: keep it
            if not (folder / INDEX).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
