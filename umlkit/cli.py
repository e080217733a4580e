"""The ``umlkit`` command: ``synth``, ``preprocess``, ``train``, ``evaluate``, ``bench``, ``figures``.

Each subcommand is a thin wrapper around a library function, so everything it does can also be done
from a notebook. Errors a user can fix (a missing folder, a bad option) are printed as one line
``umlkit <command>: <message>`` with exit status 2, not as a traceback; they name the command's
flags, never a Python argument the command line has no way to set.

Every command checks its arguments before it writes or computes anything heavy:

* ``synth`` refuses an ``--n`` too small to give each split of the dataset an image.
* ``train`` refuses an ``--output-dir`` that holds a run (``last.pt``, ``best.pt``,
  ``history.csv`` or ``config.json``) unless ``--resume`` continues it or ``--overwrite``
  replaces it (and says so); ``--resume`` on a folder with no ``last.pt`` starts afresh, but
  not over trained weights (``best.pt``, ``half.pt``), which only ``--overwrite`` replaces.
  It checks ``--device``, ``--image-size`` against the network's downsampling factor, the data
  and, when resuming, the checkpoint and its data before it writes anything, so a start that
  fails leaves the folder as it was.
* ``train`` holds ``--output-dir`` for its whole life: a second ``train`` (``--resume`` and
  ``--overwrite`` included) into a folder in use is refused at once, naming the process that
  holds it. The folder is created and written before the data are read, so a folder that
  cannot be written is named first; a full disk, a missing permission or a read-only file
  system, then or later (``synth`` too), ends in one line naming the path and the cause.
* ``train`` stops a run that diverges (a loss term NaN, inf or below 0, a weight NaN or inf) with
  one line naming the epoch, step and learning rate and suggesting a lower ``--lr``; no
  checkpoint of the broken epoch is written, and ``evaluate`` refuses a checkpoint holding NaN or
  inf, naming the tensor.
* ``train --profile NAME`` takes every training setting from the profile's ``train`` settings
  (``paper``: the official configuration of ``--dataset``); a flag given on the command line
  wins, and a profile setting that is no training setting is refused by name.
* ``evaluate`` reads the image size and dataset kind the checkpoint was trained with unless
  ``--image-size`` / ``--dataset`` say otherwise (it prints which it uses), refuses data whose
  classes are not the checkpoint's, and checks ``--output`` first: a folder receives
  ``<checkpoint name>_<split>.csv``; an existing file is only replaced with ``--overwrite``.
* ``figures`` checks every ``-p`` against the parameters cells of the notebooks it will run
  (name and type) before the first one starts.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path

from umlkit.folders import CannotWriteError, FolderInUseError, as_write_error, folder_lock
from umlkit.profiles import PROFILES, profile_train_values

#: How ``train``'s messages name its arguments on the command line (see umlkit.train.train).
TRAIN_FLAGS = {
    "output_dir": "--output-dir",
    "resume": "--resume",
    "overwrite": "--overwrite",
    "data_root": "--data-root",
    "image_size": "--image-size",
    "device": "--device",
    "lr": "--lr",
}
#: The names the command line accepts, spelled here so that ``umlkit --help`` imports no torch
#: (tests/test_cli.py checks them against the library's own lists): argparse then refuses any
#: other value in one line that lists them, and the help shows them.
DATASETS = ("isic2017", "refuge", "ispy1", "folder")  # umlkit.data.loaders.KINDS
SPLITS = ("train", "val", "test")  # umlkit.data.layouts.SPLITS
MODELS = ("uml", "uml2024", "unet", "classifier", "multitask")  # umlkit.models.MODEL_NAMES
AUGMENTATIONS = ("none", "flip", "dihedral")  # umlkit.data.augment.AUGMENTATIONS
SYNTHETIC_KINDS = ("derm", "fundus", "ood")  # umlkit.data.synthetic.SYNTHETIC_KINDS
#: Python-only suggestions of library messages and what the command line says instead.
_COMMAND_LINE_WORDING = (
    (re.compile(r"pass overwrite=True\b"), "pass --overwrite"),
    (re.compile(r",? or pass on_error=['\"]skip['\"][^\n]*"), "."),
    # the argument, not the name of a field a message lists in quotes ('num_classes')
    (re.compile(r"(?<!['\"])\bnum_classes\b(?!['\"])"), "--num-classes"),
)


def _for_the_command_line(message: str) -> str:
    """``message`` with suggestions of Python arguments replaced by what the command offers."""
    for pattern, replacement in _COMMAND_LINE_WORDING:
        message = pattern.sub(replacement, message)
    return message


def _positive(convert, what: str):
    """An argparse type: ``convert(text)`` if it gives a number > 0 (argparse names the flag)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
        return value

    return parse


