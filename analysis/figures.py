"""The paper's figures (F1-F10) and the extensions' figures: arrays in, a matplotlib ``Figure`` out.

Only the object-oriented API is used (``matplotlib.figure.Figure``, no pyplot state), so figures can be
drawn from any thread and under any backend. :func:`save` writes a PNG (the loggers get those
files' pixels: no figure is drawn twice).

Inputs may be torch tensors or numpy arrays. Images are in [0, 1], ``[3, S, S]`` or batches
``[N, 3, S, S]``; centre crops may come as vectors ``[D]``, D = m * m (grayscale) or 3 * m * m (RGB,
channel-major). Fonts are large and words few, so that figures stay readable at W&B's ~400 px thumbnails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from analysis.jacobian import phi_windows
from analysis.locality import phi_windows as phi_windows_of
from analysis.results import Results
from inpaint.masks import CenterMask

TITLE, LABEL, TICK, SMALL = 16, 14, 12, 11  # font sizes in points
DPI = 110
DIVERGING = "RdBu_r"  # red positive, blue negative, white zero
MAGNITUDE = "magma"

# Authors' numbers on CelebA (SPEC section 6), for orientation only.
AUTHORS_PHI = {  # phi_p by the authors' code definition, at p = 0.1, 0.25, 0.35, 0.5
    64: {
        "centre": {0.1: 0.523, 0.25: 0.740, 0.35: 0.819, 0.5: 0.905},
        "corner": {0.1: 0.673, 0.25: 0.836, 0.35: 0.888, 0.5: 0.931},
        "edge": {0.1: 0.700, 0.25: 0.894, 0.35: 0.922, 0.5: 0.952},
    },
    16: {"centre": {0.1: 0.903, 0.25: 0.936, 0.35: 0.953, 0.5: 0.975}},
}
AUTHORS_ENERGY = {10: 0.976, 100: 0.993, 500: 0.997}  # mean EC_k, uncentred, 64 mask
STAT_NAMES = {"effective_dimensionality": "eff. dim", "participation_ratio": "PR"}


def save(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Writes ``fig`` as a PNG (creating the folder) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _as_numpy(x) -> np.ndarray:
    """A torch tensor (any device or dtype) or array-like as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _crop(vector, m: int) -> np.ndarray:
    """A crop vector ``[D]`` as an ``[m, m]`` (D = m * m) or ``[3, m, m]`` (D = 3 * m * m) image."""
    v = _as_numpy(vector).reshape(-1)
    if v.size not in (m * m, 3 * m * m):
        raise ValueError(f"a crop vector of {v.size} values is neither {m}x{m} grayscale nor 3x{m}x{m} RGB.")
    return v.reshape(m, m) if v.size == m * m else v.reshape(3, m, m)


def _image(ax, image, **kwargs):
    """Shows ``[3, H, W]`` (RGB, clipped to [0, 1]) or ``[H, W]`` (gray in [0, 1] unless ``kwargs`` set a
    colour map and scale) without ticks, keeping the axes' labels usable as row names."""
    image = _as_numpy(image) if not np.ma.isMaskedArray(image) else image
    if image.ndim == 3:
        shown = ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1), **kwargs)
    else:
        gray = {} if "cmap" in kwargs or "norm" in kwargs else {"cmap": "gray", "vmin": 0, "vmax": 1}
        shown = ax.imshow(image, **(gray | kwargs))
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _batch(images) -> np.ndarray:
    """``[3, S, S]`` or ``[N, 3, S, S]`` as ``[N, 3, S, S]``."""
    images = _as_numpy(images)
    return images[None] if images.ndim == 3 else images


def _figure(title: str, size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    fig.suptitle(title, fontsize=TITLE)
    return fig


def _plot(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.4, 4.4)):
    """A one-axes figure with large labels and a light grid."""
    fig = _figure(title, size)
    ax = fig.add_subplot()
    ax.set_xlabel(xlabel, fontsize=LABEL)
    ax.set_ylabel(ylabel, fontsize=LABEL)
    ax.tick_params(labelsize=TICK)
    ax.grid(alpha=0.3, which="both")
    return fig, ax


def _group_styles(names: Sequence[str], groups: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, str]]:
    """Each curve's colour and legend label: a colour per curve, or with ``groups`` (``{setting:
    [curve names]}``: a comparison's settings and their seeds) a colour and one legend entry per
    setting, so that 15 runs of five settings read as five colours, not a cycle of ten."""
    if not groups:
        return {name: (f"C{k % 10}", name) for k, name in enumerate(names)}
    styles = {}
    for k, (group, members) in enumerate(groups.items()):
        present = [name for name in members if name in names]
        for i, name in enumerate(present):
            label = "_" if i else (f"{group} ({len(present)} seeds)" if len(present) > 1 else group)
            styles[name] = (f"C{k % 10}", label)
    return styles


WIDE = (9.2, 4.4)  # a one-axes figure with its legend beside it: the axes keep their width


def _legend(fig: Figure, ax, outside: bool) -> None:
    """The axes' legend inside it, or (a comparison's many settings) beside it, clear of the curves."""
    if outside:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize=SMALL, frameon=False)
    else:
        ax.legend(fontsize=SMALL)


