from __future__ import annotations

import gzip
import random
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneviz.data import (
    Dataset,
    from_torch,
    load_csv,
    load_dataset,
    load_frame,
    load_idx,
    load_mnist1d,
    load_mnist_format,
    read_idx,
)
from pruneviz.exceptions import DataError, ValidationError


# -- the Dataset itself -------------------------------------------------------------------------
def test_dataset_adds_class_group_and_default_ids(tiny):
    assert list(tiny.groups.columns) == ["class", "site"]
    assert tiny.groups["class"].tolist() == [tiny.info.class_names[int(v)] for v in tiny.y]
    np.testing.assert_array_equal(tiny.sample_id, np.arange(len(tiny)))
    assert tiny.x.dtype == torch.float32 and tiny.y.dtype == torch.int64


def test_empty_dataset_is_refused():
    with pytest.raises(DataError, match=r"'x' parameter of Dataset must be a non-empty array.*Got 0 samples"):
        Dataset(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_nan_inputs_are_refused_with_the_first_index():
    x = np.zeros((5, 3))
    x[3, 1] = np.nan
    with pytest.raises(DataError, match=r"finite values.*first at index 3.*Fix: impute"):
        Dataset(x, [0, 1, 0, 1, 0])


def test_labels_out_of_range_name_the_label_and_index():
    with pytest.raises(DataError, match=r"labels in \[0, 2\).*label 2 at sample index 1"):
        Dataset(np.zeros((3, 2)), [0, 2, 1], class_names=["a", "b"])
    with pytest.raises(DataError, match=r"label -1 at sample index 0"):
        Dataset(np.zeros((2, 2)), [-1, 0])


def test_group_array_of_wrong_length_is_refused():
    with pytest.raises(
        ValidationError, match=r"'groups' parameter of Dataset must be one row per sample \(4\)"
    ):
        Dataset(np.zeros((4, 2)), [0, 1, 0, 1], groups=pd.DataFrame({"g": ["a", "b"]}))
    with pytest.raises(ValidationError, match=r"'groups' parameter"):
        Dataset(np.zeros((4, 2)), [0, 1, 0, 1], groups={"g": ["a", "b", "c"], "h": ["a"]})


def test_duplicate_sample_ids_and_missing_group_values_are_refused():
    with pytest.raises(DataError, match="unique ids"):
        Dataset(np.zeros((3, 2)), [0, 1, 0], sample_id=[4, 4, 5])
    with pytest.raises(DataError, match="missing value"):
        Dataset(np.zeros((2, 2)), [0, 1], groups={"g": ["a", None]})


def test_non_integer_labels_and_one_dimensional_inputs_are_refused():
    with pytest.raises(ValidationError, match="integer class labels"):
        Dataset(np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ValidationError, match="at least 2 dimensions.*Fix: add a feature axis"):
        Dataset(np.zeros(3), [0, 1, 0])


def test_take_keeps_ids_groups_and_metadata(tiny):
    part = tiny.take([5, 2, 9])
    np.testing.assert_array_equal(part.sample_id, [5, 2, 9])
    assert part.groups["site"].tolist() == tiny.groups["site"].iloc[[5, 2, 9]].tolist()
    assert part.info == tiny.info
    torch.testing.assert_close(part.x, tiny.x[[5, 2, 9]])


# -- splits -------------------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_complete_and_stratified(digits):
    a = digits.split(seed=3)
    b = digits.split(seed=3)
    c = digits.split(seed=4)
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.sample_id, pb.sample_id)
    assert not np.array_equal(a.test.sample_id, c.test.sample_id)
    ids = np.concatenate([p.sample_id for p in a])
    assert np.array_equal(np.sort(ids), np.sort(digits.sample_id))
    counts = np.bincount(digits.y.numpy(), minlength=10)
    test_counts = np.bincount(a.test.y.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.2 * counts).astype(int))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(20, 200),
    k=st.integers(2, 5),
    val=st.floats(0.0, 0.4),
    test=st.floats(0.05, 0.4),
    seed=st.integers(0, 2**31),
)
def test_split_partitions_any_dataset(n, k, val, test, seed):
    ds = Dataset(np.random.default_rng(0).normal(size=(n, 2)), np.arange(n) % k)
    per_class = np.bincount(np.arange(n) % k)

    def held_out(m):  # round(fraction * m) each, lowered (test first) so that one training sample stays
        kv, kt = round(val * m), round(test * m)
        kt -= min(kt, max(0, kv + kt - (m - 1)))
        kv -= min(kv, max(0, kv + kt - (m - 1)))
        return kv, kt

    empty_test = sum(held_out(m)[1] for m in per_class) == 0
    empty_val = val > 0 and sum(held_out(m)[0] for m in per_class) == 0
    if empty_test or empty_val:  # a part asked for would be empty: refused
        with pytest.raises(DataError, match="part is not empty"):
            ds.split(seed=seed, val_fraction=val, test_fraction=test)
        return
    parts = ds.split(seed=seed, val_fraction=val, test_fraction=test)
    ids = np.concatenate([p.sample_id for p in parts])
    assert len(ids) == n and len(np.unique(ids)) == n
    for c in range(k):
        kv, kt = held_out(int((ds.y == c).sum()))
        assert int((parts.test.y == c).sum()) == kt
        assert int((parts.val.y == c).sum()) == kv
        assert int((parts.train.y == c).sum()) >= 1


