"""Every figure the notebooks draw, in one seaborn theme, one module per topic.

Each function takes plain arrays or pandas tables (never a model), draws one figure and returns the
:class:`matplotlib.figure.Figure`, so a notebook can show it and save it with
``ctx.save_figure(fig, "name")``. Numbers shown in a legend or a title (an ECE, an AUROC) are computed
by :mod:`umlkit.metrics` and passed in as the panel's or curve's name: a plot never recomputes a metric
in its own way.

Where to find a figure (every name is also available here, as ``plots.<name>``):

=========================================  =====================================================
module                                     draws
=========================================  =====================================================
:mod:`umlkit.plots.style`                  the shared theme, colours and image helpers
:mod:`umlkit.plots.data` (01)              dataset grids, factor histograms and flag shares,
                                           class balance
:mod:`umlkit.plots.primer` (02)            Dirichlets on the simplex, evidence and loss sweeps,
                                           the 2-D toy's uncertainty maps
:mod:`umlkit.plots.training` (03)          training curves, factor weights of a classifier
:mod:`umlkit.plots.ablations` (04)         variants against each other over seeds, their
                                           paired differences
:mod:`umlkit.plots.calibration` (05)       reliability diagrams, predicted vs true probability
                                           (2-D histograms)
:mod:`umlkit.plots.uncertainty_maps` (06)  galleries of uncertainty maps, UEO, error detection,
                                           uncertainty against the generator's factors
:mod:`umlkit.plots.robustness` (07)        metrics under corruption, OOD score histograms
:mod:`umlkit.plots.failure_cases` (08)     risk-coverage, failures against factors and flags
:mod:`umlkit.plots.semi` (09)              label-fraction curves, validation curves, what each
                                           semi-supervised method trusted
=========================================  =====================================================

The numbers are the notebooks that draw them first; a later notebook may reuse an earlier figure
(notebook 08 shows an :func:`uncertainty_gallery` of its failure cases). The conventions for image,
mask and uncertainty arrays are in :mod:`umlkit.plots.style`, and so is :func:`model_styles`, which
gives each compared model its colour in every figure. Call :func:`set_theme` once
(``umlkit.profiles.setup_notebook`` does) so every figure shares the theme.
"""

from umlkit.plots.ablations import METRIC_UNITS, SPREADS_SHOWN, metric_comparison
from umlkit.plots.calibration import (
    COUNT_CMAP,
    MIN_BIN_OPACITY,
    MIN_BIN_WIDTH,
    MIN_COLUMN_COUNT,
    RELIABILITY_COLUMNS,
    bin_opacity,
    calibration_against_truth,
    reliability_diagram,
    reliability_diagrams,
)
from umlkit.plots.data import class_balance, dataset_grid, factor_distributions, is_flag
from umlkit.plots.failure_cases import factor_effects, rate_by_flag, risk_coverage
from umlkit.plots.primer import (
    SIMPLEX_CORNERS,
    SIMPLEX_SCALE,
    dirichlet_log_density,
    dirichlet_simplex,
    draw_dirichlet_simplex,
    evidence_curves,
    loss_curves,
    toy_uncertainty_maps,
    uncertainty_distance_curves,
)
from umlkit.plots.robustness import (
    METRIC_LABELS,
    SEVERITY_LABELS,
    UNCERTAINTY_MEASURES,
    ood_histograms,
    robustness_curves,
)
from umlkit.plots.semi import (
    label_fraction_curves,
    still_improving,
    trust_gallery,
    validation_curves,
)
from umlkit.plots.style import (
    CLASS_COLOURS,
    ERROR_COLOUR,
    MODEL_ORDER,
    REPEAT_STYLES,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_GAMMA,
    UNCERTAINTY_TICKS,
    as_display_image,
    check_columns,
    class_cmap,
    model_styles,
    readable,
    set_theme,
    uncertainty_norm,
)
from umlkit.plots.training import (
    CURVE_NAMES,
    LEARNING_METRICS,
    LOSS_COLUMNS,
    STAR,
    STAR_SPACING,
    VALIDATION_COLUMNS,
    factor_weight_bars,
    learning_curves,
    training_curves,
)
from umlkit.plots.uncertainty_maps import (
    GALLERY_COLUMNS,
    RELIABLE_VIEW,
    error_detection_curves,
    factor_scatter,
    ueo_curve,
    uncertainty_gallery,
    uncertainty_overlay,
)

__all__ = [
    # style
    "CLASS_COLOURS",
    "ERROR_COLOUR",
    "MODEL_ORDER",
    "REPEAT_STYLES",
    "UNCERTAINTY_CMAP",
    "UNCERTAINTY_GAMMA",
    "UNCERTAINTY_TICKS",
    "as_display_image",
    "check_columns",
    "class_cmap",
    "model_styles",
    "readable",
    "set_theme",
    "uncertainty_norm",
    # data (01)
    "class_balance",
    "dataset_grid",
    "factor_distributions",
    "is_flag",
    # primer (02)
    "SIMPLEX_CORNERS",
    "SIMPLEX_SCALE",
    "dirichlet_log_density",
    "dirichlet_simplex",
    "draw_dirichlet_simplex",
    "evidence_curves",
    "loss_curves",
    "toy_uncertainty_maps",
    "uncertainty_distance_curves",
    # training (03)
    "CURVE_NAMES",
    "LEARNING_METRICS",
    "LOSS_COLUMNS",
    "STAR",
    "STAR_SPACING",
    "VALIDATION_COLUMNS",
    "factor_weight_bars",
    "learning_curves",
    "training_curves",
    # ablations (04)
    "METRIC_UNITS",
    "SPREADS_SHOWN",
    "metric_comparison",
    # calibration (05)
    "COUNT_CMAP",
    "MIN_BIN_OPACITY",
    "MIN_BIN_WIDTH",
    "MIN_COLUMN_COUNT",
    "RELIABILITY_COLUMNS",
    "bin_opacity",
    "calibration_against_truth",
    "reliability_diagram",
    "reliability_diagrams",
    # uncertainty maps (06)
    "GALLERY_COLUMNS",
    "RELIABLE_VIEW",
    "error_detection_curves",
    "factor_scatter",
    "ueo_curve",
    "uncertainty_gallery",
    "uncertainty_overlay",
    # robustness (07)
    "METRIC_LABELS",
    "SEVERITY_LABELS",
    "UNCERTAINTY_MEASURES",
    "ood_histograms",
    "robustness_curves",
    # failure cases (08)
    "factor_effects",
    "rate_by_flag",
    "risk_coverage",
    # semi-supervised (09)
    "label_fraction_curves",
    "still_improving",
    "trust_gallery",
    "validation_curves",
]
