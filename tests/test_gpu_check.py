"""The GPU check's parts that need no GPU: reading runs back, the Jacobian comparison and its
tolerance, the table, and the one-line answer on a machine without CUDA."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from imports_at_exit import run_noting_imports
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed: importable from the root (as under `python -m pytest`)
from benchmarks.gpu_check import (  # noqa: E402
    bench_step,
    calibrated_generator,
    compare_jacobians,
    jacobian_tolerance,
    read_run,
    reduction_terms,
    run_command,
    table,
    verdict,
)

LOG = "[2026-12-01 21:42:39,144][train][INFO] - {}\n[2026-12-01 21:42:39,150][train][INFO] - Config:\n  precision: {}\n"
AUTO = "precision auto -> bf16-mixed: CUDA GPU H200 (compute capability 9.0) has bf16"


def fake_run(folder: Path, precision_line: str | None = AUTO, summary: dict | str | None = None) -> Path:
    """A run folder as train.py leaves it: train.log (with the precision line unless None) and analysis/summary.json."""
    (folder / "analysis").mkdir(parents=True)
    (folder / "train.log").write_text(LOG.format(precision_line or "Resuming from nowhere", "auto"))
    if summary is None:
        summary = {"mask_size": 64, "holdout_images": 16, "metrics": {"psnr": 20.3169, "ssim": 0.61, "region": "hole"},
                   "baselines": {"mean": {"psnr": 13.6, "ssim": 0.47}, "telea": {"psnr": 16.6, "ssim": 0.50}}}
    (folder / "analysis" / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return folder


@pytest.mark.parametrize("line, precision", [(AUTO, "bf16-mixed"), ("trainer.precision=32-true as set", "32-true")])
def test_read_run_reads_the_precision_line_and_the_holdout_metrics(tmp_path, line, precision):
    result = read_run(fake_run(tmp_path, line))
    assert result["ok"] and result["reason"] == ""
    assert result["precision_line"] == line and result["precision"] == precision
    assert (result["psnr"], result["ssim"], result["telea_psnr"]) == (20.3169, 0.61, 16.6)


def test_read_run_without_baselines_has_no_telea_and_still_passes(tmp_path):
    result = read_run(fake_run(tmp_path, summary={"metrics": {"psnr": 7.0, "ssim": 0.01}}))
    assert result["ok"] and result["telea_psnr"] is None


@pytest.mark.parametrize("make, says", [
    (lambda d: d.mkdir(), ["cannot read train.log", "cannot read analysis/summary.json"]),
    (lambda d: fake_run(d, precision_line=None), ["train.log has no precision line"]),
    (lambda d: fake_run(d, summary="{not json"), ["summary.json is broken (JSONDecodeError"]),
    (lambda d: fake_run(d, summary={"baselines": {}}), ["summary.json is broken (KeyError"]),
    (lambda d: fake_run(d, summary={"metrics": {"psnr": None, "ssim": 0.5}}), ["not finite numbers"]),
])
def test_a_missing_or_broken_run_is_a_failed_entry_with_its_reason(tmp_path, make, says):
    folder = tmp_path / "run"
    make(folder)
    result = read_run(folder)
    assert not result["ok"] and all(s in result["reason"] for s in says), result["reason"]


def test_run_command_kills_what_runs_past_its_timeout():
    run = run_command([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 2)
    assert run["rc"] is None and "started" in run["output"]


def test_bench_step_reads_ratios_and_efficiency_where_the_benchmarks_wrote_them(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmarks would really run")
    out = tmp_path / "bench.json"  # here `--device cuda` is refused (exit 2) before the file is written
    out.write_text(json.dumps({"train": {"ratio": 3.5, "best_efficiency": 0.25}, "jacobian": {"ratio": 9.0},
                               "pca": {"ratio": 1.5, "efficiency": 0.1}}))
    step = bench_step(out, 120)
    absent = {"data": None, "pca_head": None, "unet": None, "unet_jacobian": None, "exemplar": None, "explorer": None}
    assert step["ratios"] == {"train": 3.5, "jacobian": 9.0, "pca": 1.5, **absent}
    assert step["efficiency"] == {"train": 0.25, "jacobian": None, "pca": 0.1, **absent}
    assert step["capabilities"] is None
    assert not step["ok"] and "output" not in step
    assert step["reason"] == ("exit code 2; no ratio for data; no ratio for pca_head; no ratio for unet; no ratio for unet_jacobian; "
                              "no ratio for exemplar; no ratio for explorer")
    assert any("sees no CUDA device" in line for line in step["output_tail"])


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor]:
    """A calibrated bias-free generator small enough for a whole A_y in about a second, and one input."""
    generator = calibrated_generator(mask_size=16, base_channels=8, bottleneck=64, image_size=64)
    return generator, generator.mask_input(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))[0]


def test_the_same_jacobian_on_the_same_device_passes(tiny):
    generator, masked = tiny

    def flags() -> tuple[bool, bool]:
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    before = flags()
    result = compare_jacobians(generator, masked, "cpu", "cpu")
    assert result["ok"], result["reason"]
    assert result["relative_difference"] <= 1e-7 and result["shape"] == [3, 16, 16, 3, 64, 64]
    assert all(h < result["tolerance"] for h in result["homogeneity"])
    assert "disabled" in result["tf32"] and flags() == before  # restored


def test_a_generator_with_one_weight_changed_fails_the_check(tiny):
    generator, masked = tiny
    changed = calibrated_generator(mask_size=16, base_channels=8, bottleneck=64, image_size=64)
    with torch.no_grad():
        changed.encoder[0].weight[0, 0, 1, 1] += 0.01  # one of 384 weights of the first layer (std 0.02)
    result = compare_jacobians(generator, masked, "cpu", "cpu", other=changed)
    assert not result["ok"] and "Jacobians differ" in result["reason"]
    assert result["relative_difference"] > 100 * result["tolerance"]


def test_reduction_terms_count_the_longer_of_each_layers_two_sums():
    layers = nn.Sequential(nn.Linear(10, 3), nn.Conv2d(2, 5, 4, 2, 1), nn.ConvTranspose2d(6, 1, 4, 2, 1), nn.ReLU())
    # code 7 + linear max(10, 3) + conv max(2*16, 5*2*2) + transposed conv max(1*16, 6*2*2)
    assert reduction_terms(layers, code=7) == 7 + 10 + 32 + 24


def test_the_tolerance_sits_between_float32_rounding_and_tf32():
    generator = calibrated_generator()  # the check's own model
    terms, entries = reduction_terms(generator, 256), 3 * 64 * 64 * 3 * 128 * 128
    tolerance = jacobian_tolerance(terms, entries)
    eps = torch.finfo(torch.float32).eps
    assert tolerance == pytest.approx(eps * math.sqrt(2 * terms * 2 * math.log(entries)))
    assert 10 * eps < tolerance < 2**-10 / 5  # TF32 rounds at 2^-10: it could not pass


def test_table_has_one_line_per_step_with_its_key_figure():
    steps = {
        "jacobian": verdict({"seconds": 3.0, "relative_difference": 2e-7, "tolerance": 1e-4}, []),
        "smoke": verdict({"seconds": 30.0, "psnr": 6.89, "ssim": 0.001, "telea_psnr": 16.6, "precision": "bf16-mixed"},
                         []),
        "demo": verdict({"seconds": 5.0, "psnr": None, "ssim": None, "telea_psnr": None, "precision": None},
                        ["exit code 1"]),
        "bench": verdict({"seconds": 90.0, "ratios": {"train": 3.5, "pca": None}, "efficiency": {"train": 0.25}},
                         ["no ratio for pca"]),
        "broken": verdict({"seconds": 0.1}, ["RuntimeError: CUDA error"]),
    }
    lines = table({"steps": steps}).splitlines()
    assert len(lines) == 1 + len(steps)
    assert "ok" in lines[1] and "2.00e-07" in lines[1] and "1.00e-04" in lines[1]
    assert "PSNR 6.89" in lines[2] and "Telea 16.60" in lines[2] and "bf16-mixed" in lines[2]
    assert "FAIL" in lines[3] and "[exit code 1]" in lines[3]
    assert "train 3.50x (25% of peak)" in lines[4] and "pca -" in lines[4] and "FAIL" in lines[4]
    assert "FAIL" in lines[5] and "CUDA error" in lines[5]


def test_without_cuda_it_says_so_in_one_line_and_writes_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "gpu_check.json"
    # `python -m benchmarks.gpu_check --out FILE`: neither Lightning nor matplotlib (seconds on a small
    # CPU) loaded to say there is no GPU
    run, loaded = run_noting_imports("benchmarks.gpu_check", ["--out", str(out)], module=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    (said,) = run.stdout.splitlines()
    assert "no CUDA GPU here" in said and torch.__version__ in said and not {"lightning", "matplotlib"} & set(loaded)
    assert ("a CPU build" in said) == (torch.version.cuda is None)
    assert not out.exists() and list(tmp_path.iterdir()) == []
