"""The Lightning callback that runs every analysis on the holdout set when training ends, and what
the loggers get from an analysis."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from analysis.explorer_page import write_run_explorer
from analysis.figures import run_figures, save_all
from analysis.findings import table
from analysis.report import analyse
from analysis.results import ARRAYS, SUMMARY, Results
from analysis.settings import AnalysisSettings
from inpaint.data import ImageDataModule
from inpaint.images import log_image, read_png, takes_images
from inpaint.module import InpaintingModule

log = logging.getLogger(__name__)


class HoldoutAnalysis(L.Callback):
    """At the end of ``fit``, on rank zero only: the global (PCA) and local (Jacobian) analyses and
    the classical baselines on the data module's holdout split, with the final weights.

    Writes ``RUN_DIR/analysis/`` (``summary.json``, ``results.npz``, one PNG per figure drawn
    from those results unless ``settings.figures`` is false, and ``explorer.html``, the weight
    maps of the first image's hole pixels to click through) and hands everything to the loggers
    (:func:`log_results`). ``settings`` are :class:`~analysis.report.AnalysisSettings` fields;
    ``folder`` defaults to ``RUN_DIR/analysis``.
    """

    def __init__(self, settings: Mapping | None = None, folder: str | None = None) -> None:
        self.folder = folder
        self.settings = AnalysisSettings.from_config(settings)
        # False in a requeued SLURM job (train.py): a complete analysis of the same step is kept, not redone
        self.rerun = True

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: InpaintingModule) -> None:
        folder = Path(self.folder or Path(trainer.default_root_dir) / "analysis")
        if not self.rerun and completed_step(folder) == trainer.global_step:
            log.info("Analyses of step %d already complete in %s (written before this job was requeued): kept",
                     trainer.global_step, folder)
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, ImageDataModule):
            log.warning("HoldoutAnalysis needs an ImageDataModule with a holdout split; skipped.")
            return
        start = time.perf_counter()
        results = analyse(pl_module.generator, datamodule.holdout_dataloader(), self.settings, mask=pl_module.mask)
        (folder / COMPLETE).unlink(missing_ok=True)
        results.save(folder)
        figures = run_figures(results) if self.settings.figures else {}
        pictures = dict(zip(figures, save_all(figures, folder), strict=True))
        explorer = write_run_explorer(folder, pl_module.generator, datamodule.holdout_dataloader(), pl_module.mask,
                                      self.settings, results)
        log_results(trainer.loggers, results, pictures, folder, trainer.global_step, explorer)
        (folder / COMPLETE).write_text(f"{trainer.global_step}\n")  # last: everything above is written and logged
        log.info("Analyses written to %s in %.1f s", folder, time.perf_counter() - start)
        if results.summary.get("findings"):
            log.info("Findings (verdict, claim, value [95 %% interval] vs threshold):\n%s", table(results.summary["findings"]))


# in an analysis folder: the training step whose analyses are all written and logged
COMPLETE = ".complete"


def completed_step(folder: Path) -> int | None:
    """The step of the complete analysis in ``folder`` (its :data:`COMPLETE` marker), or None."""
    try:
        return int((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def log_results(loggers: list[Logger], results: Results, pictures: Mapping[str, Path], folder: Path, step: int,
                explorer: Path | None = None) -> None:
    """Every figure, its saved PNG (``pictures[name]``: the same pixels as the files, and no figure
    drawn twice), to every image-capable logger (``analysis/<figure>``) and the headline numbers as
    metrics to all; to W&B also the curves as tables with line charts (so sweep runs overlay in its
    UI), the findings as a table, the weight-map ``explorer`` page as an HTML panel, the headline
    numbers in the run summary, and ``summary.json`` / ``results.npz`` as files of the run."""
    if takes_images(loggers):
        for name, path in pictures.items():
            log_image(loggers, f"analysis/{name}", read_png(path), step)
    metrics = headline(results.summary)
    for logger in loggers:
        logger.log_metrics(metrics, step)
        if isinstance(logger, WandbLogger):
            import wandb

            run = logger.experiment
            for key, (columns, rows, x, y, stroke) in curve_tables(results.summary).items():
                table = wandb.Table(columns=columns, data=rows)
                run.log({key: table, f"{key}_chart": wandb.plot.line(table, x, y, stroke=stroke, title=key)})
            if results.summary.get("findings"):
                columns = ["id", "claim", "value", "low", "high", "direction", "threshold", "verdict", "authors"]
                rows = [[e["id"], e["claim"], e["value"], *(e["interval"] or [None, None]), e["direction"], e["threshold"],
                         e["verdict"], e["authors"]] for e in results.summary["findings"]]
                run.log({"analysis/findings": wandb.Table(columns=columns, data=rows)})
            if explorer is not None:
                with open(explorer) as page:
                    run.log({"analysis/explorer": wandb.Html(page, inject=False)})
            run.summary.update(metrics)
            for path in (folder / SUMMARY, folder / ARRAYS):
                run.save(str(path), base_path=str(folder.parent), policy="now")


def curve_tables(summary: dict) -> dict[str, tuple[list[str], list[list], str, str, str | None]]:
    """The analysis curves as long tables, ``{key: (columns, rows, x, y, stroke)}``: phi_p of each
    named pixel (authors' code definition), energy captured (both variants), |cos| of the
    eigenvectors and the singular values of A_y."""
    tables = {}
    jac = summary.get("jacobian")
    if jac:
        rows = [[p, v, name] for name, curve in jac["phi_p"]["code"].items() for p, v in zip(jac["p"], curve) if v is not None]
        tables["analysis/phi_p"] = (["p", "phi_p", "pixel"], rows, "p", "phi_p", "pixel")
        if "svd" in jac:
            rows = [[i + 1, s] for i, s in enumerate(jac["svd"]["singular_values"])]
            tables["analysis/singular_values"] = (["index", "singular_value"], rows, "index", "singular_value", None)
    pca = summary.get("pca")
    if pca:
        rows = [[int(k), v, variant] for variant, curve in pca["energy_captured"].items() for k, v in curve.items()]
        tables["analysis/energy_captured"] = (["k", "energy_captured", "variant"], rows, "k", "energy_captured", "variant")
        rows = [[i + 1, c] for i, c in enumerate(pca["abs_cosine"])]
        tables["analysis/abs_cosine"] = (["rank", "abs_cosine"], rows, "rank", "abs_cosine", None)
    return tables


def headline(summary: dict) -> dict[str, float]:
    """The numbers worth a chart from a summary: hole metrics, baselines, A_y y = f(y), phi_p at
    p = 0.25, energy captured by 10 components, the spectrum's effective dimensionality."""
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
        if "svd" in jac:
            metrics["analysis/effective_dim"] = jac["svd"]["effective_dim"]
    energy = summary.get("pca", {}).get("energy_captured", {}).get("uncentred", {})
    if "10" in energy:
        metrics["analysis/energy_captured_10"] = energy["10"]
    return metrics
