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
