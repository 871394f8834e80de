"""The local analysis: the exact Jacobian A_y (against autograd, and f(y) = A_y y), weight maps,
phi_p on maps with known answers, the spectrum, and the two measurements beyond the paper."""

import math

import pytest
import torch

from analysis.jacobian import (
    centroid_offset,
    effective_dimensionality,
    factored_svd,
    grid_period,
    homogeneity_error,
    jacobian,
    jacobian_factors,
    named_pixels,
    net_bias,
    participation_ratio,
    phi_p,
    svd_spectrum,
    top_singular_vectors,
    weight_map,
)
from inpaint.masks import CenterMask
from inpaint.models import ContextEncoder
from tolerances import rel_tol

CODE = 64  # trained_like's code size: every entry of A_y is a sum over the code units, sum_k P_ik Q_kj


def trained_like(mask_size: int, bias_free: bool = True, bottleneck: int = 64) -> ContextEncoder:
    """A small generator whose batch-norm statistics come from one train-mode pass (as in test_models), in eval mode."""
    torch.manual_seed(mask_size)
    g = ContextEncoder(mask_size, bias_free, base_channels=8, bottleneck=bottleneck)
    norms = [m for m in g.modules() if hasattr(m, "running_var")]
    for m in norms:
        m.momentum = 1.0
    with torch.no_grad():
        g(g.mask_input(torch.rand(8, 3, 128, 128)))
    for m in norms:
        m.momentum = 0.1
    return g.eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def close(a: torch.Tensor, b: torch.Tensor, terms: int = CODE) -> bool:
    """Equal up to the float32 rounding of A_y's entries, relative to the largest entry of b. Every
    route to A_y (P Q through the code, rows pulled back through the whole network, autograd's loop,
    other batch sizes or memory layouts) sums each entry over the ``terms`` code units in its own order."""
    return (a - b).abs().max().item() <= rel_tol(torch.float32, terms) * b.abs().max().item()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 3, 128, 128)


@pytest.fixture(scope="module")
def case16(image):
    g = trained_like(16)
    y = g.mask_input(image)[0]
    return g, y, jacobian(g, y)


@pytest.fixture(scope="module")
def case64(image):
    g = trained_like(64)
    y = g.mask_input(image)[0]
    return g, y, jacobian(g, y)


def test_full_jacobian_equals_autograd(case16):
    g, y, jac = case16
    assert jac.shape == (3, 16, 16, 3, 128, 128)
    reference = torch.autograd.functional.jacobian(lambda x: g(x[None])[0], y)  # a loop of 768 backward passes
    assert close(jac, reference)


def test_pixel_rows_equal_autograd_at_64(case64):
    g, y, _ = case64
    pixels = [(0, 0), (32, 63), (5, 40)]
    rows, cols = torch.tensor(pixels).T
    reference = torch.autograd.functional.jacobian(lambda x: g(x[None])[0][:, rows, cols], y)  # (3, P, 3, H, W)
    got = jacobian(g, y, pixels)
    assert got.shape == (3, 3, 3, 128, 128)
    assert close(got, reference.transpose(0, 1))


@pytest.mark.parametrize("case", ["case16", "case64"])
def test_jacobian_reproduces_the_output(case, request):
    g, y, jac = request.getfixturevalue(case)
    with torch.no_grad():
        fy = g(y[None])[0]
    assert fy.abs().max() > 1e-3
    # A_y y sums over the 3 x 128 x 128 input pixels; f(y) is a conv chain over the same inputs
    assert rel(torch.einsum("aijchw,chw->aij", jac, y), fy) < rel_tol(torch.float32, y.numel())


def test_pixels_are_slices_of_the_full_jacobian_for_any_chunk(case64):
    g, y, jac = case64
    pixels = list(named_pixels(64).values()) + [(63, 0)]
    expected = torch.stack([jac[:, i, j] for i, j in pixels])
    for chunk in (1, 4, 256):  # 15 rows: one per chunk, chunks that split pixels, one chunk
        got = jacobian(g, y, pixels, chunk=chunk)
        assert got.shape == (5, 3, 3, 128, 128)
        assert close(got, expected), chunk
    with pytest.raises(IndexError):
        jacobian(g, y, [(0, 64)])


