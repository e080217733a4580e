"""Baselines UML is compared with: single-task networks and a plain multi-task network.

- ``"unet"`` (:class:`SegmentationUNet`): segmentation only, the :class:`~umlkit.models.blocks.UNet`.
- ``"classifier"`` (:class:`Classifier`): classification only, an
  :class:`~umlkit.models.blocks.Encoder` with an image head on its deepest feature.
- ``"multitask"`` (:class:`MultiTaskNet`): one shared encoder, a U-Net decoder for segmentation and
  an image head on the bottleneck — the usual hard-parameter-sharing joint model, without mutual
  features, pixel evidence or uncertainty guidance.

The image head is a softmax head by default (``head="softmax"``); ``head="evidential"`` gives the
baselines an evidential head (:class:`EvidentialHead`), which separates "evidential head" from
"the rest of UML" in an ablation. Each returns a :class:`~umlkit.models.blocks.ModelOutput` with the
fields it has; the rest stay ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from umlkit.models.blocks import (
    Decoder,
    Encoder,
    ModelOutput,
    SoftmaxHead,
    UNet,
    image_output,
    load_encoder_weights,
)

if TYPE_CHECKING:
    from umlkit.models import ModelConfig


class EvidentialHead(nn.Module):
    r"""Image-level evidential classifier: GAP -> linear -> evidence -> Dirichlet.

    .. math::
        e = g(W\,\mathrm{GAP}(F) + b), \quad \alpha = e + 1, \quad S = \textstyle\sum_k \alpha_k,
        \quad p = \alpha / S, \quad u = K / S

    with :math:`g` the evidence function (softplus by default, see
    :func:`umlkit.evidential.evidence_from_logits`).

    Args:
        in_ch: channels of the feature map.
        num_classes: K.
        evidence: ``"softplus"``, ``"relu"`` or ``"exp"``.
    """

    def __init__(self, in_ch: int, num_classes: int, evidence: str = "softplus") -> None:
        super().__init__()
        self.evidence = evidence
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, feature: Tensor) -> ModelOutput:
        """Returns a :class:`ModelOutput` with ``class_alpha``, ``class_uncertainty``, ``class_prob``."""
        return image_output(self.linear(feature.mean(dim=(2, 3))), "evidential", self.evidence)


def image_head(in_ch: int, num_classes: int, head: str, evidence: str) -> nn.Module:
    """The baselines' image head: :class:`EvidentialHead` (``"evidential"``) or ``SoftmaxHead``."""
    if head == "evidential":
        return EvidentialHead(in_ch, num_classes, evidence)
    return SoftmaxHead(in_ch, num_classes)


class SegmentationUNet(UNet):
    """The ``"unet"`` baseline: a :class:`~umlkit.models.blocks.UNet` built from a ModelConfig."""

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__(
            config.in_channels,
            config.num_seg_classes,
            config.width,
            config.depth,
            upsample=config.upsample,
        )
        self.config = config
        if config.encoder_weights is not None and load_weights:
            load_encoder_weights(self.encoder, config.encoder_weights)


class Classifier(nn.Module):
    """The ``"classifier"`` baseline: Encoder -> image head on the deepest feature (stride 8)."""

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.in_channels, config.width, config.depth)
        self.class_head = image_head(
            self.encoder.channels[-1], config.num_classes, config.head, config.evidence
        )
        if config.encoder_weights is not None and load_weights:
            load_encoder_weights(self.encoder, config.encoder_weights)

    def forward(self, x: Tensor) -> ModelOutput:
        return self.class_head(self.encoder(x)[-1])


class MultiTaskNet(nn.Module):
    """The ``"multitask"`` baseline: a shared Encoder, a U-Net Decoder and an image head.

    The segmentation and classification losses both train the shared encoder; nothing else
    passes between the tasks.
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.in_channels, config.width, config.depth)
        self.decoder = Decoder(config.width, config.depth, config.upsample)
        self.seg_head = nn.Conv2d(config.width, config.num_seg_classes, 1)
        self.class_head = image_head(
            self.encoder.channels[-1], config.num_classes, config.head, config.evidence
        )
        if config.encoder_weights is not None and load_weights:
            load_encoder_weights(self.encoder, config.encoder_weights)

    def forward(self, x: Tensor) -> ModelOutput:
        features = self.encoder(x)
        decoded = self.decoder(features)
        output = self.class_head(features[-1])
        output.seg_logits = self.seg_head(decoded)
        output.seg_prob = output.seg_logits.softmax(dim=1)
        output.features = decoded
        return output
