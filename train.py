"""Train a (bias-free) Context Encoder: `python train.py [experiment=NAME] [group=option ...]`.

Composes conf/train.yaml with Hydra, then: accelerator and precision for this machine, the settings
checks, the checkpoint to resume from (if any), seed, data, model, callbacks, loggers, trainer,
fit, holdout test. Returns the metric named by `optimized_metric` so sweepers can optimise it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from inpaint.errors import InpaintError, exit_on_user_error

if TYPE_CHECKING:
    from inpaint.hardware import Capabilities

# Only Hydra and the standard library at import: `--help`, `--cfg job` and a refused setting answer
# in about a second. torch comes with the settings checks, Lightning and the analyses once a run starts.
os.environ.setdefault("INPAINT_ROOT", str(Path(__file__).resolve().parent))
log = logging.getLogger("train")


def gpus_per_node(accelerator: str, devices: int | str) -> int | str:
    """The GPUs hydra/launcher=slurm asks of each node (conf/hydra/launcher/slurm.yaml): one per
    device when the trainer uses GPUs (``gpu``, ``cuda``, or ``auto`` as on a GPU cluster), none on
    a CPU partition, where SLURM refuses any GPU request."""
    return 0 if str(accelerator) == "cpu" else devices


OmegaConf.register_new_resolver("gpus_per_node", gpus_per_node, replace=True)


def without_sacct_warnings(record: logging.LogRecord) -> bool:
    """hydra/launcher=slurm: submitit polls its jobs' states with ``sacct``, which a cluster without
    SLURM's accounting database refuses; it then goes by each job's result file, which is all a sweep
    needs, but warns at every poll. Those warnings are dropped (submitit's other messages stay)."""
    return "Bypassing sacct error" not in record.getMessage()


logging.getLogger("submitit").addFilter(without_sacct_warnings)


class OutputFolderCheck(Callback):
    """Refuse a run or sweep folder that cannot be written, with one line and exit status 2, before
    Hydra makes it (Hydra's own failure would be a traceback). Registered in conf/train.yaml."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self.check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.check(config.hydra.sweep.dir)

    @staticmethod
    def check(folder: str) -> None:
        from inpaint.checks import check_writable

        try:
            check_writable(folder)
        except InpaintError as error:  # Hydra turns a callback's exceptions into warnings
            print(f"ERROR: {error}", file=sys.stderr)
            sys.exit(2)


class SweepComparison(Callback):
    """When a multirun ends, compare its runs from their saved results into ``SWEEP_DIR/comparison/``
    (analysis/comparison.py), as ``analyze.py compare=[SWEEP_DIR]`` would. Registered in
    conf/train.yaml. A sweep whose runs left no results (analyses off, every job failed) gets a
    warning, not an error: its jobs' own outcomes stand."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from analysis.comparison import compare, effects_table

        sweep = Path(config.hydra.sweep.dir)
        try:
            comparison = compare([sweep])
            comparison.write(sweep / "comparison")
        except InpaintError as error:
            log.warning("No comparison of the sweep's runs: %s", error)
            return
        log.info("Comparison of %d runs -> %s", len(comparison.runs), sweep / "comparison")
        if len(comparison.settings) > 1:
            log.info("Against %s (the first job's setting), over seeds (95 %% Welch intervals; effects.csv has every number):\n%s",
                     comparison.reference(), effects_table(comparison.effect_rows()))


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
    from inpaint.hardware import capabilities, resolve_accelerator, resolve_precision

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
    """Refuse settings no run can use (inpaint/checks.py, and the analyses' own settings, which the
    end of the fit would otherwise be the first to read) before any data is read or model built."""
    from analysis.settings import AnalysisSettings
    from inpaint.checks import check_data, check_model, check_trainer, check_writable

    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "trainer", "analysis")}
    check_model(plain["model"], cfg.image_size)
    check_data(plain["data"], training=True, analyses=bool((cfg.get("callbacks") or {}).get("analysis")))
    check_trainer(plain["trainer"], plain["model"])
    AnalysisSettings.from_config(plain["analysis"], cfg.image_size)
    check_writable(cfg.paths.output_dir)


def wandb_configs(cfg: DictConfig) -> list[DictConfig]:
    """The run's WandbLogger configs (``logger.wandb``, or any other entry of that class)."""
    return [logger for logger in (cfg.get("logger") or {}).values()
            if isinstance(logger, DictConfig) and str(logger.get("_target_")).endswith("WandbLogger")]