def _by_k(values: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """``{k: value}`` (k may be a string, as in ``pca.summary()``) as sorted arrays, k > 0 only."""
    pairs = sorted((int(k), float(v)) for k, v in values.items() if int(k) > 0)
    return np.array([k for k, _ in pairs]), np.array([v for _, v in pairs])


def _log_k(ax) -> None:
    """A log x axis of numbers of components, labelled 1, 10, 100 rather than powers of ten."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")


def _number(value: float) -> str:
    """3 significant digits, but whole numbers from 100 on (4487, not 4.49e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


Geometry = CenterMask | tuple[np.ndarray, np.ndarray]  # a centred square, or (hole, predicted region) as bool [S, S]


def _geometry(mask: Geometry) -> tuple[np.ndarray, np.ndarray, int]:
    """(hole, predicted region, offset of pixel coordinates): a centred square's, whose named pixels are
    given in coordinates of its m x m square, or any hole's, whose pixels are image coordinates."""
    if isinstance(mask, CenterMask):
        hole = np.zeros((mask.image_size,) * 2, bool)
        hole[mask.hole, mask.hole] = True
        region = np.zeros_like(hole)
        region[mask.start : mask.end, mask.start : mask.end] = True
        return hole, region, mask.start
    hole, region = mask
    return np.asarray(hole, bool), np.asarray(region, bool), 0


def _outline(ax, mask: Geometry, **kwargs) -> None:
    """The predicted region's outline (the m x m square, or any region's contour), in image pixel coordinates."""
    style = {"edgecolor": "white", "linestyle": "--", "linewidth": 1.5} | kwargs
    if isinstance(mask, CenterMask):
        ax.add_patch(Rectangle((mask.start - 0.5, mask.start - 0.5), mask.size, mask.size, fill=False, **style))
        return
    region = _geometry(mask)[1]
    ax.contour(region.astype(float), levels=[0.5], colors=[style["edgecolor"]], linestyles=[style["linestyle"]],
               linewidths=[style["linewidth"]])


def fig_inpainting(examples: Mapping[str, tuple], original) -> Figure:
    """F1: masked input and inpainted output for each model / mask (``{"16x16 mask": (masked,
    inpainted)}``), then the original; one row per image (``[3, S, S]`` or ``[N, 3, S, S]``)."""
    original = _batch(original)
    n = len(original)
    fig = _figure("Inpainting", (1.9 * (2 * len(examples) + 1), 1.9 * n + 0.9))
    subfigs = fig.subfigures(1, len(examples) + 1, width_ratios=[2] * len(examples) + [1], wspace=0.02)
    for subfig, (name, (masked, inpainted)) in zip(subfigs, examples.items()):
        subfig.suptitle(name, fontsize=LABEL, fontweight="bold")
        axes = subfig.subplots(n, 2, squeeze=False)
        for row, (m_img, i_img) in enumerate(zip(_batch(masked), _batch(inpainted))):
            _image(axes[row, 0], m_img)
            _image(axes[row, 1], i_img)
        axes[0, 0].set_title("masked", fontsize=LABEL)
        axes[0, 1].set_title("inpainted", fontsize=LABEL)
    subfigs[-1].suptitle(" ", fontsize=LABEL)  # aligns the original's column with the others
    axes = subfigs[-1].subplots(n, 1, squeeze=False)
    for row, image in enumerate(original):
        _image(axes[row, 0], image)
    axes[0, 0].set_title("original", fontsize=LABEL)
    return fig


def fig_phi_window(masked, mask: CenterMask, ps: Sequence[float] = (0.1, 0.25, 0.5),
                   definition: str = "code") -> Figure:
    """F2: the masked input ``[3, S, S]`` with the phi_p window of each p drawn on it. "code" (the
    authors' code): the predicted square is zeroed (hatched) and p is the fraction of the margin it
    covers; "hole": the same from the hole's edge; "paper" (equation 8): a window of side p * m,
    inside the predicted square (dashed)."""
    name = {"code": "authors' code", "hole": "from the hole", "paper": "paper, eq. 8"}
    fig = _figure(rf"$\phi_p$ windows ({name.get(definition, definition)})", (6.6, 4.8))
    ax = fig.add_subplot()
    _image(ax, masked)
    zeroed, windows = phi_windows(mask.size, ps, mask.image_size, definition, mask.overlap)
    handles = []
    for k, (p, (lo, hi)) in enumerate(zip(ps, windows)):
        colour = f"C{k + 1}"
        ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), hi - lo, hi - lo, fill=False, edgecolor=colour, linewidth=2.5))
        handles.append(Line2D([], [], color=colour, linewidth=3, label=f"p = {p:g}: [{lo}, {hi})"))
    if zeroed is not None:
        lo, hi = zeroed
        ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), hi - lo, hi - lo, fill=False, hatch="//", edgecolor="white", linewidth=1))
        handles.append(Rectangle((0, 0), 1, 1, fill=False, hatch="//", edgecolor="0.3", label="zeroed"))
    else:
        _outline(ax, mask)
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="predicted square"))
    fig.legend(handles=handles, loc="outside right center", fontsize=SMALL, frameon=False)
    return fig


def fig_phi_window_region(masked, region, ps: Sequence[float] = (0.1, 0.25, 0.5)) -> Figure:
    """F2 for any hole: the masked input ``[3, S, S]`` with the predicted region (dashed: zeroed, as
    the authors' code zeroes the square) and, for each p, the window grown from it by p times its
    reach (``analysis.locality.phi_windows``) as a contour."""
    region = np.asarray(region, bool)
    fig = _figure(r"$\phi_p$ windows (from the predicted region)", (6.6, 4.8))
    ax = fig.add_subplot()
    _image(ax, masked)
    handles = []
    for k, (p, window) in enumerate(zip(ps, phi_windows_of(region, ps))):
        colour = f"C{k + 1}"
        ax.contour(window.astype(float), levels=[0.5], colors=[colour], linewidths=[2.5])
        handles.append(Line2D([], [], color=colour, linewidth=3, label=f"p = {p:g}"))
    _outline(ax, (region, region))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="zeroed (predicted region)"))
    fig.legend(handles=handles, loc="outside right center", fontsize=SMALL, frameon=False)
    return fig


def fig_eigenimages(originals, reconstructions, m: int, k: int = 10) -> Figure:
    """F3: the top-k eigenvectors (columns of ``[D, >= k]``) of the originals' and of the
    reconstructions' crops as m x m images. An eigenvector's sign is arbitrary: each reconstruction
    eigenvector is flipped to correlate positively with the original one, and both are shown on one
    symmetric scale per column (grayscale crops: diverging map; RGB crops: mid-grey = 0)."""
    rows = {"originals": _as_numpy(originals)[:, :k], "recon.": _as_numpy(reconstructions)[:, :k]}
    k = rows["originals"].shape[1]
    signs = np.sign(np.sum(rows["originals"] * rows["recon."], axis=0))
    rows["recon."] = rows["recon."] * np.where(signs == 0, 1.0, signs)
    scale = np.maximum(np.abs(rows["originals"]).max(0), np.abs(rows["recon."]).max(0))
    scale[scale == 0] = 1.0
    fig = _figure(f"Top-{k} eigenimages", (1.1 * k + 1.2, 3.4))
    axes = fig.subplots(2, k, squeeze=False)
    for r, (name, vectors) in enumerate(rows.items()):
        for c in range(k):
            image = _crop(vectors[:, c] / scale[c], m)
            if image.ndim == 3:
                shown = _image(axes[r, c], 0.5 + 0.5 * image)
            else:
                shown = _image(axes[r, c], image, cmap=DIVERGING, vmin=-1, vmax=1)
            if r == 0:
                axes[r, c].set_title(str(c + 1), fontsize=LABEL)
        axes[r, 0].set_ylabel(name, fontsize=LABEL)
    if image.ndim == 2:
        bar = fig.colorbar(shown, ax=axes, ticks=[-1, 0, 1], shrink=0.9, pad=0.01)
        bar.ax.set_yticklabels(["-max", "0", "+max"], fontsize=SMALL)
    note = "grey = 0; " if image.ndim == 3 else ""
    fig.supxlabel(f"{note}sign arbitrary: reconstructions' flipped to match; scale per column", fontsize=SMALL)
    return fig


