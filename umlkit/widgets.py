"""ipywidgets explorers for the notebooks.

The explorers draw with :mod:`umlkit.plots` and show the drawing as a PNG in an
:class:`ipywidgets.Image`, so they also work (and can be tested) without a Jupyter frontend: changing
a control updates the ``value`` of the image and of the read-out. In a notebook, display the
``widget`` attribute.

Whether a notebook shows an explorer is decided by :func:`resolve_interactive`: notebooks 02 and 06
default to ``interactive = None``, which means "yes in a live frontend (JupyterLab, Jupyter Notebook,
VS Code), no where nobody could move a slider" (papermill, nbval), so a student who runs all cells
gets the sliders and ``umlkit figures`` still draws the static figures.

The pictures are drawn at :data:`PIXEL_RATIO` times the resolution at which they are shown and
displayed at a fixed width (:func:`show_png`): a browser on a high-DPI screen then has a device pixel
for every pixel of the PNG, and the picture is never stretched to the width of the cell.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from umlkit import metrics, plots

#: Environment variable that forces :func:`resolve_interactive`: ``1`` (explorers) or ``0`` (static).
INTERACTIVE_ENV = "UMLKIT_INTERACTIVE"

#: PNG pixels per displayed (CSS) pixel: 2 stays sharp on the usual high-DPI ("retina") screens.
PIXEL_RATIO = 2


def resolve_interactive(interactive: bool | None = None) -> bool:
    """Whether a notebook should show its ipywidgets explorer.

    Args:
        interactive: the notebook's ``interactive`` parameter. ``True`` or ``False`` is returned
            as it is; ``None`` asks this function to decide.

    Returns:
        For ``None``: the value of ``$UMLKIT_INTERACTIVE`` (``1``/``true``/``yes`` or
        ``0``/``false``/``no``) when it is set; otherwise ``True`` exactly when the kernel serves a
        live notebook frontend. Jupyter's server (JupyterLab, Jupyter Notebook 7) starts a
        notebook's kernel with ``$JPY_SESSION_NAME`` set to the notebook's path, and VS Code
        defines ``__vsc_ipynb_file__`` in the user namespace. papermill and nbval start their
        kernels themselves, with neither, so ``umlkit figures`` and ``make test`` draw the static
        figures.

    Raises:
        ValueError: ``$UMLKIT_INTERACTIVE`` holds something else.
    """
    if interactive is not None:
        return bool(interactive)
    forced = os.environ.get(INTERACTIVE_ENV, "").strip().lower()
    if forced:
        if forced in {"1", "true", "yes"}:
            return True
        if forced in {"0", "false", "no"}:
            return False
        raise ValueError(f"${INTERACTIVE_ENV} must be 1 or 0 (true/false, yes/no); got {forced!r}")
    if os.environ.get("JPY_SESSION_NAME"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    shell = get_ipython()
    return shell is not None and "__vsc_ipynb_file__" in shell.user_ns


def figure_png(fig: plt.Figure, dpi: int = 90) -> bytes:
    """Render ``fig`` to PNG bytes and close it (an explorer redraws often; figures must not pile up)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels of a PNG, read from its header (the IHDR chunk).

    Raises:
        ValueError: ``png`` is not a PNG.
    """
    if len(png) < 24 or not png.startswith(b"\x89PNG\r\n\x1a\n") or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def show_png(picture: widgets.Image, fig: plt.Figure, dpi: int) -> None:
    """Draw ``fig`` into ``picture`` sharp on high-DPI screens and at its own size.

    The figure is rendered at ``dpi * PIXEL_RATIO`` and the image is given the width it has at
    ``dpi``. The explicit width also keeps the boxes of ipywidgets (flex boxes that stretch their
    children) from scaling the picture up to the width of the cell; ``max-width: 100%`` still
    shrinks it in a narrow window.

    Args:
        picture: the image widget to update.
        fig: the figure; it is closed.
        dpi: the resolution at which the figure is *shown* (CSS pixels per inch of the figure).
    """
    png = figure_png(fig, dpi=dpi * PIXEL_RATIO)
    width, _ = png_size(png)
    picture.value = png
    picture.width = f"{round(width / PIXEL_RATIO)}"
    picture.layout.max_width = "100%"
    picture.layout.height = "auto"
    picture.layout.align_self = "flex-start"


def reliable_mask_summary(case: Mapping[str, Any], threshold: float) -> dict[str, float]:
    r"""What the reliable mask ``uncertainty <= threshold`` keeps and which errors it flags.

    Args:
        case: a mapping with ``mask``, ``prediction`` and ``uncertainty`` maps of one image.
        threshold: the uncertainty threshold t.

    Returns:
        ``reliable_share`` (share of pixels with u <= t), ``error_rate_reliable`` and
        ``error_rate_unreliable`` (error rates inside and outside the reliable mask; NaN where a
        region is empty), ``errors_flagged`` (share of the errors with u > t) and ``ueo``, the
        uncertainty-error overlap :math:`2|U \cap E| / (|U| + |E|)` of :math:`U = \{u > t\}` and
        the error mask :math:`E` (:func:`umlkit.metrics.uncertainty_error_overlap`; 1.0 when both
        are empty).
    """
    error = metrics.error_map(case["prediction"], case["mask"])
    unreliable = np.asarray(case["uncertainty"]) > threshold
    reliable = ~unreliable
    return {
        "reliable_share": float(reliable.mean()),
        "error_rate_reliable": float(error[reliable].mean()) if reliable.any() else float("nan"),
        "error_rate_unreliable": (
            float(error[unreliable].mean()) if unreliable.any() else float("nan")
        ),
        "errors_flagged": float(unreliable[error].mean()) if error.any() else float("nan"),
        "ueo": metrics.uncertainty_error_overlap(case["uncertainty"], error, threshold),
    }


class UncertaintyExplorer:
    """Choose an image; see it with its ground truth, prediction, pixel uncertainty and errors.

    A slider sets the reliable-mask threshold t: pixels with uncertainty u <= t count as reliable.
    The read-out says how many pixels stay reliable, the error rate inside and outside the reliable
    mask, and the uncertainty-error overlap (UEO) at t.

    Attributes:
        image_select: a dropdown over the cases.
        threshold: the threshold slider.
        picture: the drawn panels (PNG).
        readout: an HTML table of :func:`reliable_mask_summary`.
        widget: the assembled box to ``display``.

    Example::

        explorer = UncertaintyExplorer(cases, threshold=0.3)
        display(explorer.widget)
    """

    def __init__(
        self,
        cases: Sequence[Mapping[str, Any]],
        *,
        threshold: float = 0.5,
        num_classes: int | None = None,
        dpi: int = 90,
    ) -> None:
        """Build the explorer.

        Args:
            cases: mappings with ``image``, ``mask``, ``prediction``, ``uncertainty`` and optionally
                ``title`` (the dropdown label; default "image <i>"); see :mod:`umlkit.plots`.
            threshold: initial reliable-mask threshold in [0, 1].
            num_classes: segmentation classes (default: from the masks).
            dpi: resolution at which the panels are shown (drawn at :data:`PIXEL_RATIO` times it).

        Raises:
            ValueError: if there are no cases or the threshold is outside [0, 1].
        """
        if not cases:
            raise ValueError("UncertaintyExplorer needs at least one case")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1]; got {threshold}")
        self.cases = list(cases)
        self.num_classes = (
            int(max(np.max(case["mask"]) for case in self.cases)) + 1
            if num_classes is None
            else num_classes
        )
        self.dpi = dpi
        options = [(str(case.get("title", f"image {i}")), i) for i, case in enumerate(self.cases)]
        self.image_select = widgets.Dropdown(options=options, value=0, description="image")
        self.threshold = widgets.FloatSlider(
            value=threshold,
            min=0.0,
            max=1.0,
            step=0.01,
            description="threshold t",
            continuous_update=False,
            readout_format=".2f",
        )
        self.picture = widgets.Image(format="png")
        self.readout = widgets.HTML()
        self.widget = widgets.VBox(
            [widgets.HBox([self.image_select, self.threshold]), self.picture, self.readout]
        )
        self.image_select.observe(self.update, names="value")
        self.threshold.observe(self.update, names="value")
        self.update()

    @property
    def case(self) -> Mapping[str, Any]:
        """The case chosen in the dropdown."""
        return self.cases[self.image_select.value]

    def update(self, change: Any = None) -> None:
        """Redraw the panels and the read-out for the current image and threshold."""
        threshold = float(self.threshold.value)
        fig = plots.uncertainty_overlay(
            self.case, threshold=threshold, num_classes=self.num_classes
        )
        show_png(self.picture, fig, self.dpi)
        summary = reliable_mask_summary(self.case, threshold)
        rows = "".join(
            f"<tr><td>{_SUMMARY_LABELS[key]}</td><td>{_readout_value(key, value)}</td></tr>"
            for key, value in summary.items()
        )
        self.readout.value = f"<table>{rows}</table>"


_SUMMARY_LABELS = {
    "reliable_share": "share of pixels reliable (u ≤ t)",
    "error_rate_reliable": "error rate inside the reliable mask",
    "error_rate_unreliable": "error rate outside it",
    "errors_flagged": "share of errors flagged (u > t)",
    "ueo": "UEO at t",
}

#: What the read-out shows where a rate is undefined, since its region is empty.
_UNDEFINED = {
    "error_rate_reliable": "— (no pixel is reliable)",
    "error_rate_unreliable": "— (every pixel is reliable)",
    "errors_flagged": "— (no error to flag)",
}


def _readout_value(key: str, value: float) -> str:
    """A summary value to 3 decimals, or why there is none (a rate over no pixels is NaN)."""
    if np.isnan(value):
        return _UNDEFINED.get(key, "—")
    return f"{value:.3f}"


def dirichlet_explorer(alpha: Sequence[float] = (2.0, 2.0, 2.0), *, dpi: int = 90) -> widgets.VBox:
    r"""Three sliders for :math:`\alpha` of a 3-class Dirichlet and its density on the simplex.

    The read-out gives the strength :math:`S`, belief :math:`b_k = (\alpha_k - 1)/S`, expected
    probability :math:`p_k = \alpha_k/S` and uncertainty :math:`u = 3/S` (:mod:`umlkit.evidential`).

    Args:
        alpha: initial concentrations, each in [1, 30].
        dpi: resolution at which the drawing is shown (drawn at :data:`PIXEL_RATIO` times it).

    Returns:
        A box with the sliders (``box.children[0].children``), the picture (``box.children[1]``,
        an :class:`ipywidgets.Image`) and the read-out (``box.children[2]``).

    Raises:
        ValueError: if ``alpha`` is not three numbers in [1, 30].
    """
    import torch

    from umlkit.evidential import dirichlet_from_alpha

    if len(alpha) != 3 or any(not 1.0 <= a <= 30.0 for a in alpha):
        raise ValueError(f"alpha must be three numbers in [1, 30], got {tuple(alpha)}")
    sliders = [
        widgets.FloatSlider(
            value=float(a),
            min=1.0,
            max=30.0,
            step=0.5,
            description=f"α{k + 1}",
            continuous_update=False,
        )
        for k, a in enumerate(alpha)
    ]
    picture = widgets.Image(format="png")
    readout = widgets.HTML()

    def update(change: Any = None) -> None:
        values = [slider.value for slider in sliders]
        fig, ax = plt.subplots(figsize=(3.6, 3.3))
        plots.draw_dirichlet_simplex(ax, values)
        show_png(picture, fig, dpi)
        stats = dirichlet_from_alpha(torch.tensor([values], dtype=torch.float64))
        readout.value = (
            f"S = {float(stats.strength):.1f}, u = {float(stats.uncertainty):.3f}<br>"
            f"belief b = {np.round(stats.belief[0].numpy(), 3).tolist()}<br>"
            f"probability p = α/S = {np.round(stats.prob[0].numpy(), 3).tolist()}"
        )

    for slider in sliders:
        slider.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox(sliders), picture, readout])
