"""The README's Results section: generated from the reference's results file, and checked against it.

The README states what the converged reference run found. So that it cannot drift from the
figures, the section between two markers (HTML comments, invisible on GitHub)::

    <!-- results:start -->
    ... generated: do not edit ...
    <!-- results:end -->

is written by :func:`render_readme_section` from ``figures/results.json``
(``python -m umlkit.results --readme`` rewrites it in place, and nothing outside the markers),
and a test checks that every result number the section types is one the file holds
(:func:`unsupported_numbers`).

What counts as a result number (:func:`readme_numbers`): a decimal (``0.805``, ``+0.010``,
``−0.017``, the spread of ``± 0.012``) or a percentage (``95 %``). Whole numbers without a percent
sign are the settings of a run (3 seeds, 2 epochs, 32 px, notebook 04) and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from umlkit.results import by_notebook, entries_of, format_value, header_line, markdown_cell

#: The markers of the README's generated Results section.
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

#: A number as a README types it: an optional sign (``+``, ``-``, ``−``, or ``±`` for a spread),
#: digits with an optional decimal part, an optional percent sign. A sign glued to a word or a
#: digit (``2026-12-07``, ``1e-3``) is no sign, and an en dash (``0.14–0.32``) is a range.
_NUMBER = re.compile(
    r"(?<![\w.])(?:(?P<sign>[+\-\u2212±])\s?)?(?P<number>\d+(?:\.\d+)?)(?P<percent>\s?%)?"
    r"(?![\w]|\.\d)"
)


def results_section(readme_text: str) -> str:
    """The text between :data:`README_START` and :data:`README_END`; a one-line ``ValueError``
    when the markers are missing or out of order."""
    start, end = readme_text.find(README_START), readme_text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(
            f"the README has no Results section between {README_START} and {README_END}"
        )
    return readme_text[start + len(README_START) : end]


def _numbers(text: str) -> list[str]:
    """The result numbers of ``text``: decimals and percentages (see :func:`readme_numbers`)."""
    found = []
    for match in _NUMBER.finditer(text):
        number, sign, percent = match["number"], match["sign"], match["percent"]
        if "." not in number and not percent:
            continue  # a whole number: a setting (seeds, epochs, pixels), not a result
        sign = {"\u2212": "-", "±": ""}.get(sign, sign) if sign else ""
        found.append(f"{sign}{number}{'%' if percent else ''}")
    return found


def readme_numbers(readme_text: str) -> list[str]:
    """The result numbers the README's Results section types, in order, as typed.

    A result number is a decimal (``0.805``) or a percentage (``95 %``); whole numbers without a
    percent sign are settings (3 seeds, 2 epochs, 32 px) and are not returned. The sign is kept
    where one is typed (``+0.010``; the minus ``−`` becomes ``-``); the ``±`` of a spread is
    dropped (a spread has no sign).

    >>> readme_numbers("<!-- results:start --> UML 0.805 ± 0.012 (+0.010, 95 %) <!-- results:end -->")
    ['0.805', '0.012', '+0.010', '95%']
    """
    return _numbers(results_section(readme_text))


def _matches(typed: str, candidate: float, digits: int) -> bool:
    """Whether the README's ``typed`` number is ``candidate`` (printed with ``digits`` decimals)
    at the typed precision; an unsigned ``typed`` may also be its size (``falls by 0.017``)."""
    number = typed.rstrip("%")
    decimals = len(number.partition(".")[2])
    if decimals > digits:
        return False  # more precision than the file holds
    typed_value = Decimal(number)
    sizes = (candidate,) if number[0] in "+-" else (candidate, abs(candidate))
    return any(Decimal(f"{size:.{decimals}f}") == typed_value for size in sizes)


def unsupported_numbers(readme_text: str, results: Mapping[str, Any]) -> list[str]:
    """The README's result numbers (:func:`readme_numbers`) that the results file does not hold.

    A typed number is held when it is some recorded value or spread at the typed precision
    (``0.805`` or ``0.81`` for a recorded 0.805; not ``0.8051``, more precise than recorded), or
    a number of a recorded label (``"at 5 % labels"``). The sign counts where one is typed.

    Args:
        readme_text: the whole README.
        results: a results file as :func:`load_results` reads it, or its ``{key: entry}``.

    Returns:
        The numbers held by no entry, each once, in the order the README types them.
    """
    entries = entries_of(results)
    candidates = [
        (float(number), int(entry.get("digits", 3)))
        for entry in entries.values()
        for number in (entry["value"], entry.get("spread"))
        if number is not None
    ]
    labelled = {
        Decimal(number.rstrip("%"))
        for entry in entries.values()
        for number in _numbers(str(entry.get("label", "")))
    }
    unsupported = []
    for typed in readme_numbers(readme_text):
        held = Decimal(typed.rstrip("%")) in labelled or any(
            _matches(typed, candidate, digits) for candidate, digits in candidates
        )
        if not held and typed not in unsupported:
            unsupported.append(typed)
    return unsupported


def render_readme_section(results: Mapping[str, Any], *, per_notebook: int = 3) -> str:
    """The README's Results section, generated from a results file (it types no other number).

    A provenance line, a short table of the headline numbers of each notebook (those recorded
    with ``headline=True``; where a notebook marked none, its first ``per_notebook``), and a link
    to ``figures/results.md``, which holds every number.
    """
    entries = entries_of(results)
    lines = [
        f"Generated from [`figures/results.json`](figures/results.json) by "
        f"`python -m umlkit.results --readme`; do not edit between the markers. {header_line(results)}",
        "Every number the notebooks state, with what it measures: "
        "[`figures/results.md`](figures/results.md).",
        "",
        "| notebook | result | value |",
        "| --- | --- | --- |",
    ]
    for notebook, keys in by_notebook(entries).items():
        headline = [key for key in keys if entries[key].get("headline")] or keys[:per_notebook]
        for key in headline:
            entry = entries[key]
            text = entry.get("text") or format_value(entry["value"], entry.get("spread"))
            value = f"{text} {entry['unit']}" if entry.get("unit") else text
            lines.append(
                f"| {markdown_cell(notebook)} | {markdown_cell(entry.get('label', key))} | {markdown_cell(value)} |"
            )
    if not entries:
        lines.append("| — | no results recorded yet | — |")
    return "\n".join(lines) + "\n"


def replace_readme_section(readme_text: str, section: str) -> str:
    """``readme_text`` with the text between the markers replaced by ``section`` (only that)."""
    results_section(readme_text)  # checks the markers
    before, _, rest = readme_text.partition(README_START)
    _, _, after = rest.partition(README_END)
    return f"{before}{README_START}\n\n{section.strip()}\n\n{README_END}{after}"