def test_code_and_rows_methods_agree(case64):
    """The full A_y goes through the code (dout/dz times dz/dy); a few rows are pulled back directly."""
    g, y, jac = case64
    pixels = [(0, 0), (40, 7)]
    by_code, by_rows = jacobian(g, y, pixels, method="code"), jacobian(g, y, pixels, method="rows")
    assert close(by_code, by_rows) and close(by_rows, torch.stack([jac[:, i, j] for i, j in pixels]))
    with pytest.raises(ValueError, match="ContextEncoder"):
        jacobian(torch.nn.Sequential(g.encoder, g.decoder), y, pixels, method="code")


def test_chunks_are_sized_from_free_memory(case64, monkeypatch):
    import analysis.jacobian as module

    g, y, _ = case64
    assert 2**20 < module.available_memory(torch.device("cpu")) < 2**50
    monkeypatch.setattr(module, "available_memory", lambda device: 400 * 2**20)
    roomy = module.auto_chunk(g, y[None])
    monkeypatch.setattr(module, "available_memory", lambda device: 4 * 2**20)
    assert 1 <= module.auto_chunk(g, y[None]) < roomy / 50
    assert module.auto_chunk(g, y[None], most=8) <= 8


def test_channels_last_generator_gives_the_same_jacobian(case16):
    g, y, jac = case16
    pixels = [(3, 7), (15, 0)]
    fast = trained_like(16).to(memory_format=torch.channels_last)
    y_last = y[None].contiguous(memory_format=torch.channels_last)[0]  # a channels-last input too
    got = jacobian(fast, y_last, pixels)
    assert close(got, torch.stack([jac[:, i, j] for i, j in pixels]))


def test_jacobian_runs_in_eval_mode_and_leaves_the_generator_as_it_was(case16):
    _, y, jac = case16
    g = trained_like(16).train()
    g.decoder[-1].eval()  # a mixed state must come back exactly
    norms = [m for m in g.modules() if hasattr(m, "running_var")]
    running = [m.running_var.clone() for m in norms]
    got = jacobian(g, y, [(8, 8)])
    assert close(got[0], jac[:, 8, 8])  # eval mode was used
    assert g.training and not g.decoder[-1].training
    assert all(m.training for m in g.modules() if m is not g.decoder[-1])
    assert all(torch.equal(before, m.running_var) for before, m in zip(running, norms))
    assert all(p.requires_grad and p.grad is None for p in g.parameters())
    homogeneity_error(g, y)
    assert g.training


@pytest.mark.parametrize("mask_size", [16, 64])
def test_homogeneity_and_net_bias(mask_size, image):
    free, biased = trained_like(mask_size), trained_like(mask_size, bias_free=False)
    y_free, y_biased = free.mask_input(image)[0], biased.mask_input(image)[0]
    # forward mode with the tangent y repeats the forward pass (often bit for bit); at worst it rounds
    # as a conv chain over the 3 x 128 x 128 inputs. The biased model's net bias is ~2 of ||f(y)||.
    tol = rel_tol(torch.float32, y_free.numel())
    assert homogeneity_error(free, y_free) < tol
    assert homogeneity_error(biased, y_biased) > 1e-2
    assert homogeneity_error(free, free.mask_input(torch.rand(2, 3, 128, 128))) < tol  # batches too
    with torch.no_grad():
        f_free, f_biased = free(y_free[None])[0], biased(y_biased[None])[0]
    b_free, b_biased = net_bias(free, y_free), net_bias(biased, y_biased)
    assert b_free.shape == b_biased.shape == (3, mask_size, mask_size)
    assert b_free.norm() < tol * f_free.norm()
    assert b_biased.norm() > 1e-2 * f_biased.norm()


