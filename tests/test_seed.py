"""seeded(): every generator seeded inside the block, every global state restored after it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pruneviz._seed import _forked_cuda_devices, seeded
from pruneviz.exceptions import ValidationError


def _draws() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.rand(3), np.random.rand(3), random.random()


def _seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_seeded_draws_are_reproducible_and_the_generator_is_seeded():
    with seeded(7) as gen:
        first, from_gen = _draws(), torch.rand(2, generator=gen)
    with seeded(7) as gen:
        again, from_gen_again = _draws(), torch.rand(2, generator=gen)
    with seeded(8):
        other = _draws()
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert torch.equal(from_gen, from_gen_again) and not torch.equal(first[0], other[0])
    # the yielded generator is torch.Generator().manual_seed(seed), and the global one is seeded alike
    assert torch.equal(from_gen, torch.rand(2, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(first[0], torch.rand(3, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("raises", [False, True])
def test_seeded_leaves_torch_numpy_and_random_global_state_untouched(raises):
    _seed_globals(123)
    expected = _draws()
    _seed_globals(123)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        with seeded(5):
            _draws()
            if raises:
                raise KeyError("inside")
    except KeyError:
        assert raises
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    got_np = np.random.get_state()
    assert got_np[0] == np_state[0] and np.array_equal(got_np[1], np_state[1]) and got_np[2:] == np_state[2:]
    after = _draws()  # the streams continue where they were before the block
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1])
    assert after[2] == expected[2]


def test_cuda_generators_are_forked_only_once_cuda_is_initialised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert _forked_cuda_devices() == []  # reading their state would initialise CUDA
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert _forked_cuda_devices() == [0, 1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _forked_cuda_devices() == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_seeded_restores_the_cuda_generators():
    torch.cuda.init()
    torch.cuda.manual_seed_all(321)
    states = [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())]
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(321)
    with seeded(5):
        inside = torch.rand(4, device="cuda")
    assert all(torch.equal(torch.cuda.get_rng_state(d), s) for d, s in enumerate(states)), (
        "seeded() left the CUDA generator reseeded"
    )
    assert torch.equal(torch.rand(4, device="cuda"), expected)
    with seeded(5):
        assert torch.equal(torch.rand(4, device="cuda"), inside)  # CUDA is seeded inside the block


def test_torch_threads_sets_and_restores_the_number_of_threads():
    from pruneviz._seed import torch_threads

    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):  # None leaves the setting as it is
        assert torch.get_num_threads() == before
    with pytest.raises(ValidationError, match=r"'n' parameter of torch_threads"), torch_threads(0):
        pass


def test_torch_threads_limits_the_blas_pools_too_and_restores_them():
    from threadpoolctl import threadpool_info

    from pruneviz._seed import torch_threads

    def pools() -> dict[str, int]:
        return {p["filepath"]: p["num_threads"] for p in threadpool_info()}

    before = pools()
    if not before or max(before.values()) < 2:
        pytest.skip("no BLAS or OpenMP pool with more than one thread to limit here")
    with torch_threads(1):
        assert all(n == 1 for n in pools().values()), pools()
    assert pools() == before
