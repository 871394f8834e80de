"""Distributed training and sweeps: DDP on the CPU with the analyses, bias-free batch norm
synchronised across processes, the SLURM trainer and launcher, submitit and Optuna sweeps, and
run folders of their own for runs started in the same second."""

import csv
import importlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero as lightning_rank_zero
from lightning_utilities.core import rank_zero as utilities_rank_zero
from omegaconf import OmegaConf, open_dict

from inpaint.data.faces import FacesDataModule
from inpaint.errors import InpaintError
from inpaint.models import BiasFreeBatchNorm
from inpaint.module import InpaintingModule
from tolerances import rel_tol

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "callbacks.analysis=null"]
RUN_FOLDER = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}")  # DATE_TIME with microseconds
# offline W&B; no SLURM variables, should the tests themselves run inside a SLURM job
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
ENV |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def train(*overrides: str) -> subprocess.CompletedProcess:
    """Run train.py as a user would; a generous timeout, as the machine may be shared."""
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], check=False, cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def composed(*overrides: str):
    train_script()  # registers train.py's config resolvers, as running it does
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# DDP on the CPU, end to end


@pytest.mark.slow
def test_ddp_cpu_smoke_shards_the_data_and_analyses_once(tmp_path):
    """Two gloo processes: each trains on half the batches; one run folder, one set of
    checkpoints, one analysis (18 figures, logged once), one offline W&B run; with the PCA head,
    the basis fitted once and held by both ranks alike."""
    result = train("experiment=smoke", "trainer=ddp_cpu", f"paths.log_dir={tmp_path}",
                   "callbacks.rich_progress_bar=null", "model.pca_head=true", "model.pca_components=16")
    runs = list((tmp_path / "smoke" / "runs").iterdir())
    assert len(runs) == 1 and RUN_FOLDER.fullmatch(runs[0].name)  # both ranks agreed on the folder
    run = runs[0]
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran, and logged into the same folder
    logs = {rank: (run / name).read_text() for rank, name in ((0, "train.log"), (1, "train_ddp_process_1.log"))}
    assert logs[0].count("PCA basis: top 16") == 1 and "PCA basis: top" not in logs[1]  # fitted by rank 0 alone
    digests = {rank: re.search(rf"PCA basis on rank {rank}: sha256 (\w+)", text).group(1) for rank, text in logs.items()}
    assert digests[0] == digests[1]

    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.ckpt", "epoch_000.ckpt"}
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # 64 images / (16 x 2 processes) = 2 batches x 2 optimisers; 8 on one process

    assert (result.stdout + result.stderr).count("Analyses written to") == 1  # the console of both ranks
    assert "".join(p.read_text() for p in run.glob("*.log")).count("Analyses written to") == 1  # their log files
    assert len(list((run / "analysis").glob("*.png"))) == 18 and (run / "analysis" / "summary.json").is_file()
    assert [p.name for p in (run / "samples").iterdir()] == ["epoch_000.png"]

    wandb_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    assert len(list(wandb_runs[0].glob("files/media/images/analysis/*.png"))) == 18
    assert "holdout/psnr" in result.stdout


@pytest.mark.slow
def test_ddp_cpu_trains_the_unet_on_random_blocks_and_analyses_once(tmp_path):
    """Two gloo processes, the U-Net on random-block holes: each rank draws the holes of its own
    shard's items, (seed, epoch, index) keyed, so the ranks train on different holes; one analysis."""
    result = train("experiment=smoke", "model=unet", "mask=random_block", "trainer=ddp_cpu", f"paths.log_dir={tmp_path}",
                   "callbacks.rich_progress_bar=null")
    (run,) = (tmp_path / "smoke" / "runs").iterdir()
    assert (run / "train_ddp_process_1.log").is_file()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["mask"]["kind"] == "random_block"  # 64 / (16 x 2): 2 batches
    assert (result.stdout + result.stderr).count("Analyses written to") == 1
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert summary["architecture"] == "PartialConvUNet" and summary["homogeneity"]["max"] < 1e-5
    assert len(list((run / "analysis").glob("*.png"))) == 17


# ---------------------------------------------------------------------------------------------
# Bias-free batch norm under DDP


