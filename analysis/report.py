"""Every analysis of the paper, run on one generator and its holdout images: numbers and arrays.

:func:`analyse` streams the holdout once (inpainting, hole metrics, PCA crops), then runs the
global analysis (PCA), the local one (Jacobian rows, phi_p, SVD) and the classical baselines on the
first images, and returns :class:`~analysis.results.Results`; nothing is drawn here
(``analysis.figures.run_figures`` draws from the results). The Lightning callback and
``analyze.py`` both call it, so their outputs agree.

The generator is called only through the contract of inpaint/models/contract.py (``fill``,
``predicted``, ``mask_input``, ``to_image``), so any network meeting it is analysed by the same code,
on any hole: batches are images (the centred square, ``mask``) or ``(images, known)`` pairs of
per-image holes. Pixel positions are in image coordinates. Where a measure needs a centred square
(phi_p by equation 8, the authors' reference values) it is NaN and said "not applicable".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from analysis.baselines import biharmonic_weight_maps, compare_baselines, hole_metrics
from analysis.exemplar import exemplar_field
from analysis.findings import findings
from analysis.jacobian import (
    AUTHORS_P,
    PIXEL_NAMES,
    apply_jacobian,
    available_memory,
    centroid_offset,
    dense_spectrum,
    grid_period,
    jacobian_factors,
    matrix_free_spectrum,
    phi_p,
    pixel_rows,
    region_jacobian,
    spectrum_stats,
    weight_map,
)
from analysis.locality import named_pixels, source_distance
from analysis.locality import phi_p as region_phi_p
from analysis.pca import projection_psnr_per_image, psnr, subspace_overlap
from analysis.pca import summary as pca_summary
from analysis.results import Results, json_ready
from analysis.settings import AnalysisSettings
from inpaint.data.datamodule import split_batch
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from inpaint.models import ContextEncoder
from inpaint.models.contract import Generator, as_generator
from inpaint.pca import crop_vectors, fit_pca, to_vectors

PHI_DEFINITIONS = ("code", "hole", "paper")
SOURCE_METHODS = ("cnn", "biharmonic", "exemplar")  # the first axis of results.npz's sources.* arrays


@dataclass
class _Holdout:
    """What one pass over the holdout keeps: crop vectors of all images, the first images whole."""

    originals: list[torch.Tensor] = field(default_factory=list)  # first images, [3, S, S]
    inpainted: list[torch.Tensor] = field(default_factory=list)
    known: list[torch.Tensor] = field(default_factory=list)  # first images' holes, [1, S, S] float
    holes: list[np.ndarray] = field(default_factory=list)  # every image's hole, packed bits (random holes)
    crops: list[torch.Tensor] = field(default_factory=list)  # [n, D] float32, all images
    predicted: list[torch.Tensor] = field(default_factory=list)
    psnr: float = 0.0  # sums over images, divided at the end
    ssim: float = 0.0
    count: int = 0
    window: CenterMask | None = None  # the square the PCA crops


def pca_window(mask: CenterMask | None, image_size: int) -> CenterMask:
    """The centred square whose crops the PCA compares: the mask's own m x m square, or for random
    holes the centred half of the image (64 x 64 at 128: the same window as the 64 mask)."""
    return mask if mask is not None else CenterMask(image_size, image_size // 2, 0)


def known_of(images: torch.Tensor, known: torch.Tensor | None, mask: CenterMask | None) -> torch.Tensor:
    """The batch's ``known`` ``[N, 1, S, S]``: its own, or the centred square's."""
    if known is not None:
        return known.to(images.device)
    if mask is None:
        raise InpaintError("batches of plain images need the centred mask they were masked with: pass mask=CenterMask(...) "
                           "to analyse(), or batches of (images, known) pairs.")
    square = torch.ones(1, 1, *images.shape[-2:], device=images.device)
    square[..., mask.hole, mask.hole] = 0
    return square.expand(len(images), -1, -1, -1)


@torch.no_grad()
def _stream(generator: Generator, batches: Iterable, settings: AnalysisSettings, keep: int, mask: CenterMask | None) -> _Holdout:
    held = _Holdout()
    device = next(generator.parameters()).device
    for batch in batches:
        images, known = split_batch(batch)
        if settings.max_images is not None:
            images = images[: settings.max_images - held.count]
            known = None if known is None else known[: len(images)]
        if len(images) == 0:
            break
        images = images.to(device)
        random = known is not None
        known = known_of(images, known, mask)
        held.window = window = held.window or pca_window(mask if not random else None, images.shape[-1])
        filled = generator.to_image(generator.fill(generator.mask_input(images, known), known).float())
        inpainted = torch.where(known > 0.5, images, filled)
        metrics = hole_metrics(inpainted, images, (known[:, 0] < 0.5) if random else mask)
        held.psnr += metrics["psnr"] * len(images)
        held.ssim += metrics["ssim"] * len(images)
        held.count += len(images)
        held.crops.append(crop_vectors(images, window, settings.grayscale).float().cpu())
        # the reconstruction is the network's own output over the window (the Context Encoder's ring included)
        held.predicted.append(to_vectors(window.crop(filled), settings.grayscale).float().cpu())
        if random:
            held.holes.append(np.packbits(known[:, 0].cpu().numpy() < 0.5, axis=-1))
        room = keep - len(held.originals)
        held.originals += list(images[:room].cpu())
        held.inpainted += list(inpainted[:room].cpu())
        held.known += list(known[:room].float().cpu())
    if held.count < 2:
        raise InpaintError(f"the analyses need at least 2 holdout images, got {held.count}: raise data.holdout_size.")
    return held


def analyse(
    generator: torch.nn.Module, batches: Iterable, settings: AnalysisSettings | None = None, mask: CenterMask | None = None
) -> Results:
    """Run every analysis on ``batches`` of holdout images, with ``generator`` (any module meeting
    the contract, inpaint/models/contract.py) in eval mode (restored afterwards) and in float32.

    A batch is ``[N, 3, S, S]`` images (float in [0, 1] or uint8) masked by the centred ``mask``
    (default: the generator's own, a Context Encoder's), or an ``(images, known)`` pair with each
    image's hole (``known`` ``[N, 1, S, S]``, 0 on the hole), as the data modules serve random holes."""
    settings = settings or AnalysisSettings()
    generator = as_generator(generator)
    mask = mask if mask is not None else getattr(generator, "mask", None)
    was_training = generator.training
    generator.eval()
    try:
        with torch.autocast(next(generator.parameters()).device.type, enabled=False):
            return _analyse(generator, batches, settings, mask)
    finally:
        generator.train(was_training)