_positive_int = _positive(int, "integer")
_positive_float = _positive(float, "number")


def _seed(text: str) -> int:
    """An argparse type: a random seed, an integer from 0 to 2**32 - 1 (what NumPy accepts)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _smallest_synthetic_n(kind: str) -> int:
    """The smallest ``--n`` that gives every split of ``kind``'s default splits an image."""
    from umlkit.data.synthetic import DEFAULT_SPLITS, split_counts

    splits = DEFAULT_SPLITS[kind]
    n = 1
    while not all(
        count >= 1 for count, share in zip(split_counts(n, splits), splits, strict=True) if share
    ):
        n += 1
    return n


def _cmd_synth(args: argparse.Namespace) -> None:
    from umlkit.data import make_synthetic
    from umlkit.data.synthetic import DEFAULT_SPLITS, SYNTHETIC_KINDS, split_counts

    if args.kind in SYNTHETIC_KINDS:
        smallest = _smallest_synthetic_n(args.kind)
        if args.n < smallest:
            splits = DEFAULT_SPLITS[args.kind]
            counts = " / ".join(str(c) for c in split_counts(max(args.n, 0), splits))
            shares = " / ".join(f"{share * 100:.0f}" for share in splits) + " %"
            raise ValueError(
                f"--n {args.n} is too small for a {args.kind} dataset: its train / val / test "
                f"splits ({shares}) would hold {counts} images; --n must be at least {smallest}"
            )
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
    failed = table[table["problem"] != ""]
    print(f"{len(table) - len(failed)} of {len(table)} I-SPY1 cases preprocessed")
    if len(failed):
        # every case with a problem, one line each: a case left out must not pass unnoticed
        cases = "".join(f"\n  {row.case}: {row.problem}" for row in failed.itertuples())
        raise ValueError(f"{len(failed)} case(s) could not be preprocessed:{cases}")


#: ``train``'s values where neither a flag nor ``--profile`` gives one.
TRAIN_DEFAULTS = {
    "dataset": "isic2017",
    "image_size": 64,
    "model": "uml",
    "width": 16,
    "epochs": 12,
    "batch_size": 16,
    "lr": 1e-3,
    "seed": 0,
    "augment": "none",
}


def _train_config(args: argparse.Namespace):
    from umlkit.train import TrainConfig

    dataset = args.dataset or TRAIN_DEFAULTS["dataset"]
    values = dict(TRAIN_DEFAULTS, dataset=dataset)
    if args.profile is not None:
        values.update(profile_train_values(args.profile, dataset))
    # an explicit flag wins over the profile
    values.update(
        {name: getattr(args, name) for name in TRAIN_DEFAULTS if getattr(args, name) is not None}
    )
    options = dict(values.pop("model_options", {}))
    if args.no_navigator:
        options["navigator"] = False
    if args.no_instructor:
        options["instructor"] = False
    if args.softmax:
        options["head"] = "softmax"
    # the schedule's floor may not exceed the rate (the command line has no flag for it)
    values["min_lr"] = min(values.get("min_lr", TrainConfig.min_lr), values["lr"])
    return TrainConfig(
        **values,
        model_options=options,
        data_root=str(args.data_root),
        num_classes=args.num_classes,
        device=args.device,
        compile=args.compile,
    )


def _cmd_train(args: argparse.Namespace) -> None:
    # The folder is held before torch is imported, so that a second command into a folder in
    # use is refused at once; train() holds it again (this process has it already). Under
    # torchrun, train() takes it in the first process.
    launched = "WORLD_SIZE" in os.environ
    lock = (
        nullcontext() if launched else folder_lock(args.output_dir, what="--output-dir", log=print)
    )
    with lock:
        _train_in_held_folder(args)


