"""The benchmark cases: one function per case, each returning a JSON-ready dict."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import vjp
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import Worker, alternate, synchronize, timed
from inpaint import hardware
from inpaint.models import ContextEncoder, PartialConvUNet
from inpaint.pca import fit_pca

BATCH = 64  # the paper's
PAPER_WIDTH = {"base_channels": 64, "bottleneck": 4000}
DEMO_WIDTH = {"base_channels": 24, "bottleneck": 1024}  # conf/experiment/demo.yaml: the quick run's
FLOP_BATCH = 4  # the batch a training step's FLOPs are counted at (they are linear in it)

REFERENCE = {"dense_bottleneck": False, "channels_last": False, "precision": "32-true", "fused_adam": False}
BEST = {"dense_bottleneck": True, "channels_last": True, "fused_adam": True}  # precision: best_settings

# Sizes by quick (True) or full (False). The quick run is narrower where the full one would not fit
# in 3 minutes on a CPU without native bf16 (float32 throughout): the demo's width, fewer rows.
TRAIN = {True: {"width": DEMO_WIDTH, "steps": 4, "warmup": 1, "repeats": 3},
         False: {"width": PAPER_WIDTH, "steps": 10, "warmup": 2, "repeats": 5}}  # ours needs 2 warm-up steps: 1 understates it
DATA = {True: {"images": 512, "photos": 256, "repeats": 5}, False: {"images": 2048, "photos": 1024, "repeats": 5}}
PCA = {True: {"images": 1000, "repeats": 3}, False: {"images": 5000, "repeats": 3}}
JACOBIAN = {True: {"width": DEMO_WIDTH, "loop_rows": 12, "repeats": 3, "ours_repeats": 1},
            False: {"width": PAPER_WIDTH, "loop_rows": 64, "repeats": 3, "ours_repeats": 3}}


def precision_choice(device: str) -> hardware.PrecisionChoice:
    """What ``precision: auto`` resolves to on ``device``, the rule the project trains by."""
    return hardware.resolve_precision("auto", hardware.capabilities(device))


def best_settings(device: str) -> dict:
    """The project's defaults on ``device``, its precision that of :func:`precision_choice`: bf16
    autocast where the device has native bf16, fp16 with loss scaling on GPUs before Ampere,
    float32 on other CPUs (which would emulate bf16, many times slower)."""
    return {**BEST, "precision": precision_choice(device).precision}


def peak_matmul_flops(device: str, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matmul (2 n^3 FLOPs) in ``dtype`` on ``device``, after one warm-up;
    n is 2048 on CPUs, 8192 on GPUs (a smaller product would not fill one)."""
    n = 8192 if device.startswith("cuda") else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, device) for _ in range(repeats))


def train(quick: bool, device: str) -> dict:
    """Training throughput at batch 64 (paper width; the demo's in the quick run), generator and
    critic steps through the real Lightning loop: the reference settings (convolutional bottleneck,
    float32, PyTorch's default Adam, channels first, glibc's default allocator) against the
    project's defaults on the device (dense bottleneck, the precision ``auto`` picks, fused Adam,
    channels last, freed memory retained).

    Each side's efficiency is its achieved FLOP/s (FLOPs of a step, counted, times steps/s) over the
    matmul peak measured in the dtype it computes in: float32 for the reference, the autocast dtype
    for ours."""
    size = TRAIN[quick]
    width, steps, warmup, repeats = size["width"], size["steps"], size["warmup"], size["repeats"]
    fit = {"width": width, "batch": BATCH, "steps": steps, "warmup": warmup, "device": device}
    sides = {"reference": REFERENCE, "best": best_settings(device)}
    with Worker() as reference, Worker(retain_freed_memory=True) as best:
        ref, ours = alternate(lambda: reference("fit", settings=sides["reference"], **fit),
                              lambda: best("fit", settings=sides["best"], **fit), repeats)
        counted = {side: worker("step_flops", settings=sides[side], width=width, batch=FLOP_BATCH, device=device)
                   for side, worker in (("reference", reference), ("best", best))}
    rates = {"reference": ref, "best": ours}
    dtypes = {side: str(hardware.autocast_dtype(s["precision"])).removeprefix("torch.") for side, s in sides.items()}
    peaks = {dtype: peak_matmul_flops(device, getattr(torch, dtype)) for dtype in sorted(set(dtypes.values()))}
    result = {
        "width": width,
        "batch": BATCH,
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
        "steps_timed": f"{steps - warmup} of {steps} per fit ({warmup} warm-up), median of {repeats} fits each, alternating",
        "reference_settings": {**REFERENCE, "retain_freed_memory": False},
        "best_settings": {**sides["best"], "retain_freed_memory": True},
        "best_precision_reason": precision_choice(device).reason,
        "reference_images_per_s": ref,
        "best_images_per_s": ours,
        "ratio": ours / ref,
        "peak_matmul_flops_per_s": peaks,
        "flops_note": f"FLOPs of one training step (generator forward and backward, critic forward and backward on real "
        f"and fake centres, the critic's forward on the fake again for the adversarial term) counted by FlopCounterMode "
        f"(matrix products and convolutions) on a real step at batch {FLOP_BATCH}, divided by {FLOP_BATCH}: exact per "
        f"image, every counted FLOP being linear in the batch (Adam and the norms are not counted); efficiency = "
        f"flops_per_image * images_per_s / the matmul peak in the side's dtype, measured right after the fits",
    }
    for side in sides:
        per_image, peak = counted[side] / FLOP_BATCH, peaks[dtypes[side]]
        achieved = per_image * rates[side]
        result |= {f"{side}_dtype": dtypes[side], f"{side}_flops_per_image": per_image, f"{side}_achieved_flops_per_s": achieved,
                   f"{side}_peak_matmul_flops_per_s": peak, f"{side}_efficiency": achieved / peak}
    return result


