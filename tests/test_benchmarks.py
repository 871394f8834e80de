"""The benchmark harness runs and reports what it claims (its ratios and efficiencies are not
bounded: they are timings, on a shared host; the peak is measured at another moment than the work,
so a load change between the two can push an efficiency past 1)."""

import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from inpaint import hardware
from inpaint.pca import fit_pca

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed: importable from the root (as under `python -m pytest`)
from benchmarks import Worker, cases  # noqa: E402
TINY = {"base_channels": 8, "bottleneck": 64}


@pytest.fixture(scope="module")
def workers():
    """One worker process of each kind (``retain_freed_memory`` False, True) for the whole file: each
    new one imports torch and Lightning again, about 4 s."""
    with Worker() as plain, Worker(retain_freed_memory=True) as retaining:
        yield {False: plain, True: retaining}


@pytest.fixture
def shared_workers(workers, monkeypatch):
    """The cases' workers are this file's: a case's two sides may share one process here (the
    benchmarks give each its own, so that each side's heap stays its own: timings, not checked here)."""
    monkeypatch.setattr(cases, "Worker", lambda retain_freed_memory=False: contextlib.nullcontext(workers[retain_freed_memory]))


def measured(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_the_quick_pca_case_writes_its_json(tmp_path, monkeypatch):
    from benchmarks.__main__ import main

    monkeypatch.setitem(cases.PCA, True, {"images": 300, "repeats": 1})  # the Gram-matrix path, as the quick size's 1000
    out = tmp_path / "bench.json"
    main(["--quick", "--only", "pca", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert {"device", "device_name", "capabilities", "torch", "threads", "pca"} <= set(result) and "data" not in result
    caps = result["capabilities"]
    assert caps["device"] == "cpu" and isinstance(caps["native_bf16"], bool) and isinstance(caps["cpu_isa"], str)
    assert result["device"] == "cpu" and result["pca"]["ours_device"] == "cpu"
    assert result["pca"]["max_eigenvalue_rel_diff"] < 1e-8  # same eigenvalues as scikit-learn
    assert measured(result["pca"]["efficiency"]) and measured(result["pca"]["peak_matmul_flops_per_s"])


def test_the_data_case_times_both_loaders_from_jpegs_and_from_their_caches(monkeypatch):
    monkeypatch.setitem(cases.DATA, True, {"images": 128, "photos": 64, "repeats": 2})
    data = cases.data(True, "cpu")  # timings on a shared host: reported, not bounded (docs/performance.md states the measured ratios)
    assert (data["images"], data["folder_images"]) == (128, 64)
    assert all(measured(data[key]) for key in ("ratio", "cache_images_per_s", "folder_ratio", "folder_cache_images_per_s"))
    assert "efficiency" not in data and data["efficiency_note"]  # I/O: no peak to compare with


def test_workers_run_the_training_and_jacobian_jobs_in_their_own_processes(workers):
    best_on_cpu = cases.best_settings("cpu")
    reference, best = workers[False], workers[True]
    assert reference("fit", settings=cases.REFERENCE, width=TINY, batch=8, steps=3, warmup=1) > 0
    assert best("fit", settings=best_on_cpu, width=TINY, batch=8, steps=3, warmup=1) > 0
    flops = [reference("step_flops", settings=cases.REFERENCE, width=TINY, batch=b) for b in (2, 4)]
    ours = best("step_flops", settings=best_on_cpu, width=TINY, batch=2)
    assert best("jacobian", width=TINY) > 0
    assert reference("loop", width=TINY, rows=[0, 5, 12287]) > 0
    assert flops[0] > 0 and flops[1] == 2 * flops[0]  # linear in the batch: the case counts at a small one and scales
    assert ours == flops[0]  # the same FLOPs: a 4x4 convolution on the 4x4 map is the dense bottleneck's matrix product
    with pytest.raises(RuntimeError, match="exited with code 1 during job 'no-such-job'"):
        Worker()("no-such-job")


def test_train_and_jacobian_cases_report_their_efficiency(monkeypatch, shared_workers):
    monkeypatch.setitem(cases.TRAIN, True, {"width": TINY, "steps": 2, "warmup": 1, "repeats": 1})
    monkeypatch.setitem(cases.JACOBIAN, True, {"width": TINY, "loop_rows": 2, "repeats": 1, "ours_repeats": 1})
    train = cases.train(True, "cpu")
    assert train["width"] == TINY and train["steps"] == 2  # a quick file says what it ran
    assert train["best_settings"]["precision"] == cases.precision_choice("cpu").precision
    assert train["reference_dtype"] == "float32" and set(train["peak_matmul_flops_per_s"]) >= {"float32", train["best_dtype"]}
    for side in ("reference", "best"):
        assert train[f"{side}_flops_per_image"] > 0
        achieved = train[f"{side}_flops_per_image"] * train[f"{side}_images_per_s"]
        assert math.isclose(train[f"{side}_achieved_flops_per_s"], achieved)
        assert measured(train[f"{side}_efficiency"])
    jacobian = cases.jacobian_case(True, "cpu")
    assert jacobian["width"] == TINY and measured(jacobian["efficiency"])
    assert math.isclose(jacobian["efficiency"], jacobian["compute_bound_seconds"] / jacobian["full_seconds"])


def test_the_pca_head_case_prices_the_head_against_the_same_model_without_it(monkeypatch, shared_workers):
    monkeypatch.setitem(cases.TRAIN, True, {"width": TINY, "steps": 2, "warmup": 1, "repeats": 1})
    head = cases.pca_head(True, "cpu")
    assert head["k"] == 256 and head["width"] == TINY
    assert measured(head["with_head_images_per_s"]) and measured(head["without_head_images_per_s"])
    assert math.isclose(head["ratio"], head["with_head_images_per_s"] / head["without_head_images_per_s"])
    settings = cases.best_settings("cpu")
    with cases.Worker() as worker:  # the head's side does run the head: its two products per channel, forward and backward
        plain = worker("step_flops", settings=settings, width=TINY, batch=2)
        with_head = worker("step_flops", settings={**settings, "pca_components": 256}, width=TINY, batch=2)
    assert with_head - plain >= 2 * 2 * 3 * 4096 * 256 * 2  # at least the forward's 2 products x 2 FLOPs x batch 2


def test_the_unet_case_sets_its_throughput_beside_the_context_encoders(monkeypatch, shared_workers):
    monkeypatch.setitem(cases.TRAIN, True, {"width": TINY, "steps": 2, "warmup": 1, "repeats": 1})
    monkeypatch.setattr(cases, "DEMO_WIDTH", TINY)
    unet = cases.unet(True, "cpu")
    assert unet["settings"]["adv_weight"] == 0 and unet["dtype"] == str(
        hardware.autocast_dtype(cases.precision_choice("cpu").precision)).removeprefix("torch.")
    for side in ("context_encoder", "unet"):
        assert measured(unet[f"{side}_images_per_s"]) and measured(unet[f"{side}_efficiency"])
    # the U-Net's counted step: its forward and backward, more than the Context Encoder's at one width
    assert unet["unet_flops_per_image"] > unet["context_encoder_flops_per_image"] > 0
    assert math.isclose(unet["ratio"], unet["unet_images_per_s"] / unet["context_encoder_images_per_s"])


@pytest.mark.parametrize("device, native_bf16, precision", [("cpu", True, "bf16-mixed"), ("cpu", False, "32-true"),
                                                           ("cuda", True, "bf16-mixed"), ("cuda", False, "16-mixed")])
def test_ours_takes_the_precision_the_project_resolves_for_the_device(monkeypatch, device, native_bf16, precision):
    caps = hardware.Capabilities(device=device, name="fake", native_bf16=native_bf16, cpu_isa="AVX512" if native_bf16 else "AVX2",
                                 cpu_flags=("avx512_bf16",) if native_bf16 and device == "cpu" else (),
                                 cuda_capability=("8.0" if native_bf16 else "7.0") if device == "cuda" else None)
    monkeypatch.setattr(hardware, "capabilities", lambda where: caps)
    assert hardware.resolve_precision("auto", caps).precision == precision
    assert cases.best_settings(device) == {**cases.BEST, "precision": precision}


def test_pca_flops_count_the_products_fit_pca_runs():
    x = torch.randn(50, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        fitted = fit_pca(x.split(20))  # N <= D: the Gram path, whose products FlopCounterMode sees
    assert cases.pca_flops(50, 80, fitted.rank) == counter.get_total_flops() + 10 * 50**3 // 3  # + eigh, which it does not


@pytest.mark.parametrize("device, says", [("cuda:0", "sees no CUDA device"), ("tpu", "not a device name"), ("meta", "run on cpu or cuda")])
def test_a_device_the_benchmarks_cannot_use_is_refused_in_one_line(device, says, capsys):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "cuda:0":  # the command as a user types it, once: exit status 2, one line
        run = subprocess.run([sys.executable, "-m", "benchmarks", "--device", device], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=False)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr
        return
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exited:  # argparse's error: usage and the message on stderr, status 2
        main(["--device", device])
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_the_explorer_case_times_a_click_at_each_width_against_its_budget(monkeypatch):
    monkeypatch.setattr(cases, "DEMO_WIDTH", TINY)
    monkeypatch.setattr(cases, "PAPER_WIDTH", TINY)
    result = cases.explorer(True, "cpu")
    for name, budget in (("context_encoder_demo", 0.3), ("context_encoder_paper", 1.0), ("unet_demo", 0.3)):
        click = result[name]
        assert click["budget_seconds"] == budget and measured(click["click_seconds"]) and click["rows_flops"] > 0
        assert math.isclose(click["ratio"], budget / click["click_seconds"]) and measured(click["efficiency"])
    assert result["ratio"] == min(result[name]["ratio"] for name in ("context_encoder_demo", "context_encoder_paper", "unet_demo"))
    assert result["efficiency"] == result["context_encoder_paper"]["efficiency"]
