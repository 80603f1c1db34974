"""Datasets: samples, labels, stable ids, group columns and deterministic splits. All sources are offline."""

from pruneviz.data.dataset import Dataset, DatasetInfo, DataSplits
from pruneviz.data.german_credit import load_german_credit, read_german_credit
from pruneviz.data.images import load_cifar10, load_image_folder
from pruneviz.data.inputs import Inputs
from pruneviz.data.sources import (
    dataset_names,
    from_torch,
    load_csv,
    load_dataset,
    load_digits,
    load_frame,
    load_idx,
    load_mnist1d,
    load_mnist_format,
    read_idx,
)

__all__ = [
    "DataSplits",
    "Dataset",
    "DatasetInfo",
    "Inputs",
    "dataset_names",
    "from_torch",
    "load_cifar10",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_frame",
    "load_german_credit",
    "load_idx",
    "load_image_folder",
    "load_mnist1d",
    "load_mnist_format",
    "read_german_credit",
    "read_idx",
]
