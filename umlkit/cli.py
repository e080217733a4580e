"""The ``umlkit`` command: ``synth``, ``preprocess``, ``train``, ``evaluate``, ``bench``, ``figures``.

Each subcommand is a thin wrapper around a library function, so everything it does can also be done
from a notebook. Errors a user can fix (a missing folder, a bad option) are printed as one line
``umlkit <command>: <message>`` with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_synth(args: argparse.Namespace) -> None:
    from umlkit.data import make_synthetic

    root = make_synthetic(
        args.root,
        kind=args.kind,
        n=args.n,
        size=args.size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"{args.kind} dataset ready in {root}")


def _cmd_preprocess(args: argparse.Namespace) -> None:
    from umlkit.data import preprocess_ispy1

    table = preprocess_ispy1(args.root, n_slices=args.n_slices, cache_dir=args.cache_dir)
    print(f"{len(table)} I-SPY1 cases preprocessed")


def _train_config(args: argparse.Namespace):
    from umlkit.train import TrainConfig

    options = {}
    if args.no_navigator:
        options["navigator"] = False
    if args.no_instructor:
        options["instructor"] = False
    if args.softmax:
        options["head"] = "softmax"
    return TrainConfig(
        model=args.model,
        model_options=options,
        width=args.width,
        dataset=args.dataset,
        data_root=str(args.data_root),
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=args.augment,
        seed=args.seed,
        device=args.device,
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from umlkit.train import train

    result = train(_train_config(args), output_dir=args.output_dir, resume=args.resume)
    print(result.history.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"best epoch {result.best_epoch} (score {result.best_score:.4f}); in {args.output_dir}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from umlkit.data import load_dataset
    from umlkit.evaluate import evaluate
    from umlkit.train import load_model

    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} not found")
    model = load_model(args.checkpoint, device=args.device or "cpu")
    dataset = load_dataset(args.dataset, args.data_root, split=args.split, size=args.image_size)
    result = evaluate(model, dataset, device=args.device, progress=True, keep_maps=0)
    for name, value in result.summary.items():
        print(f"{name:>24s}  {value:.4f}")
    if args.output:
        result.table.to_csv(args.output, index=False)
        print(f"per-image table written to {args.output}")


def _cmd_bench(args: argparse.Namespace) -> None:
    if args.what in ("all", "models"):
        from umlkit.benchmarks.models import main as bench_models

        print("== training step and inference: UML vs the multitask baseline ==")
        bench_models(["--width", str(args.width), "--image-size", str(args.image_size)])
    if args.what in ("all", "metrics"):
        from umlkit.benchmarks.metrics import main as bench_metrics

        print("== streaming pixel calibration ==")
        bench_metrics(["--n-pixels", str(args.n_pixels)])


def _cmd_figures(args: argparse.Namespace) -> None:
    from umlkit.runner import parse_overrides, run_notebooks

    only = args.only.split(",") if args.only else None
    table = run_notebooks(args.profile, only=only, overrides=parse_overrides(args.param))
    print(table.drop(columns="error").to_string(index=False))
    failed = table[table.status != "ok"]
    for row in failed.itertuples():
        print(f"FAILED {row.notebook}: {row.error}", file=sys.stderr)
    if len(failed):
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``umlkit`` command (exposed for the tests and ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="umlkit", description="Uncertainty-informed mutual learning: data, training, figures."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic dataset in a real dataset's layout")
    synth.add_argument("root", type=Path, help="folder to write (created)")
    synth.add_argument("--kind", default="derm", help="derm (ISIC 2017), fundus (REFUGE) or ood")
    synth.add_argument("--n", type=int, default=1000, help="number of images")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--overwrite", action="store_true", help="regenerate a folder umlkit wrote before"
    )
    synth.set_defaults(func=_cmd_synth)

    preprocess = sub.add_parser("preprocess", help="preprocess and cache I-SPY1 NIfTI volumes")
    preprocess.add_argument(
        "root", type=Path, help="the I-SPY1 folder (ISPY_<id>/..., outcome xlsx)"
    )
    preprocess.add_argument(
        "--n-slices", type=int, default=10, help="slices around the largest tumour"
    )
    preprocess.add_argument("--cache-dir", type=Path, default=None)
    preprocess.set_defaults(func=_cmd_preprocess)

    for name, helptext in (("train", "train a model"), ("evaluate", "evaluate a checkpoint")):
        cmd = sub.add_parser(name, help=helptext)
        if name == "evaluate":
            cmd.add_argument("checkpoint", type=Path, help="a best.pt / last.pt written by train")
            cmd.add_argument("--split", default="test")
            cmd.add_argument("--output", type=Path, help="write the per-image table as CSV")
        cmd.add_argument("--data-root", type=Path, required=True, help="the dataset folder")
        cmd.add_argument("--dataset", default="isic2017", help="isic2017, refuge, ispy1, folder")
        cmd.add_argument("--image-size", type=int, default=64)
        cmd.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
        if name == "train":
            cmd.add_argument("--output-dir", type=Path, required=True, help="checkpoints, history")
            cmd.add_argument(
                "--model", default="uml", help="uml, uml2024, unet, classifier, multitask"
            )
            cmd.add_argument("--width", type=int, default=16)
            cmd.add_argument("--epochs", type=int, default=12)
            cmd.add_argument("--batch-size", type=int, default=16)
            cmd.add_argument("--lr", type=float, default=1e-3)
            cmd.add_argument("--seed", type=int, default=0)
            cmd.add_argument(
                "--augment",
                default="none",
                help="none, flip (random flips) or dihedral (flips and quarter turns) per image; "
                "use flip where a turn changes the label (REFUGE's vertical cup-to-disc ratio)",
            )
            cmd.add_argument(
                "--resume", action="store_true", help="continue from output-dir/last.pt"
            )
            cmd.add_argument("--no-navigator", action="store_true", help="ablation")
            cmd.add_argument("--no-instructor", action="store_true", help="ablation")
            cmd.add_argument("--softmax", action="store_true", help="softmax heads (ablation)")
        cmd.set_defaults(func=_cmd_train if name == "train" else _cmd_evaluate)

    bench = sub.add_parser("bench", help="speed and memory benchmarks (prints tables)")
    bench.add_argument("what", nargs="?", default="all", choices=("all", "models", "metrics"))
    bench.add_argument("--width", type=int, default=16)
    bench.add_argument("--image-size", type=int, default=64)
    bench.add_argument("--n-pixels", type=float, default=1e8)
    bench.set_defaults(func=_cmd_bench)

    figures = sub.add_parser("figures", help="run the notebooks with papermill, write figures/")
    figures.add_argument("--profile", default="default", help="smoke, default or paper")
    figures.add_argument("--only", help="comma-separated notebook numbers, e.g. 05,07")
    figures.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="override one notebook parameter (value read as YAML); repeatable",
    )
    figures.set_defaults(func=_cmd_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``umlkit`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
        print(f"umlkit {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