def _train_in_held_folder(args: argparse.Namespace) -> None:
    from umlkit import distributed
    from umlkit.train import train

    result = train(
        _train_config(args),
        output_dir=args.output_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        argument_names=TRAIN_FLAGS,
    )
    launch = distributed.launch_environment()
    if launch is not None and launch.rank != 0:
        return  # under torchrun the first process reports for all
    print(result.history.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"best epoch {result.best_epoch} (score {result.best_score:.4f}); in {args.output_dir}")


def _evaluation_output(
    output: str | None, checkpoint: Path, split: str, overwrite: bool = False
) -> Path | None:
    """Where ``evaluate --output`` writes, checked before anything is computed.

    A folder (existing, or named with a trailing separator) receives
    ``<checkpoint stem>_<split>.csv``; otherwise the path is the file, whose folder must exist.
    An existing file is refused unless ``overwrite``.
    """
    if output is None:
        return None
    path = Path(output)
    if path.is_dir():
        path = path / f"{checkpoint.stem}_{split}.csv"
    elif output.endswith(("/", os.sep)):
        raise FileNotFoundError(f"--output {output}: no such folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--output {output}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"--output {output}: {path} is a folder")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"--output {output}: {path} exists: --overwrite replaces it, or choose another --output"
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--output {output}: {path} cannot be written (no permission)")
    return path


def _stored_or_given(given, stored, flag: str, default, what: str) -> tuple:
    """The value ``evaluate`` uses for a setting the checkpoint records, and where it came from."""
    if given is not None:
        differs = stored is not None and stored != given
        return given, flag + (f"; the model was trained with {what} {stored}" if differs else "")
    if stored is not None:
        return stored, "the checkpoint's"
    return default, f"the default: the checkpoint does not record it; {flag} sets it"


def _folder(kind: str, trained: dict) -> bool:
    """Whether ``evaluate`` reads a folder dataset whose classes the checkpoint records."""
    return kind == "folder" and isinstance(trained.get("class_names"), list)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from umlkit.checkpoints import check_checkpoint_data, load_checkpoint, model_from_checkpoint
    from umlkit.data import load_dataset
    from umlkit.evaluate import evaluate
    from umlkit.runtime import pick_device
    from umlkit.train import check_image_size

    device = pick_device(args.device, what="--device")
    output = _evaluation_output(args.output, args.checkpoint, args.split, args.overwrite)
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint, args.checkpoint, device="cpu")
    # what the model was trained on: the checkpoint's data record, else its training configuration
    trained = {}
    for key in ("train_config", "data"):
        if isinstance(checkpoint.get(key), dict):
            trained.update(checkpoint[key])
    size, size_source = _stored_or_given(
        args.image_size, trained.get("image_size"), "--image-size", 64, "image size"
    )
    kind, kind_source = _stored_or_given(
        args.dataset, trained.get("dataset"), "--dataset", "isic2017", "dataset"
    )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(
            f"checkpoint {args.checkpoint} records the image size {size!r}, not a positive "
            "integer: give --image-size"
        )
    check_image_size(size, model.config.depth, "--image-size")
    print(f"image size {size} ({size_source}); dataset {kind} ({kind_source})")
    # a folder dataset's classes: as many as the model was trained on (names from the checkpoint)
    stated = {"num_classes": len(trained["class_names"])} if _folder(kind, trained) else {}
    dataset = load_dataset(kind, args.data_root, split=args.split, size=size, **stated)
    check_checkpoint_data(checkpoint, dataset, args.checkpoint)
    result = evaluate(model, dataset, device=device, progress=True, keep_maps=0)
    for name, value in result.summary.items():
        print(f"{name:>24s}  {value:.4f}")
    if output is not None:
        replaced = output.exists()
        result.table.to_csv(output, index=False)
        print(f"per-image table written to {output}" + (" (replaced)" if replaced else ""))