def fig_abs_cosine(abs_cos) -> Figure:
    """F4: |cos| between the i-th eigenvector of the originals and the i-th of the reconstructions,
    against i (ranked by eigenvalue); absolute because an eigenvector's sign is arbitrary."""
    values = _as_numpy(abs_cos)
    fig, ax = _plot("Eigenvector similarity", "eigenvector rank (by eigenvalue)", "|cos| originals vs recon.")
    ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=4, linewidth=2)
    ax.set_ylim(0, 1.02)
    return fig


def fig_projections(originals, reconstructions, projections: Mapping[int, object], m: int, grayscale: bool,
                    centred: bool = True) -> Figure:
    """F5: for n images (columns), the original crop, the reconstruction, then the reconstruction
    projected on the top-k principal components of the originals for each k (rows), clipped to [0, 1]
    for display. ``originals``, ``reconstructions`` and each projection are ``[n, D]``."""
    dim = m * m if grayscale else 3 * m * m
    rows = {"original": originals, "recon.": reconstructions} | {f"k = {k}": v for k, v in projections.items()}
    rows = {name: _as_numpy(v) for name, v in rows.items()}
    for name, vectors in rows.items():
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"{name}: expected [n, {dim}] crop vectors, got shape {vectors.shape}.")
    n = len(rows["original"])
    kind = f"{'grayscale' if grayscale else 'RGB'}, {'centred' if centred else 'uncentred'}"
    fig = _figure(f"Recon. projected on top-k PCs\n({kind})", (1.45 * n + 1.0, 1.45 * len(rows) + 1.0))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, vectors) in enumerate(rows.items()):
        for c in range(n):
            _image(axes[r, c], _crop(vectors[c], m))
        axes[r, 0].set_ylabel(name, fontsize=LABEL)
    return fig


