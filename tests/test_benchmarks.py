"""The benchmark harness runs and reports what it claims (its ratios are not asserted: timing)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_pca_and_data_cases_write_their_json(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "pca,data", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert {"device", "torch", "threads", "pca", "data"} <= set(result)
    assert result["pca"]["max_eigenvalue_rel_diff"] < 1e-8  # same eigenvalues as scikit-learn
    assert result["data"]["ratio"] > 1 and result["data"]["cache_images_per_s"] > 0