def test_prescribed_test_subset_is_honoured():
    y = np.arange(40) % 2
    subset = np.array(["train"] * 30 + ["test"] * 10)
    ds = Dataset(np.zeros((40, 2)), y, subset=subset)
    parts = ds.split(seed=0, val_fraction=0.2)
    np.testing.assert_array_equal(np.sort(parts.test.sample_id), np.arange(30, 40))
    assert len(parts.val) == 6 and len(parts.train) == 24


def test_split_rejects_bad_fractions(tiny):
    with pytest.raises(
        ValidationError,
        match=r"'test_fraction' parameter of Dataset.split must be a float in \[0, 1\). Got 1.5",
    ):
        tiny.split(test_fraction=1.5)
    with pytest.raises(ValidationError, match="training samples remain"):
        tiny.split(val_fraction=0.5, test_fraction=0.5)


# -- built-in sources ---------------------------------------------------------------------------
def test_digits_source(digits):
    assert len(digits) == 1797 and digits.info.input_shape == (1, 8, 8)
    assert float(digits.x.min()) == 0.0 and float(digits.x.max()) == 1.0
    assert set(digits.groups["ink"].unique()) == {"light", "heavy"}
    assert digits.info.modality == "image"


def test_mnist1d_is_generated_locally_and_leaves_global_rng_alone():
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    ds = load_mnist1d(num_samples=200, seed=1)
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before
    assert ds.info.input_shape == (1, 40) and ds.info.modality == "sequence"
    assert (ds.subset == "test").sum() == 40
    again = load_mnist1d(num_samples=200, seed=1)
    torch.testing.assert_close(ds.x, again.x, rtol=0, atol=0)


def test_unknown_dataset_name_suggests_the_close_one():
    with pytest.raises(
        ValidationError,
        match=r"'name' parameter of load_dataset must be one of .*Got 'digitz'.*did you mean 'digits'",
    ):
        load_dataset("digitz")


def test_load_dataset_reports_unknown_options():
    with pytest.raises(ValidationError, match="keyword options accepted by the 'digits' source"):
        load_dataset("digits", root="/nowhere")


# -- IDX files ----------------------------------------------------------------------------------
def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)


@pytest.mark.reference
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4))
    labels = np.array([0, 1, 2, 3, 4, 5, 9])
    write_idx(tmp_path / "img", images, compress)
    write_idx(tmp_path / "lab", labels, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "img"), images)
    ds = load_idx(tmp_path / "img", tmp_path / "lab", class_names=[str(i) for i in range(10)])
    assert ds.info.input_shape == (1, 5, 4)
    np.testing.assert_allclose(ds.x[:, 0].numpy(), images / 255.0, rtol=1e-6)


def test_mnist_format_folder(tmp_path):
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, size=(20, 6, 6)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, size=(10, 6, 6)), compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10) % 10, compress=True)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    assert len(ds) == 30 and ds.info.class_names[9] == "Ankle boot"
    assert (ds.subset == "test").sum() == 10
    parts = ds.split(seed=0, val_fraction=0.5)
    assert len(parts.test) == 10 and len(parts.val) == 10 and len(parts.train) == 10


def test_missing_idx_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"'path' parameter of read_idx must be an existing IDX file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match=r"at least one pair.*'train-images-idx3-ubyte'.*no such file"):
        load_mnist_format(tmp_path)


def test_truncated_idx_file_is_detected(tmp_path):
    write_idx(tmp_path / "img", np.zeros((10, 4, 4)))
    blob = (tmp_path / "img").read_bytes()
    (tmp_path / "cut").write_bytes(blob[:-7])
    with pytest.raises(
        DataError,
        match=r"'path' parameter of read_idx.*'.*cut', truncated: its header declares shape \(10, 4, 4\) "
        r"of uint8, expected 176 bytes, actual 169 bytes.*Fix:",
    ):
        read_idx(tmp_path / "cut")
    (tmp_path / "long").write_bytes(blob + b"\0")
    with pytest.raises(DataError, match=r"padded.*expected 176 bytes, actual 177 bytes"):
        read_idx(tmp_path / "long")
    (tmp_path / "head").write_bytes(blob[:6])
    with pytest.raises(DataError, match=r"truncated inside its header.*need 16 header bytes.*holds 6 bytes"):
        read_idx(tmp_path / "head")
    (tmp_path / "gz").write_bytes(gzip.compress(blob)[:-9])
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        read_idx(tmp_path / "gz")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match="not in IDX format.*bad magic number 504b0304"):
        read_idx(tmp_path / "junk")


