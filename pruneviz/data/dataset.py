"""The in-memory dataset every other part of pruneviz consumes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from pruneviz._validation import check_columns, check_fraction, check_int, data_fail, fail
from pruneviz.data.inputs import Inputs
from pruneviz.exceptions import ValidationError

MODALITIES = ("image", "sequence", "tabular", "text")
SUBSETS = ("train", "val", "test")
#: column names of output frames and run tables that a group column may not take (they would collide)
RESERVED_GROUP_COLUMNS = ("subset", "sample_id", "run", "split", "label", "prediction")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: its name, per-sample input shape, class names and how to draw a sample.

    ``modality`` says how to render one sample: ``"image"`` (``input_shape`` is ``(C, H, W)``),
    ``"sequence"`` (``(C, L)``, drawn as a line), ``"tabular"`` (``(F,)``, drawn as bars named by
    ``feature_names``) or ``"text"`` (``(L,)`` token ids, shown as text through ``vocabulary``, the
    token string of each id). ``source`` records how the data was made (JSON-serialisable).
    """

    name: str
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    modality: str
    feature_names: tuple[str, ...] | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    vocabulary: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "class_names": list(self.class_names),
            "modality": self.modality,
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "source": dict(self.source),
            "vocabulary": list(self.vocabulary) if self.vocabulary is not None else None,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            name=obj["name"],
            input_shape=tuple(obj["input_shape"]),
            class_names=tuple(obj["class_names"]),
            modality=obj["modality"],
            feature_names=tuple(obj["feature_names"]) if obj.get("feature_names") is not None else None,
            source=dict(obj.get("source") or {}),
            vocabulary=tuple(obj["vocabulary"]) if obj.get("vocabulary") is not None else None,
        )


class DataSplits(NamedTuple):
    """The train, validation and test parts of a dataset (disjoint, together the whole)."""

    train: Dataset
    val: Dataset
    test: Dataset


