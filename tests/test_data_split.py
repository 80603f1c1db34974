"""Dataset.split stratified by class × group columns (issue 14, item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneviz.data import Dataset
from pruneviz.exceptions import ValidationError


def grouped(n: int = 400, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    site = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    sex = rng.choice(["f", "m"], n)
    return Dataset(rng.normal(size=(n, 2)), y, groups={"site": site, "sex": sex})


@pytest.mark.reference
def test_split_stratified_by_label_and_groups_matches_round_per_cell():
    ds = grouped()
    parts = ds.split(seed=5, val_fraction=0.1, test_fraction=0.2, stratify=["site", "sex"])
    cells = pd.DataFrame({"y": ds.y.numpy(), "site": ds.groups["site"].astype(str), "sex": ds.groups["sex"]})
    n_cell = cells.value_counts()
    for name, frac in (("test", 0.2), ("val", 0.1)):
        part = getattr(parts, name)
        got = pd.DataFrame(
            {"y": part.y.numpy(), "site": part.groups["site"].astype(str), "sex": part.groups["sex"]}
        ).value_counts()
        for cell, n in n_cell.items():
            assert got.get(cell, 0) == round(frac * n), (name, cell)
    ids = np.concatenate([p.sample_id for p in parts])
    assert np.array_equal(np.sort(ids), ds.sample_id)
    again = ds.split(seed=5, val_fraction=0.1, test_fraction=0.2, stratify=["site", "sex"])
    np.testing.assert_array_equal(parts.test.sample_id, again.test.sample_id)


def test_without_stratify_the_split_is_the_class_stratified_one():
    ds = grouped()
    a, b = ds.split(seed=2), ds.split(seed=2, stratify=())
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.sample_id, pb.sample_id)


def test_a_rare_combination_stays_in_training():
    y = np.array([0] * 20 + [1] * 20)
    site = np.array(["a"] * 19 + ["rare"] + ["a"] * 20)
    ds = Dataset(np.zeros((40, 2)), y, groups={"site": site})
    for seed in range(5):
        parts = ds.split(seed=seed, val_fraction=0.3, test_fraction=0.3, stratify=["site"])
        assert parts.train.groups["site"].tolist().count("rare") == 1
    # two members with fractions that would send both away: one is kept for training
    site2 = np.array(["a"] * 18 + ["rare"] * 2 + ["a"] * 20)
    ds2 = Dataset(np.zeros((40, 2)), y, groups={"site": site2})
    parts = ds2.split(seed=0, val_fraction=0.4, test_fraction=0.4, stratify="site")
    assert parts.train.groups["site"].tolist().count("rare") == 1


def test_stratify_by_an_absent_column_names_it_and_the_available_ones():
    with pytest.raises(
        ValidationError,
        match=r"'stratify' parameter of Dataset.split must be the name\(s\) of columns present in the "
        r"data \(\['class', 'site', 'sex'\]\). Got 'race'",
    ):
        grouped().split(stratify=["race"])
