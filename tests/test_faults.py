"""Faults: resume after SIGKILL in the same W&B run, a checkpoint on SIGTERM, atomic checkpoint
writes, bitwise determinism, and a clear error when there is nothing to resume."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from inpaint.errors import InpaintError
from inpaint.faults import SIGTERM_EXIT_CODE, AtomicCheckpointIO
from inpaint.module import load_checkpoint
from inpaint.resume import WANDB_ID_KEY, find_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "callbacks.analysis=null", "test=false"]
# smoke: 64 faces in batches of 16 = 4 batches an epoch, 2 optimiser steps (generator, critic) a batch
STEPS_PER_EPOCH = 8
TIMEOUT = 600  # the machine is slow and shared


class PauseAt(L.Callback):
    """Loaded by train.py from this file (PYTHONPATH=tests/): after batch ``at_batch`` of epoch
    ``epoch``, touch ``marker`` and wait for a signal or for the marker's removal, so a test can act
    on the run mid-epoch at a known step instead of guessing one from the clock."""

    def __init__(self, epoch: int, at_batch: int, marker: str) -> None:
        self.epoch, self.at_batch, self.marker = epoch, at_batch, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.at_batch):
            return
        self.marker.touch()
        deadline = time.monotonic() + TIMEOUT  # the test signals the run, or removes the marker to let it go on
        while not trainer.received_sigterm and self.marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def start(*overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, output


def run(*overrides: str) -> str:
    code, output = finish(start(*overrides))
    assert code == 0, output[-5000:]
    return output


def pause(tmp_path: Path, epoch: int, at_batch: int) -> tuple[list[str], Path]:
    marker = tmp_path / "paused"
    overrides = ["+callbacks.pause._target_=test_faults.PauseAt", f"+callbacks.pause.epoch={epoch}",
                 f"+callbacks.pause.at_batch={at_batch}", f"+callbacks.pause.marker={marker}"]
    return overrides, marker


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        assert process.poll() is None, f"train.py ended before {path.name}:\n{finish(process)[1][-5000:]}"
        assert time.monotonic() < deadline, f"no {path} after {TIMEOUT} s"
        time.sleep(0.1)


def run_dirs(log_dir: Path) -> list[Path]:
    return sorted((log_dir / "smoke" / "runs").iterdir())


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def first_logged_step(run_dir: Path) -> int:
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as file:
        return min(int(row["step"]) for row in csv.DictReader(file) if row.get("train/g_loss"))


def wandb_ids(run_dir: Path) -> list[str]:
    return [path.name.rsplit("-", 1)[1] for path in (run_dir / "wandb").glob("offline-run-*")]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_ckpt_path_last_continues_the_step_and_the_wandb_run(tmp_path):
    logs = tmp_path / "logs"
    common = ["experiment=smoke", "trainer.max_epochs=3", f"paths.log_dir={logs}", "logger=many", *QUIET]
    overrides, marker = pause(tmp_path, epoch=1, at_batch=1)
    process = start(*common, *overrides)
    wait_for(marker, process)  # epoch 0 checkpointed, epoch 1 half done
    process.kill()
    process.wait(timeout=TIMEOUT)
    [killed] = run_dirs(logs)
    saved = killed / "checkpoints" / "last.ckpt"
    assert load(saved)["global_step"] == STEPS_PER_EPOCH

    output = run(*common, "ckpt_path=last")
    assert f"Resuming from {saved} at step {STEPS_PER_EPOCH}" in output
    assert "Restored all states from the checkpoint" in output
    resumed = run_dirs(logs)[1]
    last = load(resumed / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 3 * STEPS_PER_EPOCH)
    assert first_logged_step(resumed) == STEPS_PER_EPOCH // 2  # logged per batch: training went on from batch 4, not 0
    assert wandb_ids(killed) == wandb_ids(resumed) == [load(saved)[WANDB_ID_KEY]] == [last[WANDB_ID_KEY]]


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_last_ckpt_at_the_step_reached_and_exits_143(tmp_path):
    logs = tmp_path / "logs"
    common = ["experiment=smoke", "trainer.max_epochs=3", f"paths.log_dir={logs}", "logger=csv", *QUIET]
    overrides, marker = pause(tmp_path, epoch=1, at_batch=1)
    process = start(*common, *overrides)
    wait_for(marker, process)
    process.send_signal(signal.SIGTERM)
    code, output = finish(process)
    assert code == SIGTERM_EXIT_CODE, output[-5000:]
    checkpoints = run_dirs(logs)[0] / "checkpoints"
    assert load(checkpoints / "last.ckpt")["global_step"] == STEPS_PER_EPOCH + 2 * 2  # epoch 0, then batches 0 and 1
    assert load_checkpoint(checkpoints / "last.ckpt").hparams.mask_size == 64
    assert all(path.suffix == ".ckpt" for path in checkpoints.iterdir())  # no temporary file left
    assert "SIGTERM: saved" in output

    run(*common, "ckpt_path=last")  # the mid-epoch checkpoint resumes and the run completes
    assert load(run_dirs(logs)[1] / "checkpoints" / "last.ckpt")["global_step"] == 3 * STEPS_PER_EPOCH


class Interrupt:
    """Pickled inside a checkpoint: records the folder's files at that moment, then interrupts
    the write as Ctrl+C or a crash would."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, None

    def __reduce__(self):
        self.seen = sorted(path.name for path in self.folder.iterdir())
        raise KeyboardInterrupt


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    io, last = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "weights": torch.arange(1000.0)}, last)
    interrupt = Interrupt(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "weights": torch.zeros(1000), "later": interrupt}, last)
    assert interrupt.seen == [f".last.ckpt.{os.getpid()}.tmp", "last.ckpt"]  # written beside the target
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]  # and cleaned up
    previous = load(last)
    assert previous["global_step"] == 1 and torch.equal(previous["weights"], torch.arange(1000.0))
    io.save_checkpoint({"global_step": 3}, last)
    assert load(last)["global_step"] == 3


