"""CelebADataModule on small generated trees in CelebA's real layouts (its own, torchvision's, Kaggle's)."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from celeba_tree import make_celeba_tree

from inpaint.data.celeba import AUTHORS_HOLDOUT, CelebADataModule, select_splits
from inpaint.errors import InpaintError

LAYOUT = (
    "img_align_celeba/000001.jpg", "list_eval_partition.txt", "img_align_celeba/img_align_celeba/",
    "list_eval_partition.csv", "celeba/",
)


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
    root = make_celeba_tree(tmp_path, n_train=2, n_val=1, n_test=1, layout="torchvision")
    dm = CelebADataModule(str(root), holdout_size=1)
    assert dm.layout.images == root / "celeba" / "img_align_celeba"
    assert dm.split("train")[1].shape == (3, 128, 128)


def test_kaggle_layout_reads_as_the_original(celeba_root: Path, tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, layout="kaggle")  # the same 12 / 4 / 6 images as celeba_root
    kaggle = CelebADataModule(str(root), holdout_size=6)
    original = CelebADataModule(str(celeba_root), holdout_size=6)
    assert kaggle.layout.images == root / "img_align_celeba" / "img_align_celeba"
    assert kaggle.layout.partition == root / "list_eval_partition.csv"
    assert kaggle.names == original.names
    assert torch.equal(kaggle.split("val")[3], original.split("val")[3])


@pytest.mark.parametrize("partition", ["list_eval_partition.txt", "list_eval_partition.csv"])
@pytest.mark.parametrize("images", ["img_align_celeba", "img_align_celeba/img_align_celeba"])
@pytest.mark.parametrize("base", ["", "celeba"])
def test_every_accepted_layout_is_found(tmp_path: Path, base: str, images: str, partition: str) -> None:
    tree = make_celeba_tree(tmp_path / "tree", n_train=2, n_val=1, n_test=1, layout="celeba")
    target = tmp_path / "root" / base
    (target / images).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tree / "img_align_celeba", target / images)
    lines = (tree / "list_eval_partition.txt").read_text()
    csv = partition.endswith(".csv")
    (target / partition).write_text("image_id,partition\n" + lines.replace(" ", ",") if csv else lines)
    dm = CelebADataModule(str(tmp_path / "root"), holdout_size=1)
    assert dm.layout == (tmp_path / "root", target / images, target / partition)
    assert names(dm, "train") == numbered(1, 2) and names(dm, "holdout") == numbered(4, 4)


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


def _listed_twice(root: Path) -> None:
    with (root / "list_eval_partition.txt").open("a") as partition:
        partition.write("000001.jpg 2\n")


def _drop_csv(root: Path) -> None:
    (root / "list_eval_partition.csv").unlink()


def _edit_csv(line: int, text: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        partition = root / "list_eval_partition.csv"
        lines = partition.read_text().splitlines()
        lines[line - 1] = text
        partition.write_text("\n".join(lines) + "\n")

    return edit


def _delete_kaggle_images(root: Path) -> None:
    for name in ("000002.jpg", "000007.jpg"):
        (root / "img_align_celeba" / "img_align_celeba" / name).unlink()


@pytest.mark.parametrize(
    ("layout", "break_tree", "expected"),
    [
        ("celeba", _drop_partition, r"missing \S*list_eval_partition\.txt or \S*list_eval_partition\.csv"),
        ("celeba", _malformed_line,
         re.escape("line 3 is malformed: '000003.jpg train'; expected '<image>.jpg <0|1|2>'")),
        ("celeba", _delete_images, "2 of the 8 images"),
        ("celeba", _no_val_split, "no images of the valid split"),
        ("celeba", _listed_twice, re.escape("more than once (1 of them, first: 000001.jpg)")),
        ("kaggle", _drop_csv, r"missing \S*list_eval_partition\.txt or \S*list_eval_partition\.csv"),
        ("kaggle", _edit_csv(1, "image,split"), "line 1 is 'image,split', not the header 'image_id,partition'"),
        ("kaggle", _edit_csv(4, "000003.jpg 0"),
         re.escape("line 4 is malformed: '000003.jpg 0'; expected '<image>.jpg,<0|1|2>'")),
        ("kaggle", _edit_csv(4, "000003.jpg,3"), "line 4 is malformed: '000003.jpg,3'"),
        ("kaggle", _edit_csv(4, ",0"), "line 4 is malformed: ',0'"),
        ("kaggle", _delete_kaggle_images, r"2 of the 8 images .* missing from \S*img_align_celeba/img_align_celeba/"),
    ],
    ids=[
        "no-partition", "malformed", "missing-images", "empty-split", "listed-twice", "kaggle-no-partition",
        "kaggle-header", "kaggle-space", "kaggle-split-id", "kaggle-no-name", "kaggle-missing-images",
    ],
)
def test_bad_trees_fail_at_construction(
    tmp_path: Path, layout: str, break_tree: Callable[[Path], None], expected: str
) -> None:
    root = make_celeba_tree(tmp_path, n_train=4, n_val=2, n_test=2, layout=layout)
    break_tree(root)
    with pytest.raises(InpaintError, match=expected) as error:
        CelebADataModule(str(root), holdout_size=2)
    assert all(part in str(error.value) for part in LAYOUT)


def test_missing_images_folder_is_named(tmp_path: Path) -> None:
    root = make_celeba_tree(tmp_path, n_train=2, n_val=1, n_test=1, layout="kaggle")
    shutil.rmtree(root / "img_align_celeba")
    with pytest.raises(InpaintError, match=re.escape(f"(missing {root / 'img_align_celeba'}/)")):
        CelebADataModule(str(root), holdout_size=1)


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


@pytest.fixture(scope="module")
def authors_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train 119999.jpg ... 121002.jpg (the authors' 1000 and four others), val 121003-4, test 121005-6."""
    return make_celeba_tree(tmp_path_factory.mktemp("authors"), n_train=1004, n_val=2, n_test=2, start=119999)


