"""Your own model and data, end to end: import, prune a population, ``zoo analyse --quick``, peak memory.

Four studies, each in a child process of its own so that its peak RSS is its alone:

- ``image``: a torchvision-style ResNet (:class:`~pruneviz.testing.models.VisionResNet`) on 50,000
  CIFAR-shaped images written as CIFAR-10's five python training batches (pickle protocol 2, dicts of
  ``b"data"`` uint8 (10000, 3072) and ``b"labels"``, plus ``batches.meta``), read by ``load_cifar10``;
- ``mnist``: a single-channel ResNet on 60,000 MNIST-shaped 28×28 images written as the IDX training
  pair (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``), read by ``load_mnist_format``;
- ``tabular``: a batch-normalised MLP returning a dict (:class:`~pruneviz.testing.models.TabularNet`)
  on a 50,000-row loan CSV with numeric and categorical columns, missing values in both and two
  sensitive columns (``sex``, ``region``), read by ``load_csv``;
- ``text``: a BERT-style encoder (:class:`~pruneviz.testing.models.TinyEncoder`, dict inputs,
  ``.logits`` output) on 20,000 padded sequences of 64 token ids with attention masks.

The data are synthetic but real-sized and learnable (class-dependent colour, stripes, bars or tokens,
plus noise), so the accuracies mean something. The parent writes the files; each child then does what
a user does: reads them with pruneviz's loader, trains the model with a plain PyTorch loop *outside*
pruneviz (one epoch of the training part, capped at ``TRAIN_STEPS`` steps), imports it with
``Zoo.add_model(model, data, factory=..., options=...)``, prunes a population
(``prune_population(zoo, methods=["magnitude", "lamp"], sparsities=[0.8], finetune=TrainConfig(epochs=1))``:
one dense parent, two pruned runs, each fine-tuned one epoch on the full training part) and runs every
analysis with quick settings (``analyse_zoo(zoo, settings=StudySettings.quick())``, what
``pruneviz zoo analyse --quick`` does). The zoo holds and analyses the full dataset.

Figures per study: ``<study>_rss_mb`` (the child's peak RSS, ``ru_maxrss`` from ``wait4``),
``<study>_wall_s`` (the child's whole life, interpreter start included), ``<study>_load_s`` (reading the
files), ``<study>_train_s`` (the user's training), ``<study>_import_s`` (``Zoo.add_model``),
``<study>_prune_s``, ``<study>_analyse_s``, ``<study>_samples``, ``<study>_runs``, the dense and pruned
test accuracies, the child's VmHWM after each phase (``<study>_hwm_<phase>_mb``, where the peak
happened) and ``target_rss_<study>`` (peak RSS ≤ 4096 MB). ``--quick`` uses a tenth of the sizes or less.
There is no peer: the table shows the figures and the target.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, write_json

STUDIES = ("image", "mnist", "tabular", "text")
TARGET_RSS_MB = 4096
TRAIN_STEPS = 300  # the user's training: one epoch of the training part, at most this many steps
METHODS = ("magnitude", "lamp")
SPARSITIES = (0.8,)

# full size, then --quick
SIZES = {
    "image": (50_000, 2_000),
    "mnist": (60_000, 3_000),
    "tabular": (50_000, 5_000),
    "text": (20_000, 2_000),
}
TEXT_LENGTH = (64, 32)
TEXT_VOCAB = 1000


# --- the user's files (written by the parent) ------------------------------------------------------


def write_cifar_batches(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` learnable 32×32 RGB images as CIFAR-10's python training batches (10,000 per file).

    Class ``k`` has its own colour and a stripe pattern of its own direction and frequency; each image
    gets a random stripe phase, a random brightness shift and Gaussian noise, and one in five the colour
    of another class, so the colour alone does not give the class away."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = rng.uniform(40, 215, size=(10, 3))
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    freqs = 0.35 + 0.05 * np.arange(10)
    per_file = 10_000
    for b, start in enumerate(range(0, n, per_file), start=1):
        m = min(per_file, n - start)
        labels = rng.integers(0, 10, m)
        colour_of = np.where(rng.random(m) < 0.2, rng.integers(0, 10, m), labels)
        phase = rng.uniform(0, 2 * np.pi, m)[:, None, None]
        proj = np.cos(angles[labels])[:, None, None] * xx + np.sin(angles[labels])[:, None, None] * yy
        stripes = 35 * np.sin(freqs[labels][:, None, None] * proj + phase)  # (m, 32, 32)
        img = palette[colour_of][:, :, None, None] + stripes[:, None] + rng.uniform(-30, 30, (m, 1, 1, 1))
        img += rng.normal(0, 30, img.shape)
        data = np.clip(img, 0, 255).astype(np.uint8).reshape(m, 3072)
        batch = {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": labels.tolist(),
            b"data": data,
            b"filenames": [f"img_{start + i:05d}.png".encode() for i in range(m)],
        }
        with open(folder / f"data_batch_{b}", "wb") as f:
            _Python2Pickler(f, protocol=2).dump(batch)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer")]
    names += [n.encode() for n in ("dog", "frog", "horse", "ship", "truck")]
    meta = {b"label_names": names, b"num_cases_per_batch": per_file, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        _Python2Pickler(f, protocol=2).dump(meta)
    return folder


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote CIFAR-10's files (protocol 2): a ``bytes`` value (Python 2's
    ``str``, the array's raw data included) is a BINSTRING opcode. Python 3's own protocol-2 pickler
    writes ``bytes`` as a call of ``_codecs.encode`` instead, which ``load_cifar10``'s unpickler refuses
    (it allows no global but NumPy's array constructors)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little", signed=True) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist_idx(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` learnable 28×28 greyscale images as MNIST's IDX training pair: class ``k`` is a bright bar
    at angle ``18° k`` through a jittered centre, of random thickness, on a noisy dark background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    for start in range(0, n, 10_000):
        lab = labels[start : start + 10_000].astype(np.int64)
        m = len(lab)
        angle = lab * np.pi / 10 + rng.normal(0, 0.12, m)
        cy, cx = 13.5 + rng.normal(0, 2, m), 13.5 + rng.normal(0, 2, m)
        dist = np.abs(
            -np.sin(angle)[:, None, None] * (xx - cx[:, None, None])
            + np.cos(angle)[:, None, None] * (yy - cy[:, None, None])
        )
        along = np.hypot(xx - cx[:, None, None], yy - cy[:, None, None])
        width = rng.uniform(1.0, 2.5, m)[:, None, None]
        bar = 230 * np.exp(-((dist / width) ** 2)) * (along < 11)
        img = bar + rng.normal(20, 35, bar.shape)
        images[start : start + m] = np.clip(img, 0, 255).astype(np.uint8)
    _idx(folder / "train-images-idx3-ubyte", images)
    _idx(folder / "train-labels-idx1-ubyte", labels)
    return folder


def write_loans_csv(path: Path, n: int, seed: int = 0) -> Path:
    """A loan table: numeric and categorical features, missing values in both, two sensitive columns."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1])
    income = rng.normal(50, 15, n) + np.where(region == "north", 5, 0)
    debt = rng.gamma(2.0, 10.0, n)
    years = rng.integers(0, 30, n).astype(float)
    housing = rng.choice(["rent", "own", "family"], n)
    purpose = rng.choice(["car", "home", "education", "business", "other"], n)
    score = (
        0.08 * income
        - 0.06 * debt
        + 0.04 * years
        + np.where(housing == "own", 1.0, 0.0)
        + np.where(purpose == "education", 0.5, 0.0)
        + rng.normal(0, 1, n)
    )
    frame = pd.DataFrame(
        {
            "income": income.round(1),
            "debt": debt.round(1),
            "years_employed": years,
            "housing": housing,
            "purpose": purpose,
            "age_band": rng.choice(["<30", "30-50", ">50"], n),
            "sex": sex,
            "region": region,
            "approved": np.where(score > np.median(score), "yes", "no"),
        }
    )
    frame.loc[rng.random(n) < 0.06, "income"] = np.nan
    frame.loc[rng.random(n) < 0.03, "years_employed"] = np.nan
    frame.loc[rng.random(n) < 0.04, "housing"] = None
    frame.loc[rng.random(n) < 0.02, "purpose"] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_files(study: str, root: Path, quick: bool) -> Path:
    n = SIZES[study][quick]
    if study == "image":
        return write_cifar_batches(root / "cifar-10-batches-py", n)
    if study == "mnist":
        return write_mnist_idx(root / "mnist", n)
    if study == "tabular":
        return write_loans_csv(root / "loans.csv", n)
    return root  # text: the token ids are made in the child, as a tokenizer would hand them over


