"""Against a real one-node SLURM cluster (slurmctld, slurmd, munged from Debian's packages), started
and stopped by tests/cluster/cluster.sh: `make test-cluster`. Skipped, saying why, where the cluster
cannot run (not root and SLURM not installed)."""

import os
import re
import subprocess
import time
from pathlib import Path

import lightning as L
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


class SlowSteps(L.Callback):
    """Sleeps after every training batch: the job's length in wall-clock time, as SLURM's time limit
    counts it, the same on any machine (+callbacks.slow._target_=test_cluster.SlowSteps)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class SlowFitEnd(L.Callback):
    """The first time training ends, sleeps in ``on_fit_end`` (where the analyses run) past the
    allocation's time-limit warning, so SLURM's signal arrives there once; ``marker`` says it did."""

    def __init__(self, seconds: float, marker: str) -> None:
        self.seconds, self.marker = seconds, Path(marker)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.marker.exists():
            self.marker.touch()
            time.sleep(self.seconds)

pytestmark = pytest.mark.cluster
SCRIPT = Path(__file__).resolve().parent / "cluster" / "cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
# the pre-emption test's run: 400 steps of at least 0.3 s, two minutes of training or more, in
# allocations of two minutes whose last one is SLURM's warning: three allocations at the least
PREEMPTED_STEPS, STEP_SECONDS = 400, 0.3


def running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True, check=False).returncode == 0


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
        state = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env, capture_output=True, text=True, check=False).stdout
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


# The smoke model on two CPU tasks over gloo, asking for no GPU (SLURM refuses one where it has none).
CPU_JOB = ["--gpus-per-node=0", "--cpus-per-task=1", "--mem=4G", "--nodes=1", "--ntasks-per-node=2"]
CPU_RUN = ["experiment=smoke", "trainer.accelerator=cpu", "trainer.devices=2", "logger=wandb",
           "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]


# the analyses moved after SlowFitEnd (callbacks run in their config's order), so the signal it waits
# for comes before the analyses start and the finished run holds them once
ANALYSIS_AFTER_SLOW_END = ["callbacks.analysis=null", "+callbacks.analysis_last._target_=analysis.callbacks.HoldoutAnalysis",
                           "+callbacks.analysis_last._convert_=all", "+callbacks.analysis_last.settings=${analysis}"]


def submit(env: dict, *options: str, args: list[str]) -> str:
    """sbatch docs/train.sbatch (the docs' own file) from the repository, as a user would; the job id."""
    done = subprocess.run(["sbatch", "--parsable", *options, "docs/train.sbatch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().split(";")[0]


def job_field(job: str, env: dict, name: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env, capture_output=True, text=True, check=False).stdout
    return next((f.split("=", 1)[1] for f in shown.split() if f.startswith(f"{name}=")), "")


def test_slurm_s_own_time_limit_signal_preempts_twice_and_the_job_finishes_once(cluster, tmp_path):
    """A two-minute time limit with SIGUSR1 a minute before it, on a run whose training needs two such
    allocations or more, and whose first end of training is held in the end-of-fit analyses until
    the signal comes there too: each signal saves an hpc checkpoint and requeues the job (same id, same folder);
    each requeued job resumes at the saved step in the same W&B run; the job ends at the requested
    step with one analysis, and its output holds no traceback."""
    env = {**cluster, "INPAINT_RUNS": str(tmp_path / "runs"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": str(ROOT / "tests")}
    output = tmp_path / "slurm-%j.out"
    job = submit(env, *CPU_JOB, "--time=2", "--signal=USR1@60", f"--output={output}",
                 args=[*CPU_RUN, f"trainer.max_steps={PREEMPTED_STEPS}", "trainer.max_epochs=-1", "data.train_size=1024",
                       "+callbacks.slow._target_=test_cluster.SlowSteps", f"+callbacks.slow.seconds={STEP_SECONDS}",
                       "+callbacks.slow_end._target_=test_cluster.SlowFitEnd", "+callbacks.slow_end.seconds=150",
                       f"+callbacks.slow_end.marker={tmp_path / 'slept'}", *ANALYSIS_AFTER_SLOW_END])
    assert wait_for(job, env, timeout=900) == "COMPLETED"
    run = tmp_path / "runs" / job
    log = Path(str(output).replace("%j", job)).read_text()
    assert "Traceback" not in log, log[-3000:]
    restarts = int(job_field(job, env, "Restarts"))
    hpc = sorted(run.glob("hpc_ckpt_*.ckpt"))
    assert restarts >= 2 and len(hpc) >= 2, f"{restarts} requeues, {len(hpc)} hpc checkpoints"
    steps = [torch.load(p, map_location="cpu", weights_only=True)["global_step"] for p in hpc]
    assert steps == sorted(steps) and 0 < steps[0] < PREEMPTED_STEPS
    # (Lightning logs each line twice: to its console handler and through logging's)
    resumed = [int(n) for n in dict.fromkeys(re.findall(r"Restored all states from the checkpoint at \S*hpc_ckpt_(\d+)\.ckpt", log))]
    assert resumed == list(range(1, restarts + 1))  # every requeued job resumed from the newest hpc checkpoint
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == PREEMPTED_STEPS
    assert log.count("Analyses written to") == 1 and (run / "analysis" / "summary.json").is_file()
    # once in the end-of-fit analyses (SlowFitEnd holds the first finished training there past the warning)
    assert log.count("time-limit signal outside the training loop") == 1 and "time-limit signal in the training loop" in log
    ids = {path.name.rsplit("-", 1)[1] for path in (run / "wandb").glob("offline-run-*")}
    assert len(ids) == 1  # one W&B run across the requeues
