"""Random square patches of the real photographs that ship inside installed packages (offline).

18 photographs: 15 from scikit-image (``skimage.data``), Grace Hopper from matplotlib's sample
data, china and flower from scikit-learn. Grayscale ones are repeated to three channels.

Whole photographs are held out, so val and holdout patches show scenes never trained on:

- val: ``chelsea`` (a cat, colour) and ``coins`` (grayscale objects);
- holdout: ``astronaut`` (a face, colour: the paper analyses faces) and ``coffee`` (colour);
- train: the other 14, including ``grace_hopper``, so training sees one face as well.

Val and holdout are fixed sets of patches drawn from the data seed (``data.seed``), so their numbers
are the same in every epoch and in every run of any run seed. Training draws new patches every epoch,
rather than the same ``train_size`` ones that a model could memorise, each still a pure function of
(run seed, epoch, index) in any worker or process: training randomness, like the order and holes.
"""

from __future__ import annotations

import functools

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
import torch
from PIL import Image
from torch.utils.data import Dataset

from inpaint.data.datamodule import ImageDataModule, Split

SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "stereo_motorcycle", "brick", "grass", "gravel", "camera", "moon", "coins", "clock",
)
HELD_OUT = {"val": ("chelsea", "coins"), "holdout": ("astronaut", "coffee")}


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3])


@functools.cache
def load_photos() -> dict[str, np.ndarray]:
    """Name -> uint8 ``[H, W, 3]`` for every photograph, loaded once per process."""
    from sklearn.datasets import load_sample_image  # imported here: sklearn.datasets takes ~1 s

    photos = {}
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        photos[name] = _rgb(image[0] if isinstance(image, tuple) else image)  # stereo: the left view
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        photos["grace_hopper"] = _rgb(image.convert("RGB"))
    for name in ("china", "flower"):
        photos[name] = _rgb(load_sample_image(f"{name}.jpg"))
    return photos


def split_photos(split: Split) -> list[str]:
    """Names of the photographs a split draws its patches from."""
    if split in HELD_OUT:
        return list(HELD_OUT[split])
    held_out = {name for names in HELD_OUT.values() for name in names}
    return [name for name in load_photos() if name not in held_out]


class PhotoPatches(Dataset):
    """``length`` patches, uint8 ``[3, S, S]``, each a pure function of ``seed`` and its item.

    An item is an index ``i``, a fixed patch (val, holdout), or ``(epoch, i)``, a patch drawn anew
    for each epoch. ``by_epoch`` marks the set the data module draws by epoch (the train split):
    its loader's :class:`~inpaint.data.datamodule.EpochSampler` asks for ``(epoch, i)`` items.

    Each patch picks a photograph uniformly (so small photographs are not drowned out by the
    1411x1411 retina), a scale uniformly in ``scales`` and a position uniformly; it crops a square
    of side ``S / scale`` (clamped to the photograph's shorter side) and resizes it to ``S`` with
    ``cv2.INTER_AREA`` (antialiased), so smaller scales show more context at lower resolution.
    """

    def __init__(
        self,
        photos: list[np.ndarray],
        length: int,
        seed: int,
        image_size: int = 128,
        scales: tuple[float, float] = (0.5, 1.0),
        by_epoch: bool = False,
    ) -> None:
        self.photos = photos
        self.length = length
        self.seed = seed
        self.image_size = image_size
        self.scales = scales
        self.by_epoch = by_epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        epoch, i = item if isinstance(item, tuple) else (None, item)
        if not 0 <= i < self.length:
            raise IndexError(item)
        # the trailing 1 keeps epoch draws apart from fixed ones (SeedSequence ignores trailing zeros)
        rng = np.random.default_rng([self.seed, i] if epoch is None else [self.seed, epoch, i, 1])
        photo = self.photos[rng.integers(len(self.photos))]
        h, w = photo.shape[:2]
        side = min(round(self.image_size / rng.uniform(*self.scales)), h, w)
        y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
        patch = photo[y : y + side, x : x + side]
        if side != self.image_size:
            patch = cv2.resize(patch, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(patch.transpose(2, 0, 1).copy())


class PhotosDataModule(ImageDataModule):
    """Patches of the packaged photographs, from disjoint photographs per split (see the module
    docstring): ``train_size`` new patches every epoch, drawn from the run's seed (``train_seed``),
    and fixed sets of ``val_size`` and ``holdout_size`` drawn from ``seed`` (the data seed)."""

    def __init__(
        self, train_size: int = 20000, val_size: int = 256, holdout_size: int = 1000, seed: int = 0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "holdout": holdout_size}
        self.seed = seed

    def make_split(self, split: Split) -> PhotoPatches:
        photos = load_photos()
        chosen = [photos[name] for name in split_photos(split)]
        train = split == "train"
        seed = self.train_seed if train else self.seed
        return PhotoPatches(chosen, self.sizes[split], seed, self.image_size, by_epoch=train)