# --- one study (in the child) ---------------------------------------------------------------------


def _hwm_mb() -> float:
    """This process's peak RSS so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _user_training(model, train, steps_cap: int, batch_size: int, lr: float, seed: int) -> int:
    """The user's own loop: Adam, shuffled minibatches, one epoch of ``train`` capped at ``steps_cap``
    steps; returns the steps taken. Written with plain PyTorch, not pruneviz.train."""
    import torch
    from torch.nn import functional as F

    from pruneviz.data import Inputs

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(train))
    x, y = train.x, train.y
    steps = 0
    model.train()
    for start in range(0, len(order), batch_size):
        if steps >= steps_cap:
            break
        idx = order[start : start + batch_size]
        out = model(**{k: v[idx] for k, v in x.items()}) if isinstance(x, Inputs) else model(x[idx])
        logits = out["logits"] if isinstance(out, dict) else getattr(out, "logits", out)
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    return steps


def run_study(study: str, files: Path, zoo_path: Path, quick: bool) -> dict[str, object]:
    from pruneviz.data import load_cifar10, load_csv, load_mnist_format
    from pruneviz.study import StudySettings, analyse_zoo
    from pruneviz.testing.models import TabularNet, TinyEncoder, VisionResNet, token_dataset
    from pruneviz.train import TrainConfig
    from pruneviz.zoo import Zoo, prune_population

    figures: dict[str, object] = {"hwm_start_mb": _hwm_mb()}
    t0 = time.perf_counter()
    if study == "image":
        data = load_cifar10(files, name="cifar_like")
        options = {"num_classes": data.num_classes, "widths": [16, 32]}
        make, factory, lr = VisionResNet, "pruneviz.testing.models:VisionResNet", 3e-3
    elif study == "mnist":
        data = load_mnist_format(files)
        options = {"in_channels": 1, "num_classes": data.num_classes, "widths": [8, 16]}
        make, factory, lr = VisionResNet, "pruneviz.testing.models:VisionResNet", 3e-3
    elif study == "tabular":
        data = load_csv(files, target="approved", groups=["sex", "region"])
        options = {"features": int(data.info.input_shape[0]), "num_classes": data.num_classes}
        make, factory, lr = TabularNet, "pruneviz.testing.models:TabularNet", 3e-3
    else:
        length = TEXT_LENGTH[quick]
        data = token_dataset(n=SIZES["text"][quick], length=length, vocab=TEXT_VOCAB, name="reviews")
        options = {"vocab": TEXT_VOCAB, "dim": 64, "heads": 4, "layers": 2, "max_length": length}
        options["num_classes"] = data.num_classes
        make, factory, lr = TinyEncoder, "pruneviz.testing.models:TinyEncoder", 3e-3
    figures["load_s"] = time.perf_counter() - t0
    figures["hwm_load_mb"] = _hwm_mb()
    figures["samples"] = len(data)

    t = time.perf_counter()
    train = data.split(seed=0).train  # the split Zoo.add_model makes (split_seed=0, default fractions)
    model = make(**options, seed=0)
    figures["train_steps"] = _user_training(model, train, TRAIN_STEPS, 128, lr, seed=0)
    figures["train_samples"] = len(train)
    del train
    figures["train_s"] = time.perf_counter() - t
    figures["hwm_train_mb"] = _hwm_mb()

    t = time.perf_counter()
    zoo = Zoo.create(zoo_path)
    config = TrainConfig(epochs=1, batch_size=128, lr=lr)
    zoo.add_model(model, data, factory=factory, options=options, seed=0, train_config=config)
    figures["import_s"] = time.perf_counter() - t
    figures["hwm_import_mb"] = _hwm_mb()
    del model, data

    t = time.perf_counter()
    finetune = TrainConfig(epochs=1, batch_size=128, lr=lr / 3)
    prune_population(
        zoo, methods=list(METHODS), sparsities=list(SPARSITIES), finetune=finetune, progress=False
    )
    figures["prune_s"] = time.perf_counter() - t
    figures["hwm_prune_mb"] = _hwm_mb()

    t = time.perf_counter()
    report = analyse_zoo(zoo, settings=StudySettings.quick(), progress=False)
    figures["analyse_s"] = time.perf_counter() - t
    figures["hwm_analyse_mb"] = _hwm_mb()
    figures["analyses"] = int(report["items"].sum())
    for _, row in report.iterrows():
        figures[f"analyse_{row['step']}_s"] = float(row["seconds"])

    runs = zoo.runs()
    figures["runs"] = len(runs)
    acc = "test_accuracy" if "test_accuracy" in runs else next(c for c in runs if c.endswith("accuracy"))
    figures["dense_acc"] = float(runs.loc[runs.kind == "dense", acc].iloc[0])
    for method in METHODS:
        chosen = runs[runs.method == method] if "method" in runs else runs.iloc[0:0]
        if len(chosen):
            figures[f"{method}_acc"] = float(chosen[acc].iloc[0])
    figures["accuracy_column"] = acc
    figures["study_s"] = time.perf_counter() - t0
    return figures


# --- the parent -----------------------------------------------------------------------------------


def child(study: str, files: Path, zoo_path: Path, quick: bool, threads: int) -> dict[str, object]:
    """Run one study in a fresh interpreter; its figures, with its wall time and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--study", study, "--files", str(files)]
    cmd += ["--zoo", str(zoo_path), "--out", str(out), "--threads", str(threads)]
    cmd += ["--quick"] if quick else []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    figures: dict[str, object] = {"ok": proc.returncode == 0, "exit": proc.returncode}
    if proc.returncode == 0:
        figures.update(json.loads(out.read_text()))
    out.unlink(missing_ok=True)
    figures["wall_s"] = wall
    figures["rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in about a minute on 2 CPU cores")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as a flat JSON object")
    parser.add_argument("--only", choices=STUDIES, action="append", help="run only these studies")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per study (default 1: on a shared 2-core machine, 2 threads ran the small "
        "convolutions ~10x slower than 1)",
    )
    parser.add_argument("--study", choices=STUDIES, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--zoo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.study:
        figures = run_study(args.study, args.files, args.zoo, args.quick)
        args.out.write_text(json.dumps(figures))
        return

    figures: dict[str, object] = {"target_rss_mb": TARGET_RSS_MB, "train_steps_cap": TRAIN_STEPS}
    figures["torch_threads"] = args.threads
    figures["methods"] = ",".join(METHODS)
    figures["sparsities"] = ",".join(str(s) for s in SPARSITIES)
    rows = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="byo-") as tmp:
        for study in args.only or STUDIES:
            t = time.perf_counter()
            files = write_files(study, Path(tmp) / "data", args.quick)
            figures[f"{study}_write_s"] = time.perf_counter() - t
            print(f"{study}: files written in {figures[f'{study}_write_s']:.1f} s", flush=True)
            got = child(study, files, Path(tmp) / f"zoo-{study}", args.quick, args.threads)
            for key, value in got.items():
                figures[f"{study}_{key}"] = value
            figures[f"target_rss_{study}"] = bool(got["ok"]) and got["rss_mb"] <= TARGET_RSS_MB
            if not got["ok"]:
                failed.append(study)
            rows.append(
                {
                    "study": study,
                    "samples": got.get("samples", "—"),
                    "runs": got.get("runs", "—"),
                    "peak RSS MB": got["rss_mb"],
                    "target MB": f"≤ {TARGET_RSS_MB}",
                    "met": figures[f"target_rss_{study}"],
                    "wall s": got["wall_s"],
                    "load s": got.get("load_s", "—"),
                    "train s": got.get("train_s", "—"),
                    "import s": got.get("import_s", "—"),
                    "prune s": got.get("prune_s", "—"),
                    "analyse s": got.get("analyse_s", "—"),
                    "dense acc": got.get("dense_acc", "—"),
                    "lamp acc": got.get("lamp_acc", "—"),
                }
            )
            print(f"{study}: done in {got['wall_s']:.1f} s, peak RSS {got['rss_mb']:.0f} MB", flush=True)
            for f in (Path(tmp) / "data").glob("*"):  # free the disk before the next study
                if f.is_dir():
                    import shutil

                    shutil.rmtree(f)
                else:
                    f.unlink()
    print()
    print(markdown(rows))
    write_json(args.json, figures, args.quick)
    if failed:
        raise SystemExit(f"study {', '.join(failed)} could not run (see its traceback above)")


if __name__ == "__main__":
    main()
