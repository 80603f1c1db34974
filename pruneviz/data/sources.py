"""Built-in data sources. All are offline: nothing is downloaded at run time."""

from __future__ import annotations

import gzip
import inspect
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from pruneviz._optional import require
from pruneviz._validation import check_choice, check_columns, check_fraction, check_int, data_fail, fail
from pruneviz.data.dataset import SUBSETS, Dataset, stratified_parts
from pruneviz.data.german_credit import load_german_credit
from pruneviz.data.images import load_cifar10, load_image_folder
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
            assert have is not None  # one of the pair is there, or the subset would have been skipped
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
    x = torch.cat([cast(torch.Tensor, ds.x) for _, ds in parts])  # IDX images are one tensor
    y = torch.cat([ds.y for _, ds in parts])
    subsets = np.concatenate([[s] * len(ds) for s, ds in parts])
    return Dataset(
        x,
        y,
        class_names=IDX_CLASS_NAMES[kind],
        name=kind,
        modality="image",
        subset=subsets,
        source={"source": kind, "root": str(folder), "subsets": [s for s, _ in parts]},
    )


_IMPUTE = ("mean", "median", "most_frequent", "refuse")


def load_frame(
    frame: pd.DataFrame,
    *,
    target: str,
    groups: Sequence[str] = (),
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    impute: str | None = "mean",
    id_column: str | None = None,
    stratify: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    name: str = "tabular",
) -> Dataset:
    """A tabular dataset from a DataFrame: ``features``, a ``target`` column, ``groups`` columns.

    The loader splits the rows itself, so that everything it learns from the data is learned from the
    training rows only; the returned dataset's ``subset`` holds that split and :meth:`Dataset.split`
    keeps it (``"train"``/``"val"``/``"test"``).

    - **Split**: ``round(fraction * n)`` rows of every target × ``stratify`` cell (default: the
      ``groups`` columns) go to the test and validation parts, seeded by ``seed``; a cell keeps at least
      one training row, so a rare combination stays represented in training.
    - **Features** default to every column that is neither the target, a group nor the id column.
      Numeric columns are imputed, then standardised with the mean and standard deviation (``ddof=0``;
      a constant column is only centred) of the training rows. Columns of object, string, category or
      bool dtype, and those named in ``categorical``, are one-hot encoded as ``column=value`` features
      (0/1, not standardised) over the categories seen in the training rows, in sorted order; a value
      met only in validation or test rows encodes as all zeros for that column. A column of text that
      mostly holds numbers (``"12"``, ``"n/a"``) is refused, naming a bad value and its row (0-based
      position in ``frame``): convert it, or list it in ``categorical``.
    - **Missing values** (NaN/None) are filled from the training rows: ``impute="mean"`` (default),
      ``"median"`` or ``"most_frequent"`` for numeric columns; categorical columns always take their
      most frequent training category. ``impute=None`` (or ``"refuse"``) refuses them instead.
    - **Target** values (strings or integers) become classes 0..K-1 in sorted order, their names kept.

    ``info.source`` records the split settings and the fitted statistics (JSON): ``fitted["mean"]`` and
    ``fitted["scale"]`` per numeric column, ``fitted["categories"]`` per categorical column and
    ``fitted["fill"]`` (the imputed value per column), so that new rows can be encoded alike:
    ``(value - mean) / scale`` and one-hot over ``categories``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"h": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], "c": list("abababaabb"),
    ...                    "y": [0, 1] * 5})
    >>> ds = load_frame(df, target="y", test_fraction=0.2, val_fraction=0.0)
    >>> ds.info.feature_names, sorted(set(ds.subset.tolist()))
    (('h', 'c=a', 'c=b'), ['test', 'train'])
    """
    where = "load_frame"
    if not isinstance(frame, pd.DataFrame):
        fail("frame", where, "a pandas DataFrame", type(frame).__name__)
    if len(frame) == 0:
        data_fail("frame", where, "at least one row", "an empty table", "check the file or the filter.")
    frame = frame.reset_index(drop=True)
    groups = [groups] if isinstance(groups, str) else list(groups)
    categorical = [categorical] if isinstance(categorical, str) else list(categorical)
    check_columns([target], frame.columns, "target", where)
    check_columns(groups, frame.columns, "groups", where)
    if id_column is not None:
        check_columns([id_column], frame.columns, "id_column", where)
    stratify = (
        list(groups) if stratify is None else ([stratify] if isinstance(stratify, str) else list(stratify))
    )
    check_columns(stratify, frame.columns, "stratify", where)
    used = {target, *groups, *([id_column] if id_column else [])}
    if features is None:
        features = [c for c in frame.columns if c not in used]
    else:
        features = list(features)
        check_columns(features, frame.columns, "features", where)
    if not features:
        fail("features", where, "at least one feature column", [], "name the feature columns.")
    check_columns(categorical, features, "categorical", where)
    impute = "refuse" if impute is None else impute
    check_choice(impute, "impute", where, _IMPUTE)
    seed = check_int(seed, "seed", where, minimum=0)
    test_fraction = check_fraction(test_fraction, "test_fraction", where)
    val_fraction = check_fraction(val_fraction, "val_fraction", where)
    if val_fraction + test_fraction >= 1:
        fail(
            "val_fraction",
            where,
            f"less than 1 - test_fraction ({1 - test_fraction:g}) so that training rows remain",
            val_fraction,
        )

    labels = frame[target]
    if labels.isna().any():
        first = int(np.flatnonzero(labels.isna().to_numpy())[0])
        data_fail(
            "target",
            where,
            "a label in every row",
            f"{int(labels.isna().sum())} missing in column {target!r}, the first at row {first}",
            f"drop those rows first (frame.dropna(subset=[{target!r}])).",
        )
    try:
        codes, uniques = pd.factorize(labels, sort=True)
    except TypeError:
        fail(
            "target",
            where,
            "a column of labels of one type",
            target,
            got=f"column {target!r} mixing types",
            fix="convert the labels to one type, e.g. frame[target].astype(str).",
        )

    # the split comes first: every statistic below is fitted on the training rows only
    cells = frame[stratify].astype(str)
    cells.insert(0, "\0label", codes)
    strata = cells.groupby(list(cells.columns), sort=True).ngroup().to_numpy()
    fractions = {"val": val_fraction, "test": test_fraction}
    subset = stratified_parts(strata, int(strata.max()) + 1, fractions, np.random.default_rng(seed))
    for part in SUBSETS:
        if not (subset == part).any() and (part == "train" or fractions.get(part, 0) > 0):
            data_fail(
                "frame",
                where,
                f"large enough that the {part} part is not empty",
                f"{len(frame)} rows",
                "use more rows, larger fractions, or fewer stratify columns.",
            )
    train = subset == "train"

    kinds = {c: _column_kind(frame[c], c, categorical, where) for c in features}
    missing = {c: frame[c].isna().to_numpy() for c in features}
    if impute == "refuse" and any(m.any() for m in missing.values()):
        listed = [
            f"{c!r} {int(m.sum())} (first at row {int(np.flatnonzero(m)[0])})"
            for c, m in missing.items()
            if m.any()
        ]
        data_fail(
            "frame",
            where,
            "a value in every feature cell (impute=None refuses missing values)",
            f"{sum(int(m.sum()) for m in missing.values())} missing value(s): {', '.join(listed)}",
            "fill or drop those rows (e.g. frame.dropna()), or pass impute='mean' to fill them from the "
            "training rows.",
        )

    blocks, names = [], []
    fitted: dict[str, dict[str, Any]] = {"mean": {}, "scale": {}, "categories": {}, "fill": {}}
    for c in features:
        gap = missing[c]
        if gap[train].all():
            data_fail(
                "frame",
                where,
                f"at least one value of feature {c!r} in the training rows",
                "only missing values there",
                f"drop the column or fill it (features=[...] without {c!r}).",
            )
        if kinds[c] == "numeric":
            values = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isinf(values)
            if bad.any():
                data_fail(
                    "frame",
                    where,
                    f"finite values in feature {c!r}",
                    f"{int(bad.sum())} infinite value(s), the first at row {int(np.flatnonzero(bad)[0])}",
                    "replace or drop those rows first.",
                )
            if gap.any():
                known = values[train & ~gap]
                if impute == "median":
                    fill = float(np.median(known))
                elif impute == "most_frequent":
                    fill = float(_most_frequent(pd.Series(known)))
                else:
                    fill = float(known.mean())
                values = np.where(gap, fill, values)
                fitted["fill"][c] = fill
            mean = float(values[train].mean())
            std = float(values[train].std())
            scale = std if std > 0 else 1.0
            fitted["mean"][c], fitted["scale"][c] = mean, scale
            blocks.append(((values - mean) / scale)[:, None])
            names.append(str(c))
        else:
            text = np.array(
                [None if m else str(v) for v, m in zip(frame[c].tolist(), gap, strict=True)], dtype=object
            )
            if gap.any():
                fill_text = str(_most_frequent(pd.Series(text[train & ~gap])))
                text[gap] = fill_text
                fitted["fill"][c] = fill_text
            categories = sorted(set(text[train].tolist()))
            fitted["categories"][c] = categories
            blocks.append((text[:, None] == np.array(categories, dtype=object)[None, :]).astype(np.float64))
            names.extend(f"{c}={v}" for v in categories)
    x = np.concatenate(blocks, axis=1)
    ids = None
    if id_column is not None:
        ids = frame[id_column].to_numpy()
        if not np.issubdtype(ids.dtype, np.integer):
            fail("id_column", where, "a column of integer ids", id_column, got=f"dtype {ids.dtype}")
    return Dataset(
        x.astype(np.float32),
        codes.astype(np.int64),
        sample_id=ids,
        groups={g: frame[g].to_numpy() for g in groups} or None,
        class_names=[str(u) for u in uniques],
        name=name,
        modality="tabular",
        feature_names=names,
        subset=subset,
        source={
            "source": "frame",
            "target": str(target),
            "groups": [str(g) for g in groups],
            "features": [str(f) for f in features],
            "categorical": [str(c) for c in features if kinds[c] == "categorical"],
            "impute": impute,
            "split": {
                "seed": seed,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "stratify": [str(s) for s in stratify],
            },
            "fitted": {k: {str(c): v for c, v in d.items()} for k, d in fitted.items()},
        },
    )


