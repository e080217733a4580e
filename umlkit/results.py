"""Results that cannot drift from the figures: every number a notebook states, kept in one file.

A notebook that states a result (an accuracy, a paired difference, a calibration error) records it
with :func:`record` instead of only printing it::

    text = record(ctx, "04.UML.ACC", 0.805, spread=0.012,
                  label="UML accuracy, test split, mean ± sd over 3 seeds")
    print(f"UML accuracy: {text}")          # UML accuracy: 0.805 ± 0.012

The number goes to ``<figures folder>/results.json`` (the figures folder of the run's profile,
``ctx.figures_dir``), beside the figures drawn from the same runs, with the commit, profile and
date that produced it. Every notebook of a run adds its own numbers to the one file; running a
notebook again replaces the numbers that notebook recorded before (and only those).
``results.md``, a table a person reads, is rewritten beside it at every :func:`record`, so the
two files always say the same.

The file of the ``reference`` profile, ``figures/results.json``, is committed: it is the
converged reference every other run is compared with. Three things read it:

* :func:`reference_value` and :func:`reference_results`: a notebook looks a number up;
* :func:`beside_reference` and :func:`print_beside_reference`: a quick (``default``) run shows
  its own numbers beside the reference's and flags where they disagree (the rule is in
  :func:`agrees`);
* the README check (:mod:`umlkit.readme_results`): the README's Results section is generated
  from the file (on the command line ``python -m umlkit.results --readme``), and every number
  it types must be one the file holds (``tests/test_readme_results.py`` fails otherwise).

The file looks like this (``text`` is the value as the notebooks print it)::

    {"profile": "reference", "commit": "d44bc63", "dirty": false,
     "date": "2026-12-07T06:30:00+00:00",
     "results": {"04.UML.ACC": {"value": 0.805, "spread": 0.012, "unit": "",
                                "label": "UML accuracy, ...", "notebook": "04_ablations",
                                "text": "0.805 ± 0.012", "digits": 3, ...}}}

Whatever is wrong with a results file (missing, not JSON, not shaped like the above), the error
is one line that names the file.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from umlkit.folders import atomic_write, folder_lock
from umlkit.runtime import project_root

#: The file every run's results go to, inside its figures folder.
RESULTS_FILE = "results.json"
#: The table a person reads, written beside :data:`RESULTS_FILE`.
MARKDOWN_FILE = "results.md"
#: The profile whose committed results every other run is compared with.
REFERENCE_PROFILE = "reference"
#: The smallest difference from the reference that :func:`agrees` can flag, in the result's own
#: unit: one point of accuracy or Dice. A single seed's spread is unknown (no spread), so
#: without a floor every difference of a one-seed result would count.
ABSOLUTE_FLOOR = 0.01
#: One token per run of a notebook: a re-run replaces what the earlier run recorded.
_RUN_TOKENS: dict[int, tuple[Any, str]] = {}


class ResultsFileError(ValueError):
    """A results file that is missing, not JSON, or not shaped as a results file; one line."""


# ----------------------------------------------------------------------------------- formatting
def format_value(value: float, spread: float | None = None, digits: int = 3) -> str:
    """A value as the notebooks print it: ``0.805``, or ``0.805 ± 0.012`` with a spread.

    >>> format_value(0.80512, 0.0123)
    '0.805 ± 0.012'
    """
    text = f"{value:.{digits}f}"
    return text if spread is None else f"{text} ± {spread:.{digits}f}"


def _check_number(key: str, what: str, number: Any, *, optional: bool = False) -> float | None:
    """``number`` as a float, or a one-line ``ValueError`` naming ``key`` when it is not finite."""
    if number is None and optional:
        return None
    is_number = isinstance(number, numbers.Real) and not isinstance(number, bool)
    if not is_number or not math.isfinite(float(number)):
        raise ValueError(f"result {key!r}: the {what} must be a finite number, got {number!r}")
    return float(number)


# ----------------------------------------------------------------------------- reading the file
def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file, checking its shape; a one-line :class:`ResultsFileError` otherwise.

    Raises:
        ResultsFileError: the file is missing, is not JSON, or has no ``results`` table of
            entries that each hold a numeric ``value``. The message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsFileError(f"{path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise ResultsFileError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    entries = data.get("results") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ResultsFileError(f"{path}: not a results file (no 'results' table)")
    for key, entry in entries.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ResultsFileError(f"{path}: result {key!r} has no numeric 'value'")
    return data


def entries_of(results: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The ``{key: entry}`` table of a whole results file, or ``results`` itself if it is one."""
    inner = results.get("results")
    return inner if isinstance(inner, Mapping) else results