@pytest.mark.slow
def test_two_seeded_deterministic_runs_give_bitwise_identical_weights(tmp_path):
    common = ["experiment=smoke", "trainer.max_epochs=2", "seed=7", "trainer.deterministic=true", "logger=csv", *QUIET]
    processes = [start(*common, f"hydra.run.dir={tmp_path / name}") for name in "ab"]  # side by side
    for process in processes:
        code, output = finish(process)
        assert code == 0, output[-5000:]
    a, b = (load(tmp_path / name / "checkpoints" / "last.ckpt") for name in "ab")
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [key for key in a["state_dict"] if not torch.equal(a["state_dict"][key], b["state_dict"][key])]
    assert not different, f"weights differ between identical seeded runs: {different}"
    for state_a, state_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for key, value in state_a["state"].items():
            assert all(torch.equal(value[k], state_b["state"][key][k]) for k in value)


def test_ckpt_path_last_picks_the_newest_last_ckpt_of_the_task(tmp_path):
    runs = tmp_path / "runs"
    for name, mtime in (("2026-01-02_00-00-00", 100), ("2026-01-01_00-00-00", 200), ("2026-01-03_00-00-00", None)):
        (runs / name / "checkpoints").mkdir(parents=True)
        if mtime:  # the newest folder has no checkpoint (a run killed before its first epoch ended)
            (runs / name / "checkpoints" / "last.ckpt").touch()
            os.utime(runs / name / "checkpoints" / "last.ckpt", (mtime, mtime))
    assert find_checkpoint("last", runs) == str(runs / "2026-01-01_00-00-00" / "checkpoints" / "last.ckpt")
    assert find_checkpoint(None, runs) is None
    with pytest.raises(InpaintError, match="ckpt_path=last"):
        find_checkpoint("last", tmp_path / "elsewhere")
    with pytest.raises(InpaintError, match="ckpt_path 'no/such/last.ckpt' does not exist"):
        find_checkpoint("no/such/last.ckpt", runs)


