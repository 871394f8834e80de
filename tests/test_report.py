"""The analyses end to end on a small generator: every number and figure the issue lists."""

import json

import numpy as np
import pytest
import torch
from test_models import trained_like
from tolerances import rel_tol

from analysis.figures import run_figures, save_all
from analysis.report import analyse
from analysis.results import load_results
from analysis.settings import AnalysisSettings
from inpaint.data.faces import FacesDataset
from inpaint.errors import InpaintError

FIGURES = {
    "F1_inpainting", "F2_phi_window", "F3_eigenimages", "F4_abs_cosine", "F5_projections", "F6_energy_captured",
    "F7_total_energy", "F8_phi_curves", "F9_phi_by_mask", "F10_weight_maps", "F10_weight_maps_colour",
    "baselines", "projection_psnr", "phi_vs_biharmonic", "centroids", "svd_spectrum", "svd_vectors", "findings",
}


def holdout(n: int = 24) -> list[torch.Tensor]:
    data = FacesDataset(n, seed=2)
    images = torch.stack([data[i] for i in range(n)])
    return list(images.split(10))  # uint8 batches, as the data loaders serve them


@pytest.fixture(scope="module", params=[True, False], ids=["bias_free", "original"])
def analysis(request):
    generator = trained_like(16, bias_free=request.param).train()
    settings = AnalysisSettings(baseline_images=6, jacobian_images=2, examples=3)
    result = analyse(generator, holdout(), settings)
    assert generator.training  # mode restored
    return result


def test_every_figure_and_a_json_summary(analysis, tmp_path):
    assert {p.name for p in analysis.save(tmp_path)} == {"summary.json", "results.npz"}
    written = save_all(run_figures(analysis), tmp_path)
    assert {p.stem for p in written} == FIGURES and all(p.stat().st_size > 5000 for p in written)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"mask_size", "holdout_images", "metrics", "baselines", "pca", "jacobian", "biharmonic_phi_p", "exemplar_phi_p",
            "sources", "findings"} <= set(summary)
    assert summary["holdout_images"] == 24 and summary["mask_size"] == 16
    assert set(summary["baselines"]) == {"mean", "telea", "ns", "biharmonic", "exemplar"}
    assert {"eigenvalues", "abs_cosine", "energy_captured", "total_energy"} <= set(summary["pca"])
    phases = ["holdout_pass", "baselines", "pca", "jacobian_rows", "jacobian_factors", "svd", "findings"]
    assert list(summary["seconds"]) == phases
    assert all(t >= 0 for t in summary["seconds"].values())  # timed, however fast the machine
    jac = summary["jacobian"]
    assert {"p", "phi_p", "singular_values", "effective_dim", "participation_ratio"} <= set(jac) | set(jac["svd"])
    # phi^2 is at worst 4 x 256 roundings of the map's energy off (see test_jacobian's
    # test_phi_is_monotone_bounded_and_shaped); phi itself, near 0, by the square root of that
    slack = rel_tol(torch.float64, 4 * 256, worst_case=True) ** 0.5
    for name in ("corner", "edge", "centre"):
        curve = jac["phi_p"]["code"][name]
        assert len(curve) == len(jac["p"]) and curve[-1] == 1.0  # the whole map over itself, exactly
        assert all(a <= b + slack for a, b in zip(curve, curve[1:]))


def test_bias_free_guarantee_is_checked_live(analysis):
    summary = analysis.summary
    if summary["bias_free"]:
        # A_y y against f(y) in float32: sums over the 3 x 128 x 128 inputs (test_jacobian's
        # test_jacobian_reproduces_the_output); the biased model's net bias is ~1 of ||f(y)||
        tol = rel_tol(torch.float32, 3 * 128 * 128)
        assert summary["homogeneity"]["max"] < tol
        assert summary["homogeneity"]["full_jacobian"] < tol
    else:
        assert summary["net_bias"]["max"] > 1e-2  # the biased model's f(y) - A_y y is real


def test_pca_numbers_are_consistent(analysis):
    pca = analysis.summary["pca"]
    energy = pca["energy_captured"]["uncentred"]
    assert 0 < energy["1"] <= energy["10"] <= 1
    assert pca["eigenvalues"]["originals"] == sorted(pca["eigenvalues"]["originals"], reverse=True)
    # float64 dot products of unit vectors
    assert all(0 <= c <= 1 + rel_tol(torch.float64, pca["dim"]) for c in pca["abs_cosine"])
    assert pca["rank"]["originals"] == 23  # 24 images: at most N - 1 components


def test_biharmonic_is_local(analysis):
    """Biharmonic weights lie within 2 pixels of the hole: from the hole's edge, phi_p is 1 at once."""
    phi = analysis.summary["biharmonic_phi_p"]["hole"]["centre"]
    p = analysis.summary["jacobian"]["p"]
    # all the energy in the window: the same positive terms summed twice, by a 0/1 matmul and by a
    # reduction, whose orders differ with the CPU's kernels; each float64 sum of n = 128 * 128 terms
    # is within n * eps of the exact one (the worst case for recursive summation of positive terms)
    assert abs(phi[p.index(0.1)] - 1.0) <= 128 * 128 * torch.finfo(torch.float64).eps


