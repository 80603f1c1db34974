"""The ``pruneviz`` command. It parses arguments and calls the library; it holds no logic of its own."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pruneviz._version import __version__
from pruneviz.exceptions import PrunevizError

DEFAULT_DEMO_ZOO = Path(os.environ.get("PRUNEVIZ_DEMO_ZOO", "pruneviz-demo-zoo"))


def format_table(frame: pd.DataFrame) -> str:
    """Render a frame as a plain aligned table for the terminal (floats to 4 significant digits)."""
    if frame.empty:
        return "(no runs)"
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    shown = shown.astype(object).where(shown.notna(), "")
    return shown.to_string(index=False)


def _zoo_build(args: argparse.Namespace) -> int:
    from pruneviz.data import load_dataset
    from pruneviz.train import TrainConfig
    from pruneviz.zoo import Zoo, build_dense_population

    options: dict[str, object] = {}
    if args.data_root is not None:
        options["root"] = args.data_root
    if args.dataset == "csv":
        options.update(path=args.csv, target=args.target, groups=tuple(args.groups or ()))
    dataset = load_dataset(args.dataset, **options)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    zoo = Zoo.create(args.out, exist_ok=True)
    start = time.perf_counter()
    table = build_dense_population(
        zoo,
        dataset,
        arch=args.arch,
        seeds=args.seeds,
        config=config,
        split_seed=args.split_seed,
        progress=not args.quiet,
    )
    print(format_table(table))
    print(f"\n{len(table)} run(s) in {zoo.path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _zoo_prune(args: argparse.Namespace) -> int:
    from pruneviz.train import TrainConfig
    from pruneviz.zoo import Zoo, prune_population

    zoo = Zoo(args.zoo)
    finetune = (
        None if args.finetune_epochs == 0 else TrainConfig(epochs=args.finetune_epochs, lr=args.finetune_lr)
    )
    start = time.perf_counter()
    table = prune_population(
        zoo,
        methods=args.methods,
        sparsities=args.sparsities,
        structure=args.structure,
        allocation=args.allocation,
        finetune=finetune,
        exclude=args.exclude or (),
        calibration_size=args.calibration_size,
        seed=args.seed,
        schedule=args.schedule,
        rounds=args.rounds,
        rewind_step=args.rewind_step,
        updates=args.updates,
        progress=not args.quiet,
    )
    print(format_table(table))
    print(f"\n{len(table)} pruned run(s) in {zoo.path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _zoo_import(args: argparse.Namespace) -> int:
    from pruneviz.zoo import Zoo, import_weights
    from pruneviz.zoo.imports import dataset_from_argument, json_options

    where = "pruneviz zoo import"
    options = json_options(args.options, "--options", where)
    dataset = dataset_from_argument(args.data, json_options(args.data_options, "--data-options", where))
    zoo = Zoo.create(args.zoo, exist_ok=True)
    run = import_weights(
        zoo,
        args.weights,
        dataset,
        factory=args.factory,
        options=options,
        seed=args.seed,
        split_seed=args.split_seed,
        evaluate=not args.no_evaluate,
    )
    summary = zoo.summary()
    print(format_table(summary[summary["run"] == run]))
    print(f"\nimported as run {run} in {zoo.path}")
    return 0


def _zoo_ls(args: argparse.Namespace) -> int:
    from pruneviz.zoo import Zoo

    zoo = Zoo(args.zoo)
    print(format_table(zoo.summary()))
    return 0


def _zoo_verify(args: argparse.Namespace) -> int:
    from pruneviz.exceptions import ZooSchemaError
    from pruneviz.zoo import Zoo

    try:
        problems = Zoo(args.zoo).verify()
    except ZooSchemaError:
        raise
    except PrunevizError as exc:  # the index itself cannot be read: that is the one problem to report
        problems = pd.DataFrame(
            [{"kind": "index", "name": "zoo.sqlite", "path": str(args.zoo), "problem": str(exc), "fix": ""}]
        )
    if problems.empty:
        print(f"{args.zoo}: no problems found")
        return 0
    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        print(problems.to_string(index=False))
    print(f"\n{len(problems)} problem(s) in {args.zoo}", file=sys.stderr)
    return 1


def _zoo_repair(args: argparse.Namespace) -> int:
    from pruneviz._validation import fail
    from pruneviz.zoo import Zoo

    if not args.drop_cache:
        fail(
            "--drop-cache",
            "pruneviz zoo repair",
            "given (the one repair there is)",
            None,
            got="no repair",
            fix=f"run `pruneviz zoo repair {args.zoo} --drop-cache`; damaged runs are rebuilt, not repaired.",
        )
    dropped = Zoo(args.zoo).drop_cache()
    print(f"dropped {dropped} cache entr{'y' if dropped == 1 else 'ies'} from {args.zoo}")
    return 0


def _zoo_analyse(args: argparse.Namespace) -> int:
    from pruneviz.study import StudySettings, analyse_zoo
    from pruneviz.zoo import Zoo

    zoo = Zoo(args.zoo)
    settings = StudySettings.quick() if args.quick else StudySettings()
    start = time.perf_counter()
    table = analyse_zoo(zoo, steps=args.steps, settings=settings, progress=not args.quiet)
    print(
        f"\n{int(table['items'].sum())} analyses cached in {zoo.path} ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pruneviz.app import serve
    from pruneviz.zoo import Zoo

    Zoo(args.zoo)  # a missing or foreign folder is refused before the server starts
    print(f"pruneviz app of {args.zoo} at http://{args.address}:{args.port}/ (Ctrl-C stops it)", flush=True)
    serve(
        args.zoo,
        address=args.address,
        port=args.port,
        password_file=args.password_file,
        insecure=args.insecure,
        show=args.show,
    )
    return 0


def _audit(args: argparse.Namespace) -> int:
    from pruneviz.views.report import write_audit_report

    choices = {k: getattr(args, k) for k in ("group", "method", "sparsity") if getattr(args, k) is not None}
    path = write_audit_report(args.zoo, args.out, **choices)
    print(f"audit report written to {path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pruneviz.sweeps import load_spec, run_sweep

    spec = load_spec(args.spec)
    start = time.perf_counter()
    table = run_sweep(
        spec,
        args.zoo,
        executor=args.executor or ("dask" if args.scheduler else "processes"),
        workers=args.workers,
        scheduler=args.scheduler,
        retries=args.retries,
        timeout=args.timeout,
        progress=not args.quiet,
    )
    counts = table["status"].value_counts()
    if not args.quiet:
        print(format_table(table[["run", "kind", "status", "attempts"]]))
    print(
        f"\n{len(table)} task(s) of {args.spec.name} in {args.zoo}: {counts.get('stored', 0)} stored, "
        f"{counts.get('skipped', 0)} already there, {counts.get('failed', 0)} failed "
        f"({time.perf_counter() - start:.1f} s)"
    )
    failed = table[table["status"] == "failed"]
    for row in failed.itertuples():
        print(f"  failed {row.run}: {row.error}", file=sys.stderr)
    return 1 if len(failed) else 0


def _demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from pruneviz.sweeps import demo_spec_paths, load_spec, run_sweep
    from pruneviz.zoo import Zoo
    from pruneviz.zoo.store import population_table

    start = time.perf_counter()
    # the demo zoo is the sweep of the shipped specs (digits; German Credit), in this process
    table = pd.concat(
        [
            run_sweep(load_spec(path), args.zoo, executor="inprocess", progress=not args.quiet)
            for path in demo_spec_paths()
        ],
        ignore_index=True,
    )
    failed = table[table["status"] == "failed"]
    if len(failed):
        print(
            f"pruneviz: error: {len(failed)} demo run(s) failed, e.g. {failed.error.iloc[0]}", file=sys.stderr
        )
        return 1
    zoo = Zoo(args.zoo)
    runs = zoo.runs()
    print(
        format_table(
            runs[runs.kind == "dense"][["run", "arch", "dataset", "seed", "params", "test_accuracy"]]
        )
    )
    for dataset, part in runs.groupby("dataset", sort=True):
        table = population_table(part)
        wide = table.pivot_table(
            index=["method", "structure"], columns="sparsity_target", values="mean", sort=False
        )
        wide.columns = [f"s={c:g}" for c in wide.columns]
        print(
            f"\n{dataset}: test accuracy, mean over {part.seed.nunique()} seeds "
            f"({len(part)} runs; `pruneviz zoo ls` lists each):"
        )
        print(format_table(wide.reset_index()))
    print(f"\nDemo zoo at {zoo.path} ready in {time.perf_counter() - start:.1f} s.")
    print(
        "The notebooks (notebooks/) tell its stories in JupyterLab: `make lab`; with "
        f"PRUNEVIZ_NOTEBOOK_ZOO={zoo.path} they reuse this zoo."
    )
    if args.serve and sys.stdin.isatty():
        from pruneviz.app import serve

        print(f"pruneviz app at http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
        serve(zoo.path, port=args.port)
    elif args.serve:  # a script or CI: building was the job, do not block on a server
        print(f"No terminal attached, so not serving. Serve with: pruneviz serve --zoo {zoo.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pruneviz",
        description="Inspect pruned neural networks: what pruning changed, for whom, and why.",
    )
    parser.add_argument("--version", action="version", version=f"pruneviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="build (or reuse) the embedded default zoo and show it")
    demo.add_argument("--zoo", type=Path, default=DEFAULT_DEMO_ZOO, help="where the demo zoo lives")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--serve", action="store_true", help="then serve the app on the demo zoo (when run from a terminal)"
    )
    demo.add_argument("--port", type=int, default=5006, help="port of the app (with --serve)")
    demo.set_defaults(func=_demo)
    sweep = sub.add_parser(
        "sweep", help="run a sweep spec (TOML) into a zoo, locally or on a Dask cluster (resumes)"
    )
    sweep.add_argument("spec", type=Path, help="sweep spec (TOML); see pruneviz/sweeps/demo.toml")
    sweep.add_argument("--zoo", type=Path, required=True, help="zoo folder (created if new)")
    sweep.add_argument(
        "--executor",
        choices=["inprocess", "processes", "dask"],
        default=None,
        help="where tasks run (default: processes, or dask with --scheduler)",
    )
    sweep.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    sweep.add_argument("--workers", type=int, default=None, help="local processes (default: the cores)")
    sweep.add_argument("--retries", type=int, default=2, help="retries of a failed task (default 2)")
    sweep.add_argument("--timeout", type=float, default=10.0, help="seconds to reach the scheduler")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    sweep.set_defaults(func=_sweep)
    serve = sub.add_parser("serve", help="serve the web app of a zoo (127.0.0.1 unless authenticated)")
    serve.add_argument("--zoo", type=Path, required=True, help="zoo folder")
    serve.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    serve.add_argument(
        "--password-file", type=Path, default=None, help="basic-auth password (else $PRUNEVIZ_PASSWORD)"
    )
    serve.add_argument("--insecure", action="store_true", help="allow another address without a password")
    serve.add_argument("--show", action="store_true", help="open a browser")
    serve.set_defaults(func=_serve)
    audit = sub.add_parser("audit", help="write a standalone HTML audit report of a zoo")
    audit.add_argument("--zoo", type=Path, required=True, help="zoo folder")
    audit.add_argument(
        "--out", type=Path, required=True, help="report file (.html, or .pdf printed by Chromium)"
    )
    audit.add_argument(
        "--group",
        default=None,
        help='group attribute, or an intersection "a × b" (default: the first declared group column)',
    )
    audit.add_argument("--method", default=None, help="pruning method of the figures")
    audit.add_argument("--sparsity", type=float, default=None, help="target sparsity of the figures")
    audit.set_defaults(func=_audit)

    zoo = sub.add_parser("zoo", help="build and list zoos (stores of runs)")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    build = zsub.add_parser("build", help="train a dense population into a zoo (resumes if interrupted)")
    build.add_argument("--out", type=Path, required=True, help="zoo folder (created if new)")
    build.add_argument(
        "--dataset", default="digits", help="digits, mnist1d, mnist, fashion-mnist, kmnist, csv"
    )
    build.add_argument("--data-root", type=Path, default=None, help="folder of IDX files (mnist and kin)")
    build.add_argument("--csv", type=Path, default=None, help="CSV file (with --dataset csv)")
    build.add_argument("--target", default=None, help="target column of the CSV")
    build.add_argument("--groups", nargs="*", default=None, help="group columns of the CSV")
    build.add_argument("--arch", default="cnn", help="mlp, cnn, resnet20")
    build.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    build.add_argument("--epochs", type=int, default=30)
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--lr", type=float, default=3e-3)
    build.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_zoo_build)
    prune = zsub.add_parser("prune", help="add pruned runs of every dense parent (resumes if interrupted)")
    prune.add_argument("zoo", type=Path, help="zoo folder with dense runs")
    prune.add_argument(
        "--methods", nargs="+", required=True, help="e.g. global_magnitude lamp snip channel_l1"
    )
    prune.add_argument("--sparsities", nargs="+", type=float, required=True, help="e.g. 0.5 0.9")
    prune.add_argument("--structure", default="unstructured", help="unstructured, N:M (2:4), block:HxW")
    prune.add_argument("--allocation", default=None, help="uniform, global, global_floor, erk, per_row")
    prune.add_argument("--exclude", nargs="*", default=None, help="layer names to leave dense")
    prune.add_argument("--finetune-epochs", type=int, default=5, help="0 for none")
    prune.add_argument("--finetune-lr", type=float, default=1e-3)
    prune.add_argument("--calibration-size", type=int, default=512)
    prune.add_argument("--seed", type=int, default=0)
    prune.add_argument(
        "--schedule", default="one_shot", help="one_shot, imp (lottery tickets) or gradual (cubic)"
    )
    prune.add_argument("--rounds", type=int, default=3, help="IMP rounds (with --schedule imp)")
    prune.add_argument("--rewind-step", type=int, default=0, help="IMP rewinding step (0: initialisation)")
    prune.add_argument("--updates", type=int, default=10, help="mask updates (with --schedule gradual)")
    prune.add_argument("--quiet", action="store_true", help="no progress bars")
    prune.set_defaults(func=_zoo_prune)
    analyse = zsub.add_parser(
        "analyse", help="run every analysis on a zoo and cache the results (resumes if interrupted)"
    )
    analyse.add_argument("zoo", type=Path, help="zoo folder")
    analyse.add_argument("--steps", nargs="+", default=None, metavar="STEP", help="only these steps")
    analyse.add_argument("--quick", action="store_true", help="small settings (fewer samples, severities)")
    analyse.add_argument("--quiet", action="store_true", help="no progress output")
    analyse.set_defaults(func=_zoo_analyse)
    imp = zsub.add_parser(
        "import", help="store your own trained model (safetensors state dict) as a dense run of a zoo"
    )
    imp.add_argument("--zoo", type=Path, required=True, help="zoo folder (created if new)")
    imp.add_argument(
        "--factory",
        required=True,
        help="'package.module:callable' that builds the model (an nn.Module subclass, or a function of "
        "a trusted package: see $PRUNEVIZ_TRUSTED_MODULES)",
    )
    imp.add_argument("--options", default=None, help="JSON object of the factory's keyword options")
    imp.add_argument("--weights", type=Path, required=True, help="the model's state dict (.safetensors)")
    imp.add_argument("--data", required=True, help="dataset name (digits, mnist, ...) or a .csv path")
    imp.add_argument("--data-options", default=None, help="JSON object of the dataset's options")
    imp.add_argument("--seed", type=int, default=0, help="seed recorded for the run (default 0)")
    imp.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    imp.add_argument("--no-evaluate", action="store_true", help="store no per-sample outputs")
    imp.set_defaults(func=_zoo_import)
    ls = zsub.add_parser("ls", help="list the runs of a zoo")
    ls.add_argument("zoo", type=Path, help="zoo folder")
    ls.set_defaults(func=_zoo_ls)
    verify = zsub.add_parser(
        "verify", help="check every file of a zoo (hashes, readability, masks); exit code 1 on problems"
    )
    verify.add_argument("zoo", type=Path, help="zoo folder")
    verify.set_defaults(func=_zoo_verify)
    repair = zsub.add_parser("repair", help="repair what can be repaired in a zoo (the analysis cache)")
    repair.add_argument("zoo", type=Path, help="zoo folder")
    repair.add_argument(
        "--drop-cache", action="store_true", help="remove every cached analysis result (they are recomputed)"
    )
    repair.set_defaults(func=_zoo_repair)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PrunevizError as exc:
        print(f"pruneviz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pruneviz: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
