"""Classification, calibration, segmentation and uncertainty metrics.

All metrics take numpy arrays or torch tensors (any device), validate them and raise ``ValueError``
saying what is wrong; none of them applies a softmax: pass probabilities (:math:`\\alpha/S` for
evidential models). Submodules:

- :mod:`umlkit.metrics.classification`: accuracy, F1, AUC, Cohen's kappa, sensitivity, specificity
- :mod:`umlkit.metrics.calibration`: ECE, MCE, adaptive ECE, average calibration error, Brier, NLL,
  reliability bins
- :mod:`umlkit.metrics.pixel`: streaming pixel calibration (:class:`PixelCalibration`)
- :mod:`umlkit.metrics.segmentation`: Dice, IoU, HD95, ASSD, per-class and REFUGE scores
- :mod:`umlkit.metrics.uncertainty`: UEO, uncertainty-error AUROC/AUPRC, risk-coverage, AURC,
  OOD AUROC
"""

from umlkit.metrics.calibration import (
    aece,
    average_calibration_error,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from umlkit.metrics.classification import (
    accuracy,
    auc,
    classification_report,
    cohen_kappa,
    f1_score,
    predicted_class,
    sensitivity,
    specificity,
)
from umlkit.metrics.pixel import PixelCalibration
from umlkit.metrics.segmentation import (
    assd,
    dice,
    hd95,
    iou,
    refuge_scores,
    segmentation_scores,
    surface_distances,
)
from umlkit.metrics.uncertainty import (
    aurc,
    error_map,
    ood_auroc,
    optimal_aurc,
    risk_coverage_curve,
    ueo_curve,
    uncertainty_error_auprc,
    uncertainty_error_auroc,
    uncertainty_error_overlap,
)

__all__ = [
    "PixelCalibration",
    "accuracy",
    "aece",
    "assd",
    "auc",
    "aurc",
    "average_calibration_error",
    "brier_score",
    "classification_report",
    "cohen_kappa",
    "dice",
    "error_map",
    "expected_calibration_error",
    "f1_score",
    "hd95",
    "iou",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "ood_auroc",
    "optimal_aurc",
    "predicted_class",
    "refuge_scores",
    "reliability_bins",
    "risk_coverage_curve",
    "segmentation_scores",
    "sensitivity",
    "specificity",
    "surface_distances",
    "uncertainty_error_auprc",
    "uncertainty_error_auroc",
    "uncertainty_error_overlap",
    "ueo_curve",
]