def _most_frequent(values: pd.Series) -> Any:
    """The most frequent value (ties: the smallest)."""
    counts = values.value_counts()
    return min(counts.index[counts == counts.max()].tolist())


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | float | np.number):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _column_kind(column: pd.Series, name: Any, categorical: Sequence[Any], where: str) -> str:
    """``"numeric"`` or ``"categorical"``; a text column that mostly holds numbers is refused."""
    if (
        name in categorical
        or pd.api.types.is_bool_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    ):
        return "categorical"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric"
    present = column.dropna()
    numbers = np.array([_is_number(v) for v in present.tolist()], dtype=bool)
    if numbers.size and 2 * int(numbers.sum()) >= numbers.size:
        texts = [i for i, v in enumerate(present.tolist()) if isinstance(v, str)]
        odd = [i for i in texts if not numbers[i]]
        pick = (odd or texts or [int(np.flatnonzero(~numbers)[0]) if (~numbers).any() else 0])[0]
        row = int(column.index.get_loc(present.index[pick]))
        data_fail(
            "frame",
            where,
            f"numbers only in the numeric feature column {name!r}",
            f"the text value {present.iloc[pick]!r} at row {row} "
            f"({int((~numbers).sum())} non-numeric and {int(numbers.sum())} numeric values)",
            f"convert the column, e.g. frame[{name!r}] = pd.to_numeric(frame[{name!r}], errors='coerce') "
            f"(bad entries become missing values), or declare it categorical with categorical=[{name!r}].",
        )
    return "categorical"


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    groups: Sequence[str] = (),
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    impute: str | None = "mean",
    id_column: str | None = None,
    stratify: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    name: str | None = None,
) -> Dataset:
    """A tabular dataset from a CSV file (name defaults to the file's stem); see :func:`load_frame`.

    pandas reads the file, so empty cells and markers such as ``NA``/``n/a`` are missing values.
    """
    p = Path(path)
    if not p.is_file():
        fail("path", "load_csv", "an existing CSV file", str(p), "check the path.", error=DataError)
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        data_fail("path", "load_csv", "a CSV file with a header and rows", f"the empty file {str(p)!r}")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        data_fail(
            "path", "load_csv", "a readable CSV file", f"{str(p)!r} ({exc})", "check the file's format."
        )
    ds = load_frame(
        frame,
        target=target,
        groups=groups,
        features=features,
        categorical=categorical,
        impute=impute,
        id_column=id_column,
        stratify=stratify,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        name=name or p.stem,
    )
    cast(dict[str, Any], ds.info.source).update({"source": "csv", "path": str(p)})
    return ds


