"""The benchmark harness runs and reports what it claims (its ratios are not asserted: timing)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_pca_and_data_cases_write_their_json(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "pca,data", "--device", "cpu", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert {"device", "device_name", "torch", "threads", "pca", "data"} <= set(result)
    assert result["device"] == "cpu" and result["pca"]["ours_device"] == "cpu"
    assert result["pca"]["max_eigenvalue_rel_diff"] < 1e-8  # same eigenvalues as scikit-learn
    assert result["data"]["ratio"] > 1 and result["data"]["cache_images_per_s"] > 0


def test_workers_run_the_training_and_jacobian_jobs_in_their_own_processes():
    from benchmarks import Worker
    from benchmarks.cases import BEST, REFERENCE

    tiny = {"base_channels": 8, "bottleneck": 64}
    with Worker() as reference, Worker(retain_freed_memory=True) as best:
        assert reference("fit", settings=REFERENCE, width=tiny, batch=8, steps=3, warmup=1) > 0
        assert best("fit", settings=BEST, width=tiny, batch=8, steps=3, warmup=1) > 0
        assert best("jacobian", width=tiny) > 0
        assert reference("loop", width=tiny, rows=[0, 5, 12287]) > 0
    with pytest.raises(RuntimeError, match="exited with code 1 during job 'no-such-job'"):
        Worker()("no-such-job")


@pytest.mark.parametrize("device, says", [("cuda:0", "sees no CUDA device"), ("tpu", "not a device name"), ("meta", "run on cpu or cuda")])
def test_a_device_the_benchmarks_cannot_use_is_refused_in_one_line(device, says):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--device", device], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr
