"""The paper's analyses from checkpoints, and figures and comparisons from saved results.

    python analyze.py ckpt_path=RUN/checkpoints/last.ckpt     # analyse: RUN_DIR/analysis/
    python analyze.py 'ckpt_path=[A.ckpt,B.ckpt]'            # one sub-folder each, and RUN_DIR/comparison/
    python analyze.py replot=RUN                              # redraw RUN's figures from its saved results
    python analyze.py 'compare=[RUN_A,RUN_B]'                 # or a sweep folder: RUN_DIR/comparison/
    python analyze.py compare=SWEEP "reference='pca=none'"   # effects.csv: each setting against that one
    python analyze.py explore=RUN                             # any pixel's weight map, in the browser

A checkpoint inside a run folder is analysed with that run's data settings (its .hydra/config.yaml),
unless the command line sets data (``data=...`` replaces them, ``data.KEY=...`` changes one).
``replot`` and ``compare`` read only saved results: no checkpoint, no data, no model.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from analysis.settings import AnalysisSettings
from inpaint.errors import InpaintError, exit_on_user_error

# Only Hydra and the settings at import (`--help` and a refused command answer at once); torch,
# Lightning and the analyses are imported by the mode that needs them.
os.environ.setdefault("INPAINT_ROOT", str(Path(__file__).resolve().parent))
log = logging.getLogger("analyze")


def as_list(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, ListConfig) else [str(value)]


def run_folder(ckpt: Path) -> Path | None:
    """The training run a checkpoint belongs to (``RUN/checkpoints/X.ckpt`` with ``RUN/.hydra/``)."""
    run = ckpt.resolve().parent.parent
    return run if ckpt.resolve().parent.name == "checkpoints" and (run / ".hydra" / "config.yaml").is_file() else None


def data_for(ckpt: Path, cfg: DictConfig, command_line: list[str]) -> tuple[DictConfig, int, list[str] | None]:
    """(data config, image size, the run's overrides or None) for one checkpoint: the run's own data
    settings and image size when it has a run folder and the command line sets no ``data=``; the
    command line's ``data.KEY=VALUE`` on top."""
    from analysis.comparison import read_overrides

    run = run_folder(ckpt)
    if run is None or any(item.lstrip("+~").startswith("data=") for item in command_line):
        return cfg.data, cfg.image_size, None
    try:
        saved = OmegaConf.load(run / ".hydra" / "config.yaml")
        data = OmegaConf.create(OmegaConf.to_container(saved.data, resolve=True))
        image_size = int(saved.image_size)
    except Exception as error:  # an unreadable or unresolvable saved config
        raise InpaintError(f"cannot read the data settings of {run} ({type(error).__name__}: {error}): set data=... on the command line.") from error
    changes = [item.lstrip("+") for item in command_line if item.lstrip("+").startswith("data.")]
    if changes:
        trained_on = data.get("holdout", "test")
        data = OmegaConf.merge(data, OmegaConf.from_dotlist([c.removeprefix("data.") for c in changes]))
        if str(data.get("_target_", "")).endswith("CelebADataModule") and trained_on == "test" and data.get("holdout") == "authors":
            log.warning("%s trained with data.holdout=test, so images 120000-120999 (data.holdout=authors) were in its "
                        "training set: these numbers are on images it was trained on.", run)
    return data, image_size, read_overrides(run) or []


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA GPU, else ``cpu``; an explicit device must exist."""
    import torch

    from inpaint.hardware import resolve_accelerator

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


def analyse_checkpoints(cfg: DictConfig, settings: AnalysisSettings, out: Path) -> None:
    """Each checkpoint on its run's holdout: ``out/analysis/`` (one sub-folder per checkpoint when
    there are several, then their comparison in ``out/comparison/``). Every checkpoint is read (its
    tensors mapped, not loaded) and checked against the settings before Lightning is imported, so a
    wrong one is refused in seconds."""
    from inpaint.checkpoint import read_model_checkpoint
    from inpaint.checks import check_data

    paths = [Path(p).expanduser() for p in as_list(cfg.ckpt_path)]
    command_line = list(HydraConfig.get().overrides.task)
    plans = []
    for path in paths:  # every checkpoint's settings checked before any is analysed
        checkpoint = read_model_checkpoint(path, mmap=True)
        data, image_size, overrides = data_for(path, cfg, command_line)
        check_model_fits(checkpoint["hyper_parameters"], path, cfg.mask_size, image_size)
        check_data(OmegaConf.to_container(data, resolve=True), training=False)
        settings.check_image_size(image_size)
        plans.append((path, checkpoint, data, overrides))
    cfg.device = resolve_device(str(cfg.device))
    log.info("Analyses on %s", cfg.device)
    import lightning as L

    from analysis.comparison import compare
    from analysis.explorer_page import write_run_explorer
    from analysis.figures import run_figures, save_all
    from analysis.report import analyse
    from inpaint.module import module_from_checkpoint

    folders = []
    for path, checkpoint, data, overrides in plans:
        model = module_from_checkpoint(checkpoint, path, cfg.device)
        holes = model.hparams.mask_size or (model.hparams.get("mask") or {}).get("kind")  # 64, or freeform
        name = f"mask{holes}_{path.stem}"
        while len(paths) > 1 and out / "analysis" / name in folders:
            name += "_"
        folder = out / "analysis" / name if len(paths) > 1 else out / "analysis"
        L.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(data, mask=model.hparams.get("mask"))  # the run's holdout holes
        results = analyse(model.generator, datamodule.holdout_dataloader(), settings, mask=model.mask)
        results.summary["run"] = {"checkpoint": str(path), "overrides": overrides, "data": OmegaConf.to_container(data)}
        results.save(folder)
        if settings.figures:
            save_all(run_figures(results), folder)
        write_run_explorer(folder, model.generator, datamodule.holdout_dataloader(), model.mask, settings, results)
        folders.append(folder)
        log.info("%s: hole PSNR %.2f dB, SSIM %.3f -> %s", path, results.summary["metrics"]["psnr"], results.summary["metrics"]["ssim"], folder)
    if len(folders) > 1:
        compare(folders).write(out / "comparison")
        log.info("Comparison of %d checkpoints -> %s", len(folders), out / "comparison")


def check_model_fits(hparams: Mapping, path: Path, mask_size: int | None, image_size: int) -> None:
    """The checkpoint's mask (its ``hyper_parameters``) is the one asked for (``mask_size``, if any)
    and it takes the data's images."""
    size = hparams["mask_size"]
    if mask_size is not None and size != mask_size:
        raise InpaintError(f"checkpoint '{path}' has mask size {size}, but mask_size={mask_size} was asked for: drop mask_size or pass the right checkpoint.")
    if hparams.get("image_size", 128) != image_size:
        raise InpaintError(f"checkpoint '{path}' takes {hparams['image_size']}px images, the data gives {image_size}px: set image_size={hparams['image_size']}.")


