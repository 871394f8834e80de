"""Fault tolerance for training: resume where a killed run stopped, in the same W&B run, and never
lose or corrupt a checkpoint on the way.

- :class:`WandbRunId` stores the W&B run id in every checkpoint; :mod:`inpaint.resume` finds the
  checkpoint to resume from and reads the id back.
- :class:`CheckpointOnSigterm` writes ``last.ckpt`` at the step reached when SIGTERM arrives.
- :class:`AtomicCheckpointIO` writes every checkpoint through a temporary file and a rename.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from inpaint.resume import WANDB_ID_KEY

log = logging.getLogger(__name__)

# the shell's status for "terminated by SIGTERM": the run did not finish, so `train.py && ...` stops
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


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


class _KeepsWriteErrors:
    """A file whose write errors are kept: torch's zip writer turns a failed write (a full disk) into
    a RuntimeError that names neither the file nor the cause."""

    def __init__(self, file) -> None:
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


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
                writer = _KeepsWriteErrors(file)
                try:
                    torch.save(checkpoint, writer)
                except RuntimeError:
                    if writer.error is None:
                        raise
                    raise writer.error from None
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:  # the checkpoint's name, not the hidden temporary file's
            raise OSError(error.errno, error.strerror, str(path)) from error
        finally:
            temporary.unlink(missing_ok=True)
