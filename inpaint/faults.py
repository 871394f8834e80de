"""Fault tolerance for training: resume where a killed run stopped, in the same W&B run, and never
lose or corrupt a checkpoint on the way.

- :class:`WandbRunId` stores the W&B run id in every checkpoint; :mod:`inpaint.resume` finds the
  checkpoint to resume from and reads the id back.
- :class:`CheckpointOnSigterm` writes ``last.ckpt`` at the step reached when SIGTERM arrives.
- :class:`AtomicCheckpointIO` writes every checkpoint through a temporary file and a rename.
- :class:`RequeueAnytime` answers SLURM's time-limit signal at any moment of a job, not only in the
  training loop.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
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


class RequeueAnytime(L.Callback):
    """SLURM's SIGUSR1 (sbatch ``--signal=USR1@T``: the time limit is near) handled at any moment
    of the job. Lightning handles it only inside ``trainer.fit``'s loops, and inside its signal
    handler, which saves a checkpoint (a collective) wherever the signal lands: in the middle of
    another checkpoint's save the ranks deadlocked until the time limit. Before the loops, and in
    the end-of-fit analyses and the holdout test after them, the signal's default action killed
    the job, FAILED, with half its figures written.

    :meth:`install` puts one handler in place for the whole job, so Lightning leaves the signal to it:
    - in the training loop it only notes the signal; at the next batch's end, a point every rank
      reaches, the ranks agree that one of them got it, save an hpc checkpoint together and rank
      zero requeues the job (after the last batch, at the end of the fit instead: the fit's own
      saves, last.ckpt at the final step, come first);
    - elsewhere rank zero requeues the job at once. At the end of the fit this callback (first in
      the list) has saved an hpc checkpoint of the finished training, so the requeued job resumes
      there, finds training done and runs the analyses (unless they were complete: a signal in the
      holdout test, after them; :func:`requeued_job`) and the test again, from the start, once.
    Either way W&B's run is closed and every rank then leaves with status 0, quietly: SLURM cancels
    the step as it requeues the job, and would otherwise leave tracebacks from W&B's killed service
    and from ranks whose peers have gone.
    """

    def __init__(self) -> None:
        self.training = False
        self.signalled = False

    def install(self) -> None:
        signal.signal(signal.SIGUSR1, self._handle)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.signalled = trainer.strategy.reduce_boolean_decision(self.signalled, all=False)  # any rank signalled
        if self.signalled and not _last_batch(trainer):
            _leave(trainer)
        # after the last batch the fit's own saves (last.ckpt at the final step) come first: a job
        # requeued with training done never writes them; the end of the fit then leaves

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.training = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's own rule for the name (hpc_ckpt_N.ckpt, N one more than the newest), which its
        # SLURM resume looks for; every rank calls save_checkpoint, rank zero writes
        trainer.save_checkpoint(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        if self.signalled:  # the signal came in or after the last batch
            _leave(None)

    def _handle(self, signum: int, frame) -> None:
        if self.training:
            self.signalled = True  # acted on at the next batch's end
            return
        _leave(None)


def requeued_job() -> bool:
    """Whether this process belongs to a SLURM job that was requeued (SLURM counts its restarts)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def _last_batch(trainer: L.Trainer) -> bool:
    """Whether training ends after this batch: its step limit reached, or its epoch limit at the epoch's last batch."""
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    return last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


def _leave(trainer: L.Trainer | None) -> None:
    """Requeue the job and leave: SLURM cancels the job step the moment the job is requeued,
    SIGTERM to every process of it, W&B's service included. So SIGTERM is ignored (Lightning's own
    handler would broadcast to ranks that are leaving), W&B's run is closed first, with ``trainer``
    an hpc checkpoint is saved (by every rank together), rank zero requeues, and every rank exits."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _finish_wandb()
    if trainer is not None:
        trainer.save_checkpoint(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
    _requeue(in_training=trainer is not None)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(0)  # nothing half-written is left: the checkpoints are whole, the rest is redone


def _finish_wandb() -> None:
    """Close this process's W&B run, if it has one, while W&B's service still runs."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def _requeue(in_training: bool) -> None:
    """``scontrol requeue`` this job from rank zero."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID", "")
    if int(os.environ.get("SLURM_PROCID", "0")) != 0 or not job:
        return
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    where = "in the training loop (an hpc checkpoint saved)" if in_training else "outside the training loop"
    if done.returncode == 0:
        log.warning("SLURM's time-limit signal %s: job %s requeued; it resumes from the run's newest hpc checkpoint.",
                    where, job)
    else:
        log.error("SLURM's time-limit signal: requeueing job %s failed (%s)", job, done.stderr.strip())