def fig_energy_captured(curves: Mapping[str, Mapping[int, float]], reference: bool = False,
                        groups: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """F6: mean energy of the reconstructions captured by the originals' top-k PCs (EC_k of equation 9,
    given as fractions, drawn in %) against k, one line per variant (e.g. "uncentred (authors' code)",
    "centred"); ``reference`` adds the authors' CelebA (uncentred) points as stars; ``groups`` as in
    :func:`_group_styles`."""
    fig, ax = _plot("Energy captured by top-k PCs", "number of PCs k", "mean energy captured (%)",
                    size=WIDE if groups else (6.4, 4.4))
    styles = _group_styles(list(curves), groups)
    for name, values in curves.items():
        ks, ec = _by_k(values)
        colour, label = styles[name]
        ax.plot(ks, 100 * ec, marker="o", color=colour, linewidth=1.2 if groups else 2, label=label)
    if reference:
        ks, ec = _by_k(AUTHORS_ENERGY)
        ax.plot(ks, 100 * ec, linestyle="none", marker="*", markersize=15, color="black", label="authors, CelebA")
    _log_k(ax)
    _legend(fig, ax, outside=bool(groups))
    return fig


def fig_total_energy(originals: float, reconstructions: float, ylabel: str = "mean ||x||^2") -> Figure:
    """F7: mean total energy of the original crops and of the reconstructions, values on the bars."""
    fig, ax = _plot("Total energy", "", ylabel, size=(5.2, 4.4))
    bars = ax.bar(["originals", "reconstructions"], [float(originals), float(reconstructions)], color=["C0", "C1"])
    ax.bar_label(bars, fmt="%.4g", label_type="center", fontsize=LABEL, color="white", fontweight="bold")
    ax.grid(False)
    return fig


def fig_baselines(results: Mapping[str, Mapping[str, float]], images: int) -> Figure:
    """The CNN beside classical inpainting on the same holdout images and hole: PSNR and SSIM bars
    (``{"CNN": {"psnr": .., "ssim": ..}, "telea": {...}, ...}``)."""
    fig = _figure(f"Hole PSNR / SSIM on {images} holdout images", (8.0, 4.2))
    axes = fig.subplots(1, 2)
    names = list(results)
    for ax, metric, fmt in zip(axes, ("psnr", "ssim"), ("%.1f", "%.3f")):
        bars = ax.bar(names, [float(results[n][metric]) for n in names], color=[f"C{k}" for k in range(len(names))])
        ax.bar_label(bars, fmt=fmt, fontsize=SMALL)
        ax.set_ylabel(metric.upper() + (" (dB)" if metric == "psnr" else ""), fontsize=LABEL)
        ax.tick_params(labelsize=SMALL)
        ax.tick_params(axis="x", rotation=30)
        ax.margins(y=0.15)
    return fig


def fig_projection_psnr(psnr_by_k: Mapping[int, float], reconstruction_psnr: float, centred: bool = True) -> Figure:
    """Beyond the paper: PSNR against the originals of the reconstructions projected on the originals'
    top-k PCs, against k, with the unprojected reconstruction's PSNR as a horizontal line: are the
    projections cleaner than the reconstructions, as the paper's F5 suggests?"""
    kind = "centred" if centred else "uncentred"
    fig, ax = _plot(f"PSNR of projections ({kind})", "number of PCs k", "PSNR vs originals (dB)")
    ks, values = _by_k(psnr_by_k)
    ax.plot(ks, values, marker="o", linewidth=2, label="projected recon.")
    if reconstruction_psnr is not None:  # None: infinite (crops the holes never reached)
        ax.axhline(float(reconstruction_psnr), color="0.3", linestyle="--", linewidth=2,
                   label=f"recon., no projection ({float(reconstruction_psnr):.1f} dB)")
    _log_k(ax)
    ax.legend(fontsize=SMALL)
    return fig


BASELINE_STYLES = {"biharmonic": "--", "exemplar": ":"}  # the poles' phi_p curves, in the pixel's colour


def _phi_axes(ax, ps, curves: Mapping[str, object], reference, baselines: Mapping[str, Mapping[str, object]] | None) -> None:
    """phi_p curves (solid), the authors' points (same colour, markers) and each baseline method's
    curves (same colour, its line style: BASELINE_STYLES) for the names in ``curves``; one legend,
    colours (names) then line styles (sources)."""
    ps = _as_numpy(ps)
    baselines = baselines or {}
    for k, (name, values) in enumerate(curves.items()):
        colour = f"C{k}"
        ax.plot(ps, _as_numpy(values), color=colour, linewidth=2.5, label=name)
        if reference and name in reference:
            points = sorted(reference[name].items())
            ax.plot(*zip(*points), linestyle="none", marker="D", markersize=8, color=colour,
                    markeredgecolor="black", label="_")
        for method, baseline in baselines.items():
            if name in baseline:
                ax.plot(ps, _as_numpy(baseline[name]), color=colour, linestyle=BASELINE_STYLES[method], linewidth=2, label="_")
    ax.set_xlim(0, max(1.0, ps.max()) if len(ps) else 1.0)
    ax.set_ylim(0, 1.02)
    handles = ax.get_legend_handles_labels()[0]
    if reference or baselines:
        handles.append(Line2D([], [], color="0.2", linewidth=2.5, label="this model"))
    if reference:
        handles.append(Line2D([], [], color="0.2", linestyle="none", marker="D", label="authors, CelebA"))
    for method in baselines:
        handles.append(Line2D([], [], color="0.2", linestyle=BASELINE_STYLES[method], linewidth=2, label=method))
    ax.legend(handles=handles, fontsize=SMALL, loc="lower right")


def fig_phi_curves(ps, curves: Mapping[str, object], title: str,
                   reference: Mapping[str, Mapping[float, float]] | None = None,
                   baselines: Mapping[str, Mapping[str, object]] | None = None) -> Figure:
    """F8: phi_p against p for named output pixels (corner, edge, centre), solid; optionally the
    authors' CelebA values (e.g. ``AUTHORS_PHI[64]``) as markers and the curves of classical methods
    at the same pixels (``{"biharmonic": {name: curve}, "exemplar": ...}``) in the pixel's colour,
    dashed (biharmonic) or dotted (exemplar). The title should say the mask and the phi_p definition."""
    fig, ax = _plot(title, "p", r"$\phi_p$")
    _phi_axes(ax, ps, curves, reference, baselines)
    return fig


def fig_phi_by_mask(ps, curves: Mapping[int, object], reference: Mapping[int, Mapping[float, float]] | None = None,
                    title: str = r"Centre pixel $\phi_p$ (authors' code def.)") -> Figure:
    """F9: phi_p of the centre output pixel for each mask size m (``{16: [P], 64: [P]}``); optionally
    the authors' points, e.g. ``{m: AUTHORS_PHI[m]["centre"] for m in (16, 64)}``. p is relative to the
    mask, so it spans a different number of pixels for each m."""
    fig, ax = _plot(title, "p", r"$\phi_p$")
    names = {m: f"{m}x{m} mask" for m in curves}
    _phi_axes(ax, ps, {names[m]: v for m, v in curves.items()},
              reference and {names[m]: v for m, v in reference.items() if m in names}, None)
    return fig


def fig_weight_maps(rows: Mapping[str, Mapping[str, object]], pixels: Mapping[str, Mapping[str, tuple[int, int]]],
                    masks: Mapping[str, Geometry], log: bool = False, floor: float = 1e-4,
                    hide_hole: bool = True, title: str = "Input-pixel weights") -> Figure:
    """F10: input-pixel weight maps ``[S, S]`` (rows of the Jacobian), one row per model / mask, one
    column per named output pixel. Shows |weight| on one scale per row (``log``: LogNorm from ``floor``
    times the row's maximum), a cross at the output pixel, the predicted square dashed. ``hide_hole``
    greys out the hole, whose inputs are zero so its weights never act (and excludes them from the scale).
    The title may name the map's kind (``weight_map``'s "channel0" or "colour")."""
    names = list(dict.fromkeys(name for maps in rows.values() for name in maps))
    fig = _figure(title + (" (log)" if log else ""), (2.2 * len(names) + 1.3, 2.3 * len(rows) + 0.8))
    axes = fig.subplots(len(rows), len(names), squeeze=False)
    cmap = colormaps[MAGNITUDE].with_extremes(bad="0.55")
    for r, (row, maps) in enumerate(rows.items()):
        mask = masks[row]
        hole, _, offset = _geometry(mask)
        shown = {}
        for name, weights in maps.items():
            magnitude = np.abs(_as_numpy(weights))
            shown[name] = np.ma.masked_array(magnitude, hole if hide_hole else np.zeros(magnitude.shape, bool))
        top = max(float(m.max()) for m in shown.values()) or 1.0
        norm = LogNorm(top * floor, top) if log else Normalize(0, top)
        for c, name in enumerate(names):
            ax = axes[r, c]
            if name not in shown:
                ax.set_axis_off()
                continue
            image = _image(ax, np.ma.maximum(shown[name], top * floor) if log else shown[name], cmap=cmap, norm=norm)
            i, j = pixels[row][name]
            ax.plot(offset + j, offset + i, marker="+", markersize=12, markeredgewidth=2, color="cyan")
            _outline(ax, mask, linewidth=1)
            ax.set_title(f"{name} ({i},{j})", fontsize=SMALL)
        axes[r, 0].set_ylabel(row, fontsize=LABEL)
        # Fixed ticks: ticks chosen by length change width as the layout resizes the bar, clipping its label.
        ticks = [top * floor, top * math.sqrt(floor), top] if log else [0, top / 2, top]
        bar = fig.colorbar(image, ax=axes[r, :], shrink=0.9, pad=0.01)
        bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks], fontsize=SMALL - 1)
        bar.set_label("|weight|", fontsize=SMALL)
        bar.minorticks_off()
    hidden = "grey: hole (zero input); " if hide_hole else ""
    fig.supxlabel(f"{hidden}+: output pixel; dashed: predicted region", fontsize=SMALL)
    return fig