PCA_HEAD_K = 256  # the larger head of experiment=pca_ablation


def pca_head(quick: bool, device: str) -> dict:
    """What the PCA projection head costs: training throughput (batch 64, the 64 mask, generator and
    critic steps, the project's settings on the device) with the head on the top 256 components
    against the same model without it. Not a fast path but a price, so no efficiency: the step's is
    the train case's; the head adds 4 x 3 x 4096 x 256 FLOPs an image to the forward pass."""
    size = TRAIN[quick]
    width, steps, warmup, repeats = size["width"], size["steps"], size["warmup"], size["repeats"]
    fit = {"width": width, "batch": BATCH, "steps": steps, "warmup": warmup, "device": device}
    settings = best_settings(device)
    with Worker(retain_freed_memory=True) as plain, Worker(retain_freed_memory=True) as head:
        ref, ours = alternate(lambda: plain("fit", settings=settings, **fit),
                              lambda: head("fit", settings={**settings, "pca_components": PCA_HEAD_K}, **fit), repeats)
    return {
        "width": width, "batch": BATCH, "steps": steps, "repeats": repeats, "settings": settings, "k": PCA_HEAD_K,
        "without_head_images_per_s": ref, "with_head_images_per_s": ours, "ratio": ours / ref,
        "note": "ratio < 1: the head's share of a training step (its projection runs in float32, autocast off)",
    }