def replot(source: str, out: Path, settings: AnalysisSettings) -> None:
    """Every figure of the run at ``source`` from its saved results, with its results, into
    ``out/analysis/`` (a sub-folder each when it holds several analyses). The findings are evaluated
    again from the saved per-image values, so results of an older version get today's claims."""
    from analysis.comparison import find_analyses
    from analysis.figures import run_figures, save_all
    from analysis.findings import findings
    from analysis.results import load_results

    start = time.perf_counter()
    folders = find_analyses([source])
    for folder in folders:
        results = load_results(folder)
        if "jacobian.linearity_error" in results.arrays:  # per-image values: saved since the findings
            results.summary["findings"] = findings(results, settings.resamples, settings.seed)
        target = out / "analysis" / folder.name if len(folders) > 1 else out / "analysis"
        results.save(target)
        save_all(run_figures(results), target)
    log.info("Redrew %d analysis(es) of %s into %s in %.1f s", len(folders), source, out / "analysis", time.perf_counter() - start)


def explore_checkpoint(target: Path) -> Path:
    """The checkpoint ``explore=`` names: itself, or a run folder's ``checkpoints/last.ckpt``."""
    if target.is_dir():
        ckpt = target / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise InpaintError(f"explore={target} holds no checkpoints/last.ckpt: pass the folder of a run that trained "
                               f"(logs/train/runs/RUN), or explore=PATH/TO/A.ckpt.")
        return ckpt
    if not target.is_file():
        raise InpaintError(f"explore={target} does not exist: pass a run folder (logs/train/runs/RUN) or a checkpoint.")
    return target


