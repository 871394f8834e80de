"""FolderDataModule (data=folder): layouts, splits, formats and modes, crops, the decode cache,
errors, and the smoke experiment trained and analysed on folders of real photographs."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from documented import documented
from folder_tree import write_photographs
from hydra import compose, initialize_config_dir
from PIL import Image, ImageDraw
from seeded_run import as_bytes, first_epoch, seeded_run, served

from inpaint.data import cache, folder
from inpaint.data.folder import FolderDataModule, read_image
from inpaint.errors import InpaintError, user_error

ROOT = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SMALL = {"val_size": 1, "holdout_size": 1, "batch_size": 2}


def noise(path: Path, size: tuple[int, int] = (200, 150), seed: int = 0) -> Path:
    """A PNG of random pixels (so different crops differ), ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def empty_files(folder: Path, names: list[str]) -> None:
    """Files that are only listed (the split is made without decoding anything)."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def relative(dm: FolderDataModule) -> dict[str, list[str]]:
    return {split: [p.relative_to(dm.root).as_posix() for p in files] for split, files in dm.files.items()}


def colour(array: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in array[:, y, x])


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 3) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def exif_rotated(path: Path) -> None:
    """A JPEG displayed 200 wide x 160 high, red above blue, stored turned a quarter with EXIF
    orientation 6 ("rotate 90 clockwise to display")."""
    shown = Image.new("RGB", (200, 160), BLUE)
    ImageDraw.Draw(shown).rectangle((0, 0, 199, 79), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    shown.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format and mode, a tiny image, an EXIF-rotated JPEG, and files that must be skipped."""
    root = tmp_path_factory.mktemp("mixed")
    size = (160, 150)
    Image.new("L", size, 100).save(root / "gray.jpg", quality=95)
    palette = Image.new("P", size, 0)
    palette.putpalette([*RED, *GREEN] + [0] * 762)
    palette.save(root / "palette.png")
    palette.save(root / "palette_transparent.png", transparency=0)  # index 0 (red) transparent
    rgba = Image.new("RGBA", size, (*GREEN, 255))
    ImageDraw.Draw(rgba).rectangle((0, 75, 159, 149), fill=(200, 100, 50, 128))
    rgba.save(root / "rgba.png")
    Image.new("CMYK", size, (255, 0, 0, 0)).save(root / "cmyk.jpg", quality=95)  # pure cyan ink
    Image.new("I;16", size, 40000).save(root / "gray16.png")
    Image.new("F", size, 0.25).save(root / "float.tif")
    Image.new("RGB", size, (10, 20, 30)).save(root / "rgb.bmp")
    Image.new("RGB", size, (40, 50, 60)).save(root / "rgb.webp", lossless=True)
    (root / "nested" / "deeper").mkdir(parents=True)
    Image.new("RGB", size, (70, 80, 90)).save(root / "nested" / "deeper" / "rgb.tiff")
    Image.new("RGB", (40, 30), (120, 130, 140)).save(root / "tiny.png")
    Image.new("RGB", size, (1, 2, 3)).save(root / "UPPER.JPG", quality=95)
    exif_rotated(root / "exif.jpg")
    # skipped: not images by name, hidden files, hidden folders
    (root / "notes.txt").write_text("not an image")
    (root / "photo.jpg.bak").write_bytes((root / "gray.jpg").read_bytes())
    Image.new("RGB", size).save(root / ".hidden.png")
    (root / ".thumbnails").mkdir()
    Image.new("RGB", size).save(root / ".thumbnails" / "thumb.png")
    return root


READ = {  # file -> (pixel [y, x] of the 143-px image, expected RGB)
    "gray.jpg": ((70, 70), (100, 100, 100)),
    "palette.png": ((70, 70), RED),
    "palette_transparent.png": ((70, 70), (0, 0, 0)),  # transparent: composited on black
    "cmyk.jpg": ((70, 70), (0, 255, 255)),
    "gray16.png": ((70, 70), (156,) * 3),  # 40000 / 65535 * 255
    "float.tif": ((70, 70), (64,) * 3),  # 0.25 * 255
    "rgb.bmp": ((70, 70), (10, 20, 30)),
    "rgb.webp": ((70, 70), (40, 50, 60)),
    "nested/deeper/rgb.tiff": ((70, 70), (70, 80, 90)),
    "tiny.png": ((70, 70), (120, 130, 140)),
    "UPPER.JPG": ((70, 70), (1, 2, 3)),
}


