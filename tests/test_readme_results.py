"""umlkit.readme_results: the README's Results section types no number the results file lacks."""

import json

import pytest

from umlkit.readme_results import (
    README_END,
    README_START,
    readme_numbers,
    render_readme_section,
    replace_readme_section,
    unsupported_numbers,
)
from umlkit.results import load_results, main, reference_path
from umlkit.runtime import project_root

ROOT = project_root()
REFERENCE = reference_path(ROOT)


def section(text):
    """A README whose Results section is ``text``."""
    return f"# umlkit\n\nIntro 0.123.\n\n## Results\n{README_START}\n{text}\n{README_END}\nAfter 9.99.\n"


def entry(value, spread=None, digits=3, label="", notebook="04_ablations", **more):
    """A results-file entry as umlkit.results.record writes it."""
    text = f"{value:.{digits}f}" + ("" if spread is None else f" ± {spread:.{digits}f}")
    return dict(
        value=value, spread=spread, digits=digits, label=label, notebook=notebook, text=text, **more
    )


RESULTS = {
    "profile": "reference",
    "commit": "abc1234",
    "dirty": False,
    "date": "2026-12-07T06:30:00+00:00",
    "results": {
        "04.UML.ACC": entry(0.805, 0.012, label="UML accuracy, mean ± sd over 3 seeds"),
        "04.NAV.ACC": entry(-0.017, 0.006, label="navigated − official accuracy, paired"),
        "09.CAML.DICE": entry(0.010, 0.008, label="CAML − supervised Dice at 1 % labels"),
        "07.COVERAGE": entry(95.0, digits=0, unit="%", notebook="07_robustness"),
    },
}


# --------------------------------------------------------------------------- finding the numbers
def test_readme_numbers_reads_only_between_the_markers():
    text = section("UML 0.805 ± 0.012 (+0.010, −0.017, ±0.006) at 95 % coverage.")
    assert readme_numbers(text) == ["0.805", "0.012", "+0.010", "-0.017", "0.006", "95%"]


def test_whole_numbers_dates_ranges_and_words_are_not_results():
    text = section(
        "3 seeds, 2 epochs, 32 × 32, notebook 04, commit d44bc63, 2026-12-07T06:30:00+00:00, "
        "lr 3e-3, AUROC 0.14–0.32, ends a sentence with 0.5."
    )
    assert readme_numbers(text) == ["0.14", "0.32", "0.5"]


def test_missing_markers_are_one_line_errors():
    with pytest.raises(ValueError, match="no Results section between"):
        readme_numbers("## Results\n0.805\n")
    with pytest.raises(ValueError, match="no Results section"):
        readme_numbers(f"{README_END}\n0.805\n{README_START}")


# --------------------------------------------------------------------------------- the check
def test_exactly_the_number_the_file_lacks_is_reported():
    text = section("UML reaches 0.805 accuracy, and 0.751 at the default budget.")
    assert unsupported_numbers(text, RESULTS) == ["0.751"]


def test_numbers_match_at_the_typed_precision_and_sign():
    held = section("0.805 ± 0.012, 0.81, 0.8, −0.017 ± 0.006, 0.017, +0.010 ± 0.008, 95 %")
    assert unsupported_numbers(held, RESULTS) == []
    # more precision than recorded, a wrong sign, a wrong rounding
    lacking = section("0.8050, +0.017, −0.010, 0.806")
    assert unsupported_numbers(lacking, RESULTS) == ["0.8050", "+0.017", "-0.010", "0.806"]


def test_numbers_of_the_labels_are_held_and_each_lack_is_reported_once():
    text = section("at 1 % labels: 0.777, again 0.777")
    assert unsupported_numbers(text, RESULTS) == ["0.777"]
    assert unsupported_numbers(text, RESULTS["results"]) == ["0.777"]  # the table alone


# ------------------------------------------------------------------------- generating the section
def test_the_generated_section_types_only_numbers_of_the_file():
    generated = render_readme_section(RESULTS)
    assert unsupported_numbers(section(generated), RESULTS) == []
    assert "figures/results.md" in generated and "`abc1234`" in generated
    assert "| 04_ablations | UML accuracy, mean ± sd over 3 seeds | 0.805 ± 0.012 |" in generated
    assert "| 07_robustness |  | 95 % |" in generated


def test_headline_results_are_chosen_per_notebook():
    results = {
        "04.A": entry(0.1),
        "04.B": entry(0.2, headline=True),
        "05.A": entry(0.3, notebook="05_reliability"),
        "05.B": entry(0.4, notebook="05_reliability"),
    }
    generated = render_readme_section(results, per_notebook=1)
    assert "0.200" in generated and "0.100" not in generated  # 04 marked its headline
    assert "0.300" in generated and "0.400" not in generated  # 05 marked none: its first


def test_replacing_the_section_leaves_the_rest_alone():
    readme = section("old 0.999 text")
    replaced = replace_readme_section(readme, "new 0.805\n")
    assert replaced == section("\nnew 0.805\n")
    assert replace_readme_section(replaced, "new 0.805") == replaced  # idempotent


def test_the_command_line_rewrites_the_readme(tmp_path, capsys):
    readme, results = tmp_path / "README.md", tmp_path / "results.json"
    readme.write_text(section("old 0.999"), encoding="utf-8")
    results.write_text(json.dumps(RESULTS), encoding="utf-8")
    arguments = ["--readme", "--readme-path", str(readme), "--results", str(results)]
    assert main(arguments) == 0
    text = readme.read_text(encoding="utf-8")
    assert "0.999" not in text and text.endswith(f"{README_END}\nAfter 9.99.\n")
    assert unsupported_numbers(text, RESULTS) == []
    results.write_text("{broken", encoding="utf-8")
    assert main(arguments) == 1
    assert "results.json: not valid JSON" in capsys.readouterr().err


# -------------------------------------------------------------------------- the real README
def test_the_readme_marks_its_results_section():
    readme_numbers((ROOT / "README.md").read_text(encoding="utf-8"))  # raises without markers


@pytest.mark.skipif(
    not REFERENCE.is_file(),
    reason="figures/results.json does not exist yet: the reference run (make reference) writes "
    "it, then python -m umlkit.results --readme regenerates the README's Results section",
)
def test_the_readme_states_no_result_the_reference_lacks():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lacking = unsupported_numbers(readme, load_results(REFERENCE))
    assert lacking == [], (
        f"the README's Results section types numbers figures/results.json does not hold: "
        f"{', '.join(lacking)} (regenerate it: python -m umlkit.results --readme)"
    )