def test_empty_idx_file_says_empty(tmp_path):
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match=r"'.*train-labels-idx1-ubyte': the file is empty \(0 bytes\)"):
        read_idx(tmp_path / "train-labels-idx1-ubyte")
    (tmp_path / "e.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="the file is empty"):
        read_idx(tmp_path / "e.gz")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte': the file is empty"):
        load_mnist_format(tmp_path)


@pytest.mark.parametrize("present", ["train", "test"])
def test_mnist_format_folder_with_one_pair(tmp_path, present):
    stem = "train" if present == "train" else "t10k"
    images = np.random.default_rng(2).integers(0, 256, size=(40, 5, 5))
    write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", images, compress=True)
    write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", np.arange(40) % 10)
    ds = load_mnist_format(tmp_path, kind="kmnist")
    assert len(ds) == 40 and set(ds.subset) == {present}
    assert ds.info.source["subsets"] == [present]
    np.testing.assert_allclose(ds.x[:, 0].numpy(), images / 255.0, rtol=1e-6)
    if present == "train":  # no prescribed test set: split carves one out of the training files
        parts = ds.split(seed=0, val_fraction=0.2, test_fraction=0.2)
        assert len(parts.test) > 0 and len(parts.val) > 0


def test_mnist_format_pair_with_a_missing_half_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 2, 2)))
    with pytest.raises(
        DataError,
        match=r"both files of the test pair.*'t10k-images-idx3-ubyte' but no 't10k-labels-idx1-ubyte'.*"
        r"Fix: add 't10k-labels-idx1-ubyte'",
    ):
        load_mnist_format(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(4))
    with pytest.raises(DataError, match=r"'t10k-labels-idx1-ubyte' but no 't10k-images-idx3-ubyte'"):
        load_mnist_format(tmp_path)


# -- tables -------------------------------------------------------------------------------------
@pytest.fixture()
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, 50),
            "income": rng.normal(3, 1, 50),
            "sex": np.where(np.arange(50) % 3, "f", "m"),
            "outcome": np.where(np.arange(50) % 2, "yes", "no"),
            "pid": np.arange(100, 150),
        }
    )


def test_frame_source(table):
    ds = load_frame(table, target="outcome", groups=["sex"], id_column="pid")
    assert ds.info.class_names == ("no", "yes") and ds.info.feature_names == ("age", "income")
    np.testing.assert_array_equal(ds.sample_id, np.arange(100, 150))
    assert ds.groups["sex"].tolist() == table["sex"].tolist()
    np.testing.assert_allclose(ds.x[ds.subset == "train"].mean(0).numpy(), 0, atol=1e-5)


def test_csv_source_and_its_errors(tmp_path, table):
    path = tmp_path / "people.csv"
    table.to_csv(path, index=False)
    ds = load_csv(path, target="outcome", groups=["sex"])
    assert ds.info.name == "people" and len(ds) == 50
    with pytest.raises(
        ValidationError,
        match=r"'target' parameter of load_frame must be the name\(s\) of columns present.*Got 'label'",
    ):
        load_csv(path, target="label")
    with pytest.raises(ValidationError, match=r"'groups' parameter.*Got 'race'"):
        load_csv(path, target="outcome", groups=["race"])
    encoded = load_csv(path, target="outcome")  # sex is now a feature, one-hot encoded
    assert encoded.info.feature_names == ("age", "income", "sex=f", "sex=m", "pid")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_csv(tmp_path / "empty.csv", target="outcome")
    with pytest.raises(DataError, match="at least one row"):
        load_frame(table.iloc[:0], target="outcome", groups=["sex"])


def test_frame_with_missing_features_is_refused(table):
    table.loc[7, "age"] = np.nan
    with pytest.raises(DataError, match=r"1 missing value\(s\): 'age' 1 \(first at row 7\).*dropna"):
        load_frame(table, target="outcome", groups=["sex"], impute=None)


def test_torch_dataset_pass_through():
    items = torch.utils.data.TensorDataset(torch.arange(12.0).reshape(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    ds = from_torch(items, name="td")
    torch.testing.assert_close(ds.x, torch.arange(12.0).reshape(6, 2))
    assert ds.num_classes == 3
    with pytest.raises(DataError, match="at least one item"):
        from_torch(torch.utils.data.TensorDataset(torch.zeros(0, 2), torch.zeros(0)))


def test_fingerprint_tracks_content(tiny):
    assert (
        tiny.fingerprint()
        == Dataset(tiny.x.clone(), tiny.y, groups=tiny.groups[["site"]], name="blobs").fingerprint()
    )
    x = tiny.x.clone()
    x[0, 0] += 1
    assert tiny.fingerprint() != Dataset(x, tiny.y, groups=tiny.groups[["site"]], name="blobs").fingerprint()
