r"""UML: Uncertainty-informed Mutual Learning for joint classification and segmentation.

Read top to bottom, this file follows the boxes of the paper's Fig. 1 (Ren et al., MICCAI 2023) as
the authors' public code builds them (KarryRen/UML, 2023: commit 0dad9bb, ``models/UMLNet.py`` and
``models/modules.py``; 2024: ``models/uml_net.py``). ``docs/fidelity.md`` lists every component
with the official function it follows and each deliberate deviation.

1. **Two encoders**, one per task (:class:`~umlkit.models.blocks.Encoder`), features at strides
   1, 2, 4 and 8. Official: pretrained Res2Net-50 (classification) and VGG16-BN (segmentation);
   umlkit trains small encoders of its own, ``width * 2**i`` channels at level ``i``.
2. :class:`FeatureMixer` — per level: a 1x1 projection of each task's feature to the mixer width
   :math:`P`, concatenation (classification first), a channel shuffle, a
   :class:`PolarizedSelfAttention`, and a 1x1 convolution back to the level's width — none at the
   deepest level, whose :math:`2P`-channel attention output *is* the mutual feature.
3. :class:`MutualDecoder` — a U-Net upward path over the mutual features ending in an evidential
   pixel head: evidence :math:`E^m`, :math:`\alpha^m = E^m + 1`, :math:`U^s = C / S`.
4. :class:`UncertaintyNavigator` — at the bottleneck, the concatenated segmentation and mutual
   features are screened by :math:`e^{-U^s}`; a side output :math:`s` and the *reliable map*
   :math:`R = (s + E^m) \odot e^{-U^s}` are fused back in. The decoder gives side outputs at
   strides 8, 4, 2 and the **final segmentation at stride 1 before** the full-resolution
   navigator, whose output (downsampled) is the reliable feature :math:`\eta` for the classifier.
5. :class:`UncertaintyInstructor` + :class:`ClassifierHead` — the classifier reads the deepest
   classification *and* mutual features; :math:`\eta` passes a 3x3 double convolution and
   modulates them, :math:`F' = F + F \odot \eta`; pooling, a linear layer without bias, evidence.

:class:`~umlkit.models.uml2024.UML2024` (``name="uml2024"``, :mod:`umlkit.models.uml2024`) is
the authors' later code, built from the same pieces: the mutual decoder emits evidence at every
level, the navigator becomes attention gates on the skips (all fed the full-resolution mutual
feature and uncertainty), and the classifier reads its own feature only.

The option that is **umlkit's**, off by default (:class:`~umlkit.models.ModelConfig`):
``navigate_final`` (2023: the final segmentation taken *after* the full-resolution navigator).
Notebook 04 measures it against the official structure.

References:
    Ren, Zou, Liu, Zhou, Li, Fu, Xu, Wang. Uncertainty-informed Mutual Learning for Joint Medical
    Image Classification and Segmentation. MICCAI 2023, arXiv:2303.10049.
    Liu, Li, Wang, et al. Polarized Self-Attention: Towards High-quality Pixel-wise Regression.
    arXiv:2107.00782 (2021).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umlkit.evidential import DirichletStats, dirichlet, evidence_from_logits
from umlkit.models.blocks import (
    BatchNorm2d,
    Encoder,
    ModelOutput,
    image_output,
    load_encoder_weights,
)

if TYPE_CHECKING:
    from umlkit.models import ModelConfig


# ----------------------------------------------------------------------------------- small pieces


def conv1x1(in_ch: int, out_ch: int) -> nn.Conv2d:
    """The official ``BasicConv2d``: a bare 1x1 convolution, no bias, no norm, no activation."""
    return nn.Conv2d(in_ch, out_ch, 1, bias=False)


def resize(x: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Bilinear resampling with ``align_corners=True``, the official up- and down-sampling.

    Downsampling this way *samples* the map (it is not an average); the official code uses it
    for :math:`U^s`, :math:`E^m` and :math:`\\eta` alike. Identity when the size already matches.
    """
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: view the channels as (groups, C/groups), transpose, flatten.

    Output channel ``j`` is input channel ``(j % groups) * (C // groups) + j // groups``. The
    official mixer calls its shuffle with "4 groups" but reshapes to (C/4, 4): in ShuffleNet's
    convention that is ``groups = C // 4``, and every block of C/4 output channels then holds
    both tasks' features.
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be shuffled in {groups} groups")
    pixels = x.permute(0, 2, 3, 1)  # (B, H, W, C): a view of channels-last memory
    pixels = pixels.reshape(batch, height, width, groups, channels // groups).transpose(3, 4)
    return pixels.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolution (with bias) -> BatchNorm -> ReLU layers with 2-D dropout.

    ``dropout_each=True`` (the 2023 ``DoubleConv``) drops after each ReLU; ``False`` (the 2024
    ``DoubleConv2d``) once at the end.
    """

    def __init__(self, in_ch: int, out_ch: int, dropout: float, dropout_each: bool = True) -> None:
        layers: list[nn.Module] = []
        for index, (a, b) in enumerate(((in_ch, out_ch), (out_ch, out_ch))):
            layers += [nn.Conv2d(a, b, 3, padding=1), BatchNorm2d(b), nn.ReLU(inplace=True)]
            if dropout_each or index == 1:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class SeparableConvBlock(nn.Sequential):
    """Depthwise 3x3 (dilation 2) + pointwise 1x1 convolution, no biases, -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        layers = [
            nn.Conv2d(in_ch, in_ch, 3, padding=2, dilation=2, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


def evidential_pixels(logits: Tensor, evidence: str) -> DirichletStats:
    """Pixel-wise Dirichlet of logits (B, C, H, W): ``alpha = evidence(logits) + 1``."""
    return dirichlet(evidence_from_logits(logits, evidence), dim=1)


def pixel_head(in_ch: int, num_classes: int, reduction: int) -> nn.Sequential:
    """The official evidential pixel head: two stacked bare 1x1 convolutions, in -> in/r -> C.

    ``reduction`` r is 4 in the 2023 code (128 -> 32 -> C) and 2 in the 2024 code (64 -> 32 -> C).
    """
    hidden = max(in_ch // reduction, 1)
    return nn.Sequential(conv1x1(in_ch, hidden), conv1x1(hidden, num_classes))


# ---------------------------------------------------------------------------------------- mixer


def _on_vectors(conv: nn.Conv2d, vectors: Tensor) -> Tensor:
    """A 1x1 convolution applied to channel vectors (B, C_in) -> (B, C_out): ``W v + b``."""
    return F.linear(vectors, conv.weight.flatten(1), conv.bias)


class PolarizedSelfAttention(nn.Module):
    r"""Polarized self-attention, sequential layout, as the official UML code builds it.

    Channel branch, with 1x1 convolutions :math:`W_q: C \to 1`, :math:`W_v: C \to C/2`,
    :math:`W_z: C/2 \to C`:

    .. math::
        A^{ch} = \sigma\big(\mathrm{LN}\big(W_z\,[\,W_v(X) \cdot
        \mathrm{softmax}_{HW}(W_q(X))\,]\big)\big), \qquad X' = A^{ch} \odot X

    Spatial branch on :math:`X'`, with :math:`W_q', W_v': C \to C/2`:

    .. math::
        A^{sp} = \sigma\big(\mathrm{GAP}(W_q'(X'))^\top W_v'(X')\big), \qquad
        \text{out} = X' + A^{sp} \odot X'

    The official code applies **no** softmax to the pooled spatial query (Liu et al.'s PSA
    does), and neither does umlkit.

    Implementation: every projection is an ``nn.Conv2d`` with a 1x1 kernel, as in the official
    code, so it has the official parameters and the official initialisation
    (:func:`official_init`). A 1x1 convolution is a linear map of each pixel's channel vector, so
    it commutes with the pooling next to it: :math:`\sum_j w_j (W_v x_j + b) = W_v \sum_j w_j x_j
    + b` (weights summing to 1), :math:`\mathrm{GAP}(W_q' X') = W_q'\,\mathrm{GAP}(X')`, and
    :math:`q^\top (W_v' X' + b) = (W_v'^\top q)^\top X' + q^\top b`. The forward pass applies
    their weights to pooled vectors — the same numbers at a fraction of the cost. :math:`W_q`
    carries no bias (the official one does): the softmax over the pixels ignores a constant
    shift, so that bias could never change the output and would only receive a zero gradient.

    Args:
        channels: C, the channels of the input (at least 2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(channels // 2, 1)
        self.channel_query = nn.Conv2d(channels, 1, 1, bias=False)
        self.channel_value = nn.Conv2d(channels, half, 1)
        self.channel_up = nn.Conv2d(half, channels, 1)
        self.channel_norm = nn.LayerNorm(channels)
        self.spatial_query = nn.Conv2d(channels, half, 1)
        self.spatial_value = nn.Conv2d(channels, half, 1)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        pixels = x.reshape(batch, channels, height * width)
        # Channel branch: one attention map over the pixels pools them into a channel vector.
        weights = F.softmax(self.channel_query(x).reshape(batch, 1, height * width), dim=-1)
        pooled = torch.bmm(pixels, weights.transpose(1, 2)).squeeze(-1)  # (B, C)
        value = _on_vectors(self.channel_value, pooled)  # (B, C/2)
        channel_gate = torch.sigmoid(self.channel_norm(_on_vectors(self.channel_up, value)))
        gated = x * channel_gate.view(batch, channels, 1, 1)  # X'
        # Spatial branch: one query vector over the channels scores every pixel of X'.
        query = _on_vectors(self.spatial_query, gated.mean(dim=(2, 3)))  # (B, C/2)
        pixel_weights = query @ self.spatial_value.weight.flatten(1)  # (B, C): W_v'^T q, per image
        offset = query @ self.spatial_value.bias  # (B,): q^T b
        scores = torch.bmm(pixel_weights.unsqueeze(1), gated.reshape(batch, channels, -1))
        spatial_gate = torch.sigmoid(
            scores.view(batch, 1, height, width) + offset.view(-1, 1, 1, 1)
        )
        return torch.addcmul(gated, gated, spatial_gate)  # X' + A^sp * X'


class FeatureMixer(nn.Module):
    r"""The pair-wise feature mixer of one level: classification + segmentation -> mutual feature.

    .. math:: m = W_o\,\mathrm{PSA}\big(\mathrm{shuffle}(\mathrm{cat}[W_c f_{cls}, W_s f_{seg}])\big)

    :math:`W_c, W_s` project each task's feature to ``mixer_width`` (:math:`P`, officially 256),
    the two are concatenated and shuffled (:func:`channel_shuffle`, ``groups = 2P/4``) so that
    the attention sees them side by side, and :math:`W_o` maps the :math:`2P` channels to
    ``out_channels`` (``None``: no output convolution, the 2023 deepest level). All 1x1
    convolutions are bare (no bias, norm or activation), as in the official code.

    Args:
        channels: the encoders' channels at this level.
        mixer_width: :math:`P`, a multiple of 2.
        out_channels: channels of the mutual feature, or ``None`` to keep :math:`2P`.
    """

    def __init__(self, channels: int, mixer_width: int, out_channels: int | None) -> None:
        super().__init__()
        if mixer_width % 2:
            raise ValueError(
                f"mixer_width must be even (shuffled in groups of 4), got {mixer_width}"
            )
        self.cls_projection = conv1x1(channels, mixer_width)
        self.seg_projection = conv1x1(channels, mixer_width)
        self.attention = PolarizedSelfAttention(2 * mixer_width)
        self.output = (
            nn.Identity() if out_channels is None else conv1x1(2 * mixer_width, out_channels)
        )
        self.out_channels = 2 * mixer_width if out_channels is None else out_channels

    def forward(self, seg_feature: Tensor, cls_feature: Tensor) -> Tensor:
        mixed = torch.cat([self.cls_projection(cls_feature), self.seg_projection(seg_feature)], 1)
        mixed = channel_shuffle(mixed, groups=mixed.shape[1] // 4)
        return self.output(self.attention(mixed))


# ------------------------------------------------------------------------------------- decoders


class UpConcat(nn.Module):
    """The 2023 ``UNet_Up``: upsample x2, :class:`DoubleConv` ``in -> out``, then ``cat[skip, x]``.

    The convolution runs *before* the concatenation; the output has ``out + skip`` channels.
    """

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.conv = DoubleConv(in_ch, out_ch, dropout, dropout_each=True)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return torch.cat([skip, self.conv(resize(x, skip.shape[-2:]))], dim=1)


class MutualDecoder(nn.Module):
    r"""The 2023 trusted mutual feature decoder: :class:`UpConcat` steps over :math:`m_4 .. m_1`.

    The last step's output (``2 * width`` channels at full resolution) passes :func:`pixel_head`;
    evidence :math:`E^m = g(\text{logits})`, :math:`\alpha^m = E^m + 1`, :math:`U^s = C/S`.

    Args:
        mutual_channels: channels of the mutual features, finest first.
        num_seg_classes: C.
        evidence: evidence function (``"softplus"``, ``"relu"``, ``"exp"``).
        dropout: dropout of the double convolutions.
    """

    def __init__(
        self, mutual_channels: list[int], num_seg_classes: int, evidence: str, dropout: float
    ) -> None:
        super().__init__()
        self.evidence = evidence
        steps, in_ch = [], mutual_channels[-1]
        for skip_ch in reversed(mutual_channels[:-1]):
            steps.append(UpConcat(in_ch, skip_ch, dropout))
            in_ch = 2 * skip_ch
        self.steps = nn.ModuleList(steps)
        self.head = pixel_head(in_ch, num_seg_classes, reduction=4)

    def forward(self, mutual: list[Tensor]) -> DirichletStats:
        x = mutual[-1]
        for step, skip in zip(self.steps, reversed(mutual[:-1]), strict=True):
            x = step(x, skip)
        return evidential_pixels(self.head(x), self.evidence)


class UncertaintyNavigator(nn.Module):
    r"""The 2023 Uncertainty Navigator (official ``UN_ModuleConcat``) at one resolution.

    With the decoder feature :math:`x`, that level's segmentation logits :math:`s`, the mutual
    evidence :math:`E^m` and uncertainty :math:`U^s` at this resolution:

    .. math::
        R = (s + E^m) \odot e^{-U^s}, \qquad
        \text{out} = W_f\,\mathrm{cat}\big(x,\ \mathrm{Drop}(\mathrm{ReLU}(\mathrm{BN}(W_e R)))\big)

    :math:`R` (the *reliable map*) adds raw logits and evidence and screens them by the mutual
    decoder's certainty; :math:`W_e, W_f` are bare 1x1 convolutions (C -> channels,
    2·channels -> channels). Nothing is detached: gradients reach the mutual decoder through
    :math:`U^s` and :math:`E^m`.

    Args:
        channels: channels of :math:`x` (and of the output).
        num_seg_classes: C.
        dropout: the embedding's dropout.
    """

    def __init__(self, channels: int, num_seg_classes: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            conv1x1(num_seg_classes, channels),
            BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.fuse = conv1x1(2 * channels, channels)

    def forward(
        self, x: Tensor, side_logits: Tensor, evidence: Tensor, uncertainty: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(navigated feature, reliable map R)`` at the resolution of ``x``."""
        reliable = (side_logits + evidence) * torch.exp(-uncertainty)
        return self.fuse(torch.cat([x, self.embed(reliable)], dim=1)), reliable


class UncertaintyInstructor(nn.Module):
    r"""The Uncertainty Instructor: :math:`F' = F + F \odot \mathrm{DoubleConv}(\eta)`.

    :math:`\eta` (already at the classification feature's resolution) passes a 3x3 double
    convolution to the feature's width; there is no gate on it, so the instruction may amplify
    or flip a feature, as in the official code.

    Args:
        reliable_channels: channels of :math:`\eta`.
        cls_channels: channels of :math:`F`.
        dropout: dropout of the double convolution.
        dropout_each: 2023 (after each layer) or 2024 (once at the end) form.
    """

    def __init__(
        self, reliable_channels: int, cls_channels: int, dropout: float, dropout_each: bool
    ) -> None:
        super().__init__()
        self.conv = DoubleConv(reliable_channels, cls_channels, dropout, dropout_each)

    def forward(self, cls_feature: Tensor, eta: Tensor) -> Tensor:
        return cls_feature + cls_feature * self.conv(eta)


class ClassifierHead(nn.Module):
    r"""Image-level head: separable convolutions, instructor, pooling, linear (no bias), evidence.

    .. math::
        e = g\big(W\,\mathrm{GAP}(F')\big), \quad \alpha = e + 1, \quad p = \alpha / S,
        \quad u = K / S

    with :math:`F` from four :class:`SeparableConvBlock` (in -> c -> c/2 -> c/2 -> c, the official
    ``ClsHead``), :math:`F'` the instructed feature and :math:`g` the evidence function.
    ``head="softmax"`` (ablation) gives :math:`p = \mathrm{softmax}(W\,\mathrm{GAP}(F'))`.
    """

    def __init__(
        self,
        in_ch: int,
        channels: int,
        num_classes: int,
        head: str,
        evidence: str,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        half = max(channels // 2, 1)
        widths = [in_ch, channels, half, half, channels]
        self.convs = nn.Sequential(
            *(
                SeparableConvBlock(a, b, dropout)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            )
        )
        self.linear = nn.Linear(channels, num_classes, bias=False)
        self.head, self.evidence = head, evidence

    def forward(self, feature: Tensor, instructor: UncertaintyInstructor | None, eta: Tensor):
        feature = self.convs(feature)
        if instructor is not None:
            feature = instructor(feature, eta)
        return image_output(self.linear(feature.mean(dim=(2, 3))), self.head, self.evidence)


def official_init(module: nn.Module) -> None:
    r"""The official initialisation of everything but the encoders (``UMLNet.py``, ``uml_net.py``).

    Every ``nn.Conv2d`` weight — the PSA projections included — is drawn Kaiming-normal
    (fan-out, ReLU): :math:`w \sim \mathcal{N}(0, 2 / (C_{out} k^2))`. Convolution biases keep
    PyTorch's default, uniform in :math:`\pm 1/\sqrt{C_{in} k^2}`, because the official loop
    never touches them. BatchNorm weight 1 and bias 0; linear and layer-norm layers keep
    PyTorch's defaults. The official code runs this loop before it builds its (pretrained)
    encoders, so they keep their own initialisation; umlkit's encoders likewise.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


# ------------------------------------------------------------------------------------- networks


class UMLBase(nn.Module):
    """What both UML versions share: two encoders, the mixers and the configuration.

    Subclasses (:class:`UML`, :class:`~umlkit.models.uml2024.UML2024`) build their decoders and
    heads, then call :meth:`_finish` for the official initialisation and the encoder weights.
    """

    def __init__(self, config: ModelConfig, load_weights: bool, mix_deepest: bool) -> None:
        super().__init__()
        self.config = config
        self.seg_encoder = Encoder(config.in_channels, config.width, config.depth)
        self.cls_encoder = Encoder(config.in_channels, config.width, config.depth)
        self.channels = self.seg_encoder.channels
        mixer_width = config.mixer_width or 4 * config.width
        outs = [*self.channels[:-1], self.channels[-1] if mix_deepest else None]
        self.mixers = nn.ModuleList(
            FeatureMixer(c, mixer_width, out) for c, out in zip(self.channels, outs, strict=True)
        )
        self.mutual_channels = [mixer.out_channels for mixer in self.mixers]
        self._load_weights = load_weights

    def _finish(self) -> None:
        for name, child in self.named_children():
            if not name.endswith("encoder"):
                official_init(child)
        if self.config.encoder_weights is not None and self._load_weights:
            load_encoder_weights(self.seg_encoder, self.config.encoder_weights)
            load_encoder_weights(self.cls_encoder, self.config.encoder_weights)

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        seg, cls = self.seg_encoder(x), self.cls_encoder(x)
        return seg, cls, [mix(s, c) for mix, s, c in zip(self.mixers, seg, cls, strict=True)]


class UML(UMLBase):
    """The UML network as the official 2023 code builds it (``name="uml"``).

    Build it with :func:`umlkit.models.build_model`. Ablation switches of the config:
    ``navigator=False`` (no uncertainty screening, no navigators: the bottleneck is the plain
    1x1 fusion of segmentation and mutual features), ``instructor=False`` (the classifier head
    is not modulated by :math:`\\eta`), ``head="softmax"`` (softmax image head; the mutual
    decoder stays evidential). umlkit's option: ``navigate_final``.

    Args:
        config: the model configuration.
        load_weights: load ``config.encoder_weights`` (if set) into both encoders.
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__(config, load_weights, mix_deepest=False)
        channels, mutual, classes = self.channels, self.mutual_channels, config.num_seg_classes
        drop = config.dropout
        self.mutual_decoder = MutualDecoder(mutual, classes, config.evidence, drop)
        self.bottleneck = conv1x1(channels[-1] + mutual[-1], channels[-1])
        steps, in_ch, heads = [], channels[-1], [nn.Conv2d(channels[-1], classes, 1, bias=False)]
        for skip_ch in reversed(channels[:-1]):
            steps.append(UpConcat(in_ch, skip_ch, drop))
            in_ch = 2 * skip_ch
            heads.append(nn.Conv2d(in_ch, classes, 1, bias=False))
        self.seg_steps = nn.ModuleList(steps)
        self.seg_heads = nn.ModuleList(heads)  # strides 8, 4, 2, 1 (coarsest first)
        if config.navigator:
            self.bottleneck_navigator = UncertaintyNavigator(channels[-1], classes, drop)
            self.output_navigator = UncertaintyNavigator(in_ch, classes, drop)
        self.instructor = (
            UncertaintyInstructor(in_ch, channels[-1], drop, dropout_each=True)
            if config.instructor
            else None
        )
        self.class_head = ClassifierHead(
            channels[-1] + mutual[-1],
            channels[-1],
            config.num_classes,
            config.head,
            config.evidence,
        )
        self._finish()

    def forward(self, x: Tensor) -> ModelOutput:
        """Run both tasks on a batch ``x`` (B, in_channels, H, W), sides divisible by 8.

        Raises:
            ValueError: wrong shape, channel count, or sides not divisible by ``2**(depth-1)``.
        """
        size = x.shape[-2:]
        seg, cls, mutual = self._encode(x)
        pixel = self.mutual_decoder(mutual)
        low = seg[-1].shape[-2:]
        navigate = self.config.navigator
        bottom = torch.cat([seg[-1], mutual[-1]], dim=1)
        if navigate:  # screen by the certainty e^{-U^s}, sampled down to stride 8
            bottom = bottom * torch.exp(-resize(pixel.uncertainty, low))
        feature = self.bottleneck(bottom)
        side_logits = [self.seg_heads[0](feature)]
        if navigate:
            feature, _ = self.bottleneck_navigator(
                feature, side_logits[0], resize(pixel.evidence, low), resize(pixel.uncertainty, low)
            )
        for step, head, skip in zip(
            self.seg_steps, self.seg_heads[1:], reversed(seg[:-1]), strict=True
        ):
            feature = step(feature, skip)
            side_logits.append(head(feature))
        seg_logits, reliable = side_logits.pop(), None
        if navigate:
            feature, reliable = self.output_navigator(
                feature, seg_logits, pixel.evidence, pixel.uncertainty
            )
            if self.config.navigate_final:  # umlkit's option: the navigator shapes the output
                seg_logits = self.seg_heads[-1](feature)
        eta = resize(feature, low)
        output = self.class_head(torch.cat([cls[-1], mutual[-1]], dim=1), self.instructor, eta)
        output.seg_logits = seg_logits
        output.seg_prob = F.softmax(seg_logits, dim=1)
        # Side outputs at strides 2, 4, 8 (finest first), upsampled to the input's size.
        output.side_logits = [resize(side, size) for side in reversed(side_logits)]
        output.pixel_alpha = pixel.alpha
        output.pixel_uncertainty = pixel.uncertainty
        output.reliable_mask = reliable
        output.features = feature
        return output
