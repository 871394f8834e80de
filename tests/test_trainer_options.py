"""The usual Trainer arguments are in the trainer config (no `+`), and the two Lightning applies only
under automatic optimisation, clipping and accumulation, act on this module's manual steps."""

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from inpaint.module import InpaintingModule

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(base_channels=8, bottleneck=64)
USUAL = {
    "max_steps": 300, "limit_train_batches": 0.5, "limit_val_batches": 2, "val_check_interval": 0.25,
    "gradient_clip_val": 1.0, "gradient_clip_algorithm": "value", "accumulate_grad_batches": 4, "num_sanity_val_steps": 0,
    "max_time": "00:01:00:00", "overfit_batches": 1, "fast_dev_run": True, "profiler": "simple", "strategy": "ddp",
}


def test_usual_trainer_arguments_override_without_plus():
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        defaults = compose("train").trainer
        cfg = compose("train", overrides=[f"trainer.{key}={value}" for key, value in USUAL.items()])
    for key, value in USUAL.items():
        assert cfg.trainer[key] == value, key
    signature = __import__("inspect").signature(L.Trainer.__init__).parameters
    for key in USUAL:  # the config's defaults are Lightning's own
        if key != "strategy":
            assert defaults[key] == signature[key].default, key
    assert defaults.accelerator == "auto" and defaults.precision == "auto"


def images(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(0))


def fit(model: InpaintingModule, batches: int, **trainer) -> tuple[L.Trainer, list[list[torch.Tensor]]]:
    """Fit on ``batches`` batches of 4, recording the gradients each optimiser stepped with (a step
    post-hook: Lightning runs its hooks, and so our clipping, inside ``optimizer.step()``)."""
    stepped: list[list[torch.Tensor]] = []

    class Record(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            for optimizer in trainer.optimizers:
                optimizer.register_step_post_hook(
                    lambda opt, *_: stepped.append([p.grad.clone() for g in opt.param_groups for p in g["params"] if p.grad is not None])
                )

    run = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[Record()], accelerator="cpu", precision="32-true", **trainer)
    run.fit(model, DataLoader(images(4 * batches), batch_size=4))
    return run, stepped


def l2_gradient(model: InpaintingModule, batch: torch.Tensor) -> list[torch.Tensor]:
    """The generator's gradient of the weighted L2 on one batch, in train mode, as training_step takes it."""
    g = model.generator.train()
    g.zero_grad(set_to_none=True)
    prediction = g(g.mask_input(batch.contiguous(memory_format=torch.channels_last)))
    ((prediction - g.from_image(model.mask.crop(batch))) ** 2 * model.loss_weights).mean().backward()
    return [p.grad.clone() for p in g.parameters()]


def test_accumulation_steps_every_n_batches_on_the_mean_gradient():
    torch.manual_seed(0)
    model = InpaintingModule(adv_weight=0.001, **SMALL)
    model.set_step_options(accumulate_grad_batches=3)
    run, stepped = fit(model, 7)
    assert run.global_step == 2 * 3 and len(stepped) == 6  # after batches 3, 6 and the last (7), generator and critic each

    torch.manual_seed(0)
    model = InpaintingModule(adv_weight=0.0, **SMALL)
    reference = InpaintingModule(adv_weight=0.0, **SMALL)
    reference.load_state_dict(model.state_dict())
    model.set_step_options(accumulate_grad_batches=2)
    _, stepped = fit(model, 2)
    first, second = (l2_gradient(reference, batch) for batch in images(8).split(4))
    assert len(stepped) == 1
    for got, a, b in zip(stepped[0], first, second):
        # halving is exact in binary floating point and the same kernels run in the same order, so
        # only the rounding of the final sum may differ: a few float32 eps of the largest entry
        torch.testing.assert_close(got, (a + b) / 2, rtol=0, atol=4 * torch.finfo(torch.float32).eps * a.abs().max().item())


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_reaches_both_optimisers_steps(algorithm):
    clip = 1e-4
    torch.manual_seed(0)
    _, unclipped = fit(InpaintingModule(adv_weight=0.001, **SMALL), 2)
    torch.manual_seed(0)
    model = InpaintingModule(adv_weight=0.001, **SMALL)
    model.set_step_options(gradient_clip_val=clip, gradient_clip_algorithm=algorithm)
    _, clipped = fit(model, 2)
    def largest(steps):  # the largest gradient entry each optimiser step was taken with
        return [max(g.abs().max().item() for g in step) for step in steps]

    assert len(clipped) == 4 and min(largest(unclipped)) > 10 * clip
    # by value every entry is within the clip; by norm the whole norm is, so every entry is too.
    # Clipping multiplies by clip / norm in float32: a relative rounding of a few eps at most
    assert max(largest(clipped)) <= clip * (1 + 4 * torch.finfo(torch.float32).eps)
