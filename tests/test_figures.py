"""Every figure renders from small synthetic inputs (torch or numpy) with the expected panels, lines and
titles; PNG saving and RGB rendering work."""

import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis import figures as F
from inpaint.images import read_png
from inpaint.masks import CenterMask
from tolerances import rel_tol

S, M = 32, 16
MASK = CenterMask(S, M)
PS = np.linspace(0, 1, 11)
PIXELS = {"corner": (0, 0), "diagonal": (2, 2), "centre": (8, 8), "edge": (8, 15)}


def images(n: int | None = None) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(3, S, S) if n is None else torch.rand(n, 3, S, S)


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


def plot_axes(fig: Figure):
    (ax,) = fig.axes
    return ax


def titled(fig: Figure) -> Figure:
    assert isinstance(fig, Figure)
    assert fig.get_suptitle().strip()
    return fig


def test_save_writes_the_png_the_loggers_read(tmp_path):
    fig = F.fig_abs_cosine(np.linspace(1, 0, 20))
    path = F.save(fig, tmp_path / "sub" / "cos.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = read_png(path)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    width, height = fig.get_size_inches() * F.DPI
    assert rgb.shape[:2] == (round(height), round(width))
    assert rgb.min() < 128 < rgb.max()  # something was drawn on the white background


@pytest.mark.parametrize("n", [None, 3])
def test_inpainting_rows_are_images(n):
    original = images(n)
    examples = {"16x16 mask": (MASK.apply(original), original), "8x8 mask": (original.numpy(), original.numpy())}
    fig = titled(F.fig_inpainting(examples, original))
    rows = 1 if n is None else n
    assert len(image_axes(fig)) == rows * (2 * len(examples) + 1)
    titles = {ax.get_title() for ax in fig.axes}
    assert {"masked", "inpainted", "original"} <= titles


@pytest.mark.parametrize("definition", ["code", "paper"])
def test_phi_window_draws_one_rectangle_per_p(definition):
    mask = CenterMask(128, 64)
    masked = mask.apply(images().repeat(1, 4, 4))
    fig = titled(F.fig_phi_window(masked, mask, ps=(0.1, 0.25, 0.5), definition=definition))
    ax = plot_axes(fig)
    rectangles = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rectangles) == 3 + 1  # the windows and the predicted square
    assert any(p.get_hatch() for p in rectangles) == (definition == "code")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == (["p = 0.1: [28, 99)", "p = 0.25: [24, 104)", "p = 0.5: [16, 112)"] if definition == "code"
                          else ["p = 0.1: [60, 68)", "p = 0.25: [56, 72)", "p = 0.5: [48, 80)"])
    assert ("code" if definition == "code" else "eq. 8") in fig.get_suptitle()


def test_phi_windows_match_the_jacobian_definitions():
    """A map that is 1 on one ring of pixels: phi_p jumps from 0 to 1 exactly when the drawn window
    reaches the ring, so the figure and ``analysis.jacobian.phi_p`` use the same windows. (Sums of
    ones: exact.)"""
    from analysis.jacobian import phi_p, phi_windows

    for definition in ("code", "hole", "paper"):
        (lo, hi), = phi_windows(64, [0.3], 128, definition)[1]
        ring = torch.zeros(128, 128)
        ring[lo, lo:hi] = 1.0
        assert phi_p(ring, 64, 0.3, definition=definition) == 1.0
        ring = torch.zeros(128, 128)
        ring[lo - 1, lo - 1 : hi + 1] = 1.0
        assert phi_p(ring, 64, 0.3, definition=definition) == 0.0
    with pytest.raises(ValueError, match="definition"):
        phi_windows(64, [0.3], 128, "other")


@pytest.mark.parametrize("channels", [1, 3])
def test_eigenimages_grid_and_sign_alignment(channels):
    k, dim = 6, channels * M * M
    originals = torch.linalg.qr(torch.randn(dim, k, dtype=torch.float64))[0]
    fig = titled(F.fig_eigenimages(originals, -originals.numpy(), M, k=k))
    shown = image_axes(fig)
    assert len(shown) == 2 * k
    assert [ax.get_title() for ax in shown[:k]] == [str(i) for i in range(1, k + 1)]
    first, flipped = shown[0].images[0].get_array(), shown[k].images[0].get_array()
    np.testing.assert_array_equal(first, flipped)  # the reconstructions' sign was aligned (a negation: exact)
    assert (len(fig.axes) > 2 * k) == (channels == 1)  # a shared colour bar for the diverging map only