# Keys tried, in order, when items are dicts (Hugging Face ``datasets`` rows, custom datasets).
INPUT_KEYS = ("pixel_values", "image", "img", "x", "input", "inputs", "features")
LABEL_KEYS = ("label", "labels", "y", "target", "targets")


def from_torch(
    dataset: torch.utils.data.Dataset | torch.utils.data.DataLoader,
    *,
    name: str = "torch",
    class_names: Sequence[str] | None = None,
    groups: pd.DataFrame | None = None,
    input_key: str | None = None,
    label_key: str | None = None,
) -> Dataset:
    """Materialise a torch ``Dataset`` (map-style or iterable) or an unshuffled ``DataLoader``.

    Items may be ``(input, label)`` or ``(input, label, ...)`` tuples (extra fields are ignored), or
    dicts such as Hugging Face ``datasets`` rows (``dataset.with_format("torch")``): the input is taken
    from ``input_key`` (default: the first of ``"pixel_values"``, ``"image"``, ``"img"``, ``"x"``,
    ``"input"``, ``"inputs"``, ``"features"``) and the label from ``label_key`` (default: the first of
    ``"label"``, ``"labels"``, ``"y"``, ``"target"``, ``"targets"``). A ``DataLoader``'s batches are
    concatenated along the first axis; it must not shuffle, since sample ids follow its order.

    Inputs must be numeric arrays of one shape and are cast to ``float32`` (images as tensors: apply
    e.g. torchvision's ``ToTensor`` first); token-id inputs belong to the text source, not here.
    Labels are integers ``0..K-1``; ``class_names`` defaults to the dataset's ``classes`` attribute
    (torchvision datasets) if it has one.

    >>> import torch
    >>> items = torch.utils.data.TensorDataset(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> from_torch(items).info.input_shape
    (3,)
    """
    where = "from_torch"
    for key, param in ((input_key, "input_key"), (label_key, "label_key")):
        if key is not None and not isinstance(key, str):
            fail(param, where, "the name of a key of the dataset's dict items", key)
    loader = dataset if isinstance(dataset, torch.utils.data.DataLoader) else None
    source = loader.dataset if loader is not None else dataset
    if loader is not None and isinstance(loader.sampler, torch.utils.data.RandomSampler):
        fail(
            "dataset",
            where,
            "a DataLoader that keeps the dataset's order (sample ids follow it)",
            None,
            got="a DataLoader with shuffle=True",
            fix="pass DataLoader(..., shuffle=False) or the dataset itself.",
        )
    batched = loader is not None and loader.batch_size is not None
    if loader is not None:
        items: Any = iter(loader)
    elif isinstance(dataset, torch.utils.data.IterableDataset):
        items = iter(dataset)
    elif isinstance(dataset, torch.utils.data.Dataset) or hasattr(dataset, "__getitem__"):
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            fail(
                "dataset", where, "a torch Dataset with __len__, an IterableDataset or a DataLoader", dataset
            )
        items = (dataset[i] for i in range(n))
    else:
        fail("dataset", where, "a torch Dataset or DataLoader", type(dataset).__name__)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    keys: tuple[str | None, str | None] = (None, None)
    for i, item in enumerate(items):
        what = f"batch {i}" if batched else f"item {i}"
        x, y, keys = _input_and_label(item, what, input_key, label_key)
        xt = _input_tensor(x, what, where)
        yt = _label_tensor(y, what, where, batched)
        if batched and (xt.ndim == 0 or xt.shape[0] != yt.shape[0]):
            fail(
                "dataset",
                where,
                "batches whose inputs and labels have the same length",
                None,
                got=f"{what}: inputs of shape {tuple(xt.shape)}, {yt.shape[0]} labels",
            )
        if xs and (xt.shape[1:] if batched else xt.shape) != (xs[0].shape[1:] if batched else xs[0].shape):
            first = tuple(xs[0].shape[1:] if batched else xs[0].shape)
            fail(
                "dataset",
                where,
                f"inputs of one shape ({first}, as the first {'batch' if batched else 'item'})",
                None,
                got=f"{what} of shape {tuple(xt.shape[1:] if batched else xt.shape)}",
                fix="resize or pad the inputs to one shape in the dataset's transform.",
            )
        xs.append(xt)
        ys.append(yt)
    if not xs:
        data_fail("dataset", where, "at least one item", "an empty dataset")
    x_all = torch.cat(xs) if batched else torch.stack(xs)
    y_all = torch.cat(ys) if batched else torch.stack(ys)
    if class_names is None:
        found = getattr(source, "classes", None)
        if isinstance(found, list | tuple) and found and all(isinstance(c, str) for c in found):
            class_names = found
    return Dataset(
        x_all,
        y_all,
        class_names=class_names,
        groups=groups,
        name=name,
        source={"source": "torch", "type": type(source).__name__, "input_key": keys[0], "label_key": keys[1]},
    )