def fig_singular_values(spectra: Mapping[str, object], stats: Mapping[str, Mapping[str, float]] | None = None,
                        title: str = "Singular values of A_y", groups: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """Beyond the paper (Mohan et al.'s analysis): singular values of the Jacobian against their index,
    log scale, one line per model; ``stats`` (e.g. effective dimensionality, participation ratio) go in
    the legend; ``groups`` as in :func:`_group_styles`. The title should say whether the hole's
    columns were dropped."""
    fig, ax = _plot(title, "index", "singular value", size=WIDE if groups else (6.4, 4.4))
    styles = _group_styles(list(spectra), groups)
    for name, values in spectra.items():
        values = _as_numpy(values)
        extra = ", ".join(f"{STAT_NAMES.get(key, key)} {_number(v)}" for key, v in (stats or {}).get(name, {}).items())
        colour, label = styles[name]
        ax.plot(np.arange(1, len(values) + 1), values, color=colour, linewidth=1.2 if groups else 2,
                label=f"{label} ({extra})" if extra and label != "_" else label)
    ax.set_yscale("log")
    _legend(fig, ax, outside=bool(groups))
    return fig


def fig_singular_vectors(output_vectors, input_vectors, s, kind: str = "mean") -> Figure:
    """Beyond the paper: the top singular vectors of the Jacobian, one row each: left the output-space
    vector U ``[3, m, m]``, right the input-space vector V ``[3, S, S]``. Each image is scaled by its own
    max |value|; "mean": the channel mean on a diverging map (sign kept, colour-opponent parts cancel),
    "abs": the colour magnitude sqrt(sum_c v_c^2) (sign lost)."""
    if kind not in ("mean", "abs"):
        raise ValueError(f'singular vector kind must be "mean" or "abs", not {kind!r}.')
    us, vs, s = _as_numpy(output_vectors), _as_numpy(input_vectors), _as_numpy(s)
    label = {"mean": "channel mean / max", "abs": "colour |v| / max"}[kind]
    style = {"cmap": DIVERGING, "vmin": -1, "vmax": 1} if kind == "mean" else {"cmap": MAGNITUDE, "vmin": 0, "vmax": 1}
    fig = _figure("Top singular vectors", (5.6, 2.3 * len(s) + 1.0))
    axes = fig.subplots(len(s), 2, squeeze=False)
    for r, (u, v) in enumerate(zip(us, vs)):
        for c, vector in enumerate((u, v)):
            image = vector.mean(0) if kind == "mean" else np.sqrt(np.square(vector).sum(0))
            shown = _image(axes[r, c], image / (np.abs(image).max() or 1.0), **style)
        axes[r, 0].set_ylabel(rf"$\sigma_{r + 1}$ = {s[r]:.3g}", fontsize=LABEL)
    axes[0, 0].set_title("output U", fontsize=LABEL)
    axes[0, 1].set_title("input V", fontsize=LABEL)
    bar = fig.colorbar(shown, ax=axes, shrink=0.6, pad=0.02, ticks=[-1, 0, 1] if kind == "mean" else [0, 1])
    bar.ax.tick_params(labelsize=SMALL)
    bar.set_label(label, fontsize=SMALL)
    return fig


def fig_centroids(offsets: Mapping[str, tuple[float, float]], pixels: Mapping[str, tuple[int, int]],
                  mask: Geometry, background=None, distances: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """Beyond the paper (its "neck" observation): an arrow from each named output pixel (i, j) of the
    predicted region (square coordinates for a :class:`CenterMask`, image coordinates for (hole, region)) to the centroid of its |weight| map, ``offsets[name] = (d_row, d_col)`` as from
    ``analysis.jacobian.centroid_offset``; d_row > 0 means the weight lies below the pixel. Drawn in
    input-image coordinates over ``background`` (e.g. the masked input ``[3, S, S]``), zoomed to the
    predicted square and the arrows. With ``distances`` (``{method: {pixel: pixels}}``, the summary's
    ``sources.distance``), a second panel sets the mean distance of each pixel's sources from the hole
    beside diffusion's and the exemplar's: where the CNN sits between the two poles."""
    fig = _figure("Weight centroid vs output pixel", (11.6 if distances else 6.8, 4.8))
    ax, *bars = fig.subplots(1, 2, width_ratios=(1.6, 1)) if distances else [fig.add_subplot()]
    size = _geometry(mask)[1].shape[-1]
    if background is not None:
        _image(ax, background, alpha=0.45)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    _outline(ax, mask, edgecolor="0.3")
    _, region, offset = _geometry(mask)
    rows, cols = np.nonzero(region)
    ends = [rows.min(), rows.max(), cols.min(), cols.max()]
    for k, (name, (dr, dc)) in enumerate(offsets.items()):
        i, j = pixels[name]
        y, x = offset + i, offset + j
        colour = f"C{k}"
        ax.plot(x, y, marker="o", markersize=8, color=colour, linestyle="none", label=f"{name}: {dr:+.1f}, {dc:+.1f}")
        ax.annotate("", xy=(x + dc, y + dr), xytext=(x, y),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 2.5, "mutation_scale": 18})
        ends += [y + dr, x + dc]
    lo, hi = max(min(ends) - 8, -0.5), min(max(ends) + 8, size - 0.5)
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=SMALL, frameon=False,
              title="offset (row, col)\nrow > 0: below", title_fontsize=SMALL)
    if distances:
        hole = _geometry(mask)[0]
        known = [name for name in offsets if not hole[offset + pixels[name][0], offset + pixels[name][1]]]
        _source_bars(bars[0], distances, list(offsets), known)
    return fig