def test_every_format_and_mode_is_listed_and_read_as_documented(mixed: Path) -> None:
    dm = FolderDataModule(str(mixed), **SMALL)
    listed = sorted(name for names in relative(dm).values() for name in names)
    assert listed == sorted([*READ, "rgba.png", "exif.jpg"])  # the text, .bak and hidden files skipped
    for name, ((y, x), expected) in READ.items():
        image = read_image(mixed / name, 143)
        assert image.dtype == np.uint8 and image.shape[0] == 3 and min(image.shape[1:]) == 143, name
        assert near(colour(image, y, x), expected), (name, colour(image, y, x), expected)
    assert read_image(mixed / "tiny.png", 143).shape == (3, 143, 191)  # upscaled, aspect kept
    rgba = read_image(mixed / "rgba.png", 143)  # alpha multiplies the colour (composited on black)
    assert colour(rgba, 20, 70) == GREEN and near(colour(rgba, 120, 70), (100, 50, 25), 1)
    for split in ("train", "val", "holdout"):
        for i in range(len(dm.split(split))):
            item = dm.split(split)[(0, i) if split == "train" else i]
            assert item.dtype == torch.uint8 and item.shape == (3, 128, 128)


def test_exif_orientation_is_applied(mixed: Path) -> None:
    image = read_image(mixed / "exif.jpg", 143)
    assert image.shape == (3, 143, 179)  # displayed landscape, stored portrait
    assert near(colour(image, 5, 89), RED, 30) and near(colour(image, 137, 89), BLUE, 30)
    assert near(colour(image, 5, 5), colour(image, 5, 173), 30)  # left and right alike: not turned sideways


