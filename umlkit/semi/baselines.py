r"""The two reference points of every semi-supervised comparison.

* :class:`SupervisedOnly` trains the test U-Net on the labeled images alone (the unlabeled images
  are never loaded): what the unlabeled data must beat.
* :class:`MeanTeacher` (Tarvainen & Valpola, 2017) adds the simplest use of the unlabeled images:
  the student's probabilities on a noisy view should match those of its EMA teacher on another
  noisy view,

  .. math:: L = L_{sup} + \lambda_c\, r(t)\, \mathrm{MSE}(p_{student}, p_{teacher}),

  over the whole batch, with :math:`\lambda_c = 0.1` (the value UA-MT and its successors use for
  segmentation) and the ramp :math:`r(t)`. The noisy views are
  :func:`umlkit.semi.base.add_input_noise` (σ = 0.02 on [0, 1] images). The student, not the
  teacher, is the test model, as for every other method here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from umlkit.semi.base import (
    Progress,
    SemiSupervisedMethod,
    add_input_noise,
    forward_in_parts,
    pixel_prediction,
    segmentation_unet,
    supervised_loss,
)
from umlkit.semi.ema import make_teacher, update_ema


class SupervisedOnly(SemiSupervisedMethod):
    """The test U-Net trained with :math:`L_{sup}` on the labeled images only.

    Args:
        in_channels: image channels.
        num_classes: pixel classes (background included).
        width: U-Net width.
        ce_weight: weight of the cross-entropy in :math:`L_{sup}`.
    """

    name = "supervised"
    uses_unlabeled = False

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, width: int = 16, ce_weight: float = 1.0
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        self.model = segmentation_unet(in_channels, num_classes, width)
        self.ce_weight = ce_weight

    @property
    def test_model(self):
        return self.model

    def training_loss(self, images, masks, labeled, progress: Progress):
        prediction = pixel_prediction(self.model(images[labeled]).seg_logits)
        loss = supervised_loss(prediction, masks[labeled], self.ce_weight)
        return loss, {"supervised": loss.item()}

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Nothing: the supervised-only model never learns from unlabeled pixels."""
        return {}


class MeanTeacher(SemiSupervisedMethod):
    """Student + EMA teacher with an MSE consistency on all images.

    Args:
        in_channels: image channels.
        num_classes: pixel classes.
        width: U-Net width.
        ce_weight: weight of the cross-entropy in :math:`L_{sup}`.
        consistency_weight: :math:`\\lambda_c`.
        noise_std: σ of the input noise of student and teacher (0: no noise).
        ema_max_alpha: upper bound of the EMA decay.
    """

    name = "mean_teacher"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        width: int = 16,
        ce_weight: float = 1.0,
        consistency_weight: float = 0.1,
        noise_std: float = 0.02,
        ema_max_alpha: float = 0.99,
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        self.student = segmentation_unet(in_channels, num_classes, width)
        self.teacher = make_teacher(self.student)
        self.ce_weight = ce_weight
        self.consistency_weight = consistency_weight
        self.noise_std = noise_std
        self.ema_max_alpha = ema_max_alpha

    @property
    def test_model(self):
        """The student (evaluated like every other method's single network)."""
        return self.student

    def training_loss(self, images, masks, labeled, progress: Progress):
        noisy = add_input_noise(images, self.noise_std)
        student = pixel_prediction(forward_in_parts(self.student, noisy, labeled).seg_logits)
        # In training mode the teacher normalises with its own batch statistics (see update_ema).
        with torch.no_grad():
            teacher_prob = torch.softmax(
                self.teacher(add_input_noise(images, self.noise_std)).seg_logits, dim=1
            )
        supervised = supervised_loss(student.select(labeled), masks[labeled], self.ce_weight)
        consistency = F.mse_loss(student.prob, teacher_prob)
        loss = supervised + self.consistency_weight * progress.ramp * consistency
        return loss, {"supervised": supervised.item(), "consistency": consistency.item()}

    def after_step(self, step: int) -> None:
        update_ema(self.teacher, self.student, step, self.ema_max_alpha)

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean teacher trusts every pixel alike: its weight map is 1 everywhere."""
        return {"consistency weight": torch.ones_like(images[:, 0])}