def test_weight_map_kinds():
    rows = torch.randn(2, 3, 3, 8, 8)
    assert torch.equal(weight_map(rows), rows[:, 0, 0])
    colour = weight_map(rows, "colour")
    assert colour.shape == (2, 8, 8)
    # the root of a sum of 9 squares, two ways
    assert torch.allclose(colour[1, 4, 5], rows[1, :, :, 4, 5].norm(), rtol=rel_tol(torch.float32, 9), atol=0)
    with pytest.raises(ValueError):
        weight_map(rows, "red")


def one_pixel(row: int, col: int, value: float = 1.0) -> torch.Tensor:
    m = torch.zeros(128, 128)
    m[row, col] = value
    return m


def test_phi_code_window_edges_by_hand():
    # m = 64: s = 32, e = 96; window [floor(32 - 32p), floor(96 + 32p)) in both axes.
    above = one_pixel(28, 50)  # inside once floor(32 - 32p) <= 28, i.e. p > 3/32
    assert phi_p(above, 64, 0.09).item() == 0 and phi_p(above, 64, 0.1).item() == 1
    below = one_pixel(99, 50)  # inside once floor(96 + 32p) >= 100, i.e. p >= 1/8 (floor, not round)
    assert phi_p(below, 64, 0.1).item() == 0 and phi_p(below, 64, 0.125).item() == 1
    corner = one_pixel(20, 100)  # both axes: rows need p > 11/32, columns p >= 5/32
    assert phi_p(corner, 64, 0.34).item() == 0 and phi_p(corner, 64, 0.35).item() == 1


def test_phi_code_zeroes_the_predicted_square_only():
    both = one_pixel(60, 60) + one_pixel(10, 10)  # (60, 60) is inside the square [32, 96)^2
    # integral images of a few ones are exact, and so are 0 / 1 and 1 / 1
    assert torch.equal(phi_p(both, 64, [0.5, 0.65, 0.66, 1.0]), torch.tensor([0, 0, 1, 1], dtype=torch.float64))
    band = one_pixel(5, 60)  # a column of the square, far above it: kept
    assert phi_p(band, 64, 1.0).item() == 1 and phi_p(band, 64, 0.5).item() == 0
    # The paper's window at p = 1 is the square itself, and nothing is zeroed. (Exact sums, then a
    # rounded division and square root.)
    paper = phi_p(both, 64, 1.0, definition="paper").item()
    assert paper == pytest.approx(1 / math.sqrt(2), rel=rel_tol(torch.float64))


def test_phi_on_uniform_maps_is_a_ratio_of_areas():
    ones = torch.ones(128, 128)
    exact = rel_tol(torch.float64)  # the integral image counts pixels exactly; then one division and one root
    # code, m = 64, p = 0.5: window [16, 112) less the square: (96^2 - 64^2) / (128^2 - 64^2)
    assert phi_p(ones, 64, 0.5).item() == pytest.approx(math.sqrt(5120 / 12288), rel=exact)
    # code, m = 16, p = 0.25: s = 56, window [42, 86): (44^2 - 16^2) / (128^2 - 16^2)
    assert phi_p(ones, 16, 0.25).item() == pytest.approx(math.sqrt(1680 / 16128), rel=exact)
    # paper, m = 64, p = 0.5: window [48, 80), side 32 of 128; p = 0.1: [60.8, 67.2) -> [60, 68), side 8
    assert phi_p(ones, 64, [0.5, 0.1], definition="paper").tolist() == pytest.approx([0.25, 1 / 16], rel=exact)
    # A 3 x larger map changes nothing; p = 0 leaves an empty window.
    assert phi_p(3 * ones, 64, [0.0, 1.0]).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("definition", ["code", "paper"])
