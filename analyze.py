"""The paper's analyses from checkpoints: `python analyze.py ckpt_path=PATH [data=...] [analysis.*=...]`.

Writes, under the run folder, summary.json and every figure per checkpoint (in a sub-folder each
when there are several), and with several mask sizes the cross-mask figures F1 and F9.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from analysis import figures
from analysis.report import AnalysisSettings, analyse
from inpaint.data import to_float
from inpaint.checks import check_data, check_writable
from inpaint.errors import InpaintError, exit_on_user_error
from inpaint.hardware import resolve_accelerator
from inpaint.malloc import retain_freed_memory
from inpaint.module import InpaintingModule, load_checkpoint

os.environ.setdefault("INPAINT_ROOT", str(Path(__file__).resolve().parent))
log = logging.getLogger("analyze")


def load_all(cfg: DictConfig) -> dict[str, InpaintingModule]:
    """Every checkpoint named by ``ckpt_path``, checked against the config, keyed by a folder name."""
    paths = list(cfg.ckpt_path) if isinstance(cfg.ckpt_path, ListConfig) else [cfg.ckpt_path]
    models = {}
    for path in paths:
        model = load_checkpoint(path, cfg.device)
        size = model.hparams.mask_size
        if cfg.mask_size is not None and size != cfg.mask_size:
            raise InpaintError(f"checkpoint '{path}' has mask size {size}, but mask_size={cfg.mask_size} was asked for: drop mask_size or pass the right checkpoint.")
        if model.hparams.image_size != cfg.image_size:
            raise InpaintError(f"checkpoint '{path}' takes {model.hparams.image_size}px images, the data gives {cfg.image_size}px: set image_size={model.hparams.image_size}.")
        name = f"mask{size}_{Path(path).stem}"
        models[name if name not in models else f"{name}_{len(models)}"] = model
    return models


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA GPU, else ``cpu``; an explicit device must exist."""
    device = resolve_accelerator(device)
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise InpaintError(f"device={device!r} is not a device name: use auto, cpu, cuda or cuda:N.") from error
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise InpaintError(f"device={device}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here; use device=auto or cpu.")
    if parsed.type not in ("cpu", "cuda"):
        raise InpaintError(f"device={device}: the analyses run on cpu or cuda (they need float64, which {parsed.type} lacks).")
    return device


@exit_on_user_error
def run(cfg: DictConfig) -> None:
    check_data(OmegaConf.to_container(cfg.data, resolve=True), training=False)
    check_writable(cfg.paths.output_dir)
    cfg.device = resolve_device(str(cfg.device))
    log.info("Analyses on %s", cfg.device)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.retain_freed_memory:
        retain_freed_memory()
    models = load_all(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    settings = AnalysisSettings(**OmegaConf.to_container(cfg.analysis, resolve=True))
    out = Path(cfg.paths.output_dir)
    summaries = {}
    for name, model in models.items():
        batches = (to_float(images) for images in datamodule.holdout_dataloader())
        analysis = analyse(model.generator, batches, settings)
        folder = out / name if len(models) > 1 else out
        analysis.write(folder)
        summaries[name] = analysis.summary
        log.info("%s: hole PSNR %.2f dB, SSIM %.3f -> %s", name, analysis.summary["metrics"]["psnr"], analysis.summary["metrics"]["ssim"], folder)
    if len({m.hparams.mask_size for m in models.values()}) > 1:
        cross_mask_figures(models, summaries, datamodule, settings.examples, out)


def cross_mask_figures(models: dict[str, InpaintingModule], summaries: dict[str, dict], datamodule, examples: int, out: Path) -> None:
    """F1 (the same images inpainted by each model) and F9 (centre phi_p of each mask size)."""
    images = to_float(next(iter(datamodule.holdout_dataloader())))[:examples]
    panels = {}
    with torch.no_grad():
        for name, model in models.items():
            g = model.generator
            device_images = images.to(model.device)
            panels[f"{g.mask.size}x{g.mask.size}"] = (g.to_image(g.mask_input(device_images)).cpu(), g.inpaint(device_images).cpu())
    figures.save(figures.fig_inpainting(panels, images), out / "F1_inpainting_by_mask.png")
    curves = {s["mask_size"]: s["jacobian"]["phi_p"]["code"]["centre"] for s in summaries.values()}
    reference = {m: figures.AUTHORS_PHI[m]["centre"] for m in curves if m in figures.AUTHORS_PHI}
    p = next(iter(summaries.values()))["jacobian"]["p"]
    figures.save(figures.fig_phi_by_mask(p, curves, reference or None), out / "F9_phi_by_mask.png")


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