def _source_bars(ax, distances: Mapping[str, Mapping[str, float]], names: Sequence[str], known: Sequence[str] = ()) -> None:
    """Grouped bars: per named pixel, the mean distance from the hole of each method's sources; the
    ``known`` pixels (in the overlap band, outside the hole) said under them: the classical fills
    keep such a pixel, so their bar is its own distance from the hole, not a choice of sources."""
    width = 0.8 / len(distances)
    for k, (method, by_pixel) in enumerate(distances.items()):
        values = [by_pixel.get(name, np.nan) for name in names]
        ax.bar(np.arange(len(names)) + (k - (len(distances) - 1) / 2) * width, values, width,
               label={"cnn": "CNN"}.get(method, method), color=("0.15", "C0", "C3", "C2")[k % 4])
    ax.set_xticks(range(len(names)), names, fontsize=SMALL)
    ax.set_ylabel("mean distance of the weight\nfrom the hole (px)", fontsize=SMALL)
    ax.set_title("where each method draws from", fontsize=SMALL)
    ax.legend(fontsize=SMALL - 1, frameon=False)
    if known:
        them, its = ("them", "the pixels'") if len(known) > 1 else ("it", "its")
        ax.set_xlabel(f"{' and '.join(known)}: outside the hole (overlap band);\nthe fills keep {them}: their bars are {its} own distance",
                      fontsize=SMALL - 2, style="italic")


VERDICT_COLOURS = {"holds": "#2a9d3f", "fails": "#d1372b", "inconclusive": "0.55", "not applicable": "0.55"}


def fig_findings(entries: Sequence[Mapping]) -> Figure:
    """The paper's claims tested (``analysis.findings``): one row per claim, its value (dot) and 95 %
    interval (bar) against its threshold (dashed), coloured by the verdict, each row on its own scale;
    the authors' CelebA value as a diamond where they give one."""
    fig = _figure("Findings: value, 95 % interval, threshold", (9.0, 0.62 * len(entries) + 1.3))
    axes = fig.subplots(len(entries), 1, squeeze=False)[:, 0]
    for ax, entry in zip(axes, entries):
        colour = VERDICT_COLOURS[entry["verdict"]]
        value, threshold = entry["value"], entry["threshold"]
        if value is None:  # not applicable to this run: said, nothing drawn
            ax.set_axis_off()
            ax.text(0.0, 0.5, entry["id"], transform=ax.transAxes, ha="right", va="center", fontsize=SMALL)
            ax.text(0.02, 0.5, f"not applicable: {entry['interval_note'].removeprefix('not applicable: ')}",
                    transform=ax.transAxes, color=colour, fontsize=SMALL, va="center", style="italic")
            continue
        points = [value, threshold] + list(entry["interval"] or []) + ([entry["authors"]] if entry["authors"] is not None else [])
        points = [p for p in points if p is not None and np.isfinite(p)]
        if entry["interval"] and all(p is not None and np.isfinite(p) for p in entry["interval"]):
            ax.plot(entry["interval"], [0, 0], color=colour, linewidth=6, solid_capstyle="butt", alpha=0.6)
        ax.plot([value], [0], "o", color=colour, markersize=8)
        if entry["authors"] is not None:
            ax.plot([entry["authors"]], [0], "D", color="black", markersize=6, markerfacecolor="none")
        ax.axvline(threshold, color="0.2", linestyle="--", linewidth=1.2)
        span = (max(points) - min(points)) or abs(threshold) or 1.0
        ax.set_xlim(min(points) - 0.15 * span, max(points) + 0.15 * span)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=SMALL - 2)
        ax.set_ylabel(entry["id"], rotation=0, ha="right", va="center", fontsize=SMALL)
        ax.text(1.01, 0.5, f"{entry['verdict']} ({entry['direction']} {threshold:.3g})", transform=ax.transAxes,
                color=colour, fontsize=SMALL, va="center", fontweight="bold")
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    if any(entry["authors"] is not None for entry in entries):
        key = Line2D([], [], color="black", marker="D", markerfacecolor="none", linestyle="none", label="authors, CelebA")
        fig.legend(handles=[key], loc="lower right", frameon=False, fontsize=SMALL - 2)
    return fig


EFFECT_NUMBERS = {"psnr": "hole PSNR (dB)", "ssim": "hole SSIM", "phi_0.1_centre": r"$\phi_{0.1}$ centre",
                  "between_poles": "between the poles\n(0 diffusion, 1 exemplar)"}
EFFECT_COLOURS = {"higher": "#2a9d3f", "lower": "#d1372b", "within spread": "0.45", "one run: no spread": "0.45"}


def fig_effects(rows: Sequence[Mapping], numbers: Mapping[str, str] = EFFECT_NUMBERS) -> Figure:
    """Each setting against the reference (``Comparison.effect_rows``), one panel per number of
    ``numbers`` (``{key: axis label}``): the difference of means (dot) and its 95 % interval over the
    seeds (bar) against zero (dashed), coloured by the verdict (green higher, red lower, grey within
    the seeds' spread; a hollow dot: one run, no interval)."""
    numbers = {key: label for key, label in numbers.items() if any(r["number"] == key for r in rows)}
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    fig = _figure(f"Against {rows[0]['reference']}: difference, 95 % interval over seeds",
                  (3.2 * len(numbers) + 2.0, 0.45 * len(settings) + 2.0))
    axes = fig.subplots(1, len(numbers), squeeze=False, sharey=True)[0]
    for ax, (key, label) in zip(axes, numbers.items()):
        for row in (r for r in rows if r["number"] == key):
            y, colour = settings.index(row["setting"]), EFFECT_COLOURS[row["verdict"]]
            if row["low"] != "":
                ax.plot([row["low"], row["high"]], [y, y], color=colour, linewidth=5, solid_capstyle="butt", alpha=0.6)
            ax.plot([row["difference"]], [y], "o", color=colour, markersize=7, markerfacecolor=colour if row["low"] != "" else "none")
        ax.axvline(0.0, color="0.2", linestyle="--", linewidth=1.2)
        ax.set_xlabel(label, fontsize=SMALL)
        ax.tick_params(labelsize=SMALL - 2)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(settings)), settings, fontsize=SMALL)
    axes[0].set_ylim(len(settings) - 0.5, -0.5)
    return fig