class Dataset:
    """Samples ``x``, integer labels ``y``, stable ``sample_id``s, named group columns and metadata.

    Parameters
    ----------
    x : tensor or array of shape (N, *input_shape), or :class:`~pruneviz.data.Inputs`
        Inputs, converted to ``float32`` and required finite. For text, token ids (an integer tensor
        ``(N, L)``, passed to the model as one argument) or an :class:`Inputs` of named tensors
        (``input_ids``, ``attention_mask``, ...) that the model takes by keyword; integer tensors are
        kept as they are.
    y : tensor or array of shape (N,)
        Integer class labels in ``[0, len(class_names))``.
    sample_id : array of shape (N,), optional
        Unique integer ids that stay attached to the samples through subsets and splits
        (default ``0..N-1``).
    groups : DataFrame or mapping of column -> array of length N, optional
        Categorical attributes used for subgroup analyses. A ``"class"`` column (the class name of
        each sample) is always added.
    class_names : sequence of str, optional
        Default ``"0".."K-1"`` with ``K = max(y) + 1``.
    name : str
        Short name, used in run names and tables.
    modality : {"image", "sequence", "tabular", "text"}, optional
        How to draw one sample; inferred if omitted (:class:`Inputs` text, 3-D image, 2-D sequence,
        1-D tabular).
    vocabulary : sequence of str, optional
        For text, the token string of each id (shows samples as text).
    subset : array of str of shape (N,), optional
        A partition the source prescribes (``"train"``/``"test"``, e.g. MNIST's official test set);
        :meth:`split` honours it.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(np.zeros((4, 3)), np.array([0, 1, 0, 1]), name="toy")
    >>> len(ds), ds.info.num_classes, list(ds.groups.columns)
    (4, 2, ['class'])
    """

    def __init__(
        self,
        x: torch.Tensor | np.ndarray | Inputs,
        y: torch.Tensor | np.ndarray | Sequence[int],
        *,
        sample_id: np.ndarray | Sequence[int] | None = None,
        groups: pd.DataFrame | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "dataset",
        modality: str | None = None,
        feature_names: Sequence[str] | None = None,
        subset: np.ndarray | Sequence[str] | None = None,
        source: Mapping[str, Any] | None = None,
        vocabulary: Sequence[str] | None = None,
    ) -> None:
        where = "Dataset"
        xt = _as_inputs(x, modality, where)
        n = len(xt) if isinstance(xt, Inputs) else xt.shape[0]
        yt = _as_label_tensor(y, n, where)
        if class_names is None:
            k = int(yt.max()) + 1
            class_names = [str(i) for i in range(k)]
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) < 1 or len(set(class_names)) != len(class_names):
            fail("class_names", where, "a sequence of distinct names, one per class", class_names)
        bad = (yt < 0) | (yt >= len(class_names))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            data_fail(
                "y",
                where,
                f"labels in [0, {len(class_names)}) (one per class name)",
                f"label {int(yt[i])} at sample index {i} ({int(bad.sum())} out of range)",
                "remap the labels to 0..K-1, or pass class_names with one name per class.",
            )
        ids = _as_sample_ids(sample_id, n, where)
        groups_df = _as_groups(groups, n, where)
        groups_df.insert(0, "class", pd.Categorical.from_codes(yt.numpy(), categories=list(class_names)))
        if modality is None:
            ndim = len(xt.shape)
            text = isinstance(xt, Inputs) or not xt.is_floating_point()
            modality = "text" if text else {4: "image", 3: "sequence", 2: "tabular"}.get(ndim, "tabular")
        if modality not in MODALITIES:
            fail("modality", where, f"one of {list(MODALITIES)}", modality)
        if feature_names is not None:
            feature_names = tuple(str(f) for f in feature_names)
            if len(feature_names) != int(np.prod(xt.shape[1:])):
                fail(
                    "feature_names",
                    where,
                    f"one name per input feature ({int(np.prod(xt.shape[1:]))})",
                    None,
                    got=f"{len(feature_names)} names",
                )
        subset_arr = None
        if subset is not None:
            subset_arr = np.asarray(subset, dtype=object).astype(str)
            if subset_arr.shape != (n,) or not set(np.unique(subset_arr)) <= set(SUBSETS):
                fail(
                    "subset",
                    where,
                    f"an array of length {n} with values in {list(SUBSETS)}",
                    None,
                    got=f"shape {subset_arr.shape}, values {sorted(set(np.unique(subset_arr)))[:5]}",
                )
        self.x = xt
        self.y = yt
        self.sample_id = ids
        self.groups = groups_df
        self.subset = subset_arr
        self.info = DatasetInfo(
            name=str(name),
            input_shape=tuple(int(s) for s in xt.shape[1:]),
            class_names=class_names,
            modality=modality,
            feature_names=feature_names,
            source=dict(source or {}),
            vocabulary=tuple(str(v) for v in vocabulary) if vocabulary is not None else None,
        )

    # -- basic protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        extra = [c for c in self.groups.columns if c != "class"]
        return (
            f"Dataset({self.info.name!r}, n={len(self)}, input_shape={self.info.input_shape}, "
            f"classes={self.info.num_classes}, groups={['class', *extra]})"
        )

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def take(self, index: np.ndarray | Sequence[int]) -> Dataset:
        """Return the samples at positional ``index`` (ids, groups and metadata follow)."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < -len(self) or idx.max() >= len(self))):
            fail("index", "Dataset.take", f"a 1-D array of positions in [0, {len(self)})", idx)
        # Already validated data: copy the fields instead of re-checking (and allow an empty part).
        part = object.__new__(Dataset)
        part.x = self.x[torch.from_numpy(idx)]
        part.y = self.y[torch.from_numpy(idx)]
        part.sample_id = self.sample_id[idx]
        part.groups = self.groups.iloc[idx].reset_index(drop=True)
        part.subset = None if self.subset is None else self.subset[idx]
        part.info = self.info
        return part

    def split(
        self,
        *,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        stratify: Sequence[str] = (),
    ) -> DataSplits:
        """Split into train / val / test, stratified by class (× ``stratify`` groups), seeded.

        If the source prescribes a test set (``subset``), that set is the test part and ``val_fraction``
        of the prescribed training samples form the validation part; ``test_fraction`` is then unused.
        A prescribed validation set (a dataset loaded back from a zoo) is kept as it is, too; a subset
        that prescribes only training samples gets both held-out parts carved from them.
        Within each stratum — a class, or with ``stratify=["sex", ...]`` a class × group-value cell —
        ``round(fraction * n_stratum)`` samples go to each held-out part, except that a stratum never
        gives away its last training sample (the rare combinations stay represented in training).
        """
        where = "Dataset.split"
        seed = check_int(seed, "seed", where, minimum=0)
        val_fraction = check_fraction(val_fraction, "val_fraction", where)
        test_fraction = check_fraction(test_fraction, "test_fraction", where)
        if isinstance(stratify, str):
            stratify = [stratify]
        check_columns(list(stratify), self.groups.columns, "stratify", where)
        if self.subset is None and val_fraction + test_fraction >= 1:
            fail(
                "val_fraction",
                where,
                f"less than 1 - test_fraction ({1 - test_fraction:g}) so that training samples remain",
                val_fraction,
            )
        labels = self.y.numpy()
        if stratify:
            cells = self.groups[list(stratify)].astype(str)
            cells.insert(0, "\0label", labels)
            strata = cells.groupby(list(cells.columns), sort=True).ngroup().to_numpy()
            num_strata = int(strata.max()) + 1
        else:
            strata, num_strata = labels, self.num_classes
        part = np.full(len(self), "train", dtype=object)
        if self.subset is not None and bool((self.subset == "val").any()):
            part[:] = self.subset
            pool = np.arange(0)
            fractions = {}
        elif self.subset is not None and bool((self.subset == "test").any()):
            part[self.subset == "test"] = "test"
            pool = np.flatnonzero(self.subset != "test")
            fractions = {"val": val_fraction}
        else:
            pool = np.arange(len(self))
            fractions = {"val": val_fraction, "test": test_fraction}
        held_out = stratified_parts(strata[pool], num_strata, fractions, np.random.default_rng(seed))
        part[pool] = held_out
        parts = {name: self.take(np.flatnonzero(part == name)) for name in SUBSETS}
        for name in SUBSETS:
            if len(parts[name].y) == 0 and (name == "train" or fractions.get(name, 0) > 0):
                data_fail(
                    "dataset",
                    where,
                    f"large enough that the {name} part is not empty",
                    f"{len(self)} samples",
                    "use more samples or larger fractions.",
                )
        return DataSplits(parts["train"], parts["val"], parts["test"])

    def fingerprint(self) -> str:
        """A content hash (SHA-256 hex, 16 chars) of inputs, labels, ids, groups and metadata."""
        h = hashlib.sha256()
        tensors = self.x.items() if isinstance(self.x, Inputs) else [("x", self.x)]
        for key, t in tensors:
            h.update(f"{key}:{t.dtype}:".encode() if key != "x" else b"")
            h.update(t.contiguous().numpy().tobytes())
        h.update(self.y.numpy().astype("<i8").tobytes())
        h.update(self.sample_id.astype("<i8").tobytes())
        h.update(self.groups.astype(str).to_csv(index=False).encode())
        h.update(json.dumps(self.info.to_json(), sort_keys=True).encode())
        if self.subset is not None:
            h.update("\0".join(self.subset.tolist()).encode())
        return h.hexdigest()[:16]

    def loader_batches(self, batch_size: int, *, generator: torch.Generator | None = None):
        """Yield ``(x, y)`` minibatches; shuffled with ``generator`` if given, in order otherwise."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield self.x[idx], self.y[idx]


