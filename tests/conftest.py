"""Shared fixtures."""

from pathlib import Path

import pytest
from celeba_tree import make_celeba_tree


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small read-only CelebA tree (12 train, 4 valid, 6 test); tests that modify a tree make their own."""
    return make_celeba_tree(tmp_path_factory.mktemp("celeba"))