def _flops(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def jacobian_case(quick: bool, device: str) -> dict:
    """The whole A_y at m = 64 (paper width; the demo's in the quick run) by
    :func:`analysis.jacobian.jacobian` (through the code: dz/dy by pull-backs, dout/dz by forward
    products, one matrix product), against the authors' loop of one ``autograd.grad`` per output
    scalar on their model (convolutional bottleneck), timed on random rows and extrapolated to all
    12,288. Its efficiency is the float32 compute bound over the time taken."""
    size = JACOBIAN[quick]
    width, loop_rows, repeats, ours_repeats = size["width"], size["loop_rows"], size["repeats"], size["ours_repeats"]
    total = 3 * 64 * 64
    rows = torch.randperm(total, generator=torch.Generator().manual_seed(0))[: loop_rows * repeats].view(repeats, -1).tolist()
    loops, ours = [], []
    with Worker() as reference, Worker(retain_freed_memory=True) as best:
        for i in range(repeats):
            loops.append(reference("loop", width=width, rows=rows[i], device=device))
            if i < ours_repeats:
                ours.append(best("jacobian", width=width, device=device))
    loop, our = statistics.median(loops), statistics.median(ours)
    loop_full = loop * total / loop_rows

    # The compute bound of our method: FLOPs counted for one product of each kind, times their number.
    torch.manual_seed(0)
    generator = ContextEncoder(64, **width).eval()
    y = generator.mask_input(torch.rand(1, 3, 128, 128))
    z = generator.encoder(y).detach()
    code = z.numel()
    with torch.no_grad():
        _, pull_back = vjp(generator.encoder, y)
    pull = _flops(lambda: pull_back(torch.ones_like(z)))
    push = _flops(lambda: generator.decoder(z))  # a tangent takes the forward's own linear maps
    matmul = 2 * total * code * y.numel()
    counted = code * pull + code * push + matmul
    peak = peak_matmul_flops(device)
    return {
        "width": width,
        "mask_size": 64,
        "rows": total,
        "loop_rows": loop_rows,
        "repeats": repeats,
        "method": f"ours: the whole A_y, measured, median of {ours_repeats}; loop: {loop_rows} random rows a repeat, "
        f"extrapolated, median of {repeats}; alternating, each side in its own process",
        "loop_seconds_extrapolated": loop_full,
        "loop_seconds_per_row": loop / loop_rows,
        "full_seconds": our,
        "ratio": loop_full / our,
        "flops_counted": counted,
        "flops_note": f"{code} encoder pull-backs + {code} decoder forward products (counted by FlopCounterMode: one pull-back; one decoder forward pass, which is what a tangent costs) "
        f"+ the {total} x {code} x {y.numel()} matrix product",
        "peak_matmul_flops_per_s": peak,
        "compute_bound_seconds": counted / peak,
        "efficiency": counted / peak / our,
    }


def _sample(n: int, dim: int = 4096, rank: int = 300, seed: int = 0) -> torch.Tensor:
    """n float64 vectors with a decaying spectrum (rank-``rank`` signal plus small isotropic noise),
    so the top eigenvalues are well separated."""
    g = torch.Generator().manual_seed(seed)
    scales = 1.0 / torch.arange(1, rank + 1, dtype=torch.float64)
    signal = (torch.randn(n, rank, generator=g, dtype=torch.float64) * scales) @ torch.randn(
        rank, dim, generator=g, dtype=torch.float64
    )
    return signal + 0.01 * torch.randn(n, dim, generator=g, dtype=torch.float64)


def pca_flops(n: int, dim: int, rank: int) -> int:
    """Leading-order FLOPs of :func:`inpaint.pca.fit_pca` on ``n`` vectors of ``dim``: the N x N
    Gram matrix and the ``rank`` eigenvectors mapped back through X^T when N <= D, else the D x D sum
    of outer products; plus ``torch.linalg.eigh`` of the order-k problem (LAPACK's syevd) as its
    tridiagonal reduction (4/3 k^3) and the back-transformation of the eigenvectors (2 k^3). The
    divide and conquer between them is left out, so the efficiency derived is a lower bound."""
    if n <= dim:
        products, k = 2 * n * n * dim + 2 * dim * n * rank, n
    else:
        products, k = 2 * n * dim * dim, dim
    return products + 10 * k**3 // 3


def pca(quick: bool, device: str) -> dict:
    """:func:`inpaint.pca.fit_pca` on ``device`` (streamed covariance; the N x N Gram matrix when
    N <= D) vs scikit-learn's exact PCA on the CPU, on the same float64 data. Ours' efficiency is
    its float64 FLOP/s (:func:`pca_flops`) over the float64 matmul peak."""
    from sklearn.decomposition import PCA as SklearnPCA

    n, repeats = PCA[quick]["images"], PCA[quick]["repeats"]
    x = _sample(n)
    x_np = x.numpy()
    fitted = {}

    def sklearn() -> float:
        model = SklearnPCA(svd_solver="full")
        seconds = timed(lambda: model.fit(x_np))
        fitted["sklearn"] = model.explained_variance_[:100]
        return seconds

    on_device = x.to(device)

    def ours() -> float:
        synchronize(device)
        start = time.perf_counter()
        fitted["ours"] = fit_pca(on_device.split(500))
        synchronize(device)
        return time.perf_counter() - start

    ref, our = alternate(sklearn, ours, repeats)
    eigenvalues = fitted["ours"].eigenvalues[:100].cpu().numpy()
    rel = np.abs(eigenvalues - fitted["sklearn"]) / fitted["sklearn"]
    flops = pca_flops(n, x.shape[1], fitted["ours"].rank)
    peak = peak_matmul_flops(device, torch.float64)
    return {
        "shape": [n, x.shape[1]],
        "dtype": "float64",
        "ours_path": "N x N Gram matrix" if n <= x.shape[1] else "D x D covariance",
        "ours_device": device,
        "ours_seconds": our,
        "sklearn_seconds": ref,
        "ratio": ref / our,
        "max_eigenvalue_rel_diff": float(rel.max()),
        "repeats": repeats,
        "flops": flops,
        "flops_note": "leading terms, counted by hand (benchmarks.cases.pca_flops; FlopCounterMode sees neither the streamed "
        "sum's in-place addmm_ nor eigh): the matrix products, eigh's tridiagonal reduction and back-transformation "
        "(its divide and conquer left out: the efficiency is a lower bound)",
        "peak_matmul_flops_per_s": peak,
        "efficiency": flops / our / peak,
    }


def data(quick: bool, device: str) -> dict:
    """Images/s through the data modules (num_workers=0, batch 64), decoding every epoch (reference)
    vs reading the uint8 decode cache (ours): :class:`CelebADataModule` on a generated CelebA-layout
    tree (JPEG decoding), and :class:`FolderDataModule` on a folder of 640x480 JPEG photographs
    (tests/folder_tree.py; decoding, resizing to load_size and cropping vs cropping from the cache).
    Both run on the CPU whatever the device: this is the loader's side of the pipeline."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from celeba_tree import make_celeba_tree
    from folder_tree import write_photographs

    # imported here: the data modules import Lightning, which the other cases and a refused --device need not
    from inpaint.data.celeba import CelebADataModule
    from inpaint.data.folder import FolderDataModule

    n, photos, repeats = DATA[quick]["images"], DATA[quick]["photos"], DATA[quick]["repeats"]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_celeba_tree(Path(tmp), n_train=n, n_val=1, n_test=1)
        write_photographs(Path(tmp) / "photos", photos + 2, size=(640, 480), suffixes=(".jpg",))  # + val and holdout

        def loader(cache_dir, kind=CelebADataModule, **settings):
            module = kind(holdout_size=1, batch_size=64, num_workers=0, cache_dir=cache_dir, **settings)
            module.prepare_data()
            module.setup("fit")
            return module.train_dataloader()

        def folder_loader(cache_dir):
            return loader(cache_dir, FolderDataModule, root=str(Path(tmp) / "photos"), val_size=1, load_size=143)

        jpeg, cached = loader(None, root=str(root)), loader(str(Path(tmp) / "cache"), root=str(root))
        build = timed(lambda: loader(str(Path(tmp) / "cache2"), root=str(root)))
        ref, our = alternate(lambda: n / timed(lambda: sum(len(b) for b in jpeg)),
                             lambda: n / timed(lambda: sum(len(b) for b in cached)), repeats)
        decoding, from_cache = folder_loader(None), folder_loader(str(Path(tmp) / "cache"))
        folder_build = timed(lambda: folder_loader(str(Path(tmp) / "cache2")))
        folder_ref, folder_our = alternate(lambda: photos / timed(lambda: sum(len(b) for b in decoding)),
                                           lambda: photos / timed(lambda: sum(len(b) for b in from_cache)), repeats)
    return {
        "images": n,
        "batch": 64,
        "num_workers": 0,
        "jpeg_images_per_s": ref,
        "cache_images_per_s": our,
        "ratio": our / ref,
        "cache_build_seconds": build,
        "folder_images": photos,
        "folder_image_size": [640, 480],
        "folder_load_size": 143,
        "folder_decode_images_per_s": folder_ref,
        "folder_cache_images_per_s": folder_our,
        "folder_ratio": folder_our / folder_ref,
        "folder_cache_build_seconds": folder_build,
        "note": f"median of {repeats} passes over each train split, alternating; each cache is built once (*cache_build_seconds); "
        f"the folder's training items are random 128 crops of the images resized to a 143-pixel short side",
        "efficiency_note": "none: JPEG decoding and copying bytes, no arithmetic a matmul peak would bound",
    }


def unet(quick: bool, device: str) -> dict:
    """The U-Net's training throughput beside the Context Encoder's: both at the demo's width, trained
    as the demo trains (pure L2, no critic), batch 64, the project's settings on the device; the U-Net
    fills the centred 64 mask's hole (its cost hardly depends on the hole's shape). Each side's
    efficiency is its counted FLOPs per image times images/s over the matmul peak in its dtype."""
    size = TRAIN[True]  # the demo's width in both runs: the U-Net's default is no paper's
    steps, warmup, repeats = size["steps"] + (0 if quick else 4), size["warmup"], size["repeats"]
    settings = {**best_settings(device), "adv_weight": 0.0}
    sides = {"context_encoder": settings, "unet": {**settings, "architecture": "unet"}}
    fit = {"width": DEMO_WIDTH, "batch": BATCH, "steps": steps, "warmup": warmup, "device": device}
    with Worker(retain_freed_memory=True) as ce, Worker(retain_freed_memory=True) as un:
        rates = dict(zip(sides, alternate(lambda: ce("fit", settings=sides["context_encoder"], **fit),
                                          lambda: un("fit", settings=sides["unet"], **fit), repeats)))
        counted = {side: worker("step_flops", settings=sides[side], width=DEMO_WIDTH, batch=FLOP_BATCH, device=device)
                   for side, worker in (("context_encoder", ce), ("unet", un))}
    dtype = str(hardware.autocast_dtype(settings["precision"])).removeprefix("torch.")
    peak = peak_matmul_flops(device, getattr(torch, dtype))
    result = {"width": DEMO_WIDTH, "batch": BATCH, "steps": steps, "warmup": warmup, "repeats": repeats, "settings": settings,
              "dtype": dtype, "peak_matmul_flops_per_s": peak,
              "note": "generator steps only (pure L2), FLOPs counted by FlopCounterMode on a real step as in the train case"}
    for side, rate in rates.items():
        per_image = counted[side] / FLOP_BATCH
        result |= {f"{side}_images_per_s": rate, f"{side}_flops_per_image": per_image,
                   f"{side}_efficiency": per_image * rate / peak}
    result["ratio"] = rates["unet"] / rates["context_encoder"]
    return result


def unet_jacobian(quick: bool, device: str) -> dict:
    """The whole A_y of a 64 x 64 hole (12,288 rows by 49,152 inputs) of the U-Net at the demo's width,
    by reverse mode through the generator contract, and its exact spectrum (float64 Gram of the known
    columns, all eigenvalues, the top 4 vectors), against its compute bound: the rows' pull-backs
    (one counted, times 12,288) at the float32 matmul peak, the Gram (n^2 k multiply-adds by dsyrk) and
    the eigenvalues (4/3 n^3 for the tridiagonal reduction) at the float64 peak."""
    from benchmarks.worker import unet_hole

    with Worker(retain_freed_memory=True) as worker:
        measured = worker("unet_jacobian", width=DEMO_WIDTH, device=device)
    torch.manual_seed(0)
    net = PartialConvUNet(base_channels=DEMO_WIDTH["base_channels"]).eval()
    known = unet_hole()
    y = net.mask_input(torch.rand(1, 3, 128, 128), known)
    with torch.no_grad():
        _, pull_back = vjp(lambda v: net(v, known), y)
    rows, columns = 3 * 64 * 64, 3 * (128 * 128 - 64 * 64)
    pull = _flops(lambda: pull_back(torch.ones_like(y)))
    peaks = {"float32": peak_matmul_flops(device), "float64": peak_matmul_flops(device, torch.float64)}
    bound = {"rows": rows * pull / peaks["float32"], "gram": rows**2 * columns / peaks["float64"],
             "eigenvalues": 4 / 3 * rows**3 / peaks["float64"]}
    total = measured["whole_seconds"] + measured["spectrum_seconds"]
    return {
        "width": DEMO_WIDTH["base_channels"], "rows": rows, "known_columns": columns, **measured,
        "total_seconds": total, "max_rss_gb": measured["max_rss_bytes"] / 2**30,
        "pull_back_flops": pull, "peak_matmul_flops_per_s": peaks, "compute_bound_seconds": bound,
        "compute_bound_total_seconds": sum(bound.values()), "ratio": None, "efficiency": sum(bound.values()) / total,
        "note": "seconds measured once each in a worker process; the bound counts one pull-back by FlopCounterMode",
    }


def exemplar(quick: bool, device: str) -> dict:
    """The exemplar fill and its weight maps (the four named pixels) for holdout faces at the 64 mask
    (200, the analyses' baseline_images; 40 in the quick run), on the CPU whatever ``device``: ours
    against the same algorithm comparing every known patch at every level (Wexler et al.'s exhaustive
    search) and against OpenCV's shift-map (a library's exemplar fill, without weights), each timed
    alone over the same images, with the hole PSNR each reaches. No fraction of a peak: the search is
    a gather, not a matrix product."""
    from analysis.baselines import hole_metrics, shift_map
    from analysis.exemplar import exemplar_field
    from analysis.locality import named_pixels
    from inpaint.data.faces import FacesDataset

    n = 40 if quick else 200
    faces = FacesDataset(n, seed=2)
    images = torch.stack([faces[i] for i in range(n)]).float() / 255
    hole = np.zeros((128, 128), bool)
    hole[32:96, 32:96] = True
    pixels = list(named_pixels(hole).values())

    def fill(exhaustive: bool) -> torch.Tensor:
        out = []
        for image in images:
            filled, field = exemplar_field(image, hole, exhaustive=exhaustive)
            field.weight_maps(pixels)
            out.append(filled)
        return torch.stack(out)

    result = {"images": n, "hole": "centred 64 x 64 of 128 x 128", "threads": torch.get_num_threads()}
    for name, run in (("ours", lambda: fill(False)), ("exhaustive", lambda: fill(True)),
                      ("shiftmap", lambda: shift_map(images, hole))):
        start = time.perf_counter()
        filled = run()
        result[f"{name}_seconds"] = time.perf_counter() - start
        result[f"{name}_psnr"] = hole_metrics(filled, images, hole)["psnr"]
    result["ratio"] = result["exhaustive_seconds"] / result["ours_seconds"]
    result["shiftmap_ratio"] = result["shiftmap_seconds"] / result["ours_seconds"]
    result["note"] = "ours and exhaustive include the four named pixels' weight maps; shift-map returns no weights"
    return result


def explorer(quick: bool, device: str) -> dict:
    """A click on the explorer's live page (``analyze.py explore=``), the model loaded once: one
    hole pixel's maps by :meth:`analysis.explorer.Scene.maps` (its three rows of A_y by reverse mode,
    the biharmonic's and the exemplar's maps, phi_p, the centroid) on the centred 64 hole, for the
    Context Encoder at the demo's and the paper's width and the U-Net at the demo's (random weights:
    the time does not depend on them), the median over pixels after a warm-up, against the budgets
    the explorer is held to (0.3 s at the demo's width, 1 s at the paper's). Its efficiency counts the
    rows' FLOPs alone (a forward and three pull-backs, FlopCounterMode) at the float32 matmul peak: a
    lower bound, the classical poles' maps left out."""
    from analysis.explorer import Scene

    torch.manual_seed(0)
    image, known = torch.rand(3, 128, 128), torch.ones(1, 1, 128, 128)
    known[..., 32:96, 32:96] = 0
    pixels = [(64, 64), (40, 40), (33, 80), (90, 50), (70, 70)][: 3 if quick else 5]
    peak = peak_matmul_flops(device)
    result = {"hole": "centred 64 x 64 of 128 x 128", "pixels": len(pixels), "threads": torch.get_num_threads(),
              "peak_matmul_flops_per_s": peak}
    networks = {"context_encoder_demo": (lambda: ContextEncoder(64, **DEMO_WIDTH), 0.3),
                "context_encoder_paper": (lambda: ContextEncoder(64, **PAPER_WIDTH), 1.0),
                "unet_demo": (lambda: PartialConvUNet(base_channels=DEMO_WIDTH["base_channels"]), 0.3)}
    for name, (build, budget) in networks.items():
        scene = Scene(build().eval().to(device), image, known, [0.1, 0.25, 0.5, 1.0])
        scene.exemplar()  # found while the page loads (analyze.py warms it in a thread)
        scene.maps(pixels[:1])  # warm-up
        seconds = statistics.median(timed(lambda p=p: scene.maps([p]), device) for p in pixels)
        y = scene.masked[None]
        fill = scene.generator.fill
        with torch.no_grad():
            _, pull_back = vjp(lambda v, fill=fill: fill(v, scene.known), y)
        # one forward, then a pull-back per output channel of the pixel (pixel_rows' vmapped three)
        flops = _flops(lambda: fill(y, scene.known)) + 3 * _flops(lambda: pull_back(torch.ones_like(y)))
        result[name] = {"click_seconds": seconds, "budget_seconds": budget, "ratio": budget / seconds,
                        "rows_flops": flops, "efficiency": flops / peak / seconds}
    # the case's own ratio and efficiency (gpu_check and the JSON's readers): the tightest width's
    # ratio, and the paper width's efficiency
    result["ratio"] = min(result[name]["ratio"] for name in networks)
    result["efficiency"] = result["context_encoder_paper"]["efficiency"]
    result["note"] = "ratio: the budget over the click's seconds (above 1: within it); the case's ratio is the smallest of the three"
    return result


CASES = {"train": train, "jacobian": jacobian_case, "pca": pca, "data": data, "pca_head": pca_head, "unet": unet,
         "unet_jacobian": unet_jacobian, "exemplar": exemplar,
         "explorer": explorer}