@pytest.mark.parametrize("ckpt_path", ["last"])  # an explicit path that does not exist: in-process above
def test_nothing_to_resume_exits_2_with_one_clear_message(tmp_path, ckpt_path):
    process = start("experiment=smoke", f"paths.log_dir={tmp_path}", f"ckpt_path={ckpt_path}", "logger=csv", *QUIET)
    code, output = finish(process)
    assert code == 2, output[-5000:]
    assert "Traceback" not in output
    [error] = [line for line in output.splitlines() if "ERROR" in line]
    assert ckpt_path in error and "drop ckpt_path to start afresh" in error
    assert not list(tmp_path.glob("smoke/runs/*/checkpoints"))


def _composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["experiment=smoke", *overrides])


def test_a_requeued_slurm_job_continues_the_wandb_run_of_its_hpc_checkpoint(tmp_path, monkeypatch):
    """SLURM requeues a job with the same command and folder; Lightning resumes it from the newest
    hpc_ckpt_N.ckpt there, and train.py points the new WandbLogger at the W&B run stored in it."""
    sys.path.insert(0, str(ROOT))
    from train import resolve_resume

    for n, run_id in ((1, "older"), (10, "requeued"), (2, "old")):  # Lightning's rule: the highest N, not the newest name
        torch.save({"global_step": 8 * n, WANDB_ID_KEY: run_id}, tmp_path / f"hpc_ckpt_{n}.ckpt")
    cfg = _composed("logger=wandb", f"paths.output_dir={tmp_path}", f"trainer.default_root_dir={tmp_path}")
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "n1"}.items():
        monkeypatch.setenv(key, value)
    resolve_resume(cfg)
    assert cfg.logger.wandb.id == "requeued" and cfg.ckpt_path is None  # Lightning finds the checkpoint itself
    monkeypatch.delenv("SLURM_NTASKS")  # outside SLURM Lightning ignores hpc checkpoints, and so does train.py
    monkeypatch.delenv("SLURM_JOB_ID")
    cfg = _composed("logger=wandb", f"paths.output_dir={tmp_path}", f"trainer.default_root_dir={tmp_path}")
    resolve_resume(cfg)
    assert cfg.logger.wandb.get("id") is None


def test_checkpoints_as_wandb_artifacts_offline_are_refused_before_training():
    sys.path.insert(0, str(ROOT))
    from train import resolve_wandb

    with pytest.raises(InpaintError, match="set logger.wandb.offline=false"):
        resolve_wandb(_composed("logger=wandb", "logger.wandb.log_model=true", "paths.output_dir=unused"))
    cfg = _composed("logger=wandb", "logger.wandb.log_model=true", "logger.wandb.offline=false", "paths.output_dir=unused")
    resolve_wandb(cfg)
    assert cfg.logger.wandb.group == "smoke" and cfg.logger.wandb.name is None  # not a sweep: the task, W&B's own name


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 9 MB (tmpfs: root only) for a run folder to fill: the smoke model's
    checkpoints are 3.2 MB, so the first epoch's two fit and the second epoch's do not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_ends_the_run_in_one_line_and_loses_nothing(small_disk):
    logs = small_disk / "logs"
    common = ["experiment=smoke", "trainer.max_epochs=3", f"paths.log_dir={logs}", "logger=csv", *QUIET]
    code, output = finish(start(*common))
    assert code == 2, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "no space left (writing " + str(logs) in errors[0], output[-3000:]
    assert "ckpt_path=last" in errors[0] and "Traceback" not in output
    [run_dir] = run_dirs(logs)
    saved = load(run_dir / "checkpoints" / "last.ckpt")  # the epoch before the fault, whole
    assert saved["global_step"] == STEPS_PER_EPOCH
    # space freed: the run resumes where it stopped and finishes
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    output = run(*common, "ckpt_path=last")
    assert f"at step {STEPS_PER_EPOCH}" in output
    assert load(run_dirs(logs)[1] / "checkpoints" / "last.ckpt")["global_step"] == 3 * STEPS_PER_EPOCH