def test_phi_is_monotone_bounded_and_shaped(definition, case64):
    _, _, jac = case64
    torch.manual_seed(3)
    pixels = named_pixels(64)
    maps = torch.stack([weight_map(jac[:, i, j], kind) for i, j in pixels.values() for kind in ("channel0", "colour")])
    maps = torch.cat([maps, torch.randn(4, 128, 128)]).reshape(3, 4, 128, 128)
    ps = torch.linspace(0, 1, 41)
    phi = phi_p(maps, 64, ps, definition=definition)
    assert phi.shape == (3, 4, 41)
    # phi^2 is a ratio of look-ups in a float64 integral image: two running sums of 128 terms each and
    # four look-ups, so at worst 4 x 256 roundings of the map's total energy (a larger window can hold
    # less only by that much; real increments here are > 1e-4)
    slack = rel_tol(torch.float64, 4 * 256, worst_case=True)
    assert (phi.square().diff(dim=-1) >= -slack).all()
    assert (phi >= 0).all() and (phi.square() <= 1 + slack).all()
    scalar = phi_p(maps, 64, 0.35, definition=definition)
    assert scalar.shape == (3, 4)
    assert torch.equal(scalar, phi_p(maps, 64, [0.35], definition=definition)[..., 0])
    if definition == "code":
        assert (phi[..., -1] == 1).all()  # the window is the whole map: its total over itself, exactly
    with pytest.raises(ValueError):
        phi_p(maps, 64, 1.5, definition=definition)


def small_jacobian() -> tuple[torch.Tensor, CenterMask]:
    """A random A_y-shaped tensor for m = 4 on 16 x 16 inputs, its mask's hole being [6, 10)^2."""
    torch.manual_seed(1)
    mask = CenterMask(16, 4)
    return torch.randn(3, 4, 4, 3, 16, 16), mask


@pytest.mark.parametrize("known_only", [True, False])
def test_svd_spectrum_equals_svdvals(known_only):
    jac, mask = small_jacobian()
    keep = torch.ones(16, 16, dtype=torch.bool)
    if known_only:
        keep[6:10, 6:10] = False
    expected = torch.linalg.svdvals(jac.reshape(48, 3, 16, 16)[:, :, keep].reshape(48, -1).double())
    s = svd_spectrum(jac, known_only, mask)
    assert s.shape == (48,) and (s.diff() <= 0).all()
    # float64 both ways; through the Gram matrix (sums over the 3 x 16 x 16 columns) s^2 carries its
    # rounding, so the relative error of s grows as the squared condition s_max / s_min (~1.7 here)
    tol = rel_tol(torch.float64, 3 * 16 * 16) * (expected[0] / expected[-1]).item() ** 2
    assert torch.allclose(s, expected, rtol=tol, atol=0)
    assert not torch.allclose(svd_spectrum(jac, not known_only, mask), expected, rtol=1e-3)


def test_svd_spectrum_infers_the_mask_from_a_full_jacobian(case16):
    _, _, jac = case16
    s = svd_spectrum(jac)
    assert s.shape == (768,)
    known = torch.ones(128, 128, dtype=torch.bool)
    known[57:71, 57:71] = False  # m = 16, overlap 1: the hole is [57, 71)
    # sum s^2 is the squared Frobenius norm of the known columns. It is the trace of the float64 Gram
    # matrix, spread by eigvalsh over 768 eigenvalues; the ~700 zero ones (rank <= the code size) are
    # clamped at 0, so their rounding adds up with one sign: the worst-case bound
    frobenius = jac[..., known].double().square().sum().item()
    assert effective_dimensionality(s) == pytest.approx(frobenius, rel=rel_tol(torch.float64, 768, worst_case=True))


