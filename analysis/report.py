"""Every analysis of the paper, run on one generator and its holdout images: numbers and arrays.

:func:`analyse` streams the holdout once (inpainting, hole metrics, PCA crops), then runs the
global analysis (PCA), the local one (Jacobian rows, phi_p, SVD) and the classical baselines on the
first images, and returns :class:`~analysis.results.Results`; nothing is drawn here
(``analysis.figures.run_figures`` draws from the results). The Lightning callback and
``analyze.py`` both call it, so their outputs agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from analysis.baselines import BASELINES, biharmonic_weight_maps, compare_baselines, hole_metrics
from analysis.findings import findings
from analysis.jacobian import (
    AUTHORS_P,
    centroid_offset,
    grid_period,
    homogeneity_error,
    jacobian,
    jacobian_factors,
    named_pixels,
    net_bias,
    phi_p,
    spectrum_stats,
    weight_map,
)
from analysis.pca import projection_psnr_per_image, psnr, subspace_overlap
from analysis.pca import summary as pca_summary
from analysis.results import Results, json_ready
from inpaint.data import to_float
from inpaint.errors import InpaintError
from inpaint.models import ContextEncoder
from inpaint.pca import crop_vectors, fit_pca, to_vectors

PHI_DEFINITIONS = ("code", "hole", "paper")


@dataclass
class AnalysisSettings:
    """What to analyse and how much of it.

    Args:
        max_images: holdout images used (None: all of them).
        grayscale: PCA on luma crops (the paper) or RGB crops.
        energy_ks: numbers of components for energy captured (F6) and projection PSNR.
        projection_ks: numbers of components shown projected in F5.
        examples: images shown in F1 and F5.
        baselines: classical methods run on the same holdout images and hole.
        baseline_images: how many holdout images the baselines run on (biharmonic costs ~30 ms each).
        jacobian_images: images whose named-pixel Jacobian rows, phi_p, centroids and grid are
            measured (averaged, and kept per image for the findings' intervals), and whose
            A_y y = f(y) is checked (about 1.5 s an image at the demo's width on 2 CPU cores).
        svd: A_y of the first image, as its two halves through the code, and its exact spectrum
            (seconds at the demo's width, about a minute and a half at paper width on 2 CPU cores).
        ps: the p of the phi_p curves (the authors' p are always added).
        pca_resamples: bootstrap resamples of the holdout crops on which both PCAs are fitted again,
            for the interval of the eigenvector similarity (0: none); each costs two PCA fits
            (about 1 s for 1,000 crops of 64 x 64 on 2 CPU cores).
        resamples, seed: bootstrap resamples of the per-image statistics for the findings'
            intervals, and the seed that makes them reproducible.
    """

    max_images: int | None = None
    grayscale: bool = True
    energy_ks: tuple[int, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
    projection_ks: tuple[int, ...] = (25, 50, 100, 250, 500)
    examples: int = 5
    baselines: tuple[str, ...] = ("mean", "telea", "ns", "biharmonic")
    baseline_images: int = 200
    jacobian_images: int = 16
    svd: bool = True
    ps: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(21))
    pca_resamples: int = 20
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse, with one :class:`InpaintError`, any value no analysis can run with, so that
        train.py finds it when the config is composed rather than at the end of the fit."""
        def whole(value: object, least: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= least

        for name, least in (("examples", 1), ("baseline_images", 1), ("jacobian_images", 1), ("pca_resamples", 0),
                            ("resamples", 10), ("seed", 0)):
            if not whole(getattr(self, name), least):
                raise InpaintError(f"analysis.{name} must be an integer >= {least}, not {getattr(self, name)!r}.")
        if self.max_images is not None and not whole(self.max_images, 2):
            raise InpaintError(f"analysis.max_images must be null (all) or an integer >= 2 (the PCA needs two images), not {self.max_images!r}.")
        for name in ("grayscale", "svd"):
            if not isinstance(getattr(self, name), bool):
                raise InpaintError(f"analysis.{name} must be true or false, not {getattr(self, name)!r}.")
        for name in ("energy_ks", "projection_ks"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(whole(k, 1) for k in values):
                raise InpaintError(f"analysis.{name} must be a list of positive integers (numbers of components), not {values!r}.")
        unknown = [b for b in self.baselines if b not in BASELINES] if isinstance(self.baselines, (list, tuple)) else [self.baselines]
        if unknown:
            raise InpaintError(f"analysis.baselines: unknown method(s) {unknown}; choose from {sorted(BASELINES)} (or [] for none).")
        if not isinstance(self.ps, (list, tuple)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in self.ps
        ):
            raise InpaintError(f"analysis.ps must be a list of numbers in [0, 1] (fractions of the margin), not {self.ps!r}.")
        self.energy_ks, self.projection_ks = tuple(self.energy_ks), tuple(self.projection_ks)
        self.baselines, self.ps = tuple(self.baselines), tuple(float(p) for p in self.ps)

    @classmethod
    def from_config(cls, settings: Mapping | None) -> AnalysisSettings:
        """From the ``analysis`` config group (a plain mapping), naming any key that is not a setting."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise InpaintError(f"unknown analysis setting(s) {unknown}: the settings are {[f.name for f in fields(cls)]} (conf/analysis/default.yaml).")
        return cls(**settings)


@dataclass
class _Holdout:
    """What one pass over the holdout keeps: crop vectors of all images, the first images whole."""

    originals: list[torch.Tensor] = field(default_factory=list)  # first images, [3, S, S]
    inpainted: list[torch.Tensor] = field(default_factory=list)
    crops: list[torch.Tensor] = field(default_factory=list)  # [n, D] float32, all images
    predicted: list[torch.Tensor] = field(default_factory=list)
    psnr: float = 0.0  # sums over images, divided at the end
    ssim: float = 0.0
    count: int = 0


@torch.no_grad()
def _stream(generator: ContextEncoder, batches: Iterable[torch.Tensor], settings: AnalysisSettings, keep: int) -> _Holdout:
    mask, held = generator.mask, _Holdout()
    device = next(generator.parameters()).device
    for images in batches:
        if settings.max_images is not None:
            images = images[: settings.max_images - held.count]
        if len(images) == 0:
            break
        images = to_float(images).to(device)
        prediction = generator.to_image(generator(generator.mask_input(images)).float())
        inpainted = mask.paste(images, prediction)
        metrics = hole_metrics(inpainted, images, mask)
        held.psnr += metrics["psnr"] * len(images)
        held.ssim += metrics["ssim"] * len(images)
        held.count += len(images)
        held.crops.append(crop_vectors(images, mask, settings.grayscale).float().cpu())
        # the reconstruction is the network's own m x m prediction (overlap ring included)
        held.predicted.append(to_vectors(prediction, settings.grayscale).float().cpu())
        room = keep - len(held.originals)
        held.originals += list(images[:room].cpu())
        held.inpainted += list(inpainted[:room].cpu())
    if held.count < 2:
        raise InpaintError(f"the analyses need at least 2 holdout images, got {held.count}: raise data.holdout_size.")
    return held


def analyse(
    generator: ContextEncoder, batches: Iterable[torch.Tensor], settings: AnalysisSettings | None = None
) -> Results:
    """Run every analysis on ``batches`` of holdout images (``[N, 3, S, S]``, float in [0, 1] or
    uint8), with ``generator`` in eval mode (restored afterwards) and in float32."""
    settings = settings or AnalysisSettings()
    was_training = generator.training
    generator.eval()
    try:
        with torch.autocast(next(generator.parameters()).device.type, enabled=False):
            return _analyse(generator, batches, settings)
    finally:
        generator.train(was_training)


def _array(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _analyse(generator: ContextEncoder, batches: Iterable[torch.Tensor], settings: AnalysisSettings) -> Results:
    mask = generator.mask
    keep = max(settings.examples, settings.baseline_images, settings.jacobian_images, 1)
    clock = [time.perf_counter()]
    seconds = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        seconds[name] = clock[-1] - clock[-2]

    held = _stream(generator, batches, settings, keep)
    lap("holdout_pass")
    originals, inpainted = torch.stack(held.originals), torch.stack(held.inpainted)
    summary = {
        "mask_size": mask.size,
        "image_size": mask.image_size,
        "overlap": mask.overlap,
        "bias_free": generator.bias_free,
        "holdout_images": held.count,
        "metrics": {"psnr": held.psnr / held.count, "ssim": held.ssim / held.count, "region": "hole"},
    }
    results = Results(summary)
    n = min(settings.examples, len(originals))
    results.arrays |= {
        "examples.originals": _array(originals[:n]),
        "examples.masked": _array(generator.to_image(generator.mask_input(originals[:n]))),
        "examples.inpainted": _array(inpainted[:n]),
    }
    if settings.baselines:
        b = min(settings.baseline_images, len(originals))
        summary["baselines"] = compare_baselines(originals[:b], mask, settings.baselines)
        summary["baselines_images"] = b
        summary["model_on_baseline_images"] = hole_metrics(inpainted[:b], originals[:b], mask)
    lap("baselines")
    _global(results, held, settings)
    lap("pca")
    _local(results, generator, originals[: settings.jacobian_images], settings, lap)
    summary["findings"] = findings(results, settings.resamples, settings.seed)
    lap("findings")
    summary["seconds"] = seconds
    results.summary = json_ready(results.summary)
    return results


def _global(results: Results, held: _Holdout, settings: AnalysisSettings) -> None:
    """PCA of the originals' and the reconstructions' crops: the numbers and arrays of F3-F7 and the
    projection PSNR."""
    originals, predicted = torch.cat(held.crops), torch.cat(held.predicted)
    pca_o, pca_r = fit_pca(held.crops), fit_pca(held.predicted)
    ks = [k for k in settings.energy_ks if k <= pca_o.rank]
    # per image once: the summary holds their means, the arrays the values behind the findings' intervals
    projected = (projection_psnr_per_image(predicted, originals, pca_o, ks, centred=True).cpu() if ks
                 else torch.zeros(0, len(originals), dtype=torch.float64))
    raw = psnr(predicted, originals)
    result = pca_summary(pca_o, pca_r, originals, predicted, ks, projection=projected)
    n = min(settings.examples, len(originals))
    top = min(10, pca_o.rank, pca_r.rank)
    result["grayscale"] = settings.grayscale
    result["reconstruction_psnr"] = raw.mean().item()
    result["subspace_overlap"] = subspace_overlap(pca_o, pca_r, top).tolist()
    results.summary["pca"] = result
    projection_ks = [k for k in settings.projection_ks if k <= pca_o.rank]
    projections = [pca_o.project(predicted[:n], k, centred=True) for k in projection_ks]
    k10 = min(10, pca_o.rank)
    coefficients = (predicted.to(pca_o.mean.device).double() @ pca_o.components(k10)).norm(dim=1)
    results.arrays |= {  # per holdout image, for the findings' intervals
        "pca.energy_originals": _array(originals.double().square().sum(1)),
        "pca.energy_reconstructions": _array(predicted.double().square().sum(1)),
        "pca.deviation_originals": _array((originals.double() - pca_o.mean.cpu()).square().sum(1)),
        "pca.deviation_reconstructions": _array((predicted.double() - pca_r.mean.cpu()).square().sum(1)),
        "pca.energy_captured_10": _array(coefficients.cpu() / predicted.double().norm(dim=1)),
        "pca.reconstruction_psnr": _array(raw),
        "pca.psnr_ks": np.array(ks, dtype=np.int64),
        "pca.projection_psnr": _array(projected),
        "pca.subspace_overlap_bootstrap": _pca_bootstrap(originals, predicted, top, settings),
    }
    results.arrays |= {
        "pca.components_originals": _array(pca_o.components(top)),
        "pca.components_reconstructions": _array(pca_r.components(top)),
        "pca.crops_originals": _array(originals[:n]),
        "pca.crops_reconstructions": _array(predicted[:n]),
        "pca.projection_ks": np.array(projection_ks, dtype=np.int64),
        "pca.projections": _array(torch.stack(projections)) if projections else np.zeros((0, n, pca_o.dim)),
    }


def _pca_bootstrap(originals: torch.Tensor, predicted: torch.Tensor, top: int, settings: AnalysisSettings) -> np.ndarray:
    """``[B, top]``: the top-k subspace overlaps (:func:`subspace_overlap`) with both PCAs fitted
    again on B resamples of the holdout crops (the same images for both sets), for the interval of
    the eigenvector claim."""
    generator = torch.Generator().manual_seed(settings.seed)
    rows = []
    for _ in range(settings.pca_resamples):
        pick = torch.randint(len(originals), (len(originals),), generator=generator)
        a, b = fit_pca([originals[pick]]), fit_pca([predicted[pick]])
        k = min(top, a.rank, b.rank)
        rows.append(np.pad(_array(subspace_overlap(a, b, k)), (0, top - k), constant_values=np.nan))
    return np.array(rows, dtype=np.float64).reshape(len(rows), top)


def _local(
    results: Results, generator: ContextEncoder, images: torch.Tensor, settings: AnalysisSettings, lap: Callable[[str], None]
) -> None:
    """The Jacobian: A_y y = f(y), weight maps, phi_p, centroids, grid, SVD; biharmonic beside it.
    ``lap(name)`` records the seconds since the previous lap."""
    mask = generator.mask
    m, size = mask.size, mask.image_size
    pixels = named_pixels(m)
    ps = sorted(set(settings.ps) | set(AUTHORS_P))
    device = next(generator.parameters()).device
    masked = generator.mask_input(images.to(device))
    forward_mode, reverse_mode, maps0, maps_colour = [], [], [], []
    for y in masked:
        rows = jacobian(generator, y, pixels=list(pixels.values()))  # (4, 3, 3, S, S), reverse mode
        with torch.no_grad():
            fy = generator(y[None])[0].float()
        at_pixels = torch.stack([fy[:, i, j] for i, j in pixels.values()])
        reverse_mode.append(((torch.einsum("pcdhw,dhw->pc", rows, y) - at_pixels).norm() / at_pixels.norm()).item())
        if generator.bias_free:
            forward_mode.append(homogeneity_error(generator, y))
        else:
            forward_mode.append((net_bias(generator, y).norm() / fy.norm()).item())
        maps0.append(weight_map(rows, "channel0").cpu())
        maps_colour.append(weight_map(rows, "colour").cpu())
    maps0, maps_colour = torch.stack(maps0), torch.stack(maps_colour)  # (J, 4, S, S)
    names = list(pixels)
    per_image = {d: phi_p(maps_colour, m, ps, size, d) for d in PHI_DEFINITIONS}  # (J, 4, P) each

    def curves(values: torch.Tensor) -> dict[str, list[float]]:
        mean = values.mean(0)  # over images, (4, P)
        return {name: mean[k].tolist() for k, name in enumerate(names)}

    phi = {d: curves(per_image[d]) for d in PHI_DEFINITIONS}
    phi_channel0 = {d: curves(phi_p(maps0, m, ps, size, d)) for d in PHI_DEFINITIONS}
    biharmonic_maps = biharmonic_weight_maps(mask, list(pixels.values())).float()
    biharmonic_phi = {d: curves(phi_p(biharmonic_maps[None], m, ps, size, d)) for d in PHI_DEFINITIONS}
    # A_y y = f(y): by forward mode over the whole output, and with the reverse-mode rows at the
    # named pixels; for the biased model the same numbers measure its net bias f(y) - A_y y.
    results.summary["homogeneity" if generator.bias_free else "net_bias"] = {
        "forward_mode": forward_mode,
        "reverse_mode_rows": reverse_mode,
        "max": max(forward_mode + reverse_mode),
        "definition": "||A_y y - f(y)|| / ||f(y)|| per analysed image (forward mode: all outputs, "
        "one JVP; reverse mode: the Jacobian rows of the named pixels)",
    }
    acting = maps_colour.clone()  # weights on the hole act on zeros: leave them out of the centroid
    acting[..., mask.hole, mask.hole] = 0
    centroid = {name: centroid_offset(acting[:, k].mean(0), pixels[name], mask.start) for k, name in enumerate(names)}
    centroids = [[centroid_offset(acting[j, k], pixels[name], mask.start) for k, name in enumerate(names)] for j in range(len(acting))]
    grids = [[grid_period(maps0[j, k]) for k in range(len(names))] for j in range(len(maps0))]
    strongest = [[max((g["prominence_rows"], g["period_rows"]), (g["prominence_cols"], g["period_cols"]))
                  for g in row] for row in grids]  # (prominence, period) of the more prominent axis
    results.summary["jacobian"] = {
        "images": len(images),
        "pixels": pixels,
        "p": ps,
        "phi_p": phi,
        "phi_p_channel0": phi_channel0,
        "phi_p_note": "weight maps: 'colour' = sqrt of the sum of squares over both channel axes; "
        "definitions: 'code' = authors' code (predicted square zeroed, window grows over the margin), "
        "'hole' = same with only the hole zeroed, 'paper' = equation (8)",
        "centroid_offset": centroid,
        "centroid_note": "(rows, cols) from the output pixel to the centroid of |colour weight map| outside the hole; rows > 0: below",
        "grid_period": {name: grid_period(maps0[:, k].mean(0)) for k, name in enumerate(names)},
    }
    results.summary["biharmonic_phi_p"] = biharmonic_phi
    results.arrays |= {
        "jacobian.background": _array(generator.to_image(masked[0])),
        "jacobian.weight_maps_channel0": _array(maps0[0]),
        "jacobian.weight_maps_colour": _array(maps_colour[0]),
        **{f"jacobian.phi_p_{d}": _array(values) for d, values in per_image.items()},
        "biharmonic.weight_maps": _array(biharmonic_maps),
        "jacobian.centroid_offsets": np.array(centroids, dtype=np.float64),  # [J, 4, (rows, cols)]
        "jacobian.grid_prominence": np.array([[f for f, _ in row] for row in strongest], dtype=np.float64),  # [J, 4]
        "jacobian.grid_period": np.array([[p for _, p in row] for row in strongest], dtype=np.float64),  # [J, 4]
        "jacobian.linearity_error": np.array([max(f, r) for f, r in zip(forward_mode, reverse_mode)], dtype=np.float64),
    }
    lap("jacobian_rows")
    if settings.svd:
        decoder, encoder = jacobian_factors(generator, masked[0])
        lap("jacobian_factors")
        with torch.no_grad():
            fy = generator(masked[:1])[0].float()
        ay_y = decoder @ torch.einsum("kdhw,dhw->k", encoder, masked[0])  # A_y y = P (Q y)
        results.summary["homogeneity" if generator.bias_free else "net_bias"]["full_jacobian"] = (
            (ay_y - fy).norm() / fy.norm()
        ).item()
        spectrum = spectrum_stats(decoder, encoder, mask, vectors=4)
        results.summary["jacobian"]["svd"] = spectrum["summary"]
        u, v, top = spectrum["vectors"]
        results.arrays |= {
            "svd.singular_values": _array(spectrum["singular_values"]),
            "svd.output_vectors": _array(u),
            "svd.input_vectors": _array(v),
            "svd.top": _array(top),
        }
        lap("svd")
