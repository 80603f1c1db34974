"""Image sources from local files: a torchvision ``ImageFolder`` layout and CIFAR-10's python batches.

Both read only local files (nothing downloads). CIFAR-10's batches are Python pickles; they are read by
an unpickler that can build nothing but plain containers and NumPy arrays (see :func:`load_cifar10`), so
a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pruneviz._validation import check_columns, data_fail, fail
from pruneviz.data.dataset import Dataset
from pruneviz.exceptions import DataError, MissingDependencyError

# Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images", as in batches.meta.
CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The python version's files: name, the subset they belong to, and the first sample id of each.
_CIFAR_BATCHES = (
    *((f"data_batch_{k}", "train", (k - 1) * 10_000) for k in range(1, 6)),
    ("test_batch", "test", 50_000),
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GREY_MODES = {"1", "L", "LA", "La"}
_GREY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    groups: pd.DataFrame | str | os.PathLike[str] | None = None,
    groups_on: str = "file",
    name: str | None = None,
) -> Dataset:
    """Images laid out as torchvision's ``ImageFolder`` does: ``root/<class name>/<image file>``.

    Classes are the subfolders of ``root`` in sorted order (labels 0..K-1); each class's images (files
    ending in one of ``IMAGE_EXTENSIONS``, in its subfolders too) are taken in sorted order, and sample
    ids follow that order. Pixel values are scaled to [0, 1] (8-bit by 255, 16-bit greyscale by 65535).
    Channels are kept: a folder of greyscale images gives ``x`` of shape ``(N, 1, H, W)``; if any image
    is in colour, all are read as RGB, ``(N, 3, H, W)`` (an alpha channel is dropped). All images must
    have one size unless ``size=(H, W)`` resizes them (bilinear, with Pillow).

    ``groups`` (a DataFrame or the path of a CSV file) gives per-image metadata: its ``groups_on``
    column names each image by its path relative to ``root`` (``"cat/001.png"``) or, where file names
    are unique, by its file name (``"001.png"``); its other columns become group columns. Every image
    needs a row; rows naming no image are ignored.

    Needs Pillow (``pip install pillow``).
    """
    where = "load_image_folder"
    image_module = _pillow()
    folder = Path(root)
    if not folder.is_dir():
        fail("root", where, "an existing folder with one subfolder per class", str(folder), error=DataError)
    if size is not None:
        ok = (
            isinstance(size, tuple | list)
            and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        )
        if not ok:
            fail(
                "size", where, "a pair of positive integers (height, width)", size, "pass e.g. size=(32, 32)."
            )
        size = (int(size[0]), int(size[1]))
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        data_fail(
            "root",
            where,
            "a folder with one subfolder of images per class (root/<class>/<image>)",
            f"no subfolder in {str(folder)!r}",
            "put each class's images in a subfolder named after the class.",
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = sorted(
            p
            for p in (folder / cls).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not found:
            data_fail(
                "root",
                where,
                f"at least one image ({', '.join(IMAGE_EXTENSIONS)}) in every class folder",
                f"none in {str(folder / cls)!r}",
                "remove the empty class folder or add its images.",
            )
        files.extend(found)
        labels.extend([label] * len(found))
    arrays = [_read_image(image_module, p, size, where) for p in files]
    shapes = {a.shape[-2:] for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape[-2:]
        other = next(i for i, a in enumerate(arrays) if a.shape[-2:] != first)
        data_fail(
            "size",
            where,
            "images of one size, or a size to resize them to",
            f"{str(files[0].relative_to(folder))!r} of {first[0]}×{first[1]} and "
            f"{str(files[other].relative_to(folder))!r} of "
            f"{arrays[other].shape[-2]}×{arrays[other].shape[-1]} (height×width)",
            "pass size=(H, W) to resize every image.",
        )
    colour = any(a.ndim == 3 for a in arrays)
    if colour:
        arrays = [a if a.ndim == 3 else np.repeat(a[None], 3, axis=0) for a in arrays]
    else:
        arrays = [a[None] for a in arrays]
    relative = [p.relative_to(folder).as_posix() for p in files]
    table = None
    if groups is not None:
        bare = [p.name for p in files]
        table = join_metadata(
            relative, bare if len(set(bare)) == len(bare) else None, groups, groups_on, where
        )
    return Dataset(
        np.stack(arrays).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        groups=table,
        class_names=classes,
        name=name or folder.name or "images",
        modality="image",
        source={
            "source": "image_folder",
            "root": str(folder),
            "size": list(size) if size is not None else None,
            "files": relative,
        },
    )


def _pillow() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise MissingDependencyError(
            "Reading an image folder needs the optional package 'pillow', which is not installed. "
            "Fix: pip install pillow."
        ) from exc


def _read_image(image_module: Any, path: Path, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """One image as float32 in [0, 1]: ``(H, W)`` for greyscale, ``(3, H, W)`` for colour."""
    bilinear = image_module.Resampling.BILINEAR
    try:
        with image_module.open(path) as im:
            im.load()
            mode = im.mode
            if mode in _GREY_MODES:
                im = im.convert("L")
                if size is not None:
                    im = im.resize((size[1], size[0]), bilinear)
                return np.asarray(im, dtype=np.float32) / 255.0
            if mode in _GREY16_MODES:
                arr = np.asarray(im).astype(np.float32) / 65535.0
                if size is not None:
                    arr = np.asarray(image_module.fromarray(arr).resize((size[1], size[0]), bilinear))
                return arr.astype(np.float32)
            if mode in {"I", "F"}:
                data_fail(
                    "root",
                    where,
                    "8-bit, 16-bit greyscale or colour images",
                    f"{str(path)!r} in Pillow mode {mode!r} (32-bit values of unknown range)",
                    "convert those images to 8- or 16-bit files first.",
                )
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size[1], size[0]), bilinear)
            return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's UnidentifiedImageError is an OSError
        data_fail(
            "root",
            where,
            "readable image files",
            f"{str(path)!r}, which Pillow cannot read ({exc})",
            "remove or replace the damaged file.",
        )


def join_metadata(
    keys: Sequence[str],
    other_keys: Sequence[str] | None,
    groups: pd.DataFrame | str | os.PathLike[str],
    groups_on: str,
    where: str,
) -> pd.DataFrame:
    """Group columns for samples named by ``keys`` (or ``other_keys``), from a metadata table.

    ``groups`` is a DataFrame or a CSV file's path; its ``groups_on`` column holds the keys (compared as
    text) and its other columns become the group columns, one row per sample in the order of ``keys``.
    """
    if isinstance(groups, str | os.PathLike):
        path = Path(groups)
        if not path.is_file():
            fail(
                "groups", where, "a DataFrame or the path of an existing CSV file", str(path), error=DataError
            )
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            data_fail("groups", where, "a readable CSV file with a header", f"{str(path)!r} ({exc})")
    elif isinstance(groups, pd.DataFrame):
        table = groups.reset_index(drop=True)
    else:
        fail("groups", where, "a DataFrame or the path of a CSV file", type(groups).__name__)
    check_columns([groups_on], table.columns, "groups_on", where)
    columns = [c for c in table.columns if c != groups_on]
    if not columns:
        fail(
            "groups",
            where,
            f"a table with group columns besides the key column {groups_on!r}",
            list(table.columns),
            "add at least one column of group labels.",
        )
    key = table[groups_on]
    if key.isna().any():
        first = int(np.flatnonzero(key.isna().to_numpy())[0])
        data_fail(
            "groups", where, f"a key in every row of column {groups_on!r}", f"a missing key at row {first}"
        )
    text = key.map(_key_text)
    duplicated = text[text.duplicated()]
    if len(duplicated):
        data_fail(
            "groups",
            where,
            f"one row per sample (unique values in column {groups_on!r})",
            f"{len(duplicated)} duplicate key(s), e.g. {duplicated.iloc[0]!r}",
            "drop the duplicate rows.",
        )
    position = pd.Series(np.arange(len(table)), index=pd.Index(text))
    rows = position.reindex(list(keys)).to_numpy()
    if other_keys is not None:
        alternative = position.reindex(list(other_keys)).to_numpy()
        rows = np.where(np.isnan(rows), alternative, rows)
    absent = np.flatnonzero(np.isnan(rows))
    if absent.size:
        shown = [keys[i] for i in absent[:3]]
        data_fail(
            "groups",
            where,
            f"a metadata row for every sample (matched on column {groups_on!r})",
            f"{absent.size} of {len(keys)} sample(s) without one, e.g. {shown}",
            f"add rows for them to the metadata, keyed in {groups_on!r} like {keys[0]!r}.",
        )
    return table.iloc[rows.astype(np.int64)][columns].reset_index(drop=True)


def _key_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_cifar10(
    root: str | os.PathLike[str],
    *,
    groups: pd.DataFrame | str | os.PathLike[str] | None = None,
    groups_on: str = "sample_id",
    name: str = "cifar10",
) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) from a local folder of its *python* batches, read without running code.

    ``root`` holds (or has a ``cifar-10-batches-py`` subfolder holding) any of ``data_batch_1`` ..
    ``data_batch_5``, ``test_batch`` and ``batches.meta``; the batches present form the ``subset``
    (``"train"``/``"test"``, as with the MNIST files) and ids stay those of the full set whatever is
    present: ``(k - 1) * 10000 + row`` for ``data_batch_k``, ``50000 + row`` for the test batch.
    ``x`` has shape ``(N, 3, 32, 32)`` in [0, 1]; class names come from ``batches.meta`` (the standard
    names if it is absent). ``groups`` joins metadata on its ``groups_on`` column of sample ids, as in
    :func:`load_image_folder`.

    Safety: the batches are pickles, and loading a pickle can call any importable function. They are
    read by an unpickler whose ``find_class`` returns only ``numpy.dtype``, ``numpy.ndarray`` and
    ``numpy.(_)core.multiarray._reconstruct`` and refuses every other global, and whose
    ``persistent_load`` refuses too. Dicts, lists, strings, bytes and numbers are built by pickle
    opcodes without any global; the three NumPy callables only allocate an array and fill it from the
    pickled bytes (and an object array could only hold objects built under the same rules). So a file
    that asks for anything else (``os.system``, ``builtins.eval``, ...) is refused before it runs.
    """
    where = "load_cifar10"
    folder = Path(root)
    if not folder.is_dir():
        fail(
            "root",
            where,
            "an existing folder holding CIFAR-10's python batches",
            str(folder),
            error=DataError,
        )
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    xs, ys, ids, subsets, found = [], [], [], [], []
    for file_name, subset, first_id in _CIFAR_BATCHES:
        path = folder / file_name
        if not path.is_file():
            continue
        batch = read_cifar_pickle(path)
        data, labels = batch.get("data"), batch.get("labels")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            shown = f"{type(data).__name__}" + (
                f" {data.dtype} {data.shape}" if isinstance(data, np.ndarray) else ""
            )
            data_fail(
                "root",
                where,
                "batches whose 'data' is a uint8 array of shape (N, 3072)",
                f"{str(path)!r} with 'data' {shown} (keys {sorted(batch)})",
                "use the python version of CIFAR-10 (cifar-10-python.tar.gz).",
            )
        labels_arr = np.asarray(labels) if isinstance(labels, list | np.ndarray) else None
        if (
            labels_arr is None
            or labels_arr.shape != (data.shape[0],)
            or not np.issubdtype(labels_arr.dtype, np.integer)
            or data.shape[0] > 10_000
        ):
            data_fail(
                "root",
                where,
                "batches of at most 10,000 images with one integer label each under 'labels'",
                f"{str(path)!r} with {data.shape[0]} images and labels {type(labels).__name__}",
                "use the python version of CIFAR-10 (cifar-10-python.tar.gz).",
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels_arr.astype(np.int64))
        ids.append(first_id + np.arange(data.shape[0], dtype=np.int64))
        subsets.append(np.full(data.shape[0], subset))
        found.append(file_name)
    if not found:
        data_fail(
            "root",
            where,
            f"a folder containing CIFAR-10's python batches ({[b for b, _, _ in _CIFAR_BATCHES]})",
            f"none of them in {str(folder)!r}",
            "extract cifar-10-python.tar.gz and pass the cifar-10-batches-py folder.",
        )
    class_names: Sequence[str] = CIFAR10_CLASS_NAMES
    if (folder / "batches.meta").is_file():
        names = read_cifar_pickle(folder / "batches.meta").get("label_names")
        if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
            data_fail(
                "root",
                where,
                "a batches.meta whose 'label_names' is a list of names",
                f"{type(names).__name__} in {str(folder / 'batches.meta')!r}",
            )
        class_names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]
    sample_id = np.concatenate(ids)
    table = None
    if groups is not None:
        table = join_metadata([str(i) for i in sample_id], None, groups, groups_on, where)
    return Dataset(
        np.concatenate(xs).astype(np.float32) / 255.0,
        np.concatenate(ys),
        sample_id=sample_id,
        groups=table,
        class_names=class_names,
        name=name,
        modality="image",
        subset=np.concatenate(subsets),
        source={"source": "cifar10", "root": str(folder), "batches": found},
    )