# -------------------------------------------------------------------------------- git and dates
def _git(root: Path, *arguments: str) -> str | None:
    """The output of ``git <arguments>`` in ``root``; ``None`` where git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", *arguments], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(root: Path, results_folder: Path | None = None) -> dict[str, Any]:
    """The commit (``git rev-parse --short HEAD``, or ``"unknown"``), whether tracked files differ
    from it, and the date (UTC, ISO 8601).

    The folder the results are written to is left out of ``dirty``: a run rewrites its own
    figures, which does not make the code that drew them differ from the commit.
    """
    commit = _git(root, "rev-parse", "--short", "HEAD") or "unknown"
    pathspec = ["."]
    folder = None if results_folder is None else Path(results_folder).resolve()
    if folder is not None and folder != root.resolve() and folder.is_relative_to(root.resolve()):
        relative = folder.relative_to(root.resolve())
        pathspec.append(f":(exclude){relative.as_posix()}")
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *pathspec)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    return {"commit": commit, "dirty": bool(status), "date": date}


# ------------------------------------------------------------------------------------ recording
def _run_token(ctx) -> str:
    """A token for this run of ``ctx``'s notebook (the same for every call with this ``ctx``)."""
    held = _RUN_TOKENS.get(id(ctx))
    if held is None or held[0] is not ctx:  # keeping ctx alive keeps its id from being reused
        held = _RUN_TOKENS[id(ctx)] = (ctx, uuid.uuid4().hex)
    return held[1]


def record(
    ctx,
    key: str,
    value: float,
    *,
    spread: float | None = None,
    unit: str = "",
    label: str | None = None,
    digits: int = 3,
    headline: bool = False,
) -> str:
    """Record one number a notebook states, and return it as the notebook prints it.

    The number is merged into ``ctx.figures_dir / "results.json"``: read the file, change it,
    write it back in one rename (atomic: a reader sees the old file or the new one), while holding
    the folder's lock (two notebooks recording at once do not lose each other's numbers). The
    first ``record`` of a notebook's run removes every number an earlier run of the same notebook
    recorded, so a number the notebook no longer states does not linger. ``results.md`` is
    rewritten beside it.

    Args:
        ctx: the notebook's :class:`~umlkit.profiles.NotebookContext` (name, profile, folders).
        key: a name unique across notebooks, by convention ``"<notebook number>.<what>"``, e.g.
            ``"04.UML.ACC"``.
        value: the number; a finite int or float (NumPy numbers too).
        spread: its spread, e.g. the standard deviation over seeds; ``None`` for one run.
        unit: printed after the number in the tables (``"px"``, ``"%"``); ``""`` for none.
        label: what the number is, in words a reader understands without the code: the metric,
            the split, how the spread is computed (``"mean ± sd over 3 seeds"``). Default: key.
        digits: decimals the number is printed with (and compared at).
        headline: ``True`` puts it in the README's short table (:func:`umlkit.readme_results.render_readme_section`).

    Returns:
        The text, e.g. ``"0.805 ± 0.012"``.

    Raises:
        ValueError: ``value`` or ``spread`` is NaN, infinite or not a number, or ``spread`` is
            negative (one line, naming ``key``); the file holds another profile's results.
        ResultsFileError: the existing file is damaged (it is not overwritten).
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"a result's key must be a non-empty string, got {key!r}")
    value = _check_number(key, "value", value)
    spread = _check_number(key, "spread", spread, optional=True)
    if spread is not None and spread < 0:
        raise ValueError(f"result {key!r}: the spread must not be negative, got {spread!r}")
    text = format_value(value, spread, digits)
    folder = Path(ctx.figures_dir)
    path = folder / RESULTS_FILE
    stamp = provenance(Path(ctx.root), folder)
    entry = {
        "value": value,
        "spread": spread,
        "unit": unit,
        "label": label or key,
        "notebook": ctx.name,
        "text": text,
        "digits": digits,
        "headline": headline,
        "commit": stamp["commit"],
        "run": _run_token(ctx),
    }
    with folder_lock(folder, what="results folder", wait="to finish recording its results"):
        data = _merged(path, ctx.profile, key, entry)
        data.update(profile=ctx.profile, **stamp)
        write_text(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False))
        write_markdown(path)
    return text


def record_if_defined(
    ctx, key: str, value: Any, *, spread: Any = None, **options: Any
) -> str | None:
    """:func:`record` for a number read from a table, where NaN means "not defined".

    A notebook that records a whole table meets NaN where a model cannot have a metric (the Dice
    of a classifier, the accuracy of a U-Net) and as the standard deviation of a single seed.
    Here a NaN (or ``None``) ``value`` records nothing, and a NaN ``spread`` records the value
    without a spread; everything else is :func:`record` (the same keyword arguments).

    Returns:
        The text :func:`record` returns, or ``None`` where nothing was recorded.
    """
    if value is None or pd.isna(value):
        return None
    if spread is not None and pd.isna(spread):
        spread = None
    return record(ctx, key, value, spread=spread, **options)


def _merged(path: Path, profile: str, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The file at ``path`` (or a new one) with ``entry`` under ``key`` and the earlier runs of
    ``entry``'s notebook removed."""
    if not path.exists():
        return {"profile": profile, "results": {key: entry}}
    data = load_results(path)
    if data.get("profile", profile) != profile:
        raise ValueError(
            f"{path} holds results of the {data['profile']!r} profile, not {profile!r}: "
            "each profile writes its own figures folder"
        )
    kept = {
        name: old
        for name, old in data["results"].items()
        if name != key
        and not (old.get("notebook") == entry["notebook"] and old.get("run") != entry["run"])
    }
    data["results"] = {**kept, key: entry}
    return data


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8, one trailing newline) to ``path`` atomically."""
    text = text.rstrip("\n") + "\n"
    return atomic_write(path, lambda target: target.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------ the markdown table
def markdown_cell(text: Any) -> str:
    """A markdown table cell: ``|`` escaped, line breaks joined."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def by_notebook(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The keys of ``entries`` grouped by notebook (notebooks sorted, keys in recorded order)."""
    groups: dict[str, list[str]] = {}
    for key, entry in entries.items():
        groups.setdefault(str(entry.get("notebook", "?")), []).append(key)
    return dict(sorted(groups.items()))


