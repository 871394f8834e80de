"""analyze.py on checkpoints (the callback's numbers again, on the run's own data), redrawn
figures and run comparisons from saved results only, the sweep's own comparison, clear errors."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from documented import documented
from wandb_records import offline_run

from analysis.comparison import compare, find_analyses

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]
SMOKE_ANALYSIS = ["analysis.examples=4", "analysis.baseline_images=4", "analysis.jacobian_images=1"]


def run(script: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A two-job sweep, 64 and 16 masks, with the analysis callback (and the sweep's comparison): the
    README's sweep, at the smoke size."""
    root = tmp_path_factory.mktemp("runs")
    run(*documented("python train.py -m mask=center64,center16"), f"hydra.sweep.dir={root}", "logger=wandb", *QUIET[1:])
    return root / "0", root / "1"


def read_csv(path: Path) -> list[dict]:
    with open(path) as file:
        return list(csv.DictReader(file))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_training_ends_with_the_analyses_as_results_and_figures(runs):
    for folder in runs:
        analysis = folder / "analysis"
        assert (analysis / "summary.json").is_file() and (analysis / "results.npz").is_file()
        assert len(list(analysis.glob("F*.png"))) == 11
        # the paper's question against both poles: the exemplar's numbers beside diffusion's
        summary = json.loads((analysis / "summary.json").read_text())
        assert {"biharmonic", "exemplar"} <= set(summary["baselines"]) and set(summary["exemplar_phi_p"]) == {"code", "hole", "paper"}
        assert set(summary["sources"]["distance"]) == {"cnn", "biharmonic", "exemplar"}
        found = {f["id"]: f for f in summary["findings"]}
        for key in ("nearer_diffusion_than_exemplar", "farther_than_diffusion"):
            assert found[key]["verdict"] in ("holds", "fails", "inconclusive") and len(found[key]["interval"]) == 2


def assert_compares_both_masks(comparison: Path, analyses: list[Path]) -> None:
    """runs.csv, settings.csv and the figures of a comparison of the 64 and the 16 mask (``analyses``:
    their analysis folders, in that order)."""
    rows = read_csv(comparison / "runs.csv")
    assert [row["mask"] for row in rows] == ["center64", "center16"]  # the override that tells them apart
    assert [int(row["mask_size"]) for row in rows] == [64, 16]
    assert [row["run"] for row in rows] == [str(a) for a in analyses]
    for row, folder in zip(rows, analyses):  # the runs' own numbers, from their summaries
        summary = json.loads((folder / "summary.json").read_text())
        assert float(row["psnr"]) == summary["metrics"]["psnr"]
        jac = summary["jacobian"]
        assert float(row["phi_0.25_centre"]) == jac["phi_p"]["code"]["centre"][jac["p"].index(0.25)]
        assert float(row["centroid_distance_edge"]) == pytest.approx(math.hypot(*jac["centroid_offset"]["edge"]))
        gains = {k: v - summary["pca"]["reconstruction_psnr"] for k, v in summary["pca"]["projection_psnr"]["centred"].items()}
        assert float(row["projection_gain_best"]) == pytest.approx(max(gains.values()))
        assert gains[row["projection_gain_best_k"]] == max(gains.values())
        assert [row[f"finding_{f['id']}"] for f in summary["findings"]] == [f["verdict"] for f in summary["findings"]]
        distance = {method: d["centre"] for method, d in summary["sources"]["distance"].items()}
        assert float(row["source_distance_exemplar"]) == distance["exemplar"]
        assert float(row["between_poles"]) == pytest.approx(
            (distance["cnn"] - distance["biharmonic"]) / (distance["exemplar"] - distance["biharmonic"]))
    for name in ("F9_phi_by_mask", "F1_inpainting", "phi_p", "energy_captured", "singular_values", "poles", "effects"):
        assert (comparison / f"{name}.png").stat().st_size > 5000, name
    assert len(read_csv(comparison / "settings.csv")) == 2
    # the 16 mask against the first run's setting: one run each, so a difference without an interval
    effects = {row["number"]: row for row in read_csv(comparison / "effects.csv")}
    assert {row["setting"] + " vs " + row["reference"] for row in effects.values()} == {"mask=center16 vs mask=center64"}
    assert float(effects["psnr"]["difference"]) == pytest.approx(float(rows[1]["psnr"]) - float(rows[0]["psnr"]))
    assert effects["psnr"]["verdict"] == "one run: no spread" and effects["psnr"]["low"] == ""
    assert "mask_size" not in effects and "projection_gain_best_k" not in effects  # what or where was measured: not effects


