"""Any generator, any hole: the generator contract (a network defined here is analysed end to end),
the U-Net's Jacobian through it (rows against autograd, the whole A_y, dense and matrix-free spectra),
the Context Encoder's general path against its code path, random holes in the data (deterministic
keys, fixed holdout holes), settings refused at once, and train.py / analyze.py on random holes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from documented import documented
from tolerances import rel_tol
from torch import nn
from torch.func import jacrev

from analysis.figures import run_figures
from analysis.jacobian import (
    dense_spectrum,
    jacobian_factors,
    matrix_free_spectrum,
    pixel_rows,
    region_jacobian,
    spectrum_stats,
)
from analysis.locality import named_pixels
from analysis.report import analyse
from analysis.settings import AnalysisSettings
from inpaint.data.faces import FacesDataModule
from inpaint.errors import InpaintError
from inpaint.masks import FreeformMasks, RandomBlockMasks
from inpaint.models import ContextEncoder, PartialConvUNet

ROOT = Path(__file__).resolve().parents[1]


def warmed(net: nn.Module, *inputs: torch.Tensor) -> nn.Module:
    """``net`` in eval mode after one train-mode pass, so its norms' statistics are not trivial."""
    torch.manual_seed(0)
    with torch.no_grad():
        net.train()(*inputs)
    return net.eval()


def stroke_hole(size: int, seed: int = 3) -> torch.Tensor:
    """``[1, 1, S, S]`` known mask (0 on the hole) of a free-form hole."""
    hole = FreeformMasks(size, area=(0.1, 0.2)).hole(seed)
    return torch.from_numpy(~hole).float()[None, None]


@pytest.fixture(scope="module")
def unet32():
    """A small bias-free U-Net on 32 px images (depth 3 reaches across 16 px) and a free-form hole."""
    torch.manual_seed(0)
    net = PartialConvUNet(image_size=32, base_channels=4, depth=3)
    known = stroke_hole(32)
    images = torch.rand(4, 3, 32, 32)
    warmed(net, net.mask_input(images, known), known.expand(4, -1, -1, -1))
    return net, net.mask_input(images[:1], known)[0], known


# ---------------------------------------------------------------------------------------------
# The U-Net's Jacobian through the contract


def test_unet_rows_equal_autograd_rows_and_the_whole_a_y_stacks_them(unet32):
    net, y, known = unet32
    full = jacrev(lambda v: net(v[None], known)[0])(y)  # (3, S, S, 3, S, S), plain autograd
    region = net.predicted(known)[0, 0]
    pixels = list(named_pixels(region).values())
    rows = pixel_rows(net, y, known, pixels)
    expected = torch.stack([full[:, i, j] for i, j in pixels])
    terms = 9 * 4 * 8  # an entry sums over a few layers' 3x3 windows and channels
    assert (rows - expected).abs().max() <= rel_tol(torch.float32, terms) * expected.abs().max()
    whole = region_jacobian(net, y, known)  # (3, n, 3, S, S), rows of every predicted pixel
    assert whole.shape == (3, int(region.sum()), 3, 32, 32)
    assert torch.allclose(whole, full[:, region], rtol=0, atol=rel_tol(torch.float32, terms) * full.abs().max().item())
    # f(y) = A_y y on the hole, by the whole matrix
    fy = net(y[None], known)[0][:, region]
    assert (torch.einsum("cndhw,dhw->cn", whole, y) - fy).norm() <= rel_tol(torch.float32, 3 * 32 * 32) * fy.norm()


def test_dense_and_matrix_free_spectra_agree(unet32):
    net, y, known = unet32
    dense = dense_spectrum(region_jacobian(net, y, known), known[0, 0] > 0.5)
    free = matrix_free_spectrum(net, y, known, k=6, tol=1e-6)
    s, top = dense["singular_values"], free["singular_values"]
    # ARPACK's values are accurate to its residual times the largest value; the Gram's to float32's rounding
    assert free["summary"]["max_residual"] < 1e-3
    assert torch.allclose(top, s[:6], rtol=1e-3, atol=1e-3 * s[0].item())
    assert dense["summary"]["effective_dim"] == pytest.approx(float((s.double() ** 2).sum()))
    u, v, _ = free["vectors"]
    assert u.shape == v.shape == (4, 3, 32, 32)
    assert (u[:, :, ~net.predicted(known)[0, 0]] == 0).all() and (v[:, :, known[0, 0] < 0.5] == 0).all()


