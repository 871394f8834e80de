"""The findings: each claim's statistic on constructed results whose answer is known, every verdict,
the bootstrap reproducible with its seed, and the cross-run claims."""

import numpy as np
import pytest
import torch

from analysis import findings as F
from analysis.jacobian import grid_period
from analysis.results import Results

PIXELS = {"corner": [0, 0], "diagonal": [3, 3], "centre": [32, 32], "edge": [32, 63]}
P = [0.0, 0.1, 0.25, 0.35, 0.5, 1.0]


def constructed(phi: dict[str, float], noise: float = 0.0, images: int = 16, mask: int = 64, seed: int = 0, **arrays) -> Results:
    """Results of ``images`` analysed images whose phi_p (every definition) at the authors' p is
    ``phi[pixel]`` plus Gaussian noise of ``noise``; other per-image arrays from ``arrays``."""
    rng = np.random.default_rng(seed)
    curve = np.zeros((images, 4, len(P)))
    for k, name in enumerate(PIXELS):
        curve[:, k, 1:5] = phi.get(name, 0.5) + noise * rng.standard_normal((images, 4))
        curve[:, k, 5] = 1.0
    n = 32
    defaults = {
        "jacobian.centroid_offsets": np.zeros((images, 4, 2)), "jacobian.grid_prominence": np.full((images, 4), 1.3),
        "jacobian.grid_period": np.full((images, 4), 4.0), "jacobian.linearity_error": np.full(images, 1e-6),
        "pca.deviation_originals": np.ones(n), "pca.deviation_reconstructions": np.full(n, 0.5),
        "pca.energy_captured_10": np.full(n, 0.95), "pca.reconstruction_psnr": np.full(n, 20.0),
        "pca.projection_psnr": np.full((2, n), 20.5), "pca.subspace_overlap_bootstrap": np.full((20, 10), 0.9),
        # the mean distance from the hole of each pixel's weight, [CNN, diffusion, exemplar] x images x pixels
        "sources.distance": np.stack([np.full((images, 4), d) for d in (3.0, 1.5, 10.0)]) + 0.1 * rng.standard_normal((3, images, 4)),
    }
    summary = {"mask_size": mask, "jacobian": {"pixels": PIXELS, "p": P},
               "pca": {"abs_cosine": [0.95] * 10, "subspace_overlap": [0.9] * 10},
               "biharmonic_phi_p": {"hole": {name: [1.0] * len(P) for name in PIXELS}}}
    return Results(summary, {**defaults, **{f"jacobian.phi_p_{d}": curve for d in ("code", "hole", "paper")}, **arrays})


def by_id(results: Results) -> dict[str, dict]:
    return {e["id"]: e for e in F.findings(results, resamples=500)}


def test_every_claim_has_every_field_and_a_verdict():
    entries = F.findings(constructed({"corner": 0.7, "edge": 0.8, "centre": 0.5}, noise=0.01), resamples=200)
    assert [e["id"] for e in entries] == [c.id for c in F.CLAIMS]
    for e in entries:
        assert set(e) == {"id", "claim", "statistic", "value", "interval", "interval_note", "threshold", "direction",
                          "verdict", "authors"}
        assert e["verdict"] in (F.HOLDS, F.FAILS, F.INCONCLUSIVE) and e["interval_note"]
        if e["interval"] is not None:
            assert e["interval"][0] <= e["value"] <= e["interval"][1]


@pytest.mark.parametrize("phi, verdict", [
    ({"corner": 0.7, "edge": 0.8, "centre": 0.5}, F.HOLDS),    # local by construction: outer pixels well above the centre
    ({"corner": 0.4, "edge": 0.45, "centre": 0.6}, F.FAILS),   # the centre more local
    ({"corner": 0.6, "edge": 0.6, "centre": 0.6}, F.INCONCLUSIVE),  # equal up to the noise
])
def test_outer_pixels_against_the_centre_give_each_verdict(phi, verdict):
    entry = by_id(constructed(phi, noise=0.05))["outer_more_local"]
    assert entry["verdict"] == verdict
    expected = min(phi["corner"], phi["edge"]) - phi["centre"]
    assert entry["value"] == pytest.approx(expected, abs=0.05)  # within the noise's mean over 16 images x ~4 sigma


