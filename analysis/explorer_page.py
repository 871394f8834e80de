"""The weight-map explorer as a web page: ``analysis/explorer.html`` (the page and its script) with
its data in it.

- :func:`write_static` writes the page every run keeps, ``RUN_DIR/analysis/explorer.html``: one
  self-contained file (no network, no server), the weight maps of a grid of hole pixels of the first
  analysed image in it (``analysis.explorer_pixels``, 36 by default: a 6 x 6 grid over a square
  hole, 4 maps of 128 x 128 float16 each, about 7 MB), clickable as the live page is.
- :func:`page` with :func:`live_payload` is the live page ``analyze.py explore=`` serves; its maps
  come from the server at each click (float32, exact).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.explorer import CHANNELS, PixelMaps, Scene, first_image
from analysis.jacobian import AUTHORS_P
from analysis.results import Results
from analysis.settings import AnalysisSettings
from inpaint.masks import CenterMask
from inpaint.models.contract import Generator

TEMPLATE = Path(__file__).with_name("explorer.html")
STATIC_CHANNELS = ("colour", "red")  # the page's own maps (the live page has every channel)
ABOUT = ("A bias-free network is linear at each input, f(y) = A_y y: a predicted pixel's weight map is its row of A_y, "
         "how much each input pixel adds to it. Click a pixel of the hole; beside the network's map, the biharmonic "
         "fill's (diffusion) and the exemplar fill's at the same pixel; cyan: the hole, green: phi_p's window.")


def encoded(values: np.ndarray | torch.Tensor, dtype: str) -> dict:
    """A map as base64 little-endian ``dtype`` ("float32" or "float16") for the page's script, over
    ``scale`` (its largest |value|): float16's range (6e-8 to 65504) would lose a network's weights
    of 1e-11, its relative precision (2^-11) keeps them once scaled."""
    values = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(values).max()) or 1.0
    array = np.ascontiguousarray(values / scale, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "scale": scale, "data": base64.b64encode(array.tobytes()).decode()}


def png_url(image: torch.Tensor) -> str:
    """A ``[3, S, S]`` image in [0, 1] as a PNG data URL."""
    pixels = (image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _mask(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode()


def scene_payload(scene: Scene) -> dict:
    """An image as the page draws it: the three pictures, the hole, the predicted pixels, and for
    each pixel the index of the smallest p whose phi_p window holds it."""
    return {
        "images": {name: png_url(picture) for name, picture in scene.pictures().items()},
        "hole": _mask(scene.hole), "region": _mask(scene.region), "windows": _mask(scene.windows),
    }


def maps_payload(maps: PixelMaps, dtype: str, channels: Sequence[str] = ("colour", *CHANNELS)) -> dict:
    """A pixel's maps for the page (``window.explorer.shown`` holds the one drawn)."""
    return {
        "pixel": list(maps.pixel),
        "cnn": {name: encoded(maps.cnn[name], dtype) for name in channels},
        "biharmonic": encoded(maps.biharmonic, dtype),
        "exemplar": encoded(maps.exemplar, dtype),
        "phi_p": _nulls(maps.phi_p),
        "centroid": _nulls(maps.centroid),
    }


def _nulls(values: Sequence[float]) -> list[float | None]:
    """NaN (a map without weight) as JSON's null."""
    return [None if math.isnan(v) else v for v in values]


def svd_payload(values: Sequence[float] | None, input_vectors: np.ndarray | None, dtype: str) -> dict | None:
    """A_y's singular values and its top input-side singular vectors (each as the norm over the
    colour channels, ``[S, S]``), where the analysis saved them."""
    if values is None:
        return None
    vectors = None if input_vectors is None else [encoded(np.sqrt(np.square(v).sum(0)), dtype) for v in input_vectors]
    return {"values": [float(v) for v in values], "vectors": vectors}


def _base(scene: Scene, mode: str, names: list[str], channels: Sequence[str], svd: dict | None) -> dict:
    return {"mode": mode, "size": scene.size, "ps": list(scene.ps), "about": ABOUT, "images": names,
            "channels": list(channels), "svd": svd}


def static_payload(scene: Scene, maps: Sequence[PixelMaps], name: str, svd: dict | None) -> dict:
    """The static page's data: one image and the maps of some pixels of its hole (``scene.grid``'s)."""
    held = {f"{m.pixel[0]},{m.pixel[1]}": maps_payload(m, "float16", STATIC_CHANNELS) for m in maps}
    return {**_base(scene, "static", [name], STATIC_CHANNELS, svd), "scenes": [{**scene_payload(scene), "maps": held}]}


def live_payload(scene: Scene, names: list[str], svd: dict | None) -> dict:
    """The live page's data: the names of the images it can show (each fetched when chosen)."""
    return _base(scene, "live", names, ("colour", *CHANNELS), svd)


def page(payload: dict) -> str:
    """The page with ``payload`` in its script ("</" escaped, so no string of it ends the script)."""
    return TEMPLATE.read_text().replace("/*PAYLOAD*/null", json.dumps(payload).replace("</", "<\\/"))


def write_static(path: str | Path, scene: Scene, maps: Sequence[PixelMaps], name: str, svd: dict | None) -> Path:
    """``path``: the self-contained page of ``scene`` and its pixels' ``maps`` (:func:`static_payload`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(static_payload(scene, maps, name, svd)))
    return path


def write_run_explorer(folder: str | Path, generator: Generator, batches: Iterable, mask: CenterMask | None,
                       settings: AnalysisSettings, results: Results) -> Path | None:
    """``folder/explorer.html`` for a finished analysis: the first holdout image (the first the
    analyses measure), the maps of a grid of ``settings.explorer_pixels`` of its hole pixels, and
    A_y's spectrum from ``results``; None with ``explorer_pixels`` 0."""
    if settings.explorer_pixels == 0:
        return None
    image, known = first_image(batches, mask)
    scene = Scene(generator, image, known, sorted(set(settings.ps) | set(AUTHORS_P)), settings.exemplar_patch)
    maps = scene.maps(scene.grid(settings.explorer_pixels))
    svd = svd_payload(results.arrays.get("svd.singular_values"), results.arrays.get("svd.input_vectors"), "float16")
    return write_static(Path(folder) / "explorer.html", scene, maps, "holdout image 0", svd)
