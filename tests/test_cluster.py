"""Against a real one-node SLURM cluster (slurmctld, slurmd, munged from Debian's packages), started
and stopped by tests/cluster/cluster.sh: `make test-cluster`. Skipped, saying why, where the cluster
cannot run (not root and SLURM not installed)."""

import os
import re
import signal
import subprocess
import sys
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

class RankPids(L.Callback):
    """Writes ``folder/rank-N.pid`` (N: the global rank) as training starts, so a test can signal one task."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_start(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank-{trainer.global_rank}.pid").write_text(str(os.getpid()))


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


def wait_for_file(path: Path, job: str, env: dict, timeout: float = 300) -> None:
    """Until ``path`` exists; fails at once if the job has left the running states."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        state = job_field(job, env, "JobState")
        assert state in ("PENDING", "CONFIGURING", "RUNNING"), f"job {job} is {state}, {path.name} never appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.5)


# a long run (400 batches of 0.3 s at the least) whose tasks write their pids
LONG_RUN = [*CPU_RUN, "trainer.max_steps=800", "trainer.max_epochs=-1", "data.train_size=1024", "callbacks.analysis=null",
            "+callbacks.slow._target_=test_cluster.SlowSteps", f"+callbacks.slow.seconds={STEP_SECONDS}",
            "+callbacks.pids._target_=test_cluster.RankPids"]
KILLED_WITHIN = 60  # seconds from a task's death to the job's end; without srun's --kill-on-bad-exit, DDP's 30-minute timeout


def test_a_task_killed_ends_the_job_at_once_and_its_output_names_the_rank(cluster, tmp_path):
    """SIGKILL to rank 1 mid-training (as the kernel's out-of-memory killer would): srun ends the
    other task (docs/train.sbatch: --kill-on-bad-exit=1) instead of leaving rank 0 waiting for it in
    the next all-reduce, and the job's output says which task died and how."""
    env = {**cluster, "INPAINT_RUNS": str(tmp_path / "runs"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": str(ROOT / "tests")}
    output = tmp_path / "slurm.out"
    job = submit(env, *CPU_JOB, "--time=10", f"--output={output}", args=[*LONG_RUN, f"+callbacks.pids.folder={tmp_path / 'pids'}"])
    wait_for_file(tmp_path / "pids" / "rank-1.pid", job, env)
    time.sleep(2)  # inside the training loop: past the first batches' collectives
    os.kill(int((tmp_path / "pids" / "rank-1.pid").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    assert wait_for(job, env, timeout=KILLED_WITHIN) == "FAILED"
    log = output.read_text()
    assert re.search(r"task 1: Killed", log), log[-3000:]
    assert time.monotonic() - killed < KILLED_WITHIN


def test_scancel_mid_training_leaves_a_last_checkpoint_that_ckpt_path_last_resumes(cluster, tmp_path):
    """scancel in the middle of an epoch: last.ckpt (written through a rename, so whole whenever the
    kill lands) loads, and a job submitted with ckpt_path=last resumes from it. (srun forces the
    step's end at once here, before the SIGTERM checkpoint of the step reached is written: the run
    resumes from the last epoch's end.)"""
    logs = tmp_path / "logs"
    env = {**cluster, "INPAINT_RUNS": str(logs / "smoke" / "runs"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": str(ROOT / "tests")}
    job = submit(env, *CPU_JOB, "--time=10", f"--output={tmp_path / 'first.out'}",
                 args=[*LONG_RUN, f"+callbacks.pids.folder={tmp_path / 'pids'}"])
    last = logs / "smoke" / "runs" / job / "checkpoints" / "last.ckpt"
    wait_for_file(last, job, env)  # the first epoch's end (32 batches)
    time.sleep(3)  # into the second epoch
    subprocess.run(["scancel", job], env=env, check=True)
    assert wait_for(job, env) == "CANCELLED"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step >= 64  # the first epoch's end at least (2 optimiser steps a batch x 32 batches)
    resumed = submit(env, *CPU_JOB, "--time=10", f"--output={tmp_path / 'resumed.out'}",
                     args=[*CPU_RUN, "ckpt_path=last", f"paths.log_dir={logs}", f"trainer.max_steps={step + 8}",
                           "trainer.max_epochs=-1", "data.train_size=1024", "callbacks.analysis=null", "test=false"])
    assert wait_for(resumed, env, timeout=300) == "COMPLETED"
    assert f"Resuming from {last} at step {step}" in (tmp_path / "resumed.out").read_text()
    again = torch.load(logs / "smoke" / "runs" / resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert again["global_step"] == step + 8


def test_a_sweep_through_the_slurm_launcher_runs_each_point_as_a_job_then_compares_them(cluster, tmp_path):
    """``python train.py -m hydra/launcher=slurm ...``: submitit submits one SLURM job a sweep point
    (here one CPU task each, so both run at once on the 2-CPU node), waits for them and the sweep
    ends with its comparison; this cluster has no accounting (no sacct), and nothing says so."""
    sweep = tmp_path / "sweep"
    env = {**cluster, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=slurm", "trainer=slurm", "trainer.accelerator=cpu", "trainer.devices=1",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
         "experiment=smoke", "mask=center16,center64", f"hydra.sweep.dir={sweep}", "logger=csv",
         "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "sacct" not in output and "Traceback" not in output, output[-3000:]
    jobs = sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(jobs) == 2  # SLURM's ids of a job array's two tasks, ARRAYJOB_TASK
    assert all(job_field(job, env, "JobState") == "COMPLETED" for job in jobs)
    for point, size in (("0", 16), ("1", 64)):
        ckpt = torch.load(sweep / point / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["hyper_parameters"]["mask_size"] == size
        assert (sweep / point / "analysis" / "summary.json").is_file()
    rows = (sweep / "comparison" / "runs.csv").read_text().splitlines()
    assert len(rows) == 3  # the header and the two runs
