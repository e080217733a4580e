"""Profiles and the notebook setup idiom."""

import pytest

from umlkit.profiles import (
    PROFILES,
    get_settings,
    setup_notebook,
)


def test_every_profile_sizes_data_training_and_semi():
    for profile in PROFILES:
        settings = get_settings(profile)
        assert {"data", "train", "compare", "semi"} <= set(settings)
        assert settings["data"]["n"] > 0 and settings["train"]["epochs"] > 0
        assert set(settings["compare"]) <= set(settings["train"])  # it changes, never adds


def test_comparing_notebooks_get_the_compare_budget():
    full = setup_notebook("99_test", "default").settings
    compared = setup_notebook("99_test", "default", compare=True).settings
    assert compared["train"]["image_size"] == full["compare"]["image_size"] == 32
    assert full["train"]["image_size"] == 48  # notebook 03 trains at the full budget
    assert compared["train"]["width"] == full["train"]["width"]  # only what compare names
    smoke = get_settings("smoke")["train"]
    assert setup_notebook("99_test", "smoke", compare=True).settings["train"] == {
        **smoke,
        "image_size": 32,
    }


def test_smoke_is_smaller_than_default():
    smoke, default = get_settings("smoke"), get_settings("default")
    assert smoke["data"]["n"] < default["data"]["n"]
    assert smoke["train"]["epochs"] < default["train"]["epochs"]


def test_unknown_profile_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        get_settings("fast")


def test_settings_are_copies():
    get_settings("smoke")["data"]["n"] = -1
    assert get_settings("smoke")["data"]["n"] > 0


def test_smoke_figures_never_go_to_the_committed_folder(monkeypatch):
    monkeypatch.setenv("UMLKIT_PROFILE", "smoke")
    ctx = setup_notebook("99_test", None)
    assert ctx.profile == "smoke"
    assert ctx.figures_dir == ctx.root / "build" / "figures-smoke"
    # only the converged reference writes the committed figures; the quick default does not
    assert setup_notebook("99_test", "reference").figures_dir == ctx.root / "figures"
    assert (
        setup_notebook("99_test", "default").figures_dir == ctx.root / "build" / "figures-default"
    )


