"""from_torch: tuples, dicts (Hugging Face rows), DataLoaders and the items it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pruneviz.data import from_torch
from pruneviz.exceptions import DataError, ValidationError

X = torch.arange(24.0).reshape(6, 2, 2)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


class Items(torch.utils.data.Dataset):
    def __init__(self, make):
        self.make = make

    def __len__(self):
        return len(Y)

    def __getitem__(self, i):
        return self.make(i)


def test_tuples_with_extra_fields():
    ds = from_torch(Items(lambda i: (X[i], int(Y[i]), f"meta{i}", i)))
    torch.testing.assert_close(ds.x, X)
    torch.testing.assert_close(ds.y, Y)


@pytest.mark.parametrize(
    ("make", "keys"),
    [
        (lambda i: {"pixel_values": X[i], "label": Y[i]}, ("pixel_values", "label")),
        (lambda i: {"image": X[i].numpy(), "labels": np.int64(Y[i]), "id": i}, ("image", "labels")),
        (lambda i: {"x": X[i].tolist(), "y": float(Y[i])}, ("x", "y")),
        (lambda i: {"input": X[i], "target": Y[i]}, ("input", "target")),
    ],
)
def test_dict_items_with_default_keys(make, keys):
    ds = from_torch(Items(make))
    torch.testing.assert_close(ds.x, X)
    torch.testing.assert_close(ds.y, Y)
    assert (ds.info.source["input_key"], ds.info.source["label_key"]) == keys


def test_dict_items_with_named_keys_and_an_absent_key():
    items = Items(lambda i: {"pix": X[i], "fine": Y[i], "coarse": Y[i] % 2})
    ds = from_torch(items, input_key="pix", label_key="coarse")
    torch.testing.assert_close(ds.y, Y % 2)
    with pytest.raises(
        ValidationError,
        match=r"'dataset' parameter of from_torch must be dict items with an input under one of the keys "
        r"\['pixel_values'.*Got item 0 with keys \['pix', 'fine', 'coarse'\].*Fix: name the input with "
        r"input_key=",
    ):
        from_torch(items)
    with pytest.raises(ValidationError, match=r"dict items with a label.*keys \['pix', 'fine'.*label_key="):
        from_torch(items, input_key="pix")
    with pytest.raises(
        ValidationError, match=r"'label_key' parameter.*\['pix', 'fine', 'coarse'\].*Got 'lbl'"
    ):
        from_torch(items, input_key="pix", label_key="lbl")


@pytest.mark.parametrize("batch_size", [1, 4, 6])
def test_data_loader_batches_are_concatenated(batch_size):
    tuples = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=batch_size)
    ds = from_torch(tuples)
    torch.testing.assert_close(ds.x, X)
    torch.testing.assert_close(ds.y, Y)
    dicts = torch.utils.data.DataLoader(
        Items(lambda i: {"image": X[i], "label": Y[i]}), batch_size=batch_size
    )
    torch.testing.assert_close(from_torch(dicts).x, X)
    unbatched = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=None)
    torch.testing.assert_close(from_torch(unbatched).y, Y)


def test_shuffled_loader_is_refused():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=2, shuffle=True)
    with pytest.raises(ValidationError, match=r"keeps the dataset's order.*shuffle=True.*shuffle=False"):
        from_torch(loader)


def test_iterable_dataset_and_class_names_and_groups():
    class Stream(torch.utils.data.IterableDataset):
        classes = ("cat", "dog", "eel")

        def __iter__(self):
            return iter(zip(X, Y, strict=True))

    ds = from_torch(Stream(), groups=pd.DataFrame({"site": list("aabbab")}))
    assert ds.info.class_names == ("cat", "dog", "eel")
    assert ds.groups["site"].tolist() == list("aabbab")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda i: 7,
            r"items that are \(input, label\[, \.\.\.\]\) tuples or dicts.*Got item 0: int.*Fix: wrap",
        ),
        (lambda i: X[i], r"Got item 0: Tensor"),
        (lambda i: (X[i],), r"Got item 0: a tuple of length 1"),
        (lambda i: {"image": X[i]}, r"dict items with a label.*Got item 0 with keys \['image'\]"),
        (lambda i: (X[i], "cat"), r"one integer class label per item.*type str.*class indices"),
        (lambda i: (X[i], torch.eye(3)[0]), r"one integer class label.*shape \(3,\)"),
        (lambda i: ("text", 0), r"numeric inputs.*input of type str"),
        (
            lambda i: (X[i][: 1 + i % 2], 0),
            r"inputs of one shape \(\(1, 2\), as the first item\).*Got item 1",
        ),
    ],
)
def test_unknown_item_shapes_are_refused_with_the_fix(make, match):
    with pytest.raises(ValidationError, match=match):
        from_torch(Items(make))


def test_pil_images_and_empty_datasets_are_refused():
    from PIL import Image

    items = Items(lambda i: (Image.new("L", (2, 2)), 0))
    with pytest.raises(ValidationError, match=r"holding a PIL image.*ToTensor.*load_image_folder"):
        from_torch(items)
    with pytest.raises(DataError, match="at least one item"):
        from_torch(torch.utils.data.TensorDataset(torch.zeros(0, 2), torch.zeros(0)))
    with pytest.raises(ValidationError, match=r"'dataset' parameter of from_torch must be a torch Dataset"):
        from_torch(42)
