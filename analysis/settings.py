"""What the analyses run and how much of it (the ``analysis`` config group), checked when a run's
config is composed. Kept apart from the analyses and free of torch, so that train.py can refuse a bad
setting in a second, before importing what a run needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from inpaint.errors import InpaintError

# the classical fills analysis.baselines implements (its BASELINES, by name)
BASELINE_METHODS = ("mean", "telea", "ns", "biharmonic", "exemplar", "shiftmap")


@dataclass
class AnalysisSettings:
    """What to analyse and how much of it.

    Args:
        max_images: holdout images used (None: all of them).
        grayscale: PCA on luma crops (the paper) or RGB crops.
        energy_ks: numbers of components for energy captured (F6) and projection PSNR.
        projection_ks: numbers of components shown projected in F5.
        examples: images shown in F1 and F5.
        baselines: classical methods run on the same holdout images and hole: diffusion (telea, ns,
            biharmonic), exemplar (patch-based, analysis/exemplar.py; shiftmap, OpenCV's), the mean.
        baseline_images: how many holdout images the baselines run on (biharmonic costs ~30 ms each).
        jacobian_images: images whose named-pixel Jacobian rows, phi_p, centroids and grid are
            measured (averaged, and kept per image for the findings' intervals), and whose
            A_y y = f(y) is checked (about 1.5 s an image at the demo's width on 2 CPU cores).
        svd: the whole A_y of the first image and its spectrum: for the Context Encoder from its two
            halves through the code (seconds at the demo's width, about a minute and a half at paper
            width on 2 CPU cores); for other generators the dense A_y by reverse mode when it has at
            most ``svd_dense_rows`` rows (3 x predicted pixels) and it and its Gram matrix fit in half
            the free memory, else its top ``svd_values`` singular values matrix-free (Lanczos), with
            their residuals.
        svd_dense_rows, svd_values: see ``svd``; 12,288 rows is a 64 x 64 hole (2.4 GB in float32).
        exemplar_patch: the exemplar fill's patch side in pixels (at most the image's).
        far: pixels from the hole beyond which a weight counts as drawn from far (the share of each
            method's weight beyond it is reported beside the mean distance of its sources).
        explorer_pixels: hole pixels of the first holdout image whose maps ``explorer.html`` holds
            (a grid; 0: no page), about 0.19 MB each in the file.
        figures: draw the figures (PNGs, and images for the loggers) when the analyses end; false
            keeps the results alone (a few seconds less a run, for sweeps of many runs), and
            ``analyze.py replot=RUN`` draws them later from those results.
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
    baselines: tuple[str, ...] = ("mean", "telea", "ns", "biharmonic", "exemplar")
    baseline_images: int = 200
    jacobian_images: int = 16
    svd: bool = True
    svd_dense_rows: int = 12288
    svd_values: int = 64
    exemplar_patch: int = 7
    far: float = 8.0
    explorer_pixels: int = 36
    figures: bool = True
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
                            ("resamples", 10), ("seed", 0), ("exemplar_patch", 1),
                            ("svd_dense_rows", 0), ("svd_values", 1), ("explorer_pixels", 0)):
            if not whole(getattr(self, name), least):
                raise InpaintError(f"analysis.{name} must be an integer >= {least}, not {getattr(self, name)!r}.")
        if self.explorer_pixels > 50:
            raise InpaintError(f"analysis.explorer_pixels={self.explorer_pixels}: explorer.html holds at most 50 pixels' maps "
                               "(under 10 MB); the live page (analyze.py explore=RUN) shows any pixel.")
        if self.max_images is not None and not whole(self.max_images, 2):
            raise InpaintError(f"analysis.max_images must be null (all) or an integer >= 2 (the PCA needs two images), not {self.max_images!r}.")
        for name in ("grayscale", "svd", "figures"):
            if not isinstance(getattr(self, name), bool):
                raise InpaintError(f"analysis.{name} must be true or false, not {getattr(self, name)!r}.")
        for name in ("energy_ks", "projection_ks"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(whole(k, 1) for k in values):
                raise InpaintError(f"analysis.{name} must be a list of positive integers (numbers of components), not {values!r}.")
        unknown = [b for b in self.baselines if b not in BASELINE_METHODS] if isinstance(self.baselines, (list, tuple)) else [self.baselines]
        if unknown:
            raise InpaintError(f"analysis.baselines: unknown method(s) {unknown}; choose from {sorted(BASELINE_METHODS)} (or [] for none).")
        if not isinstance(self.ps, (list, tuple)) or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in self.ps
        ):
            raise InpaintError(f"analysis.ps must be a list of numbers in [0, 1] (fractions of the margin), not {self.ps!r}.")
        if isinstance(self.far, bool) or not isinstance(self.far, (int, float)) or not self.far > 0:
            raise InpaintError(f"analysis.far must be a positive number of pixels, not {self.far!r}.")
        self.energy_ks, self.projection_ks = tuple(self.energy_ks), tuple(self.projection_ks)
        self.baselines, self.ps = tuple(self.baselines), tuple(float(p) for p in self.ps)

    @classmethod
    def from_config(cls, settings: Mapping | None, image_size: int | None = None) -> AnalysisSettings:
        """From the ``analysis`` config group (a plain mapping), naming any key that is not a setting;
        with ``image_size``, also refusing settings that do not fit images of that size."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise InpaintError(f"unknown analysis setting(s) {unknown}: the settings are {[f.name for f in fields(cls)]} (conf/analysis/default.yaml).")
        out = cls(**settings)
        if image_size is not None:
            out.check_image_size(image_size)
        return out

    def check_image_size(self, image_size: int) -> None:
        """Refuse settings that do not fit images of ``image_size`` pixels a side."""
        if self.exemplar_patch > image_size:
            raise InpaintError(f"analysis.exemplar_patch={self.exemplar_patch} does not fit {image_size}px images: "
                               f"choose at most {image_size} (7 is the default).")