def _synced_norm(rank: int, folder: Path) -> None:
    """One of two processes: the synced layer on this process's part of the batch (3 or 5 images)."""
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=2)
    data = torch.load(folder / "data.pt")
    part = slice(0, 3) if rank == 0 else slice(3, None)
    x = data["x"][part].clone().requires_grad_()
    bn = BiasFreeBatchNorm(4, momentum=1.0)  # running_var = the batch variance
    bn.sync = True
    y = bn(x)
    (y * data["upstream"][part]).sum().backward()
    saved = {"var": bn.running_var, "y": y.detach(), "grad": x.grad, "weight_grad": bn.weight.grad}
    torch.save(saved, folder / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_synced_bias_free_batch_norm_equals_one_process_on_the_whole_batch(tmp_path):
    """Two processes with different data (and batch sizes) get the variance, outputs and input
    gradients of one process on the concatenated batch; the weight gradients sum to its own."""
    torch.manual_seed(0)
    x = torch.randn(8, 4, 5, 5) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + 2.0
    x[3:] *= 3  # the second process's images vary more: its local variance is far from the global one
    upstream = torch.randn_like(x)
    torch.save({"x": x, "upstream": upstream}, tmp_path / "data.pt")
    mp.spawn(_synced_norm, args=(tmp_path,), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    whole = BiasFreeBatchNorm(4, momentum=1.0)
    xs = x.clone().requires_grad_()
    y = whole(xs)
    (y * upstream).sum().backward()
    # float32 sums over the batch x pixels (8 x 5 x 5 per channel), by parts and all-reduced against
    # at once: other orders. Gradients can cancel to near zero, so they are compared at their largest.
    tol = rel_tol(torch.float32, 8 * 5 * 5)
    for r in ranks:
        torch.testing.assert_close(r["var"], whole.running_var, rtol=tol, atol=0)
    local = BiasFreeBatchNorm(4, momentum=1.0)
    local(x[3:])
    assert not torch.allclose(local.running_var, whole.running_var, rtol=0.1)  # unsynced would differ
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=tol, atol=0)
    grad, weight_grad = xs.grad, whole.weight.grad
    torch.testing.assert_close(torch.cat([r["grad"] for r in ranks]), grad, rtol=tol,
                               atol=tol * grad.abs().max().item())
    torch.testing.assert_close(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], weight_grad, rtol=tol,
                               atol=tol * weight_grad.abs().max().item())


def _module_under(sync_batchnorm: bool, devices: int, adv_weight: float = 0.0):
    """An InpaintingModule after ``setup("fit")`` by a DDP trainer (built, not launched)."""
    module = InpaintingModule(base_channels=8, bottleneck=16, adv_weight=adv_weight)
    strategy = DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto"
    module.trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, sync_batchnorm=sync_batchnorm,
                               logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.setup("fit")
    return module


@pytest.mark.parametrize("sync_batchnorm, devices, synced", [(True, 2, True), (False, 2, False), (True, 1, False)])
def test_trainer_sync_batchnorm_switches_the_bias_free_norms(sync_batchnorm, devices, synced):
    module = _module_under(sync_batchnorm, devices)
    norms = [m for m in module.modules() if isinstance(m, BiasFreeBatchNorm)]
    assert norms and all(bn.sync is synced for bn in norms)
    assert not any("sync" in key for key in module.state_dict())  # never saved in checkpoints


def test_sync_batchnorm_with_a_critic_on_cpus_is_refused_clearly():
    with pytest.raises(InpaintError, match=r"sync_batchnorm=true on CPUs.*adv_weight=0"):
        _module_under(True, 2, adv_weight=0.001)


SYNC_SCRIPT = """
import sys
import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from inpaint.models import BiasFreeBatchNorm
from inpaint.module import InpaintingModule


class FirstNorm(L.Callback):
    # the generator's first batch norm after the first step, one file per rank
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        norm = next(m for m in module.generator.modules() if isinstance(m, BiasFreeBatchNorm))
        torch.save(norm.running_var, f"{sys.argv[1]}/rank{trainer.global_rank}.pt")


L.seed_everything(0)
module = InpaintingModule(base_channels=8, bottleneck=16, adv_weight=0.0, channels_last=False)
for norm in module.modules():
    if isinstance(norm, BiasFreeBatchNorm):
        norm.momentum = 1.0  # running_var = the batch variance
trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo"),
                    sync_batchnorm=True, max_steps=1, limit_val_batches=0, use_distributed_sampler=False,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[FirstNorm()])
rank = trainer.global_rank
images = torch.load(f"{sys.argv[1]}/images.pt")[rank * 4 : rank * 4 + 4]  # each rank its own images
trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(images, batch_size=4))
"""