def test_edge_against_corner_neck_and_diffusion():
    offsets = np.zeros((16, 4, 2))
    offsets[:, 2, 0] = 3.0 + np.random.default_rng(1).standard_normal(16)  # the centre's weight 3 rows below it
    found = by_id(constructed({"corner": 0.6, "edge": 0.7, "centre": 0.5}, noise=0.02, **{"jacobian.centroid_offsets": offsets}))
    assert found["edge_more_local_than_corner"]["verdict"] == F.HOLDS
    assert found["edge_more_local_than_corner"]["value"] == pytest.approx(0.1, abs=0.02)
    assert found["neck"]["verdict"] == F.HOLDS and found["neck"]["value"] == pytest.approx(offsets[:, 2, 0].mean())
    # biharmonic's phi from the hole's edge is 1 here: the CNN (0.5-0.7) is less local
    assert found["less_local_than_diffusion"]["verdict"] == F.HOLDS
    assert found["outer_more_local"]["authors"] == 0.026  # 64 mask: the authors' value
    assert by_id(constructed({}, mask=16))["outer_more_local"]["authors"] is None  # they give none at 16


@pytest.mark.parametrize("period", [4, 8, 16])
def test_a_planted_grid_is_found_and_a_smooth_map_is_not(period):
    """A 10 % grid on a smooth off-centre blob (a weight map's envelope) against the blob alone:
    the grid's period is found and the claim holds; the blob alone, however placed, fails."""
    y, x = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    noise = 0.02 * torch.rand(128, 128, generator=torch.Generator().manual_seed(0))
    blobs = [torch.exp(-((y - cy) ** 2 + (x - 64) ** 2) / (2 * 20.0**2)) + noise for cy in (64, 70, 90)]
    gridded = [grid_period(b * (1 + 0.1 * torch.cos(2 * torch.pi * x / period))) for b in blobs]
    assert [g["period_cols"] for g in gridded] == [period] * 3
    plain = [grid_period(b) for b in blobs]
    strongest = lambda g: max(g["prominence_rows"], g["prominence_cols"])  # noqa: E731  what report.py keeps
    # fixed data, so CPUs differ only by rounding: planted grids stand > 7x above their neighbours, the blobs < 2.6
    assert min(map(strongest, gridded)) > 7 and max(map(strongest, plain)) < 2.6
    rows = lambda gs: np.repeat(np.array([[strongest(g)] * 4 for g in gs]), [6, 5, 5], axis=0)  # noqa: E731  16 images
    assert by_id(constructed({}, **{"jacobian.grid_prominence": rows(gridded)}))["faint_grid"]["verdict"] == F.HOLDS
    assert by_id(constructed({}, **{"jacobian.grid_prominence": rows(plain)}))["faint_grid"]["verdict"] == F.FAILS