def test_the_cnn_is_placed_between_diffusion_and_the_exemplar(analysis):
    """Every method's sources measured at the same pixels of the same images; the CNN's weight maps
    in F10 beside diffusion's and the exemplar's."""
    summary, arrays = analysis.summary, analysis.arrays
    sources = summary["sources"]
    assert sources["methods"] == ["cnn", "biharmonic", "exemplar"]
    assert arrays["sources.distance"].shape == arrays["sources.far_share"].shape == (3, 2, 4)
    centre = list(summary["jacobian"]["pixels"]).index("centre")
    cnn, diffusion, exemplar = arrays["sources.distance"][:, :, centre].mean(1)
    assert sources["distance"]["exemplar"]["centre"] == exemplar
    # the biharmonic stencil reaches 2 pixels from the hole; the exemplar copies whole known patches
    # (7 x 7: at least 4 pixels deep) and the 16 mask's centre pixel lies 8 from the hole's edge
    assert 1 <= diffusion <= 2 and exemplar >= 4
    assert np.isfinite(cnn) and summary["sources"]["far_share"]["biharmonic"]["centre"] == 0
    # the exemplar's rows sum to 1 (a mean of copies), at every analysed pixel of the hole
    maps = arrays["exemplar.weight_maps"]
    assert np.allclose(maps.reshape(4, -1).sum(1), 1.0) and (maps >= 0).all()
    assert set(summary["exemplar_phi_p"]) == {"code", "hole", "paper"}
    entries = {e["id"]: e for e in summary["findings"]}
    position = entries["nearer_diffusion_than_exemplar"]
    assert position["value"] == pytest.approx((cnn - diffusion) / (exemplar - diffusion))
    assert position["interval"][0] <= position["value"] <= position["interval"][1]
    assert entries["farther_than_diffusion"]["value"] == pytest.approx(cnn - diffusion)
    figures = run_figures(analysis)
    rows = [ax.get_ylabel() for ax in figures["F10_weight_maps"].axes if ax.get_ylabel() not in ("", "|weight|")]
    assert rows == ["CE 16x16", "biharmonic", "exemplar"]
    assert len(figures["centroids"].axes) == 2


def test_results_load_back_exactly_and_hold_what_the_figures_need(analysis, tmp_path):
    analysis.save(tmp_path)
    loaded = load_results(tmp_path)
    assert loaded.summary == analysis.summary
    assert set(loaded.arrays) == set(analysis.arrays)
    for key, value in analysis.arrays.items():  # npz is lossless: the same dtype, shape and bits
        assert loaded.arrays[key].dtype == value.dtype and (loaded.arrays[key] == value).all(), key
    n, j = 3, 2
    assert loaded.arrays["examples.originals"].shape == (n, 3, 128, 128)
    assert loaded.arrays["jacobian.phi_p_code"].shape == (j, 4, len(analysis.summary["jacobian"]["p"]))
    # the summary's phi_p is the mean of the per-image curves kept in the arrays
    mean = loaded.arrays["jacobian.phi_p_code"].mean(0)
    corner = list(analysis.summary["jacobian"]["pixels"]).index("corner")
    assert mean[corner].tolist() == analysis.summary["jacobian"]["phi_p"]["code"]["corner"]
    assert set(run_figures(loaded)) == FIGURES


def test_results_are_read_without_pickles(analysis, tmp_path):
    analysis.save(tmp_path)
    np.savez(tmp_path / "results.npz", planted=np.array([object()], dtype=object))  # an object array needs pickle
    with pytest.raises(InpaintError, match="cannot read the results"):
        load_results(tmp_path)
    (tmp_path / "results.npz").unlink()
    with pytest.raises(InpaintError, match="results.npz is missing"):
        load_results(tmp_path)


def test_findings_are_in_every_summary_with_a_verdict(analysis):
    from analysis.findings import CLAIMS

    entries = {e["id"]: e for e in analysis.summary["findings"]}
    assert list(entries) == [c.id for c in CLAIMS]
    # the per-image values behind the intervals are kept: one per analysed image (2 here)
    assert analysis.arrays["jacobian.centroid_offsets"].shape == (2, 4, 2)
    assert analysis.arrays["pca.energy_captured_10"].shape == (24,)
    assert entries["exactly_linear"]["verdict"] == ("holds" if analysis.summary["bias_free"] else "fails")


def test_two_holdout_images_are_enough_for_every_analysis():
    """The least check_data lets through: a resample of two images may draw one twice, whose PCA has
    no components; its bootstrap row is NaN, not an error at the end of a fit."""
    settings = AnalysisSettings(baseline_images=2, jacobian_images=2, examples=2, pca_resamples=20, svd=False)
    results = analyse(trained_like(16, bias_free=True), holdout(2), settings)
    assert results.summary["holdout_images"] == 2
    overlap = results.arrays["pca.subspace_overlap_bootstrap"]
    assert overlap.shape == (20, 1) and np.isnan(overlap).any() and not np.isnan(overlap).all()
