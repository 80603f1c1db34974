from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch

# Triton picks interpreted or compiled mode once per process, when it is first imported: without CUDA
# only the interpreter can run its kernels, so the whole test session uses it whichever test comes first
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# the kernel dispatcher's per-machine timings go to a folder of this test session, not the user's cache
os.environ.setdefault("PRUNEVIZ_CACHE_DIR", tempfile.mkdtemp(prefix="pruneviz-test-cache-"))

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


@pytest.fixture(autouse=True)
def _torch_seeded():
    """Every test starts from the same state of torch's global generator, whichever tests ran before it
    (pytest-randomly reseeds Python's and NumPy's generators, not torch's); the state is put back after."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Every test leaves the process environment as it found it (a Dask cluster, for one, sets thread
    limits such as OMP_NUM_THREADS in it), so that the tests pass in any order."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


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


@pytest.fixture(scope="session")
def study_zoo(tmp_path_factory, digits) -> Zoo:
    """Two dense CNNs on 700 digits, each pruned by LAMP and by channel L1 at 50 % and 90 %.

    Shared by the analyses' end-to-end tests, which may add cached results and evaluation splits."""
    from pruneviz.zoo import prune_population

    zoo = Zoo.create(tmp_path_factory.mktemp("study") / "zoo")
    build_dense_population(zoo, digits.take(np.arange(700)), arch="cnn", seeds=2, config=FAST, progress=False)
    prune_population(
        zoo,
        methods=["lamp", "channel_l1"],
        sparsities=[0.5, 0.9],
        finetune=TrainConfig(epochs=1, batch_size=64, lr=1e-3),
        progress=False,
    )
    return zoo


@pytest.fixture(scope="session")
def byo_zoo(tmp_path_factory):
    """``byo_zoo(modality)``: the study of a user's own model and data of that modality (image, tabular,
    text; see tests/byo_studies.py), built once per session. Read-only for tests."""
    from byo_studies import STUDIES

    built: dict[str, Zoo] = {}

    def get(modality: str) -> Zoo:
        if modality not in built:
            built[modality] = STUDIES[modality](tmp_path_factory.mktemp(f"byo-{modality}"))
        return built[modality]

    return get
