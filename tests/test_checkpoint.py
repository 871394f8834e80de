"""Checkpoints are read as data: a planted pickle is refused before any of it runs (by the loaders
and by train.py and analyze.py), and real checkpoints of this project still load."""

import os
import pathlib
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from test_module import Fixed
from torch.utils.data import DataLoader

from inpaint.checkpoint import read_checkpoint
from inpaint.errors import InpaintError
from inpaint.faults import AtomicCheckpointIO
from inpaint.module import InpaintingModule, load_checkpoint
from inpaint.resume import WANDB_ID_KEY, resume_state

ROOT = Path(__file__).resolve().parents[1]
REFUSED = "holds objects other than tensors and plain data"


class Touch:
    """Unpickled, creates ``target`` (Path.touch): the harmless stand-in for any code in a pickle."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


class System:
    """Unpickled, runs a shell command that creates ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


@pytest.fixture(params=[Touch, System])
def planted(request, tmp_path) -> tuple[Path, Path]:
    """(a checkpoint that looks like train.py's but carries code, the file that code would create)."""
    marker, path = tmp_path / "ran", tmp_path / "planted.ckpt"
    torch.save({"epoch": 0, "global_step": 8, "state_dict": {}, "hyper_parameters": {"mask_size": 16},
                "payload": request.param(marker)}, path)
    return path, marker


def test_the_planted_checkpoint_would_run_its_code_when_unpickled(planted):
    path, marker = planted
    torch.load(path, weights_only=False)  # what the loaders did before: the code runs
    assert marker.exists()


@pytest.mark.parametrize("read", [read_checkpoint, load_checkpoint, resume_state])
def test_a_planted_checkpoint_is_refused_and_nothing_in_it_runs(read, planted):
    path, marker = planted
    with pytest.raises(InpaintError, match=REFUSED) as error:
        read(path)
    assert str(path) in str(error.value) and "train.py" in str(error.value)
    assert not marker.exists()


def run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("planted", [System], indirect=True)  # one payload: each run costs seconds
@pytest.mark.parametrize("script", ["analyze.py", "train.py"])
def test_entry_points_refuse_a_planted_checkpoint_with_one_line_and_status_2(script, planted, tmp_path):
    path, marker = planted
    extra = ["experiment=smoke", "logger=csv", f"paths.log_dir={tmp_path / 'logs'}"] if script == "train.py" else []
    result = run(script, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", *extra)
    output = result.stdout + result.stderr  # Hydra logs to stdout
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    [error] = [line for line in output.splitlines() if "ERROR" in line]
    assert REFUSED in error and str(path) in error
    assert not marker.exists()
    assert not list(tmp_path.glob("**/checkpoints"))  # refused before anything was built


class RunId(L.Callback):
    """Stores a W&B run id the way :class:`inpaint.faults.WandbRunId` does, without W&B."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[WANDB_ID_KEY] = "abc123"


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[Path, InpaintingModule]:
    """A checkpoint as train.py writes it (Lightning, the atomic IO, ModelCheckpoint's state, a
    cosine LambdaLR for both optimisers, the critic), after two steps of a small model."""
    root = tmp_path_factory.mktemp("real")
    torch.manual_seed(0)
    model = InpaintingModule(mask_size=16, base_channels=8, bottleneck=64, lr_schedule="cosine")
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root, plugins=[AtomicCheckpointIO()],
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True), RunId()])
    trainer.fit(model, DataLoader(Fixed(8), batch_size=4), DataLoader(Fixed(4), batch_size=4))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_a_real_checkpoint_needs_no_extra_globals(real):
    path, _ = real
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    checkpoint = read_checkpoint(path)
    assert {"state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks", "hyper_parameters",
            WANDB_ID_KEY} <= set(checkpoint)
    assert len(checkpoint["optimizer_states"]) == len(checkpoint["lr_schedulers"]) == 2
    assert checkpoint["lr_schedulers"][0]["lr_lambdas"] == [None]  # LambdaLR does not pickle its function


def test_a_real_checkpoint_loads_through_every_reader(real):
    path, model = real
    loaded = load_checkpoint(path)
    assert loaded.hparams.mask_size == 16 and loaded.hparams.lr_schedule == "cosine"
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in loaded.state_dict().items())
    assert resume_state(path) == (read_checkpoint(path)["global_step"], "abc123")
    assert read_checkpoint(path, mmap=True)["global_step"] == resume_state(path)[0] > 0


def test_files_that_are_not_checkpoints_keep_their_messages(tmp_path):
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint")
    with pytest.raises(pickle.UnpicklingError, match="Unsupported operand"):  # no weights_only advice
        read_checkpoint(notes)
    with pytest.raises(InpaintError, match="not a PyTorch checkpoint"):
        load_checkpoint(notes)
    with pytest.raises(InpaintError, match="cannot resume from"):
        resume_state(notes)
