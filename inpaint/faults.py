"""Fault tolerance for training: resume where a killed run stopped, in the same W&B run, and never
lose or corrupt a checkpoint on the way.

- :func:`find_checkpoint` turns ``ckpt_path=last`` into the newest ``last.ckpt`` of the task's runs.
- :class:`WandbRunId` stores the W&B run id in every checkpoint; :func:`resume_state` reads it back
  (with the step) so train.py can hand it to the new WandbLogger, also from the
  :func:`hpc_checkpoint` a requeued SLURM job resumes from.
- :class:`CheckpointOnSigterm` writes ``last.ckpt`` at the step reached when SIGTERM arrives.
- :class:`AtomicCheckpointIO` writes every checkpoint through a temporary file and a rename.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from inpaint.checkpoint import read_checkpoint
from inpaint.errors import InpaintError

log = logging.getLogger(__name__)

WANDB_ID_KEY = "wandb_run_id"
# the shell's status for "terminated by SIGTERM": the run did not finish, so `train.py && ...` stops
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def find_checkpoint(ckpt_path: str | None, runs_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``None`` (start afresh), ``"last"`` (the newest, by
    modification time, of ``runs_dir/*/checkpoints/last.ckpt``) or an explicit path, which must
    exist. Raises :class:`InpaintError` when there is nothing to resume from."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        candidates = list(Path(runs_dir).glob("*/checkpoints/last.ckpt"))
        if not candidates:
            raise InpaintError(
                f"ckpt_path=last: no earlier run of this task left a checkpoint ({runs_dir}/*/checkpoints/"
                "last.ckpt matches nothing): check task_name (or experiment) and paths.log_dir, pass "
                "ckpt_path=PATH/TO/last.ckpt, or drop ckpt_path to start afresh."
            )
        return str(max(candidates, key=lambda path: path.stat().st_mtime))
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise InpaintError(
            f"ckpt_path '{ckpt_path}' does not exist: pass RUN_DIR/checkpoints/last.ckpt, ckpt_path=last for the "
            "newest run of this task, or drop ckpt_path to start afresh."
        )
    return str(path)


def hpc_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint Lightning resumes a requeued SLURM job from: ``folder/hpc_ckpt_N.ckpt`` with the
    highest N (Lightning's rule, in the trainer's ``default_root_dir``), or None."""
    versions = [(int(match.group(1)), path) for path in Path(folder).glob("hpc_ckpt_*.ckpt")
                if (match := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name))]
    return max(versions)[1] if versions else None


def resume_state(path: str | Path) -> tuple[int, str | None]:
    """(global step, W&B run id or None) of a checkpoint, read as data (no code in it runs) without
    loading its tensors."""
    try:
        checkpoint = read_checkpoint(path, mmap=True)
        return int(checkpoint["global_step"]), checkpoint.get(WANDB_ID_KEY)
    except InpaintError:
        raise
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise InpaintError(
            f"cannot resume from '{path}' ({type(error).__name__}: {error}): pass a .ckpt written by train.py."
        ) from error


class WandbRunId(L.Callback):
    """Stores the W&B run id in every checkpoint (``checkpoint["wandb_run_id"]``), so that a run
    resumed from it logs to the same W&B run. Does nothing without a WandbLogger."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[WANDB_ID_KEY] = logger.version


class CheckpointOnSigterm(L.Callback):
    """On SIGTERM during training, write ``path`` (the run's ``last.ckpt``) at the step reached, so
    ``ckpt_path=last`` resumes from there rather than from the last epoch's end.

    Lightning notices SIGTERM, finishes the current batch and raises ``SIGTERMException``; this
    callback then saves (on every rank, as ``trainer.save_checkpoint`` requires) and sets the
    exception's exit status to 143 (128 + SIGTERM), so the process exits non-zero: the run did not
    finish. During ``trainer.test`` it only sets the status: the model then holds the best
    checkpoint's weights, not the last ones. Other exceptions save nothing: they may strike mid-step.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        exception.code = SIGTERM_EXIT_CODE
        if trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning("SIGTERM: saved %s at step %d; resume with ckpt_path=last.", self.path, trainer.global_step)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint (a local path) to a temporary file in its own folder, flushes it to
    disk and renames it over the target in one step: a crash or kill mid-write leaves the previous
    checkpoint whole (and at worst a hidden ``.NAME.PID.tmp`` behind), never a half-written one.
    Lightning's own IO stages the file in the system's temporary folder, and a rename across file
    systems is a copy."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