def _array(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _analyse(generator: Generator, batches: Iterable, settings: AnalysisSettings, mask: CenterMask | None) -> Results:
    keep = max(settings.examples, settings.baseline_images, settings.jacobian_images, 1)
    clock = [time.perf_counter()]
    seconds = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        seconds[name] = clock[-1] - clock[-2]

    held = _stream(generator, batches, settings, keep, mask)
    lap("holdout_pass")
    random = bool(held.holes)
    originals, inpainted, known = torch.stack(held.originals), torch.stack(held.inpainted), torch.stack(held.known)
    size = originals.shape[-1]
    centred = None if random else mask
    holes = np.concatenate(held.holes) if random else None  # [N, S, ceil(S / 8)] packed bits, 1 = hole
    # the share of the image in the hole, over every analysed holdout image (a centred square: any one)
    area = np.unpackbits(holes, axis=-1, count=size).mean() if random else (known[:1] < 0.5).float().mean().item()
    summary = {
        "mask_size": None if centred is None else centred.size,
        "image_size": size,
        "overlap": None if centred is None else centred.overlap,
        "holes": "centred square" if centred is not None else "per image (results.npz: holdout.holes)",
        "hole_area": float(area),
        "pca_window": held.window.size,
        "pixel_frame": "image",
        "architecture": type(generator).__name__,
        "bias_free": bool(generator.bias_free),
        "holdout_images": held.count,
        "metrics": {"psnr": held.psnr / held.count, "ssim": held.ssim / held.count,
                    "region": "hole" if centred is not None else "PSNR over each hole's pixels, SSIM over its bounding box"},
    }
    if centred is None:
        summary["not_applicable"] = {
            "F9_phi_by_mask": "compares the centre pixel's phi_p between centred squares of two sizes",
            "phi_p paper": "equation (8)'s window is a centred square of side p m",
            "authors' values": "the authors measured centred 16 and 64 masks",
        }
    results = Results(summary)
    n = min(settings.examples, len(originals))
    device = next(generator.parameters()).device
    with torch.no_grad():
        masked = generator.to_image(generator.mask_input(originals[:n].to(device), known[:n].to(device)).float()).cpu()
    results.arrays |= {
        "examples.originals": _array(originals[:n]),
        "examples.masked": _array(masked),
        "examples.inpainted": _array(inpainted[:n]),
        "examples.known": _array(known[:n, 0]).astype(np.uint8),
    }
    if random:
        results.arrays["holdout.holes"] = holes
    if settings.baselines:
        b = min(settings.baseline_images, len(originals))
        holes = centred if centred is not None else known[:b, 0] < 0.5
        summary["baselines"] = compare_baselines(originals[:b], holes, settings.baselines, settings.exemplar_patch)
        summary["baselines_images"] = b
        summary["model_on_baseline_images"] = hole_metrics(inpainted[:b], originals[:b], holes)
    lap("baselines")
    _global(results, held, settings)
    lap("pca")
    j = settings.jacobian_images
    _local(results, generator, originals[:j], known[:j], centred, settings, lap)
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
    results: Results, generator: Generator, images: torch.Tensor, known: torch.Tensor, mask: CenterMask | None,
    settings: AnalysisSettings, lap: Callable[[str], None],
) -> None:
    """The Jacobian: A_y y = f(y), weight maps, phi_p, centroids, grid, SVD; biharmonic beside it.
    Each analysed image has its own hole (``known`` ``[J, 1, S, S]``), predicted region and named
    pixels; ``mask`` is the centred square when every hole is one (else None: equation 8's phi_p is
    not applicable). ``lap(name)`` records the seconds since the previous lap."""
    ps = sorted(set(settings.ps) | set(AUTHORS_P))
    device = next(generator.parameters()).device
    images, known = images.to(device), known.to(device)
    with torch.no_grad():
        masked = generator.mask_input(images, known)
        regions = generator.predicted(known)[:, 0]  # [J, S, S] bool: the rows of A_y
        outputs = generator.fill(masked, known).float()
    holes = known[:, 0] < 0.5
    forward_mode, reverse_mode, maps0, maps_colour, located = [], [], [], [], []
    for y, k, region, out in zip(masked, known, regions, outputs):
        pixels = named_pixels(region.cpu().numpy())
        located.append(list(pixels.values()))
        rows = pixel_rows(generator, y, k, list(pixels.values()))  # (4, 3, 3, S, S), reverse mode
        r, c = torch.tensor(list(pixels.values()), device=device).T
        at_pixels = out[:, r, c].T  # (4, 3)
        reverse_mode.append(((torch.einsum("pcdhw,dhw->pc", rows, y) - at_pixels).norm() / at_pixels.norm()).item())
        fy, ay_y = apply_jacobian(generator, y, k[None])
        fy, ay_y = fy[:, region], ay_y[:, region]  # the predicted pixels (the others pass the input through)
        forward_mode.append(((ay_y - fy).norm() / fy.norm()).item())
        maps0.append(weight_map(rows, "channel0").cpu())
        maps_colour.append(weight_map(rows, "colour").cpu())
    maps0, maps_colour = torch.stack(maps0), torch.stack(maps_colour)  # (J, 4, S, S)
    names = list(PIXEL_NAMES)
    regions, holes = regions.cpu(), holes.cpu()
    per_image = _phi_all(maps_colour, regions, holes, mask, ps)  # (J, 4, P) each

    def curves(values: torch.Tensor) -> dict[str, list[float]]:
        mean = values.mean(0)  # over images, (4, P)
        return {name: mean[k].tolist() for k, name in enumerate(names)}

    phi = {d: curves(per_image[d]) for d in PHI_DEFINITIONS}
    phi_channel0 = {d: curves(v) for d, v in _phi_all(maps0, regions, holes, mask, ps).items()}
    # diffusion's weights at the same output pixels and hole: one map set per distinct hole
    same_hole = mask is not None
    biharmonic_maps = torch.stack([biharmonic_weight_maps(holes[j].numpy(), located[j]).float()
                                   for j in range(1 if same_hole else len(holes))])
    shown = slice(0, len(biharmonic_maps))
    biharmonic_phi = {d: curves(v) for d, v in _phi_all(biharmonic_maps, regions[shown], holes[shown], mask, ps).items()}
    # the exemplar's at the same pixels: each image's own correspondence field, found on its known pixels
    fields = [exemplar_field(images[j].cpu(), holes[j].numpy(), settings.exemplar_patch)[1] for j in range(len(images))]
    exemplar_maps = torch.stack([field.weight_maps(located[j]).float() for j, field in enumerate(fields)])
    exemplar_phi = {d: curves(v) for d, v in _phi_all(exemplar_maps, regions, holes, mask, ps).items()}
    # how far from the hole each method draws its weight, per image and pixel: [method, J, 4]
    poles = {"cnn": maps_colour, "biharmonic": biharmonic_maps.expand(len(images), -1, -1, -1), "exemplar": exemplar_maps}
    measured = [[source_distance(poles[method][j], holes[j], settings.far) for j in range(len(images))]
                for method in SOURCE_METHODS]
    distance = np.array([[_array(d) for d, _ in rows] for rows in measured], dtype=np.float64)
    far_share = np.array([[_array(f) for _, f in rows] for rows in measured], dtype=np.float64)
    # A_y y = f(y): by forward mode over the predicted pixels, and with the reverse-mode rows at the
    # named pixels; for the biased model the same numbers measure its net bias f(y) - A_y y.
    results.summary["homogeneity" if generator.bias_free else "net_bias"] = {
        "forward_mode": forward_mode,
        "reverse_mode_rows": reverse_mode,
        "max": max(forward_mode + reverse_mode),
        "definition": "||A_y y - f(y)|| / ||f(y)|| per analysed image over the predicted pixels (forward mode: all of "
        "them, one JVP; reverse mode: the Jacobian rows of the named pixels)",
    }
    acting = maps_colour.clone()  # weights on the hole act on zeros: leave them out of the centroid
    acting[holes[:, None].expand_as(acting)] = 0
    centroids = [[centroid_offset(acting[j, k], located[j][k], 0) for k in range(len(names))] for j in range(len(acting))]
    if same_hole:  # one hole and the same pixels for every image: the centroid of their mean map
        mean_offsets = np.array([centroid_offset(acting[:, k].mean(0), located[0][k], 0) for k in range(len(names))])
    else:  # each image's own pixels: the mean of their offsets
        mean_offsets = np.array(centroids, dtype=np.float64).mean(0)
    grids = [[grid_period(maps0[j, k]) for k in range(len(names))] for j in range(len(maps0))]
    strongest = [[max((g["prominence_rows"], g["period_rows"]), (g["prominence_cols"], g["period_cols"]))
                  for g in row] for row in grids]  # (prominence, period) of the more prominent axis
    results.summary["jacobian"] = {
        "images": len(images),
        "pixels": dict(zip(names, located[0])),
        "pixels_note": "image coordinates (row, col) of the first analysed image's named pixels: corner and edge of "
        "the predicted region, its most interior pixel (centre, by the distance transform), a quarter of the way "
        "from corner to centre (diagonal); every image's own in results.npz (jacobian.pixels)",
        "p": ps,
        "phi_p": phi,
        "phi_p_channel0": phi_channel0,
        "phi_p_note": "weight maps: 'colour' = sqrt of the sum of squares over both channel axes; "
        "definitions: 'code' = authors' code (predicted region zeroed, the window grows from it by p times the "
        "largest distance of any pixel to it: the margin for a centred square), 'hole' = same from the hole, "
        "'paper' = equation (8), a centred square only (else not applicable: null)",
        "centroid_offset": {name: tuple(mean_offsets[k]) for k, name in enumerate(names)},
        "centroid_note": "(rows, cols) from the output pixel to the centroid of |colour weight map| outside the hole "
        "(of the maps' mean over the analysed images for a centred square; the mean of each image's offset for random "
        "holes); rows > 0: below",
        "grid_period": {name: grid_period(maps0[:, k].mean(0)) for k, name in enumerate(names)} if same_hole else
        {name: {key: float(np.mean([g[k][key] for g in grids])) for key in grids[0][k]} for k, name in enumerate(names)},
    }
    results.summary["biharmonic_phi_p"] = biharmonic_phi
    results.summary["exemplar_phi_p"] = exemplar_phi
    results.summary["exemplar_patch"] = fields[0].patch
    results.summary["sources"] = {
        "methods": list(SOURCE_METHODS),
        "far": settings.far,
        "distance": {method: dict(zip(names, distance[k].mean(0).tolist())) for k, method in enumerate(SOURCE_METHODS)},
        "far_share": {method: dict(zip(names, far_share[k].mean(0).tolist())) for k, method in enumerate(SOURCE_METHODS)},
        "note": "distance: mean distance (pixels) to the nearest hole pixel of the |weight| an output pixel puts on "
        "known pixels (the hole's weights act on zeros); far_share: the share of that |weight| farther than `far`; "
        "for the CNN's colour weight maps, the biharmonic operator's and the exemplar's rows at the same pixels, "
        "averaged over the analysed images (each image's in results.npz: sources.distance, sources.far_share, "
        "[method, image, pixel])",
    }
    results.arrays |= {
        "jacobian.background": _array(generator.to_image(masked[0]).float()),
        "jacobian.known": _array(known[0, 0]).astype(np.uint8),
        "jacobian.region": _array(regions[0]).astype(np.uint8),
        "jacobian.pixels": np.array(located, dtype=np.int64),  # [J, 4, (row, col)]
        "jacobian.weight_maps_channel0": _array(maps0[0]),
        "jacobian.weight_maps_colour": _array(maps_colour[0]),
        **{f"jacobian.phi_p_{d}": _array(values) for d, values in per_image.items()},
        "biharmonic.weight_maps": _array(biharmonic_maps[0]),
        "exemplar.weight_maps": _array(exemplar_maps[0]),
        "sources.distance": distance,
        "sources.far_share": far_share,
        "jacobian.centroid_offsets": np.array(centroids, dtype=np.float64),  # [J, 4, (rows, cols)]
        "jacobian.grid_prominence": np.array([[f for f, _ in row] for row in strongest], dtype=np.float64),  # [J, 4]
        "jacobian.grid_period": np.array([[p for _, p in row] for row in strongest], dtype=np.float64),  # [J, 4]
        "jacobian.linearity_error": np.array([max(f, r) for f, r in zip(forward_mode, reverse_mode)], dtype=np.float64),
    }
    lap("jacobian_rows")
    if settings.svd:
        _spectrum(results, generator, masked[0], known[:1], regions[0], settings, lap)


