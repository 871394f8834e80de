"""Patches of the photographs packaged with scikit-image, matplotlib and scikit-learn."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from seeded_run import as_bytes, first_epoch, first_weights, seeded_run, served

from inpaint.data.datamodule import EpochSampler
from inpaint.data.photos import PhotoPatches, PhotosDataModule, load_photos, split_photos


def test_photos_load() -> None:
    photos = load_photos()
    assert len(photos) == 18 and {"astronaut", "grace_hopper", "china", "stereo_motorcycle"} <= set(photos)
    for image in photos.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 128


def test_whole_photographs_are_held_out() -> None:
    train, val, holdout = (set(split_photos(split)) for split in ("train", "val", "holdout"))
    assert val and holdout and not (train & val or train & holdout or val & holdout)
    assert train | val | holdout == set(load_photos())
    dm = PhotosDataModule()
    photos = load_photos()
    for split, names in (("train", train), ("val", val), ("holdout", holdout)):
        assert {id(image) for image in dm.split(split).photos} == {id(photos[name]) for name in names}


@pytest.fixture(scope="module")
def patches() -> PhotoPatches:
    return PhotoPatches(list(load_photos().values()), length=64, seed=3)


def test_patches_are_deterministic_and_varied(patches: PhotoPatches) -> None:
    again = PhotoPatches(patches.photos, length=64, seed=3)
    other_seed = PhotoPatches(patches.photos, length=64, seed=4)
    batch = torch.stack([patches[i] for i in range(32)])
    assert batch.dtype == torch.uint8 and batch.shape == (32, 3, 128, 128)
    assert all(torch.equal(patches[i], again[i]) for i in range(32))
    assert sum(torch.equal(patches[i], other_seed[i]) for i in range(32)) == 0
    assert len({patch.numpy().tobytes() for patch in batch}) == 32
    assert batch.float().std(dim=(1, 2, 3)).mean() > 20
    with pytest.raises(IndexError):
        patches[64]


def test_train_patches_are_new_every_epoch_and_the_same_per_seed_and_epoch(patches: PhotoPatches) -> None:
    train, again, other_seed = (PhotoPatches(patches.photos, length=64, seed=s, by_epoch=True) for s in (3, 3, 4))
    epoch = {e: [train[(e, i)] for i in range(16)] for e in (0, 1)}
    assert not any(torch.equal(a, b) for a, b in zip(epoch[0], epoch[1]))
    assert all(torch.equal(again[(1, i)], epoch[1][i]) for i in range(16))
    assert not any(torch.equal(other_seed[(1, i)], epoch[1][i]) for i in range(16))
    assert not any(torch.equal(patches[i], epoch[0][i]) for i in range(16))  # nor the fixed patches
    with pytest.raises(IndexError):
        train[(0, 64)]


def test_scale_one_is_an_exact_crop() -> None:
    photo = load_photos()["coffee"]
    patch = PhotoPatches([photo], length=1, seed=0, scales=(1.0, 1.0))[0].permute(1, 2, 0).numpy()
    _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(photo, patch, cv2.TM_SQDIFF))
    assert np.array_equal(patch, photo[y : y + 128, x : x + 128])


def test_smaller_scale_is_an_antialiased_downscale() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    patch = PhotoPatches([photo], length=1, seed=0, scales=(0.5, 0.5))[0].permute(1, 2, 0).numpy()
    block_means = photo.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    assert np.abs(patch - block_means).max() <= 1  # 2 x 2 means rounded to 8 bits (fixed point): within a level


def test_scale_is_clamped_to_small_photos() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (128, 200, 3), dtype=np.uint8)
    dataset = PhotoPatches([photo], length=8, seed=0, scales=(0.5, 0.6))
    offsets = set()
    for i in range(8):
        patch = dataset[i].permute(1, 2, 0).numpy()
        offsets |= {x for x in range(73) if np.array_equal(patch, photo[:, x : x + 128])}
    assert len(offsets) >= 4  # every patch is a crop, at varied positions


def test_patches_come_from_every_photo() -> None:
    photos = [np.full((200, 200, 3), value, dtype=np.uint8) for value in (0, 100, 200)]
    values = {PhotoPatches(photos, length=30, seed=0)[i][0, 0, 0].item() for i in range(30)}
    assert values == {0, 100, 200}


def test_datamodule_loaders() -> None:
    dm = PhotosDataModule(train_size=64, val_size=16, holdout_size=12, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (8, 3, 128, 128)
    assert len(dm.train_dataloader()) == 8 and len(dm.val_dataloader()) == 2
    assert [len(b) for b in dm.test_dataloader()] == [8, 4]


def _epoch(loader: torch.utils.data.DataLoader, epoch: int) -> torch.Tensor:
    loader.sampler.set_epoch(epoch)  # what Lightning does before every training epoch
    return torch.cat(list(loader))


def test_train_loader_draws_by_epoch_and_val_and_holdout_stay_fixed() -> None:
    sizes = {"train_size": 16, "val_size": 8, "holdout_size": 8, "batch_size": 8, "seed": 5}
    dm = PhotosDataModule(**sizes)
    train = dm.train_dataloader()
    assert isinstance(train.sampler, EpochSampler) and len(train) == 2
    first, second = _epoch(train, 0), _epoch(train, 1)
    assert not {p.numpy().tobytes() for p in first} & {p.numpy().tobytes() for p in second}
    workers = PhotosDataModule(**sizes, num_workers=2)  # the same (seed, epoch) in worker processes
    assert torch.equal(_epoch(workers.train_dataloader(), 1), second)
    assert torch.equal(_epoch(train, 0), first)
    photos = load_photos()
    for split, loader in (("val", dm.val_dataloader()), ("holdout", dm.test_dataloader())):
        assert not isinstance(loader.sampler, EpochSampler)
        fixed = PhotoPatches([photos[name] for name in split_photos(split)], length=8, seed=5)
        assert torch.equal(torch.cat(list(loader)), torch.stack([fixed[i] for i in range(8)]))
        assert torch.equal(torch.cat(list(loader)), torch.cat(list(loader)))
    # the PCA basis is fitted on epoch 0's patches, unflipped: the same set as the first epoch trains on
    fitted = torch.cat(list(dm.pca_loader()))
    assert sorted(p.numpy().tobytes() for p in fitted) == sorted(p.numpy().tobytes() for p in first)


# seed (the run: which training patches, their order, the model) and data.seed (the val and holdout
# patches), composed as train.py composes them
SMOKE = ("experiment=smoke", "data=photos")  # 64 training patches an epoch, 16 val, 16 holdout


def test_the_run_seed_draws_the_training_patches_and_leaves_val_and_holdout_alone() -> None:
    runs = [seeded_run(*SMOKE, f"seed={seed}") for seed in (0, 1, 0)]
    epochs = [first_epoch(dm)[0] for _, dm, _ in runs]
    for split in ("holdout", "val"):
        images = [served(dm, split)[0] for _, dm, _ in runs]
        assert len(images[0]) == 16 and torch.equal(images[0], images[1]), split
    photos = load_photos()
    fixed = PhotoPatches([photos[name] for name in split_photos("holdout")], length=16, seed=0)
    assert torch.equal(served(runs[1][1], "holdout")[0], torch.stack([fixed[i] for i in range(16)]))  # data.seed 0's
    assert torch.equal(epochs[0], epochs[2])  # the same run seed: the same training patches, in the same order
    assert not set(as_bytes(epochs[0])) & set(as_bytes(epochs[1]))  # another: other patches
    assert not torch.equal(first_weights(runs[0][2]), first_weights(runs[1][2]))


def test_the_data_seed_changes_val_and_holdout_and_not_the_training_patches() -> None:
    (_, dm, _), (cfg, other, _) = seeded_run(*SMOKE, "seed=0"), seeded_run(*SMOKE, "seed=0", "data.seed=3")
    assert cfg.data.seed == 3
    for split in ("holdout", "val"):
        assert not set(as_bytes(served(dm, split)[0])) & set(as_bytes(served(other, split)[0])), split
    assert torch.equal(first_epoch(dm)[0], first_epoch(other)[0])
