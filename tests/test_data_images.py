"""Image folders (ImageFolder layout) and CIFAR-10's python batches, read without running pickles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pruneviz.data import load_cifar10, load_dataset, load_image_folder
from pruneviz.exceptions import DataError, ValidationError


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def rgb_folder(root, rng, h=4, w=5):
    pics = {}
    for cls, count in (("dog", 2), ("cat", 3)):
        for i in range(count):
            arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            save(root / cls / f"{cls}{i}.png", arr)
            pics[f"{cls}/{cls}{i}.png"] = arr
    return pics


@pytest.mark.reference
def test_image_folder_reads_classes_channels_and_scales(tmp_path):
    pics = rgb_folder(tmp_path / "pets", np.random.default_rng(0))
    ds = load_image_folder(tmp_path / "pets")
    assert ds.info.class_names == ("cat", "dog") and ds.info.input_shape == (3, 4, 5)
    assert ds.info.name == "pets" and ds.info.modality == "image"
    files = ds.info.source["files"]
    assert files == sorted(pics, key=lambda f: (f.split("/")[0], f))
    expected = np.stack([pics[f].transpose(2, 0, 1) / 255.0 for f in files])
    np.testing.assert_allclose(ds.x.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(ds.y.numpy(), [0, 0, 0, 1, 1])


@pytest.mark.reference
def test_greyscale_keeps_one_channel_and_16_bit_is_scaled(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(3, 3), dtype=np.uint8)
    save(tmp_path / "g" / "a" / "x.png", grey)
    save(tmp_path / "g" / "b" / "y.png", grey[::-1].copy())
    ds = load_image_folder(tmp_path / "g")
    assert ds.info.input_shape == (1, 3, 3)
    np.testing.assert_allclose(ds.x[0, 0].numpy(), grey / 255.0, rtol=1e-6)
    deep = rng.integers(0, 65536, size=(3, 3)).astype(np.uint16)
    save(tmp_path / "d" / "a" / "x.png", deep)
    assert Image.open(tmp_path / "d" / "a" / "x.png").mode.startswith("I;16")
    ds16 = load_image_folder(tmp_path / "d")
    np.testing.assert_allclose(ds16.x[0, 0].numpy(), deep / 65535.0, rtol=1e-6)


def test_a_colour_image_makes_the_folder_rgb(tmp_path):
    grey = np.full((2, 2), 51, dtype=np.uint8)
    save(tmp_path / "m" / "a" / "g.png", grey)
    save(tmp_path / "m" / "b" / "c.jpg", np.zeros((2, 2, 3), dtype=np.uint8))
    ds = load_image_folder(tmp_path / "m")
    assert ds.info.input_shape == (3, 2, 2)
    np.testing.assert_allclose(ds.x[0].numpy(), 0.2, rtol=1e-6)


@pytest.mark.reference
def test_resize_matches_pillow_bilinear(tmp_path):
    rng = np.random.default_rng(2)
    save(tmp_path / "r" / "a" / "big.png", rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8))
    save(tmp_path / "r" / "b" / "small.png", rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=r"'size' parameter of load_image_folder must be images of one size.*'a/big.png' of 9×7 and "
        r"'b/small.png' of 4×6 \(height×width\).*Fix: pass size=\(H, W\)",
    ):
        load_image_folder(tmp_path / "r")
    ds = load_dataset("image_folder", root=tmp_path / "r", size=(5, 8))
    assert ds.info.input_shape == (3, 5, 8)
    ref = (
        Image.open(tmp_path / "r" / "a" / "big.png").convert("RGB").resize((8, 5), Image.Resampling.BILINEAR)
    )
    np.testing.assert_allclose(ds.x[0].numpy(), np.asarray(ref).transpose(2, 0, 1) / 255.0, rtol=1e-6)
    with pytest.raises(ValidationError, match=r"'size' parameter.*pair of positive integers.*Got \(0, 3\)"):
        load_image_folder(tmp_path / "r", size=(0, 3))


def test_bad_image_folders_are_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    save(tmp_path / "flat" / "loose.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"one subfolder of images per class.*no subfolder"):
        load_image_folder(tmp_path / "flat")
    save(tmp_path / "e" / "a" / "x.png", np.zeros((2, 2), dtype=np.uint8))
    (tmp_path / "e" / "b").mkdir()
    with pytest.raises(DataError, match=r"at least one image .* in every class folder.*none in '.*b'"):
        load_image_folder(tmp_path / "e")
    (tmp_path / "e" / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"readable image files.*broken.png', which Pillow cannot read"):
        load_image_folder(tmp_path / "e")


def test_image_metadata_joined_by_path_or_file_name(tmp_path):
    rgb_folder(tmp_path / "pets", np.random.default_rng(0))
    meta = pd.DataFrame(
        {
            "file": ["cat/cat0.png", "cat1.png", "cat/cat2.png", "dog0.png", "dog/dog1.png", "other.png"],
            "owner": ["ann", "bob", "ann", "cy", "bob", "zed"],
        }
    )
    ds = load_image_folder(tmp_path / "pets", groups=meta)
    assert ds.groups["owner"].tolist() == ["ann", "bob", "ann", "cy", "bob"]
    meta.to_csv(tmp_path / "meta.csv", index=False)
    from_csv = load_image_folder(tmp_path / "pets", groups=tmp_path / "meta.csv")
    assert from_csv.groups["owner"].tolist() == ds.groups["owner"].tolist()
    with pytest.raises(
        DataError,
        match=r"'groups' parameter of load_image_folder must be a metadata row for every sample.*"
        r"Got 2 of 5 sample\(s\) without one, e.g. \['cat/cat1.png', 'dog/dog0.png'\]",
    ):
        load_image_folder(tmp_path / "pets", groups=meta.drop(index=[1, 3]))
    with pytest.raises(DataError, match=r"unique values in column 'file'.*1 duplicate"):
        load_image_folder(tmp_path / "pets", groups=pd.concat([meta, meta.iloc[:1]]))
    with pytest.raises(ValidationError, match=r"'groups_on' parameter.*\['file', 'owner'\].*Got 'path'"):
        load_image_folder(tmp_path / "pets", groups=meta, groups_on="path")


# -- CIFAR-10 -----------------------------------------------------------------------------------
def batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as CIFAR's python files hold it: a dict with bytes keys (protocol 3: no _codecs global)."""
    return pickle.dumps(
        {b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": [b"f"] * len(labels)},
        protocol=3,
    )


def cifar_folder(root, parts=("data_batch_1", "data_batch_3", "test_batch"), n=4, meta=True):
    rng = np.random.default_rng(5)
    root.mkdir(parents=True, exist_ok=True)
    made = {}
    for k, part in enumerate(parts):
        data = rng.integers(0, 256, size=(n + k, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n + k)]
        (root / part).write_bytes(batch_bytes(data, labels))
        made[part] = (data, labels)
    if meta:
        names = [f"c{i}".encode() for i in range(10)]
        (root / "batches.meta").write_bytes(
            pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=3)
        )
    return made