def resolve_resume(cfg: DictConfig) -> None:
    """Turn ``ckpt_path`` into the checkpoint to resume from (``last``: the newest ``last.ckpt`` of
    this task's runs) and point a W&B logger at the W&B run stored in it, before anything is built.
    A requeued SLURM job (no ``ckpt_path``; Lightning resumes it from the run folder's
    ``hpc_ckpt_N.ckpt``) continues the W&B run stored in that checkpoint in the same way."""
    from inpaint.resume import find_checkpoint, hpc_checkpoint, resume_state

    cfg.ckpt_path = find_checkpoint(cfg.get("ckpt_path"), Path(cfg.paths.log_dir) / cfg.task_name / "runs")
    source = cfg.ckpt_path
    if source is None:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        if SLURMEnvironment.detect():
            source = hpc_checkpoint(cfg.trainer.get("default_root_dir") or cfg.paths.output_dir)
    if source is None:
        return
    step, wandb_id = resume_state(source)  # read as data: a planted file stops here, in one line
    log.info("Resuming from %s at step %d%s", source, step, f" in W&B run {wandb_id}" if wandb_id else "")
    for logger in wandb_configs(cfg):
        if wandb_id:
            with open_dict(logger):
                logger.id = wandb_id  # WandbLogger resumes an existing id ("allow")


