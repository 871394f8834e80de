import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inpaint.images import grid, log_image, save_png


def test_grid_lays_out_rows_with_padding():
    rows = [torch.zeros(3, 3, 8, 8), torch.ones(3, 3, 8, 8)]
    picture = grid(rows, pad=2)
    assert picture.shape == (2 * 10 + 2, 3 * 10 + 2, 3) and picture.dtype == np.uint8
    assert (picture[2:10, 2:10] == 0).all() and (picture[12:20, 2:10] == 255).all()


def test_images_reach_tensorboard_and_loggers_without_images_are_skipped(tmp_path):
    tensorboard, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    image = grid([torch.rand(2, 3, 16, 16)])
    log_image([tensorboard, csv], "analysis/F1", image, step=3)
    tensorboard.experiment.flush()
    accumulator = EventAccumulator(tensorboard.log_dir)
    accumulator.Reload()
    assert accumulator.Tags()["images"] == ["analysis/F1"]
    assert accumulator.Images("analysis/F1")[0].step == 3


def test_save_png_round_trips(tmp_path):
    image = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    path = save_png(image, tmp_path / "a" / "b.png")
    assert np.array_equal(np.asarray(Image.open(path)), image)
