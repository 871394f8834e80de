"""The paper's claims, tested on one run's saved results (and across runs): a value, a 95 %
interval, a threshold and a verdict for each.

Every claim is one entry of :data:`CLAIMS` (single run) or :data:`CROSS_RUN_CLAIMS` (a comparison):
an id, the claim in one sentence, how its statistic is computed, the threshold it must clear, the
authors' CelebA value where they give one, and a function of the results. Intervals are
percentile bootstraps over the analysed images (seeded, so reproducible): the per-image values are
kept in ``results.npz``. The verdict is ``holds`` when the whole interval lies on the claim's side
of the threshold, ``fails`` when it lies on the other side, ``inconclusive`` when it straddles it,
``not applicable`` when the statistic is not defined for the run (its note says why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.jacobian import AUTHORS_P
from analysis.results import Results

HOLDS, FAILS, INCONCLUSIVE, NOT_APPLICABLE = "holds", "fails", "inconclusive", "not applicable"
FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Measure:
    """What a claim's function returns: the value, per-image values and the statistic of a
    resample of them (for the bootstrap), or an interval computed otherwise, or a note saying
    why there is none."""

    value: float
    samples: Sequence[np.ndarray] = ()  # arrays whose first axis is the image; resampled together
    statistic: Callable[..., float] | None = None  # of the resampled arrays
    interval: tuple[float, float] | None = None
    note: str = ""
    every: bool = False  # the statistic is a vector, the claim holds for every entry (see bootstrap_every)


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    statistic: str
    threshold: float
    above: bool  # the claim holds when the statistic is above the threshold (else below)
    measure: Callable[..., Measure | None]  # of the results (or the runs), None: not measurable here
    authors: float | None = None


def bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., float], resamples: int = 2000,
              seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile interval of ``statistic(*samples)`` over ``resamples`` draws of the
    images (the first axis, the same draw for every array) with replacement."""
    n = len(samples[0])
    rng = np.random.default_rng(seed)
    values = np.array([statistic(*(a[pick] for a in samples)) for pick in rng.integers(0, n, (resamples, n))])
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_every(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """For a claim that must hold for every entry of a vector statistic (every pixel and p): the 95 %
    percentile interval of each entry, then (smallest lower bound, smallest upper bound). So the
    verdict holds when every entry's interval clears the threshold, fails when one entry's lies below
    it, and is inconclusive otherwise; the minimum's own bootstrap would be biased low when entries tie."""
    n = len(samples[0])
    rng = np.random.default_rng(seed)
    values = np.array([statistic(*(a[pick] for a in samples)) for pick in rng.integers(0, n, (resamples, n))])
    low, high = np.percentile(values, [2.5, 97.5], axis=0)
    return float(low.min()), float(high.min())


def verdict(interval: tuple[float, float] | None, value: float, threshold: float, above: bool) -> str:
    low, high = interval if interval is not None else (value, value)
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if not above:
        low, high, threshold = -high, -low, -threshold
    return HOLDS if low > threshold else FAILS if high < threshold else INCONCLUSIVE


def evaluate(claims: Sequence[Claim], *inputs, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One JSON-ready entry per claim that can be measured on ``inputs``."""
    out = []
    for claim in claims:
        measured = claim.measure(*inputs)
        if measured is None:
            continue
        interval, note = measured.interval, measured.note
        if not np.isfinite(measured.value):
            out.append({
                "id": claim.id, "claim": claim.claim, "statistic": claim.statistic, "value": None, "interval": None,
                "interval_note": note or "the statistic is not finite for this run", "threshold": claim.threshold,
                "direction": ">" if claim.above else "<", "verdict": NOT_APPLICABLE, "authors": claim.authors,
            })
            continue
        if interval is None and measured.statistic is not None:
            interval = (bootstrap_every if measured.every else bootstrap)(measured.samples, measured.statistic, resamples, seed)
            n = len(measured.samples[0])
            note = note or f"percentile bootstrap over the {n} analysed images, {resamples} resamples, seed {seed}" + (
                "; for every pixel and p: from the smallest lower to the smallest upper bound of their intervals" if measured.every else "")
        value = float(measured.value)
        out.append({
            "id": claim.id, "claim": claim.claim, "statistic": claim.statistic, "value": value,
            "interval": list(interval) if interval is not None else None, "interval_note": note,
            "threshold": claim.threshold, "direction": ">" if claim.above else "<",
            "verdict": verdict(interval, value, claim.threshold, claim.above), "authors": claim.authors,
        })
    return out


# ---------------------------------------------------------------------------------------------
# single-run claims: functions of one run's Results

def _phi(results: Results, definition: str = "code") -> tuple[np.ndarray, dict[str, int], list[int]]:
    """Per-image phi_p ``[J, 4, P]``, the pixels' rows, and the columns of the authors' p."""
    jac = results.summary["jacobian"]
    rows = {name: k for k, name in enumerate(jac["pixels"])}
    return results.arrays[f"jacobian.phi_p_{definition}"], rows, [jac["p"].index(p) for p in AUTHORS_P]


def _eigenvectors(results: Results) -> Measure | None:
    overlap = results.summary["pca"].get("subspace_overlap")
    if overlap is None or len(overlap) < 5:  # results of an older version, or fewer than 5 components
        return None
    replicates = results.arrays.get("pca.subspace_overlap_bootstrap")
    if replicates is None or not len(replicates):
        return Measure(overlap[4], note="no interval: analysis.pca_resamples=0 (each resample refits both PCAs)")
    low, high = np.nanpercentile(replicates[:, 4], [2.5, 97.5])
    return Measure(overlap[4], interval=(float(low), float(high)),
                   note=f"percentile bootstrap: both PCAs refitted on {len(replicates)} resamples of the holdout crops")


def _variance_ratio(results: Results) -> Measure:
    o, r = results.arrays["pca.deviation_originals"], results.arrays["pca.deviation_reconstructions"]
    return Measure(float(r.sum() / o.sum()), (o, r), lambda o, r: r.sum() / o.sum(),
                   note="percentile bootstrap over the holdout images (the means kept fixed)")


def _top10(results: Results) -> Measure:
    ec = results.arrays["pca.energy_captured_10"]
    return Measure(float(ec.mean()), (ec,), np.mean, note="percentile bootstrap over the holdout images (the components kept fixed)")


def _projection(results: Results) -> Measure | None:
    projected, raw = results.arrays["pca.projection_psnr"], results.arrays["pca.reconstruction_psnr"]
    if not len(projected):
        return None
    reached = np.isfinite(raw)  # random holes may miss the PCA's window: nothing to project there
    if not reached.any():
        return Measure(float("nan"), note="not applicable: no hole reached the PCA's window")
    gain = (projected[:, reached] - raw[reached]).T  # [N, K]
    return Measure(float(gain.mean(0).max()), (gain,), lambda g: g.mean(0).max(),
                   note="percentile bootstrap over the holdout images (the components kept fixed)")


def _outer_vs_centre(results: Results) -> Measure:
    phi, row, ps = _phi(results)
    diffs = np.stack([phi[:, row[name], ps] - phi[:, row["centre"], ps] for name in ("corner", "edge")], axis=1)  # [J, 2, 4]
    return Measure(float(diffs.mean(0).min()), (diffs,), lambda d: d.mean(0).ravel(), every=True)


def _edge_vs_corner(results: Results) -> Measure:
    phi, row, ps = _phi(results)
    diff = (phi[:, row["edge"], ps] - phi[:, row["corner"], ps]).mean(1)
    return Measure(float(diff.mean()), (diff,), np.mean)


def _neck(results: Results) -> Measure:
    rows = results.arrays["jacobian.centroid_offsets"][:, list(results.summary["jacobian"]["pixels"]).index("centre"), 0]
    return Measure(float(rows.mean()), (rows,), np.mean)


def _grid(results: Results) -> Measure | None:
    if "jacobian.grid_prominence" not in results.arrays:  # results of an older version of grid_period
        return None
    prominence = results.arrays["jacobian.grid_prominence"][:, list(results.summary["jacobian"]["pixels"]).index("centre")]
    return Measure(float(prominence.mean()), (prominence,), np.mean)


def _diffusion(results: Results) -> Measure:
    phi, row, ps = _phi(results, "hole")
    biharmonic = np.array([results.summary["biharmonic_phi_p"]["hole"]["centre"][p] for p in ps], dtype=np.float64)
    gap = (biharmonic[None] - phi[:, row["centre"], ps]).mean(1)  # [J]
    return Measure(float(gap.mean()), (gap,), np.mean)


def _sources(results: Results) -> tuple[np.ndarray, ...] | None:
    """Per image, the mean distance from the hole of the centre pixel's weight for the CNN, diffusion
    and the exemplar (``[J]`` each), or None for results saved before they were measured."""
    if "sources.distance" not in results.arrays:
        return None
    centre = list(results.summary["jacobian"]["pixels"]).index("centre")
    return tuple(results.arrays["sources.distance"][:, :, centre])


def _position(cnn: np.ndarray, diffusion: np.ndarray, exemplar: np.ndarray) -> float:
    return float((cnn.mean() - diffusion.mean()) / (exemplar.mean() - diffusion.mean()))


def _between_poles(results: Results) -> Measure | None:
    sources = _sources(results)
    if sources is None:
        return None
    if not sources[2].mean() > sources[1].mean():
        return Measure(float("nan"), note="not applicable: the exemplar drew no farther from the hole than diffusion here")
    return Measure(_position(*sources), sources, _position)


def _beyond_diffusion(results: Results) -> Measure | None:
    sources = _sources(results)
    if sources is None:
        return None
    gap = sources[0] - sources[1]
    return Measure(float(gap.mean()), (gap,), np.mean)


def _linear(results: Results) -> Measure | None:
    errors = results.arrays["jacobian.linearity_error"]
    return Measure(float(errors.max()), interval=None,
                   note="no interval: the largest error over the analysed images, compared with float32's rounding")


def linearity_tolerance(image_size: int = 128) -> float:
    """float32 rounding of A_y y's sums over the 3 x S x S inputs: 16 eps sqrt(terms)."""
    return 16 * FLOAT32_EPS * float(np.sqrt(3 * image_size * image_size))


CLAIMS: tuple[Claim, ...] = (
    Claim("eigenvectors_match", "The reconstructions' leading eigenvectors match the originals'.",
          "mean squared cosine of the principal angles between the originals' and the reconstructions' top-5 eigenvector "
          "subspaces (0.64: an RMS cosine of 0.8; unlike the i-th to i-th |cos| of F4, unchanged when eigenvectors of "
          "near-equal eigenvalues swap)", 0.64, True, _eigenvectors),
    Claim("less_energy", "The reconstructions have less variance than the originals.",
          "total variance of the reconstructions / that of the originals (m x m crops)", 1.0, False, _variance_ratio, 0.857),
    Claim("top10_capture", "The top 10 principal components of the originals capture most of the reconstructions' energy.",
          "mean over holdout images of the uncentred EC_10 (equation 9)", 0.9, True, _top10, 0.976),
    Claim("projection_less_distortion", "Projected on the originals' principal components, the reconstructions are closer "
          "to the originals for some k.", "max over k of the mean PSNR gain (dB) of the centred projection on k components "
          "over the raw reconstruction", 0.0, True, _projection),
    Claim("outer_more_local", "Corner and edge output pixels are more local than the centre at every p.",
          "min over corner, edge and the authors' p (0.1, 0.25, 0.35, 0.5) of mean phi_p(pixel) - phi_p(centre), authors' code "
          "definition", 0.0, True, _outer_vs_centre, 0.026),  # from their table: corner - centre at p = 0.5
    Claim("edge_more_local_than_corner", "The edge output pixel is more local than the corner.",
          "mean over images and the authors' p of phi_p(edge) - phi_p(corner)", 0.0, True, _edge_vs_corner, 0.035),
    Claim("neck", "The centre output pixel weighs the region below it more (the \"neck\").",
          "mean row offset (pixels, > 0: below) of the centroid of the centre pixel's |weight map| outside the hole", 0.0, True,
          _neck),
    Claim("faint_grid", "The weight maps carry a faint grid.",
          "mean prominence (peak power over its spectral neighbours, analysis.jacobian.grid_period) of the centre pixel's "
          "channel-0 map: noise ~1.3, a smooth envelope up to ~2, a planted 10 % grid 7 or more", 3.0, True, _grid),
    Claim("less_local_than_diffusion", "The CNN is less local than diffusion (the biharmonic operator).",
          "mean over the authors' p of phi_p(biharmonic) - phi_p(CNN) of the centre pixel, both from the hole's edge (the "
          "definition defined for both; corner and edge lie in the overlap ring, where the biharmonic operator keeps the "
          "known input pixel itself)", 0.0, True, _diffusion),
    Claim("nearer_diffusion_than_exemplar", "The CNN draws its weight from nearer the hole than an exemplar method: it "
          "sits nearer the diffusion pole.", "position between the poles, (D_CNN - D_diffusion) / (D_exemplar - "
          "D_diffusion): 0 at diffusion (biharmonic), 1 at the exemplar; D = mean over images of the mean distance from "
          "the hole of the centre output pixel's |weight| on known pixels", 0.5, False, _between_poles),
    Claim("farther_than_diffusion", "The CNN draws its weight from farther from the hole than diffusion.",
          "mean over images of D_CNN - D_diffusion (pixels), D as above", 0.0, True, _beyond_diffusion),
    Claim("exactly_linear", "The network is exactly linear at each analysed input: A_y y = f(y).",
          "max over analysed images of ||A_y y - f(y)|| / ||f(y)||", linearity_tolerance(), False, _linear),
)


def findings(results: Results, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """The single-run claims on ``results``, each with the authors' value where they give one for
    this mask (their numbers are for the 64 mask on CelebA)."""
    entries = evaluate(CLAIMS, results, resamples=resamples, seed=seed)
    if results.summary["mask_size"] != 64:
        for entry in entries:
            entry["authors"] = None
    return entries


# ---------------------------------------------------------------------------------------------
# cross-run claims: functions of {mask size: [Results]}

def _pooled(by_mask: Mapping[int, Sequence[Results]], m: int, key: str) -> np.ndarray:
    return np.concatenate([r.arrays[key] for r in by_mask[m]])


def _smaller_mask_centre(by_mask: Mapping[int, Sequence[Results]]) -> Measure | None:
    if not {16, 64} <= set(by_mask):
        return None
    _, row, ps = _phi(by_mask[16][0])
    a, b = (np.concatenate([_phi(r)[0][:, row["centre"]][:, ps] for r in by_mask[m]]).mean(1) for m in (16, 64))
    return Measure(float(a.mean() - b.mean()), interval=_two_sample(a, b, np.random.default_rng(0)),
                   note="percentile bootstrap, each mask's images resampled on their own, 2000 resamples, seed 0")


def _grid_grows(by_mask: Mapping[int, Sequence[Results]]) -> Measure | None:
    if not {16, 64} <= set(by_mask):
        return None
    centre = list(by_mask[16][0].summary["jacobian"]["pixels"]).index("centre")
    a, b = (_pooled(by_mask, m, "jacobian.grid_period")[:, centre] for m in (64, 16))
    return Measure(float(a.mean() - b.mean()), interval=_two_sample(a, b, np.random.default_rng(0)),
                   note="percentile bootstrap, each mask's images resampled on their own, 2000 resamples, seed 0")


def _two_sample(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float]:
    diffs = [a[rng.integers(0, len(a), len(a))].mean() - b[rng.integers(0, len(b), len(b))].mean() for _ in range(resamples)]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


CROSS_RUN_CLAIMS: tuple[Claim, ...] = (
    Claim("smaller_mask_more_local", "The 16 mask's centre pixel is more local than the 64 mask's.",
          "mean over the authors' p of phi_p(centre) at m = 16 minus at m = 64 (runs of one mask size pooled)", 0.0, True,
          _smaller_mask_centre, 0.195),
    Claim("grid_grows_with_mask", "The weight maps' grid period grows with the mask size.",
          "mean period (pixels) of the centre pixel's most prominent grid at m = 64 minus at m = 16 (a grid's size only "
          "where faint_grid holds; else the period of the strongest ripple)", 0.0, True, _grid_grows),
)


def across_seeds(verdicts: Sequence[str]) -> str:
    """One verdict for a claim measured once per seed: it holds (fails) only when it holds (fails)
    for every seed; not applicable when it is for every seed; else inconclusive."""
    distinct = set(verdicts)
    return distinct.pop() if len(distinct) == 1 else INCONCLUSIVE


def _by_mask(runs: Sequence[Results]) -> dict[int, list[Results]]:
    by_mask: dict[int, list[Results]] = {}
    for results in runs:
        if "jacobian.grid_period" in results.arrays:  # results saved before the findings lack the per-image values
            by_mask.setdefault(results.summary["mask_size"], []).append(results)
    return by_mask


def cross_run_findings(runs: Sequence[Results], seeds: Sequence[str] | None = None) -> list[dict]:
    """The cross-run claims on runs of several mask sizes (none when the sizes do not differ).

    With each run's ``seeds`` and more than one seed among them, each claim is also measured on each
    seed's runs alone (``per_seed``), and its verdict is theirs :func:`across_seeds`; the value and
    interval stay those of all runs pooled (their verdict kept as ``pooled_verdict``)."""
    entries = evaluate(CROSS_RUN_CLAIMS, _by_mask(runs))
    groups: dict[str, list[Results]] = {}
    for results, seed in zip(runs, seeds or ()):
        groups.setdefault(seed, []).append(results)
    if len(groups) < 2:
        return entries
    per_seed = {seed: {e["id"]: e for e in evaluate(CROSS_RUN_CLAIMS, _by_mask(group))} for seed, group in groups.items()}
    for entry in entries:
        measured = [(seed, found[entry["id"]]) for seed, found in per_seed.items() if entry["id"] in found]
        entry["per_seed"] = [{"seed": seed, "value": e["value"], "interval": e["interval"], "verdict": e["verdict"]}
                             for seed, e in measured]
        entry["pooled_verdict"] = entry["verdict"]
        entry["verdict"] = across_seeds([e["verdict"] for _, e in measured]) if measured else INCONCLUSIVE
        entry["interval_note"] += (f"; the verdict across {len(measured)} seeds: it holds (fails) only when it holds (fails) "
                                   "for each seed's runs alone")
    return entries


def table(entries: Sequence[dict]) -> str:
    """The findings as a few lines of text, for the log at the end of a run."""
    lines = []
    for e in entries:
        if e["value"] is None:
            lines.append(f"{e['verdict']:>14}  {e['id']:<28} ({e['interval_note']})")
            continue
        interval = "[{:.4g}, {:.4g}]".format(*e["interval"]) if e["interval"] else "(no interval)"
        authors = f"  authors {e['authors']:.3g}" if e["authors"] is not None else ""
        lines.append(f"{e['verdict']:>14}  {e['id']:<28} {e['value']:.4g} {interval} {e['direction']} {e['threshold']:.3g}{authors}")
    return "\n".join(lines)