def resolve_wandb(cfg: DictConfig) -> None:
    """W&B names for a sweep's jobs: ``group: null`` becomes the sweep (``TASK/SWEEP_FOLDER``) in a
    multirun and the task otherwise, so one sweep's runs are grouped in the UI; ``name: null``
    becomes the job's overrides (``mask=center16,seed=1``, less those that only say where it ran)
    in a multirun. Checkpoints as artifacts
    (``log_model``) need an online run: refused at once offline, as WandbLogger would only refuse
    when it is built."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    for logger in wandb_configs(cfg):
        with open_dict(logger):
            if logger.get("group") is None:
                logger.group = f"{cfg.task_name}/{Path(HydraConfig.get().sweep.dir).name}" if multirun else cfg.task_name
            if logger.get("name") is None and multirun:
                from analysis.comparison import parse_overrides

                logger.name = ",".join(f"{k}={v}" for k, v in parse_overrides(HydraConfig.get().overrides.task).items()) or None
        if logger.get("log_model") and logger.get("offline"):
            raise InpaintError(
                f"logger.wandb.log_model={logger.log_model} uploads checkpoints as W&B artifacts, which an offline run "
                "cannot: set logger.wandb.offline=false (after `wandb login`), or leave log_model=false (the "
                "checkpoints stay in RUN_DIR/checkpoints/)."
            )


# Hydra overrides that make or place a sweep: a sweep job's extra DDP processes are single runs in the
# job's folder instead (hydra.run.dir, hydra.mode=RUN), and log under their own job name.
SWEEP_OVERRIDES = ("hydra.sweep", "hydra.sweeper", "hydra/sweeper", "hydra.launcher", "hydra/launcher", "hydra.mode",
                   "hydra.run", "hydra.job.name", "hydra.output_subdir")
# what Lightning's subprocess launcher (and its thread setting) leave in the environment of rank zero
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


def ddp_child_command(local_rank: int, task: Iterable[str], hydra_overrides: Iterable[str], output_dir: str,
                      script: str | Path = __file__) -> list[str]:
    """The command of a sweep job's extra DDP process ``local_rank``: this script with the job's own
    overrides (its swept values included) and the user's ``hydra.*`` ones less those of the sweep, as
    a single run in the job's folder (``output_dir``), with no ``.hydra`` copy of its own and its log
    in ``train_ddp_process_N.log`` there (Lightning's name for it)."""
    parser = OverridesParser.create()

    def of_the_sweep(override: str) -> bool:
        key = parser.parse_override(override).key_or_group
        return any(key == name or key.startswith(name + ".") for name in SWEEP_OVERRIDES)

    kept = [override for override in hydra_overrides if not of_the_sweep(override)]
    run_dir = QuotedString(text=str(output_dir), quote=Quote.double).with_quotes()
    return [sys.executable, str(Path(script).resolve()), *task, *kept, f"hydra.run.dir={run_dir}", "hydra.mode=RUN",
            "hydra.output_subdir=null", f"hydra.job.name=train_ddp_process_{local_rank}"]


def ddp_in_sweep_jobs(entry: Callable) -> Callable:
    """Decorate the training function so that a sweep job (``-m``) can train under a
    subprocess-launched DDP strategy (trainer=ddp_cpu, ...).

    Lightning starts the extra processes with ``sys.argv`` plus ``hydra.run.dir=<hydra.run.dir>``
    (``_hydra_subprocess_cmd``): in a sweep job that re-runs the whole sweep (``-m`` and every swept
    value, in a sweep folder of its own; under submitit, submitit's entry point), in lockstep with the
    jobs only by luck. For the job's duration its extra processes get ``ddp_child_command`` instead,
    from the original working directory. Hydra's basic launcher runs the jobs one after the other in
    this process, and after a job its process group and Lightning's variables (LOCAL_RANK, ...) would
    linger: the next job would reuse the group and, LOCAL_RANK being set, start no process of its own.
    So afterwards the group is destroyed and the variables and torch's thread count are restored.
    Outside a sweep it does nothing (Lightning's own rule is right there). A plain function rather
    than a context manager, so that submitit can pickle the decorated function."""

    @functools.wraps(entry)
    def job(*args, **kwargs):
        if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
            return entry(*args, **kwargs)
        import torch
        from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
        from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

        hc = HydraConfig.get()

        def command(local_rank: int) -> tuple[list[str], str]:
            return (ddp_child_command(local_rank, hc.overrides.task, hc.overrides.hydra, hc.runtime.output_dir),
                    hc.runtime.cwd)

        env, threads = {key: os.environ.get(key) for key in DDP_ENV}, torch.get_num_threads()
        launchers = (fabric_launcher, trainer_launcher)  # the Trainer's imports Lightning's rule by name: both replaced
        lightnings = [launcher._hydra_subprocess_cmd for launcher in launchers]
        try:
            for launcher in launchers:
                launcher._hydra_subprocess_cmd = command
            return entry(*args, **kwargs)
        finally:
            for launcher, original in zip(launchers, lightnings):
                launcher._hydra_subprocess_cmd = original
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            torch.set_num_threads(threads)

    return job


def seeded_data_and_model(cfg: DictConfig):
    """(data module, model) of a run. The run's ``seed`` seeds torch (the model's initialisation,
    flips, the shuffle) and is the data module's ``train_seed`` (the order of sets drawn by epoch,
    training holes and crops); the images of every split are the data's own (``data.seed`` for the
    built-in faces and photographs), whatever the run's seed."""
    import lightning as L

    L.seed_everything(cfg.seed, workers=True)
    # random holes are drawn with the data (per item, in the loader's workers), training holes from the run's seed
    mask = OmegaConf.to_container(cfg.mask, resolve=True)
    datamodule = hydra.utils.instantiate(cfg.data, mask=mask, train_seed=cfg.seed)
    return datamodule, hydra.utils.instantiate(cfg.model)


def requeue_anytime(cfg: DictConfig):
    """Under SLURM with Lightning's auto-requeue (trainer=slurm), SIGUSR1 answered from now on, at
    any moment of the job (:class:`inpaint.faults.RequeueAnytime`, returned to go first among the
    callbacks); None elsewhere."""
    plugins = cfg.trainer.get("plugins") or []
    if "SLURM_JOB_ID" not in os.environ or not any(
        str(p.get("_target_", "")).endswith("SLURMEnvironment") and p.get("auto_requeue", True) for p in plugins
    ):
        return None
    from inpaint.faults import RequeueAnytime

    requeue = RequeueAnytime()
    requeue.install()
    return requeue


def lightning_logs_once() -> None:
    """Importing Lightning adds a console handler of its own to the ``lightning`` logger; imported
    after Hydra has set up logging (only once the settings are checked), its records would then
    reach the console twice, through that handler and through Hydra's, which also writes the run's
    log file. Leave them to Hydra's. (Lightning logs nothing as it is imported.)"""
    import lightning  # noqa: F401  (the import adds the handler)

    logging.getLogger("lightning").handlers.clear()


@exit_on_user_error
@ddp_in_sweep_jobs
def train(cfg: DictConfig) -> float | None:
    """Fit the model, test it on the holdout, return the optimised metric."""
    requeue = requeue_anytime(cfg)  # first: SLURM's signal may come while the job is still starting
    caps = resolve_hardware(cfg)
    check(cfg)
    resolve_wandb(cfg)
    resolve_resume(cfg)
    log.info("Config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    lightning_logs_once()  # the settings are checked: the run starts
    from inpaint.faults import AtomicCheckpointIO, requeued_job
    from inpaint.malloc import retain_freed_memory

    if cfg.retain_freed_memory:
        retain_freed_memory()
    datamodule, model = seeded_data_and_model(cfg)
    model.set_step_options(**{key: cfg.trainer.get(key, default) for key, default in STEP_OPTIONS.items()})
    loggers = instantiate_all(cfg.get("logger"))
    # the trainer config's plugins (SLURM's environment, ...) and checkpoints written through a rename
    plugins = [*hydra.utils.instantiate(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()]
    callbacks = ([requeue] if requeue else []) + instantiate_all(cfg.get("callbacks"))
    if requeue and requeued_job():  # its analyses may have been complete before the requeue (signal in the test)
        from analysis.callbacks import HoldoutAnalysis

        for callback in callbacks:
            if isinstance(callback, HoldoutAnalysis):
                callback.rerun = False
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins, **STEP_OPTIONS)
    hardware = {"hardware": caps.as_dict()} if caps else {}
    for logger in loggers:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), **hardware})

    # weights_only: Lightning's own reload (ckpt_path, or SLURM's hpc_ckpt_N.ckpt) reads data, never code
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    metric = trainer.callback_metrics.get(cfg.optimized_metric)
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    log.info("Run folder: %s", cfg.paths.output_dir)
    if requeue:  # the job's work is done: a time-limit signal from now on, up to the process's exit, is moot
        import signal

        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
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
