"""Built-in data sources. All are offline: nothing is downloaded at run time."""

from __future__ import annotations

import gzip
import inspect
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pruneviz._optional import require
from pruneviz._validation import check_choice, check_columns, check_int, data_fail, fail
from pruneviz.data.dataset import Dataset
from pruneviz.exceptions import DataError

# Class names of the MNIST-format datasets (Fashion-MNIST: Xiao et al. 2017; KMNIST: Clanuwat et al. 2018).
IDX_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_digits() -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 samples, 10 classes), the embedded default.

    Pixels are scaled to [0, 1]. Besides ``class``, a group column ``ink`` splits samples into
    ``"light"`` and ``"heavy"`` writers by total ink (below / at-or-above the median of all samples),
    an attribute that cuts across classes for subgroup audits.

    >>> ds = load_digits()
    >>> ds.info.input_shape, ds.num_classes
    ((1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0
    ink = x.reshape(len(x), -1).sum(1)
    ink_group = np.where(ink >= np.median(ink), "heavy", "light")
    return Dataset(
        x,
        bunch.target.astype(np.int64),
        groups={"ink": ink_group},
        class_names=[str(i) for i in range(10)],
        name="digits",
        modality="image",
        source={"source": "digits"},
    )


def load_mnist1d(*, num_samples: int = 5000, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus & Kobak 2020), generated locally with ``mnist1d.make_dataset``.

    Sequences of length 40 with one channel; the generator's own train/test partition is kept as the
    prescribed ``subset``. Needs the optional ``mnist1d`` package (``pip install 'pruneviz[mnist1d]'``).
    """
    where = "load_mnist1d"
    num_samples = check_int(num_samples, "num_samples", where, minimum=10)
    seed = check_int(seed, "seed", where, minimum=0)
    m1d = require("mnist1d.data", "The MNIST-1D source")
    args = m1d.get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    # make_dataset re-seeds numpy's and random's global generators; put them back afterwards.
    import random

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = m1d.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    subset = np.array(["train"] * len(raw["y"]) + ["test"] * len(raw["y_test"]))
    return Dataset(
        x,
        y,
        class_names=[str(i) for i in range(10)],
        name="mnist1d",
        modality="sequence",
        subset=subset,
        source={"source": "mnist1d", "num_samples": num_samples, "seed": seed},
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one file in the IDX format of MNIST (optionally gzip-compressed) into an array.

    The format: two zero bytes, a type byte, a dimension count ``d``, ``d`` big-endian uint32 sizes,
    then the data in row-major order (LeCun et al., the MNIST database). An empty file, a file shorter
    than its header declares (truncated), one longer (padded) and one with a bad magic number are each
    refused with a :class:`~pruneviz.exceptions.DataError` naming the file.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = f.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(f).tolist()
    [7, 8, 9]
    """
    where = "read_idx"
    p = Path(path)
    if not p.is_file():
        fail(
            "path",
            where,
            "an existing IDX file",
            str(p),
            "check the path; MNIST-format files are named like 'train-images-idx3-ubyte[.gz]'.",
            error=DataError,
        )
    raw = p.read_bytes()
    again = "download or copy the file again."
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            data_fail(
                "path",
                where,
                "a readable IDX file",
                f"{str(p)!r}, a damaged or truncated gzip archive ({exc})",
                again,
            )
    if len(raw) == 0:
        data_fail("path", where, "a non-empty IDX file", f"{str(p)!r}: the file is empty (0 bytes)", again)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        data_fail(
            "path",
            where,
            "a file in IDX format (magic number 00 00 <type> <dims>)",
            f"{str(p)!r}, which is not in IDX format (bad magic number {raw[:4].hex()})",
            "pass an MNIST-format file such as 'train-images-idx3-ubyte'.",
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        data_fail(
            "path",
            where,
            "a complete IDX file",
            f"{str(p)!r}, truncated inside its header: {ndim} dimension(s) need {header} header bytes "
            f"but the file holds {len(raw)} bytes",
            again,
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "padded (it has trailing bytes)"
        data_fail(
            "path",
            where,
            "a complete IDX file",
            f"{str(p)!r}, {state}: its header declares shape {shape} of {dtype.name}, "
            f"expected {expected} bytes, actual {len(raw)} bytes",
            again,
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    name: str = "idx",
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """A dataset from one pair of IDX files (images ``(N, H, W)`` as uint8, labels ``(N,)``).

    Pixels are scaled to [0, 1] and given one channel: ``x`` has shape ``(N, 1, H, W)``.
    """
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        data_fail(
            "images",
            "load_idx",
            "images of shape (N, H, W) and labels of shape (N,)",
            f"images {x.shape}, labels {y.shape}",
            "pass matching image and label files of the same split.",
        )
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    return Dataset(
        x.astype(np.float32)[:, None] / scale,
        y.astype(np.int64),
        class_names=class_names,
        name=name,
        modality="image",
        source={"source": "idx", "images": str(images), "labels": str(labels)},
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    found = [folder / f"{stem}{ext}" for ext in ("", ".gz") if (folder / f"{stem}{ext}").is_file()]
    return found[0] if found else None


def load_mnist_format(root: str | os.PathLike[str], *, kind: str = "mnist") -> Dataset:
    """MNIST, Fashion-MNIST or KMNIST from a folder of the standard IDX files (``.gz`` or not).

    The folder may hold any of the two pairs, ``train-{images-idx3,labels-idx1}-ubyte`` and
    ``t10k-{images-idx3,labels-idx1}-ubyte``: each pair present becomes the prescribed ``subset`` of
    that name (``"train"`` / ``"test"``), so a folder with only the test pair loads as a test-only
    dataset. An images file without its labels file (or the reverse) is refused, naming the missing
    file. Sample ids are consecutive, training images first (0..59,999 and 60,000.. for the full
    MNIST).
    """
    where = "load_mnist_format"
    kind = check_choice(kind, "kind", where, IDX_CLASS_NAMES)
    folder = Path(root)
    if not folder.is_dir():
        fail("root", where, "an existing folder holding the IDX files", str(folder), error=DataError)
    parts = []
    for subset, (image_stem, label_stem) in _IDX_FILES.items():
        images, labels = _idx_file(folder, image_stem), _idx_file(folder, label_stem)
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            have, missing = (labels, image_stem) if images is None else (images, label_stem)
            data_fail(
                "root",
                where,
                f"a folder holding both files of the {subset} pair",
                f"{have.name!r} but no {missing!r} (or {missing}.gz) in {str(folder)!r}",
                f"add {missing!r} to the folder, or remove {have.name!r} to load without the {subset} part.",
            )
        parts.append((subset, load_idx(images, labels, name=kind)))
    if not parts:
        wanted = [stem for stems in _IDX_FILES.values() for stem in stems]
        data_fail(
            "root",
            where,
            f"a folder containing at least one pair of MNIST-format files ({wanted}, optionally .gz)",
            f"no such file in {str(folder)!r}",
            "put the train and/or t10k images and labels files in that folder.",
        )
    shapes = {ds.info.input_shape for _, ds in parts}
    if len(shapes) > 1:
        data_fail(
            "root",
            where,
            "train and test images of one size",
            f"sizes {sorted(shapes)}",
            "use files of one dataset.",
        )
    x = torch.cat([ds.x for _, ds in parts])
    y = torch.cat([ds.y for _, ds in parts])
    subset = np.concatenate([[s] * len(ds) for s, ds in parts])
    return Dataset(
        x,
        y,
        class_names=IDX_CLASS_NAMES[kind],
        name=kind,
        modality="image",
        subset=subset,
        source={"source": kind, "root": str(folder), "subsets": [s for s, _ in parts]},
    )


def load_frame(
    frame: pd.DataFrame,
    *,
    target: str,
    groups: Sequence[str] = (),
    features: Sequence[str] | None = None,
    id_column: str | None = None,
    name: str = "tabular",
) -> Dataset:
    """A tabular dataset from a DataFrame: numeric ``features``, a ``target`` column, ``groups`` columns.

    ``features`` defaults to every column that is neither the target, a group nor the id column.
    Features are standardised (zero mean, unit variance per column, computed on all rows).
    Target values become classes 0..K-1 in sorted order, their names kept as class names.
    """
    where = "load_frame"
    if not isinstance(frame, pd.DataFrame):
        fail("frame", where, "a pandas DataFrame", type(frame).__name__)
    if len(frame) == 0:
        data_fail("frame", where, "at least one row", "an empty table", "check the file or the filter.")
    if isinstance(groups, str):
        groups = [groups]
    check_columns([target], frame.columns, "target", where)
    check_columns(list(groups), frame.columns, "groups", where)
    if id_column is not None:
        check_columns([id_column], frame.columns, "id_column", where)
    used = {target, *groups, *([id_column] if id_column else [])}
    if features is None:
        features = [c for c in frame.columns if c not in used]
    else:
        check_columns(list(features), frame.columns, "features", where)
    if not features:
        fail("features", where, "at least one feature column", [], "name the feature columns.")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        fail(
            "features",
            where,
            "numeric columns only",
            non_numeric,
            "encode categorical features (e.g. pandas.get_dummies) or list them in groups=.",
        )
    if frame[target].isna().any():
        data_fail("target", where, "a label in every row", f"{int(frame[target].isna().sum())} missing")
    codes, uniques = pd.factorize(frame[target], sort=True)
    x = frame[list(features)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(x)):
        rows = np.flatnonzero(~np.isfinite(x).all(1))
        data_fail(
            "frame",
            where,
            "finite feature values (no NaN or inf)",
            f"{rows.size} row(s) with missing or infinite features, the first at row {int(rows[0])}",
            "impute or drop those rows first (e.g. frame.dropna()).",
        )
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    ids = None
    if id_column is not None:
        ids = frame[id_column].to_numpy()
        if not np.issubdtype(ids.dtype, np.integer):
            fail("id_column", where, "a column of integer ids", id_column, got=f"dtype {ids.dtype}")
    return Dataset(
        x.astype(np.float32),
        codes.astype(np.int64),
        sample_id=ids,
        groups={g: frame[g].to_numpy() for g in groups},
        class_names=[str(u) for u in uniques],
        name=name,
        modality="tabular",
        feature_names=[str(f) for f in features],
        source={"source": "frame", "target": target, "groups": list(groups)},
    )


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    groups: Sequence[str] = (),
    features: Sequence[str] | None = None,
    id_column: str | None = None,
    name: str | None = None,
) -> Dataset:
    """A tabular dataset from a CSV file; see :func:`load_frame` for the columns."""
    p = Path(path)
    if not p.is_file():
        fail("path", "load_csv", "an existing CSV file", str(p), "check the path.", error=DataError)
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        data_fail("path", "load_csv", "a CSV file with a header and rows", f"the empty file {str(p)!r}")
    ds = load_frame(
        frame, target=target, groups=groups, features=features, id_column=id_column, name=name or p.stem
    )
    ds.info.source.update({"source": "csv", "path": str(p)})
    return ds


def from_torch(
    dataset: torch.utils.data.Dataset,
    *,
    name: str = "torch",
    class_names: Sequence[str] | None = None,
    groups: pd.DataFrame | None = None,
) -> Dataset:
    """Materialise any map-style torch ``Dataset`` whose items are ``(input, label)`` pairs."""
    where = "from_torch"
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        fail("dataset", where, "a map-style torch Dataset with __len__", type(dataset).__name__)
    if n == 0:
        data_fail("dataset", where, "at least one item", "an empty dataset")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            fail("dataset", where, "items that are (input, label) pairs", None, got=f"item {i}: {type(item)}")
        xs.append(torch.as_tensor(item[0], dtype=torch.float32))
        ys.append(int(item[1]))
    return Dataset(
        torch.stack(xs),
        torch.tensor(ys),
        class_names=class_names,
        groups=groups,
        name=name,
        source={"source": "torch", "type": type(dataset).__name__},
    )


_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "mnist": lambda **kw: load_mnist_format(kind="mnist", **kw),
    "fashion-mnist": lambda **kw: load_mnist_format(kind="fashion-mnist", **kw),
    "kmnist": lambda **kw: load_mnist_format(kind="kmnist", **kw),
    "csv": load_csv,
}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_REGISTRY)


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a built-in dataset by name: ``digits`` (default), ``mnist1d``, ``mnist``/``fashion-mnist``/
    ``kmnist`` (``root=`` folder of IDX files) or ``csv`` (``path=``, ``target=``, ``groups=``).

    >>> load_dataset("digits").info.name
    'digits'
    """
    check_choice(name, "name", "load_dataset", _REGISTRY)
    loader = _REGISTRY[name]
    target = load_mnist_format if name in IDX_CLASS_NAMES else loader
    accepted = [p for p in inspect.signature(target).parameters if p != "kind"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        fail(
            "options",
            "load_dataset",
            f"keyword options accepted by the {name!r} source ({accepted})",
            unknown,
            "see help(pruneviz.data.load_dataset).",
        )
    return loader(**options)