def _cmd_bench(args: argparse.Namespace) -> None:
    if args.what in ("all", "models"):
        from umlkit.benchmarks.models import main as bench_models

        print("== training step and inference: UML vs the multitask baseline ==")
        bench_models(
            [
                *("--width", ",".join(map(str, args.width))),
                *("--paths", ",".join(args.paths)),
                *("--image-size", str(args.image_size)),
            ]
        )
    if args.what in ("all", "metrics"):
        from umlkit.benchmarks.metrics import main as bench_metrics

        print("== streaming pixel calibration ==")
        bench_metrics(["--n-pixels", str(args.n_pixels)])


def _cmd_figures(args: argparse.Namespace) -> None:
    from umlkit.runner import parse_overrides, run_notebooks

    only = None if args.only is None else args.only.split(",")
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
    adders = (_add_synth, _add_preprocess, _add_train, _add_evaluate, _add_bench, _add_figures)
    for add in (*adders, _add_cache):
        add(sub)
    return parser


def _add_synth(sub) -> None:
    synth = sub.add_parser("synth", help="write a synthetic dataset in a real dataset's layout")
    synth.add_argument("root", type=Path, help="folder to write (created)")
    synth.add_argument(
        "--kind",
        choices=SYNTHETIC_KINDS,
        default="derm",
        help="derm (ISIC 2017's layout, the default), fundus (REFUGE's) or ood",
    )
    synth.add_argument("--n", type=int, default=1000, help="number of images (derm, fundus: 6+)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels")
    synth.add_argument("--seed", type=_seed, default=0, help="random seed of the generator (0)")
    synth.add_argument(
        "--overwrite", action="store_true", help="regenerate a folder umlkit wrote before"
    )
    synth.set_defaults(func=_cmd_synth)


def _add_preprocess(sub) -> None:
    preprocess = sub.add_parser("preprocess", help="preprocess and cache I-SPY1 NIfTI volumes")
    preprocess.add_argument(
        "root", type=Path, help="the I-SPY1 folder (ISPY_<id>/..., outcome xlsx)"
    )
    preprocess.add_argument(
        "--n-slices", type=_positive_int, default=10, help="slices around the largest tumour"
    )
    preprocess.add_argument("--cache-dir", type=Path, default=None)
    preprocess.set_defaults(func=_cmd_preprocess)


def _add_train(sub) -> None:
    cmd = sub.add_parser("train", help="train a model")
    cmd.add_argument("--data-root", type=Path, required=True, help="the dataset folder")
    cmd.add_argument(
        "--dataset", choices=DATASETS, default=None, help="the dataset's layout (default isic2017)"
    )
    cmd.add_argument(
        "--num-classes",
        type=_positive_int,
        default=None,
        help="--dataset folder: the number of image classes (default: the lines of the folder's "
        "classes.txt, else the largest label + 1, each class needing two training images)",
    )
    cmd.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="a multiple of 2**(depth-1), 8 for umlkit's networks (default 64)",
    )
    cmd.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    cmd.add_argument("--output-dir", type=Path, required=True, help="checkpoints, history")
    cmd.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="fill the training settings from this profile's train settings (paper: "
        "the official configuration of --dataset); the flags given win",
    )
    cmd.add_argument("--model", choices=MODELS, default=None, help="the network (default uml)")
    cmd.add_argument("--width", type=_positive_int, default=None, help="default 16")
    cmd.add_argument("--epochs", type=_positive_int, default=None, help="default 12")
    cmd.add_argument("--batch-size", type=_positive_int, default=None, help="default 16")
    cmd.add_argument("--lr", type=_positive_float, default=None, help="default 1e-3")
    cmd.add_argument("--seed", type=_seed, default=None, help="default 0")
    cmd.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=None,
        help="none (default), flip (random flips) or dihedral (flips and quarter turns) per "
        "image; use flip where a turn changes the label (REFUGE's vertical cup-to-disc ratio)",
    )
    existing = cmd.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --output-dir (its last.pt, best.pt, half.pt, history.csv, "
        "steps.csv, config.json)",
    )
    cmd.add_argument("--no-navigator", action="store_true", help="ablation")
    cmd.add_argument("--no-instructor", action="store_true", help="ablation")
    cmd.add_argument("--softmax", action="store_true", help="softmax heads (ablation)")
    cmd.add_argument(
        "--compile",
        action="store_true",
        help="run the training steps through torch.compile (pays off on a GPU; see umlkit bench)",
    )
    cmd.set_defaults(func=_cmd_train)