def test_a_corrupt_image_is_named_when_decoded_and_when_cached(tmp_path: Path) -> None:
    for i in range(4):
        noise(tmp_path / "data" / f"{i}.png", seed=i)
    good = (tmp_path / "data" / "0.png").read_bytes()
    (tmp_path / "data" / "broken.png").write_bytes(good[: len(good) // 2])
    decoded = FolderDataModule(str(tmp_path / "data"), val_size=1, holdout_size=1, batch_size=1)
    (split, index), = [(split, i) for split, files in decoded.files.items() for i, p in enumerate(files) if p.name == "broken.png"]
    with pytest.raises(InpaintError, match=r"broken\.png.*corrupt"):
        decoded.split(split)[(0, index) if split == "train" else index]
    cached = FolderDataModule(str(tmp_path / "data"), val_size=1, holdout_size=1, batch_size=1, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InpaintError, match=r"broken\.png"):
        cached.prepare_data()
    assert not list((tmp_path / "cache").glob(f"*{split}*"))


def test_empty_and_too_small_folders_fail_at_construction_with_the_count_and_the_place(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    empty_files(empty, [".hidden.png", ".cache/a.png"])
    with pytest.raises(InpaintError, match=r"found 0 images") as error:
        FolderDataModule(str(empty))
    assert str(empty) in str(error.value) and "data.root=PATH" in str(error.value)

    small = tmp_path / "small"
    empty_files(small, [f"{i}.jpg" for i in range(5)])
    with pytest.raises(InpaintError, match=r"found 5 images .*holdout_size 2 \+ val_size 2 \+ one training batch \(batch_size 2\) = 6"
                       ) as error:
        FolderDataModule(str(small), val_size=2, holdout_size=2, batch_size=2)
    assert str(small) in str(error.value)
    assert len(FolderDataModule(str(small), val_size=2, holdout_size=2, batch_size=1).files["train"]) == 1  # 2 + 2 + 1: just enough

    tree = tmp_path / "tree"
    empty_files(tree, [f"train/{i}.jpg" for i in range(4)])
    (tree / "val").mkdir()
    with pytest.raises(InpaintError, match=rf"found 0 images .*under {re.escape(str(tree / 'val'))}/, the val split's folder"):
        FolderDataModule(str(tree), **SMALL)


@pytest.mark.parametrize("root, expected", [
    (None, r"data=folder needs the folder of images: add data.root=PATH"),
    ("nowhere", r"is not a folder\. Point data.root=PATH"),
])
def test_a_missing_root_says_what_to_set(tmp_path: Path, root: str | None, expected: str) -> None:
    with pytest.raises(InpaintError, match=expected):
        FolderDataModule(None if root is None else str(tmp_path / root))


def test_data_folder_without_a_root_stops_with_one_message_from_the_config() -> None:
    from hydra.utils import instantiate

    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=folder"])
    assert cfg.data.cache_dir.endswith("/data/cache") and cfg.data.load_size == 143 and cfg.data.root is None
    with pytest.raises(Exception) as error:
        instantiate(cfg.data)
    assert "data.root=PATH" in str(user_error(error.value))  # train.py's exit_on_user_error prints it in one line


def test_a_flat_folder_is_split_by_relative_path_alone(tmp_path: Path) -> None:
    names = [f"{chr(97 + i % 26)}/{i:03d}.png" for i in range(40)]
    empty_files(tmp_path / "one", names)
    empty_files(tmp_path / "elsewhere" / "two", names[::-1])  # another place, the reverse order of creation
    one = FolderDataModule(str(tmp_path / "one"), val_size=3, holdout_size=4, batch_size=2)
    two = FolderDataModule(str(tmp_path / "elsewhere" / "two"), val_size=3, holdout_size=4, batch_size=2)
    assert relative(one) == relative(two)
    assert [len(one.files[s]) for s in ("train", "val", "holdout")] == [33, 3, 4]
    assert sorted(sum(relative(one).values(), [])) == sorted(names)  # disjoint and complete
    assert all(files == sorted(files) for files in one.files.values())
    # the holdout is carved first: other val and train sizes leave it alone
    other = FolderDataModule(str(tmp_path / "one"), val_size=5, holdout_size=4, batch_size=2, train_size=10)
    assert other.files["holdout"] == one.files["holdout"] and len(other.files["train"]) == 10
    assert set(other.files["train"]) < set(one.files["train"]) | set(one.files["val"])


def test_split_folders_are_the_splits(tmp_path: Path) -> None:
    empty_files(tmp_path, [*(f"train/{i}.png" for i in range(10)), *(f"valid/{i}.png" for i in range(3)),
                           *(f"test/sub/{i}.png" for i in range(6)), "stray.png"])
    dm = FolderDataModule(str(tmp_path), val_size=5, holdout_size=4, batch_size=2)
    files = relative(dm)
    assert files["train"] == [f"train/{i}.png" for i in range(10)]
    assert files["val"] == [f"valid/{i}.png" for i in range(3)]  # fewer than val_size: all of them
    assert len(files["holdout"]) == 4 and all(name.startswith("test/sub/") for name in files["holdout"])  # at most holdout_size
    assert dm.sources == {"train": "train/", "val": "valid/", "holdout": "test/"}


def test_a_missing_val_folder_is_carved_from_train_and_split_names_can_be_overridden(tmp_path: Path) -> None:
    # Paris StreetView's layout
    empty_files(tmp_path, [*(f"paris_train/{i}.png" for i in range(12)), *(f"paris_eval_gt/{i:03d}_im.png" for i in range(5))])
    dm = FolderDataModule(str(tmp_path), train_dir="paris_train", holdout_dir="paris_eval_gt", val_size=3, holdout_size=100, batch_size=2)
    files = relative(dm)
    assert files["holdout"] == [f"paris_eval_gt/{i:03d}_im.png" for i in range(5)]
    assert len(files["val"]) == 3 and len(files["train"]) == 9
    assert sorted(files["train"] + files["val"]) == sorted(f"paris_train/{i}.png" for i in range(12))
    assert dm.sources == {"train": "paris_train/", "val": "carved from paris_train/", "holdout": "paris_eval_gt/"}
    # carved by the path within the training folder: the same images wherever that folder is
    empty_files(tmp_path / "copy", [*(f"train/{i}.png" for i in range(12)), "test/0.png"])
    copy = FolderDataModule(str(tmp_path / "copy"), val_size=3, holdout_size=1, batch_size=2)
    assert [p.name for p in copy.files["val"]] == [p.name for p in dm.files["val"]]
    # a holdout folder without a training folder (here, a misspelt train_dir) is refused, not pooled
    with pytest.raises(InpaintError, match=r"paris_eval_gt/ \(holdout\) but no training folder \(data.train_dir=paris_trian\)"):
        FolderDataModule(str(tmp_path), train_dir="paris_trian", holdout_dir="paris_eval_gt", **SMALL)


def test_training_crops_are_new_every_epoch_and_the_same_for_the_same_seed_and_epoch(tmp_path: Path) -> None:
    for i in range(6):
        noise(tmp_path / "data" / f"{i}.png", size=(200 + 10 * i, 150), seed=i)
    dm, again, reseeded = (FolderDataModule(str(tmp_path / "data"), train_seed=seed, **SMALL) for seed in (0, 0, 1))
    train = dm.split("train")
    assert train.by_epoch and len(train) == 4
    epoch0 = [train[(0, i)] for i in range(4)]
    assert all(torch.equal(a, again.split("train")[(0, i)]) for i, a in enumerate(epoch0))
    assert not any(torch.equal(a, train[(1, i)]) for i, a in enumerate(epoch0))
    assert not any(torch.equal(a, reseeded.split("train")[(0, i)]) for i, a in enumerate(epoch0))
    for i, crop in enumerate(epoch0):  # a window of the resized image
        image = torch.from_numpy(read_image(dm.files["train"][i], 143))
        corners = (image[:, : image.shape[1] - 127, : image.shape[2] - 127] == crop[:, :1, :1]).all(0).nonzero().tolist()
        assert any(torch.equal(image[:, y:y + 128, x:x + 128], crop) for y, x in corners)
    # val and holdout: the centre crop, whatever the seed
    for split in ("val", "holdout"):
        image = read_image(dm.files[split][0], 143)
        top, left = (image.shape[1] - 128) // 2, (image.shape[2] - 128) // 2
        assert torch.equal(dm.split(split)[0], torch.from_numpy(image[:, top:top + 128, left:left + 128].copy()))
        assert torch.equal(dm.split(split)[0], reseeded.split(split)[0])
    # through the loader: EpochSampler's (epoch, index) items, a new order and new crops each epoch
    loader = dm.train_dataloader()
    first = torch.cat(list(loader))
    loader.sampler.set_epoch(1)
    assert first.shape == (4, 3, 128, 128) and not torch.equal(first, torch.cat(list(loader)))


def test_the_run_seed_draws_the_training_crops_and_no_seed_touches_val_and_holdout(tmp_path: Path) -> None:
    """Composed as train.py composes them: the run's seed draws the training crops (and their order);
    val and holdout are the centre crops of the hash-carved images, whatever the seed. There is no
    data seed to set (the split needs none): data.seed is refused, and the key earlier runs' configs
    carry (their seed, then the crops') is accepted and changes nothing."""
    write_photographs(tmp_path / "photos", 48)
    common = ("experiment=smoke", "data=folder", f"data.root={tmp_path / 'photos'}", "data.cache_dir=null")
    runs = {name: seeded_run(*common, *extra) for name, extra in
            (("a", ["seed=0"]), ("again", ["seed=0"]), ("b", ["seed=1"]), ("old", ["seed=0", "+data.seed=5"]))}
    epochs = {name: first_epoch(dm)[0] for name, (_, dm, _) in runs.items()}  # the crops drawn first
    dm = runs["a"][1]
    assert torch.equal(epochs["a"], epochs["again"]) and len(epochs["a"]) == 16
    assert not set(as_bytes(epochs["a"])) & set(as_bytes(epochs["b"]))  # other crops
    assert torch.equal(epochs["a"], epochs["old"])
    for split in ("holdout", "val"):
        centres = []
        for path in dm.files[split]:
            image = read_image(path, 143)
            top, left = (image.shape[1] - 128) // 2, (image.shape[2] - 128) // 2
            centres.append(torch.from_numpy(image[:, top:top + 128, left:left + 128].copy()))
        assert len(centres) == 16
        for name, (_, run, _) in runs.items():
            assert run.files[split] == dm.files[split], (split, name)
            assert torch.equal(served(run, split)[0], torch.stack(centres)), (split, name)
    with pytest.raises(Exception, match="data.seed"):
        seeded_run(*common, "data.seed=3")


def test_the_cache_is_built_once_reused_and_rebuilt_when_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        noise(tmp_path / "data" / f"{i}.png", seed=i)
    settings = {"root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache"), **SMALL}
    dm = FolderDataModule(**settings)
    dm.prepare_data()
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert [name.split("_")[1] for name in folders] == ["holdout", "train", "val"]
    decoded = FolderDataModule(**{**settings, "cache_dir": None})
    for split in ("train", "val", "holdout"):  # the same pixels as decoding
        items = [(0, i) if split == "train" else i for i in range(len(dm.split(split)))]
        assert all(torch.equal(dm.split(split)[item], decoded.split(split)[item]) for item in items)

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folder, "read_image", no_decoding)
    reused = FolderDataModule(**settings)
    reused.prepare_data()
    assert torch.equal(reused.split("train")[(0, 1)], dm.split("train")[(0, 1)])
    monkeypatch.undo()

    before = {split: dm.cache_path(split) for split in ("train", "val")}
    changed = dm.files["train"][1]
    noise(changed, seed=99)
    os.utime(changed, ns=(1, 1))  # a new time, whatever the file system's resolution
    rebuilt = FolderDataModule(**settings)
    assert rebuilt.cache_path("train") != before["train"] and rebuilt.cache_path("val") == before["val"]
    rebuilt.prepare_data()
    assert len(list((tmp_path / "cache").iterdir())) == 4  # a new train cache beside the old one
    assert torch.equal(rebuilt.split("train")[(0, 1)], decoded.split("train")[(0, 1)])  # decoded anew: the new pixels
    assert not torch.equal(rebuilt.split("train")[(0, 1)], dm.split("train")[(0, 1)])
    assert FolderDataModule(**settings, load_size=150).cache_path("val") != before["val"]


def test_an_interrupted_cache_build_leaves_no_partial_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        noise(tmp_path / "data" / f"{i}.png", seed=i)
    calls = []
    real = folder.read_image

    def interrupted(path, load_size):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, load_size)

    monkeypatch.setattr(folder, "read_image", interrupted)
    dm = FolderDataModule(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), **SMALL)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert list((tmp_path / "cache").iterdir()) == []  # no folder, hidden or not
    dm.prepare_data()  # the next run builds it whole
    assert len(dm.split("train")) == 4 and len(list((tmp_path / "cache").iterdir())) == 3