@pytest.mark.slow
def test_trainer_sync_batchnorm_gives_both_processes_the_whole_batch_variance(tmp_path):
    """Through Lightning: Trainer(sync_batchnorm=True) on 2 processes with different images gives
    the generator's bias-free batch norm the statistic of one process on all 8 images."""
    images = torch.rand(8, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    images[4:] *= 0.3  # the second process's images are darker: different local statistics
    torch.save(images, tmp_path / "images.pt")
    (tmp_path / "script.py").write_text(SYNC_SCRIPT)
    result = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path)], check=False, cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    def first_norm_after_step(batch: torch.Tensor) -> torch.Tensor:
        L.seed_everything(0)
        module = InpaintingModule(base_channels=8, bottleneck=16, adv_weight=0.0, channels_last=False)
        norm = next(m for m in module.generator.modules() if isinstance(m, BiasFreeBatchNorm))
        norm.momentum = 1.0
        module.generator.train()(module.generator.mask_input(batch))
        return norm.running_var

    whole = first_norm_after_step(images)
    # float32 sums over the 8 images x 32 x 32 pixels of the first norm's input (two stride-2
    # convolutions in), by two processes and an all-reduce against one process at once
    tol = rel_tol(torch.float32, 8 * 32 * 32)
    torch.testing.assert_close(ranks[0], whole, rtol=tol, atol=0)
    torch.testing.assert_close(ranks[1], whole, rtol=tol, atol=0)
    assert not torch.allclose(first_norm_after_step(images[:4]), whole, rtol=0.1)  # unsynced would differ


# ---------------------------------------------------------------------------------------------
# The PCA basis under DDP: fitted on rank zero only, broadcast to the other ranks

BASIS_SCRIPT = """
import sys

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

import inpaint.module
from inpaint.data.faces import FacesDataModule
from inpaint.module import InpaintingModule

fitted = []  # batches this process streamed into a PCA


class Counting(inpaint.module.CovarianceAccumulator):
    def update(self, vectors):
        fitted.append(len(vectors))
        super().update(vectors)


inpaint.module.CovarianceAccumulator = Counting


class Basis(L.Callback):
    # each rank's basis as training starts, and how many crops this rank fitted it on
    def on_train_start(self, trainer, module):
        basis = module.generator.basis
        torch.save({"components": basis.components, "mean": basis.mean, "count": basis.count, "fitted": sum(fitted)},
                   f"{sys.argv[1]}/rank{trainer.global_rank}.pt")


L.seed_everything(0)
module = InpaintingModule(mask_size=16, base_channels=8, bottleneck=16, adv_weight=0.0, pca_head=True, pca_components=8)
data = FacesDataModule(train_size=32, val_size=8, holdout_size=8, batch_size=4, num_workers=0)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(process_group_backend="gloo"), max_steps=1,
                    limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=[Basis()])
trainer.fit(module, datamodule=data)
"""


