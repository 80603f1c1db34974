from __future__ import annotations

import pickle

import pytest
import torch

from pruneviz._io import atomic_path, load_state_dict_file, load_tensors, save_tensors, write_json_atomic
from pruneviz.exceptions import CheckpointError


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_tensors_round_trip_with_metadata(tmp_path):
    tensors = {"w": torch.randn(3, 4), "n": torch.tensor(7)}
    save_tensors(tmp_path / "t.safetensors", tensors, {"arch": "mlp"})
    back, meta = load_tensors(tmp_path / "t.safetensors")
    assert meta == {"arch": "mlp"}
    assert torch.equal(back["w"], tensors["w"]) and torch.equal(back["n"], tensors["n"])


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"w": torch.randn(64, 64)})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt.*Fix: delete it and rebuild"):
        load_tensors(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_tensors(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tensors(tmp_path / "missing.safetensors")


def test_pickle_checkpoints_are_refused_unless_trusted(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"Refusing to load .*pickle.*trust_pickle=True"):
        load_state_dict_file(path)
    assert torch.equal(load_state_dict_file(path, trust_pickle=True)["w"], torch.ones(2))


def test_trusted_pickle_still_never_runs_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": Exploit()}, protocol=2))
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_state_dict_file(path, trust_pickle=True)