def stratified_parts(
    strata: np.ndarray, num_strata: int, fractions: Mapping[str, float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each sample to ``"train"`` or a held-out part, stratum by stratum.

    ``strata`` holds a stratum code in ``[0, num_strata)`` per sample. Within each stratum (in code order,
    members in a random order from ``rng``) the next ``round(fraction * n)`` samples go to each part of
    ``fractions`` in turn, the rest to ``"train"``; a stratum with members keeps at least one training
    sample (the held-out counts are lowered, last part first). Returns an object array of part names.
    """
    out = np.full(strata.shape[0], "train", dtype=object)
    for c in range(num_strata):
        members = np.flatnonzero(strata == c)
        members = members[rng.permutation(members.size)]
        counts = {name: round(frac * members.size) for name, frac in fractions.items()}
        for name in reversed(list(counts)):
            excess = sum(counts.values()) - (members.size - 1)
            if members.size and excess > 0:
                counts[name] -= min(excess, counts[name])
        start = 0
        for name, k in counts.items():
            out[members[start : start + k]] = name
            start += k
    return out


def _as_inputs(x: Any, modality: str | None, where: str) -> torch.Tensor | Inputs:
    """Float inputs as a finite float32 tensor; token ids (text) kept as integers; named inputs as Inputs."""
    if isinstance(x, Inputs | Mapping):
        try:
            inputs = x if isinstance(x, Inputs) else Inputs(x)
        except ValidationError as exc:
            raise fail(
                "x",
                where,
                "an array of samples, or a mapping of input name -> tensor with one row per sample",
                x,
                f"pass e.g. x={{'input_ids': ids, 'attention_mask': mask}} ({exc}).",
            ) from exc
        if len(inputs) == 0:
            data_fail("x", where, "a non-empty batch of samples", "0 samples", "check the data source.")
        checked = {}
        for key, t in inputs.items():
            t = t.detach().to("cpu").contiguous()
            if t.is_floating_point():
                t = _as_float_tensor(t, where, name=f"x[{key!r}]", min_ndim=1)
            checked[key] = t
        return Inputs(checked)
    if modality == "text":
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
        if t.is_floating_point() or t.ndim != 2 or t.dtype == torch.bool:
            fail(
                "x",
                where,
                "token ids for text: an integer array of shape (N, L), or an Inputs of named tensors",
                None,
                got=f"{t.dtype} of shape {tuple(t.shape)}",
                fix="tokenise the text first, and pass the attention mask with the ids as an Inputs.",
            )
        if t.shape[0] == 0:
            data_fail("x", where, "a non-empty array of samples", "0 samples", "check the data source.")
        return t.detach().to("cpu", torch.int64).contiguous()
    return _as_float_tensor(x, where)


def _as_float_tensor(x: Any, where: str, *, name: str = "x", min_ndim: int = 2) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu")
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise fail(name, where, "an array of numbers of shape (N, ...)", x) from exc
        if (
            arr.dtype == object
            or np.iscomplexobj(arr)
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)
        ):
            fail(name, where, "a real numeric array of shape (N, ...)", None, got=f"dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        fail(name, where, "a real numeric array of shape (N, ...)", None, got=f"dtype {t.dtype}")
    if t.ndim < min_ndim:
        fail(
            name,
            where,
            "an array of shape (N, *input_shape) with at least 2 dimensions",
            None,
            got=f"shape {tuple(t.shape)}",
            fix="add a feature axis, e.g. x[:, None].",
        )
    if t.shape[0] == 0:
        data_fail(
            name, where, "a non-empty array of samples", "0 samples", "check the data source or filter."
        )
    if t.numel() == 0:
        data_fail(
            name,
            where,
            "samples with at least one feature",
            f"shape {tuple(t.shape)}",
            "check the array's axes (N, *input_shape).",
        )
    t = t.to(torch.float32).contiguous()
    finite = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        data_fail(
            name,
            where,
            "finite values only (no NaN or inf)",
            f"{bad.numel()} sample(s) with NaN/inf, the first at index {int(bad[0])}",
            "impute or drop those samples before building the dataset.",
        )
    return t


def _as_label_tensor(y: Any, n: int, where: str) -> torch.Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        fail("y", where, f"a 1-D array of {n} labels (one per sample)", None, got=f"shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            data_fail("y", where, "integer class labels", "non-integer values", "map labels to 0..K-1.")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        fail(
            "y",
            where,
            "integer class labels",
            None,
            got=f"dtype {arr.dtype}",
            fix="encode labels as 0..K-1 (e.g. pandas.factorize) and pass the names as class_names.",
        )
    return torch.from_numpy(arr.astype(np.int64))


def _as_sample_ids(sample_id: Any, n: int, where: str) -> np.ndarray:
    if sample_id is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(sample_id)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        fail(
            "sample_id",
            where,
            f"a 1-D integer array of length {n}",
            None,
            got=f"shape {arr.shape}, dtype {arr.dtype}",
        )
    if np.unique(arr).size != n:
        data_fail("sample_id", where, "unique ids", f"{n - np.unique(arr).size} duplicate(s)")
    return arr.astype(np.int64)


def _as_groups(groups: Any, n: int, where: str) -> pd.DataFrame:
    if groups is None:
        return pd.DataFrame(index=pd.RangeIndex(n))
    df = groups.reset_index(drop=True).copy() if isinstance(groups, pd.DataFrame) else None
    if df is None:
        try:
            df = pd.DataFrame({k: list(v) for k, v in dict(groups).items()})
        except Exception:
            fail("groups", where, f"a DataFrame or a mapping of column -> {n} values", groups)
    if len(df) != n:
        fail(
            "groups",
            where,
            f"one row per sample ({n})",
            None,
            got=f"{len(df)} rows",
            fix="pass group labels aligned with x.",
        )
    if "class" in df.columns:
        fail("groups", where, "columns other than 'class' (added automatically)", list(df.columns))
    reserved = [c for c in df.columns if str(c) in RESERVED_GROUP_COLUMNS]
    if reserved:
        fail(
            "groups",
            where,
            f"columns not named like pruneviz's own columns {list(RESERVED_GROUP_COLUMNS)}",
            None,
            f"rename the column, e.g. groups={{'{reserved[0]}_group': ...}}.",
            got=f"the reserved column name(s) {reserved}",
        )
    for col in df.columns:
        if df[col].isna().any():
            data_fail(
                "groups",
                where,
                "a label for every sample",
                f"{int(df[col].isna().sum())} missing value(s) in column {col!r}",
                "fill missing group labels with an explicit category such as 'unknown'.",
            )
        df[col] = df[col].astype(str).astype("category")
    return df