def test_a_sweep_ends_with_its_comparison(runs):
    assert_compares_both_masks(runs[0].parent / "comparison", [r / "analysis" for r in runs])


def test_a_sweeps_wandb_runs_are_grouped_by_the_sweep_and_named_by_their_overrides(runs):
    for folder, mask in zip(runs, ("center64", "center16")):
        wandb_run = offline_run(folder)
        assert wandb_run["group"] == f"demo/{folder.parent.name}"
        name = wandb_run["name"].split(",")
        assert name[0] == f"mask={mask}" and "model.base_channels=8" in name  # the smoke size is part of the run
        assert not [o for o in name if o.startswith(("logger=", "callbacks."))]  # these say nothing of the run


def test_compare_reads_only_saved_results(runs, tmp_path):
    copies = []
    for folder in runs:  # the runs without their checkpoints: nothing but results to read
        copy = tmp_path / "sweep" / folder.name
        shutil.copytree(folder / "analysis", copy / "analysis")
        shutil.copytree(folder / ".hydra", copy / ".hydra")
        copies.append(copy)
    run(*documented("python analyze.py 'compare=[logs/demo/runs/A,logs/demo/runs/B]'",  # the README's line
                    {"logs/demo/runs/A": str(copies[0]), "logs/demo/runs/B": str(copies[1])}), f"hydra.run.dir={tmp_path / 'out'}")
    assert_compares_both_masks(tmp_path / "out" / "comparison", [c / "analysis" for c in copies])
    # a sweep folder means all its runs, in job order; a run folder, its analysis
    assert find_analyses([tmp_path / "sweep"]) == find_analyses(copies) == [c / "analysis" for c in copies]


def test_replot_redraws_the_runs_figures_exactly_without_a_checkpoint(runs, tmp_path):
    source = tmp_path / "run"
    shutil.copytree(runs[1] / "analysis", source / "analysis")  # results only: no checkpoint, no config
    for png in (source / "analysis").glob("*.png"):
        png.unlink()
    run(*documented("python analyze.py replot=logs/demo/runs/<run>", {"logs/demo/runs/<run>": str(source)}),
        f"hydra.run.dir={tmp_path / 'out'}")  # the README's line
    drawn = sorted((runs[1] / "analysis").glob("*.png"))
    again = tmp_path / "out" / "analysis"
    assert [p.name for p in drawn] == sorted(p.name for p in again.glob("*.png")) and len(drawn) == 18
    for png in drawn:  # the same arrays through the same drawing code: the same pixels
        assert np.array_equal(pixels(png), pixels(again / png.name)), png.name


def test_two_checkpoints_are_analysed_on_their_runs_data_then_compared(runs, tmp_path):
    paths = ",".join(str(r / "checkpoints" / "last.ckpt") for r in runs)
    # no data settings given: each run's own (smoke: 16 holdout images, batches of 16) come from its config
    # the numbers and the comparison are checked here; analyze.py's figures in test_folder.py
    run("analyze.py", f"ckpt_path=[{paths}]", f"hydra.run.dir={tmp_path}", *SMOKE_ANALYSIS, "analysis.figures=false")
    analyses = [tmp_path / "analysis" / "mask64_last", tmp_path / "analysis" / "mask16_last"]
    assert sorted((tmp_path / "analysis").iterdir()) == sorted(analyses)
    for folder, analysis in zip(runs, analyses):
        callback = json.loads((folder / "analysis" / "summary.json").read_text())
        again = json.loads((analysis / "summary.json").read_text())
        assert again["holdout_images"] == 16 and again["run"]["data"]["holdout_size"] == 16
        # the same weights, images and batches through the same kernels on one machine: the same bits
        assert again["metrics"] == callback["metrics"]
        assert again["pca"]["eigenvalues"] == callback["pca"]["eigenvalues"]
        assert again["jacobian"]["phi_p"] == callback["jacobian"]["phi_p"]
        assert again["baselines"] == callback["baselines"]
    assert_compares_both_masks(tmp_path / "comparison", analyses)


