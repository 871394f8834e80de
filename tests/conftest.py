"""Shared fixtures."""

from pathlib import Path

import pytest
from celeba_tree import make_celeba_tree


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small read-only CelebA tree (12 train, 4 valid, 6 test); tests that modify a tree make their own."""
    return make_celeba_tree(tmp_path_factory.mktemp("celeba"))


# The files whose tests take the longest (each a minute or so of end-to-end runs on 2 cores), run
# first: `make test` hands whole files to its workers in collection order, and one of these
# started last would keep a worker busy long after the other has finished.
LONGEST_FIRST = ("test_train.py", "test_benchmarks.py", "test_analyze.py", "test_any_hole.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order
