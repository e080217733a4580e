"""The shared look of every umlkit figure: theme, colours and the helpers all topic modules use.

Conventions every plotting function follows:

* images are ``(C, H, W)`` or ``(H, W, C)`` floats in [0, 1], or ``(H, W)`` grey;
* masks and predictions are integer class maps ``(H, W)``;
* pixel uncertainty is a ``(H, W)`` map in [0, 1] (u = K / S of the pixel's Dirichlet).

Class maps use :data:`CLASS_COLOURS` and uncertainty maps :data:`UNCERTAINTY_CMAP` on the
square-root scale of :func:`uncertainty_norm` in every figure, so
a student who has read one gallery can read them all. Call :func:`set_theme` once
(``umlkit.profiles.setup_notebook`` does) so every figure shares the theme.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap, PowerNorm

#: Colours of the class maps: background, then foreground classes (lesion / rim, cup).
CLASS_COLOURS = ("#1b1b1b", "#e6a23c", "#3c8ee6", "#6cc46c")
#: Colour map of pixel uncertainty (dark = certain, bright = uncertain).
UNCERTAINTY_CMAP = "magma"
#: Exponent of the uncertainty maps' colour scale (see :func:`uncertainty_norm`).
UNCERTAINTY_GAMMA = 0.5
#: Tick marks of an uncertainty colour bar: dense at the low end, where the square-root scale is.
UNCERTAINTY_TICKS = (0.0, 0.02, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
#: Colour of misclassified pixels / the calibration gap.
ERROR_COLOUR = "#d62728"
#: The models the notebooks compare, in notebook 04's order. Each keeps its colour of seaborn's
#: default palette in every figure (:func:`model_styles`): UML is blue in all of them.
MODEL_ORDER = (
    "UML", "UML w/o navigator", "UML w/o instructor", "UML softmax head", "UML + navigated output",
    "multitask", "segmentation only", "classification only",
)  # fmt: skip
#: Line styles of the first, second, ... curve of one model in a figure (UML's u and its max p).
REPEAT_STYLES = ("-", "--", ":", "-.")


def model_styles(labels: Sequence[str]) -> list[tuple[tuple[float, float, float], str]]:
    """A colour and a line style for each curve label, the same for a model in every figure.

    A label names a model of :data:`MODEL_ORDER` when it is the name or starts with it followed
    by a space, a comma, a bracket or a colon (``"UML, u = K/S"``, ``"multitask [entropy]"``);
    the longest such name wins (``"UML softmax head"``, not ``"UML"``). The model's colour is its
    place in :data:`MODEL_ORDER` in seaborn's default palette; a model's second and later curves
    in one figure take the next line style of :data:`REPEAT_STYLES`, so that two curves of UML
    lying on each other still show both. Labels that name no model get the palette's colours
    after those of the models (from its first colour where no label names one), solid.

    >>> [style for _, style in model_styles(["UML, u = K/S", "UML, max p", "multitask"])]
    ['-', '--', '-']
    """
    palette = sns.color_palette("deep", n_colors=10)
    named = [_model_named(label) for label in labels]
    # labels naming no model take the colours after the models', or all of them if none is named
    others = itertools.count(len(MODEL_ORDER) if any(named) else 0)
    seen: dict[str, int] = {}
    styles = []
    for model in named:
        if model is None:
            styles.append((palette[next(others) % len(palette)], "-"))
            continue
        repeat = seen.get(model, 0)
        seen[model] = repeat + 1
        colour = palette[MODEL_ORDER.index(model)]
        styles.append((colour, REPEAT_STYLES[repeat % len(REPEAT_STYLES)]))
    return styles


def _model_named(label: str) -> str | None:
    """The longest name of :data:`MODEL_ORDER` that ``label`` is or starts with (then followed
    by one of `` ,[(:``), or None."""
    names = [
        name
        for name in MODEL_ORDER
        if label == name or (label.startswith(name) and label[len(name)] in " ,[(:")
    ]
    return max(names, key=len) if names else None


def readable(name: object) -> str:
    """A column name as a figure writes it: ``"low_contrast"`` -> ``"low contrast"``."""
    return str(name).replace("_", " ")


def set_theme() -> None:
    """The one plotting theme of umlkit (seaborn "notebook" context, white grid)."""
    sns.set_theme(context="notebook", style="whitegrid")


def uncertainty_norm() -> PowerNorm:
    """The colour scale of every uncertainty map: u in [0, 1] drawn as ``sqrt(u)``.

    Most pixels of a trained segmenter have an uncertainty u = K/S well below 0.4; on a linear
    magma scale they would all be near black and the structure inside them (a faint ring around
    the lesion, a hair) invisible. The square root stretches the low end: u = 0.04 lands where
    0.2 would on a linear scale, u = 0.25 where 0.5 would, while 0 stays black and 1 stays white.
    Draw the colour bar (its ticks :data:`UNCERTAINTY_TICKS`) so the scale can be read back.

    Returns:
        A new norm for each image (matplotlib norms carry state, so images do not share one).
    """
    return PowerNorm(gamma=UNCERTAINTY_GAMMA, vmin=0.0, vmax=1.0)


def check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Fail early, naming what is missing, when a table lacks a column a figure needs.

    Args:
        frame: the table handed to a plotting function.
        columns: the columns the figure reads.
        name: what the table is, for the message (e.g. ``"runs table"``).

    Raises:
        ValueError: listing the missing columns and the ones the table has.
    """
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")


def as_display_image(image: np.ndarray) -> np.ndarray:
    """An image as matplotlib shows it: ``(H, W, 3)`` or ``(H, W)``, from ``(C, H, W)`` if needed."""
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W), (C, H, W) or (H, W, C); got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def class_cmap(num_classes: int) -> ListedColormap:
    """The colour map of a class map with ``num_classes`` classes (at least two colours).

    Draw with ``vmin=0, vmax=max(num_classes, 2) - 1`` so class ``k`` always gets
    ``CLASS_COLOURS[k]``, whichever classes a particular mask happens to contain.
    """
    return ListedColormap(CLASS_COLOURS[: max(num_classes, 2)])
