"""Figures of the evidential primer (notebook 02): Dirichlets, evidence sweeps and the 2-D toy.

A K-class Dirichlet :math:`\\mathrm{Dir}(\alpha)` is drawn on the probability simplex
(:func:`dirichlet_simplex`, :func:`draw_dirichlet_simplex` for the explorer of :mod:`umlkit.widgets`);
:func:`evidence_curves` and :func:`loss_curves` show how belief, uncertainty and the evidential losses
respond to evidence; :func:`toy_uncertainty_maps` and :func:`uncertainty_distance_curves` show where a
2-D toy classifier is uncertain. The inputs come from :mod:`umlkit.toy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from umlkit.plots.style import UNCERTAINTY_CMAP, check_columns

#: Corners of the 3-class probability simplex drawn as an equilateral triangle (class 1, 2, 3).
SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]])


def _simplex_mesh(subdivisions: int):
    """A fine triangulation of the simplex and the barycentric coordinates of its nodes."""
    from matplotlib.tri import Triangulation, UniformTriRefiner

    mesh = UniformTriRefiner(
        Triangulation(SIMPLEX_CORNERS[:, 0], SIMPLEX_CORNERS[:, 1])
    ).refine_triangulation(subdiv=subdivisions)
    third = mesh.y / SIMPLEX_CORNERS[2, 1]
    second = mesh.x - 0.5 * third
    barycentric = np.clip(np.stack([1.0 - second - third, second, third], axis=1), 1e-9, 1.0)
    return mesh, barycentric / barycentric.sum(axis=1, keepdims=True)


def dirichlet_log_density(alpha: Sequence[float], points: np.ndarray) -> np.ndarray:
    r"""Log density of :math:`\mathrm{Dir}(\alpha)` at probability vectors ``points`` ``(n, K)``.

    :math:`\ln p(x) = \ln\Gamma(S) - \sum_k \ln\Gamma(\alpha_k) + \sum_k (\alpha_k - 1)\ln x_k`.
    """
    from scipy.special import gammaln

    alpha = np.asarray(alpha, dtype=float)
    return (
        gammaln(alpha.sum()) - gammaln(alpha).sum() + (np.log(points) * (alpha - 1.0)).sum(axis=1)
    )


#: What the simplex panels' colours mean (:func:`dirichlet_simplex`).
SIMPLEX_SCALE = (
    "colour: the density, scaled per panel (dark = lowest, yellow = highest); one colour = uniform"
)


def draw_dirichlet_simplex(ax: plt.Axes, alpha: Sequence[float], subdivisions: int = 6) -> None:
    """Draw the density of a 3-class ``Dir(alpha)`` on the simplex into ``ax``, mean marked."""
    alpha = np.asarray(alpha, dtype=float)
    if alpha.shape != (3,) or np.any(alpha <= 0):
        raise ValueError(f"alpha must be 3 positive numbers, got {alpha.tolist()}")
    mesh, points = _simplex_mesh(subdivisions)
    density = np.exp(dirichlet_log_density(alpha, points))
    # rasterized: thousands of contour polygons would make the PDF heavy and slow to write
    ax.tricontourf(mesh, density, levels=20, cmap="viridis", rasterized=True)
    mean = (alpha / alpha.sum()) @ SIMPLEX_CORNERS
    ax.plot(*mean, marker="o", color="white", markeredgecolor="black", markersize=6)
    outline = np.vstack([SIMPLEX_CORNERS, SIMPLEX_CORNERS[:1]])
    ax.plot(outline[:, 0], outline[:, 1], color="black", linewidth=0.8)
    for corner, label, offset in zip(
        SIMPLEX_CORNERS,
        ("class 1", "class 2", "class 3"),
        ((-0.02, -0.07), (0.02, -0.07), (0, 0.03)),
        strict=True,
    ):
        ax.text(corner[0] + offset[0], corner[1] + offset[1], label, ha="center", fontsize="small")
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.12, 0.95)
    ax.axis("off")


def dirichlet_simplex(
    alphas: Sequence[Sequence[float]],
    *,
    ncols: int = 4,
    subdivisions: int = 6,
    panel_size: float = 3.0,
) -> Figure:
    r"""Densities of 3-class Dirichlets on the probability simplex, one panel per ``alpha``.

    Each panel's title gives :math:`\alpha`, the strength :math:`S = \sum_k \alpha_k` and the
    uncertainty :math:`u = K/S`; the white dot is the expected probability :math:`\alpha/S`.
    Colours are scaled per panel (densities differ by orders of magnitude).

    Args:
        alphas: concentration vectors of length 3.
        ncols: panels per row.
        subdivisions: mesh refinement (4^subdivisions triangles).
        panel_size: inches per panel.

    Returns:
        The figure, one axes per ``alpha``.
    """
    if not alphas:
        raise ValueError("dirichlet_simplex needs at least one alpha")
    ncols = min(ncols, len(alphas))
    nrows = int(np.ceil(len(alphas) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols, panel_size * 0.95 * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax, alpha in zip(axes.flat, alphas, strict=False):
        draw_dirichlet_simplex(ax, alpha, subdivisions)
        strength = float(np.sum(alpha))
        ax.set_title(
            f"α = ({', '.join(f'{a:g}' for a in alpha)})\nS = {strength:g}, u = {3 / strength:.2f}",
            fontsize="medium",
        )
    for ax in axes.flat[len(alphas) :]:
        ax.remove()
    # no colour bar: each panel has its own scale, which the figure has to say
    fig.suptitle(SIMPLEX_SCALE, fontsize="small")
    return fig


def evidence_curves(frame: pd.DataFrame, num_classes: int | None = None) -> Figure:
    """Belief, expected probability and uncertainty against evidence (``umlkit.toy.evidence_sweep``).

    Args:
        frame: long table with the columns ``evidence``, ``quantity`` and ``value``.
        num_classes: K of the sweep, named on the x axis (the curves' values depend on it).

    Returns:
        The figure with one axes.
    """
    check_columns(frame, ("evidence", "quantity", "value"), "evidence sweep")
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    sns.lineplot(data=frame, x="evidence", y="value", hue="quantity", errorbar=None, ax=ax)
    classes = f"K = {num_classes} classes, " if num_classes is not None else ""
    ax.set_xlabel(f"evidence for class 0 ({classes}no evidence for the others)")
    ax.set_ylabel("belief, probability, uncertainty")
    ax.set_ylim(0, 1.02)
    return fig


def loss_curves(frame: pd.DataFrame) -> Figure:
    """The evidential losses and the KL term against evidence (``umlkit.toy.loss_sweep``).

    Args:
        frame: long table with the columns ``evidence``, ``on`` (which class gets the evidence),
            ``term`` and ``value``.

    Returns:
        The figure, one axes per value of ``on``.
    """
    check_columns(frame, ("evidence", "on", "term", "value"), "loss sweep")
    panels = list(dict.fromkeys(frame["on"]))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(5 * len(panels), 3.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        sns.lineplot(
            data=frame[frame["on"] == panel],
            x="evidence",
            y="value",
            hue="term",
            errorbar=None,
            ax=ax,
        )
        ax.set_title(f"evidence on the {panel}", fontsize="medium")
        ax.set_xlabel(f"evidence on the {panel}")
        ax.set_ylabel("loss per sample")
    return fig


def toy_uncertainty_maps(
    grids: Mapping[str, Mapping[str, np.ndarray]],
    points: np.ndarray,
    labels: np.ndarray,
    *,
    ncols: int = 2,
    panel_size: float = 3.6,
) -> Figure:
    """Uncertainty maps of 2-D toy classifiers with the training data and the decision boundary.

    Args:
        grids: panel title -> a grid from ``umlkit.toy.toy_grid`` (``xx``, ``yy``, ``prob``,
            ``uncertainty`` in [0, 1]).
        points: training points ``(n, 2)``.
        labels: their classes ``(n,)``.
        ncols: panels per row.
        panel_size: inches per panel.

    Returns:
        The figure: one axes per grid (dark = certain, bright = uncertain; the black line is
        p(class 1) = 0.5) and a shared colour bar.
    """
    if not grids:
        raise ValueError("toy_uncertainty_maps needs at least one grid")
    points, labels = np.asarray(points), np.asarray(labels)
    ncols = min(ncols, len(grids))
    nrows = int(np.ceil(len(grids) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols + 0.8, panel_size * nrows),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for ax, (title, grid) in zip(axes.flat, grids.items(), strict=False):
        image = ax.pcolormesh(
            grid["xx"],
            grid["yy"],
            grid["uncertainty"],
            cmap=UNCERTAINTY_CMAP,
            vmin=0,
            vmax=1,
            shading="auto",
            rasterized=True,
        )
        # Far from RBF centres p(class 1) is flat at 0.5 and a 0.5-contour would trace rounding
        # noise there; leave those nodes out so only the real boundary is drawn.
        boundary = np.ma.masked_where(
            np.abs(grid["prob"][..., 1] - 0.5) < 1e-4, grid["prob"][..., 1]
        )
        ax.contour(grid["xx"], grid["yy"], boundary, levels=[0.5], colors="black", linewidths=1)
        for label, colour in zip(np.unique(labels), sns.color_palette("pastel"), strict=False):
            chosen = labels == label
            ax.scatter(
                *points[chosen].T, s=6, color=colour, edgecolor="none", label=f"class {label}"
            )
        ax.set_title(title, fontsize="medium")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for ax in axes.flat[len(grids) :]:
        ax.remove()
    # two measures on one scale: say which (umlkit.toy.predict_grid)
    fig.colorbar(
        image, ax=axes, shrink=0.8, label="uncertainty: K/S (evidential), entropy / ln K (softmax)"
    )
    return fig


def uncertainty_distance_curves(frame: pd.DataFrame, *, hue: str = "model") -> Figure:
    """Mean uncertainty against the distance to the nearest training point, one line per model.

    Args:
        frame: columns ``distance``, ``uncertainty`` and ``hue`` (e.g. stacked
            ``umlkit.toy.uncertainty_by_distance`` tables).

    Returns:
        The figure with one axes.
    """
    check_columns(frame, ("distance", "uncertainty", hue), "distance frame")
    fig, ax = plt.subplots(figsize=(7.0, 3.8), layout="constrained")
    sns.lineplot(
        data=frame,
        x="distance",
        y="uncertainty",
        hue=hue,
        marker="o",
        markersize=3,
        errorbar=None,
        ax=ax,
    )
    ax.set_xlabel("distance to the nearest training point")
    ax.set_ylabel("mean uncertainty")
    ax.set_title("uncertainty: K/S (evidential), entropy / ln K (softmax)", fontsize="small")
    ax.set_ylim(0, 1.02)
    # the curves run flat across the whole width far from the data: the legend goes beside them
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    return fig