def test_top_singular_vectors_are_singular_vectors():
    jac, mask = small_jacobian()
    s, u, v = top_singular_vectors(jac, 3, mask=mask)
    assert u.shape == (3, 3, 4, 4) and v.shape == (3, 3, 16, 16)
    # the same float64 Gram matrix, by two LAPACK eigensolvers of a 48 x 48 matrix
    assert torch.allclose(s, svd_spectrum(jac, True, mask)[:3], rtol=rel_tol(torch.float64, 48), atol=0)
    a = jac.reshape(48, -1)
    # U is rounded to float32 and U U^T sums 48 products; V = A^T U / s, and V V^T and A V sum over
    # the 3 x 16 x 16 columns, in float32
    assert torch.allclose(u.flatten(1) @ u.flatten(1).T, torch.eye(3), rtol=0, atol=rel_tol(torch.float32, 48))
    assert torch.allclose(v.flatten(1) @ v.flatten(1).T, torch.eye(3), rtol=0, atol=rel_tol(torch.float32, 768))
    su = u.flatten(1).T * s.float()
    av = a @ v.flatten(1).T
    assert torch.allclose(av, su, rtol=0, atol=rel_tol(torch.float32, 768) * su.abs().max().item())  # A v = s u
    assert v[:, :, mask.hole, mask.hole].abs().max() == 0
    assert (u.flatten(1).sum(1) >= 0).all()


def test_the_halves_of_a_jacobian_multiply_to_it(case16):
    g, y, jac = case16
    decoder, encoder = jacobian_factors(g, y)
    assert decoder.shape == (3, 16, 16, 64) and encoder.shape == (64, 3, 128, 128)
    assert close(torch.einsum("cijk,kdhw->cijdhw", decoder, encoder), jac)
    with pytest.raises(ValueError, match="one masked input"):
        jacobian_factors(g, y[None])


@pytest.mark.parametrize("bottleneck", [64, 1024], ids=["code smaller than the rows", "code larger than the rows"])
def test_factored_svd_is_the_exact_spectrum_of_the_whole_jacobian(image, bottleneck):
    g = trained_like(16, bottleneck=bottleneck)  # 768 rows of A_y
    y = g.mask_input(image)[0]
    decoder, encoder = jacobian_factors(g, y)
    jac = jacobian(g, y)
    s, u, v = factored_svd(decoder, encoder, 3)
    expected = svd_spectrum(jac)
    assert s.shape == (min(768, bottleneck),) and (s.diff() <= 0).all()
    # Both come from float32 A_y (or its halves), whose entries are rounded sums over the code, as in
    # close(): ||dA|| ~ tol s_max, and by Weyl no singular value moves further than ||dA||.
    tol = rel_tol(torch.float32, bottleneck)
    assert torch.allclose(s, expected[: len(s)], rtol=0, atol=tol * s[0].item())
    if len(expected) > len(s):
        assert expected[len(s) :].max() < tol * s[0]  # rank <= code: the rest are zero, up to A_y's rounding
    top, u_full, v_full = top_singular_vectors(jac, 3)
    assert torch.allclose(s[:3], top, rtol=0, atol=tol * s[0].item())
    # Same vectors, same signs (float32, by another route): each entry carries A_y's rounding; the
    # top three singular values are > 1 % of s_max apart, so the rounding hardly rotates the vectors.
    for got, want in ((u, u_full), (v, v_full)):
        assert (got - want).abs().max() <= tol * want.abs().max()


def test_factored_svd_survives_a_dead_code_unit():
    """A code unit that no input reaches makes Q Q^T singular: Cholesky fails, the eigen-decomposition takes over."""
    torch.manual_seed(3)
    decoder, encoder = torch.randn(3, 4, 4, 6), torch.randn(6, 3, 16, 16)
    encoder[2] = 0
    mask = CenterMask(16, 4)
    keep = torch.ones(16, 16, dtype=torch.bool)
    keep[mask.hole, mask.hole] = False
    known = encoder[..., keep].reshape(6, -1).double()
    assert torch.linalg.cholesky_ex(known @ known.T).info > 0  # the fallback is what runs
    a = decoder.reshape(48, 6).double() @ known
    s, u, v = factored_svd(decoder, encoder, 2, mask=mask)
    # float64, but through Gram matrices (sums over the 720 known columns): a zero singular value comes
    # back as the square root of their rounding, sqrt(eps * terms) of s_max; the others are far closer
    floor = math.sqrt(rel_tol(torch.float64, 720)) * s[0].item()
    assert torch.allclose(s, torch.linalg.svdvals(a)[:6], rtol=0, atol=floor)
    assert s[-1] < floor  # rank 5
    su = u.flatten(1).T * s[:2].float()  # A v = s u in float32, a sum over the 720 known columns
    av = a.float() @ v.flatten(1)[:, keep.expand(3, 16, 16).flatten()].T
    assert torch.allclose(av, su, rtol=0, atol=rel_tol(torch.float32, 720) * su.abs().max().item())