@pytest.mark.reference
def test_cifar10_any_subset_of_batches_with_stable_ids(tmp_path):
    made = cifar_folder(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=tmp_path)  # the extracted archive's subfolder is found
    assert ds.info.input_shape == (3, 32, 32) and ds.info.class_names[3] == "c3"
    assert ds.info.source["batches"] == ["data_batch_1", "data_batch_3", "test_batch"]
    np.testing.assert_array_equal(ds.sample_id, [*range(4), *range(20000, 20005), *range(50000, 50006)])
    assert ds.subset.tolist() == ["train"] * 9 + ["test"] * 6
    data, labels = made["data_batch_3"]
    np.testing.assert_allclose(ds.x[4:9].numpy(), data.reshape(5, 3, 32, 32) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y[4:9].numpy(), labels)
    only_test = cifar_folder(tmp_path / "t", parts=("test_batch",), meta=False)
    ds_t = load_cifar10(tmp_path / "t")
    assert set(ds_t.subset) == {"test"} and ds_t.info.class_names[0] == "airplane"
    assert len(ds_t) == len(only_test["test_batch"][1])


def test_cifar10_pickles_written_by_numpy_1_names_load(tmp_path):
    blob = batch_bytes(np.zeros((2, 3072), dtype=np.uint8), [1, 2])
    assert b"numpy._core.multiarray" in blob
    (tmp_path / "data_batch_2").write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = load_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.sample_id, [10000, 10001])


class Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/never')",))


@pytest.mark.parametrize("protocol", [0, 2, 3, 5])
def test_a_malicious_cifar_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"data": Evil(f"touch {marker}"), "labels": [0]}, protocol=protocol)
    (tmp_path / "data_batch_1").write_bytes(blob)
    with pytest.raises(
        DataError,
        match=r"'root' parameter of load_cifar10 must be CIFAR-10 batches holding only dicts.*"
        r"a pickle that asks for (posix|os|nt)\.system — refused, nothing was run",
    ):
        load_cifar10(tmp_path)
    assert not marker.exists()
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps([EvilEval()], protocol=protocol))
    with pytest.raises(DataError, match=r"asks for (builtins|__builtin__)\.eval — refused"):
        load_cifar10(tmp_path)


def test_damaged_cifar_files_are_refused(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"")
    with pytest.raises(DataError, match=r"test_batch': the file is empty"):
        load_cifar10(tmp_path)
    good = batch_bytes(np.zeros((2, 3072), dtype=np.uint8), [1, 2])
    (tmp_path / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"complete CIFAR-10 batch files.*damaged or truncated"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(batch_bytes(np.zeros((2, 100), dtype=np.uint8), [1, 2]))
    with pytest.raises(DataError, match=r"uint8 array of shape \(N, 3072\).*uint8 \(2, 100\)"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match=r"none of them in"):
        load_cifar10(tmp_path)


def test_cifar_metadata_joined_on_sample_id(tmp_path):
    cifar_folder(tmp_path, parts=("data_batch_1",), n=3)
    meta = pd.DataFrame({"sample_id": [2, 0, 1, 99], "light": ["day", "night", "day", "day"]})
    ds = load_cifar10(tmp_path, groups=meta)
    assert ds.groups["light"].tolist() == ["night", "day", "day"]
    with pytest.raises(DataError, match=r"1 of 3 sample\(s\) without one, e.g. \['2'\]"):
        load_cifar10(tmp_path, groups=meta.iloc[1:])
