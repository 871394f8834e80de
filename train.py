"""Train a (bias-free) Context Encoder: `python train.py [experiment=NAME] [group=option ...]`.

Composes conf/train.yaml with Hydra, then: accelerator and precision for this machine, the settings
checks, the checkpoint to resume from (if any), seed, data, model, callbacks, loggers, trainer,
fit, holdout test. Returns the metric named by `optimized_metric` so sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from inpaint.checks import check_data, check_model, check_trainer, check_writable
from inpaint.errors import InpaintError, exit_on_user_error
from inpaint.faults import AtomicCheckpointIO, find_checkpoint, resume_state
from inpaint.hardware import Capabilities, capabilities, resolve_accelerator, resolve_precision
from inpaint.malloc import retain_freed_memory

os.environ.setdefault("INPAINT_ROOT", str(Path(__file__).resolve().parent))
log = logging.getLogger("train")


class OutputFolderCheck(Callback):
    """Refuse a run or sweep folder that cannot be written, with one line and exit status 2, before
    Hydra makes it (Hydra's own failure would be a traceback). Registered in conf/train.yaml."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self.check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.check(config.hydra.sweep.dir)

    @staticmethod
    def check(folder: str) -> None:
        try:
            check_writable(folder)
        except InpaintError as error:  # Hydra turns a callback's exceptions into warnings
            print(f"ERROR: {error}", file=sys.stderr)
            sys.exit(2)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a named-entries group (callbacks, logger)."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if isinstance(c, DictConfig) and "_target_" in c]


# Trainer arguments that Lightning refuses under manual optimisation, with Lightning's defaults: the
# module applies the configured values itself and the Trainer gets the defaults.
STEP_OPTIONS = {"gradient_clip_val": None, "gradient_clip_algorithm": None, "accumulate_grad_batches": 1}


def resolve_hardware(cfg: DictConfig) -> Capabilities | None:
    """Make ``accelerator: auto`` and ``precision: auto`` concrete for this machine (inpaint/hardware.py)
    and log the choice with its reason, or warn when an explicit precision will be slow here. None
    when the accelerator asked for is not there (the settings checks then say so)."""
    trainer = cfg.trainer
    trainer.accelerator = resolve_accelerator(trainer.accelerator)
    if trainer.accelerator not in ("cpu", "cuda", "mps"):
        return None
    caps = capabilities(trainer.accelerator)
    choice = resolve_precision(trainer.precision, caps)
    trainer.precision = choice.precision
    log.info("%s", choice.reason)
    if choice.warning:
        log.warning("%s", choice.warning)
    return caps


def check(cfg: DictConfig) -> None:
    """Refuse settings no run can use (inpaint/checks.py) before any data is read or model built."""
    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "trainer")}
    check_model(plain["model"], cfg.image_size)
    check_data(plain["data"], training=True, analyses=bool((cfg.get("callbacks") or {}).get("analysis")))
    check_trainer(plain["trainer"], plain["model"])
    check_writable(cfg.paths.output_dir)


def resolve_resume(cfg: DictConfig) -> None:
    """Turn ``ckpt_path`` into the checkpoint to resume from (``last``: the newest ``last.ckpt`` of
    this task's runs) and point a W&B logger at the W&B run stored in it, before anything is built."""
    cfg.ckpt_path = find_checkpoint(cfg.get("ckpt_path"), Path(cfg.paths.log_dir) / cfg.task_name / "runs")
    if cfg.ckpt_path is None:
        return
    step, wandb_id = resume_state(cfg.ckpt_path)
    log.info("Resuming from %s at step %d%s", cfg.ckpt_path, step, f" in W&B run {wandb_id}" if wandb_id else "")
    for logger in (cfg.get("logger") or {}).values():
        if wandb_id and isinstance(logger, DictConfig) and str(logger.get("_target_")).endswith("WandbLogger"):
            with open_dict(logger):
                logger.id = wandb_id  # WandbLogger resumes an existing id ("allow")


@exit_on_user_error
def train(cfg: DictConfig) -> float | None:
    """Fit the model, test it on the holdout, return the optimised metric."""
    caps = resolve_hardware(cfg)
    check(cfg)
    resolve_resume(cfg)
    log.info("Config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.retain_freed_memory:
        retain_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    model.set_step_options(**{key: cfg.trainer.get(key, default) for key, default in STEP_OPTIONS.items()})
    loggers = instantiate_all(cfg.get("logger"))
    # the trainer config's plugins (SLURM's environment, ...) and checkpoints written through a rename
    plugins = [*hydra.utils.instantiate(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()]
    callbacks = instantiate_all(cfg.get("callbacks"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins, **STEP_OPTIONS)
    hardware = {"hardware": caps.as_dict()} if caps else {}
    for logger in loggers:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), **hardware})

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
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