def test_pca_claims_on_a_known_spectrum():
    """Originals with a known spectrum; reconstructions = originals / 2: half the amplitude, a quarter
    of the variance, the same eigenvectors, all their energy in the originals' components."""
    from analysis.pca import subspace_overlap
    from inpaint.pca import fit_pca

    rng = np.random.default_rng(0)
    scales = np.array([8.0, 4.0, 2.0, 1.0] + [0.01] * 12)
    originals = torch.from_numpy(rng.standard_normal((400, 16)) * scales)
    reconstructions = originals / 2
    pca_o, pca_r = fit_pca([originals]), fit_pca([reconstructions])
    deviation = lambda v, p: (v - p.mean).square().sum(1).numpy()  # noqa: E731
    coefficients = (reconstructions @ pca_o.components(10)).norm(dim=1) / reconstructions.norm(dim=1)
    results = constructed({}, **{
        "pca.deviation_originals": deviation(originals, pca_o), "pca.deviation_reconstructions": deviation(reconstructions, pca_r),
        "pca.energy_captured_10": coefficients.numpy(),
        "pca.subspace_overlap_bootstrap": np.ones((20, 10)),
    })
    results.summary["pca"]["subspace_overlap"] = subspace_overlap(pca_o, pca_r, 10).tolist()
    found = by_id(results)
    assert found["less_energy"]["value"] == pytest.approx(0.25, rel=1e-9)  # exact: the same vectors, halved
    assert found["less_energy"]["verdict"] == F.HOLDS
    assert found["eigenvectors_match"]["value"] == pytest.approx(1.0, abs=1e-6) and found["eigenvectors_match"]["verdict"] == F.HOLDS
    assert found["top10_capture"]["verdict"] == F.HOLDS and found["top10_capture"]["value"] > 0.999


def test_subspace_overlap_ignores_swaps_and_sees_other_directions():
    """The reconstructions' 2nd and 3rd directions swapped (the originals' 3rd grown past the 2nd):
    F4's i-th to i-th |cos| drops to ~0 there, the top-5 overlap stays 1. The originals' 5th direction
    gone from the reconstructions (their 5th is the originals' 6th): the overlap loses 1/5."""
    from analysis.pca import abs_cosine, subspace_overlap
    from inpaint.pca import fit_pca

    rng = np.random.default_rng(0)
    originals = torch.from_numpy(rng.standard_normal((2000, 16)) * np.array([8.0, 4.0, 3.0, 2.0, 1.0, 0.5] + [0.01] * 10))
    a = fit_pca([originals])
    swapped = fit_pca([originals * torch.tensor([1.0, 0.7, 1.2] + [1.0] * 13, dtype=torch.float64)])  # 2.8 and 3.6
    assert abs_cosine(a, swapped, 5)[1:3].max() < 0.05
    assert subspace_overlap(a, swapped, 5)[4] == pytest.approx(1.0, abs=1e-3)
    missing = fit_pca([originals * torch.tensor([1.0] * 4 + [0.0] + [1.0] * 11, dtype=torch.float64)])
    assert subspace_overlap(a, missing, 5)[4] == pytest.approx(0.8, abs=1e-3)


def test_projection_and_linearity():
    gain = by_id(constructed({}))["projection_less_distortion"]
    assert gain["value"] == pytest.approx(0.5) and gain["verdict"] == F.HOLDS
    worse = by_id(constructed({}, **{"pca.projection_psnr": np.full((2, 32), 19.0)}))["projection_less_distortion"]
    assert worse["verdict"] == F.FAILS
    linear = by_id(constructed({}))["exactly_linear"]
    assert linear["verdict"] == F.HOLDS and linear["interval"] is None and "no interval" in linear["interval_note"]
    biased = by_id(constructed({}, **{"jacobian.linearity_error": np.full(16, 0.3)}))["exactly_linear"]
    assert biased["verdict"] == F.FAILS  # a net bias of 30 % of the output is no rounding


def test_verdicts_and_the_bootstrap_seed():
    assert F.verdict((0.1, 0.3), 0.2, 0.0, True) == F.HOLDS
    assert F.verdict((-0.3, -0.1), -0.2, 0.0, True) == F.FAILS
    assert F.verdict((-0.1, 0.3), 0.1, 0.0, True) == F.INCONCLUSIVE
    assert F.verdict((0.7, 0.9), 0.8, 1.0, False) == F.HOLDS  # below the threshold is the claim's side
    assert F.verdict(None, 2.0, 1.0, False) == F.FAILS
    values = np.random.default_rng(3).standard_normal(50)
    assert F.bootstrap([values], np.mean, 300, seed=7) == F.bootstrap([values], np.mean, 300, seed=7)
    assert F.bootstrap([values], np.mean, 300, seed=7) != F.bootstrap([values], np.mean, 300, seed=8)
    low, high = F.bootstrap([values], np.mean, 2000)
    assert low < values.mean() < high and high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(50), rel=0.25)


