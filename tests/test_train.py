"""End to end: configs compose for every experiment, and train.py runs as a researcher runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

from celeba_tree import make_celeba_tree
from inpaint.checks import check_model
from tolerances import rel_tol
from wandb_records import offline_run

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "callbacks.analysis=null"]


def run(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def composed(*overrides: str):
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    "experiment, data, mask, accelerator",
    [("demo", "faces", 64, "auto"), ("smoke", "faces", 64, "cpu"), ("paper_64", "celeba", 64, "gpu"), ("paper_16", "celeba", 16, "gpu")],
)
def test_experiments_compose_and_the_mask_size_flows_everywhere(experiment, data, mask, accelerator):
    cfg = composed(f"experiment={experiment}")
    assert cfg.data._target_.endswith(f"{data}.{ {'faces': 'FacesDataModule', 'celeba': 'CelebADataModule'}[data]}")
    assert cfg.mask.size == cfg.model.mask_size == mask
    assert cfg.model.overlap == cfg.mask.overlap == mask // 16
    assert cfg.trainer.accelerator == accelerator


@pytest.mark.parametrize("group", ["trainer=ddp", "trainer=ddp_cpu", "trainer=gpu", "logger=many", "logger=none",
                                   "model=original", "mask=center32", "data=photos", "callbacks=none"])
def test_config_groups_compose(group):
    cfg = composed(group)
    OmegaConf.to_container(cfg.model, resolve=True)
    if group == "trainer=ddp_cpu":
        assert cfg.trainer.devices == 2 and cfg.trainer.strategy.process_group_backend == "gloo"
    if group == "model=original":
        assert cfg.model.bias_free is False


def test_demo_model_and_data_instantiate():
    from hydra.utils import instantiate

    cfg = composed()  # the default is the demo
    model, data = instantiate(cfg.model), instantiate(cfg.data)
    assert model.hparams.base_channels == 24 and model.hparams.mask_size == 64 and data.batch_size == 16


def test_smoke_run_leaves_checkpoints_samples_and_an_offline_wandb_run(tmp_path):
    # the length as a Lightning user sets it (the acceptance's command): 4 batches x 2 optimiser steps = one epoch
    result = run("experiment=smoke", "trainer.max_steps=8", "trainer.max_epochs=-1", f"hydra.run.dir={tmp_path}")
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"last.ckpt", "epoch_000.ckpt"}
    assert (tmp_path / "samples" / "epoch_000.png").is_file()
    media = tmp_path / "wandb"
    assert len(list(media.glob("offline-run-*/files/media/images/samples/*.png"))) == 1
    figures = {p.stem for p in (tmp_path / "analysis").glob("*.png")}
    assert len(figures) == 18 and (tmp_path / "analysis" / "summary.json").is_file()
    assert (tmp_path / "analysis" / ".complete").read_text() == "8\n"  # written last: a requeued job keeps it
    logged = list(media.glob("offline-run-*/files/media/images/analysis/*.png"))
    assert {p.name.split("_")[0] for p in logged} == {f.split("_")[0] for f in figures} and len(logged) == 18
    assert "holdout/psnr" in result.stdout
    # the offline W&B run as `wandb sync` would upload it: curves as tables with line charts (so runs
    # overlay in the UI), the headline numbers in the summary, the results files with the run
    wandb_run = offline_run(tmp_path)
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert json.loads(wandb_run["summary"]["analysis/psnr"]) == summary["metrics"]["psnr"]
    assert json.loads(wandb_run["summary"]["analysis/phi_0.25_centre"]) == summary["jacobian"]["phi_p"]["code"]["centre"][
        summary["jacobian"]["p"].index(0.25)]
    for key, x, y in (("phi_p", "p", "phi_p"), ("energy_captured", "k", "energy_captured"), ("abs_cosine", "rank", "abs_cosine"),
                      ("singular_values", "index", "singular_value")):
        chart = json.loads(wandb_run["charts"][f"analysis/{key}_chart"])
        assert chart["panel_config"]["panelDefId"] == "wandb/line/v0"
        assert (chart["panel_config"]["fieldSettings"]["x"], chart["panel_config"]["fieldSettings"]["y"]) == (x, y)
        (table,) = (wandb_run["folder"] / "files" / "media" / "table" / "analysis").glob(f"{key}_[0-9]*.table.json")
        assert json.loads(table.read_text())["columns"][:2] == [x, y]
    (table,) = (wandb_run["folder"] / "files" / "media" / "table" / "analysis").glob("findings_[0-9]*.table.json")
    assert [row[0] for row in json.loads(table.read_text())["data"]] == [f["id"] for f in summary["findings"]]
    assert "Findings (verdict, claim, value [95 % interval] vs threshold):" in result.stdout + result.stderr  # the log's block
    files = wandb_run["folder"] / "files" / "analysis"
    assert (files / "summary.json").read_bytes() == (tmp_path / "analysis" / "summary.json").read_bytes()
    assert (files / "results.npz").read_bytes() == (tmp_path / "analysis" / "results.npz").read_bytes()
    assert wandb_run["group"] == "smoke"  # a single run: its task
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["mask_size"] == 64 and ckpt["global_step"] == 8  # 4 batches x 2 optimiser steps
    # the precision's choice and reason are logged, in the form the GPU check reads back (benchmarks/gpu_check.py)
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import read_run

    back = read_run(tmp_path)
    assert back["ok"], back["reason"]
    assert back["precision_line"].startswith("precision auto -> ") and back["precision"] in ("32-true", "bf16-mixed")
    assert back["precision_line"] in result.stdout + result.stderr  # on the console too


def test_last_checkpoint_is_the_last_epoch_and_resumes(tmp_path):
    # save_top_k=0: no best checkpoint at all, so last.ckpt must not depend on one
    run("experiment=smoke", f"hydra.run.dir={tmp_path / 'a'}", "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=0", *QUIET)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    result = run("experiment=smoke", f"hydra.run.dir={tmp_path / 'b'}", f"ckpt_path={last}", "trainer.max_epochs=3", *QUIET)
    assert "Restored all states from the checkpoint" in result.stdout + result.stderr
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 24


def test_trains_on_a_celeba_tree(tmp_path):
    # the smoke sizes, in the Kaggle archive's layout (the original's is found by the same code: test_celeba.py)
    tree = make_celeba_tree(tmp_path / "celeba", n_train=64, n_val=16, n_test=16, layout="kaggle")
    run("experiment=smoke", "data=celeba", f"data.root={tree}", f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}", *QUIET)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert len(list((tmp_path / "cache").glob("celeba_*"))) == 3  # train, val, holdout decoded once


def test_wrong_celeba_root_fails_with_one_clear_message(tmp_path):
    result = run("experiment=smoke", "data=celeba", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}",
                 *QUIET, check=False)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "img_align_celeba" in output and "data.root=" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("pca", [["model.pca_weight=0.1"], ["model.pca_head=true", "model.pca_components=16"]],
                         ids=["regulariser", "head"])
def test_the_pca_extension_trains_checkpoints_analyses_and_reloads_from_the_checkpoint_alone(pca, tmp_path):
    """The issue's two acceptance commands: the basis is fitted once at the start, kept in the
    checkpoint, the analyses run through the head, and analyze.py rebuilds the same model from the
    checkpoint alone (same holdout numbers, no data for the basis)."""
    # analysis.figures=false: the numbers are what this test reads (the figures are drawn in the smoke run's test)
    result = run("experiment=smoke", *pca, f"hydra.run.dir={tmp_path / 'train'}", "logger=csv", "callbacks.rich_progress_bar=null",
                 "analysis.figures=false")
    assert (result.stdout + result.stderr).count("PCA basis: top") == 1
    k = 16 if "model.pca_head=true" in pca else 32
    ckpt = torch.load(tmp_path / "train" / "checkpoints" / "last.ckpt", weights_only=True)
    (components,) = [value for key, value in ckpt["state_dict"].items() if key.endswith("components")]
    assert components.shape == (64 * 64, k) and components.abs().sum() > 0
    summary = json.loads((tmp_path / "train" / "analysis" / "summary.json").read_text())
    assert not list((tmp_path / "train" / "analysis").glob("*.png"))
    # f(a y) = a f(y) and A_y y = f(y) through the head too, by the analyses' own float32 checks (the
    # last multiplies out A_y's two halves through the code, the head inside the decoder's): each
    # output a chain of sums over the 3 x 128 x 128 inputs
    tol = rel_tol(torch.float32, 3 * 128 * 128)
    assert summary["homogeneity"]["max"] < tol and summary["homogeneity"]["full_jacobian"] < tol
    analysed = run_analyze(f"ckpt_path={tmp_path / 'train' / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'again'}",
                           *SMOKE_ANALYSIS, "analysis.figures=false")  # the callback's sizes (analyze.py's own defaults are a full analysis)
    assert analysed.returncode == 0, analysed.stdout[-3000:] + analysed.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "analysis" / "summary.json").read_text())
    for key in ("metrics", "baselines", "jacobian", "homogeneity"):
        assert again[key] == summary[key], key  # the same weights, basis, holdout and settings: the same numbers


SMOKE_ANALYSIS = ["analysis.examples=4", "analysis.baseline_images=4", "analysis.jacobian_images=1",
                  "analysis.svd_dense_rows=0", "analysis.svd_values=8"]  # conf/experiment/smoke.yaml's


def run_analyze(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_pca_ablation_sweeps_every_preset_at_faces_papers_length():
    """experiment=pca_ablation is a sweep by itself: faces_paper's recipe and length at the 64 mask,
    over presets that span no PCA, two regulariser weights and the head at two k, each valid."""
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=pca_ablation"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    presets = cfg.hydra.sweeper.params.pca.split(",")
    paper = composed("experiment=faces_paper")
    models = []
    for preset in presets:
        run = composed("experiment=pca_ablation", f"pca={preset}")
        assert run.trainer.max_epochs == paper.trainer.max_epochs and run.data.train_size == paper.data.train_size
        assert run.model.mask_size == 64 and run.model.base_channels == paper.model.base_channels
        model = OmegaConf.to_container(run.model, resolve=True)
        check_model(model, run.image_size)
        models.append(model)
    weights = {m["pca_weight"] for m in models if not m["pca_head"]}
    assert 0 in weights and len(weights) >= 3
    assert len({m["pca_components"] for m in models if m["pca_head"]}) >= 2


@pytest.mark.parametrize("experiment, data", [("demo", "faces"), ("smoke", "faces"), ("faces_paper", "faces"),
                                              ("pca_ablation", "faces"), ("architectures", "faces"), ("demo", "photos")])
def test_the_run_seed_never_sets_the_data_seed(experiment, data):
    """data.seed (the built-in images) is its own setting: 0 whatever the run's seed, in every
    experiment; set on the command line, it is what was typed."""
    for overrides, data_seed in (([], 0), (["seed=7"], 0), (["seed=7", "data.seed=3"], 3), (["data.seed=2"], 2)):
        cfg = composed(f"experiment={experiment}", f"data={data}", *overrides)
        assert (cfg.data.seed, cfg.seed) == (data_seed, 7 if "seed=7" in overrides else 0), overrides
