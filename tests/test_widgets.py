"""The explorers build without a frontend and update when a control changes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from umlkit import widgets
from umlkit.widgets import (
    PIXEL_RATIO,
    UncertaintyExplorer,
    dirichlet_explorer,
    png_size,
    reliable_mask_summary,
    resolve_interactive,
)


def make_case(title: str, wrong_rows: int) -> dict:
    mask = np.zeros((8, 8), dtype=int)
    mask[2:6, 2:6] = 1
    prediction = mask.copy()
    prediction[:wrong_rows] = 1 - prediction[:wrong_rows]
    uncertainty = np.zeros((8, 8))
    uncertainty[:2] = 0.8  # the top two rows are uncertain
    uncertainty[2:4] = 0.4
    return {
        "image": np.full((3, 8, 8), 0.5),
        "mask": mask,
        "prediction": prediction,
        "uncertainty": uncertainty,
        "title": title,
    }


def test_reliable_mask_summary_hand_computed():
    case = make_case("a", wrong_rows=2)  # errors = rows 0-1 (16 pixels)
    summary = reliable_mask_summary(case, threshold=0.5)  # unreliable = rows 0-1
    assert summary["reliable_share"] == pytest.approx(48 / 64)
    assert summary["error_rate_reliable"] == 0.0
    assert summary["error_rate_unreliable"] == 1.0
    assert summary["errors_flagged"] == 1.0
    assert summary["ueo"] == 1.0
    summary = reliable_mask_summary(case, threshold=0.3)  # unreliable = rows 0-3 (32 pixels)
    assert summary["ueo"] == pytest.approx(2 * 16 / (32 + 16))
    assert summary["error_rate_unreliable"] == 0.5


def test_reliable_mask_summary_empty_regions():
    case = make_case("a", wrong_rows=0)
    summary = reliable_mask_summary(case, threshold=1.0)
    assert np.isnan(summary["error_rate_unreliable"])
    assert np.isnan(summary["errors_flagged"])
    assert summary["ueo"] == 1.0  # no errors and nothing flagged: perfect overlap of two empty sets


def test_explorer_builds_and_updates_on_slider_and_dropdown():
    cases = [make_case("first", wrong_rows=2), make_case("second", wrong_rows=4)]
    explorer = UncertaintyExplorer(cases, threshold=0.5)
    assert [label for label, _ in explorer.image_select.options] == ["first", "second"]
    first_png = bytes(explorer.picture.value)
    assert first_png.startswith(b"\x89PNG")
    assert "UEO at t</td><td>1.000" in explorer.readout.value

    explorer.threshold.value = 0.3
    assert bytes(explorer.picture.value) != first_png
    assert "UEO at t</td><td>0.667" in explorer.readout.value

    explorer.image_select.value = 1  # errors rows 0-3 = unreliable rows 0-3 at t = 0.3
    assert explorer.case is cases[1]
    assert "UEO at t</td><td>1.000" in explorer.readout.value
    assert plt.get_fignums() == []  # every redraw closes its figure


def test_explorer_says_why_a_rate_is_missing_instead_of_nan():
    case = make_case("a", wrong_rows=0)  # no error at all
    explorer = UncertaintyExplorer([case], threshold=1.0)  # every pixel reliable
    readout = explorer.readout.value
    assert "error rate inside the reliable mask</td><td>0.000" in readout
    assert "error rate outside it</td><td>— (every pixel is reliable)" in readout
    assert "share of errors flagged (u > t)</td><td>— (no error to flag)" in readout
    assert "nan" not in readout.lower()

    case = make_case("b", wrong_rows=2)
    case["uncertainty"] = np.full((8, 8), 0.8)
    explorer = UncertaintyExplorer([case], threshold=0.5)  # no pixel reliable
    readout = explorer.readout.value
    assert "error rate inside the reliable mask</td><td>— (no pixel is reliable)" in readout
    assert "error rate outside it</td><td>0.250" in readout  # 16 errors in 64 pixels
    assert "nan" not in readout.lower()


def test_explorer_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one case"):
        UncertaintyExplorer([])
    with pytest.raises(ValueError, match="threshold must lie"):
        UncertaintyExplorer([make_case("a", 1)], threshold=1.5)


def test_explorer_pictures_are_drawn_sharp_and_shown_at_a_fixed_width():
    explorer = UncertaintyExplorer([make_case("a", wrong_rows=2)], dpi=60)
    width, _ = png_size(bytes(explorer.picture.value))
    assert int(explorer.picture.width) == round(width / PIXEL_RATIO)
    assert explorer.picture.layout.align_self == "flex-start"  # not stretched by the VBox
    doubled = UncertaintyExplorer([make_case("a", wrong_rows=2)], dpi=120)
    assert int(doubled.picture.width) == pytest.approx(2 * int(explorer.picture.width), abs=2)

    box = dirichlet_explorer(dpi=80)
    picture = box.children[1]
    width, height = png_size(bytes(picture.value))
    # figsize (3.6, 3.3) inches, cropped tight: never wider than 3.6 in at 80 dpi on screen
    assert 150 < int(picture.width) <= 3.6 * 80
    assert width == pytest.approx(PIXEL_RATIO * int(picture.width), abs=PIXEL_RATIO)


def test_png_size_rejects_other_bytes():
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, False),  # papermill, nbval, plain python: nobody to move a slider
        ({"JPY_SESSION_NAME": "notebooks/06_uncertainty_maps.ipynb"}, True),  # Jupyter server
        ({"JPY_SESSION_NAME": "x.ipynb", "UMLKIT_INTERACTIVE": "0"}, False),
        ({"UMLKIT_INTERACTIVE": "yes"}, True),
    ],
)
def test_resolve_interactive_from_the_environment(monkeypatch, environment, expected):
    for name in ("JPY_SESSION_NAME", widgets.INTERACTIVE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert resolve_interactive(None) is expected
    assert resolve_interactive(True) is True  # an explicit value always wins
    assert resolve_interactive(False) is False


def test_resolve_interactive_rejects_a_garbled_override(monkeypatch):
    monkeypatch.setenv(widgets.INTERACTIVE_ENV, "maybe")
    with pytest.raises(ValueError, match="UMLKIT_INTERACTIVE"):
        resolve_interactive(None)
