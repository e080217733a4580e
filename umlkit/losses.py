r"""Dice losses and the combined UML objective, as the official UML code computes them.

UML (MICCAI 2023) trains three heads at once and adds their losses with fixed weights:

.. math::

    L = w_{cls} L_{cls} + w_{seg} L_{seg} + w_{mutual} L_{mutual},
    \qquad (w_{cls}, w_{seg}, w_{mutual}) = (0.5, 0.4, 0.1)

- :math:`L_{cls}` (:func:`classification_loss`): the evidential loss of the image-level Dirichlet
  plus the annealed KL term, averaged over the batch.
- :math:`L_{seg}` (:func:`segmentation_loss`): the soft **log**-Dice of the softmax of the
  segmentation logits, averaged over the final output and the side outputs (2023: strides 1, 2,
  4, 8, the official ``train_Breast.py`` divides the sum by 4). The 2024 code uses the final
  output only and adds a cross-entropy (:func:`official_objective`).
- :math:`L_{mutual}` (:func:`mutual_loss`): the pixel-level evidential loss of the mutual feature
  decoder: log-Dice plus pixel-mean evidential loss plus annealed KL (2024: summed over the four
  levels of the mutual decoder).

:func:`uml_objective` reads a model output object, computes the terms whose outputs exist and
returns the weighted total with a dict of floats for logging. :class:`UMLObjective` holds the
settings of one configuration and is called like the function.

Deliberate deviation: the official mutual loss takes its Dice on ``softmax(evidence)``; umlkit
takes it on the expected probability :math:`\alpha/S`, the probability umlkit uses everywhere.

Tensor layouts: class dimension 1 throughout; ``mask`` holds integer class indices ``(B, H, W)``
and ``label`` integer class indices ``(B,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from umlkit.distributed import sum_over_ranks
from umlkit.evidential import (
    LOSS_KINDS,
    annealing_coefficient,
    check_class_indices,
    dirichlet_from_alpha,
    evidential_terms,
    mean_evidential_terms,
    one_hot_classes,
)

#: The official weights of (L_cls, L_seg, L_mutual) (``config.py``: CLS/SEG/MEG_LOSS_WEIGHT).
DEFAULT_WEIGHTS = (0.5, 0.4, 0.1)
#: How the mutual losses of several decoder levels combine: their mean or (2024) their sum.
MUTUAL_REDUCTIONS = ("mean", "sum")


def _check_dense(x: torch.Tensor, name: str, target: torch.Tensor, target_name: str) -> None:
    """``x`` (B, C, *spatial) against integer class indices ``target`` (B, *spatial)."""
    if not isinstance(x, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} and {target_name} must be torch tensors")
    if x.ndim < 3:
        raise ValueError(f"{name} must have shape (B, C, H, W); got {tuple(x.shape)}")
    expected = (x.shape[0], *x.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{target_name} must have shape {expected} to match {name} of shape "
            f"{tuple(x.shape)}, got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"{target_name} must hold integer class indices, got {target.dtype}")
    num_classes = x.shape[1]
    check_class_indices(target, num_classes, target_name)


def dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    log: bool = False,
    include_background: bool = True,
    eps: float = 1e-5,
) -> torch.Tensor:
    r"""Soft (log-)Dice loss, one Dice per class, computed over the whole batch.

    For each class :math:`c`, with probabilities :math:`p_c` and one-hot target :math:`g_c`,

    .. math::

        D_c = \frac{2 \sum p_c g_c + \varepsilon}{\sum p_c + \sum g_c + \varepsilon},
        \qquad L = \frac{1}{C}\sum_c (1 - D_c)
        \quad\text{or, with } ``log=True``,\quad L = \frac{1}{C}\sum_c -\ln D_c .

    The sums run over the batch **and** the pixels together (one Dice per class per batch, as the
    UML reference code does), not per image: an image without foreground then does not produce a
    Dice of :math:`\varepsilon/\varepsilon = 1` or 0 of its own. :math:`\varepsilon` keeps
    :math:`D_c` defined for a class absent from both prediction and target (:math:`D_c = 1`).
    The log-Dice punishes a poor class harder (:math:`-\ln D \to \infty` as :math:`D \to 0`).

    Args:
        probs: class probabilities ``(B, C, H, W)`` (any number of spatial dimensions); taken as
            they are: softmax (or :math:`\alpha/S`) is the caller's business.
        target: integer class indices ``(B, H, W)``.
        log: use :math:`-\ln D_c` instead of :math:`1 - D_c`.
        include_background: average over all classes, or leave class 0 out.
        eps: the smoothing term :math:`\varepsilon`.

    Returns:
        A scalar tensor (float32 for half-precision input).

    Raises:
        ValueError: shapes that do not match, non-integer or out-of-range ``target``, or
            ``include_background=False`` with a single class.
    """
    _check_dense(probs, "probs", target, "target")
    if probs.dtype not in (torch.float32, torch.float64):
        probs = probs.float()
    num_classes = probs.shape[1]
    if not include_background and num_classes < 2:
        raise ValueError("include_background=False needs at least 2 classes")
    one_hot = one_hot_classes(target, num_classes, probs.dtype)
    reduce_dims = [0, *range(2, probs.ndim)]
    # Per class: sum p_c g_c, sum p_c, sum g_c. In data-parallel training each process holds a
    # shard of the batch, and the sums are added over the processes: the Dice of the whole batch.
    sums = sum_over_ranks(
        torch.stack(
            [
                (probs * one_hot).sum(dim=reduce_dims),
                probs.sum(dim=reduce_dims),
                one_hot.sum(dim=reduce_dims),
            ]
        )
    )
    intersection, prob_sum, target_sum = sums
    # D_c = (2 sum p_c g_c + eps) / (sum p_c + sum g_c + eps)
    dice = (2.0 * intersection + eps) / (prob_sum + target_sum + eps)
    if not include_background:
        dice = dice[1:]
    # L = mean_c(-ln D_c) or mean_c(1 - D_c)
    return (-torch.log(dice)).mean() if log else (1.0 - dice).mean()


def classification_loss(
    class_alpha: torch.Tensor,
    labels: torch.Tensor,
    epoch: int,
    anneal_epochs: int = 50,
    kind: str = "digamma",
) -> torch.Tensor:
    r"""Image-level evidential loss :math:`L_{cls} = \frac{1}{B}\sum_i (L_{evid,i} + \lambda_t\,\mathrm{KL}_i)`.

    :math:`L_{evid}` is :func:`umlkit.evidential.evidential_loss` of ``kind``, the KL term
    :func:`umlkit.evidential.kl_to_uniform` and :math:`\lambda_t = \min(1, t/T)`
    (:func:`umlkit.evidential.annealing_coefficient`).

    Args:
        class_alpha: Dirichlet concentrations ``(B, K)``, all :math:`\ge 1`.
        labels: integer class indices ``(B,)``.
        epoch: 0-based epoch ``t``.
        anneal_epochs: ``T``, the epochs over which the KL weight ramps up to 1.
        kind: ``"digamma"`` (UML), ``"log"`` or ``"mse"``.

    Returns:
        A scalar tensor.
    """
    weight = annealing_coefficient(epoch, anneal_epochs)
    loss, kl = evidential_terms(class_alpha, labels, kind=kind)
    return (loss + weight * kl).mean()


def softmax_classification_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Plain cross-entropy :math:`-\frac{1}{B}\sum_i \ln \mathrm{softmax}(z_i)_{y_i}` (the ablation baseline).

    Args:
        class_logits: raw scores ``(B, K)``; softmax is applied here.
        labels: integer class indices ``(B,)``.
    """
    _check_class_labels(class_logits, labels)
    return F.cross_entropy(class_logits.float(), labels.long())