def test_a_checkpoint_folder_turned_read_only_mid_run_ends_it_in_one_line_and_loses_nothing(tmp_path):
    """The run's checkpoint folder becomes read-only between two saves (a read-only bind mount over it,
    as a file server that goes read-only would): the next save fails with one message naming the path
    and the cause, and the previous last.ckpt still loads."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (and root ignores file permissions)")
    logs = tmp_path / "logs"
    common = ["experiment=smoke", "trainer.max_epochs=3", f"paths.log_dir={logs}", "logger=csv", *QUIET]
    overrides, marker = pause(tmp_path, epoch=1, at_batch=1)
    process = start(*common, *overrides)
    wait_for(marker, process)  # epoch 0 checkpointed, epoch 1 half done
    [run_dir] = run_dirs(logs)
    checkpoints = run_dir / "checkpoints"
    subprocess.run(["mount", "--bind", str(checkpoints), str(checkpoints)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(checkpoints)], check=True)
        marker.unlink()  # the run goes on, to epoch 1's save
        code, output = finish(process)
    finally:
        subprocess.run(["umount", str(checkpoints)], check=True)
    assert code == 2, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "read-only file system (writing " + str(checkpoints) in errors[0], output[-3000:]
    assert "ckpt_path=last" in errors[0] and "Traceback" not in output
    # the epoch before the fault, whole (resuming from it after a disk error: the full-disk test above)
    assert load(checkpoints / "last.ckpt")["global_step"] == STEPS_PER_EPOCH


class Left(Exception):
    """Raised by a patched ``_leave`` in place of requeueing and exiting the process."""


class SignalAt(L.Callback):
    """Sends this process SIGUSR1 as training batch ``batch`` starts, as SLURM's time-limit warning would."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.parametrize("batch, left_in_training", [(1, True), (3, False)])
def test_slurm_s_signal_in_training_requeues_at_the_batch_end_and_in_the_last_batch_after_the_fit_s_saves(
    tmp_path, monkeypatch, batch, left_in_training
):
    """Mid-training the job leaves at that batch's end with an hpc checkpoint of it; in the last batch
    the fit finishes first, so last.ckpt holds the final step (a requeued job with training done would
    never write it: a cluster run once ended with last.ckpt an epoch short), and the job leaves at the
    fit's end."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    from inpaint import faults

    left = []

    def leave(trainer):
        left.append(trainer.global_step if trainer is not None else None)
        raise Left

    monkeypatch.setattr(faults, "_leave", leave)
    requeue = faults.RequeueAnytime()
    previous = signal.getsignal(signal.SIGUSR1)
    requeue.install()
    last = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None, enable_version_counter=False)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, callbacks=[requeue, last, SignalAt(batch)],
                        default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)
    try:
        with pytest.raises(Left):
            trainer.fit(BoringModel())
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert left == ([batch + 1] if left_in_training else [None])
    if not left_in_training:
        assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 4
        assert torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=True)["global_step"] == 4


def test_a_requeued_job_keeps_a_complete_analysis_of_its_step_and_redoes_any_other(tmp_path, monkeypatch, caplog):
    """SLURM's signal in the holdout test, after the analyses, requeues the job; the requeued job
    finds training done and must not analyse again what is complete (train.py sets rerun=False when
    SLURM_RESTART_COUNT says the job was requeued). Incomplete or another step's: analysed again."""
    from types import SimpleNamespace

    from analysis.callbacks import COMPLETE, HoldoutAnalysis
    from inpaint.faults import requeued_job

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert not requeued_job()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_job()
    analysis = tmp_path / "analysis"
    analysis.mkdir()
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), global_step=24, datamodule=None)  # no data: analysing would warn

    def analysed(rerun: bool, marker: str | None) -> bool:
        (analysis / COMPLETE).unlink(missing_ok=True)
        if marker is not None:
            (analysis / COMPLETE).write_text(marker)
        callback = HoldoutAnalysis()
        callback.rerun = rerun
        caplog.clear()
        with caplog.at_level("INFO"):
            callback.on_fit_end(trainer, None)
        kept = "already complete" in caplog.text
        assert kept != ("needs an ImageDataModule" in caplog.text)
        return not kept

    assert not analysed(rerun=False, marker="24\n")
    assert analysed(rerun=False, marker="16\n")  # another step's analysis
    assert analysed(rerun=False, marker=None)  # interrupted before its end
    assert analysed(rerun=True, marker="24\n")  # not requeued: every fit end analyses