def _phi_all(maps: torch.Tensor, regions: torch.Tensor, holes: torch.Tensor, mask: CenterMask | None,
             ps: list[float]) -> dict[str, torch.Tensor]:
    """phi_p of ``(J, 4, S, S)`` maps, image j's by its own region and hole, for every definition:
    ``{definition: (J, 4, P)}`` (NaN where a definition does not apply)."""
    out = {}
    for definition in PHI_DEFINITIONS:
        if definition == "paper":
            out[definition] = (phi_p(maps, mask.size, ps, mask.image_size, "paper") if mask is not None
                               else torch.full((*maps.shape[:2], len(ps)), float("nan"), dtype=torch.float64))
            continue
        zone = regions if definition == "code" else holes
        out[definition] = torch.stack([region_phi_p(maps[j], zone[j].numpy(), ps, zeroed=zone[j].numpy())
                                       for j in range(len(maps))])
    return out


def _dense_bytes(rows: int, inputs: int) -> int:
    """Memory of the dense path: A_y in float32, its float64 Gram, and a float64 block and
    eigenvalue workspace of about the Gram's size."""
    return rows * inputs * 4 + 2 * rows * rows * 8


def _spectrum(results: Results, generator: Generator, y: torch.Tensor, known: torch.Tensor, region: torch.Tensor,
              settings: AnalysisSettings, lap: Callable[[str], None]) -> None:
    """The whole A_y of the first analysed image and its singular values: through the Context
    Encoder's code, densely by reverse mode, or matrix-free for a large hole (:class:`AnalysisSettings`)."""
    key = "homogeneity" if generator.bias_free else "net_bias"
    with torch.no_grad():
        fy = generator.fill(y[None], known)[0].float()[:, region.to(y.device)]
    rows = 3 * int(region.sum())
    if isinstance(generator, ContextEncoder):
        decoder, encoder = jacobian_factors(generator, y)
        lap("jacobian_factors")
        ay_y = (decoder @ torch.einsum("kdhw,dhw->k", encoder, y)).reshape(3, -1)  # A_y y = P (Q y)
        spectrum = spectrum_stats(decoder, encoder, generator.mask, vectors=4)
    elif rows <= settings.svd_dense_rows and _dense_bytes(rows, y.numel()) <= available_memory(y.device) // 2:
        jac = region_jacobian(generator, y, known)  # (3, n, 3, S, S)
        lap("jacobian_whole")
        ay_y = torch.einsum("cndhw,dhw->cn", jac, y)
        spectrum = dense_spectrum(jac, known[0, 0] > 0.5)
        u, v, top = spectrum["vectors"]
        image = torch.zeros(len(u), 3, *y.shape[-2:], dtype=u.dtype, device=u.device)
        image[:, :, region.to(u.device)] = u
        spectrum["vectors"] = (image, v, top)
    else:
        ay_y = None
        spectrum = matrix_free_spectrum(generator, y, known, min(settings.svd_values, rows - 1))
    if ay_y is not None:
        results.summary[key]["full_jacobian"] = ((ay_y.reshape(fy.shape) - fy).norm() / fy.norm()).item()
    results.summary["jacobian"]["svd"] = spectrum["summary"]
    u, v, top = spectrum["vectors"]
    results.arrays |= {
        "svd.singular_values": _array(spectrum["singular_values"]),
        "svd.output_vectors": _array(u),
        "svd.input_vectors": _array(v),
        "svd.top": _array(top),
    }
    lap("svd")
