"""Any folder of images as train / val / holdout: ``data=folder data.root=PATH``.

Layouts:

- **Split sub-folders**: ``ROOT/<train_dir>/`` and, optionally, ``ROOT/<val_dir>/`` and
  ``ROOT/<holdout_dir>/`` (each setting a name or a list of names tried in order; by default
  ``train``, ``val`` or ``valid``, ``holdout`` or ``test``). Each folder, read recursively, is a
  split; a split without a folder is carved from train; images elsewhere under ROOT are not read.
- **Anything else**: every image under ROOT, recursively, is one pool that is carved.

Carving orders a pool by the SHA-1 of each image's path relative to the pool's folder (POSIX
separators, Unicode NFC): the first ``holdout_size`` images are the holdout, the next ``val_size``
val, the rest train (at most ``train_size``). The split is a function of the names alone: the same
on every machine and file system, whatever order the files were written or listed in, wherever
ROOT lies, and whatever the seed (runs with different seeds are measured on the same images).
Adding images moves a few between splits. From a val or holdout folder the split takes at most
``val_size`` / ``holdout_size`` images, first in the same order.

Images: files named ``.jpg .jpeg .png .bmp .webp .tif .tiff`` (any case); other files, and
files and folders whose names start with ``.``, are skipped. Each is decoded by :func:`read_image`
with its shorter side resized to ``load_size``; training items are random ``image_size`` crops
of those, new every epoch and drawn from the run's seed (``train_seed``: Pathak's recipe; the base
class flips them), val and holdout items the centre crop, the same in every run. No seed picks the
images, so this data set has no data seed of its own.

With ``cache_dir`` set, each split's resized images are decoded once into a memory-mapped cache
there (:mod:`inpaint.data.cache`; ``prepare_data`` builds it, on one process per node), named by
a fingerprint of its files (paths, sizes, modification times) and ``load_size``, so a changed file
gets a new cache; crops are then cut from the map, with no decoding on the training path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from inpaint.data.cache import ImageCache, build_cache, fingerprint
from inpaint.data.datamodule import ImageDataModule, Split
from inpaint.errors import InpaintError

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
DECODER_VERSION = 1  # part of every cache's fingerprint: raise it when read_image's pixels change


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode. Integer modes wider than 8 bits (``I;16*``, ``I``: 16-bit
    PNG and TIFF) are scaled from 0..65535, float ``F`` from 0..1, both clipped. Transparency
    (an alpha channel, or a palette's or PNG's transparent colour) is composited on black, i.e.
    each colour is multiplied by its alpha: a pixel keeps the light it contributes, fully
    transparent pixels lose whatever colour was stored under them (often arbitrary), and no
    background colour has to be invented. Everything else (L, P, CMYK, 1, YCbCr) is Pillow's
    conversion."""
    if image.mode == "F" or image.mode == "I" or image.mode.startswith("I;16"):
        full_scale = 1.0 if image.mode == "F" else 65535.0
        gray = np.rint(np.clip(np.asarray(image, dtype=np.float64) / full_scale, 0, 1) * 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        return Image.fromarray(((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8))
    return image.convert("RGB")


def read_image(path: Path, load_size: int) -> np.ndarray:
    """The image at ``path`` as uint8 ``[3, H, W]`` with ``min(H, W) == load_size``: EXIF
    orientation applied, converted by :func:`to_rgb`, resized with Pillow's bicubic filter
    (antialiased when shrinking; smaller images are upscaled). A JPEG is decoded already reduced
    (DCT scaling) by the largest of 1/2, 1/4, 1/8 that keeps both sides >= ``load_size``: several
    times faster for large photographs."""
    try:
        with Image.open(path) as image:
            image.draft(None, (load_size, load_size))
            ImageOps.exif_transpose(image, in_place=True)
            image = to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InpaintError(
            f"Cannot read image '{path}' ({error}). The file is corrupt, truncated or not an image Pillow can "
            f"convert to RGB: replace it, convert it to PNG or JPEG, or move it out of the data folder."
        ) from error
    w, h = image.size
    if w <= h:
        size = (load_size, max(load_size, round(h * load_size / w)))
    else:
        size = (max(load_size, round(w * load_size / h)), load_size)
    if size != image.size:
        image = image.resize(size, Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for parent, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(parent, name) for name in files if not name.startswith(".") and name.lower().endswith(EXTENSIONS)]
    return sorted(found)


def hash_order(files: list[Path], base: Path) -> list[Path]:
    """``files`` ordered by the SHA-1 of their NFC-normalised POSIX paths relative to ``base``."""

    def key(path: Path) -> bytes:
        return hashlib.sha1(unicodedata.normalize("NFC", path.relative_to(base).as_posix()).encode()).digest()

    return sorted(files, key=key)


class Decoded:
    """A split's images decoded from their files on every access (:func:`read_image`)."""

    def __init__(self, files: list[Path], load_size: int) -> None:
        self.files = files
        self.load_size = load_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.files[i], self.load_size)


class Crops(Dataset):
    """``image_size`` crops, uint8 ``[3, S, S]``, of ``images`` (i -> uint8 ``[3, H, W]``: a
    :class:`Decoded` split or its :class:`ImageCache`). With a ``seed`` (training) items are
    ``(epoch, index)`` pairs (:class:`EpochSampler`'s) and the crop's position is drawn from
    ``(seed, epoch, index)``; without one, item i is image i's centre crop."""

    def __init__(self, images: Decoded | ImageCache, image_size: int, seed: int | None = None) -> None:
        self.images = images
        self.image_size = image_size
        self.seed = seed
        self.by_epoch = seed is not None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        if self.by_epoch:
            epoch, i = item
            image = self.images[i]
            rng = np.random.default_rng([self.seed, epoch, i])
            top, left = (int(rng.integers(n - self.image_size + 1)) for n in image.shape[1:])
        else:
            image = self.images[item]
            top, left = ((n - self.image_size) // 2 for n in image.shape[1:])
        return torch.from_numpy(np.array(image[:, top : top + self.image_size, left : left + self.image_size]))


def _names(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(name) for name in value]


def _found(count: int, folder: Path) -> str:
    return f"found {count} images ({', '.join(EXTENSIONS)}; hidden files skipped) under {folder}/"


class FolderDataModule(ImageDataModule):
    """A folder of images in one of the layouts of the module docstring. The files are listed and
    the splits checked when the module is built, before any image is decoded, so a wrong ``root``
    or too few images fail before a model is built. ``cache_dir`` None decodes every time.
    ``seed`` is ignored: the configs of runs made before the run's seed drew the crops
    (``train_seed``) passed it, and ``analyze.py`` reads those back."""

    def __init__(
        self,
        root: str | None = None,
        train_size: int | None = None,
        val_size: int = 100,
        holdout_size: int = 500,
        load_size: int = 143,
        seed: int | None = None,
        cache_dir: str | None = None,
        train_dir: str | Sequence[str] = "train",
        val_dir: str | Sequence[str] = ("val", "valid"),
        holdout_dir: str | Sequence[str] = ("holdout", "test"),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise InpaintError("data=folder needs the folder of images: add data.root=PATH to the command line.")
        self.root = Path(root).expanduser().absolute()
        if not self.root.is_dir():
            raise InpaintError(f"data.root={root}: {self.root} is not a folder. Point data.root=PATH at a folder of images.")
        for name, value in (("val_size", val_size), ("holdout_size", holdout_size)):
            if not isinstance(value, int) or value < 1:
                raise InpaintError(f"data.{name}={value!r}: it must be a positive integer (images in that split).")
        if train_size is not None and (not isinstance(train_size, int) or train_size < 1):
            raise InpaintError(f"data.train_size={train_size!r}: it must be a positive integer, or null for all the rest.")
        if not isinstance(load_size, int) or load_size < self.image_size:
            raise InpaintError(
                f"data.load_size={load_size!r}: the shorter side must be resized to at least image_size={self.image_size} "
                f"to cut image_size crops (for 128: 143, or Pathak's 350 for Paris StreetView)."
            )
        self.load_size = load_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.files, self.sources = self._split(
            {"train": _names(train_dir), "val": _names(val_dir), "holdout": _names(holdout_dir)},
            {"val": val_size, "holdout": holdout_size}, train_size,
        )
        log.info(
            "Images of %s: %s", self.root,
            ", ".join(f"{split} {len(self.files[split])} ({self.sources[split]})" for split in ("train", "val", "holdout")),
        )

    def _split(
        self, dirs: dict[str, list[str]], sizes: dict[str, int], train_size: int | None
    ) -> tuple[dict[str, list[Path]], dict[str, str]]:
        """Each split's files, sorted, and where they came from (see the module docstring)."""
        present = {}
        for split, names in dirs.items():
            folder = next((self.root / name for name in names if (self.root / name).is_dir()), None)
            if folder is not None:
                present[split] = folder
        if present and "train" not in present:
            found = ", ".join(f"{folder.name}/ ({split})" for split, folder in present.items())
            raise InpaintError(
                f"{self.root} has the split folder(s) {found} but no training folder "
                f"(data.train_dir={'|'.join(dirs['train'])}): set data.train_dir=NAME to it, or "
                f"data.val_dir=[] data.holdout_dir=[] to split every image under {self.root}."
            )
        pool_folder = present.get("train", self.root)
        pool = hash_order(list_images(pool_folder), pool_folder)
        carved = [split for split in ("holdout", "val") if split not in present]
        need = sum(sizes[split] for split in carved) + self.batch_size
        if len(pool) < need:
            parts = [f"{split}_size {sizes[split]}" for split in carved] + [f"one training batch (batch_size {self.batch_size})"]
            sizes_to_lower = "".join(f"data.{split}_size / " for split in carved)
            raise InpaintError(
                f"{_found(len(pool), pool_folder)}, but the splits need {' + '.join(parts)} = {need}. Add images, "
                f"lower {sizes_to_lower}data.batch_size, or point data.root=PATH elsewhere."
            )
        files, sources, start = {}, {}, 0
        for split in carved:
            files[split] = pool[start : start + sizes[split]]
            start += sizes[split]
            sources[split] = f"carved from {pool_folder.name}/" if "train" in present else "carved by path hash"
        files["train"] = pool[start:][:train_size]
        sources["train"] = f"{pool_folder.name}/" if "train" in present else "the rest"
        for split in ("val", "holdout"):
            if split in present:
                files[split] = hash_order(list_images(present[split]), present[split])[: sizes[split]]
                sources[split] = f"{present[split].name}/"
                if not files[split]:
                    raise InpaintError(
                        f"{_found(0, present[split])}, the {split} split's folder: add images there, "
                        f"or remove it to carve {split} from the training images."
                    )
        return {split: sorted(paths) for split, paths in files.items()}, sources

    def cache_path(self, split: Split) -> Path | None:
        """The split's cache folder, named by a fingerprint of its files and load_size (None: no cache)."""
        if self.cache_dir is None:
            return None
        key = fingerprint(self.files[split], self.root, DECODER_VERSION, self.load_size)
        return self.cache_dir / f"folder_{split}_{self.load_size}px_{len(self.files[split])}_{key[:16]}"

    def images(self, split: Split) -> Decoded | ImageCache:
        """The split's resized images: from its cache (built first if missing), or decoded on access."""
        decoded = Decoded(self.files[split], self.load_size)
        path = self.cache_path(split)
        if path is None:
            return decoded
        if not path.is_dir():
            start = time.perf_counter()
            log.info("Decoding the %d %s images of %s once into %s", len(decoded), split, self.root, path)
            build_cache(path, decoded)
            log.info("Cache of the %s images built in %.1f s", split, time.perf_counter() - start)
        return ImageCache(path)

    def prepare_data(self) -> None:
        """Build the decode caches (Lightning runs this on one process per node, before setup)."""
        if self.cache_dir is not None:
            for split in ("train", "val", "holdout"):
                self.images(split)

    def make_split(self, split: Split) -> Crops:
        return Crops(self.images(split), self.image_size, self.train_seed if split == "train" else None)
