"""Settings no run can use are refused before any data is read or model built, with one message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from imports_at_exit import run_noting_imports
from omegaconf import OmegaConf

from analysis.settings import AnalysisSettings
from inpaint.checks import check_data, check_model, check_trainer, check_writable
from inpaint.errors import InpaintError

ROOT = Path(__file__).resolve().parents[1]


def settings(*overrides: str) -> dict:
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "paths.output_dir=unused", *overrides])
    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "trainer", "analysis")}
    return {**plain, "image_size": cfg.image_size, "log_dir": cfg.paths.log_dir}


def check_all(s: dict) -> None:
    check_model(s["model"], s["image_size"])
    check_data(s["data"], analyses=True)
    check_trainer(s["trainer"], s["model"])
    check_writable(s["log_dir"])
    AnalysisSettings.from_config(s["analysis"])


@pytest.mark.parametrize("experiment", ["demo", "smoke", "paper_64", "paper_16"])
def test_every_shipped_experiment_passes(experiment, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the paper's experiments ask for a GPU
    check_all(settings(f"experiment={experiment}"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("mask.size=48", "mask size 48 has no decoder"),
        ("image_size=100", "multiple of 32"),
        ("mask.overlap=40", "leaves no hole"),
        ("model.base_channels=0", "model.base_channels must be a positive integer"),
        ("model.lr_g=-1e-4", "model.lr_g must be positive"),
        ("model.lr_d=0", "model.lr_d must be positive"),
        ("model.beta1=1.5", "model.beta1 must lie in [0, 1)"),
        ("model.adv_weight=2", "model.adv_weight must lie in [0, 1]"),
        ("data.batch_size=1", "batch norm needs at least 2 images"),
        ("data.train_size=8", "smaller than one batch"),
        ("data.holdout_size=1", "at least 2 holdout images"),
        ("trainer.precision=17", "not a precision Lightning knows"),
        ("trainer.max_epochs=0", "trainer.max_epochs must be a positive integer"),
        ("trainer.max_steps=0", "trainer.max_steps must be a positive integer"),
        ("trainer.max_epochs=-1", "the run would never end"),
        ("trainer.accumulate_grad_batches=0", "accumulate_grad_batches must be a positive integer"),
        ("trainer.gradient_clip_val=-1", "gradient_clip_val must be a number >= 0"),
        ("trainer.gradient_clip_algorithm=max", "must be norm or value"),
        ("model.lr_schedule=linear", "model.lr_schedule must be constant or cosine"),
        ("model.warmup_fraction=1", "model.warmup_fraction must lie in [0, 1)"),
        ("model.bn_momentum=0", "model.bn_momentum must lie in (0, 1]"),
        ("paths.log_dir=/proc/cannot/write/here", "cannot write the output folder"),
        ("analysis.examples=0", "analysis.examples must be an integer >= 1"),
        ("analysis.jacobian_images=0", "analysis.jacobian_images must be an integer >= 1"),
        ("analysis.max_images=1", "analysis.max_images must be null (all) or an integer >= 2"),
        ("analysis.baselines=[telea,inpaint_magic]", "unknown method(s) ['inpaint_magic']"),
        ("analysis.ps=[0.1,1.5]", "analysis.ps must be a list of numbers in [0, 1]"),
        ("analysis.energy_ks=[10,0]", "analysis.energy_ks must be a list of positive integers"),
        ("analysis.svd=maybe", "analysis.svd must be true or false"),
        ("analysis.figures=2", "analysis.figures must be true or false"),
        ("+analysis.jacobian_imgs=16", "unknown analysis setting(s) ['jacobian_imgs']"),
    ],
)
def test_impossible_settings_are_refused_with_what_to_do(override, message):
    with pytest.raises(InpaintError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_all(settings(override))


def test_output_folder_is_made_or_refused(tmp_path):
    check_writable(tmp_path / "runs" / "new")  # made, as the run would
    assert (tmp_path / "runs" / "new").is_dir()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(InpaintError, match="cannot write the output folder"):
        check_writable(blocker / "runs")
    assert blocker.read_text() == "not a folder"  # nothing lost


@pytest.mark.parametrize(
    "override, message",
    # one per kind of check (every message is tried in-process above): each run costs seconds
    [("trainer.precision=17", "trainer.precision=17 is not a precision"), ("mask=center16 mask.size=48", "mask size 48 has no decoder"),
     ("analysis.baselines=[telea,magic]", "unknown method(s) ['magic']")],
)
def test_train_py_refuses_before_building_anything(override, message, tmp_path):
    """One ERROR line, exit status 2, no traceback, and nothing written but Hydra's own run folder."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "experiment=smoke", f"hydra.run.dir={tmp_path}", *override.split()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert [line for line in output.splitlines() if "ERROR" in line] == [line for line in output.splitlines() if message in line]
    assert "Traceback" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "train.log"]


