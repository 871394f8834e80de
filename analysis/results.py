"""What one analysis leaves behind: the JSON summary and every array a figure needs, saved as data.

A run's ``analysis/`` folder holds ``summary.json`` (numbers, JSON) and ``results.npz`` (arrays,
numpy's zip of ``.npy`` files, written without pickles and read with ``allow_pickle=False``), so
figures can be redrawn and runs compared without the model or the data. The arrays, by key:

- ``examples.originals``, ``examples.masked``, ``examples.inpainted``: ``[n, 3, S, S]`` float32 in
  [0, 1], the first holdout images, the masked input as the network sees it, and the inpainting (F1).
- ``pca.components_originals``, ``pca.components_reconstructions``: ``[D, k]`` float64, the top
  eigenvectors (F3); ``pca.crops_originals``, ``pca.crops_reconstructions``: ``[n, D]`` crop
  vectors of the examples; ``pca.projection_ks`` ``[K]`` and ``pca.projections`` ``[K, n, D]``:
  the reconstructions projected on the originals' top-k components (F5).
- ``jacobian.background``: ``[3, S, S]`` the first analysed masked input (F2, centroids);
  ``jacobian.weight_maps_channel0``, ``jacobian.weight_maps_colour``: ``[4, S, S]`` its weight maps
  of the named pixels in ``summary["jacobian"]["pixels"]`` order (F10); ``jacobian.phi_p_code``,
  ``_hole``, ``_paper``: ``[J, 4, P]`` phi_p per analysed image (the summary holds their mean);
  ``biharmonic.weight_maps``, ``exemplar.weight_maps``: ``[4, S, S]``, the poles' maps at the same pixels.
- behind the findings' intervals, per holdout image ``[N]``: ``pca.energy_*``, ``pca.deviation_*``
  (squared norm, and distance from its set's mean), ``pca.energy_captured_10``,
  ``pca.reconstruction_psnr``; ``pca.projection_psnr`` ``[K, N]`` at ``pca.psnr_ks`` ``[K]``;
  ``pca.subspace_overlap_bootstrap`` ``[B, k]`` (both PCAs refitted on B resamples). Per analysed
  image: ``jacobian.centroid_offsets`` ``[J, 4, 2]``, ``jacobian.grid_prominence`` and
  ``jacobian.grid_period`` ``[J, 4]``, ``jacobian.linearity_error`` ``[J]``; ``sources.distance`` and
  ``sources.far_share`` ``[3, J, 4]``: how far from the hole the CNN, diffusion and the exemplar
  (``summary["sources"]["methods"]``) draw each named pixel's weight.
- ``svd.singular_values`` ``[r]``; ``svd.output_vectors`` ``[v, 3, m, m]``, ``svd.input_vectors``
  ``[v, 3, S, S]``, ``svd.top`` ``[v]``: the top singular triplets (when ``analysis.svd``).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaint.errors import InpaintError

SUMMARY, ARRAYS = "summary.json", "results.npz"


@dataclass
class Results:
    """The numbers (JSON-ready) and the arrays of one analysis."""

    summary: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, folder: str | Path) -> list[Path]:
        """``folder/summary.json`` and ``folder/results.npz``, each written whole through a rename."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary, arrays = folder / SUMMARY, folder / ARRAYS
        _replace(summary, lambda file: file.write(json.dumps(json_ready(self.summary), indent=2).encode()))
        _replace(arrays, lambda file: np.savez_compressed(file, **self.arrays))
        return [summary, arrays]


def json_ready(value):
    """JSON has no NaN or infinity: None in their place (e.g. phi_p of an all-zero map), recursively."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _replace(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_results(folder: str | Path) -> Results:
    """The results saved in ``folder`` (a run's ``analysis/`` folder), or one :class:`InpaintError`
    naming what is missing or unreadable. Nothing is unpickled."""
    folder = Path(folder)
    summary, arrays = folder / SUMMARY, folder / ARRAYS
    for path in (summary, arrays):
        if not path.is_file():
            raise InpaintError(
                f"no saved results in {folder}: {path.name} is missing. Results are written by train.py's analyses and "
                f"analyze.py (RUN_DIR/analysis/); re-run analyze.py ckpt_path=RUN_DIR/checkpoints/last.ckpt to make them."
            )
    try:
        loaded = json.loads(summary.read_text())
        with np.load(arrays, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # also json's and numpy's refusals of pickled objects
        raise InpaintError(f"cannot read the results in {folder} ({type(error).__name__}: {error}): re-run the analysis.") from error
    if not isinstance(loaded, dict) or "mask_size" not in loaded:
        raise InpaintError(f"{summary} is not an analysis summary (no mask_size): pass a run folder written by train.py or analyze.py.")
    return Results(loaded, data)
