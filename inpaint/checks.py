"""Checks of a run's settings that need no data and no model.

train.py and analyze.py call these on the composed config (as plain dicts) before anything is
read or built, so a setting no run can use fails at once with one message saying what to do,
instead of minutes later or deep inside Lightning. Each raises :class:`InpaintError`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from inpaint.errors import InpaintError
from inpaint.masks import SUPPORTED_SIZES, CenterMask, hole_sampler_from
from inpaint.models.unet import check_settings as check_unet_settings

# Lightning's precision names (lightning.pytorch.Trainer(precision=...)).
PRECISIONS = (
    "auto", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
    "transformer-engine", "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16,
)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


ARCHITECTURES = ("context_encoder", "unet")


def check_model(model: dict, image_size: int) -> None:
    """The generator, its holes and its optimisers: architecture, mask kind, size and fit, depth,
    widths, learning rates, betas, weights."""
    architecture = model.get("architecture", "context_encoder")
    if architecture not in ARCHITECTURES:
        raise InpaintError(f"model.architecture={architecture!r} is not an architecture here: use model=bias_free (the Context "
                           f"Encoder, context_encoder) or model=unet (the partial-convolution U-Net, unet).")
    mask = model.get("mask") or {}
    kind = mask.get("kind", "center")
    mask_size = model["mask_size"]
    if architecture == "context_encoder":
        if kind != "center":
            raise InpaintError(
                f"model=bias_free (the Context Encoder) with mask={kind}: its decoder predicts the centred square only. "
                f"Use mask=center16, center32 or center64 with it, or model=unet for {kind} holes."
            )
        if mask_size not in SUPPORTED_SIZES:
            raise InpaintError(f"mask size {mask_size} has no decoder: choose mask=center16, center32 or center64.")
        if not _whole(image_size) or image_size < 32 or image_size % 32:
            raise InpaintError(f"image_size must be a positive multiple of 32 (the encoder halves it 5 times), not {image_size}.")
    else:
        _check_unet(model, image_size)
    if mask_size is not None:
        CenterMask(image_size, mask_size, model.get("overlap"))  # does the mask fit the image?
    hole_sampler_from(mask, image_size)  # a random kind's settings (area range, counts, widths)
    names = ("base_channels", "bottleneck") if architecture == "context_encoder" else ("base_channels",)
    for name in names:
        if not _whole(model[name]) or model[name] < 1:
            raise InpaintError(f"model.{name} must be a positive integer, not {model[name]!r}.")
    for name in ("lr_g", "lr_d"):
        if not model[name] > 0:
            raise InpaintError(f"model.{name} must be positive, not {model[name]} (Pathak: 2e-4).")
    for name in ("beta1", "beta2"):
        if not 0 <= model[name] < 1:
            raise InpaintError(f"model.{name} must lie in [0, 1), not {model[name]} (Pathak: 0.5 and 0.999).")
    if model.get("lr_schedule", "constant") not in ("constant", "cosine"):
        raise InpaintError(f"model.lr_schedule must be constant or cosine, not {model['lr_schedule']!r}.")
    if not 0 <= model.get("warmup_fraction", 0) < 1:
        raise InpaintError(f"model.warmup_fraction must lie in [0, 1), not {model['warmup_fraction']}.")
    if not 0 < model.get("bn_momentum", 0.1) <= 1:
        raise InpaintError(f"model.bn_momentum must lie in (0, 1], not {model['bn_momentum']} (PyTorch's default: 0.1).")
    check_pca(model)
    if not 0 <= model["adv_weight"] <= 1:
        raise InpaintError(f"model.adv_weight must lie in [0, 1], not {model['adv_weight']} (Pathak: 0.001; 0 = pure L2).")


def _check_unet(model: dict, image_size: int) -> None:
    """The U-Net: its depth must fit the image and reach across a hole of half its side; the critic and
    the PCA extension judge or project the Context Encoder's centre square, so they are refused."""
    check_unet_settings(image_size, model["base_channels"], model.get("depth", 5))
    if model.get("adv_weight", 0) > 0:
        raise InpaintError(
            f"model.adv_weight={model['adv_weight']} with model=unet: the critic judges the Context Encoder's centre patch. "
            f"Train the U-Net by the L2 alone: model.adv_weight=0 (conf/model/unet.yaml's default)."
        )
    if model.get("pca_weight", 0) or model.get("pca_head"):
        raise InpaintError(
            "the PCA regulariser and head (model.pca_weight, model.pca_head, pca=...) act on the Context Encoder's centre "
            "square: use them with model=bias_free, or set pca=none with model=unet."
        )