def header_line(data: Mapping[str, Any]) -> str:
    """The provenance line of the tables: commit, profile, date."""
    dirty = " with uncommitted changes" if data.get("dirty") else ""
    return (
        f"Commit `{data.get('commit', 'unknown')}`{dirty}, profile `{data.get('profile', '?')}`, "
        f"written {data.get('date', '?')}."
    )


def write_markdown(json_path: str | Path, md_path: str | Path | None = None) -> Path:
    """Write the results file ``json_path`` as markdown tables (default: ``results.md`` beside it).

    A header with the commit, profile and date, then one table per notebook: key, label, value
    ± spread, unit. :func:`record` calls it after every number, so the two files agree.

    Raises:
        ResultsFileError: ``json_path`` is missing or damaged (the message names it).
    """
    json_path = Path(json_path)
    md_path = json_path.with_name(MARKDOWN_FILE) if md_path is None else Path(md_path)
    data = load_results(json_path)
    lines = [
        "# Results",
        "",
        header_line(data),
        f"Generated from `{json_path.name}` by `umlkit.results`; do not edit by hand.",
    ]
    entries = data["results"]
    for notebook, keys in by_notebook(entries).items():
        lines += [
            "",
            f"## {notebook}",
            "",
            "| key | what | value | unit |",
            "| --- | --- | --- | --- |",
        ]
        for key in keys:
            entry = entries[key]
            text = entry.get("text") or format_value(entry["value"], entry.get("spread"))
            cells = (key, entry.get("label", key), text, entry.get("unit", ""))
            lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
    return write_text(md_path, "\n".join(lines))


# --------------------------------------------------------------------------------- the reference
def reference_path(root: str | Path | None = None) -> Path:
    """The committed reference file: ``figures/results.json`` of the project root."""
    return Path(project_root() if root is None else root) / "figures" / RESULTS_FILE