def test_abs_cosine_and_total_energy():
    ax = plot_axes(titled(F.fig_abs_cosine(torch.linspace(1, 0.2, 30))))
    assert len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 30
    assert ax.get_ylim() == (0, 1.02)
    ax = plot_axes(titled(F.fig_total_energy(177.6, 152.1)))
    assert len(ax.patches) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["152.1", "177.6"]


@pytest.mark.parametrize("grayscale", [True, False])
def test_projections_rows_and_columns(grayscale):
    n, dim = 5, (1 if grayscale else 3) * M * M
    vectors = torch.rand(n, dim, dtype=torch.float64)
    projections = {k: vectors * 1.5 - 0.2 for k in (25, 50, 100)}  # out of [0, 1]: clipped for display
    fig = titled(F.fig_projections(vectors, vectors.numpy(), projections, M, grayscale))
    assert len(image_axes(fig)) == n * (2 + len(projections))
    assert [ax.get_ylabel() for ax in fig.axes[::n]] == ["original", "recon.", "k = 25", "k = 50", "k = 100"]
    with pytest.raises(ValueError, match="crop vectors"):
        F.fig_projections(vectors, vectors, projections, M, not grayscale)


@pytest.mark.parametrize("reference", [False, True])
def test_energy_captured_lines_and_reference(reference):
    curves = {"uncentred (authors' code)": {"1": 0.9, "10": 0.95, "100": 0.99}, "centred": {0: 0.0, 10: 0.7, 100: 0.9}}
    ax = plot_axes(titled(F.fig_energy_captured(curves, reference=reference)))
    assert len(ax.lines) == len(curves) + reference
    assert list(ax.lines[0].get_xdata()) == [1, 10, 100]  # string keys sorted, k = 0 dropped (log axis)
    # fractions drawn as % (one float64 product)
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(99.0, rel=rel_tol(torch.float64))
    assert ("authors, CelebA" in [t.get_text() for t in ax.get_legend().get_texts()]) == reference
    assert ax.get_xscale() == "log"


def test_projection_psnr_has_the_reconstruction_line():
    ax = plot_axes(titled(F.fig_projection_psnr({"25": 20.0, "100": 23.0, "500": 24.0}, 22.5)))
    assert len(ax.lines) == 2
    assert list(ax.lines[1].get_ydata()) == [22.5, 22.5]


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("methods", [(), ("biharmonic",), ("biharmonic", "exemplar")])
def test_phi_curves_lines_markers_and_styles(reference, methods):
    curves = {name: PS ** (i + 1) for i, name in enumerate(("corner", "edge", "centre"))}
    fig = titled(F.fig_phi_curves(
        torch.from_numpy(PS), curves, "phi_p, 64x64 (code)",
        reference=F.AUTHORS_PHI[64] if reference else None,
        baselines={method: {name: c ** (0.5 + k) for name, c in curves.items()} for k, method in enumerate(methods)} or None,
    ))
    ax = plot_axes(fig)
    assert len(ax.lines) == len(curves) * (1 + reference + len(methods))
    markers = [line for line in ax.lines if line.get_linestyle() == "None"]
    assert len(markers) == (3 if reference else 0)
    assert all(len(line.get_xdata()) == 4 for line in markers)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(dashed) == 3 * ("biharmonic" in methods) and len(dotted) == 3 * ("exemplar" in methods)
    colours = {line.get_label(): line.get_color() for line in ax.lines if not line.get_label().startswith("_")}
    for line in markers + dashed + dotted:  # the same colour as the pixel's own curve
        assert line.get_color() in colours.values()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == list(curves)
    assert ("authors, CelebA" in labels) == reference
    assert [label for label in labels if label in F.BASELINE_STYLES] == list(methods)


def test_phi_curves_reference_only_for_the_drawn_pixels():
    curves = {"centre": PS, "diagonal": PS**2}  # the authors gave no diagonal pixel; their corner is not drawn
    ax = plot_axes(F.fig_phi_curves(PS, curves, "phi_p", reference=F.AUTHORS_PHI[64]))
    assert len(ax.lines) == 2 + 1
    assert ax.lines[1].get_color() == ax.lines[0].get_color()