def _check_class_labels(class_logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(class_logits, torch.Tensor) or class_logits.ndim != 2:
        raise ValueError("class_logits must be a tensor of shape (B, K)")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (class_logits.shape[0],):
        raise ValueError(
            f"labels must be a tensor of shape ({class_logits.shape[0]},) to match class_logits"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class indices, got {labels.dtype}")
    num_classes = class_logits.shape[1]
    if labels.numel() and (bool((labels < 0).any()) or bool((labels >= num_classes).any())):
        raise ValueError(f"labels hold class indices outside [0, {num_classes - 1}]")


def _to_mask_size(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` (B, C, h, w) to the mask's (H, W); a no-op when they agree."""
    if tuple(x.shape[2:]) == tuple(mask.shape[1:]):
        return x
    if x.ndim != 4:
        raise ValueError(f"side outputs must have shape (B, C, h, w); got {tuple(x.shape)}")
    return F.interpolate(
        x.float(), size=tuple(mask.shape[1:]), mode="bilinear", align_corners=False
    )


def segmentation_loss(
    seg_logits: torch.Tensor,
    side_logits: list[torch.Tensor] | None,
    mask: torch.Tensor,
    log: bool = True,
    ce_weight: float = 0.0,
) -> torch.Tensor:
    r"""Deep-supervised soft (log-)Dice :math:`L_{seg}` over the final and the side outputs.

    .. math::

        L_{seg} = \frac{1}{1 + n} \sum_{j=0}^{n}
        \Big[\mathrm{Dice}\big(\mathrm{softmax}(z_j), g\big)
        + w_{CE}\,\mathrm{CE}\big(z_j, g\big)\Big]

    where :math:`z_0` are the final logits and :math:`z_1..z_n` the side outputs.

    - The logits are plain (not evidential): softmax over the class dimension is applied here.
    - Side outputs at a lower resolution are **upsampled bilinearly** to the mask's size rather
      than the mask being downsampled: the target stays exact, and small structures (an optic cup
      a few pixels wide at 1/8 resolution) do not vanish from it.
    - The defaults are the official 2023 loss: log-Dice, no cross-entropy. The 2024 code uses
      ``ce_weight=1.0`` on the final output alone; ``log=False`` gives :math:`1 - D`.

    Args:
        seg_logits: final segmentation logits ``(B, C, H, W)``.
        side_logits: deep-supervision logits ``(B, C, h, w)`` at any resolution; may be empty or
            ``None``.
        mask: integer class indices ``(B, H, W)``.
        log: log-Dice (:math:`-\ln D`, official) or :math:`1 - D` (see :func:`dice_loss`).
        ce_weight: weight :math:`w_{CE}` of the pixel-mean cross-entropy added to each output.

    Returns:
        A scalar tensor.
    """
    _check_dense(seg_logits, "seg_logits", mask, "mask")
    if ce_weight < 0:
        raise ValueError(f"ce_weight must be >= 0, got {ce_weight}")
    outputs = [seg_logits, *(side_logits or [])]
    losses = []
    for logits in outputs:
        logits = _to_mask_size(logits, mask)
        if logits.shape[:2] != seg_logits.shape[:2]:
            raise ValueError(
                f"side output of shape {tuple(logits.shape)} does not match seg_logits "
                f"{tuple(seg_logits.shape)} in batch or class dimension"
            )
        logits = logits.float()
        loss = dice_loss(torch.softmax(logits, dim=1), mask, log=log)
        if ce_weight > 0:
            loss = loss + ce_weight * F.cross_entropy(logits, mask.long())
        losses.append(loss)
    return torch.stack(losses).mean()


def mutual_loss(
    pixel_alpha: torch.Tensor,
    mask: torch.Tensor,
    epoch: int,
    anneal_epochs: int = 50,
    kind: str = "digamma",
) -> torch.Tensor:
    r"""Pixel-level evidential loss of the mutual feature decoder.

    .. math::

        L_{mutual} = \frac{1}{C}\sum_c -\ln D_c(\alpha/S,\ g)
        + \overline{L_{evid}} + \lambda_t\,\overline{\mathrm{KL}}

    with :math:`D_c` the batch-wise soft Dice of :func:`dice_loss` on the expected probabilities
    :math:`p = \alpha/S`, and the bars meaning the mean over all pixels of the batch.

    Args:
        pixel_alpha: Dirichlet concentrations ``(B, C, H, W)``, all :math:`\ge 1`.
        mask: integer class indices ``(B, H, W)``.
        epoch: 0-based epoch ``t``.
        anneal_epochs: ``T`` of :math:`\lambda_t = \min(1, t/T)`.
        kind: evidential loss kind (``"digamma"``, ``"log"``, ``"mse"``).

    Returns:
        A scalar tensor.
    """
    weight = annealing_coefficient(epoch, anneal_epochs)
    evidential, kl = mean_evidential_terms(pixel_alpha, mask, kind=kind)
    prob = dirichlet_from_alpha(pixel_alpha, dim=1).prob
    return dice_loss(prob, mask, log=True) + evidential + weight * kl


def softmax_mutual_loss(pixel_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""The softmax-head ablation of :func:`mutual_loss`: log-Dice on softmax plus pixel-mean CE."""
    _check_dense(pixel_logits, "pixel_logits", mask, "mask")
    logits = pixel_logits.float()
    return dice_loss(torch.softmax(logits, dim=1), mask, log=True) + F.cross_entropy(
        logits, mask.long()
    )


def _present(output: Any, name: str) -> torch.Tensor | None:
    return getattr(output, name, None)


def uml_objective(
    output: Any,
    mask: torch.Tensor | None,
    label: torch.Tensor | None,
    epoch: int,
    weights: tuple[float, float, float] = DEFAULT_WEIGHTS,
    anneal_epochs: int = 50,
    kind: str = "digamma",
    seg_ce_weight: float = 0.0,
    mutual_reduction: str = "mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The UML training objective :math:`w_{cls}L_{cls} + w_{seg}L_{seg} + w_{mutual}L_{mutual}`.

    Which terms are computed depends on the attributes of ``output`` that exist and are not
    ``None`` (missing attributes count as ``None``):

    ==============  ========================================  =================================
    term            evidential head (preferred)               softmax head (ablation)
    ==============  ========================================  =================================
    ``cls``         ``class_alpha`` -> classification_loss    ``class_logits`` -> cross-entropy
    ``seg``         ``seg_logits`` (+ ``side_logits``)        (the same for both heads)
                    -> segmentation_loss
    ``mutual``      ``pixel_alpha`` (+ ``mutual_alphas``)     ``pixel_logits`` ->
                    -> mutual_loss                             softmax_mutual_loss
    ==============  ========================================  =================================

    - A term whose outputs are all ``None`` is skipped, and the weights of the others are **not**
      renormalised: a segmentation-only baseline trains on :math:`0.4 L_{seg}`, so its loss values
      are comparable term by term with UML's (the learning rate absorbs the constant factor).
    - ``mutual_alphas`` (the 2024 variant's extra pixel Dirichlets at other decoder levels) are
      upsampled bilinearly to the mask's size (a convex combination of values :math:`\ge 1`
      stays :math:`\ge 1`) and :math:`L_{mutual}` is the mean (or, with
      ``mutual_reduction="sum"``, the official 2024 sum) over ``pixel_alpha`` and them.

    Args:
        output: the model's output object (attributes as in the table).
        mask: integer class indices ``(B, H, W)``; needed when a pixel term is present.
        label: integer class indices ``(B,)``; needed when the ``cls`` term is present.
        epoch: 0-based epoch (for the KL annealing).
        weights: :math:`(w_{cls}, w_{seg}, w_{mutual})`.
        anneal_epochs: ``T`` of the KL annealing.
        kind: evidential loss kind for both evidential terms.
        seg_ce_weight: cross-entropy weight inside :math:`L_{seg}` (2023: 0; 2024: 1).
        mutual_reduction: ``"mean"`` or ``"sum"`` over the mutual decoder's levels.

    Returns:
        ``(total, components)``: the scalar total to back-propagate, and a dict of floats with the
        *unweighted* terms that were computed (``"cls"``, ``"seg"``, ``"mutual"``) and the
        weighted ``"total"``.

    Raises:
        ValueError: no term could be computed, a needed ``mask``/``label`` is missing, bad
            weights, or any error of the individual losses.
    """
    if len(weights) != 3 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be three non-negative numbers, got {weights}")
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown evidential loss kind {kind!r}: choose one of {LOSS_KINDS}")
    if mutual_reduction not in MUTUAL_REDUCTIONS:
        raise ValueError(
            f"mutual_reduction must be one of {MUTUAL_REDUCTIONS}, got {mutual_reduction!r}"
        )
    terms: dict[str, torch.Tensor] = {}

    class_alpha, class_logits = _present(output, "class_alpha"), _present(output, "class_logits")
    if class_alpha is not None or class_logits is not None:
        if label is None:
            raise ValueError("the output has a classification head but label is None")
        terms["cls"] = (
            classification_loss(class_alpha, label, epoch, anneal_epochs, kind)
            if class_alpha is not None
            else softmax_classification_loss(class_logits, label)
        )

    seg_logits = _present(output, "seg_logits")
    if seg_logits is not None:
        _require_mask(mask, "seg_logits")
        terms["seg"] = segmentation_loss(
            seg_logits, _present(output, "side_logits"), mask, ce_weight=seg_ce_weight
        )

    pixel_alpha, pixel_logits = _present(output, "pixel_alpha"), _present(output, "pixel_logits")
    if pixel_alpha is not None:
        _require_mask(mask, "pixel_alpha")
        alphas = [pixel_alpha, *(_present(output, "mutual_alphas") or [])]
        levels = torch.stack(
            [mutual_loss(_to_mask_size(a, mask), mask, epoch, anneal_epochs, kind) for a in alphas]
        )
        terms["mutual"] = levels.sum() if mutual_reduction == "sum" else levels.mean()
    elif pixel_logits is not None:
        _require_mask(mask, "pixel_logits")
        terms["mutual"] = softmax_mutual_loss(pixel_logits, mask)

    if not terms:
        raise ValueError(
            "the output has none of class_alpha, class_logits, seg_logits, pixel_alpha, "
            "pixel_logits: nothing to train"
        )
    weight_of = dict(zip(("cls", "seg", "mutual"), weights, strict=True))
    total = sum(weight_of[name] * value for name, value in terms.items())
    components = {name: float(value.detach()) for name, value in terms.items()}
    components["total"] = float(total.detach())
    return total, components


def _require_mask(mask: torch.Tensor | None, what: str) -> None:
    if mask is None:
        raise ValueError(f"the output has {what} but mask is None")


@dataclass(frozen=True)
class UMLObjective:
    """The settings of :func:`uml_objective`, callable as ``objective(output, mask, label, epoch)``.

    A frozen dataclass so a trainer can store it in its configuration (and hash it for caching).
    """

    weights: tuple[float, float, float] = DEFAULT_WEIGHTS  # (w_cls, w_seg, w_mutual)
    anneal_epochs: int = 50  # T of the KL annealing lambda_t = min(1, t / T)
    kind: str = "digamma"  # evidential loss: "digamma", "log" or "mse"
    seg_ce_weight: float = 0.0  # cross-entropy weight added to L_seg (2023: 0, 2024: 1)
    mutual_reduction: str = "mean"  # mutual levels combined by "mean" or "sum" (2024)

    def __call__(
        self,
        output: Any,
        mask: torch.Tensor | None,
        label: torch.Tensor | None,
        epoch: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Apply :func:`uml_objective` with these settings."""
        return uml_objective(
            output,
            mask,
            label,
            epoch,
            weights=self.weights,
            anneal_epochs=self.anneal_epochs,
            kind=self.kind,
            seg_ce_weight=self.seg_ce_weight,
            mutual_reduction=self.mutual_reduction,
        )


def official_objective(model: str, **overrides: Any) -> UMLObjective:
    """The objective the official code trains ``model`` with (``"uml"``: 2023, ``"uml2024"``).

    2023 (``train_Breast.py``): log-Dice over the four segmentation outputs, no cross-entropy,
    one mutual level. 2024 (``train_uml_refuge.py``): log-Dice + cross-entropy on the final output
    (the model has no side outputs), the mutual loss summed over four levels. Other models take
    the 2023 settings, so that a baseline's :math:`L_{seg}` is UML's. ``overrides`` replace fields.
    """
    official = {"seg_ce_weight": 1.0, "mutual_reduction": "sum"} if model == "uml2024" else {}
    return UMLObjective(**{**official, **overrides})