def check_pca(model: dict) -> None:
    """The PCA regulariser and projection head: a weight >= 0, k within the crop's dimension, and
    no combination that cannot work."""
    weight, head, k = model.get("pca_weight", 0.0), model.get("pca_head", False), model.get("pca_components", 32)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise InpaintError(f"model.pca_weight must be a number >= 0 (0: no PCA regulariser), not {weight!r}.")
    if not weight and not head:
        return
    dim = model["mask_size"] ** 2
    if not _whole(k) or not 1 <= k <= dim:
        raise InpaintError(
            f"model.pca_components={k!r}: a {model['mask_size']} x {model['mask_size']} crop has between 1 and {dim} "
            f"principal components (one per luma pixel); choose a whole number in that range."
        )
    if weight and head:
        raise InpaintError(
            f"model.pca_weight={weight} with model.pca_head=true: the head's prediction lies in the span of the "
            "components, so the regulariser would be 0. Use one of them (model.pca_weight=0, or model.pca_head=false)."
        )
    if head and model.get("pca_centred") and model.get("bias_free", True):
        raise InpaintError(
            "model.pca_centred=true with model.pca_head=true adds the crops' mean, an offset the bias-free model cannot "
            "have (f(0) would not be 0): keep model.pca_centred=false, or use model=original."
        )


def check_data(data: dict, training: bool = True, analyses: bool = True) -> None:
    """Batch and split sizes: batch norm trains on at least two images a batch, training needs at
    least one batch, the analyses at least two holdout images."""
    batch = data["batch_size"]
    if not _whole(batch) or batch < (2 if training else 1):
        raise InpaintError(
            f"data.batch_size={batch!r}: batch norm needs at least 2 images per batch and per device; use 2 or more (the paper: 64)."
        )
    train = data.get("train_size")
    if training and _whole(train) and train < batch:
        raise InpaintError(
            f"data.train_size={train} is smaller than one batch (data.batch_size={batch}), so there is nothing to train on: "
            f"raise data.train_size or lower data.batch_size."
        )
    holdout = data.get("holdout_size")
    if analyses and _whole(holdout) and holdout < 2:
        raise InpaintError(f"data.holdout_size={holdout}: the analyses need at least 2 holdout images (the paper: 1000).")


def check_trainer(trainer: dict, model: dict | None = None) -> None:
    """Precision, device, length, clipping and accumulation, and SLURM's plugin only where SLURM runs
    the job. ``model`` (its settings) adds the checks that depend on both."""
    precision = trainer.get("precision", "auto")
    if precision not in PRECISIONS:
        raise InpaintError(
            f"trainer.precision={precision!r} is not a precision Lightning knows: use auto (chosen from the hardware), "
            f"32-true, bf16-mixed (CPUs and GPUs with bf16) or 16-mixed (older GPUs)."
        )
    if str(trainer.get("accelerator")) in ("gpu", "cuda") and not torch.cuda.is_available() and not torch.backends.mps.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise InpaintError(
            f"trainer.accelerator={trainer['accelerator']} but torch {torch.__version__} ({build}) sees no GPU here: "
            f"use the default trainer (accelerator auto: the GPU when there is one) or trainer=cpu."
        )
    slurm = any(str(plugin.get("_target_", "")).endswith("SLURMEnvironment") for plugin in trainer.get("plugins") or [])
    if slurm and "SLURM_NTASKS" not in os.environ:
        raise InpaintError(
            "trainer=slurm runs only inside a SLURM job step (`srun python train.py ...` in an sbatch script): "
            "there are no SLURM variables here. Use trainer=ddp (or cpu, gpu) outside SLURM."
        )
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if epochs is not None and (not _whole(epochs) or (epochs < 1 and epochs != -1)):
        raise InpaintError(f"trainer.max_epochs must be a positive integer (or -1: no limit), not {epochs!r}.")
    if not _whole(steps) or (steps < 1 and steps != -1):
        raise InpaintError(f"trainer.max_steps must be a positive integer (or -1: no limit), not {steps!r}.")
    if epochs == -1 and steps == -1 and trainer.get("max_time") is None:
        raise InpaintError("trainer.max_epochs=-1 and trainer.max_steps=-1: the run would never end. Set one of them (or trainer.max_time).")
    accumulate = trainer.get("accumulate_grad_batches", 1)
    if not _whole(accumulate) or accumulate < 1:
        raise InpaintError(f"trainer.accumulate_grad_batches must be a positive integer, not {accumulate!r}.")
    clip, algorithm = trainer.get("gradient_clip_val"), trainer.get("gradient_clip_algorithm")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0):
        raise InpaintError(f"trainer.gradient_clip_val must be a number >= 0 (or null: no clipping), not {clip!r}.")
    if algorithm not in (None, "norm", "value"):
        raise InpaintError(f"trainer.gradient_clip_algorithm must be norm or value (or null: norm), not {algorithm!r}.")
    if clip and model is not None and model.get("fused_adam") and str(precision).startswith("16"):
        raise InpaintError(
            f"trainer.gradient_clip_val={clip} with trainer.precision={precision} and fused Adam: the fused optimiser unscales "
            f"fp16 gradients inside its step, after clipping would have run. Set model.fused_adam=false (or precision 32-true / bf16-mixed)."
        )


def check_writable(folder: str | Path) -> None:
    """The folder exists (made if need be, as the run would) and takes a file: better now than when
    the first checkpoint is saved, hours into training."""
    path = Path(folder).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise InpaintError(
            f"cannot write the output folder {path} ({error.strerror or error}): "
            f"point paths.output_dir (or paths.log_dir) somewhere writable."
        ) from error