def test_save_figure_writes_png_and_pdf(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctx = setup_notebook("99_test", "smoke", figures_dir=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = ctx.save_figure(fig, "line")
    plt.close(fig)
    assert [p.name for p in paths] == ["99_test_line.png", "99_test_line.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_one_layout_gives_the_files_that_a_tight_savefig_gives(tmp_path, plot_theme):
    """save_figure lays a constrained-layout figure out once (laid_out_once) and still writes,
    pixel for pixel, the PNG that ``savefig(bbox_inches="tight")`` writes of the same figure; the
    PDF has its aspect; the figure keeps its layout engine."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.image import imread

    from umlkit.profiles import PNG_DPI

    def two_panels():
        # a fresh figure for each save: matplotlib resamples an image drawn a second time a
        # little differently, whichever way it is saved
        fig, axes = plt.subplots(1, 2, figsize=(5, 2.5), layout="constrained")
        axes[0].plot([0, 1], [0, 10_000])
        axes[0].set_ylabel("a long label that the layout makes room for")
        axes[1].imshow(np.arange(12.0).reshape(3, 4))
        fig.suptitle("two panels")
        return fig

    fig = two_panels()
    engine = fig.get_layout_engine()
    ctx = setup_notebook("99_test", "smoke", figures_dir=tmp_path)
    png, pdf = ctx.save_figure(fig, "once")
    assert fig.get_layout_engine() is engine
    two_panels().savefig(tmp_path / "tight.png", dpi=PNG_DPI, bbox_inches="tight")
    once, tight = imread(png), imread(tmp_path / "tight.png")
    assert once.shape == tight.shape
    np.testing.assert_array_equal(once, tight)
    pdf = pdf.read_bytes()
    width, height = (float(v) for v in pdf.split(b"/MediaBox [ 0 0 ")[1].split(b" ]")[0].split())
    assert width / height == pytest.approx(once.shape[1] / once.shape[0], rel=0.01)


def test_in_a_notebook_the_cell_shows_the_saved_png_instead_of_drawing_the_figure_again(
    tmp_path, plot_theme, monkeypatch
):
    import IPython
    import IPython.display
    import matplotlib
    import matplotlib.pyplot as plt

    from umlkit.profiles import PNG_DPI

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    ctx = setup_notebook("99_test", "smoke", figures_dir=tmp_path)

    # a script (no IPython, the Agg backend): nothing is shown, the figure stays open
    fig, ax = plt.subplots(figsize=(4, 2), dpi=100)
    ax.plot([0, 1], [1, 0])
    ctx.save_figure(fig, "script")
    assert shown == [] and plt.fignum_exists(fig.number)

    # a Jupyter kernel: matplotlib's inline backend, a running IPython
    monkeypatch.setattr(
        matplotlib, "get_backend", lambda: "module://matplotlib_inline.backend_inline"
    )
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    png, _ = ctx.save_figure(fig, "notebook")
    (image,) = shown
    assert image.data == png.read_bytes()  # the file itself, not a drawing of its own
    # shown as large as the figure at its own 100 dpi: the PNG's 150 pixels per inch scaled
    saved_width = int.from_bytes(png.read_bytes()[16:20], "big")  # the PNG header's width
    assert image.width == round(saved_width * 100 / PNG_DPI)
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend draws it no more


#: The figures ``make figures`` (the default profile) writes to ``figures/``, by notebook. The smoke
#: profile writes the same ones to ``build/figures-smoke/`` but the two 08 factor figures, which need
#: more failures than the smoke data give. Add a figure here when a notebook draws a new one.
REFERENCE_FIGURES = [
    "01_data_derm_class_balance",
    "01_data_derm_factors",
    "01_data_derm_grid",
    "02_evidential_primer_evidence",
    "02_evidential_primer_losses",
    "02_evidential_primer_simplex",
    "02_evidential_primer_toy_distance",
    "02_evidential_primer_toy_maps",
    "03_training_curves",
    "03_training_factor_weights",
    "03_training_learning_curves",
    "04_ablations_learning_curves",
    "04_ablations_metrics",
    "05_reliability_against_truth",
    "05_reliability_binning_variants",
    "05_reliability_classifier",
    "05_reliability_pixels_per_class",
    "05_reliability_pixels_pooled",
    "06_uncertainty_maps_error_detection",
    "06_uncertainty_maps_gallery",
    "06_uncertainty_maps_ueo",
    "06_uncertainty_maps_uncertainty_vs_factors",
    "07_robustness_corruptions",
    "07_robustness_ood_image",
    "07_robustness_ood_pixel",
    "08_failure_cases_confidently_wrong",
    "08_failure_cases_error_by_flag",
    "08_failure_cases_error_factors",
    "08_failure_cases_most_uncertain",
    "08_failure_cases_risk_coverage",
    "08_failure_cases_risk_coverage_segmentation",
    "08_failure_cases_segmentation_failure_by_flag",
    "08_failure_cases_segmentation_failure_factors",
    "08_failure_cases_uncertain_but_right",
    "09_semi_supervised_dice_vs_label_fraction",
    "09_semi_supervised_trust_fundus",
    "09_semi_supervised_validation_curves",
]


def test_the_committed_figures_are_exactly_those_the_reference_profile_writes():
    """No stale figure (one a notebook no longer draws) sits beside the current ones, and the
    results files of the reference run are there."""
    folder = setup_notebook("99_test", "reference").figures_dir
    expected = {f"{stem}.{ext}" for stem in REFERENCE_FIGURES for ext in ("png", "pdf")}
    expected |= {"results.json", "results.md"}
    present = {path.name for path in folder.iterdir()} - {"README.md", ".lock"}
    assert sorted(present - expected) == [], "figures no reference run writes"
    assert sorted(expected - present) == [], "figures missing: run make reference"
