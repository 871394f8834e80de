"""The training originals' principal components in the network (the paper's proposed extension):
the basis is the analyses' PCA of the training crops, the head is its projection, the regulariser
its residual energy; fitted once when fitting starts, kept in the checkpoint, refused where it
cannot work."""

import lightning as L
import pytest
import torch

from inpaint.data.faces import FacesDataModule
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from inpaint.models import ContextEncoder, PCABasis
from inpaint.module import InpaintingModule, load_checkpoint
from inpaint.pca import fit_pca
from tolerances import rel_tol

SMALL = dict(base_channels=8, bottleneck=64, adv_weight=0.0)


def crops_pca(mask_size: int, n: int = 300):
    """A PCA of random crops of rank 8 plus noise, and 4 RGB crops: 4 of those crops, each channel
    scaled by a colour, plus noise that leaves energy outside any few components."""
    g = torch.Generator().manual_seed(mask_size)
    dim = mask_size * mask_size
    low_rank = torch.rand(n, 8, generator=g, dtype=torch.float64) @ torch.rand(8, dim, generator=g, dtype=torch.float64) / 8
    pca = fit_pca([low_rank + 0.01 * torch.rand(n, dim, generator=g, dtype=torch.float64)])
    colour = torch.rand(4, 3, 1, 1, generator=g)
    crops = colour * low_rank[:4].float().reshape(4, 1, mask_size, mask_size)
    return pca, crops + 0.05 * torch.rand(4, 3, mask_size, mask_size, generator=g)


@pytest.mark.parametrize("mask_size", [16, 64])
def test_the_head_is_the_uncentred_projection_of_each_channel_and_the_regulariser_its_residual(mask_size):
    pca, crops = crops_pca(mask_size)
    k = 12
    head = PCABasis(mask_size, k, head=True)
    head.set_from(pca)
    q = pca.components(k)
    vectors = crops.double().reshape(-1, mask_size * mask_size)  # every channel of every crop
    expected = (pca.project(vectors, k, centred=False)).reshape(crops.shape)
    projected = head(crops)
    # float32 products over D pixels, then over k components, against float64
    tol = rel_tol(torch.float32, mask_size * mask_size)
    torch.testing.assert_close(projected.double(), expected, rtol=0, atol=tol * crops.abs().max().item())
    torch.testing.assert_close(head(projected), projected, rtol=0, atol=tol * crops.abs().max().item())  # P P = P
    residual = vectors - vectors @ q @ q.T
    assert head.outside(crops).item() == pytest.approx(residual.square().mean().item(), rel=1e-4)
    assert head.outside(projected).item() < 1e-6 * head.outside(crops).item()  # nothing outside the span
    assert head.outside(crops).item() > 1e-4  # the test crops do have energy outside it
    assert torch.equal(PCABasis(mask_size, k, head=False).eval().requires_grad_(False)(crops), crops)  # regulariser only: identity


def test_the_original_models_centred_head_projects_image_units_about_the_mean():
    pca, crops = crops_pca(16)
    head = PCABasis(16, 5, bias_free=False, centred=True, head=True)
    head.set_from(pca)
    values = crops * 2 - 1  # the original model's [-1, 1]
    expected = pca.project(crops.double().reshape(-1, 256), 5, centred=True).reshape(crops.shape) * 2 - 1
    torch.testing.assert_close(head(values).double(), expected, rtol=0, atol=rel_tol(torch.float32, 256) * 2)
    assert head(torch.zeros_like(values)).abs().max() > 0.1  # an offset: the biased model's net bias


def test_an_unfitted_basis_is_refused_clearly_and_a_wrong_one_too():
    head = PCABasis(16, 4, head=True)
    with pytest.raises(InpaintError, match="not fitted"):
        head(torch.rand(1, 3, 16, 16))
    with pytest.raises(InpaintError, match="does not fit"):
        head.set(torch.zeros(256, 5), torch.zeros(256), 100)
    with pytest.raises(InpaintError, match="between 1 and 256"):
        PCABasis(16, 257)
    with pytest.raises(InpaintError, match="offset"):
        ContextEncoder(16, base_channels=8, bottleneck=16, pca_components=4, pca_head=True, pca_centred=True)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(pca_weight=-0.1), "pca_weight must be a number >= 0"),
        (dict(pca_weight=0.1, pca_components=0), "between 1 and 256"),
        (dict(pca_head=True, pca_components=257), "between 1 and 256"),
        (dict(pca_weight=0.1, pca_head=True), "would be 0"),
        (dict(pca_head=True, pca_centred=True), "offset"),
    ],
)
def test_impossible_pca_settings_are_refused_before_anything_is_built(settings, message):
    with pytest.raises(InpaintError, match=message):
        InpaintingModule(mask_size=16, **SMALL, **settings)