@pytest.mark.parametrize("cnn, verdict", [(2.0, F.HOLDS), (9.0, F.FAILS), (5.75, F.INCONCLUSIVE)])
def test_the_cnn_between_diffusion_and_the_exemplar(cnn, verdict):
    """Diffusion's sources 1.5 px from the hole, the exemplar's 10: halfway is 5.75."""
    rng = np.random.default_rng(0)
    distance = np.stack([np.full((16, 4), d) for d in (cnn, 1.5, 10.0)]) + 0.5 * rng.standard_normal((3, 16, 4))
    found = by_id(constructed({}, **{"sources.distance": distance}))
    position = found["nearer_diffusion_than_exemplar"]
    centre = distance[:, :, 2].mean(1)
    assert position["value"] == pytest.approx((centre[0] - centre[1]) / (centre[2] - centre[1]))
    assert position["verdict"] == verdict
    assert found["farther_than_diffusion"]["verdict"] == F.HOLDS and found["farther_than_diffusion"]["value"] == pytest.approx(
        centre[0] - centre[1])


def test_no_position_when_the_exemplar_draws_no_farther_than_diffusion():
    distance = np.stack([np.full((16, 4), d) for d in (3.0, 2.0, 2.0)])
    found = by_id(constructed({}, **{"sources.distance": distance}))
    assert found["nearer_diffusion_than_exemplar"]["verdict"] == F.NOT_APPLICABLE
    assert "exemplar drew no farther" in found["nearer_diffusion_than_exemplar"]["interval_note"]


def test_a_cross_run_verdict_holds_only_where_it_holds_for_every_seed():
    def pair(gap: float, seed: int) -> list:
        return [constructed({"centre": 0.6 + gap}, noise=0.02, mask=16, seed=seed), constructed({"centre": 0.6}, noise=0.02, mask=64, seed=seed + 1)]

    runs = pair(0.3, 0) + pair(0.3, 2)
    found = {e["id"]: e for e in F.cross_run_findings(runs, ["0", "0", "1", "1"])}["smaller_mask_more_local"]
    assert found["verdict"] == found["pooled_verdict"] == F.HOLDS
    assert [(e["seed"], e["verdict"]) for e in found["per_seed"]] == [("0", F.HOLDS), ("1", F.HOLDS)]
    runs = pair(0.3, 0) + pair(-0.1, 2)  # the second seed's 16 mask is the less local: pooled it still holds
    found = {e["id"]: e for e in F.cross_run_findings(runs, ["0", "0", "1", "1"])}["smaller_mask_more_local"]
    assert found["pooled_verdict"] == F.HOLDS and found["verdict"] == F.INCONCLUSIVE
    assert [e["verdict"] for e in found["per_seed"]] == [F.HOLDS, F.FAILS]
    assert "per_seed" not in F.cross_run_findings(runs)[0]  # without seeds: pooled, as before


def test_cross_run_claims_need_both_masks():
    small = constructed({"centre": 0.9}, noise=0.02, mask=16, **{"jacobian.grid_period": np.full((16, 4), 4.0)})
    large = constructed({"centre": 0.6}, noise=0.02, mask=64, seed=1, **{"jacobian.grid_period": np.full((16, 4), 16.0)})
    found = {e["id"]: e for e in F.cross_run_findings([small, large])}
    assert found["smaller_mask_more_local"]["verdict"] == F.HOLDS
    assert found["smaller_mask_more_local"]["value"] == pytest.approx(0.3, abs=0.02)
    assert found["grid_grows_with_mask"]["value"] == 12.0
    assert F.cross_run_findings([small, small]) == []  # one mask size: nothing to compare