def _input_and_label(
    item: Any, what: str, input_key: str | None, label_key: str | None
) -> tuple[Any, Any, tuple[str | None, str | None]]:
    """Split one item (or batch) into its input and label: a tuple/list or a dict."""
    where = "from_torch"
    if isinstance(item, Mapping):
        keys = list(item.keys())
        chosen = []
        for given, defaults, param in (
            (input_key, INPUT_KEYS, "input_key"),
            (label_key, LABEL_KEYS, "label_key"),
        ):
            if given is not None:
                if given not in item:
                    fail(
                        param,
                        where,
                        f"a key of the dataset's dict items ({keys})",
                        given,
                        "pass one of them.",
                    )
                chosen.append(given)
                continue
            present = [k for k in defaults if k in item]
            if not present:
                kind = "an input" if param == "input_key" else "a label"
                fail(
                    "dataset",
                    where,
                    f"dict items with {kind} under one of the keys {list(defaults)}",
                    None,
                    got=f"{what} with keys {keys}",
                    fix=f"name the {kind.split()[1]} with {param}='...' (one of {keys}).",
                )
            chosen.append(present[0])
        return item[chosen[0]], item[chosen[1]], (chosen[0], chosen[1])
    if isinstance(item, tuple | list) and len(item) >= 2:
        if input_key is not None or label_key is not None:
            fail(
                "input_key" if input_key is not None else "label_key",
                where,
                "used only with dict items",
                input_key if input_key is not None else label_key,
                got=f"{input_key or label_key!r} with {what} a {type(item).__name__} of {len(item)} fields",
                fix="drop input_key/label_key: tuple items are read as (input, label, ...).",
            )
        return item[0], item[1], (None, None)
    shown = f"a {type(item).__name__} of length {len(item)}" if isinstance(item, tuple | list) else None
    fail(
        "dataset",
        where,
        "items that are (input, label[, ...]) tuples or dicts with an input and a label",
        None,
        got=f"{what}: {shown or type(item).__name__}",
        fix="wrap the dataset so that __getitem__ returns (input, label), e.g. a TensorDataset(x, y).",
    )