def test_authors_holdout_is_120000_to_120999_and_never_trained_on(authors_root: Path) -> None:
    dm = CelebADataModule(str(authors_root), holdout="authors")
    assert names(dm, "holdout") == numbered(120000, 120999) == list(AUTHORS_HOLDOUT)
    assert names(dm, "train") == ["119999.jpg", *numbered(121000, 121002)]
    assert names(dm, "val") == numbered(121003, 121004)
    assert dm.split("holdout")[0].shape == (3, 128, 128)
    fewer = CelebADataModule(str(authors_root), holdout="authors", holdout_size=3, train_size=2)
    assert names(fewer, "holdout") == numbered(120000, 120002)
    assert names(fewer, "train") == ["119999.jpg", "121000.jpg"]  # all 1000 stay out of training
    assert names(CelebADataModule(str(authors_root), holdout_size=2), "train") == numbered(119999, 121002)


def test_authors_holdout_at_celeba_scale() -> None:
    """The real partition's boundaries: the authors' first 100,000 train images, or all 161,770 others."""
    splits = {"0": numbered(1, 162770), "1": numbered(162771, 182637), "2": numbered(182638, 202599)}
    paper = select_splits(splits, "authors", 1000, 1000, 100000, Path("list_eval_partition.txt"))
    assert paper["train"] == numbered(1, 100000) and paper["holdout"] == numbered(120000, 120999)
    assert paper["val"] == numbered(162771, 163770)
    every = select_splits(splits, "authors", 1000, None, None, Path("list_eval_partition.txt"))
    assert len(every["train"]) == 161770 and not set(every["train"]) & set(AUTHORS_HOLDOUT)
    assert not set(every["val"]) & set(AUTHORS_HOLDOUT)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"holdout": "Authors"}, "data.holdout='Authors': choose 'test' .* or 'authors'"),
        ({"holdout": "authors", "holdout_size": 1001}, r"holdout_size=1001 but the authors' holdout \(120000.jpg"),
        ({"holdout": "authors", "train_size": 5}, "train_size=5 but CelebA's train split less the authors' .* has 4"),
    ],
    ids=["unknown", "holdout-size", "train-size"],
)
def test_bad_holdout_settings_fail_at_construction(authors_root: Path, settings: dict, expected: str) -> None:
    with pytest.raises(InpaintError, match=expected):
        CelebADataModule(str(authors_root), **settings)


def test_authors_holdout_needs_those_images_in_the_train_split(celeba_root: Path) -> None:
    with pytest.raises(InpaintError, match=r"needs images 120000.jpg ... 120999.jpg .* does not list 1000 of them"):
        CelebADataModule(str(celeba_root), holdout="authors")


def test_the_holdout_choice_selects_other_cache_files(authors_root: Path, tmp_path: Path) -> None:
    test, authors = (
        CelebADataModule(str(authors_root), holdout=holdout, holdout_size=2, cache_dir=str(tmp_path))
        for holdout in ("test", "authors")
    )
    assert test.cache_path("train") != authors.cache_path("train")
    assert test.cache_path("holdout") != authors.cache_path("holdout")
    assert test.cache_path("val") == authors.cache_path("val")  # the same images