def test_the_context_encoders_general_path_equals_its_code_path():
    torch.manual_seed(16)
    ce = ContextEncoder(16, base_channels=8, bottleneck=64)
    images = torch.rand(8, 3, 128, 128)
    warmed(ce, ce.mask_input(images))
    y = ce.mask_input(images[:1])[0]
    known = torch.ones(1, 1, 128, 128)
    known[..., ce.mask.hole, ce.mask.hole] = 0
    rows = region_jacobian(ce, y, known, method="rows")
    code = region_jacobian(ce, y, known, method="code")
    assert rows.shape == code.shape == (3, 256, 3, 128, 128)
    assert (rows - code).abs().max() <= rel_tol(torch.float32, 64) * code.abs().max()  # each entry: a sum over 64 code units
    general = dense_spectrum(rows, known[0, 0] > 0.5)["singular_values"]
    factored = spectrum_stats(*jacobian_factors(ce, y), ce.mask)["singular_values"]
    assert len(factored) == 64  # the code's size bounds the rank
    assert torch.allclose(general[:64], factored, rtol=1e-4, atol=1e-5 * factored[0].item())
    assert general[64:].max() <= 1e-3 * general[0]  # the rest are rounding: rank 64


# ---------------------------------------------------------------------------------------------
# The contract: a researcher's own network, analysed end to end