def test_image_cache_holds_images_of_any_shape_and_pickles_without_pixels(tmp_path: Path) -> None:
    images = [np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8) for i, shape in
              enumerate([(3, 5, 7), (3, 9, 2), (1, 4, 4)])]
    path = cache.build_cache(tmp_path / "c", images)
    stored = cache.ImageCache(path)
    assert len(stored) == 3 and all(np.array_equal(stored[i], image) for i, image in enumerate(images))
    assert len(pickle.dumps(stored)) < 2000 and np.array_equal(pickle.loads(pickle.dumps(stored))[1], images[1])
    assert cache.build_cache(path, []) == path  # there already: not rebuilt


def run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# The three layouts at the smoke experiment's sizes (64 train at most, 16 val, 16 holdout, batch 16):
# (the overrides, the splits as the log reports them)
def flat(root: Path) -> tuple[list[str], str]:
    write_photographs(root, 64)
    return [], "train 32 (the rest), val 16 (carved by path hash), holdout 16 (carved by path hash)"


def split_folders(root: Path) -> tuple[list[str], str]:
    write_photographs(root / "train", 40, seed=1)
    write_photographs(root / "val", 16, size=(170, 220), seed=2)
    write_photographs(root / "test", 16, size=(300, 200), seed=3)
    return [], "train 40 (train/), val 16 (val/), holdout 16 (test/)"