def test_without_the_extension_the_model_has_no_basis_and_old_checkpoints_still_fit():
    model = InpaintingModule(mask_size=16, **SMALL, pca_components=8)  # k alone builds nothing
    assert model.generator.basis is None
    assert not any("components" in key for key in model.state_dict())


def faces(train_size: int = 48) -> FacesDataModule:
    return FacesDataModule(train_size=train_size, val_size=8, holdout_size=8, batch_size=8, num_workers=0)


def fit(model: InpaintingModule, data: FacesDataModule, tmp_path, **kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=1, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, **kwargs)
    trainer.fit(model, datamodule=data)
    return trainer


@pytest.mark.parametrize("settings", [dict(pca_weight=0.5), dict(pca_head=True)])
def test_fitting_starts_with_the_training_crops_pca_and_the_checkpoint_keeps_it(settings, tmp_path):
    torch.manual_seed(0)
    model = InpaintingModule(mask_size=16, pca_components=10, **SMALL, **settings)
    data = faces()
    trainer = fit(model, data, tmp_path, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path)])
    data.setup("fit")
    mask = CenterMask(128, 16)
    originals = torch.stack([data.split("train")[i] for i in range(48)]).double() / 255
    luma = torch.einsum("c,nchw->nhw", torch.tensor((0.299, 0.587, 0.114), dtype=torch.float64), mask.crop(originals))
    pca = fit_pca([luma.reshape(48, -1)])  # written out here, not through the code under test
    basis = model.generator.basis
    assert basis.ready and basis.count.item() == 48
    # float32 copy of the float64 eigenvectors (each column's sign fixed by the same rule)
    torch.testing.assert_close(basis.components.double(), pca.components(10), rtol=0, atol=2 * torch.finfo(torch.float32).eps)
    metrics = trainer.callback_metrics
    assert {"train/pca_outside", "val/pca_outside"} <= set(metrics)
    if settings.get("pca_head"):
        assert metrics["val/pca_outside"].item() < 1e-9  # the head's predictions lie in the span
    reloaded = load_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert reloaded.generator.basis.ready
    assert torch.equal(reloaded.generator.basis.components, basis.components)
    images = torch.rand(2, 3, 128, 128)
    torch.testing.assert_close(reloaded.eval()(images), model.eval()(images))


def test_resuming_keeps_the_checkpoints_basis_and_fits_nothing(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = InpaintingModule(mask_size=16, pca_components=10, pca_weight=0.5, **SMALL)
    trainer = fit(model, faces(), tmp_path, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path)])
    saved = model.generator.basis.components.clone()

    def refit(*args, **kwargs):
        raise AssertionError("the basis was fitted again on resume")

    monkeypatch.setattr("inpaint.module.CovarianceAccumulator", refit)
    resumed = InpaintingModule(mask_size=16, pca_components=10, pca_weight=0.5, **SMALL)
    L.Trainer(max_epochs=2, limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, default_root_dir=tmp_path).fit(
        resumed, datamodule=faces(), ckpt_path=trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert torch.equal(resumed.generator.basis.components, saved)


def test_more_components_than_training_images_is_refused_before_the_first_step(tmp_path):
    model = InpaintingModule(mask_size=16, pca_components=48, pca_weight=0.1, **SMALL)
    with pytest.raises(InpaintError, match="needs more than 48 training images"):
        fit(model, faces(48), tmp_path)
    assert model.global_step == 0


def test_the_regulariser_adds_its_weighted_term_to_the_generators_loss(tmp_path):
    torch.manual_seed(0)
    model = InpaintingModule(mask_size=16, pca_components=10, pca_weight=0.5, **SMALL)
    metrics = fit(model, faces(), tmp_path, max_steps=1, enable_checkpointing=False).callback_metrics
    loss, l2, outside = (metrics[f"train/{name}"].item() for name in ("g_loss", "l2", "pca_outside"))
    assert outside > 0
    assert loss == pytest.approx(l2 + 0.5 * outside, rel=1e-5)
