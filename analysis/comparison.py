"""Runs side by side, from their saved results only (never a model or data).

:func:`find_analyses` turns run folders, sweep folders or analysis folders into the analysis folders
they hold; :func:`compare` loads them, labels each run by the overrides that distinguish it from
the others (its ``.hydra/overrides.yaml``, or what ``analyze.py`` recorded in the summary), groups
runs that differ only by ``seed`` into one setting, and tabulates the headline numbers.
:meth:`Comparison.write` writes ``runs.csv`` (one row per run), ``settings.csv`` (mean, standard
deviation and count per setting), ``effects.csv`` (each setting against a reference setting, with
the seeds' interval), the comparison figures (``analysis.figures.comparison_figures``) and, when
mask sizes differ, the cross-run findings (``findings.json``, ``findings.png``).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.stats
import yaml

from analysis.findings import across_seeds, cross_run_findings
from analysis.jacobian import AUTHORS_P
from analysis.results import SUMMARY, Results, load_results
from inpaint.errors import InpaintError

PIXELS = ("corner", "edge", "centre")
# numbers of headline_row that say what was measured or where (an argmax), not how well: no effects row
DESCRIPTORS = ("mask_size", "hole_area", "holdout_images", "projection_gain_best_k")
# overrides that say where or how a run ran, not what it is: never a column of the comparison
IGNORED = re.compile(r"^(hydra|paths|logger|callbacks|trainer\.(devices|num_nodes|accelerator|strategy|enable_\w+)|"
                     r"retain_freed_memory|ckpt_path|test|tags|task_name)(\.|$)")


@dataclass
class Run:
    """One analysed run: its analysis folder, results, overrides, and (after :func:`compare`) its
    distinguishing overrides, its label and its setting (the label without the seed)."""

    folder: Path
    results: Results
    overrides: dict[str, str]
    distinct: dict[str, str] = field(default_factory=dict)
    label: str = ""
    setting: str = ""


@dataclass
class Comparison:
    runs: list[Run]
    keys: list[str]  # the overrides that distinguish the runs, in first-seen order

    @property
    def settings(self) -> dict[str, list[Run]]:
        groups: dict[str, list[Run]] = {}
        for run in self.runs:
            groups.setdefault(run.setting, []).append(run)
        return groups

    def rows(self) -> list[dict]:
        """One row per run: folder, label, the distinguishing overrides, :func:`headline_row`, then
        each finding's verdict."""
        return [{"run": str(run.folder), "label": run.label, **{k: run.distinct.get(k, "") for k in self.keys},
                 "architecture": _architecture(run.results.summary), **headline_row(run.results.summary),
                 **{f"finding_{f['id']}": f["verdict"] for f in run.results.summary.get("findings", [])}} for run in self.runs]

    def setting_rows(self) -> list[dict]:
        """Per setting (runs equal but for the seed): the number of runs, the mean, standard
        deviation (n - 1; empty for one run), min and max of every number of :func:`headline_row`,
        then each finding's verdict across the seeds (:func:`~analysis.findings.across_seeds`: it
        holds only where it holds for every seed)."""
        out = []
        for setting, runs in self.settings.items():
            numbers = [headline_row(run.results.summary) for run in runs]
            row = {"setting": setting, "runs": len(runs), "seeds": " ".join(run.overrides.get("seed", "(default)") for run in runs),
                   "architecture": _architecture(runs[0].results.summary)}
            for key in numbers[0]:
                values = _measured([n.get(key, math.nan) for n in numbers])
                row[f"{key}_mean"] = float(values.mean()) if len(values) else ""
                row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else ""
                row[f"{key}_min"] = float(values.min()) if len(values) else ""
                row[f"{key}_max"] = float(values.max()) if len(values) else ""
            verdicts: dict[str, list[str]] = {}
            for run in runs:
                for finding in run.results.summary.get("findings", []):
                    verdicts.setdefault(finding["id"], []).append(finding["verdict"])
            row |= {f"finding_{key}": across_seeds(found) if len(found) == len(runs) else "inconclusive"
                    for key, found in verdicts.items()}
            out.append(row)
        return out

    def reference(self, setting: str | None = None) -> str:
        """The setting the others are set against: ``setting``, or the first run's. Raises
        :class:`InpaintError` for a name that is none of the settings."""
        if setting is None:
            return self.runs[0].setting
        if setting not in self.settings:
            raise InpaintError(f"compare: the reference {setting!r} is none of the settings compared: "
                               f"{', '.join(repr(s) for s in self.settings)}. Pass one of them, quoted for Hydra: \"reference='{next(iter(self.settings))}'\" "
                               "(or no reference: the first run's setting).")
        return setting

    def effect_rows(self, reference: str | None = None) -> list[dict]:
        """Each other setting against the reference (:meth:`reference`), one row per number of
        :func:`headline_row`: both means over their seeds, the difference, its 95 % interval (Welch's,
        from the two settings' spread over seeds; empty where either has one run) and its verdict:
        ``higher`` or ``lower`` when the interval excludes 0, else ``within spread``. So "does this
        setting change that number?" is answered against the noise the seeds measured, not one run."""
        reference = self.reference(reference)
        numbers = {setting: [headline_row(run.results.summary) for run in runs] for setting, runs in self.settings.items()}
        out = []
        for setting, rows in numbers.items():
            if setting == reference:
                continue
            for key in (k for k in rows[0] if k not in DESCRIPTORS):
                ours, theirs = (_measured([row.get(key, math.nan) for row in group]) for group in (rows, numbers[reference]))
                if not len(ours) or not len(theirs):
                    continue
                difference = float(ours.mean() - theirs.mean())
                interval = welch_interval(ours, theirs)
                verdict = "one run: no spread" if interval is None else (
                    "higher" if interval[0] > 0 else "lower" if interval[1] < 0 else "within spread")
                out.append({"setting": setting, "reference": reference, "number": key, "runs": len(ours), "reference_runs": len(theirs),
                            "mean": float(ours.mean()), "reference_mean": float(theirs.mean()), "difference": difference,
                            "low": interval[0] if interval else "", "high": interval[1] if interval else "", "verdict": verdict})
        return out

    def write(self, folder: str | Path, reference: str | None = None) -> list[Path]:
        """``folder/runs.csv``, ``folder/settings.csv``, ``folder/effects.csv`` and ``effects.png`` (with
        two settings or more; ``reference`` as in :meth:`effect_rows`) and the comparison figures."""
        # matplotlib: only when drawing
        from analysis.figures import comparison_figures, fig_effects, fig_findings, save_all

        effects = self.effect_rows(reference) if len(self.settings) > 1 else []  # a wrong reference refused before writing
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [_write_csv(folder / "runs.csv", self.rows()), _write_csv(folder / "settings.csv", self.setting_rows())]
        if effects:
            written.append(_write_csv(folder / "effects.csv", effects))
        runs = {run.label: run.results for run in self.runs}
        settings = {setting: [run.label for run in group] for setting, group in self.settings.items()}
        figures = comparison_figures(runs, settings)
        cross_run = cross_run_findings(list(runs.values()), [run.overrides.get("seed", "(default)") for run in self.runs])
        if cross_run:
            (folder / "findings.json").write_text(json.dumps(cross_run, indent=2))
            written.append(folder / "findings.json")
            figures["findings"] = fig_findings(cross_run)
        if effects:
            figures["effects"] = fig_effects(effects)
        return written + save_all(figures, folder)


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` interval of mean(a) - mean(b) by Welch's t (unequal variances; Student's t with
    the Welch-Satterthwaite degrees of freedom), or None when either sample has one value. Seeds are
    few (3 in ``experiment=pca_ablation``), so the t quantile, not the normal one: 4.3 for 2 degrees
    of freedom, against 1.96. Both spreads zero: the interval is the difference itself."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = float(a.mean() - b.mean())
    if va + vb == 0:
        return difference, difference
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, dof) * math.sqrt(va + vb))
    return difference - half, difference + half


def effects_table(rows: list[dict], numbers: tuple[str, ...] = ("psnr", "ssim")) -> str:
    """The effects on ``numbers`` as a few lines of text, for the log."""
    lines = []
    for row in (r for r in rows if r["number"] in numbers):
        interval = f"[{row['low']:+.4g}, {row['high']:+.4g}]" if row["low"] != "" else "(one run)"
        lines.append(f"{row['setting']} vs {row['reference']}: {row['number']} {row['difference']:+.4g} {interval} {row['verdict']}")
    return "\n".join(lines)


def _measured(values: list[float]) -> np.ndarray:
    """The values a run measured (NaN: not measured, e.g. no Jacobian analysis)."""
    values = np.array(values, dtype=float)
    return values[~np.isnan(values)]


def _write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _architecture(summary: dict) -> str:
    """The analysed generator's class (results of earlier versions: the Context Encoder's)."""
    return summary.get("architecture", "ContextEncoder")


def headline_row(summary: dict) -> dict[str, float]:
    """The numbers one row of ``runs.csv`` holds: mask size (NaN for random holes) and the analysed
    holes' mean share of the image, hole PSNR / SSIM, the baselines on their
    images, phi_p (authors' code definition) at the authors' p for corner / edge / centre and the
    distance from each of those pixels to its weight map's centroid, the PCA headline numbers
    (uncentred energy captured by 10 components, total energy and variance of the reconstructions
    over the originals', mean |cos| of the first 10 eigenvectors, the crops' PSNR and the most that
    projecting them on the originals' components adds to it, at which k), the SVD's, and where the
    centre pixel's weight comes from: the mean distance of its sources from the hole for the CNN,
    diffusion and the exemplar, the share beyond ``far``, and the CNN's position between the poles
    (0: diffusion, 1: the exemplar; the finding ``nearer_diffusion_than_exemplar``)."""
    row = {"mask_size": summary["mask_size"], "hole_area": summary.get("hole_area"), "holdout_images": summary["holdout_images"],
           "psnr": summary["metrics"]["psnr"], "ssim": summary["metrics"]["ssim"]}
    if "baselines" in summary:
        row |= {f"cnn_on_baseline_images_{k}": v for k, v in summary["model_on_baseline_images"].items()}
        for name, values in summary["baselines"].items():
            row |= {f"{name}_{k}": v for k, v in values.items()}
    sources = summary.get("sources")
    if sources:  # where the centre pixel's weight comes from, beside diffusion's and the exemplar's
        distance = {method: by_pixel["centre"] for method, by_pixel in sources["distance"].items()}
        row |= {f"source_distance_{method}": value for method, value in distance.items()}
        row |= {f"far_share_{method}": by_pixel["centre"] for method, by_pixel in sources["far_share"].items()}
        span = distance["exemplar"] - distance["biharmonic"]
        row["between_poles"] = (distance["cnn"] - distance["biharmonic"]) / span if span > 0 else math.nan
    jac = summary.get("jacobian")
    if jac:
        for name in PIXELS:
            curve = jac["phi_p"]["code"][name]
            row |= {f"phi_{p}_{name}": curve[jac["p"].index(p)] for p in AUTHORS_P}
        if "centroid_offset" in jac:
            row |= {f"centroid_distance_{name}": math.hypot(*jac["centroid_offset"][name]) for name in PIXELS}
        if "svd" in jac:
            s = jac["svd"]["singular_values"]
            row |= {"effective_dim": jac["svd"]["effective_dim"], "participation_ratio": jac["svd"]["participation_ratio"],
                    "top_singular_value": s[0] if s else None}
    pca = summary.get("pca")
    if pca:
        row |= {
            "energy_captured_10": pca["energy_captured"]["uncentred"].get("10"),
            "total_energy_ratio": pca["total_energy"]["reconstructions"] / pca["total_energy"]["originals"],
            "total_variance_ratio": pca["total_variance"]["reconstructions"] / pca["total_variance"]["originals"],
            "abs_cosine_top10_mean": float(np.mean(pca["abs_cosine"][:10])),
            "reconstruction_psnr": pca.get("reconstruction_psnr"),
        }
        projected = pca.get("projection_psnr", {}).get("centred")
        if projected and pca.get("reconstruction_psnr") is not None:
            best = max(projected, key=projected.get)
            row |= {"projection_gain_best": projected[best] - pca["reconstruction_psnr"], "projection_gain_best_k": int(best)}
    return {key: (math.nan if value is None else value) for key, value in row.items()}


def _analysis_folders(path: Path) -> list[Path]:
    """The analysis folders of one run folder (or the folder itself when it is one)."""
    if (path / SUMMARY).is_file():
        return [path]
    if (path / "analysis" / SUMMARY).is_file():
        return [path / "analysis"]
    return sorted(p.parent for p in (path / "analysis").glob(f"*/{SUMMARY}"))


def _natural(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def find_analyses(paths: list[str | Path]) -> list[Path]:
    """The analysis folders under ``paths``: each a run folder (``RUN/analysis/``, or one sub-folder
    per checkpoint of an ``analyze.py`` run), an analysis folder, or a sweep folder (all its runs,
    in job order). Raises :class:`InpaintError` for a path that holds none."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise InpaintError(f"compare: {path} is not a folder: pass run folders (RUN_DIR) or sweep folders (SWEEP_DIR).")
        folders = _analysis_folders(path) or [f for child in sorted(path.iterdir(), key=_natural) if child.is_dir()
                                              for f in _analysis_folders(child)]
        if not folders:
            raise InpaintError(
                f"compare: no saved results under {path} (no analysis/{SUMMARY} in it or its sub-folders): pass run folders "
                "whose training ran the analyses, or analyse their checkpoints first with analyze.py ckpt_path=..."
            )
        found += [f for f in folders if f not in found]
    return found


def run_overrides(analysis_folder: Path, summary: dict) -> dict[str, str]:
    """The run's command-line overrides as ``{key: value}``: those ``analyze.py`` recorded in the
    summary, else the run folder's ``.hydra/overrides.yaml`` (empty when there is none)."""
    listed = summary.get("run", {}).get("overrides")
    if listed is None:
        listed = read_overrides(analysis_folder.parent if analysis_folder.name == "analysis" else analysis_folder)
    return parse_overrides(listed or [])


def read_overrides(run_folder: Path) -> list[str] | None:
    """What was typed for the run in ``run_folder``: Hydra's ``.hydra/overrides.yaml`` (None without one)."""
    file = Path(run_folder) / ".hydra" / "overrides.yaml"
    return [str(item) for item in yaml.safe_load(file.read_text()) or []] if file.is_file() else None


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """Hydra command-line overrides (``key=value``, ``+key=value``) as ``{key: value}``, less those
    that only say where or how a run ran (:data:`IGNORED`)."""
    pairs = (str(item).lstrip("+~").split("=", 1) for item in overrides if "=" in str(item))
    return {key: value for key, value in pairs if not IGNORED.match(key)}


def compare(paths: list[str | Path]) -> Comparison:
    """Load every run under ``paths`` and label it (see the module's docstring)."""
    runs = []
    for folder in find_analyses(paths):
        results = load_results(folder)
        runs.append(Run(folder, results, run_overrides(folder, results.summary)))
    keys = list(dict.fromkeys(k for run in runs for k in run.overrides))
    keys = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]
    for index, run in enumerate(runs):
        run.distinct = {k: run.overrides.get(k, "(default)") for k in keys}
        run.label = " ".join(f"{k}={v}" for k, v in run.distinct.items()) or _short(run.folder, index)
        run.setting = " ".join(f"{k}={v}" for k, v in run.distinct.items() if k != "seed") or (
            "all runs" if "seed" in keys else run.label)
    labels = [run.label for run in runs]
    for index, run in enumerate(runs):
        if labels.count(run.label) > 1:  # the same overrides twice: the folder tells them apart
            run.label = run.setting = f"{run.label} ({_short(run.folder, index)})"
    return Comparison(runs, keys)


def _short(folder: Path, index: int) -> str:
    """A label for a run no override tells apart: its run folder's name (and the checkpoint's)."""
    parts = folder.parts[-3:] if folder.name != "analysis" else folder.parts[-2:-1]
    return "/".join(p for p in parts if p != "analysis") or f"run {index}"
