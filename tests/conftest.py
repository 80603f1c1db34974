from __future__ import annotations

import numpy as np
import pytest

from pruneviz.data import Dataset, load_digits
from pruneviz.train import TrainConfig
from pruneviz.zoo import Zoo, build_dense_population

FAST = TrainConfig(epochs=3, batch_size=64, lr=3e-3)


def blobs(n: int = 120, k: int = 3, d: int = 4, seed: int = 0) -> Dataset:
    """Well separated Gaussian blobs with a two-valued group column."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(scale=4.0, size=(k, d))
    x = centres[y] + rng.normal(size=(n, d))
    return Dataset(x, y, groups={"site": np.where(np.arange(n) % 2, "a", "b")}, name="blobs")


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture()
def tiny() -> Dataset:
    return blobs()


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory, digits) -> Zoo:
    """A zoo with two quickly trained MLPs on digits. Read-only for tests."""
    zoo = Zoo.create(tmp_path_factory.mktemp("zoo") / "study")
    build_dense_population(zoo, digits, arch="mlp", seeds=2, config=FAST, progress=False)
    return zoo
