"""The experiments behind notebooks 04-08: ablations, calibration, uncertainty, robustness, failures.

The notebooks narrate, set parameters and plot; what they compute lives here, so it is tested and
every notebook computes it the same way. One module per question the notebooks study:

========================  =======================================================================
module                    what it holds
========================  =======================================================================
:mod:`.experiments`       the set-up every notebook shares: the dataset (:func:`prepare_data`,
                          :func:`prepare_ood`), the models (:data:`VARIANTS`, :data:`COMPARED`,
                          :func:`train_config`, :func:`train_variants`) and their evaluation
                          (:func:`evaluate_models`)
:mod:`.ablations`         notebook 04: tables over seeds (:func:`runs_table`,
                          :func:`summarise_runs`) and which variant wins (:func:`compare_variants`,
                          :func:`paired_differences`, :func:`describe_comparison`)
:mod:`.calibration`       notebook 05: reliability and calibration metrics of images and pixels,
                          and against the synthetic truth (:func:`truth_calibration`)
:mod:`.uncertainty_maps`  notebook 06: image and pixel uncertainty (:func:`image_uncertainty`,
                          :func:`pixel_uncertainty_maps`), galleries, and what the uncertainty
                          tracks (:func:`factor_correlations`, :func:`pixel_error_detection`)
:mod:`.robustness`        notebook 07: corrupted images (:func:`robustness_sweep`) and
                          out-of-distribution detection (:func:`ood_scores`)
:mod:`.failure_cases`     notebook 08: galleries of failures, risk-coverage curves, and the
                          factors that explain failures (:func:`factor_regression`)
:mod:`.verdicts`          notebooks 04, 05, 07, 09: a comparison is a finding only where the final
                          and the half-budget weights agree (:func:`two_budget`, :class:`Verdict`)
:mod:`.frames`            :func:`require_columns`, the column check the other modules share
========================  =======================================================================

Every public name is re-exported here, so a notebook writes ``from umlkit import analysis`` and
calls ``analysis.train_variants(...)`` without knowing which module holds it; read the module
to see how it is computed.
"""

from umlkit.analysis.ablations import (
    ABLATION_METRICS,
    LOWER_IS_BETTER,
    compare_variants,
    describe_comparison,
    describe_differences,
    describe_options,
    format_summary,
    paired_differences,
    runs_table,
    summarise_runs,
)
from umlkit.analysis.calibration import (
    PIXEL_SOURCES,
    RANKED_CALIBRATION,
    calibration_budgets,
    calibration_runs,
    calibration_table,
    confidence_direction,
    describe_calibration,
    pixel_calibration,
    pixel_calibration_study,
    reliability_panels,
    reliability_takeaways,
    truth_calibration,
    truth_slopes,
)
from umlkit.analysis.experiments import (
    COMPARED,
    ROTATION_SENSITIVE,
    VARIANTS,
    DataSpec,
    convergence_table,
    describe_convergence,
    evaluate_models,
    prepare_data,
    prepare_ood,
    train_config,
    train_variants,
)
from umlkit.analysis.failure_cases import (
    add_failure_columns,
    describe_effects,
    factor_regression,
    factor_weights,
    failure_factors,
    failure_takeaways,
    flag_rates,
    risk_coverage_curves,
    select_cases,
)
from umlkit.analysis.frames import require_columns
from umlkit.analysis.robustness import (
    ROBUSTNESS_CORRUPTIONS,
    describe_robustness,
    ood_scores,
    robustness_budgets,
    robustness_grid,
    robustness_summary,
    robustness_sweep,
    robustness_sweep_over_seeds,
    robustness_takeaways,
)
from umlkit.analysis.uncertainty_maps import (
    factor_correlations,
    image_uncertainty,
    map_cases,
    mean_pixel_uncertainty,
    pick_spread,
    pixel_error_detection,
    pixel_uncertainty_maps,
    uncertainty_map_takeaways,
    uncertainty_pile_up,
    with_entropy_uncertainty,
)
from umlkit.analysis.verdicts import (
    FINDING,
    SETTLES_NOTHING,
    Reading,
    Verdict,
    budget_note,
    findings,
    half_budget_models,
    paired_beyond_spread,
    paired_reading,
    ranking_beyond_spread,
    ranking_reading,
    settled_sentences,
    summary_reading,
    two_budget,
)

__all__ = [
    # experiments
    "COMPARED",
    "ROTATION_SENSITIVE",
    "VARIANTS",
    "DataSpec",
    "convergence_table",
    "describe_convergence",
    "evaluate_models",
    "prepare_data",
    "prepare_ood",
    "train_config",
    "train_variants",
    # ablations
    "ABLATION_METRICS",
    "LOWER_IS_BETTER",
    "compare_variants",
    "describe_comparison",
    "describe_differences",
    "describe_options",
    "format_summary",
    "paired_differences",
    "runs_table",
    "summarise_runs",
    # calibration
    "PIXEL_SOURCES",
    "RANKED_CALIBRATION",
    "calibration_budgets",
    "calibration_runs",
    "calibration_table",
    "confidence_direction",
    "describe_calibration",
    "pixel_calibration",
    "pixel_calibration_study",
    "reliability_panels",
    "reliability_takeaways",
    "truth_calibration",
    "truth_slopes",
    # uncertainty maps
    "factor_correlations",
    "image_uncertainty",
    "map_cases",
    "mean_pixel_uncertainty",
    "pick_spread",
    "pixel_error_detection",
    "pixel_uncertainty_maps",
    "uncertainty_map_takeaways",
    "uncertainty_pile_up",
    "with_entropy_uncertainty",
    # robustness and OOD
    "ROBUSTNESS_CORRUPTIONS",
    "describe_robustness",
    "ood_scores",
    "robustness_budgets",
    "robustness_grid",
    "robustness_summary",
    "robustness_sweep",
    "robustness_sweep_over_seeds",
    "robustness_takeaways",
    # failure cases
    "add_failure_columns",
    "describe_effects",
    "factor_regression",
    "factor_weights",
    "failure_factors",
    "failure_takeaways",
    "flag_rates",
    "risk_coverage_curves",
    "select_cases",
    # conclusions at two budgets
    "FINDING",
    "SETTLES_NOTHING",
    "Reading",
    "Verdict",
    "budget_note",
    "findings",
    "half_budget_models",
    "paired_beyond_spread",
    "paired_reading",
    "ranking_beyond_spread",
    "ranking_reading",
    "settled_sentences",
    "summary_reading",
    "two_budget",
    # shared checks
    "require_columns",
]
