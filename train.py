"""Train a (bias-free) Context Encoder: `python train.py [experiment=NAME] [group=option ...]`.

Composes conf/train.yaml with Hydra, then: seed, data, model, callbacks, loggers, trainer, fit,
holdout test. Returns the metric named by `optimized_metric` so sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from inpaint.errors import exit_on_user_error
from inpaint.malloc import retain_freed_memory

os.environ.setdefault("INPAINT_ROOT", str(Path(__file__).resolve().parent))
log = logging.getLogger("train")


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a named-entries group (callbacks, logger)."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


@exit_on_user_error
def train(cfg: DictConfig) -> float | None:
    """Fit the model, test it on the holdout, return the optimised metric."""
    log.info("Config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.retain_freed_memory:
        retain_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    loggers = instantiate_all(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metric = trainer.callback_metrics.get(cfg.optimized_metric)
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
    log.info("Run folder: %s", cfg.paths.output_dir)
    return None if metric is None else float(metric)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    finally:
        if "wandb" in sys.modules:
            sys.modules["wandb"].finish()


if __name__ == "__main__":
    main()
