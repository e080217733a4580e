r"""UML as the authors' 2024 code builds it (``name="uml2024"``; KarryRen/UML, ``models/uml_net.py``).

The 2024 network is built from the pieces of :mod:`umlkit.models.uml` (two encoders and the
:class:`~umlkit.models.uml.FeatureMixer` levels, the pixel head, the classifier head and the
Uncertainty Instructor) and changes three things:

1. **Mutual evidence at every level**: the mutual decoder (:class:`UpConv` steps) ends every level
   in an evidential pixel head, so the model gives a pixel Dirichlet at strides 8, 4, 2 and 1.
2. **The navigator becomes attention gates** (:class:`AttentionGateNavigator`) on the skips of the
   segmentation decoder, all fed the *full-resolution* mutual feature and uncertainty; there is one
   final segmentation output and no deep supervision.
3. **The classifier reads its own feature only**; :math:`\eta` is the segmentation decoder's last
   feature.

``docs/fidelity.md`` lists each component with the official function it follows.

References:
    Ren, Zou, Liu, Zhou, Li, Fu, Xu, Wang. Uncertainty-informed Mutual Learning for Joint Medical
    Image Classification and Segmentation. MICCAI 2023, arXiv:2303.10049.
    Oktay et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umlkit.models.blocks import BatchNorm2d, ModelOutput
from umlkit.models.uml import (
    ClassifierHead,
    DoubleConv,
    UMLBase,
    UncertaintyInstructor,
    conv1x1,
    evidential_pixels,
    pixel_head,
    resize,
)

if TYPE_CHECKING:
    from umlkit.models import ModelConfig


class UpConv(nn.Module):
    """The 2024 ``UpConv2d``: upsample x2, DoubleConv ``in -> out``, ``cat[x, skip]``, DoubleConv.

    ``in_ch`` is twice ``out_ch`` and the skip has ``out_ch`` channels, as in a U-Net.
    """

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.before = DoubleConv(in_ch, out_ch, dropout, dropout_each=False)
        self.after = DoubleConv(2 * out_ch, out_ch, dropout, dropout_each=False)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.before(resize(x, skip.shape[-2:]))
        return self.after(torch.cat([x, skip], dim=1))


class AttentionGateNavigator(nn.Module):
    r"""The 2024 Uncertainty Navigator: an uncertainty-aware attention gate on a skip connection.

    .. math::
        x' = x \odot e^{-u}, \qquad
        \psi = \sigma\big(\mathrm{BN}(W_\psi\,\mathrm{ReLU}(\mathrm{BN}(W_x x') +
        \mathrm{BN}(W_m m)))\big), \qquad \text{out} = x' \odot \psi

    :math:`x` is a segmentation encoder skip, :math:`m` and :math:`u` the mutual decoder's
    *full-resolution* feature and uncertainty sampled down to this resolution, with :math:`m`
    tiled along the channels to :math:`x`'s width. :math:`W_x, W_m` are 1x1 convolutions (with
    bias) to ``channels // 2``, :math:`W_\psi` to one channel.

    Args:
        channels: channels of :math:`x` (and of the output; a multiple of :math:`m`'s).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        self.skip_projection = nn.Sequential(nn.Conv2d(channels, inner, 1), BatchNorm2d(inner))
        self.mutual_projection = nn.Sequential(nn.Conv2d(channels, inner, 1), BatchNorm2d(inner))
        self.gate = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(inner, 1, 1), BatchNorm2d(1))

    def forward(self, x: Tensor, mutual: Tensor, uncertainty: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(gated skip, psi)``; ``psi`` (B,1,H,W) is the attention in [0, 1]."""
        size = x.shape[-2:]
        mutual = resize(mutual, size).repeat(1, x.shape[1] // mutual.shape[1], 1, 1)
        screened = x * torch.exp(-resize(uncertainty, size))
        psi = torch.sigmoid(
            self.gate(self.skip_projection(screened) + self.mutual_projection(mutual))
        )
        return screened * psi, psi


class UML2024(UMLBase):
    """The UML network as the authors' 2024 code builds it (``name="uml2024"``).

    Differences from :class:`~umlkit.models.uml.UML`: every mixer level ends in a 1x1
    convolution; the mutual decoder (:class:`UpConv` steps) emits a pixel Dirichlet at strides 8, 4, 2 and 1; the skips of
    the segmentation decoder pass :class:`AttentionGateNavigator` gates, all fed the
    full-resolution mutual feature and uncertainty; one final segmentation output;
    :math:`\\eta` is the decoder's last feature; the classifier head reads its own feature only.
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__(config, load_weights, mix_deepest=True)
        channels, classes, drop = self.channels, config.num_seg_classes, config.dropout
        # 1x1 "adjust" convolutions of levels 2..4 (mutual and segmentation features).
        self.mutual_adjust = nn.ModuleList(conv1x1(c, c) for c in channels[1:])
        self.seg_adjust = nn.ModuleList(conv1x1(c, c) for c in channels[1:])
        pairs = list(zip(channels[1:], channels[:-1], strict=True))[
            ::-1
        ]  # (in, out), coarsest first
        self.mutual_steps = nn.ModuleList(UpConv(a, b, drop) for a, b in pairs)
        self.mutual_heads = nn.ModuleList(pixel_head(c, classes, reduction=2) for c in channels)
        self.seg_steps = nn.ModuleList(UpConv(a, b, drop) for a, b in pairs)
        if config.navigator:
            self.skip_navigators = nn.ModuleList(AttentionGateNavigator(c) for c in channels[:-1])
        self.seg_head = conv1x1(channels[0], classes)
        self.instructor = (
            UncertaintyInstructor(channels[0], channels[-1], drop, dropout_each=False)
            if config.instructor
            else None
        )
        self.class_head = ClassifierHead(
            channels[-1], channels[-1], config.num_classes, config.head, config.evidence, drop
        )
        self._finish()

    def _adjusted(self, features: list[Tensor], adjust: nn.ModuleList) -> list[Tensor]:
        return [features[0], *(conv(f) for conv, f in zip(adjust, features[1:], strict=True))]

    def forward(self, x: Tensor) -> ModelOutput:
        """Run both tasks on a batch ``x`` (B, in_channels, H, W), sides divisible by 8."""
        size = x.shape[-2:]
        seg, cls, mutual = self._encode(x)
        mutual = self._adjusted(mutual, self.mutual_adjust)
        levels = [mutual[-1]]  # decoder outputs, coarsest first
        for step, skip in zip(self.mutual_steps, reversed(mutual[:-1]), strict=True):
            levels.append(step(levels[-1], skip))
        heads = list(reversed(self.mutual_heads))  # coarsest first, like levels
        dirichlets = [
            evidential_pixels(head(level), self.config.evidence)
            for head, level in zip(heads, levels, strict=True)
        ]
        top, pixel = levels[-1], dirichlets[-1]
        skips, reliable = self._adjusted(seg, self.seg_adjust), None
        if self.config.navigator:
            gated = []
            for gate, skip in zip(self.skip_navigators, skips[:-1], strict=True):
                out, psi = gate(skip, top, pixel.uncertainty)
                if reliable is None:  # full resolution: the weight e^{-u} psi the gate applies
                    reliable = torch.exp(-pixel.uncertainty) * psi
                gated.append(out)
            skips = [*gated, skips[-1]]
        feature = skips[-1]
        for step, skip in zip(self.seg_steps, reversed(skips[:-1]), strict=True):
            feature = step(feature, skip)
        seg_logits = self.seg_head(feature)
        eta = resize(feature, seg[-1].shape[-2:])
        output = self.class_head(cls[-1], self.instructor, eta)
        output.seg_logits = seg_logits
        output.seg_prob = F.softmax(seg_logits, dim=1)
        output.pixel_alpha = pixel.alpha
        output.pixel_uncertainty = pixel.uncertainty
        # alpha = E + 1 upsampled as E (non-negative weights keep it >= 0 in floating point) + 1.
        output.mutual_alphas = [resize(d.evidence, size) + 1 for d in dirichlets[:-1]]
        output.reliable_mask = reliable
        output.features = feature
        return output