@pytest.mark.slow
def test_under_ddp_rank_zero_fits_the_basis_and_every_rank_trains_with_it(tmp_path):
    """Two gloo processes: rank zero streams all 32 training crops into the PCA, rank one none, and
    both start training with the same components, bit for bit, those of one process fitting alone."""
    (tmp_path / "script.py").write_text(BASIS_SCRIPT)
    result = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path)], check=False, cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["fitted"] == 32 and ranks[1]["fitted"] == 0
    for key in ("components", "mean", "count"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    alone = InpaintingModule(mask_size=16, base_channels=8, bottleneck=16, adv_weight=0.0, pca_head=True, pca_components=8)
    L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(
        alone, datamodule=FacesDataModule(train_size=32, val_size=8, holdout_size=8, batch_size=4, num_workers=0))
    assert alone.generator.basis.count.item() == 32
    torch.testing.assert_close(ranks[1]["components"], alone.generator.basis.components, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# SLURM: trainer=slurm (DDP + SLURMEnvironment with auto-requeue) and hydra/launcher=slurm

WAIT = 600  # seconds: a generous deadline for a subprocess on a slow, shared machine (never a measure of speed)


class PauseUntil(L.Callback):
    """Loaded by train.py from this file (PYTHONPATH=tests/): after batch ``at_batch`` of epoch
    ``epoch``, touch ``marker`` and wait until ``until`` exists, so that a test can signal the run
    at a known step, however fast or slow the machine trains. Harmless when ``until`` exists already."""

    def __init__(self, epoch: int, at_batch: int, marker: str, until: str) -> None:
        self.epoch, self.at_batch, self.marker, self.until = epoch, at_batch, marker, until

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.at_batch):
            return
        Path(self.marker).touch()
        deadline = time.monotonic() + WAIT
        while not Path(self.until).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def slurm_env(tasks: int, rank: int, job_id: str = "4242") -> dict:
    """What srun sets for task ``rank`` of ``tasks`` on one node."""
    return {"SLURM_NTASKS": str(tasks), "SLURM_NTASKS_PER_NODE": str(tasks), "SLURM_NNODES": "1", "SLURM_NODEID": "0",
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": "train",
            "SLURM_NODELIST": "127.0.0.1"}


def test_slurm_trainer_composes_with_the_auto_requeue_plugin():
    cfg = composed("trainer=slurm", "trainer.num_nodes=2", "trainer.devices=8")
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true" and cfg.trainer.num_nodes == 2
    (plugin,) = instantiate(cfg.trainer.plugins)
    assert isinstance(plugin, SLURMEnvironment)
    assert plugin.auto_requeue is True and plugin.requeue_signal == signal.SIGUSR1


@pytest.mark.parametrize("option", ["slurm", "ddp"])
def test_under_srun_the_trainer_takes_its_ranks_from_slurm_and_handles_sigusr1(option, monkeypatch, tmp_path):
    """trainer=slurm by its plugin, trainer=ddp by Lightning's detection: SLURM's ranks, and a
    SIGUSR1 handler (checkpoint + requeue) while fitting."""
    for key, value in slurm_env(tasks=4, rank=3).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    cfg = composed(f"trainer={option}", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=2",
                   "trainer.precision=32-true", f"trainer.default_root_dir={tmp_path}")
    # the Trainer makes this process rank 3 for all of Lightning: undo it after the test, or later
    # tests' loggers (rank-zero only) would silently write nothing
    for module in (lightning_rank_zero, utilities_rank_zero):
        monkeypatch.setattr(module.rank_zero_only, "rank", module.rank_zero_only.rank)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    before = signal.getsignal(signal.SIGUSR1)
    trainer._signal_connector.register_signal_handlers()
    try:
        assert signal.getsignal(signal.SIGUSR1) not in (before, signal.SIG_DFL, signal.SIG_IGN)
    finally:
        trainer._signal_connector.teardown()


@pytest.mark.slow
def test_sigusr1_under_slurm_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    """One SLURM task (trainer=slurm): SIGUSR1 mid-epoch writes hpc_ckpt_1.ckpt and calls
    `scontrol requeue JOB`; killed then, the job started again in the same folder resumes from it,
    in the same W&B run.
    The run waits after batch 1 of epoch 1 until the test has sent the signal, so it lands at a known
    step whatever the machine's speed; the job acts on it at the next batch's end (batch 2), a point
    every rank reaches (inpaint.faults.RequeueAnytime)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    requeued = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {requeued}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {**ENV, **slurm_env(tasks=1, rank=0), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "PYTHONPATH": str(ROOT / "tests")}
    run, paused, signalled = tmp_path / "run", tmp_path / "paused", tmp_path / "signalled"
    pause = ["+callbacks.pause._target_=test_distributed.PauseUntil", "+callbacks.pause.epoch=1",
             "+callbacks.pause.at_batch=1", f"+callbacks.pause.marker={paused}", f"+callbacks.pause.until={signalled}"]
    args = [sys.executable, str(ROOT / "train.py"), "experiment=smoke", "trainer=slurm", "trainer.accelerator=cpu",
            "trainer.devices=1", "trainer.precision=32-true", "data.train_size=480", "trainer.max_epochs=2",
            f"hydra.run.dir={run}", "logger=wandb", *QUIET[1:], *pause]
    job = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT
        while not paused.exists():  # epoch 0 and batches 0 and 1 of epoch 1 done; the run waits
            assert job.poll() is None and time.monotonic() < deadline, "the job ended before batch 1 of epoch 1"
            time.sleep(0.05)
        job.send_signal(signal.SIGUSR1)  # what SLURM sends ahead of the time limit
        signalled.touch()  # the run goes on, to batch 2's end
        while not requeued.exists():  # scontrol comes after the checkpoint
            assert job.poll() is None and time.monotonic() < deadline, "no requeue before the job ended"
            time.sleep(0.05)
    finally:
        job.kill()  # SLURM's SIGKILL at the time limit
        job.wait()
    assert requeued.read_text().split() == ["requeue", "4242"]
    saved = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=False)
    assert saved["global_step"] == 60 + 3 * 2  # epoch 0 (30 batches x 2 optimisers), then batches 0 to 2

    # the requeued job (the same command; its pause returns at once, the signal having been sent)
    result = subprocess.run(args, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {run / 'hpc_ckpt_1.ckpt'}" in result.stdout + result.stderr
    # ... in the same W&B run: two offline sessions of one run id (the killed job's and the requeued one's)
    sessions = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(sessions) == 2 and {name.rsplit("-", 1)[1] for name in sessions} == {saved["wandb_run_id"]}
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 120


def test_slurm_launcher_asks_one_task_per_gpu_and_lightnings_requeue_signal():
    cfg = composed("hydra/launcher=slurm", "trainer=slurm", "trainer.devices=4", "trainer.num_nodes=2")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    assert launcher["additional_parameters"] == {"signal": "USR1@120", "requeue": True}
    assert launcher["max_num_timeout"] == 0  # submitit's own USR2 requeue would restart from scratch


def test_slurm_launcher_asks_for_gpus_only_when_the_trainer_uses_them():
    """A CPU partition has no GPUs to give, and SLURM refuses a job that asks for one."""
    for accelerator, gpus in (("cpu", 0), ("gpu", 2), ("cuda", 2), ("auto", 2)):
        cfg = composed("hydra/launcher=slurm", "trainer=slurm", "trainer.devices=2", f"trainer.accelerator={accelerator}")
        assert OmegaConf.to_container(cfg.hydra.launcher, resolve=True)["gpus_per_node"] == gpus, accelerator


def test_submitits_sacct_warnings_are_dropped_and_its_other_messages_kept(caplog):
    train_script()  # as hydra/launcher=slurm finds it: train.py imported first
    logger = logging.getLogger("submitit")
    with caplog.at_level(logging.WARNING, logger="submitit"):
        logger.warning("Call #3 - Bypassing sacct error Command '['sacct']' returned non-zero exit status 1., status may be inaccurate.")
        logger.warning("Job 12 has failed")
    assert [record.getMessage() for record in caplog.records] == ["Job 12 has failed"]


# ---------------------------------------------------------------------------------------------
# Sweeps: submitit on this machine, Optuna


@pytest.mark.slow
def test_submitit_local_sweep_runs_two_jobs_with_their_own_outputs(tmp_path):
    train("-m", "hydra/launcher=local", "experiment=smoke", "mask=center16,center64", f"paths.log_dir={tmp_path}",
          *QUIET)
    (sweep,) = (tmp_path / "smoke" / "multiruns").iterdir()
    assert RUN_FOLDER.fullmatch(sweep.name)
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # each job in a submitit process of its own
    for job, size in (("0", 16), ("1", 64)):
        assert f"mask=center{size}" in yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        ckpt = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["hyper_parameters"]["mask_size"] == size and ckpt["global_step"] == 8
        assert "Run folder: " + str(sweep / job) in (sweep / job / "train.log").read_text()


def train_script():
    """train.py as a module, as Hydra imports it for its callbacks."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("train")


@pytest.mark.slow
def test_local_sweep_jobs_train_under_ddp_each_with_its_own_processes(tmp_path):
    """Two jobs one after the other, each with two gloo processes: each job starts a process group
    and an extra process of its own (which runs that job, not the sweep), in the job's folder."""
    result = train("-m", "experiment=smoke", "mask=center16,center64", "trainer=ddp_cpu", f"hydra.sweep.dir={tmp_path}",
                   "logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null")
    out = result.stdout + result.stderr
    assert out.count("Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2") == 2  # a group per job,
    assert out.count("Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # a rank 1 per job
    assert out.count("Launching 2 jobs locally") == 1  # the extra processes ran no sweep of their own
    assert {p.name for p in tmp_path.iterdir()} == {"0", "1", "multirun.yaml", "comparison"}  # the sweep's own comparison
    for job, size in (("0", 16), ("1", 64)):
        run = tmp_path / job
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["hyper_parameters"]["mask_size"] == size and ckpt["global_step"] == 4  # half the batches each
        assert json.loads((run / "analysis" / "summary.json").read_text())["mask_size"] == size
        child = (run / "train_ddp_process_1.log").read_text()  # rank 1 of this job, with this job's config
        assert f"Run folder: {run}" in child and f"mask:\n  kind: center\n  size: {size}\n" in child
        assert "".join(p.read_text() for p in run.glob("*.log")).count("Analyses written to") == 1  # rank zero's


def test_a_sweep_jobs_extra_ddp_processes_run_the_job_in_its_folder():
    """The command of a sweep job's rank 1: train.py with the job's overrides (swept values included)
    as a single run in the job's folder, without the sweep's own overrides, and it composes."""
    folder = "/tmp/sweep, 1=x/0"  # a folder that needs quoting in an override
    command = train_script().ddp_child_command(
        1, ["experiment=smoke", "mask=center16", "seed=3"],
        ["hydra.sweep.dir=/tmp/sweep", "hydra.mode=MULTIRUN", "hydra/launcher=local", "hydra.launcher.timeout_min=5",
         "hydra.job.chdir=true"], folder)
    assert command[:2] == [sys.executable, str(ROOT / "train.py")] and "-m" not in command
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(command[2:])}
    assert not any(key.startswith(("hydra.sweep", "hydra/launcher", "hydra.launcher")) for key in parsed)
    assert parsed["hydra.run.dir"] == folder and parsed["hydra.job.name"] == "train_ddp_process_1"
    cfg = composed(*command[2:])
    assert cfg.hydra.mode == RunMode.RUN and cfg.hydra.run.dir == folder and cfg.hydra.output_subdir is None
    assert (cfg.mask.size, cfg.seed, cfg.task_name, cfg.hydra.job.chdir) == (16, 3, "smoke", True)


def test_a_sweep_job_leaves_no_process_group_or_ddp_variables_to_the_next(monkeypatch, tmp_path):
    """Within a sweep job, Lightning's command for the extra processes is the job's own; afterwards the
    job's process group is gone and the variables Lightning set are as before the job."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    module = train_script()
    cfg = composed("experiment=smoke", "mask=center64", "hydra.mode=MULTIRUN")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = str(tmp_path / "0"), str(ROOT)
        cfg.hydra.overrides.task = ["experiment=smoke", "mask=center64"]
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    for key in ("MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()

    @module.ddp_in_sweep_jobs
    def job():
        command, cwd = subprocess_script._hydra_subprocess_cmd(local_rank=1)
        os.environ.update(MASTER_PORT=str(free_port()), NODE_RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        dist.init_process_group("gloo", rank=0, world_size=1)
        torch.set_num_threads(1)
        return command, cwd

    command, cwd = job()
    assert f'hydra.run.dir="{tmp_path / "0"}"' in command and "mask=center64" in command and cwd == str(ROOT)
    assert not dist.is_initialized()
    assert os.environ["MASTER_ADDR"] == "127.0.0.1"
    assert not {"MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE"} & set(os.environ)
    assert torch.get_num_threads() == threads
    assert subprocess_script._hydra_subprocess_cmd.__module__.startswith("lightning")  # Lightning's rule again


def test_optuna_search_composes_and_every_searched_key_exists():
    cfg = composed("hparams_search=optuna", "experiment=smoke")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.mode == RunMode.MULTIRUN
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/psnr"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{key} is searched but is not a config key"
    sampler = instantiate(sweeper.sampler)
    assert type(sampler).__name__ == "TPESampler"


def test_optuna_search_maximises_what_train_returns(tmp_path):
    """Two trials on the smoke experiment: Optuna's best value is the better trial's val/psnr."""
    train("hparams_search=optuna", "experiment=smoke", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
          "test=false", *QUIET)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    searched = {"model.lr_g", "model.lr_d", "model.beta1", "model.adv_weight", "model.ring_weight"}
    assert set(results["best_params"]) == searched
    psnr = []
    for job in ("0", "1"):
        with open(tmp_path / job / "csv" / "version_0" / "metrics.csv") as f:
            psnr.append([float(row["val/psnr"]) for row in csv.DictReader(f) if row["val/psnr"]][-1])
    assert results["best_value"] == pytest.approx(max(psnr))


# ---------------------------------------------------------------------------------------------
# Run folders


def test_runs_composed_in_the_same_second_get_folders_of_their_own():
    first, second = composed(), composed()
    for key in ("run.dir", "sweep.dir"):
        a, b = (OmegaConf.select(cfg.hydra, key) for cfg in (first, second))
        assert a != b  # a few milliseconds apart: the same second, different folders
        assert RUN_FOLDER.fullmatch(Path(a).name)