@pytest.mark.parametrize("rank", [1, 5, 12])
def test_dimensionality_of_a_projection_is_its_rank(rank):
    torch.manual_seed(rank)
    q, _ = torch.linalg.qr(torch.randn(40, rank, dtype=torch.float64))
    s = torch.linalg.svdvals(q @ q.T)
    tol = rel_tol(torch.float64, 40)  # the float64 SVD of a 40 x 40 matrix
    assert effective_dimensionality(s) == pytest.approx(rank, rel=tol)
    assert participation_ratio(s) == pytest.approx(rank, rel=tol)
    two = torch.tensor([1.0, 0.1])  # float32: its 0.1 is rounded, so the reference uses that value
    square = two[1].item() ** 2
    assert participation_ratio(two) == pytest.approx((1 + square) ** 2 / (1 + square**2), rel=rel_tol(torch.float64, 2))


def test_centroid_offset_of_one_bright_pixel():
    # float64 sums of a few small integers and one division by a power of two: exact
    m = one_pixel(40, 90, -2.0)  # weight's sign does not matter
    assert centroid_offset(m, (5, 50), mask_start=32) == (3.0, 8.0)
    two = one_pixel(10, 10) + one_pixel(30, 10, 3.0)  # centroid row 25
    assert centroid_offset(two, (0, 0), mask_start=0) == (25.0, 10.0)


def square_wave(x: torch.Tensor, period: int) -> torch.Tensor:
    return (torch.remainder(x, period) < period / 2).to(x.dtype)


def test_grid_period_finds_a_planted_grid():
    torch.manual_seed(4)
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    envelope = torch.exp(-((rows - 70) ** 2 + (cols - 60) ** 2) / (2 * 25.0**2))
    gridded = envelope * (1 + 0.3 * square_wave(rows, 8) + 0.3 * square_wave(cols, 16))
    found = grid_period(gridded)
    assert found["period_rows"] == 8 and found["period_cols"] == 16
    plain = grid_period(envelope + 0.01 * torch.rand(128, 128))
    # fixed data, so CPUs differ only by rounding: square waves of 30 % stand far above their spectral
    # neighbours, an envelope with noise does not
    assert min(found["prominence_rows"], found["prominence_cols"]) > 10 > 4 * max(plain["prominence_rows"], plain["prominence_cols"])


def test_named_pixels():
    assert named_pixels(64) == {"corner": (0, 0), "diagonal": (8, 8), "centre": (32, 32), "edge": (32, 63)}
    assert named_pixels(16)["edge"] == (8, 15)


@pytest.mark.slow
def test_paper_width_full_jacobian_is_exact_at_64():
    """The paper's 71 M-parameter generator: the whole A_y at m = 64 (12288 rows) gives A_y y = f(y)."""
    torch.manual_seed(0)
    g = ContextEncoder(64).eval()
    y = g.mask_input(torch.rand(1, 3, 128, 128))[0]
    full = jacobian(g, y)
    with torch.no_grad():
        fy = g(y[None])[0]
    assert full.shape == (3, 64, 64, 3, 128, 128)
    # as test_jacobian_reproduces_the_output: A_y y sums over the 3 x 128 x 128 inputs
    error = ((torch.einsum("cijdhw,dhw->cij", full, y) - fy).norm() / fy.norm()).item()
    assert error < rel_tol(torch.float32, y.numel())
