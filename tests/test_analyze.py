"""analyze.py on checkpoints: the callback's numbers again, several masks, clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]
SMOKE_DATA = ["data.holdout_size=16", "data.batch_size=16", "analysis.examples=4", "analysis.baseline_images=16",
              "analysis.jacobian_images=1"]


def run(script: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two smoke runs, 64 and 16 masks, with the analysis callback."""
    root = tmp_path_factory.mktemp("runs")
    run("train.py", "-m", "experiment=smoke", "mask=center64,center16", f"hydra.sweep.dir={root}", *QUIET)
    return root / "0", root / "1"


def test_training_ends_with_the_analyses(runs):
    for folder in runs:
        assert (folder / "analysis" / "summary.json").is_file()
        assert len(list((folder / "analysis").glob("F*.png"))) == 11


def test_analyze_reproduces_the_callbacks_numbers(runs, tmp_path):
    run64 = runs[0]
    run("analyze.py", f"ckpt_path={run64 / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path}", *SMOKE_DATA)
    callback = json.loads((run64 / "analysis" / "summary.json").read_text())
    again = json.loads((tmp_path / "summary.json").read_text())
    # the same weights, images and batches through the same kernels on one machine: the same bits
    assert again["metrics"] == callback["metrics"]
    assert again["pca"]["eigenvalues"] == callback["pca"]["eigenvalues"]
    assert again["jacobian"]["phi_p"] == callback["jacobian"]["phi_p"]
    assert again["baselines"] == callback["baselines"]


def test_two_mask_sizes_draw_f1_and_f9(runs, tmp_path):
    paths = ",".join(str(r / "checkpoints" / "last.ckpt") for r in runs)
    run("analyze.py", f"ckpt_path=[{paths}]", f"hydra.run.dir={tmp_path}", *SMOKE_DATA)
    assert (tmp_path / "F1_inpainting_by_mask.png").is_file() and (tmp_path / "F9_phi_by_mask.png").is_file()
    assert {p.name for p in tmp_path.glob("mask*")} == {"mask64_last", "mask16_last"}


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint", "wrong_mask"])
def test_bad_checkpoints_fail_with_one_clear_message(case, runs, tmp_path):
    path = {"missing": tmp_path / "nope.ckpt", "not_a_checkpoint": tmp_path / "notes.ckpt",
            "wrong_mask": runs[0] / "checkpoints" / "last.ckpt"}[case]
    if case == "not_a_checkpoint":
        path.write_text("not a checkpoint")
    extra = ["mask_size=16"] if case == "wrong_mask" else []
    result = run("analyze.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", *extra, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    assert {"missing": "does not exist", "not_a_checkpoint": "not a PyTorch checkpoint", "wrong_mask": "mask size 64"}[case] in output