@pytest.mark.parametrize(
    ("script", "args", "allowed"),
    [("train.py", ["--cfg", "job"], ()), ("train.py", ["--help"], ()), ("analyze.py", ["--help"], ()),
     ("train.py", ["experiment=smoke", "trainer.precision=17"], ("torch",)),
     ("train.py", ["experiment=smoke", "ckpt_path=last", "task_name=nothing_to_resume_here"], ("torch",))],
)
def test_the_entry_points_answer_before_importing_what_a_run_needs(script, args, allowed, tmp_path):
    """`--help`, `--cfg job` and a refused setting never import Lightning or matplotlib (seconds on a
    small CPU); the first two not even torch. The modules loaded are read at the process's exit."""
    extra = [] if args[0].startswith("--") else [f"hydra.run.dir={tmp_path}"]  # Hydra's flags take no overrides
    result, loaded = run_noting_imports(str(ROOT / script), [*args, *extra])
    assert loaded == list(allowed), result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("case", ["missing", "wrong_mask", "not_ours"])
def test_analyze_refuses_a_wrong_checkpoint_before_importing_lightning(case, tmp_path):
    """A missing checkpoint, one of another mask than asked, or someone else's file: one line, with
    only torch loaded (the checkpoint is read as data)."""
    import torch

    ckpt = tmp_path / "run.ckpt"
    if case == "wrong_mask":
        torch.save({"state_dict": {}, "hyper_parameters": {"mask_size": 64, "image_size": 128}}, ckpt)
    elif case == "not_ours":
        torch.save({"weights": torch.zeros(2)}, ckpt)
    path = str(ROOT / "analyze.py")
    args = [f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'out'}"] + (["mask_size=16"] if case == "wrong_mask" else [])
    result, loaded = run_noting_imports(path, args)
    message = {"missing": "does not exist", "wrong_mask": "has mask size 64, but mask_size=16", "not_ours": "not an inpaint checkpoint"}[case]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], result.stdout[-2000:] + result.stderr[-2000:]
    assert loaded == ["torch"]


@pytest.mark.parametrize("command", [["train.py", "experiment=smoke"], ["analyze.py", "ckpt_path=any.ckpt"]])
def test_an_output_folder_hydra_cannot_make_fails_in_one_line(tmp_path, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, str(ROOT / command[0]), *command[1:], f"paths.log_dir={blocker}/logs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("ERROR: cannot write the output folder") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "keep me"


def test_slurm_trainer_outside_slurm_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # trainer=slurm trains on GPUs
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    with pytest.raises(InpaintError, match="trainer=slurm runs only inside a SLURM job step"):
        check_trainer(settings("trainer=slurm")["trainer"])
    monkeypatch.setenv("SLURM_NTASKS", "4")
    check_trainer(settings("trainer=slurm")["trainer"])
    check_trainer(settings("trainer=ddp")["trainer"])


def test_a_gpu_asked_of_a_machine_without_one_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InpaintError, match="sees no GPU here: use the default trainer"):
        check_all(settings("trainer=gpu"))


def test_clipping_fp16_gradients_with_fused_adam_is_refused_before_training():
    s = settings("trainer.gradient_clip_val=1.0", "trainer.precision=16-mixed")
    with pytest.raises(InpaintError, match="model.fused_adam=false"):
        check_all(s)
    check_all(settings("trainer.gradient_clip_val=1.0", "trainer.precision=16-mixed", "model.fused_adam=false"))
