"""Against a real one-node SLURM cluster (slurmctld, slurmd, munged from Debian's packages), started
and stopped by tests/cluster/cluster.sh: `make test-cluster`. Skipped, saying why, where the cluster
cannot run (not root and SLURM not installed)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
SCRIPT = Path(__file__).resolve().parent / "cluster" / "cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")


def running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM's environment for commands against the started cluster; stopped afterwards, with a
    check that no daemon is left."""
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    if started.returncode == 77:
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stderr
    conf = started.stdout.strip().removeprefix("export SLURM_CONF=")
    yield {**os.environ, "SLURM_CONF": conf}
    subprocess.run([str(SCRIPT), "stop"], check=True, capture_output=True, timeout=120)
    assert [name for name in DAEMONS if running(name)] == []


def wait_for(job: str, env: dict, timeout: float = 120) -> str:
    """The job's final state, polled from squeue (empty once it has left the queue) and scontrol."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env, capture_output=True, text=True).stdout
        field = next((f.split("=", 1)[1] for f in state.split() if f.startswith("JobState=")), "")
        if field in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return field
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not end in {timeout} s")


def test_the_cluster_runs_a_two_task_job(cluster, tmp_path):
    assert all(running(name) for name in DAEMONS)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --ntasks=2\n#SBATCH --time=1\n"
                      f"#SBATCH --output={tmp_path}/%j.out\nsrun bash -c 'echo rank $SLURM_PROCID of $SLURM_NTASKS'\n")
    submitted = subprocess.run(["sbatch", "--parsable", str(script)], env=cluster, capture_output=True, text=True, check=True)
    job = submitted.stdout.strip().split(";")[0]
    assert wait_for(job, cluster) == "COMPLETED"
    lines = sorted((tmp_path / f"{job}.out").read_text().split("\n"))
    assert [line for line in lines if line] == ["rank 0 of 2", "rank 1 of 2"]
