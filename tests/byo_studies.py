"""Studies of models and data pruneviz did not make, one per modality, as a new user builds them.

Each builder trains a user's model outside pruneviz, imports it (``Zoo.add_model``), prunes a population
(one-shot methods and IMP), and analyses the zoo with quick settings. Shared by the end-to-end tests
(tests/test_byo.py) and the browser tests; not a test module itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pruneviz.data import Dataset, load_csv, load_image_folder
from pruneviz.study import StudySettings, analyse_zoo
from pruneviz.testing.models import TabularNet, TinyEncoder, VisionResNet, token_dataset
from pruneviz.train import TrainConfig, fit
from pruneviz.zoo import Zoo, prune_population

FINETUNE = TrainConfig(epochs=1, batch_size=64, lr=1e-3)


def _import_and_study(zoo: Zoo, data: Dataset, make, factory: str, options: dict, config: TrainConfig) -> Zoo:
    splits = data.split(seed=0)  # the split Zoo.add_model makes (split_seed=0, default fractions)
    for seed in (0, 1):
        model = make(seed)
        fit(model, splits.train, config=config, seed=seed, progress=False)
        zoo.add_model(model, data, factory=factory, options=options, seed=seed, train_config=config)
    prune_population(
        zoo, methods=["magnitude", "lamp"], sparsities=[0.5, 0.8], finetune=FINETUNE, progress=False
    )
    prune_population(
        zoo,
        methods=["magnitude"],
        sparsities=[0.8],
        schedule="imp",
        rounds=2,
        finetune=FINETUNE,
        progress=False,
    )
    analyse_zoo(zoo, settings=StudySettings.quick(), progress=False)
    return zoo


def text_study(root: Path) -> Zoo:
    """A BERT-style encoder (dict inputs, ``.logits`` output) on a padded token task."""
    data = token_dataset(n=300, length=12, vocab=30)
    options = {"vocab": 30, "dim": 16, "num_classes": 2}
    return _import_and_study(
        Zoo.create(root / "text"),
        data,
        lambda seed: TinyEncoder(**options, seed=seed),
        "pruneviz.testing.models:TinyEncoder",
        options,
        TrainConfig(epochs=6, batch_size=64, lr=3e-3),
    )


def tabular_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A loan-style table: numeric and categorical features, missing values, two sensitive columns."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    region = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2])
    income = rng.normal(50, 15, n) + np.where(region == "north", 5, 0)
    debt = rng.gamma(2.0, 10.0, n)
    housing = rng.choice(["rent", "own", "family"], n)
    score = 0.08 * income - 0.06 * debt + np.where(housing == "own", 1.0, 0.0) + rng.normal(0, 1, n)
    frame = pd.DataFrame(
        {
            "income": income.round(1),
            "debt": debt.round(1),
            "housing": housing,
            "age_band": rng.choice(["<30", "30-50", ">50"], n),
            "sex": sex,
            "region": region,
            "approved": np.where(score > np.median(score), "yes", "no"),
        }
    )
    frame.loc[rng.choice(n, 25, replace=False), "income"] = np.nan
    frame.loc[rng.choice(n, 15, replace=False), "housing"] = None
    return frame


def write_tabular_csv(path: Path, n: int = 400) -> Path:
    tabular_frame(n).to_csv(path, index=False)
    return path


def image_folder(
    root: Path, *, per_class: int = 40, classes: tuple[str, ...] = ("cat", "dog", "ship")
) -> Path:
    """A CIFAR-shaped ImageFolder (``root/<class>/<n>.png``, 32×32 RGB) of learnable synthetic images:
    each class has its own colour and stripe direction, with noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"cat": (200, 80, 60), "dog": (60, 160, 90), "ship": (70, 90, 210)}
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:32, 0:32]
        stripes = np.sin((xx if k % 2 else yy) / (2.0 + k)) * 40
        for i in range(per_class):
            base = np.array(colours.get(name, (128, 128, 128)), dtype=float)[None, None, :]
            img = base + stripes[..., None] + rng.normal(0, 25, (32, 32, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(folder / f"{i:03d}.png")
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.png"))
    cameras = np.where(rng.random(len(files)) < 0.3, "phone", "dslr")
    pd.DataFrame({"file": files, "camera": cameras}).to_csv(root / "metadata.csv", index=False)
    return root


def image_study(root: Path) -> Zoo:
    """A torchvision-style ResNet on a CIFAR-shaped image folder with camera metadata."""
    folder = image_folder(root / "images")
    data = load_image_folder(folder, groups=folder / "metadata.csv", name="pets")
    options = {"num_classes": data.num_classes, "widths": [8, 16]}
    return _import_and_study(
        Zoo.create(root / "image"),
        data,
        lambda seed: VisionResNet(num_classes=data.num_classes, widths=(8, 16), seed=seed),
        "pruneviz.testing.models:VisionResNet",
        options,
        TrainConfig(epochs=3, batch_size=32, lr=3e-3),
    )


def tabular_study(root: Path) -> Zoo:
    """A batch-normalised MLP returning a dict, on a CSV with categoricals, missing values and two
    sensitive columns."""
    path = write_tabular_csv(root / "loans.csv", n=900)  # test cells of sex × region hold 30 or more
    data = load_csv(path, target="approved", groups=["sex", "region"])
    options = {"features": int(data.info.input_shape[0]), "num_classes": data.num_classes}
    return _import_and_study(
        Zoo.create(root / "tabular"),
        data,
        lambda seed: TabularNet(**options, seed=seed),
        "pruneviz.testing.models:TabularNet",
        options,
        TrainConfig(epochs=10, batch_size=64, lr=3e-3),
    )


STUDIES = {"text": text_study, "tabular": tabular_study, "image": image_study}
