"""A run's data module and model as train.py builds them (seeding included), from its overrides,
and what its first training epoch and its holdout serve: for the tests of what ``seed`` and
``data.seed`` each change."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")  # what seed_everything leaves in the environment


def seeded_run(*overrides: str):
    """(config, data module, model) of ``python train.py OVERRIDES``, through train.py's own
    seeding and instantiation (``seeded_data_and_model``). Torch's generator is left as train.py
    leaves it, so the training order drawn next is the run's."""
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from train import seeded_data_and_model

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    saved = {name: os.environ.get(name) for name in SEED_VARIABLES}
    try:
        return (cfg, *seeded_data_and_model(cfg))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def first_epoch(datamodule) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, known or None) of the first training epoch, in the order the loader serves them."""
    loader = datamodule.train_dataloader()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(0)  # what Lightning does before every training epoch
    batches = list(loader)
    if isinstance(batches[0], (tuple, list)):
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    return torch.cat(batches), None


def served(datamodule, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, known or None) of a val or holdout split as its loader serves it."""
    batches = list(datamodule.holdout_dataloader() if split == "holdout" else datamodule.val_dataloader())
    if isinstance(batches[0], (tuple, list)):
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    return torch.cat(batches), None


def first_weights(model) -> torch.Tensor:
    """The generator's first parameter, as initialised."""
    return next(model.generator.parameters()).detach().clone()


def as_bytes(images: torch.Tensor) -> list[bytes]:
    return [image.numpy().tobytes() for image in images]
