r"""BURL: Bidirectional Uncertainty-aware Region Learning (arXiv 2502.07457, 2025), as umlkit rebuilds it.

The observation BURL starts from: the wrong pseudo-labels of a semi-supervised segmenter gather
where the model is uncertain. It therefore uses uncertainty in **both directions**:

* on **labeled** images, the *high*-uncertainty regions get **extra** supervision (that is where the
  model still has to learn);
* on **unlabeled** images, pseudo-label learning is **restricted to the low-uncertainty** regions
  (that is where the pseudo-labels can be trusted).

A student is trained; an EMA teacher (:func:`umlkit.semi.ema.update_ema`) supplies the pseudo-labels
(its argmax) and the uncertainty. The paper has no public code and its thresholds, weights and
schedules are not available here, so everything below the idea is **umlkit's reconstruction**, with
selectable, documented choices:

* uncertainty: normalised entropy of the teacher's probabilities
  (:func:`umlkit.semi.base.normalized_entropy`), or — as an umlkit option, not the paper's — the
  evidential uncertainty :math:`u = K / S` of a Dirichlet pixel head (:mod:`umlkit.evidential`);
* regions (:func:`uncertainty_regions`): a hard split at a fixed threshold, a hard split at a
  per-image quantile, or soft weights :math:`1 - U` / :math:`U`;
* labeled loss: Dice plus a pixel cross-entropy weighted by :math:`1 + \beta\,\text{uncertain}`
  (:func:`umlkit.semi.base.supervised_loss`);
* unlabeled loss: pixel cross-entropy to the teacher's argmax, averaged over the certain region
  only, ramped in with :math:`r(t)`.

References:
    BURL: Bidirectional Uncertainty-aware Region Learning for semi-supervised medical image
    segmentation. arXiv:2502.07457, 2025.
    Yu et al. Uncertainty-aware self-ensembling model for semi-supervised 3D left atrium
    segmentation (UA-MT). MICCAI 2019 (entropy-masked consistency with a mean teacher).
"""

from __future__ import annotations

import torch

from umlkit.semi.base import (
    Progress,
    SemiSupervisedMethod,
    add_input_noise,
    forward_in_parts,
    pixel_fit_loss,
    pixel_prediction,
    segmentation_unet,
    supervised_loss,
)
from umlkit.semi.ema import make_teacher, update_ema

UNCERTAINTY_KINDS = ("entropy", "evidential")

REGION_MODES = ("threshold", "quantile", "soft")