def test_phi_by_mask_names_masks_and_keeps_matching_reference():
    curves = {16: PS**0.3, 64: PS}
    ax = plot_axes(titled(F.fig_phi_by_mask(PS, curves, reference={m: F.AUTHORS_PHI[m]["centre"] for m in (16, 64)})))
    assert len(ax.lines) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["16x16 mask", "64x64 mask"]
    ax = plot_axes(F.fig_phi_by_mask(PS, {64: PS}, reference={16: F.AUTHORS_PHI[16]["centre"]}))
    assert len(ax.lines) == 1


def gaussian_maps(mask: CenterMask) -> dict[str, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    return {name: torch.exp(-((yy - mask.start - i) ** 2 + (xx - mask.start - j) ** 2) / 8.0)
            for name, (i, j) in PIXELS.items()}


@pytest.mark.parametrize("log", [False, True])
def test_weight_maps_grid_shared_row_scale_and_marks(log):
    small = CenterMask(S, 8, overlap=1)
    rows = {"16 mask": gaussian_maps(MASK), "8 mask": {n: 3 * m.numpy() for n, m in gaussian_maps(small).items()}}
    rows["8 mask"].pop("edge")  # a row without one of the pixels leaves its panel empty
    pixels = {"16 mask": PIXELS, "8 mask": {n: (i // 2, j // 2) for n, (i, j) in PIXELS.items()}}
    fig = titled(F.fig_weight_maps(rows, pixels, {"16 mask": MASK, "8 mask": small}, log=log))
    shown = image_axes(fig)
    assert len(shown) == 7  # the empty panel has no image
    maps = [ax for ax in shown if ax.get_title()]
    assert len(maps) == 7
    for row, axes in (("16 mask", maps[:4]), ("8 mask", maps[4:])):
        norms = {id(ax.images[0].norm) for ax in axes}
        assert len(norms) == 1  # one colour scale per row
        norm = axes[0].images[0].norm
        assert isinstance(norm, LogNorm) == log
        assert norm.vmax == (1.0 if row == "16 mask" else 3.0)  # the peak is exp(0) = 1 (times 3), exactly
    for ax in maps:
        (cross,) = ax.lines
        assert cross.get_marker() == "+"
        assert len(ax.patches) == 1  # the predicted square
    edge, centre = maps[3], maps[2]
    x, y = edge.lines[0].get_xdata()[0], edge.lines[0].get_ydata()[0]
    assert (y, x) == (MASK.start + 8, MASK.start + 15)  # (row, col) of the output pixel, in the input image
    assert np.ma.is_masked(centre.images[0].get_array()[MASK.hole, MASK.hole])  # the hole is greyed out
    assert any("|weight|" in ax.get_ylabel() for ax in fig.axes)


@pytest.mark.parametrize("stats", [None, {"a": {"effective_dimensionality": 1234.4, "participation_ratio": 7.25}}])
def test_singular_values_log_scale_and_stats_in_legend(stats):
    spectra = {"a": torch.logspace(1, -3, 50), "b": np.logspace(0, -2, 30)}
    ax = plot_axes(titled(F.fig_singular_values(spectra, stats)))
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == (["a", "b"] if stats is None else ["a (eff. dim 1234, PR 7.25)", "b"])


def test_comparison_curves_coloured_by_setting():
    """With a comparison's settings, a setting's seeds share one colour and one legend entry (beside
    the axes), and settings differ: 15 runs would otherwise cycle through ten colours."""
    groups = {"pca=none": ["none s0", "none s1", "none s2"], "pca=head": ["head s0", "head s1"]}
    spectra = {name: np.logspace(1, -k, 40) for k, name in enumerate(n for g in groups.values() for n in g)}
    energy = {name: {1: 0.9, 10: 0.95 + k / 100} for k, name in enumerate(spectra)}
    for fig, extra in ((F.fig_singular_values(spectra, groups=groups), []),
                       (F.fig_energy_captured(energy, reference=True, groups=groups), ["authors, CelebA"])):
        ax = plot_axes(titled(fig))
        colours = [line.get_color() for line in ax.lines[:5]]
        assert len(set(colours[:3])) == 1 and len(set(colours[3:])) == 1 and colours[0] != colours[3]
        assert ax.get_legend() is None
        (legend,) = fig.legends
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts == ["pca=none (3 seeds)", "pca=head (2 seeds)", *extra]


@pytest.mark.parametrize("kind", ["mean", "abs"])
def test_singular_vectors_one_row_each(kind):
    k = 3
    s = torch.tensor([3.0, 2.0, 1.0])
    fig = titled(F.fig_singular_vectors(torch.randn(k, 3, M, M), torch.randn(k, 3, S, S), s, kind))
    vectors = [ax for ax in image_axes(fig) if ax.get_label() != "<colorbar>"]
    assert len(vectors) == 2 * k
    assert vectors[0].images[0].get_array().shape == (M, M) and vectors[1].images[0].get_array().shape == (S, S)
    assert np.abs(vectors[1].images[0].get_array()).max() == 1.0  # scaled per vector: its peak over itself, exactly
    assert "sigma_3" in vectors[4].get_ylabel()
    with pytest.raises(ValueError, match="kind"):
        F.fig_singular_vectors(torch.randn(k, 3, M, M), torch.randn(k, 3, S, S), torch.ones(k), "rgb")


@pytest.mark.parametrize("background", [False, True])
def test_centroids_one_arrow_per_pixel(background):
    offsets = {"corner": (-1.0, -1.0), "centre": (6.5, 0.0), "edge": (0.0, 3.0)}
    fig = titled(F.fig_centroids(offsets, PIXELS, MASK, background=images() if background else None))
    ax = plot_axes(fig)
    assert len(ax.lines) == len(offsets) and len(ax.texts) == len(offsets)  # a dot and an arrow per pixel
    arrow = ax.texts[1]
    assert arrow.xy == (MASK.start + 8, MASK.start + 8 + 6.5) and arrow.xyann == (MASK.start + 8, MASK.start + 8)
    assert bool(ax.images) == background
    assert "centre: +6.5, +0.0" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_centroids_set_the_source_distances_beside_the_poles():
    offsets = {"corner": (-1.0, -1.0), "centre": (6.5, 0.0), "edge": (0.0, 3.0)}
    distances = {"cnn": {"corner": 2.0, "centre": 5.0, "edge": 3.0}, "biharmonic": {"corner": 1.0, "centre": 1.5, "edge": 1.2},
                 "exemplar": {"corner": 9.0, "centre": 20.0, "edge": 11.0}}
    fig = titled(F.fig_centroids(offsets, PIXELS, MASK, distances=distances))
    _, bars = fig.axes
    heights = [[patch.get_height() for patch in container] for container in bars.containers]
    assert heights == [[distances[m][name] for name in offsets] for m in distances]  # per method, pixels in order
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["CNN", "biharmonic", "exemplar"]
    # corner (0, 0) and edge (8, 15) lie in the 16 mask's 1-pixel overlap band: the classical fills keep them, said under the bars
    assert bars.get_xlabel().startswith("corner and edge: outside the hole")
    _, bars = F.fig_centroids(offsets, PIXELS, CenterMask(S, M, overlap=0), distances=distances).axes
    assert bars.get_xlabel() == ""  # no overlap band: every pixel is in the hole


def test_crop_vectors_must_fit_the_mask():
    with pytest.raises(ValueError, match="neither"):
        F.fig_eigenimages(np.ones((10, 2)), np.ones((10, 2)), M, k=2)


def test_baselines_figure_has_one_bar_per_method_and_metric():
    results = {"CNN": {"psnr": 25.0, "ssim": 0.8}, "telea": {"psnr": 22.0, "ssim": 0.7}, "mean": {"psnr": 18.0, "ssim": 0.5}}
    fig = F.fig_baselines(results, images=10)
    assert "10 holdout images" in fig.get_suptitle()
    for ax, metric in zip(fig.axes, ("psnr", "ssim")):
        heights = [bar.get_height() for bar in ax.patches]
        assert heights == [results[name][metric] for name in results]


def test_poles_draw_each_setting_s_mean_and_seed_range():
    """Seeds whose values are equal up to rounding (their mean a last bit above the largest) still
    draw; a setting's bar spans its seeds' range."""
    distances = {"CE": {"cnn": [9.5, 10.5], "biharmonic": [1.4] * 3, "exemplar": [17.0, 17.5, 16.8]},
                 "U-Net": {"cnn": [3.1], "biharmonic": [1.4], "exemplar": [17.2]}}
    fig = titled(F.fig_poles(distances))
    ax = plot_axes(fig)
    cnn = ax.containers[:2]  # an error bar per method and setting, the CNN's first
    assert [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in cnn] == [(10.0, 0), (3.1, 1)]
    (bar,) = cnn[0].lines[2][0].get_segments()
    assert bar[:, 0].tolist() == [9.5, 10.5]  # the CE's two seeds
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CE", "U-Net"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["CNN", "diffusion (biharmonic)", "exemplar"]