def reference_results(root: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The reference's ``{key: entry}`` table; ``{}`` while no reference file exists.

    Raises:
        ResultsFileError: the file exists but is damaged (one line naming it).
    """
    path = reference_path(root)
    return dict(load_results(path)["results"]) if path.is_file() else {}


def reference_value(key: str, root: str | Path | None = None) -> float | None:
    """The reference's value of ``key``; ``None`` where there is no reference file or no such key."""
    entry = reference_results(root).get(key)
    return None if entry is None else float(entry["value"])


def agrees(
    value: float,
    reference: float,
    *,
    spread: float | None = None,
    reference_spread: float | None = None,
    floor: float = ABSOLUTE_FLOOR,
) -> bool:
    """Whether a run's ``value`` agrees with the reference's.

    Two conditions, both needed:

    1. **Close enough**: ``|value - reference| <= max(2 × reference_spread, 2 × spread, floor)``.
       Twice the spread over seeds is about where a difference stops being seed noise; the
       ``floor`` keeps a one-seed result (no spread) from being flagged for a hair's difference.
    2. **The same side**: where the reference is clearly away from zero (``|reference| >
       2 × reference_spread``; a reference without a spread settles no side), e.g. a paired
       difference "CAML − supervised = +0.010 ± 0.003", the run must lie on the same side of
       zero: a difference that changes sign changes the conclusion even when it is small
       enough to pass the first condition (a run of −0.004 ± 0.010 does). Positive metrics
       (accuracy, Dice) always pass it.

    >>> agrees(0.751, 0.805, spread=0.010, reference_spread=0.012)
    False
    >>> agrees(0.798, 0.805, reference_spread=0.012)
    True
    """
    tolerance = max(2 * (reference_spread or 0.0), 2 * (spread or 0.0), floor)
    close = abs(value - reference) <= tolerance
    settled = bool(reference_spread) and abs(reference) > 2 * reference_spread
    return close and (not settled or value * reference > 0)


#: The columns of :func:`beside_reference`.
BESIDE_COLUMNS = [
    "key",
    "label",
    "value",
    "spread",
    "reference",
    "reference_spread",
    "difference",
    "tolerance",
    "agrees",
    "text",
    "reference_text",
]


def is_reference_run(ctx) -> bool:
    """Whether ``ctx`` *is* the reference run: its profile, or its results file is the reference's."""
    own = (Path(ctx.figures_dir) / RESULTS_FILE).resolve()
    return ctx.profile == REFERENCE_PROFILE or own == reference_path(ctx.root).resolve()


def _this_run(ctx, keys_or_records) -> dict[str, Mapping[str, Any]]:
    """The ``{key: entry}`` of this run that :func:`beside_reference` compares (see there)."""
    if isinstance(keys_or_records, Mapping):
        return {
            key: entry if isinstance(entry, Mapping) else {"value": entry}
            for key, entry in keys_or_records.items()
        }
    path = Path(ctx.figures_dir) / RESULTS_FILE
    recorded = load_results(path)["results"] if path.exists() else {}
    if isinstance(keys_or_records, str):
        return {key: entry for key, entry in recorded.items() if key.startswith(keys_or_records)}
    missing = [key for key in keys_or_records if key not in recorded]
    if missing:
        raise ValueError(f"{path}: this run recorded no result {', '.join(map(repr, missing))}")
    return {key: recorded[key] for key in keys_or_records}


def beside_reference(
    ctx, keys_or_records: str | Iterable[str] | Mapping[str, Any], *, floor: float = ABSOLUTE_FLOOR
) -> pd.DataFrame:
    """This run's numbers beside the converged reference's, one row per key.

    Args:
        ctx: the notebook's context; its ``figures_dir`` holds this run's ``results.json`` and
            its ``root`` the reference ``figures/results.json``.
        keys_or_records: which numbers: a prefix (``"04."``: every key of this run's file that
            starts with it), a list of keys of this run's file, or a mapping ``{key: entry}``
            (an entry as :func:`record` writes it, or a bare number).
        floor: the smallest tolerance (:func:`agrees`).

    Returns:
        A DataFrame with :data:`BESIDE_COLUMNS`: ``value``/``spread`` of this run,
        ``reference``/``reference_spread``, ``difference`` (this − reference), the
        ``tolerance`` and ``agrees`` (:func:`agrees`; ``None`` for a key the reference does not
        hold). Empty when this run is the reference, or no reference exists yet; ``frame.attrs
        ["note"]`` then says which.
    """
    frame = pd.DataFrame(columns=BESIDE_COLUMNS)
    if is_reference_run(ctx):
        frame.attrs["note"] = "this run is the converged reference: nothing to compare it with"
        return frame
    reference = reference_results(ctx.root)
    if not reference:
        frame.attrs["note"] = f"no converged reference yet ({reference_path(ctx.root)} is missing)"
        return frame
    rows = [
        _beside_row(key, entry, reference.get(key), floor)
        for key, entry in _this_run(ctx, keys_or_records).items()
    ]
    frame = pd.DataFrame(rows, columns=BESIDE_COLUMNS)
    frame.attrs["note"] = f"beside the converged reference {reference_path(ctx.root)}"
    return frame


def _beside_row(
    key: str, entry: Mapping[str, Any], ref: Mapping[str, Any] | None, floor: float
) -> dict[str, Any]:
    """One row of :func:`beside_reference`."""
    value, spread = float(entry["value"]), entry.get("spread")
    digits = int(entry.get("digits", 3))
    row = {
        "key": key,
        "label": entry.get("label") or (ref or {}).get("label") or key,
        "value": value,
        "spread": spread,
        "text": entry.get("text") or format_value(value, spread, digits),
        "reference": None,
        "reference_spread": None,
        "difference": None,
        "tolerance": None,
        "agrees": None,
        "reference_text": "not in the reference",
    }
    if ref is None:
        return row
    reference, reference_spread = float(ref["value"]), ref.get("spread")
    row.update(
        reference=reference,
        reference_spread=reference_spread,
        difference=value - reference,
        tolerance=max(2 * (reference_spread or 0.0), 2 * (spread or 0.0), floor),
        agrees=agrees(
            value, reference, spread=spread, reference_spread=reference_spread, floor=floor
        ),
        reference_text=ref.get("text") or format_value(reference, reference_spread, digits),
    )
    return row


def print_beside_reference(ctx, prefix: str, *, floor: float = ABSOLUTE_FLOOR) -> pd.DataFrame:
    """Print this run's numbers whose key starts with ``prefix`` beside the reference's.

    One table (key, this run, reference, agrees), then one line per disagreement::

        04.UML.ACC (UML accuracy, ...): differs from the converged reference: this run 0.751,
        reference 0.805 ± 0.012

    In the reference run itself, or while no reference exists, one line says so.

    Returns:
        The frame of :func:`beside_reference`.
    """
    frame = beside_reference(ctx, prefix, floor=floor)
    if frame.empty:
        print(
            frame.attrs["note"] if frame.attrs.get("note") else f"no results start with {prefix!r}"
        )
        return frame
    verdict = frame["agrees"].map({True: "yes", False: "NO"}).fillna("—")
    shown = pd.DataFrame(
        {"this run": frame["text"], "reference": frame["reference_text"], "agrees": verdict}
    ).set_index(frame["key"].rename(None))
    print(f"This run ({ctx.profile} profile) {frame.attrs['note']}:")
    print(shown.to_string())
    for row in frame[frame["agrees"].eq(False)].itertuples():
        print(
            f"{row.key} ({row.label}): differs from the converged reference: this run "
            f"{row.text}, reference {row.reference_text}"
        )
    return frame


# ----------------------------------------------------------------------------- the command line
def main(argv: list[str] | None = None) -> int:
    """``python -m umlkit.results --readme``: regenerate the README's Results section from the
    reference file; ``--markdown`` rewrites ``results.md`` from a results file."""
    # imported here: umlkit.readme_results imports this module
    from umlkit.readme_results import render_readme_section, replace_readme_section

    parser = argparse.ArgumentParser(prog="python -m umlkit.results", description=main.__doc__)
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's Results section")
    parser.add_argument(
        "--markdown", action="store_true", help="rewrite results.md beside --results"
    )
    parser.add_argument("--results", type=Path, help="the results file (default: the reference)")
    parser.add_argument("--readme-path", type=Path, help="the README (default: <root>/README.md)")
    args = parser.parse_args(argv)
    if not (args.readme or args.markdown):
        parser.error("nothing to do: give --readme and/or --markdown")
    results_path = args.results or reference_path()
    try:
        data = load_results(results_path)
        if args.markdown:
            print(f"wrote {write_markdown(results_path)}")
        if args.readme:
            readme = args.readme_path or project_root() / "README.md"
            text = replace_readme_section(
                readme.read_text(encoding="utf-8"), render_readme_section(data)
            )
            write_text(readme, text)
            print(f"wrote the Results section of {readme} from {results_path}")
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
