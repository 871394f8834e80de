"""The weight-map explorer's numbers, its pages and its server, without a browser (the browser tests
are tests/test_browser.py): each pixel's maps are its rows of A_y, the static page holds them within
float16 rounding and no address to fetch, the server answers its page and answers only, and a bad
command is one clear message."""

import base64
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.baselines import biharmonic_weight_maps
from analysis.explorer import Scene
from analysis.explorer_page import svd_payload, write_run_explorer, write_static
from analysis.explorer_server import Explorer, serve
from analysis.jacobian import pixel_rows
from analysis.settings import AnalysisSettings
from inpaint.errors import InpaintError
from inpaint.models import ContextEncoder, PartialConvUNet

ROOT = Path(__file__).resolve().parents[1]
PS = [0.0, 0.1, 0.25, 0.5, 1.0]
PIXELS = AnalysisSettings().explorer_pixels  # the static page's, by default


def decoded(encoded: dict) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(encoded["data"]), dtype=np.dtype(encoded["dtype"]).newbyteorder("<"))
    return values.astype(np.float64) * encoded["scale"]


def assert_float16_close(values: np.ndarray, exact: np.ndarray) -> None:
    """Within float16's rounding of each value over the map's scale: half an ulp (2^-11 relative),
    and float16's subnormal spacing (2^-24) of the scale for the values far below it."""
    scale = np.abs(exact).max()
    np.testing.assert_allclose(values, exact, rtol=2**-11, atol=2**-24 * scale)


@pytest.fixture(scope="module")
def scenes():
    """A Context Encoder on the centred 64 hole and a U-Net on a hole of two boxes, random weights."""
    torch.manual_seed(0)
    image = torch.rand(3, 128, 128)
    square = torch.ones(1, 1, 128, 128)
    square[..., 32:96, 32:96] = 0
    boxes = torch.ones(1, 1, 128, 128)
    boxes[..., 20:50, 30:70] = 0
    boxes[..., 70:100, 60:90] = 0
    ce = ContextEncoder(64, base_channels=8, bottleneck=64)
    unet = PartialConvUNet(base_channels=8)
    with torch.no_grad():  # batch-norm scales from one train-mode pass, as trained
        ce(ce.mask_input(torch.rand(4, 3, 128, 128), square.expand(4, -1, -1, -1)))
        unet.train()(unet.mask_input(torch.rand(4, 3, 128, 128), boxes.expand(4, -1, -1, -1)), boxes.expand(4, -1, -1, -1))
    return {"context_encoder": Scene(ce.eval(), image, square, PS), "unet": Scene(unet.eval(), image, boxes, PS)}


