"""Semi-supervised segmentation: CAML, BURL and their baselines in one training loop.

Modules, in reading order:

- :mod:`umlkit.semi.sampler` — which images keep their masks, and batches that always mix
  labeled and unlabeled images (an epoch is one pass over the labeled images).
- :mod:`umlkit.semi.ema` — the EMA teacher, :math:`\\alpha = \\min(1 - 1/(t+1), 0.99)`, and the
  sigmoid ramp-up :math:`r(t) = \\exp(-5(1 - \\min(t, L)/L)^2)`.
- :mod:`umlkit.semi.base` — the method interface and the supervised loss every method shares.
- :mod:`umlkit.semi.baselines` — supervised-only and mean teacher.
- :mod:`umlkit.semi.caml` — CAML (MICCAI 2023): two U-Nets, cross-sample mutual attention,
  mutual consistency with sharpening, omni-correlation consistency.
- :mod:`umlkit.semi.correlation` — CAML's omni-correlation consistency: the memory of labeled
  pixels, the choice of queries and the loss.
- :mod:`umlkit.semi.burl` — BURL (2025), as umlkit rebuilds it: uncertainty-weighted supervision
  on labeled images, pseudo-labels only where the teacher is certain on unlabeled ones.
- :mod:`umlkit.semi.methods` — the methods by name: build one, rebuild one from a checkpoint.
- :mod:`umlkit.semi.loop` — the training loop (checkpoints, resume, cache).
- :mod:`umlkit.semi.experiments` — the method x dataset x label fraction x seed comparison.
"""

from umlkit.semi.base import PixelPrediction, Progress, SemiSupervisedMethod, normalized_entropy
from umlkit.semi.baselines import MeanTeacher, SupervisedOnly
from umlkit.semi.burl import BURL, uncertainty_regions
from umlkit.semi.caml import CAML, CrossSampleMutualAttention, mutual_consistency_loss, sharpen
from umlkit.semi.correlation import CorrelationMemory, omni_correlation_loss
from umlkit.semi.ema import ema_alpha, sigmoid_rampup, update_ema
from umlkit.semi.experiments import (
    comparison_configs,
    describe_differences,
    label_effect,
    paired_differences,
    run_comparison,
    run_means,
    seeds_by_fraction,
    summary_table,
    trust_cases,
)
from umlkit.semi.loop import SemiConfig, SemiResult, fit_semi, get_or_train_semi
from umlkit.semi.methods import METHODS, build_method, load_method
from umlkit.semi.sampler import TwoStreamBatchSampler, split_labeled

__all__ = [
    "BURL",
    "CAML",
    "METHODS",
    "CorrelationMemory",
    "CrossSampleMutualAttention",
    "MeanTeacher",
    "PixelPrediction",
    "Progress",
    "SemiConfig",
    "SemiResult",
    "SemiSupervisedMethod",
    "SupervisedOnly",
    "TwoStreamBatchSampler",
    "build_method",
    "comparison_configs",
    "describe_differences",
    "label_effect",
    "ema_alpha",
    "fit_semi",
    "get_or_train_semi",
    "load_method",
    "mutual_consistency_loss",
    "normalized_entropy",
    "omni_correlation_loss",
    "paired_differences",
    "run_comparison",
    "run_means",
    "seeds_by_fraction",
    "sharpen",
    "sigmoid_rampup",
    "split_labeled",
    "summary_table",
    "trust_cases",
    "uncertainty_regions",
    "update_ema",
]
