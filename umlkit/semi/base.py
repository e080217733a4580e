r"""What every semi-supervised method in umlkit shares: its interface and its supervised loss.

A method is an ``nn.Module`` holding all of its networks (student, EMA teacher, second model,
memory), so one ``state_dict`` checkpoints everything. The training loop
(:func:`umlkit.semi.loop.fit_semi`) and the notebook use four things of it:

* :meth:`SemiSupervisedMethod.training_loss` on a mixed batch -> the loss and its named terms;
* :meth:`SemiSupervisedMethod.after_step` after each optimiser step (EMA teacher updates);
* :attr:`SemiSupervisedMethod.test_model`, the one U-Net that is validated and tested (by
  :func:`umlkit.evaluate.evaluate`, like every supervised umlkit model);
* :meth:`SemiSupervisedMethod.predict` and :meth:`SemiSupervisedMethod.trusted_regions` for the
  pictures of what the method predicted and relied on.

Supervised term, the same for every method so that differences between methods come from the
unlabeled data alone:

.. math:: L_{sup} = \mathrm{Dice}(p, g) + w_{CE}\,\overline{\ell}(z, g)

with :math:`p` the probabilities of the labeled images, :math:`\overline{\ell}` the pixel mean (or a
weighted mean, for BURL) of the pixel fit loss — cross-entropy for a softmax head, the evidential
loss :math:`\psi(S) - \psi(\alpha_y)` plus an annealed KL term for an evidential head. CAML's paper
uses Dice alone; ``ce_weight=0`` gives that, and umlkit's default ``ce_weight=1`` adds the
cross-entropy because it converges much faster in the short runs of the default profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umlkit.evidential import dirichlet, evidence_from_logits, evidential_loss, kl_to_uniform
from umlkit.losses import dice_loss
from umlkit.models.blocks import ModelOutput, UNet, segmentation_output


def normalized_entropy(prob: torch.Tensor, dim: int = 1) -> torch.Tensor:
    r"""Pixel uncertainty as the entropy of the class probabilities, scaled to [0, 1].

    .. math:: U = -\frac{\sum_{c=1}^{C} p_c \ln p_c}{\ln C}

    0 for a one-hot prediction, 1 for the uniform one; :math:`0 \ln 0 = 0`.

    Args:
        prob: probabilities with the class dimension ``dim`` (e.g. ``(B, C, H, W)``).
        dim: the class dimension.

    Returns:
        ``U`` with the class dimension kept at size 1 (``(B, 1, H, W)``).

    Raises:
        ValueError: fewer than two classes, or values outside [0, 1].
    """
    num_classes = prob.shape[dim]
    if num_classes < 2:
        raise ValueError(f"normalised entropy needs at least 2 classes, got {num_classes}")
    if prob.numel() and (bool((prob < 0).any()) or bool((prob > 1).any())):
        raise ValueError("prob must lie in [0, 1]; pass probabilities, not logits")
    entropy = -torch.special.xlogy(prob, prob).sum(dim=dim, keepdim=True)
    return (entropy / math.log(num_classes)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Progress:
    """Where training stands when a loss is computed.

    Attributes:
        step: 0-based optimisation step.
        epoch: 0-based epoch (one pass over the labeled images).
        ramp: the ramp-up weight :math:`r(t)` of the unsupervised terms at this step.
        kl_weight: the annealing weight :math:`\\lambda_t` of an evidential head's KL term.
    """

    step: int
    epoch: int
    ramp: float
    kl_weight: float = 0.0


@dataclass
class PixelPrediction:
    """A segmentation head's output as probabilities and a per-pixel uncertainty in [0, 1].

    Attributes:
        logits: the raw head output ``(B, C, H, W)``.
        prob: softmax of the logits, or :math:`\\alpha/S` for an evidential head.
        uncertainty: ``(B, 1, H, W)``: normalised entropy, or :math:`K/S` for an evidential head.
        alpha: the Dirichlet parameters of an evidential head, else ``None``.
    """

    logits: torch.Tensor
    prob: torch.Tensor
    uncertainty: torch.Tensor
    alpha: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> PixelPrediction:
        """The prediction of the images picked by ``index`` (e.g. the labeled-image mask)."""
        return PixelPrediction(
            self.logits[index],
            self.prob[index],
            self.uncertainty[index],
            None if self.alpha is None else self.alpha[index],
        )


def pixel_prediction(logits: torch.Tensor, evidence: str | None = None) -> PixelPrediction:
    """Probabilities and uncertainty of segmentation logits.

    Args:
        logits: ``(B, C, H, W)``.
        evidence: ``None`` for a softmax head; ``"softplus"``, ``"relu"`` or ``"exp"`` to read the
            logits as an evidential head (:func:`umlkit.evidential.evidence_from_logits`).

    Returns:
        A :class:`PixelPrediction`.
    """
    if evidence is None:
        prob = torch.softmax(logits, dim=1)
        return PixelPrediction(logits, prob, normalized_entropy(prob))
    stats = dirichlet(evidence_from_logits(logits, evidence))
    return PixelPrediction(logits, stats.prob, stats.uncertainty, stats.alpha)


def pixel_fit_loss(
    prediction: PixelPrediction, target: torch.Tensor, kl_weight: float = 0.0
) -> torch.Tensor:
    """Per-pixel fit of a prediction to integer class indices ``(B, H, W)``, no reduction.

    Softmax head: cross-entropy :math:`-\\ln p_y`. Evidential head:
    :math:`\\psi(S) - \\psi(\\alpha_y) + \\lambda_t\\,\\mathrm{KL}(\\mathrm{Dir}(\\tilde\\alpha)\\,\\|\\,
    \\mathrm{Dir}(1))` (:func:`umlkit.evidential.evidential_loss`, :func:`kl_to_uniform`).
    """
    if prediction.alpha is None:
        return F.cross_entropy(prediction.logits.float(), target.long(), reduction="none")
    loss = evidential_loss(prediction.alpha, target)
    if kl_weight > 0:
        loss = loss + kl_weight * kl_to_uniform(prediction.alpha, target)
    return loss


def supervised_loss(
    prediction: PixelPrediction,
    target: torch.Tensor,
    ce_weight: float = 1.0,
    pixel_weights: torch.Tensor | None = None,
    kl_weight: float = 0.0,
) -> torch.Tensor:
    r"""The labeled-image loss :math:`\mathrm{Dice}(p, g) + w_{CE}\,\sum_i w_i \ell_i / \sum_i w_i`.

    Args:
        prediction: the labeled images' :class:`PixelPrediction`.
        target: their masks, integer class indices ``(B, H, W)``.
        ce_weight: :math:`w_{CE}`, weight of the pixel fit loss (0: Dice only).
        pixel_weights: ``(B, H, W)`` non-negative weights :math:`w_i` (BURL); ``None``: all 1.
        kl_weight: annealing weight of the KL term of an evidential head.

    Returns:
        A scalar.
    """
    loss = dice_loss(prediction.prob, target)
    if ce_weight > 0:
        pixel_loss = pixel_fit_loss(prediction, target, kl_weight)
        if pixel_weights is None:
            loss = loss + ce_weight * pixel_loss.mean()
        else:
            weighted = (pixel_weights * pixel_loss).sum() / pixel_weights.sum().clamp_min(1e-8)
            loss = loss + ce_weight * weighted
    return loss


def add_input_noise(
    images: torch.Tensor, std: float = 0.02, clip: float | None = None
) -> torch.Tensor:
    """Images plus clipped Gaussian noise :math:`\\mathrm{clip}(\\mathcal N(0, \\sigma^2), -c, c)`.

    The perturbation that mean teacher and BURL apply to the student's input, so that
    consistency is asked across two views of an image. UA-MT adds σ = 0.1, c = 0.2 to intensities
    standardised to unit variance; umlkit's images are in [0, 1] with a standard deviation of
    about 0.2, so the same *relative* strength is σ ≈ 0.02 (the default) with c = 2σ. (σ = 0.1 on
    [0, 1] images drowns the optic cup's contrast at 32 px: in a 10 %-label fundus run without
    any consistency term it lowered test Dice from 0.83 to 0.70.)

    Args:
        images: ``(B, C, H, W)``.
        std: σ; 0 returns ``images`` unchanged.
        clip: c; default ``2 * std``.
    """
    if std <= 0:
        return images
    clip = 2 * std if clip is None else clip
    return images + (torch.randn_like(images) * std).clamp(-clip, clip)


def in_batch_order(parts: list[torch.Tensor], labeled: torch.Tensor) -> torch.Tensor:
    """Put ``[labeled part, unlabeled part]`` back in the batch's order (differentiably).

    Args:
        parts: the outputs of the labeled images and of the unlabeled images (either may have
            zero rows).
        labeled: ``(B,)`` bool, which batch positions are labeled.
    """
    order = torch.cat([torch.nonzero(labeled)[:, 0], torch.nonzero(~labeled)[:, 0]])
    return torch.cat(parts)[torch.argsort(order)]


def forward_in_parts(model: nn.Module, images: torch.Tensor, labeled: torch.Tensor) -> ModelOutput:
    """Run ``model`` on the labeled and on the unlabeled images of a batch as two passes.

    Why two passes: in training mode batch norm normalises with the statistics of its batch, so
    in one joint pass the loss on the labeled images also has a gradient through the statistics
    contributed by the unlabeled ones, and the network can lower it by moving the unlabeled
    images' activations instead of by learning features. umlkit measured this: a mean teacher with
    its consistency and noise switched off (so: the supervised loss, but with four unlabeled images
    in each forward pass) reached test Dice 0.71 on the 10 %-label fundus task where the
    supervised-only run reached 0.82, and 0.81 with two passes. (MixMatch's "interleaving" of
    labeled and unlabeled batches answers the same problem.)

    Returns:
        A :class:`~umlkit.models.blocks.ModelOutput` with ``seg_logits``, ``seg_prob`` and
        ``features`` of the whole batch, in batch order.
    """
    if bool(labeled.all()) or not bool(labeled.any()):
        return model(images)
    parts = [model(images[part]) for part in (labeled, ~labeled)]
    logits = in_batch_order([p.seg_logits for p in parts], labeled)
    features = in_batch_order([p.features for p in parts], labeled)
    return segmentation_output(logits, features)


def segmentation_unet(
    in_channels: int, num_classes: int, width: int, upsample: str = "transpose", **kwargs
) -> UNet:
    """The test model of every method: :class:`umlkit.models.blocks.UNet`, transposed-conv decoder.

    All methods are evaluated on this same architecture (CAML's first model is exactly it), so the
    comparison is about training, not capacity.
    """
    return UNet(in_channels, num_classes, width, upsample=upsample, **kwargs)


class SemiSupervisedMethod(nn.Module):
    """Base class of the methods trained by :func:`umlkit.semi.loop.fit_semi`.

    Subclasses set :attr:`name` and :attr:`uses_unlabeled` and implement :attr:`test_model`,
    :meth:`training_loss` and :meth:`trusted_regions`.

    Args:
        in_channels: image channels.
        num_classes: pixel classes (background included).
        width: U-Net width.

    Attributes:
        name: the method's key (``"supervised"``, ``"mean_teacher"``, ``"caml"``, ``"burl"``).
        uses_unlabeled: whether batches need an unlabeled part (False for supervised-only).
        evidence: the evidence function of an evidential head, or ``None`` for softmax.
        needs_image_indices: whether :meth:`training_loss` also takes ``indices=``, the ``(B,)``
            dataset index of each image (CAML keys its memory by labeled image).
    """

    name: str = "method"
    uses_unlabeled: bool = True
    evidence: str | None = None
    needs_image_indices: bool = False

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width

    @property
    def test_model(self) -> nn.Module:
        """The network that is evaluated (a :class:`~umlkit.models.blocks.UNet`)."""
        raise NotImplementedError

    def training_loss(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        labeled: torch.Tensor,
        progress: Progress,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one mixed batch.

        Args:
            images: ``(B, C, H, W)``.
            masks: ``(B, H, W)``; only rows where ``labeled`` is True may be read.
            labeled: ``(B,)`` bool.
            progress: step, epoch and ramp weight.

        A method with :attr:`needs_image_indices` set also receives ``indices`` (keyword).

        Returns:
            ``(loss, terms)``: the scalar to minimise and its named parts as floats.
        """
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after every optimiser step (0-based ``step``); EMA methods update here."""

    def predict(self, images: torch.Tensor) -> PixelPrediction:
        """The test model's probabilities and uncertainty (call in eval mode, under no_grad)."""
        return pixel_prediction(self.test_model(images).seg_logits, self.evidence)

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps ``(B, H, W)`` in [0, 1] of where the method's unsupervised loss learns.

        For the notebook's "what did each method trust" pictures; computed as in training, but
        without input noise and in eval mode.
        """
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates (EMA teachers excluded)."""
        return [p for p in self.parameters() if p.requires_grad]