def run_figures(results: Results) -> dict[str, Figure]:
    """Every figure of one analysis, drawn from its :class:`~analysis.results.Results` alone (the
    run's own, or those loaded back by ``load_results``), keyed by the PNG's name."""
    summary, arrays = results.summary, results.arrays
    m, size = summary["mask_size"], summary["image_size"]
    mask = CenterMask(size, m, summary["overlap"]) if m is not None else None  # None: a hole per image
    hole_name = f"{m}x{m} mask" if m is not None else "random holes"
    out = {"F1_inpainting": fig_inpainting(
        {hole_name: (arrays["examples.masked"], arrays["examples.inpainted"])}, arrays["examples.originals"]
    )}
    if "baselines" in summary:
        out["baselines"] = fig_baselines({"CNN": summary["model_on_baseline_images"], **summary["baselines"]},
                                         images=summary["baselines_images"])
    pca, w = summary["pca"], summary.get("pca_window", m)  # the side of the PCA's centred crops
    out["F3_eigenimages"] = fig_eigenimages(arrays["pca.components_originals"], arrays["pca.components_reconstructions"], w)
    out["F4_abs_cosine"] = fig_abs_cosine(pca["abs_cosine"])
    ks = [int(k) for k in arrays["pca.projection_ks"]]
    out["F5_projections"] = fig_projections(arrays["pca.crops_originals"], arrays["pca.crops_reconstructions"],
                                            dict(zip(ks, arrays["pca.projections"])), w, pca["grayscale"])
    out["F6_energy_captured"] = fig_energy_captured(
        {"uncentred (authors' code)": pca["energy_captured"]["uncentred"], "centred": pca["energy_captured"]["centred"]},
        reference=m == 64 and pca["grayscale"] and summary.get("architecture", "ContextEncoder") == "ContextEncoder",
    )
    out["F7_total_energy"] = fig_total_energy(pca["total_energy"]["originals"], pca["total_energy"]["reconstructions"])
    out["projection_psnr"] = fig_projection_psnr(pca["projection_psnr"]["centred"], pca["reconstruction_psnr"])
    jac = summary["jacobian"]
    ps, phi, pixels = jac["p"], jac["phi_p"], {name: tuple(ij) for name, ij in jac["pixels"].items()}
    names, background = list(pixels), arrays["jacobian.background"]
    if "jacobian.region" in arrays:  # the first analysed image's hole and predicted region (image coordinates)
        geometry = (arrays["jacobian.known"] == 0, arrays["jacobian.region"] > 0)
    else:  # results of an earlier version: a centred square, pixels in its coordinates
        geometry = mask
    if mask is not None and "jacobian.region" not in arrays:
        out["F2_phi_window"] = fig_phi_window(background, mask, (0.1, 0.25, 0.5), "code")
    else:
        out["F2_phi_window"] = fig_phi_window_region(background, geometry[1], (0.1, 0.25, 0.5))
    corner_edge_centre = ("corner", "edge", "centre")
    reference = AUTHORS_PHI.get(m) if summary.get("architecture", "ContextEncoder") == "ContextEncoder" else None
    exemplar_phi = summary.get("exemplar_phi_p")  # None in results saved before the exemplar
    out["F8_phi_curves"] = fig_phi_curves(
        ps, {name: phi["code"][name] for name in corner_edge_centre}, rf"$\phi_p$, {hole_name} (authors' code definition)",
        reference=reference, baselines={"exemplar": exemplar_phi["code"]} if exemplar_phi else None)
    if m is not None:  # F9 compares centred squares of two sizes: not applicable to random holes
        out["F9_phi_by_mask"] = fig_phi_by_mask(ps, {m: phi["code"]["centre"]},
                                                reference={m: reference["centre"]} if reference else None)
    poles = {"biharmonic": summary["biharmonic_phi_p"]["hole"]} | ({"exemplar": exemplar_phi["hole"]} if exemplar_phi else {})
    out["phi_vs_biharmonic"] = fig_phi_curves(
        ps, {name: phi["hole"][name] for name in corner_edge_centre},
        rf"$\phi_p$ from the hole's edge, {hole_name}" + "\nCNN (solid) vs " + " and ".join(poles),
        baselines={method: {name: curves[name] for name in corner_edge_centre} for method, curves in poles.items()},
    )
    network = {"ContextEncoder": "CE", "PartialConvUNet": "U-Net"}.get(summary.get("architecture", "ContextEncoder"), "CNN")
    label = f"{network} {m}x{m}" if m is not None else network
    classical = {method: dict(zip(names, arrays[f"{method}.weight_maps"]))
                 for method in ("biharmonic", "exemplar") if f"{method}.weight_maps" in arrays}
    masks, located = dict.fromkeys([label, *classical], geometry), dict.fromkeys([label, *classical], pixels)
    out["F10_weight_maps"] = fig_weight_maps(
        {label: dict(zip(names, arrays["jacobian.weight_maps_channel0"])), **classical}, located, masks,
        title="Input-pixel weights (output ch. 0 / input ch. 0)",
    )
    out["F10_weight_maps_colour"] = fig_weight_maps(
        {label: dict(zip(names, arrays["jacobian.weight_maps_colour"])), **classical}, located, masks,
        title="Input-pixel weights (colour: all channels)", log=True,
    )
    if summary.get("findings"):
        out["findings"] = fig_findings(summary["findings"])
    out["centroids"] = fig_centroids({name: tuple(v) for name, v in jac["centroid_offset"].items()}, pixels, geometry, background,
                                     distances=summary.get("sources", {}).get("distance"))
    if "svd" in jac:
        svd = jac["svd"]
        out["svd_spectrum"] = fig_singular_values(
            {label: arrays["svd.singular_values"]},
            {label: {"effective_dimensionality": svd["effective_dim"], "participation_ratio": svd["participation_ratio"]}},
            title="Singular values of A_y (known-pixel columns)",
        )
        out["svd_vectors"] = fig_singular_vectors(arrays["svd.output_vectors"], arrays["svd.input_vectors"], arrays["svd.top"])
    return out


def save_all(figures: Mapping[str, Figure], folder: str | Path) -> list[Path]:
    """Each figure as ``folder/NAME.png``."""
    return [save(fig, Path(folder) / f"{name}.png") for name, fig in figures.items()]