def _add_evaluate(sub) -> None:
    cmd = sub.add_parser("evaluate", help="evaluate a checkpoint")
    cmd.add_argument("--data-root", type=Path, required=True, help="the dataset folder")
    cmd.add_argument("checkpoint", type=Path, help="a best.pt / last.pt written by train")
    cmd.add_argument("--split", choices=SPLITS, default="test", help="default test")
    cmd.add_argument(
        "--output",
        help="write the per-image table as CSV; a folder receives <checkpoint name>_<split>.csv",
    )
    cmd.add_argument(
        "--overwrite", action="store_true", help="replace the --output file if it exists"
    )
    cmd.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="the dataset's layout (default: the checkpoint's)",
    )
    cmd.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="default: the size the checkpoint was trained at",
    )
    cmd.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    cmd.set_defaults(func=_cmd_evaluate)


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="speed and memory benchmarks (prints tables)")
    from umlkit.benchmarks import DEFAULT_PATHS, PATHS, parse_paths, parse_widths

    bench.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=("all", "models", "metrics"),
        help="models: a training step and an inference pass of UML against the multitask "
        "baseline; metrics: streaming pixel calibration (default: both)",
    )
    bench.add_argument(
        "--width", type=parse_widths, default=[16], help="models' width; several: 8,16,64 (16)"
    )
    bench.add_argument(
        "--paths",
        type=parse_paths,
        default=list(DEFAULT_PATHS),
        help=f"some of {','.join(PATHS)} (default {','.join(DEFAULT_PATHS)}; compiled takes "
        "minutes)",
    )
    bench.add_argument(
        "--image-size", type=_positive_int, default=64, help="square image side (64)"
    )
    bench.add_argument(
        "--n-pixels", type=_positive_float, default=1e8, help="metrics: pixels to stream (1e8)"
    )
    bench.set_defaults(func=_cmd_bench)


def _add_figures(sub) -> None:
    figures = sub.add_parser("figures", help="run the notebooks with papermill, write figures/")
    figures.add_argument("--profile", default="default", help="smoke, default, reference or paper")
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


def _cmd_cache(args: argparse.Namespace) -> None:
    from umlkit.cache import export_cache, import_cache

    if args.action == "export":
        export_cache(args.file, profile=args.profile)
    else:
        import_cache(args.file, overwrite=args.overwrite)


def _add_cache(sub) -> None:
    cache = sub.add_parser(
        "cache", help="pack the trained models into one file, or unpack such a file (a lab)"
    )
    actions = cache.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="pack finished runs, their synthetic data and decoded splits"
    )
    export.add_argument("file", type=Path, help="the archive to write: .tar.gz, .tgz or .zip")
    export.add_argument(
        "--profile", choices=PROFILES, default=None, help="only this profile's runs (default: all)"
    )
    unpack = actions.add_parser("import", help="unpack an exported archive into data/")
    unpack.add_argument("file", type=Path, help="the archive umlkit cache export wrote")
    unpack.add_argument(
        "--overwrite", action="store_true", help="replace files here that differ from the archive's"
    )
    cache.set_defaults(func=_cmd_cache)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``umlkit`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, FolderInUseError) as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"umlkit {args.command}: {_for_the_command_line(message)}", file=sys.stderr)
        return 2
    return 0


def _user_error(error: Exception) -> str | None:
    """The one line ``main`` prints for an error the user can fix; ``None`` for any other
    ``OSError`` (a bug, shown with its traceback). The operating system's write errors (a full
    disk, no permission, a read-only file system) are among those a user can fix."""
    expected = (FileNotFoundError, FileExistsError, NotADirectoryError, CannotWriteError)
    if isinstance(error, OSError) and not isinstance(error, expected):
        error = as_write_error(error)
        if error is None:
            return None
    return str(error)


if __name__ == "__main__":
    raise SystemExit(main())
