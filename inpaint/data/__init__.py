"""Data sets as LightningDataModules that serve plain images (masks are applied by the model)."""

from inpaint.data.datamodule import ImageDataModule, to_float

__all__ = ["ImageDataModule", "to_float"]