def _input_tensor(x: Any, what: str, where: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        if type(x).__module__.startswith("PIL."):
            fail(
                "dataset",
                where,
                "inputs that are arrays or tensors",
                None,
                got=f"{what} holding a PIL image",
                fix="convert images to tensors in the dataset's transform (e.g. torchvision ToTensor, or "
                "dataset.with_format('torch') for Hugging Face datasets), or use load_image_folder.",
            )
        arr = np.asarray(x) if not isinstance(x, str | bytes) else np.asarray(None)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            fail(
                "dataset",
                where,
                "numeric inputs (arrays or tensors)",
                None,
                got=f"{what} with an input of type {type(x).__name__}",
                fix="convert inputs to tensors in the dataset's transform.",
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        fail("dataset", where, "real-valued inputs", None, got=f"{what} with dtype {t.dtype}")
    return t.to(torch.float32)


def _label_tensor(y: Any, what: str, where: str, batched: bool) -> torch.Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    ok = arr.dtype != object and (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    )
    if ok and np.issubdtype(arr.dtype, np.floating):
        ok = bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    shape_ok = arr.ndim == 1 if batched else arr.size == 1
    if not ok or not shape_ok:
        expected = (
            "a 1-D tensor of integer labels per batch" if batched else "one integer class label per item"
        )
        fail(
            "dataset",
            where,
            f"items with {expected}",
            None,
            got=f"{what} with a label of type {type(y).__name__}, shape {arr.shape}, dtype {arr.dtype}",
            fix="return class indices 0..K-1 (not one-hot vectors or strings) and pass class_names=.",
        )
    return torch.from_numpy(arr.astype(np.int64).reshape(-1 if batched else ()))


_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "mnist": lambda **kw: load_mnist_format(kind="mnist", **kw),
    "fashion-mnist": lambda **kw: load_mnist_format(kind="fashion-mnist", **kw),
    "kmnist": lambda **kw: load_mnist_format(kind="kmnist", **kw),
    "csv": load_csv,
    "image_folder": load_image_folder,
    "cifar10": load_cifar10,
    "german-credit": load_german_credit,
}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_REGISTRY)


def load_dataset(name: str, /, **options: Any) -> Dataset:
    """Load a dataset by source name, passing ``options`` on to its loader.

    ``digits`` (default), ``mnist1d``, ``mnist``/``fashion-mnist``/``kmnist`` (``root=`` folder of IDX
    files, :func:`load_mnist_format`), ``csv`` (``path=``, ``target=``, ``groups=`` and every option of
    :func:`load_csv`, ``name=`` included), ``image_folder`` (``root=``, ``size=``, ``groups=``:
    :func:`load_image_folder`), ``cifar10`` (``root=`` folder of the python batches,
    :func:`load_cifar10`) and ``german-credit`` (the real tabular dataset pruneviz ships, with the sensitive
    attributes sex, age group and foreign worker as groups; ``path=``, ``seed=`` and the split fractions:
    :func:`~pruneviz.data.load_german_credit`).

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
