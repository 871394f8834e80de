"""CelebADataModule on a small generated tree in CelebA's real layout."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import pytest
import torch
from celeba_tree import make_celeba_tree

from inpaint.data.celeba import CelebADataModule
from inpaint.errors import InpaintError

LAYOUT = ("img_align_celeba/000001.jpg", "list_eval_partition.txt", "celeba/")


def names(dm: CelebADataModule, split: str) -> list[str]:
    return [path.name for path in dm.split(split).files]


def numbered(first: int, last: int) -> list[str]:
    return [f"{i:06d}.jpg" for i in range(first, last + 1)]


def test_official_splits_in_file_name_order(celeba_root: Path) -> None:
    dm = CelebADataModule(str(celeba_root), holdout_size=6)
    assert names(dm, "train") == numbered(1, 12)
    assert names(dm, "val") == numbered(13, 16)
    assert names(dm, "holdout") == numbered(17, 22)


def test_sizes_take_the_first_images(celeba_root: Path) -> None:
    dm = CelebADataModule(str(celeba_root), holdout_size=2, val_size=3, train_size=5)
    assert names(dm, "train") == numbered(1, 5)
    assert names(dm, "val") == numbered(13, 15)
    assert names(dm, "holdout") == numbered(17, 18)


def test_partition_order_does_not_matter(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, n_train=4, n_val=2, n_test=4)
    partition = root / "list_eval_partition.txt"
    lines = partition.read_text().splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    partition.write_text("".join(lines))
    dm = CelebADataModule(str(root), holdout_size=2)
    assert names(dm, "train") == numbered(1, 4)
    assert names(dm, "holdout") == numbered(7, 8)


def test_items_are_centre_crops(celeba_root: Path) -> None:
    image = CelebADataModule(str(celeba_root), holdout_size=1).split("train")[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 128, 128)
    pixels = image.int()
    # (drawn shapes of saturated colours, so JPEG's rounding leaves them far from these thresholds)
    # the white markers just inside the 178x178 square's corners land in the output's corners
    assert (pixels[:, :5, :5] > 200).all() and (pixels[:, -5:, -5:] > 200).all()
    # nothing of the green bands above and below the square survives: green never dominates red+blue
    assert (pixels[1] - pixels[0] - pixels[2] < 150).all()
    # the blue ellipse at the image centre lands at the output centre
    assert pixels[2, 64, 64] > 200 and pixels[0, 64, 64] < 50


def test_image_size(celeba_root: Path) -> None:
    dm = CelebADataModule(str(celeba_root), holdout_size=1, image_size=64)
    assert dm.split("holdout")[0].shape == (3, 64, 64)


def test_torchvision_layout(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, n_train=2, n_val=1, n_test=1, torchvision_layout=True)
    dm = CelebADataModule(str(root), holdout_size=1)
    assert dm.base == root / "celeba"
    assert dm.split("train")[1].shape == (3, 128, 128)


def _drop_partition(root: Path) -> None:
    (root / "list_eval_partition.txt").unlink()


def _malformed_line(root: Path) -> None:
    partition = root / "list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    lines[2] = "000003.jpg train"
    partition.write_text("\n".join(lines))


def _delete_images(root: Path) -> None:
    for name in ("000002.jpg", "000007.jpg"):
        (root / "img_align_celeba" / name).unlink()


def _no_val_split(root: Path) -> None:
    partition = root / "list_eval_partition.txt"
    partition.write_text(partition.read_text().replace(" 1\n", " 0\n"))


@pytest.mark.parametrize(
    ("break_tree", "expected"),
    [
        (_drop_partition, r"missing \S*list_eval_partition\.txt"),
        (_malformed_line, "line 3 is malformed"),
        (_delete_images, "2 of the 8 images"),
        (_no_val_split, "no images of the valid split"),
    ],
    ids=["no-partition", "malformed", "missing-images", "empty-split"],
)
def test_bad_trees_fail_at_construction(tmp_path: Path, break_tree: Callable[[Path], None], expected: str) -> None:
    root = make_celeba_tree(tmp_path, n_train=4, n_val=2, n_test=2)
    break_tree(root)
    with pytest.raises(InpaintError, match=expected) as error:
        CelebADataModule(str(root), holdout_size=2)
    assert all(part in str(error.value) for part in LAYOUT)


@pytest.mark.parametrize(
    "sizes", [{"holdout_size": 7}, {"holdout_size": 0}, {"train_size": 13}, {"val_size": 0}]
)
def test_bad_sizes_fail_at_construction(celeba_root: Path, sizes: dict[str, int]) -> None:
    (name, size), = sizes.items()
    with pytest.raises(InpaintError, match=f"{name}={size} but"):
        CelebADataModule(str(celeba_root), **{"holdout_size": 6, **sizes})


def test_missing_images_are_named(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, n_train=4, n_val=2, n_test=2)
    _delete_images(root)
    with pytest.raises(InpaintError, match="000002.jpg, 000007.jpg"):
        CelebADataModule(str(root), holdout_size=2)


@pytest.mark.parametrize("subdir", ["does-not-exist", "empty"])
def test_wrong_root_names_the_layout(tmp_path: Path, subdir: str) -> None:
    (tmp_path / "empty").mkdir()
    root = tmp_path / subdir
    with pytest.raises(InpaintError) as error:
        CelebADataModule(str(root))
    message = str(error.value)
    assert str(root) in message and all(part in message for part in LAYOUT)


def test_corrupt_image_is_named_when_read(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, n_train=2, n_val=1, n_test=1)
    path = root / "img_align_celeba" / "000002.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    dataset = CelebADataModule(str(root), holdout_size=1).split("train")
    assert dataset[0].shape == (3, 128, 128)
    with pytest.raises(InpaintError, match=r"000002\.jpg.*re-extract"):
        dataset[1]


def test_datamodule_loader(celeba_root: Path) -> None:
    dm = CelebADataModule(str(celeba_root), holdout_size=4, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 128, 128)
    assert len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 1


def test_decode_cache_is_built_once_and_serves_the_same_pixels(celeba_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dm = CelebADataModule(str(celeba_root), holdout_size=6, cache_dir=str(cache))
    dm.prepare_data()
    files = sorted(cache.iterdir())
    assert [f.name.split("_")[1] for f in files] == ["holdout", "train", "val"]
    stamps = [f.stat().st_mtime_ns for f in files]
    decoded = CelebADataModule(str(celeba_root), holdout_size=6).split("train")
    cached = CelebADataModule(str(celeba_root), holdout_size=6, cache_dir=str(cache)).split("train")
    assert len(cached) == len(decoded) == 12
    assert all(torch.equal(cached[i], decoded[i]) for i in range(12))
    assert [f.stat().st_mtime_ns for f in sorted(cache.iterdir())] == stamps  # reused, not rebuilt
    other = CelebADataModule(str(celeba_root), holdout_size=6, train_size=5, cache_dir=str(cache))
    assert other.cache_path("train") != dm.cache_path("train")  # another selection, another file


def test_a_corrupt_image_stops_the_cache_build_and_leaves_no_file(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path / "tree")
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    dm = CelebADataModule(str(root), holdout_size=6, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InpaintError, match="000003.jpg"):
        dm.prepare_data()
    assert not list((tmp_path / "cache").glob("*train*"))