def fig_phi_overlay(ps, curves: Mapping[str, Mapping[str, object]],
                    spread: Mapping[str, Mapping[str, tuple]] | None = None,
                    title: str = r"$\phi_p$ by run (authors' code def.)") -> Figure:
    """Runs compared: one panel per named output pixel (corner, edge, centre), one line per run or
    setting (``curves[label][pixel]``), and where a setting has several seeds its band
    (``spread[label][pixel] = (low, high)``)."""
    pixels = list(dict.fromkeys(name for c in curves.values() for name in c))
    fig = _figure(title, (4.2 * len(pixels) + 2.6, 4.4))
    axes = fig.subplots(1, len(pixels), sharey=True, squeeze=False)[0]
    ps = _as_numpy(ps)
    for ax, pixel in zip(axes, pixels):
        for k, (label, by_pixel) in enumerate(curves.items()):
            if pixel not in by_pixel:
                continue
            ax.plot(ps, _as_numpy(by_pixel[pixel]), color=f"C{k % 10}", linewidth=2.2, label=label)
            if spread and label in spread and pixel in spread[label]:
                low, high = spread[label][pixel]
                ax.fill_between(ps, _as_numpy(low), _as_numpy(high), color=f"C{k % 10}", alpha=0.3, linewidth=0)
        ax.set_title(pixel, fontsize=LABEL)
        ax.set_xlabel("p", fontsize=LABEL)
        ax.tick_params(labelsize=TICK)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel(r"$\phi_p$", fontsize=LABEL)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=SMALL, frameon=False)
    return fig


def comparison_figures(runs: Mapping[str, Results], settings: Mapping[str, Sequence[str]]) -> dict[str, Figure]:
    """The figures of a comparison of ``runs`` (``{label: results}``, saved results only) whose
    ``settings`` (``{setting: [labels]}``) group the runs that differ only by seed: phi_p overlaid (a
    setting's seeds as its mean and min-max band), F9 when mask sizes differ, F1 on the images the
    runs share, energy captured and singular spectra overlaid."""
    out = {}
    first = next(iter(runs.values()))
    ps = first.summary["jacobian"]["p"]
    curves, spread = {}, {}
    for setting, labels in settings.items():
        per_run = [runs[label].summary["jacobian"]["phi_p"]["code"] for label in labels if runs[label].summary["jacobian"]["p"] == ps]
        if not per_run:
            continue
        stacked = {name: np.array([[np.nan if v is None else v for v in c[name]] for c in per_run]) for name in ("corner", "edge", "centre")}
        curves[setting] = {name: values.mean(0) for name, values in stacked.items()}
        if len(per_run) > 1:
            spread[setting] = {name: (values.min(0), values.max(0)) for name, values in stacked.items()}
    title = r"$\phi_p$ by setting: mean, band = seeds' range" if spread else r"$\phi_p$ by run (authors' code def.)"
    out["phi_p"] = fig_phi_overlay(ps, curves, spread, title=title)
    by_mask: dict[int, list] = {}
    for results in runs.values():
        s = results.summary
        if s["jacobian"]["p"] == ps and s["mask_size"] is not None:  # centred squares only (F9 compares their sizes)
            by_mask.setdefault(s["mask_size"], []).append(s["jacobian"]["phi_p"]["code"]["centre"])
    if len(by_mask) > 1:
        centre = {m: np.nanmean(np.array(v, dtype=float), axis=0) for m, v in sorted(by_mask.items())}
        reference = {m: AUTHORS_PHI[m]["centre"] for m in centre if m in AUTHORS_PHI}
        out["F9_phi_by_mask"] = fig_phi_by_mask(ps, centre, reference or None)
    originals = first.arrays["examples.originals"]
    shared = {label: r.arrays for label, r in runs.items() if np.array_equal(r.arrays["examples.originals"], originals)}
    out["F1_inpainting"] = fig_inpainting(
        {label: (a["examples.masked"], a["examples.inpainted"]) for label, a in list(shared.items())[:8]}, originals
    )
    energy = {label: r.summary["pca"]["energy_captured"]["uncentred"] for label, r in runs.items()}
    reference = all(r.summary["mask_size"] == 64 and r.summary["pca"]["grayscale"] for r in runs.values())
    groups = settings if 1 < len(settings) < len(runs) else None  # colour by setting where settings have seeds
    out["energy_captured"] = fig_energy_captured(energy, reference=reference, groups=groups)
    spectra = {label: r.arrays["svd.singular_values"] for label, r in runs.items() if "svd.singular_values" in r.arrays}
    if spectra:
        title = "Singular values of A_y by setting (a line per seed)" if groups else "Singular values of A_y by run"
        out["singular_values"] = fig_singular_values(spectra, title=title, groups=groups)
    poles = {setting: [runs[label].summary["sources"]["distance"] for label in labels if "sources" in runs[label].summary]
             for setting, labels in settings.items()}
    poles = {setting: found for setting, found in poles.items() if found}
    if poles:
        out["poles"] = fig_poles({setting: {method: [d[method]["centre"] for d in found] for method in found[0]}
                                  for setting, found in poles.items()})
    return out


def fig_poles(distances: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Diffusion or exemplar, by setting: the mean distance from the hole of the centre pixel's
    sources for the CNN, diffusion (biharmonic) and the exemplar (``distances[setting][method]``, one
    value per seed), each setting's mean as a marker and its seeds' range as a bar."""
    fig, ax = _plot("Where the centre pixel's weight comes from", "mean distance of the weight from the hole (px)", "")
    settings = list(distances)
    markers = {"cnn": ("o", "0.15", "CNN"), "biharmonic": ("s", "C0", "diffusion (biharmonic)"), "exemplar": ("D", "C3", "exemplar")}
    for method, (marker, colour, name) in markers.items():
        for row, setting in enumerate(settings):
            values = np.asarray(distances[setting].get(method, []), dtype=float)
            if not len(values):
                continue
            mean = values.mean()  # within the seeds' range up to rounding, which must not make a bar negative
            ax.errorbar(mean, row, xerr=[[max(mean - values.min(), 0.0)], [max(values.max() - mean, 0.0)]],
                        marker=marker, color=colour, markersize=9, capsize=4, linestyle="none",
                        label=name if row == 0 else "_")
    ax.set_yticks(range(len(settings)), settings, fontsize=SMALL)
    ax.set_ylim(len(settings) - 0.5, -0.5)
    ax.set_xlim(left=0)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=SMALL, frameon=False)
    return fig