def read_image(path: Path, size: int):
    """An image file as a ``[3, size, size]`` float tensor in [0, 1]: its centred square, resized."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise InpaintError(f"explorer.image={path} cannot be read as an image ({error}): pass a PNG or JPEG file.") from error
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def explore(cfg: DictConfig, settings: AnalysisSettings) -> None:
    """Serve the weight-map explorer of a run (or a checkpoint) on ``explorer.host:explorer.port``
    until Ctrl-C: its holdout's first ``explorer.images`` images (each with its hole), or
    ``explorer.image`` with the first holdout image's hole."""
    from inpaint.checkpoint import read_model_checkpoint

    ckpt = explore_checkpoint(Path(str(cfg.explore)).expanduser())
    checkpoint = read_model_checkpoint(ckpt, mmap=True)
    data, image_size, _ = data_for(ckpt, cfg, list(HydraConfig.get().overrides.task))
    check_model_fits(checkpoint["hyper_parameters"], ckpt, cfg.mask_size, image_size)
    named = None if cfg.explorer.image is None else read_image(Path(str(cfg.explorer.image)).expanduser(), image_size)
    device = resolve_device(str(cfg.device))
    import hydra.utils
    import numpy as np

    from analysis.explorer import Scene
    from analysis.explorer_page import svd_payload
    from analysis.explorer_server import Explorer, serve
    from analysis.jacobian import AUTHORS_P
    from analysis.report import known_of
    from inpaint.data.datamodule import split_batch
    from inpaint.module import module_from_checkpoint

    model = module_from_checkpoint(checkpoint, ckpt, device)
    datamodule = hydra.utils.instantiate(data, mask=model.hparams.get("mask"))
    images, holes = [], []
    for batch in datamodule.holdout_dataloader():
        batch_images, known = split_batch(batch)
        images.extend(batch_images)
        holes.extend(known_of(batch_images, known, model.mask).split(1))
        if len(images) >= cfg.explorer.images:
            break
    names = [f"holdout image {i}" for i in range(min(len(images), cfg.explorer.images))]
    if named is not None:
        images, holes, names = [named], holes[:1], [Path(str(cfg.explorer.image)).name]
    ps = sorted(set(settings.ps) | set(AUTHORS_P))
    saved = run_folder(ckpt)
    svd = None
    if saved is not None and (saved / "analysis" / "results.npz").is_file():  # the spectrum, where the analyses saved it
        with np.load(saved / "analysis" / "results.npz") as arrays:
            if "svd.singular_values" in arrays.files:
                svd = svd_payload(arrays["svd.singular_values"], arrays["svd.input_vectors"], "float32")
    explorer = Explorer(names, lambda i: Scene(model.generator, images[i], holes[i], ps, settings.exemplar_patch), svd)
    server = serve(explorer, str(cfg.explorer.host), int(cfg.explorer.port))
    threading.Thread(target=explorer.warm, daemon=True).start()
    # Ctrl-C stops it even where the shell that started it ignores SIGINT (a job sent to the
    # background), and so does SIGTERM
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.default_int_handler)
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    log.info("Explorer of %s on %s: %s (Ctrl-C stops it)", ckpt, device, url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("Explorer stopped; it served %s at %s", ckpt, url)
    finally:
        server.server_close()


@exit_on_user_error
def run(cfg: DictConfig) -> None:
    modes = [key for key in ("ckpt_path", "replot", "compare", "explore") if cfg.get(key) is not None]
    if len(modes) != 1:
        raise InpaintError(
            "analyze.py needs exactly one of ckpt_path=PATH (analyse checkpoints), replot=RUN_DIR (redraw its figures), "
            f"compare=[RUN_A,RUN_B] (compare saved runs) or explore=RUN_DIR (any pixel's weight map in the browser); "
            f"got {modes or 'none'}."
        )
    if cfg.get("reference") is not None and cfg.get("compare") is None:
        raise InpaintError(f"reference={cfg.reference} is read by compare= only; compare the analysed runs afterwards: "
                           "python analyze.py 'compare=[RUN_A,RUN_B]' \"reference='SETTING'\"")
    from inpaint.checks import check_writable

    settings = AnalysisSettings.from_config(OmegaConf.to_container(cfg.analysis, resolve=True))
    check_writable(cfg.paths.output_dir)
    out = Path(cfg.paths.output_dir)
    if cfg.get("replot") is not None:
        return replot(str(cfg.replot), out, settings)
    if cfg.get("compare") is not None:
        from analysis.comparison import compare, effects_table

        comparison = compare(as_list(cfg.compare))
        comparison.write(out / "comparison", cfg.reference)
        log.info("Compared %d runs (%s) -> %s", len(comparison.runs), ", ".join(r.label for r in comparison.runs), out / "comparison")
        if len(comparison.settings) > 1:
            log.info("Against %s, over seeds (95 %% Welch intervals; effects.csv has every number):\n%s",
                     comparison.reference(cfg.reference), effects_table(comparison.effect_rows(cfg.reference)))
        return None
    if cfg.retain_freed_memory:
        from inpaint.malloc import retain_freed_memory

        retain_freed_memory()
    if cfg.get("explore") is not None:
        return explore(cfg, settings)
    return analyse_checkpoints(cfg, settings, out)


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