def renamed_splits(root: Path) -> tuple[list[str], str]:  # Paris StreetView's names
    write_photographs(root / "paris_train", 56, size=(240, 140), seed=4)
    write_photographs(root / "paris_eval_gt", 16, size=(128, 128), seed=5)
    return (["data.train_dir=paris_train", "data.holdout_dir=paris_eval_gt", "data.load_size=160"],
            "train 40 (paris_train/), val 16 (carved from paris_train/), holdout 16 (paris_eval_gt/)")


@pytest.mark.parametrize("layout", [flat, pytest.param(split_folders, marks=pytest.mark.slow),
                                    pytest.param(renamed_splits, marks=pytest.mark.slow)], ids=lambda f: f.__name__)
def test_the_smoke_experiment_trains_and_is_analysed_on_a_folder_of_photographs(tmp_path: Path, layout) -> None:
    root = tmp_path / "photos"
    overrides, splits = layout(root)
    # the README's run on a folder of images, then its checkpoint analysed again, at the smoke size
    result = run(*documented("python train.py data=folder data.root=/path/to/images", {"/path/to/images": str(root)}),
                 f"data.cache_dir={tmp_path / 'cache'}", *overrides, f"hydra.run.dir={tmp_path / 'run'}", "logger=csv",
                 "callbacks.rich_progress_bar=null", "callbacks.model_summary=null")
    assert "holdout/psnr" in result.stdout and f"Images of {root}: {splits}" in result.stdout + result.stderr
    assert len(list((tmp_path / "cache").glob("folder_*"))) == 3
    callback = json.loads((tmp_path / "run" / "analysis" / "summary.json").read_text())
    run(*documented("python analyze.py ckpt_path=logs/demo/runs/<run>/checkpoints/last.ckpt", {"logs/demo/runs/<run>": str(tmp_path / "run")}),
        f"hydra.run.dir={tmp_path / 'analysis'}")
    summary = json.loads((tmp_path / "analysis" / "analysis" / "summary.json").read_text())
    drawn = sorted(p.name for p in (tmp_path / "run" / "analysis").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "analysis" / "analysis").glob("*.png")) == drawn and len(drawn) == 18
    assert summary["run"]["data"]["root"] == str(root) and np.isfinite(summary["metrics"]["psnr"])
    assert summary["metrics"] == callback["metrics"]  # on the run's own folder and splits: the callback's numbers


