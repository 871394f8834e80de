"""The Lightning callback that runs every analysis on the holdout set when training ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from analysis.figures import to_rgb_array
from analysis.report import AnalysisSettings, analyse
from inpaint.data import ImageDataModule, to_float
from inpaint.images import log_image
from inpaint.module import InpaintingModule

log = logging.getLogger(__name__)


class HoldoutAnalysis(L.Callback):
    """At the end of ``fit``, on rank zero only: the global (PCA) and local (Jacobian) analyses and
    the classical baselines on the data module's holdout split, with the final weights.

    Writes ``RUN_DIR/analysis/summary.json`` and one PNG per figure, and logs every figure to every
    image-capable logger (``analysis/<figure>``) and the headline numbers as metrics.
    ``settings`` are :class:`~analysis.report.AnalysisSettings` fields; ``folder`` defaults to
    ``RUN_DIR/analysis``.
    """

    def __init__(self, settings: Mapping | None = None, folder: str | None = None) -> None:
        self.folder = folder
        self.settings = AnalysisSettings(**(settings or {}))

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: InpaintingModule) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, ImageDataModule):
            log.warning("HoldoutAnalysis needs an ImageDataModule with a holdout split; skipped.")
            return
        start = time.perf_counter()
        batches = (to_float(images) for images in datamodule.holdout_dataloader())
        analysis = analyse(pl_module.generator, batches, self.settings)
        folder = Path(self.folder or Path(trainer.default_root_dir) / "analysis")
        analysis.write(folder)
        step = trainer.global_step
        for name, figure in analysis.figures.items():
            log_image(trainer.loggers, f"analysis/{name}", to_rgb_array(figure), step)
        metrics = headline(analysis.summary)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step)
        log.info("Analyses written to %s in %.1f s", folder, time.perf_counter() - start)


def headline(summary: dict) -> dict[str, float]:
    """The numbers worth a chart from a summary: hole metrics, baselines, A_y y = f(y), phi_p."""
    metrics = {f"analysis/{k}": v for k, v in summary["metrics"].items() if isinstance(v, float)}
    for name, values in summary.get("baselines", {}).items():
        metrics.update({f"analysis/{name}_{k}": v for k, v in values.items()})
    for key in ("homogeneity", "net_bias"):
        if key in summary:
            metrics[f"analysis/{key}_max"] = summary[key]["max"]
    jac = summary.get("jacobian")
    if jac:
        p = jac["p"].index(0.25)
        metrics.update({f"analysis/phi_0.25_{name}": v[p] for name, v in jac["phi_p"]["code"].items() if v[p] is not None})
    return metrics