class Smoother(nn.Module):
    """A researcher's own bias-free network: two convolutions and a ReLU on the masked image, its
    output pasted into the hole. It knows nothing of this project but the call (y, known) -> image."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 9, padding=4, bias=False)
        self.b = nn.Conv2d(8, 3, 9, padding=16, dilation=4, bias=False)  # reaches 20 px: into every hole's centre

    def forward(self, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return y * known + self.b(torch.relu(self.a(y))) * (1 - known)


def test_a_network_defined_here_meets_the_contract_and_every_analysis_runs_on_it():
    torch.manual_seed(0)
    net = Smoother()
    images = FacesDataModule(holdout_size=8, seed=0, image_size=128).split("holdout")
    holes = RandomBlockMasks(128, area=(0.05, 0.1), blocks=(1, 2))
    known = torch.stack([torch.from_numpy(~holes.hole(7, i)).float()[None] for i in range(8)])
    batches = [(images[:4], known[:4]), (images[4:], known[4:])]
    settings = AnalysisSettings(examples=2, baseline_images=4, jacobian_images=2, svd_dense_rows=0, svd_values=4,
                                resamples=50, pca_resamples=2, energy_ks=(1, 2, 5), projection_ks=(2, 5))
    results = analyse(net, batches, settings)
    s = results.summary
    assert s["holdout_images"] == 8 and s["mask_size"] is None and s["architecture"] == "PlainGenerator"
    assert s["homogeneity"]["max"] < 1e-5  # bias-free: A_y y = f(y) through the default contract
    pixels = results.arrays["jacobian.pixels"]
    for j in range(2):  # each image's named pixels lie in its own hole
        assert all(known[j, 0, r, c] == 0 for r, c in pixels[j])
    for curve in s["jacobian"]["phi_p"]["code"].values():
        values = np.array(curve, dtype=float)
        assert (np.diff(values) >= -1e-12).all() and values[-1] == pytest.approx(1.0)
    assert all(v is None for v in s["jacobian"]["phi_p"]["paper"]["centre"])  # equation 8 needs a centred square
    assert set(s["baselines"]) == {"mean", "telea", "ns", "biharmonic", "exemplar"} and "svd" in s["jacobian"]
    # both poles at each image's own named pixels and hole: diffusion within 2 px, the exemplar's copies beyond
    distance = results.arrays["sources.distance"][:, :, 2]  # [CNN, diffusion, exemplar] x images, centre pixel
    assert (distance[1] <= 2).all() and (distance[2] > distance[1]).all()
    assert np.array_equal(np.unpackbits(results.arrays["holdout.holes"], axis=-1)[..., :128], (known[:, 0] == 0).numpy())
    assert {f["id"] for f in s["findings"]} >= {"exactly_linear", "less_local_than_diffusion", "nearer_diffusion_than_exemplar"}
    figures = run_figures(results)
    assert {"F1_inpainting", "F2_phi_window", "F10_weight_maps", "centroids", "svd_spectrum"} <= set(figures)
    assert "F9_phi_by_mask" not in figures and "F9_phi_by_mask" in s["not_applicable"]  # 16 vs 64 centred squares


# ---------------------------------------------------------------------------------------------
# Random holes in the data


def test_training_holes_follow_their_keys_and_the_holdouts_are_the_same_in_every_run():
    spec = {"kind": "freeform", "size": None, "overlap": None, "area": [0.1, 0.5]}
    runs = [FacesDataModule(train_size=16, val_size=4, holdout_size=4, seed=0, batch_size=4, mask=spec, train_seed=seed)
            for seed in (0, 1)]
    holdouts = [torch.stack([run.served("holdout")[i][1] for i in range(4)]) for run in runs]
    assert torch.equal(holdouts[0], holdouts[1])  # another run seed: the same holdout holes
    train = [run.served("train") for run in runs]
    first = train[0][(0, 3)][1]
    assert torch.equal(first, train[0][(0, 3)][1])  # the same key, the same hole
    assert not torch.equal(first, train[0][(1, 3)][1])  # another epoch
    assert not torch.equal(first, train[1][(0, 3)][1])  # another seed
    assert torch.equal(first[0], torch.from_numpy(~FreeformMasks(128, area=(0.1, 0.5)).hole(0, 0, 3)).to(torch.uint8))
    areas = [1 - train[0][(e, i)][1].float().mean().item() for e in range(3) for i in range(16)]
    assert min(areas) >= 0.1 and max(areas) <= 0.5
    images, known = next(iter(runs[0].holdout_dataloader()))
    assert images.shape == (4, 3, 128, 128) and known.shape == (4, 1, 128, 128) and known.dtype == torch.uint8


# ---------------------------------------------------------------------------------------------
# Settings no run can use, refused before any data is read


def train_py(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("overrides, words", [
    (["mask=freeform"], "model=bias_free (the Context Encoder) with mask=freeform"),
    (["model=unet", "mask=random_block", "mask.area=[0.0,0.3]"], "mask.area"),
    (["model=unet", "mask=freeform", "mask.area=[0.2,1.0]"], "mask.area"),
    (["model=unet", "model.depth=4"], "model.depth=4 is too shallow"),
    (["model=unet", "model.adv_weight=0.001"], "model.adv_weight"),
    (["model=unet", "mask=freeform", "mask.strokes=[0,3]"], "mask.strokes"),
])
def test_impossible_hole_and_architecture_settings_are_refused(overrides, words):
    from test_checks import check_all, settings

    with pytest.raises(InpaintError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_all(settings(*overrides))


def test_train_py_refuses_a_context_encoder_on_free_form_holes_in_one_line(tmp_path):
    result = train_py("experiment=smoke", f"hydra.run.dir={tmp_path}", "mask=freeform", timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output
    assert [line for line in output.splitlines() if "ERROR" in line] == [
        line for line in output.splitlines() if "its decoder predicts the centred square only" in line]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "train.log"]  # nothing read, nothing built


# ---------------------------------------------------------------------------------------------
# train.py and analyze.py on random holes


def test_the_unet_trains_on_free_form_holes_and_analyze_py_reproduces_the_callbacks_numbers(tmp_path):
    """train.py and analyze.py on random holes (random blocks: the slow DDP test in test_distributed.py)."""
    run = tmp_path / "run"
    # the README's line, at the smoke size
    result = train_py(*documented("python train.py model=unet mask=freeform")[1:], f"hydra.run.dir={run}", "logger=csv",
                      "callbacks.rich_progress_bar=null", "callbacks.model_summary=null")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    callback = json.loads((run / "analysis" / "summary.json").read_text())
    assert callback["architecture"] == "PartialConvUNet" and callback["mask_size"] is None
    assert callback["homogeneity"]["max"] < 1e-5 and callback["jacobian"]["svd"]["max_residual"] < 1e-2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # data only: plain dicts
    assert ckpt["hyper_parameters"]["mask"]["kind"] == "freeform"
    assert len(list((run / "analysis").glob("*.png"))) == 17  # F9 (16 vs 64 centred squares): not applicable
    out = tmp_path / "again"
    result = subprocess.run([sys.executable, str(ROOT / "analyze.py"), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                             f"hydra.run.dir={out}", "analysis.examples=4", "analysis.baseline_images=4",
                             "analysis.jacobian_images=1", "analysis.svd_dense_rows=0", "analysis.svd_values=8",
                             "analysis.figures=false"],  # the numbers are compared here, the figures drawn above
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((out / "analysis" / "summary.json").read_text())
    for key in ("metrics", "baselines", "pca", "jacobian", "homogeneity", "findings"):
        assert again[key] == callback[key], key  # the same weights, holes and kernels: the same numbers
    with np.load(run / "analysis" / "results.npz") as a, np.load(out / "analysis" / "results.npz") as b:
        assert np.array_equal(a["holdout.holes"], b["holdout.holes"])  # the holdout's holes, saved and the same
        holes = np.unpackbits(a["holdout.holes"], axis=-1, count=128)
    assert len(holes) == 16 and callback["hole_area"] == pytest.approx(holes.mean(), rel=1e-12)  # over all 16, not the examples'
    assert 0.1 <= holes.reshape(16, -1).mean(1).min() and holes.reshape(16, -1).mean(1).max() <= 0.5  # freeform's area range