def test_train_py_on_a_too_small_folder_stops_in_one_line_before_any_model(tmp_path: Path) -> None:
    """The message of test_empty_and_too_small_folders... through train.py: exit 2, one error line
    in the log and no traceback, no checkpoint folder (the model and trainer come after the data)."""
    write_photographs(tmp_path / "few", 3, suffixes=(".png",))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=smoke", "data=folder", f"data.root={tmp_path / 'few'}",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "found 3 images" in errors[0] and str(tmp_path / "few") in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("kind", ["constant", "identical"])
def test_images_that_cannot_teach_are_named_before_the_fit(tmp_path: Path, kind: str) -> None:
    """A folder of one-colour images (batch norm's variance would be zero: a NaN loss at the first
    step, read as a learning rate too high) or of one image copied: the module says so when it is
    set up to fit, before any step; a folder of real photographs passes."""
    folder = tmp_path / kind
    folder.mkdir()
    rng = np.random.default_rng(0)
    photo = write_photographs(tmp_path / "one", 1, size=(128, 128), suffixes=(".png",))[0]
    for i in range(40):
        path = folder / f"{i:03d}.png"
        if kind == "constant":
            Image.new("RGB", (160, 160), tuple(int(v) for v in rng.integers(0, 256, 3))).save(path)
        else:
            shutil.copy(photo, path)
    # load_size 128: each crop is the whole image (copies cropped at random offsets would differ)
    data = FolderDataModule(root=str(folder), val_size=4, holdout_size=4, batch_size=4, image_size=128, load_size=128)
    message = "each a single colour" if kind == "constant" else "all the same image"
    with pytest.raises(InpaintError, match=message):
        data.setup("fit")
    write_photographs(tmp_path / "photos", 40)
    FolderDataModule(root=str(tmp_path / "photos"), val_size=4, holdout_size=4, batch_size=4, image_size=128).setup("fit")