def test_command_line_data_settings_change_the_runs_own(runs):
    sys.path.insert(0, str(ROOT))
    from analyze import data_for

    ckpt = runs[1] / "checkpoints" / "last.ckpt"
    default = OmegaConf.create({"data": {"_target_": "faces", "holdout_size": 1000}, "image_size": 128})
    data, image_size, overrides = data_for(ckpt, default, ["data.holdout_size=8", "analysis.examples=2"])
    assert data.holdout_size == 8 and data.train_size == 64 and image_size == 128  # the rest is the run's (smoke)
    assert "mask=center16" in overrides
    data, _, overrides = data_for(ckpt, default, ["data=faces"])  # a data group replaces the run's settings
    assert data.holdout_size == 1000 and overrides is None
    data, _, overrides = data_for(ROOT / "elsewhere.ckpt", default, [])  # no run folder: the config's
    assert data.holdout_size == 1000 and overrides is None


# a file that is no checkpoint, or a planted one: tests/test_checkpoint.py
@pytest.mark.parametrize("case", ["missing", "wrong_mask", "no_mode", "reference"])
def test_bad_checkpoints_fail_with_one_clear_message(case, runs, tmp_path):
    path = {"missing": tmp_path / "nope.ckpt", "wrong_mask": runs[0] / "checkpoints" / "last.ckpt"}.get(case)
    extra = {"missing": [], "wrong_mask": ["mask_size=16"], "no_mode": [f"replot={runs[0]}"], "reference": ["reference='mask=center64'"]}[case]
    ckpt = [f"ckpt_path={path or runs[0] / 'checkpoints' / 'last.ckpt'}"]
    result = run("analyze.py", *ckpt, f"hydra.run.dir={tmp_path / 'out'}", *extra, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    message = {"missing": "does not exist", "wrong_mask": "mask size 64", "no_mode": "needs exactly one of ckpt_path",
               "reference": "is read by compare= only"}[case]
    assert [line for line in output.splitlines() if "ERROR" in line] == [line for line in output.splitlines() if message in line]
    assert not (tmp_path / "out" / "analysis").exists()


def test_seeds_of_one_setting_are_grouped_with_their_spread(runs, tmp_path):
    """Runs that differ only by seed are one setting in settings.csv (mean, std over the seeds) and
    one line with a band in phi_p.png; labels carry only the overrides that tell runs apart."""
    jobs = [(runs[0], ["experiment=smoke", "mask=center64", "seed=0"]), (runs[0], ["experiment=smoke", "mask=center64", "seed=1"]),
            (runs[1], ["experiment=smoke", "mask=center16", "seed=0", "logger=csv"])]
    for n, (source, overrides) in enumerate(jobs):
        shutil.copytree(source / "analysis", tmp_path / "sweep" / str(n) / "analysis")
        (tmp_path / "sweep" / str(n) / ".hydra").mkdir()
        (tmp_path / "sweep" / str(n) / ".hydra" / "overrides.yaml").write_text(json.dumps(overrides))  # JSON is YAML
    comparison = compare([tmp_path / "sweep"])
    assert comparison.keys == ["mask", "seed"]  # experiment= is common to all, logger= says nothing of the run
    assert [run.label for run in comparison.runs] == ["mask=center64 seed=0", "mask=center64 seed=1", "mask=center16 seed=0"]
    assert {s: len(r) for s, r in comparison.settings.items()} == {"mask=center64": 2, "mask=center16": 1}
    comparison.write(tmp_path / "comparison")
    rows = {row["setting"]: row for row in read_csv(tmp_path / "comparison" / "settings.csv")}
    psnr = json.loads((runs[0] / "analysis" / "summary.json").read_text())["metrics"]["psnr"]
    assert float(rows["mask=center64"]["psnr_mean"]) == psnr and float(rows["mask=center64"]["psnr_std"]) == 0.0  # one run, twice
    assert rows["mask=center16"]["runs"] == "1" and rows["mask=center16"]["psnr_std"] == ""  # no spread from one run
    assert rows["mask=center64"]["seeds"] == "0 1" and rows["mask=center64"]["psnr_min"] == rows["mask=center64"]["psnr_max"]
    verdicts = {f["id"]: f["verdict"] for f in json.loads((runs[0] / "analysis" / "summary.json").read_text())["findings"]}
    assert {key: rows["mask=center64"][f"finding_{key}"] for key in verdicts} == verdicts  # the same verdict twice: kept
    assert len(read_csv(tmp_path / "comparison" / "runs.csv")) == 3
    # the cross-run claims on each seed's runs: only seed 0 has both masks, so its verdict is the verdict
    cross = {f["id"]: f for f in json.loads((tmp_path / "comparison" / "findings.json").read_text())}
    assert [e["seed"] for e in cross["smaller_mask_more_local"]["per_seed"]] == ["0"]
    assert cross["smaller_mask_more_local"]["verdict"] == cross["smaller_mask_more_local"]["per_seed"][0]["verdict"]
    assert (tmp_path / "comparison" / "poles.png").stat().st_size > 5000


def test_effects_set_each_setting_against_the_reference_within_the_seeds_spread(runs, tmp_path):
    """effects.csv: each setting's difference to the reference setting with Welch's 95 % interval over
    their seeds (scipy's Welch test the reference): a difference the seeds' spread covers is "within
    spread", one it cannot cover "higher" / "lower"; a reference that is no setting is refused before
    anything is written."""
    from scipy.stats import ttest_ind

    from inpaint.errors import InpaintError

    psnr = {"center64": [20.0, 20.2, 20.1], "center16": [20.15, 20.35, 20.2]}  # noise larger than the effect
    ssim = {"center64": [0.50, 0.51, 0.50], "center16": [0.60, 0.61, 0.61]}  # an effect far beyond the noise
    for n, (mask, seed) in enumerate((m, s) for m in psnr for s in range(3)):
        folder = tmp_path / "sweep" / str(n)
        shutil.copytree(runs[0] / "analysis", folder / "analysis")
        summary = json.loads((folder / "analysis" / "summary.json").read_text())
        summary["metrics"] |= {"psnr": psnr[mask][seed], "ssim": ssim[mask][seed]}
        (folder / "analysis" / "summary.json").write_text(json.dumps(summary))
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(json.dumps([f"mask={mask}", f"seed={seed}"]))
    comparison = compare([tmp_path / "sweep"])
    with pytest.raises(InpaintError, match="reference 'mask=center32' is none of the settings"):
        comparison.write(tmp_path / "refused", reference="mask=center32")
    assert not (tmp_path / "refused").exists()
    comparison.write(tmp_path / "comparison", reference="mask=center64")
    effects = {row["number"]: row for row in read_csv(tmp_path / "comparison" / "effects.csv")}
    for number, values, verdict in (("psnr", psnr, "within spread"), ("ssim", ssim, "higher")):
        row = effects[number]
        expected = ttest_ind(values["center16"], values["center64"], equal_var=False).confidence_interval(0.95)
        assert (row["setting"], row["reference"], row["runs"], row["reference_runs"]) == ("mask=center16", "mask=center64", "3", "3")
        assert float(row["difference"]) == pytest.approx(np.mean(values["center16"]) - np.mean(values["center64"]))
        assert (float(row["low"]), float(row["high"])) == pytest.approx((expected.low, expected.high), rel=1e-9)
        assert row["verdict"] == verdict, row
    assert effects["telea_psnr"]["verdict"] == "within spread" and float(effects["telea_psnr"]["difference"]) == 0  # same images
    # the other way round, every sign flips
    flipped = {row["number"]: row for row in compare([tmp_path / "sweep"]).effect_rows(reference="mask=center16")}
    assert flipped["ssim"]["verdict"] == "lower" and float(flipped["psnr"]["difference"]) == -float(effects["psnr"]["difference"])


def test_the_authors_holdout_on_a_run_trained_without_it_warns(tmp_path, caplog):
    """A CelebA run trained with holdout=test trained on images 120000-120999: analysing it on them
    (data.holdout=authors) says so; the same override on a run that held them out does not."""
    import analyze

    for trained_on, warned in (("test", True), ("authors", False)):
        run = tmp_path / trained_on
        (run / ".hydra").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        OmegaConf.save({"image_size": 128, "data": {"_target_": "inpaint.data.celeba.CelebADataModule", "holdout": trained_on}},
                       run / ".hydra" / "config.yaml")
        caplog.clear()
        data, _, _ = analyze.data_for(run / "checkpoints" / "last.ckpt", OmegaConf.create({}), ["data.holdout=authors"])
        assert data.holdout == "authors"
        assert ("were in its training set" in caplog.text) is warned