def uncertainty_regions(
    uncertainty: torch.Tensor,
    mode: str = "threshold",
    threshold: float = 0.2,
    quantile: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each image's pixels into a certain and an uncertain region (hard or soft).

    The two maps always add up to 1 at every pixel:

    * ``"threshold"``: certain = ``U < threshold``, uncertain = ``U >= threshold``;
    * ``"quantile"``: per image, certain = ``U <= Q_q`` with ``Q_q`` the image's ``quantile``-th
      quantile of ``U`` (so about a fraction ``quantile`` of each image counts as certain, however
      confident the model is overall), uncertain = the rest;
    * ``"soft"``: certain = ``1 - U``, uncertain = ``U`` (no cut at all).

    Which of these BURL uses is not known. umlkit's default is ``"threshold"``: with
    ``"quantile"``, the uncertain share of every image is fixed (20 % at ``quantile=0.8``), and
    where the foreground is small (the optic disc covers about 5 % of a fundus image, and the
    model is least sure exactly there) the certain region becomes almost pure background, so the
    pseudo-labels teach little but "background" (in a 10 %-label fundus run during development,
    validation Dice 0.42 with the quantile rule against 0.67 with the threshold). The default
    cut 0.2 asks for a confident teacher: for three classes it means a top probability of about
    0.95, the confidence FixMatch requires of its pseudo-labels.

    Args:
        uncertainty: ``(B, 1, H, W)`` (or ``(B, H, W)``) values in [0, 1].
        mode: ``"threshold"``, ``"quantile"`` or ``"soft"``.
        threshold: the cut for ``"threshold"``.
        quantile: the per-image certain fraction for ``"quantile"``, in (0, 1).

    Returns:
        ``(certain, uncertain)``: float maps shaped like ``uncertainty``.

    Raises:
        ValueError: unknown mode, a parameter out of range, or uncertainty outside [0, 1].
    """
    if mode not in REGION_MODES:
        raise ValueError(f"unknown region mode {mode!r}: choose one of {', '.join(REGION_MODES)}")
    if uncertainty.numel() and (bool((uncertainty < 0).any()) or bool((uncertainty > 1).any())):
        raise ValueError("uncertainty must lie in [0, 1] (normalised entropy or K/S)")
    if mode == "soft":
        certain = 1.0 - uncertainty
    elif mode == "threshold":
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        certain = (uncertainty < threshold).to(uncertainty.dtype)
    else:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        per_image = uncertainty.flatten(1)
        cut = torch.quantile(per_image, quantile, dim=1, keepdim=True)
        certain = (per_image <= cut).to(uncertainty.dtype).view_as(uncertainty)
    return certain, 1.0 - certain


def region_weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""The weighted mean :math:`\sum_i w_i v_i / \sum_i w_i` of per-pixel losses.

    Args:
        values: per-pixel losses, e.g. ``(B, H, W)``.
        weights: non-negative weights broadcastable to ``values`` (e.g. ``(B, 1, H, W)`` squeezed).

    Returns:
        A scalar; 0 (with a gradient path) when all weights are 0 (an empty region).
    """
    weights = weights.expand_as(values)
    total = weights.sum()
    if total <= 0:
        return values.sum() * 0.0
    return (weights * values).sum() / total


class BURL(SemiSupervisedMethod):
    r"""Student + EMA teacher with uncertainty-aware regions in both directions (umlkit's rebuild).

    .. math::

        L = \mathrm{Dice}(p^s_l, g) + w_{CE}\,
            \frac{\sum_i (1 + \beta\,\text{uncertain}_i)\,\ell(p^s_i, g_i)}
                 {\sum_i (1 + \beta\,\text{uncertain}_i)}
          + \lambda_u\, r(t)\,
            \frac{\sum_j \text{certain}_j\,\ell(p^s_j, \hat y^t_j)}{\sum_j \text{certain}_j}

    over labeled pixels :math:`i` and unlabeled pixels :math:`j`; :math:`\hat y^t` is the teacher's
    argmax, :math:`\ell` the pixel fit loss (cross-entropy, or the evidential loss with an annealed
    KL term for the evidential head) and the regions come from the **teacher's** uncertainty on
    the clean image (:func:`uncertainty_regions`); the student sees a noisy view.

    Why the teacher's uncertainty on both sides: the teacher produces the pseudo-labels, so its
    uncertainty is the one that predicts where they are wrong; on labeled images it marks the
    regions the (averaged) model has not learned yet. This pairing, the weights
    :math:`\beta = 1` and :math:`\lambda_u = 0.3`, and the region rule (normalised entropy below
    0.2) are umlkit's choices; the paper confirms only the idea (extra supervision where uncertain
    on labeled data, pseudo-labels only where certain on unlabeled data, entropy uncertainty, EMA
    teacher). :math:`\lambda_u` and the cut were chosen on the validation Dice of two 20 %- and
    10 %-label fundus runs: with :math:`\lambda_u = 1` and a cut of 0.5 the confident pseudo-labels
    of a still immature teacher (background and cup, never the thin rim around the cup) erased the
    rim class from one run's predictions (validation Dice 0.33, against 0.80 with
    :math:`\lambda_u = 0.3`); ``region_mode="soft"`` did the same. That is the confirmation bias
    pseudo-labelling is known for, and a reason to read BURL's numbers with care.

    Args:
        in_channels: image channels.
        num_classes: pixel classes.
        width: U-Net width.
        ce_weight: :math:`w_{CE}`; must be > 0, the labeled-side weighting acts through it.
        uncertainty: ``"entropy"`` (normalised entropy of a softmax head, the paper's) or
            ``"evidential"`` (umlkit's option: the student gets an evidential pixel head and the
            uncertainty is :math:`K/S`).
        region_mode: ``"threshold"``, ``"quantile"`` or ``"soft"`` (:func:`uncertainty_regions`).
        threshold: cut of ``"threshold"``.
        quantile: per-image certain fraction of ``"quantile"``.
        uncertain_weight: :math:`\beta`, the extra weight of uncertain labeled pixels.
        unlabeled_weight: :math:`\lambda_u`.
        noise_std: standard deviation of the student's input noise.
        evidence: evidence function of the evidential head.
        ema_max_alpha: upper bound of the EMA decay.

    Raises:
        ValueError: an unknown ``uncertainty`` or ``region_mode``, or ``ce_weight <= 0``.
    """

    name = "burl"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        width: int = 16,
        ce_weight: float = 1.0,
        uncertainty: str = "entropy",
        region_mode: str = "threshold",
        threshold: float = 0.2,
        quantile: float = 0.8,
        uncertain_weight: float = 1.0,
        unlabeled_weight: float = 0.3,
        noise_std: float = 0.02,
        evidence: str = "softplus",
        ema_max_alpha: float = 0.99,
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        if uncertainty not in UNCERTAINTY_KINDS:
            raise ValueError(
                f"unknown uncertainty {uncertainty!r}: choose one of {', '.join(UNCERTAINTY_KINDS)}"
            )
        if region_mode not in REGION_MODES:
            raise ValueError(
                f"unknown region_mode {region_mode!r}: choose one of {', '.join(REGION_MODES)}"
            )
        if ce_weight <= 0:
            raise ValueError(
                f"BURL needs ce_weight > 0 (got {ce_weight}): its labeled-side uncertainty "
                "weighting acts through the pixel loss"
            )
        self.evidence = evidence if uncertainty == "evidential" else None
        self.student = segmentation_unet(in_channels, num_classes, width)
        self.teacher = make_teacher(self.student)
        self.ce_weight = ce_weight
        self.region_mode = region_mode
        self.threshold = threshold
        self.quantile = quantile
        self.uncertain_weight = uncertain_weight
        self.unlabeled_weight = unlabeled_weight
        self.noise_std = noise_std
        self.ema_max_alpha = ema_max_alpha

    @property
    def test_model(self):
        """The student (its seg_logits' argmax is the prediction for either head)."""
        return self.student

    def _teacher_regions(self, images: torch.Tensor):
        # In training mode the teacher normalises with its own batch statistics (see update_ema).
        with torch.no_grad():
            teacher = pixel_prediction(self.teacher(images).seg_logits, self.evidence)
        certain, uncertain = uncertainty_regions(
            teacher.uncertainty, self.region_mode, self.threshold, self.quantile
        )
        return teacher, certain[:, 0], uncertain[:, 0]

    def training_loss(self, images, masks, labeled, progress: Progress):
        noisy = add_input_noise(images, self.noise_std)
        student = pixel_prediction(
            forward_in_parts(self.student, noisy, labeled).seg_logits, self.evidence
        )
        teacher, certain, uncertain = self._teacher_regions(images)
        supervised = supervised_loss(
            student.select(labeled),
            masks[labeled],
            self.ce_weight,
            pixel_weights=1.0 + self.uncertain_weight * uncertain[labeled],
            kl_weight=progress.kl_weight,
        )
        unlabeled = ~labeled
        pseudo_labels = teacher.prob[unlabeled].argmax(dim=1)
        pseudo_loss = region_weighted_mean(
            pixel_fit_loss(student.select(unlabeled), pseudo_labels, progress.kl_weight),
            certain[unlabeled],
        )
        loss = supervised + self.unlabeled_weight * progress.ramp * pseudo_loss
        return loss, {
            "supervised": supervised.item(),
            "pseudo_label": pseudo_loss.item(),
            "certain_fraction": certain[unlabeled].mean().item(),
        }

    def after_step(self, step: int) -> None:
        update_ema(self.teacher, self.student, step, self.ema_max_alpha)

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The certain region where the teacher's pseudo-labels are learned, and 1 - U."""
        teacher, certain, _ = self._teacher_regions(images)
        return {"pseudo-label region": certain, "teacher confidence": 1 - teacher.uncertainty[:, 0]}
