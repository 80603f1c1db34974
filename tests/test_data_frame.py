"""Tabular sources: splits decided by the loader, train-only statistics, categorical and missing values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pruneviz.data import load_csv, load_dataset, load_frame
from pruneviz.exceptions import DataError, ValidationError


@pytest.fixture()
def people() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 300
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(1, 0.5, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "member": rng.choice([True, False], n),
            "site": rng.choice(["north", "south", "east"], n, p=[0.5, 0.4, 0.1]),
            "sex": rng.choice(["f", "m"], n),
            "outcome": rng.choice(["yes", "no", "maybe"], n),
        }
    )


def train_rows(ds):
    return ds.subset == "train"


@pytest.mark.reference
def test_standardisation_uses_training_rows_only(people):
    ds = load_frame(people, target="outcome", groups=["site"], seed=1)
    train = train_rows(ds)
    assert 0 < train.sum() < len(ds)
    raw = people[["age", "income"]].to_numpy()
    expected = (raw - raw[train].mean(0)) / raw[train].std(0)
    names = list(ds.info.feature_names)
    got = ds.x.numpy()[:, [names.index("age"), names.index("income")]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    fitted = ds.info.source["fitted"]
    assert fitted["mean"]["age"] == pytest.approx(raw[train, 0].mean())
    assert fitted["scale"]["income"] == pytest.approx(raw[train, 1].std())
    # statistics over all rows would differ: the held-out rows are not centred exactly
    assert abs(float(ds.x[~train, names.index("age")].mean())) > 1e-6


@pytest.mark.reference
def test_one_hot_matches_get_dummies_on_training_categories(people):
    ds = load_frame(people, target="outcome", seed=0)
    train = train_rows(ds)
    categories = sorted(people.loc[train, "colour"].unique())
    dummies = pd.get_dummies(
        pd.Categorical(people["colour"], categories=categories), prefix="colour", prefix_sep="="
    ).astype(np.float32)
    names = list(ds.info.feature_names)
    cols = [names.index(c) for c in dummies.columns]
    np.testing.assert_array_equal(ds.x.numpy()[:, cols], dummies.to_numpy())
    assert ds.info.source["fitted"]["categories"]["colour"] == categories
    assert {"member=False", "member=True"} <= set(names)  # a bool column is categorical too


def test_a_category_met_only_outside_training_encodes_as_zeros(people):
    people = people.copy()
    ds0 = load_frame(people, target="outcome", seed=4)
    rare = np.flatnonzero(ds0.subset == "test")[:2]
    people.loc[rare, "colour"] = "purple"
    ds = load_frame(people, target="outcome", seed=4)
    np.testing.assert_array_equal(ds.subset, ds0.subset)  # the split does not depend on features
    names = list(ds.info.feature_names)
    assert "colour=purple" not in names
    cols = [i for i, n in enumerate(names) if n.startswith("colour=")]
    np.testing.assert_array_equal(ds.x.numpy()[rare][:, cols], 0)


@pytest.mark.reference
def test_missing_values_are_imputed_from_training_rows(people):
    people = people.copy()
    people.loc[[3, 50, 120], "age"] = np.nan
    people.loc[[7, 8], "colour"] = None
    ds = load_frame(people, target="outcome", seed=2)
    train = train_rows(ds)
    fitted = ds.info.source["fitted"]
    assert fitted["fill"]["age"] == pytest.approx(np.nanmean(people.loc[train, "age"].to_numpy()))
    counts = people.loc[train, "colour"].value_counts()
    assert fitted["fill"]["colour"] == counts.index[0]
    age = list(ds.info.feature_names).index("age")
    filled = (fitted["fill"]["age"] - fitted["mean"]["age"]) / fitted["scale"]["age"]
    np.testing.assert_allclose(ds.x[[3, 50, 120], age].numpy(), filled, rtol=1e-5)
    median = load_frame(people, target="outcome", seed=2, impute="median")
    assert median.info.source["fitted"]["fill"]["age"] == pytest.approx(
        np.nanmedian(people.loc[train, "age"].to_numpy())
    )
    json.dumps(ds.info.to_json())  # the record is JSON


def test_fitted_statistics_re_encode_the_rows(people):
    ds = load_frame(people, target="outcome", seed=0)
    fitted = ds.info.source["fitted"]
    columns = []
    for c in ds.info.source["features"]:
        if c in fitted["categories"]:
            columns += [(people[c].astype(str) == v).to_numpy(float) for v in fitted["categories"][c]]
        else:
            columns.append((people[c].to_numpy() - fitted["mean"][c]) / fitted["scale"][c])
    np.testing.assert_allclose(np.stack(columns, 1), ds.x.numpy(), rtol=1e-5, atol=1e-5)


def test_missing_values_refused_when_imputation_is_off(people):
    people = people.copy()
    people.loc[[3, 50], "age"] = np.nan
    people.loc[9, "colour"] = None
    for refuse in (None, "refuse"):
        with pytest.raises(
            DataError,
            match=r"'frame' parameter of load_frame .* Got 3 missing value\(s\): 'age' 2 \(first at row 3\), "
            r"'colour' 1 \(first at row 9\).*Fix: .*impute='mean'",
        ):
            load_frame(people, target="outcome", impute=refuse)
    with pytest.raises(ValidationError, match=r"'impute' parameter.*Got 'avg'"):
        load_frame(people, target="outcome", impute="avg")


def test_text_in_a_numeric_column_names_column_value_row_and_fix(people, tmp_path):
    people = people.copy()
    people["dose"] = pd.Series([1.5, 2.0, 3.0] * 100, dtype=object)
    people.loc[17, "dose"] = "n/a"
    with pytest.raises(
        DataError,
        match=r"numbers only in the numeric feature column 'dose'.*Got the text value 'n/a' at row 17.*"
        r"pd.to_numeric.*categorical=\['dose'\]",
    ):
        load_frame(people, target="outcome")
    people.loc[17, "dose"] = "12"  # a number stored as text among numbers
    with pytest.raises(DataError, match=r"'dose'.*the text value '12' at row 17"):
        load_frame(people, target="outcome")
    ds = load_frame(people, target="outcome", categorical=["dose"])
    assert {"dose=1.5", "dose=2.0", "dose=3.0"} <= set(ds.info.feature_names)
    path = tmp_path / "dose.csv"
    frame = pd.DataFrame({"w": ["1", "2", "abc", "4"] * 5, "y": [0, 1] * 10})
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'w'.*'abc' at row 2"):
        load_csv(path, target="y")


def test_absent_group_and_stratify_columns_list_the_available_ones(people):
    with pytest.raises(
        ValidationError,
        match=r"'groups' parameter of load_frame must be the name\(s\) of columns present in the data "
        r"\(\['age', 'income', 'colour', 'member', 'site', 'sex', 'outcome'\]\). Got 'race'",
    ):
        load_frame(people, target="outcome", groups=["site", "race"])
    with pytest.raises(ValidationError, match=r"'stratify' parameter of load_frame.*Got 'region'"):
        load_frame(people, target="outcome", stratify=["region"])
    with pytest.raises(ValidationError, match=r"'categorical' parameter.*Got 'outcome'"):
        load_frame(people, target="outcome", categorical=["outcome"])


@pytest.mark.reference
def test_split_is_stratified_by_label_and_groups(people):
    ds = load_frame(people, target="outcome", groups=["site", "sex"], test_fraction=0.25, val_fraction=0.15)
    cells = people[["outcome", "site", "sex"]].assign(part=ds.subset)
    for _, cell in cells.groupby(["outcome", "site", "sex"]):
        n = len(cell)
        assert (cell.part == "test").sum() == round(0.25 * n)
        assert (cell.part == "val").sum() == round(0.15 * n)
    parts = ds.split(seed=99)  # the loader's split is kept
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        np.testing.assert_array_equal(np.sort(part.sample_id), np.flatnonzero(ds.subset == name))
    assert ds.info.source["split"] == {
        "seed": 0,
        "val_fraction": 0.15,
        "test_fraction": 0.25,
        "stratify": ["site", "sex"],
    }


def test_a_rare_group_combination_is_kept_in_training(people):
    people = people.copy()
    people.loc[5, "site"] = "island"  # one row of its own cell
    people.loc[[6, 7], ["site", "outcome"]] = ["moon", "yes"]  # two rows, fractions sending both away
    ds = load_frame(people, target="outcome", groups=["site"], test_fraction=0.4, val_fraction=0.4)
    assert ds.subset[5] == "train"
    assert sorted(ds.subset[[6, 7]].tolist()) in (["test", "train"], ["train", "val"])


def test_target_strings_and_integers(people):
    ds = load_frame(people, target="outcome")
    assert ds.info.class_names == ("maybe", "no", "yes")
    np.testing.assert_array_equal(ds.y.numpy(), pd.factorize(people["outcome"], sort=True)[0])
    frame = people.assign(code=np.tile([3, 7, 5], 100)).drop(columns="outcome")
    ds = load_frame(frame, target="code")
    assert ds.info.class_names == ("3", "5", "7")
    np.testing.assert_array_equal(ds.y.numpy()[:3], [0, 2, 1])
    frame.loc[4, "code"] = None
    with pytest.raises(DataError, match=r"1 missing in column 'code', the first at row 4"):
        load_frame(frame, target="code")


def test_load_dataset_csv_passes_name_and_every_option(people, tmp_path):
    path = tmp_path / "people.csv"
    people.to_csv(path, index=False)
    ds = load_dataset(
        "csv",
        path=path,
        target="outcome",
        groups=["site"],
        name="survey",
        seed=3,
        test_fraction=0.3,
        val_fraction=0.0,
        impute=None,
        categorical=["member"],
    )
    direct = load_csv(
        path,
        target="outcome",
        groups=["site"],
        name="survey",
        seed=3,
        test_fraction=0.3,
        val_fraction=0.0,
        impute=None,
        categorical=["member"],
    )
    assert ds.info.name == "survey" and ds.fingerprint() == direct.fingerprint()
    assert set(ds.subset) == {"train", "test"} and ds.info.source["path"] == str(path)