def _numpy_reconstruct() -> Any:
    try:
        module = importlib.import_module("numpy._core.multiarray")  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        module = importlib.import_module("numpy.core.multiarray")
    return module._reconstruct


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Builds plain containers and NumPy arrays only; every other global is refused (never imported)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "dtype"),
            ("numpy", "ndarray"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return np.dtype if name == "dtype" else np.ndarray

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedGlobal(f"persistent id {pid!r}")


def read_cifar_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one CIFAR python batch (a pickled dict) without running code; keys are returned as ``str``.

    See :func:`load_cifar10` for why this is safe. A pickle asking for any other global, an empty or
    truncated file and one that is not a dict are refused with a :class:`~pruneviz.exceptions.DataError`.
    """
    where = "load_cifar10"
    p = Path(path)
    raw = p.read_bytes()
    if not raw:
        data_fail("root", where, "non-empty CIFAR-10 batch files", f"{str(p)!r}: the file is empty (0 bytes)")
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as exc:
        data_fail(
            "root",
            where,
            "CIFAR-10 batches holding only dicts, lists, bytes, numbers and NumPy arrays",
            f"{str(p)!r}, a pickle that asks for {exc} — refused, nothing was run",
            "use the original files of cifar-10-python.tar.gz; do not load this file with pickle.",
        )
    except Exception as exc:  # a damaged pickle can fail in many ways; all are reported alike
        data_fail(
            "root",
            where,
            "complete CIFAR-10 batch files",
            f"{str(p)!r}, damaged or truncated ({type(exc).__name__}: {exc})",
            "extract the files from cifar-10-python.tar.gz again.",
        )
    if not isinstance(obj, dict):
        data_fail(
            "root", where, "batches that are pickled dicts", f"{str(p)!r} holding a {type(obj).__name__}"
        )
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