@pytest.mark.parametrize("name", ["context_encoder", "unet"])
def test_a_pixels_maps_are_its_rows_of_a_y_and_the_poles_at_the_same_pixel(scenes, name):
    scene = scenes[name]
    pixels = scene.grid(PIXELS)
    assert 1 < len(pixels) <= PIXELS and all(scene.region[p] for p in pixels)
    (maps,) = scene.maps(pixels[len(pixels) // 2 : len(pixels) // 2 + 1])
    rows = pixel_rows(scene.generator, scene.masked, scene.known[0], [maps.pixel])[0]
    assert torch.equal(torch.from_numpy(maps.cnn["red"]), rows[0, 0])  # output red on input red: the paper's map
    assert torch.equal(torch.from_numpy(maps.cnn["blue"]), rows[2, 2])
    assert torch.allclose(torch.from_numpy(maps.cnn["colour"]), rows.square().sum((0, 1)).sqrt())
    assert np.array_equal(maps.biharmonic, biharmonic_weight_maps(scene.hole, [maps.pixel])[0].float().numpy())
    assert maps.exemplar.sum() == pytest.approx(1.0, rel=1e-6)  # a mean of known pixels
    curve = np.array(maps.phi_p)
    assert np.all(np.diff(curve) >= -1e-12) and curve[-1] == pytest.approx(1.0)  # nested windows, the last the image
    with pytest.raises(InpaintError, match="not predicted"):
        scene.maps([(0, 0)])


def test_the_static_page_holds_the_grids_maps_and_nothing_to_fetch(scenes, tmp_path):
    scene = scenes["context_encoder"]
    maps = scene.maps(scene.grid(PIXELS))
    svd = svd_payload([3.0, 2.0, 1.0], np.random.rand(2, 3, 128, 128), "float16")
    path = write_static(tmp_path / "explorer.html", scene, maps, "holdout image 0", svd)
    text = path.read_text()
    assert path.stat().st_size < 10e6
    assert not re.search(r"\b(src|href)\s*=\s*[\"']?(https?:)?//", text) and "fetch(`api" in text  # only the live page fetches
    payload = json.loads(re.search(r"const DATA = (\{.*?\});\n", text, flags=re.DOTALL).group(1).replace("<\\/", "</"))
    assert payload["mode"] == "static" and payload["svd"]["values"] == [3.0, 2.0, 1.0]
    held = payload["scenes"][0]["maps"]
    assert len(held) == len(maps)
    for m in maps[:3]:
        page = decoded(held[f"{m.pixel[0]},{m.pixel[1]}"]["cnn"]["colour"])
        assert_float16_close(page, m.cnn["colour"].ravel().astype(np.float64))


def test_the_server_answers_its_page_and_a_pixels_exact_maps_and_nothing_else(scenes):
    scene = scenes["unet"]
    explorer = Explorer(["holdout image 0"], lambda i: scene, None)
    status, kind, body = explorer.answer("/", {})
    assert status == 200 and kind.startswith("text/html") and b'"mode": "live"' in body
    pixel = scene.grid(4)[0]
    status, _, body = explorer.answer("/api/maps", {"image": ["0"], "row": [str(pixel[0])], "col": [str(pixel[1])]})
    answer = json.loads(body)
    (expected,) = scene.maps([pixel])
    assert status == 200 and answer["pixel"] == list(pixel)
    # float32 over its scale: each value within float32 rounding of value / scale * scale
    np.testing.assert_allclose(decoded(answer["cnn"]["colour"]), expected.cnn["colour"].ravel(), rtol=2**-23, atol=0)
    for path in ("/../../etc/passwd", "/analysis/results.npz", "/checkpoints/last.ckpt", "/api/other"):
        assert explorer.answer(path, {})[0] == 404, path
    status, _, body = explorer.answer("/api/maps", {"image": ["7"], "row": ["1"], "col": ["1"]})
    assert status == 400 and b"not one of the 1 images" in body


def test_a_port_in_use_is_one_clear_message(scenes):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(InpaintError, match=f"cannot serve the explorer on 127.0.0.1:{port}.*explorer.port="):
            serve(Explorer(["x"], lambda i: scenes["unet"], None), "127.0.0.1", port)
    finally:
        taken.close()


def analyze_py(*overrides: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *overrides, f"hydra.run.dir={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_a_folder_without_a_checkpoint_is_one_clear_message(tmp_path):
    (tmp_path / "run" / "analysis").mkdir(parents=True)
    done = analyze_py(f"explore={tmp_path / 'run'}", tmp_path=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output
    assert "holds no checkpoints/last.ckpt" in output and "explore=PATH/TO/A.ckpt" in output


def test_an_image_file_that_cannot_be_read_is_one_clear_message(tmp_path):
    sys.path.insert(0, str(ROOT))
    import analyze

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InpaintError, match="cannot be read as an image"):
        analyze.read_image(tmp_path / "broken.png", 128)
    image = analyze.read_image(ROOT / "docs" / "architectures_poles.png", 128)  # any PNG: a centred square, resized
    assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1


def test_the_static_pages_size_is_a_setting_checked_before_any_run():
    with pytest.raises(InpaintError, match="explorer_pixels=51"):
        AnalysisSettings(explorer_pixels=51)
    assert write_run_explorer("unused", None, [], None, AnalysisSettings(explorer_pixels=0), None) is None  # no page
