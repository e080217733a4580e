r"""UML: Uncertainty-informed Mutual Learning for joint classification and segmentation.

Read top to bottom, this file follows the boxes of the paper's Fig. 1 (Ren et al., MICCAI 2023):

1. **Two encoders**, one per task (:class:`~umlkit.models.blocks.Encoder`), each giving features at
   strides 1, 2, 4 and 8. The paper uses pretrained Res2Net-50 (classification) and VGG16-BN
   (segmentation); umlkit trains small encoders of its own (see :mod:`umlkit.models.blocks`).
2. :class:`FeatureMixer` — per level, the pair-wise mixer of the two tasks' features: 1x1 conv of
   each to a common width, concatenation, channel shuffle, :class:`PolarizedSelfAttention`, 1x1
   conv -> the *mutual feature* :math:`m_i`.
3. :class:`MutualDecoder` — a U-Net-style upward path over :math:`m_4 .. m_1` ending in an
   evidential pixel head: evidence :math:`E^m`, Dirichlet :math:`\alpha^m` and the pixel
   uncertainty :math:`U^s = C / S` at full resolution.
4. :class:`UncertaintyNavigator` — guides the segmentation decoder with that uncertainty: features
   are softly screened by :math:`\exp(-U^s)` and a *reliable mask*
   :math:`R = (\text{side output} + E^m) \odot \exp(-U^s)` is embedded and fused back in; applied
   at the bottleneck and at full resolution. Its output at full resolution is the *reliable
   feature* :math:`\eta`.
5. :class:`UncertaintyInstructor` — passes :math:`\eta` to the classifier: downsampled to the
   classification feature's resolution and projected to its width, it modulates it,
   :math:`F' = F + F \odot \eta`.
6. :class:`EvidentialHead` — global average pooling -> linear -> evidence -> Dirichlet
   :math:`\alpha`, image uncertainty :math:`u = K / S`, probabilities :math:`\alpha / S`.

``UML(config)`` assembles them. The ``uml2024`` variant replaces the navigator by attention-gated
skip connections (:class:`AttentionGateNavigator`) and lets the mutual decoder emit evidence at
every level for deep supervision.

Where the paper leaves a detail open, the choice made here is stated in the docstring concerned
(e.g. the widths of the projections, whether the screened features keep their gradient).

References:
    Ren, Zou, Liu, Zhou, Li, Fu, Xu, Wang. Uncertainty-informed Mutual Learning for Joint Medical
    Image Classification and Segmentation. MICCAI 2023, arXiv:2303.10049.
    Liu, Li, Wang, et al. Polarized Self-Attention: Towards High-quality Pixel-wise Regression.
    arXiv:2107.00782 (2021).
    Oktay et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umlkit.evidential import DirichletStats, dirichlet, evidence_from_logits
from umlkit.models.blocks import (
    BatchNorm2d,
    Decoder,
    Encoder,
    ModelOutput,
    SoftmaxHead,
    conv_bn_relu,
    level_channels,
    load_encoder_weights,
)

if TYPE_CHECKING:
    from umlkit.models import ModelConfig


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """Interleave the channels of ``groups`` concatenated blocks (ShuffleNet's channel shuffle).

    After ``cat([a, b])`` the channels read ``a1 a2 .. b1 b2 ..``; shuffled they read
    ``a1 b1 a2 b2 ..``, so every later grouped or local operation sees both tasks side by side.

    The result is channels-last, like every umlkit feature map (see
    :class:`~umlkit.models.blocks.Encoder`): the shuffle permutes each pixel's channel vector,
    which in that layout is one contiguous run of memory.
    """
    batch, channels, height, width = x.shape
    pixels = x.permute(0, 2, 3, 1)  # (B, H, W, C): a view of channels-last memory
    pixels = pixels.reshape(batch, height, width, groups, channels // groups).transpose(3, 4)
    return pixels.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def interleave_channels(first: Tensor, second: Tensor) -> Tensor:
    """``channel_shuffle(cat([first, second]), groups=2)`` in one copy instead of two.

    Stacking the two maps along a new last axis of their channels-last pixel vectors writes
    ``a1 b1 a2 b2 ..`` directly; the numbers are exactly those of concatenating, then shuffling.
    """
    if first.shape != second.shape:
        raise ValueError(f"cannot interleave maps of shapes {first.shape} and {second.shape}")
    batch, channels, height, width = first.shape
    pixels = torch.stack([first.permute(0, 2, 3, 1), second.permute(0, 2, 3, 1)], dim=-1)
    return pixels.reshape(batch, height, width, 2 * channels).permute(0, 3, 1, 2)


class PolarizedSelfAttention(nn.Module):
    r"""Polarized self-attention, sequential layout: channel branch, then spatial branch.

    Channel branch (which channels matter), with :math:`W_q: C \to 1`, :math:`W_v: C \to C/2`,
    :math:`W_z: C/2 \to C` 1x1 convolutions:

    .. math::
        A^{ch}(X) = \sigma\big(\mathrm{LN}\big(W_z\,[\,W_v(X) \cdot
        \mathrm{softmax}_{HW}(W_q(X))\,]\big)\big) \in \mathbb{R}^{C \times 1 \times 1},
        \qquad X' = A^{ch}(X) \odot X

    Spatial branch (where to look), with :math:`W_q, W_v: C \to C/2`:

    .. math::
        A^{sp}(X') = \sigma\big(\mathrm{softmax}_{C/2}(\mathrm{GAP}(W_q(X')))^\top
        W_v(X')\big) \in \mathbb{R}^{1 \times H \times W},
        \qquad X'' = A^{sp}(X') \odot X'

    Both gates are sigmoids; the output adds the input back, :math:`X'' + X`, so an untrained
    attention starts close to the identity path.

    Implementation: the 1x1 convolutions are linear maps of each pixel's channel vector, so they
    commute with the pooling next to them, and this code applies them to pooled vectors rather
    than to every pixel — the same numbers at a fraction of the cost:
    :math:`\sum_j w_j (W_v x_j + b) = W_v \sum_j w_j x_j + b` (weights summing to 1),
    :math:`\mathrm{GAP}(W_q X') = W_q\,\mathrm{GAP}(X')`, and
    :math:`q^\top (W_v X' + b) = (W_v^\top q)^\top X' + q^\top b`. Only :math:`W_q` of the
    channel branch (one output channel) runs on every pixel.

    Args:
        channels: C, the channels of the input (at least 2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(channels // 2, 1)
        # No bias: the softmax over the pixels that follows ignores a constant shift.
        self.channel_query = nn.Conv2d(channels, 1, 1, bias=False)
        self.channel_value = nn.Linear(channels, half)
        self.channel_up = nn.Linear(half, channels)
        self.channel_norm = nn.LayerNorm(channels)
        self.spatial_query = nn.Linear(channels, half)
        self.spatial_value = nn.Linear(channels, half)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        pixels = x.view(batch, channels, height * width)
        # Channel branch: one attention map over the pixels pools them into a channel vector.
        weights = F.softmax(self.channel_query(x).view(batch, 1, height * width), dim=-1)
        pooled = torch.bmm(pixels, weights.transpose(1, 2)).squeeze(-1)  # (B, C)
        channel_logits = self.channel_up(self.channel_value(pooled))
        channel_gate = torch.sigmoid(self.channel_norm(channel_logits))
        gated = x * channel_gate.view(batch, channels, 1, 1)
        # Spatial branch: one attention vector over the channels scores every pixel.
        query = F.softmax(self.spatial_query(gated.mean(dim=(2, 3))), dim=1)  # (B, C/2)
        pixel_weights = query @ self.spatial_value.weight  # (B, C): W_v^T q, per image
        offset = query @ self.spatial_value.bias  # (B,): q^T b
        scores = torch.bmm(pixel_weights.unsqueeze(1), gated.view(batch, channels, -1))
        spatial_logits = scores.view(batch, 1, height, width) + offset.view(batch, 1, 1, 1)
        # X'' + X = X + X' * A^sp(X') in one pass over the map
        return torch.addcmul(x, gated, torch.sigmoid(spatial_logits))


class FeatureMixer(nn.Module):
    """The pair-wise feature mixer of one level: segmentation + classification -> mutual feature.

    ``m = conv1x1(PSA(shuffle(cat[conv1x1(f_seg), conv1x1(f_cls)])))``. Each task's feature is
    projected to the mutual width of the level, the two are concatenated and channel-shuffled so
    they interleave, :class:`PolarizedSelfAttention` re-weights channels and pixels, and a last
    1x1 convolution-BN-ReLU brings the ``2 * mutual_channels`` back to ``mutual_channels``.

    Args:
        channels: the encoders' channels at this level (both encoders have the same widths).
        mutual_channels: channels of the mutual feature (umlkit's default: ``channels // 2``,
            which keeps the mutual decoder at a quarter of a full decoder's cost).
    """

    def __init__(self, channels: int, mutual_channels: int) -> None:
        super().__init__()
        self.seg_projection = nn.Conv2d(channels, mutual_channels, 1)
        self.cls_projection = nn.Conv2d(channels, mutual_channels, 1)
        self.attention = PolarizedSelfAttention(2 * mutual_channels)
        self.fuse = conv_bn_relu(2 * mutual_channels, mutual_channels, kernel_size=1)

    def forward(self, seg_feature: Tensor, cls_feature: Tensor) -> Tensor:
        # shuffle(cat[seg, cls]) written in one step (see interleave_channels)
        mixed = interleave_channels(
            self.seg_projection(seg_feature), self.cls_projection(cls_feature)
        )
        return self.fuse(self.attention(mixed))


def evidential_pixels(head: nn.Module, feature: Tensor, evidence: str) -> DirichletStats:
    """Pixel-wise Dirichlet from a 1x1 head: ``alpha = evidence(head(feature)) + 1``."""
    return dirichlet(evidence_from_logits(head(feature), evidence), dim=1)


class MutualDecoder(nn.Module):
    r"""The mutual feature decoder: U-Net upward path over :math:`m_4 .. m_1` + evidential pixel head.

    Returns, at full resolution, the decoder feature (``width`` channels) and the pixel Dirichlet
    :math:`\alpha^m = E^m + 1`, :math:`U^s = C / S`. With ``deep_supervision`` (uml2024) a 1x1
    evidential head also reads the intermediate up-step outputs (strides 4, 2), giving one
    Dirichlet per level (coarsest first; the last one is the full-resolution one).

    Args:
        width: the encoders' width.
        depth: the encoders' depth.
        num_seg_classes: C.
        evidence: evidence function (``"softplus"``, ``"relu"``, ``"exp"``).
        upsample: upsampling of the upward path.
        deep_supervision: also emit evidence at every intermediate level.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        num_seg_classes: int,
        evidence: str = "softplus",
        upsample: str = "bilinear",
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        self.evidence = evidence
        # One conv per up step: the mutual decoder only has to produce evidence, and a second
        # conv per level cost about as much as the rest of it.
        self.decoder = Decoder(width, depth, upsample, convs_per_step=1)
        self.head = nn.Conv2d(width, num_seg_classes, 1)
        self.deep_supervision = deep_supervision
        # Up-step outputs have 4w, 2w, w channels (depth 4); w, the last, has the full-res head.
        level_widths = list(reversed(self.decoder.channels[1:-1])) if deep_supervision else []
        self.level_heads = nn.ModuleList(nn.Conv2d(c, num_seg_classes, 1) for c in level_widths)

    def forward(
        self, mutual_features: list[Tensor]
    ) -> tuple[Tensor, list[Tensor], list[DirichletStats]]:
        """Decode the mutual features.

        Returns:
            ``(feature, level_features, level_dirichlets)``: the full-resolution feature, the
            up-step outputs (coarsest first, ending with ``feature``) and the pixel Dirichlets —
            one for each intermediate level with deep supervision, then the full-resolution one.
        """
        feature, level_features = self.decoder(mutual_features, return_intermediate=True)
        level_dirichlets = []
        if self.deep_supervision:
            level_dirichlets = [
                evidential_pixels(head, level, self.evidence)
                for head, level in zip(self.level_heads, level_features[:-1], strict=True)
            ]
        level_dirichlets.append(evidential_pixels(self.head, feature, self.evidence))
        return feature, level_features, level_dirichlets


class UncertaintyNavigator(nn.Module):
    r"""The Uncertainty Navigator (2023 form): uncertainty-screened guidance of the seg decoder.

    At one resolution, with the segmentation decoder feature :math:`x`, the mutual feature
    :math:`m`, the mutual decoder's evidence :math:`E^m` and uncertainty :math:`U^s` (pooled to
    this resolution):

    .. math::
        z = \mathrm{cat}(x, m) \odot e^{-U^s} \ \text{(soft screening)}, \qquad
        s = \mathrm{conv}_{1\times1}(z) \ \text{(side output)},

        R = \big(\mathrm{softmax}(s) + E^m\big) \odot e^{-U^s} \ \text{(reliable mask)}, \qquad
        \eta = \mathrm{CBR}_{1\times1}\big(\mathrm{cat}(z, \mathrm{CBR}_{3\times3}(R))\big)

    (CBR = conv-BN-ReLU.) Screening is soft: a pixel with no evidence (:math:`U^s = 1`) keeps
    :math:`e^{-1} \approx 37\%` of its weight, a confident one nearly all; there is no threshold.
    The side output enters :math:`R` as probabilities (the paper adds "the side segmentation
    output"; probabilities keep the sum's scale independent of the logits'); the BatchNorm of
    the embedding absorbs the unbounded scale of :math:`E^m`. Gradients flow through
    :math:`U^s` and :math:`E^m` into the mutual decoder (nothing is detached).

    umlkit's choices where the paper gives no detail: one 1x1 CBR after the concatenation
    serves as both the paper's "conv" after screening and the fusion of the embedded mask
    (:math:`x` and :math:`m` come straight out of 3x3 convolutions, so mixing them pixel-wise
    suffices), which keeps the navigator cheap at full resolution; the mask embedding is 3x3.

    Args:
        channels: channels of :math:`x` and of the output :math:`\eta`.
        mutual_channels: channels of :math:`m`.
        num_seg_classes: C.
    """

    def __init__(self, channels: int, mutual_channels: int, num_seg_classes: int) -> None:
        super().__init__()
        screened = channels + mutual_channels
        self.side_head = nn.Conv2d(screened, num_seg_classes, 1)
        self.embed_mask = conv_bn_relu(num_seg_classes, channels)
        self.fuse = conv_bn_relu(screened + channels, channels, kernel_size=1)

    def forward(
        self, x: Tensor, mutual: Tensor, evidence: Tensor, uncertainty: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``(eta, side_logits, reliable_mask)`` at the resolution of ``x``."""
        trust = torch.exp(-uncertainty)  # e^{-U^s}: 1 where the mutual decoder is certain
        channels = x.shape[1]
        fuse_conv, fuse_rest = self.fuse[0], self.fuse[1:]
        # The side head and the fusion's first part are both 1x1 convolutions of
        # z = cat(x, m) * trust. As trust is one number per pixel, W z = trust * (W_x x + W_m m):
        # convolutions of x and m with the two weights' column blocks give both, and neither z
        # nor the concatenation is ever stored. (One convolution with the two weights stacked,
        # sliced after, costs more on channels-last memory: the slices' gradients come back in
        # the other layout and have to be converted.) The numbers are those of the formulas.
        side_weight, fuse_weight = self.side_head.weight, fuse_conv.weight
        side_logits = trust * (
            F.conv2d(x, side_weight[:, :channels]) + F.conv2d(mutual, side_weight[:, channels:])
        ) + self.side_head.bias.view(1, -1, 1, 1)
        screened = trust * (
            F.conv2d(x, fuse_weight[:, :channels])
            + F.conv2d(mutual, fuse_weight[:, channels : channels + mutual.shape[1]])
        )
        reliable_mask = (F.softmax(side_logits, dim=1) + evidence) * trust
        # softmax returns NCHW memory; the embedding convolution runs faster on channels-last.
        embedded = self.embed_mask(reliable_mask.contiguous(memory_format=torch.channels_last))
        fused = screened + F.conv2d(embedded, fuse_weight[:, -embedded.shape[1] :])
        return fuse_rest(fused), side_logits, reliable_mask


class AttentionGateNavigator(nn.Module):
    r"""The Uncertainty Navigator of the 2024 variant: an uncertainty-aware attention gate on a skip.

    .. math::
        x' = x \odot e^{-u}, \qquad
        \psi = \sigma\big(\mathrm{BN}(\mathrm{conv}(\mathrm{ReLU}(\mathrm{BN}(W_x x') +
        \mathrm{BN}(W_m m))))\big), \qquad \text{out} = x' \odot \psi

    :math:`x` is the segmentation encoder's skip feature, :math:`m` the mutual decoder's feature
    and :math:`u` its pixel uncertainty at the same resolution; :math:`W_x, W_m` are 1x1
    convolutions to ``channels // 2`` (Attention U-Net's inner width), the last conv maps to one
    channel.

    Args:
        channels: channels of :math:`x` (and of the output).
        mutual_channels: channels of :math:`m`.
    """

    def __init__(self, channels: int, mutual_channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        self.skip_projection = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False), BatchNorm2d(inner)
        )
        self.mutual_projection = nn.Sequential(
            nn.Conv2d(mutual_channels, inner, 1, bias=False), BatchNorm2d(inner)
        )
        self.gate = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(inner, 1, 1, bias=False), BatchNorm2d(1)
        )

    def forward(self, x: Tensor, mutual: Tensor, uncertainty: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(gated skip, psi)``; ``psi`` (B,1,H,W) is the attention in [0, 1]."""
        screened = x * torch.exp(-uncertainty)
        psi = torch.sigmoid(
            self.gate(self.skip_projection(screened) + self.mutual_projection(mutual))
        )
        return screened * psi, psi


class UncertaintyInstructor(nn.Module):
    r"""The Uncertainty Instructor: the reliable feature :math:`\eta` instructs the classifier.

    .. math::
        \eta' = \mathrm{ReLU}(\mathrm{BN}(W\,\mathrm{AvgPool}(\eta))), \qquad
        F' = F + F \odot \eta'

    :math:`\eta` (full resolution) is average-pooled to the classification feature's resolution
    and projected by a 1x1 convolution :math:`W` to its width. The ReLU keeps :math:`\eta' \ge 0`
    so the instruction can only amplify classification features where segmentation is reliable,
    never flip their sign (umlkit's choice; the paper specifies only :math:`F + F \odot \eta`).

    Args:
        reliable_channels: channels of :math:`\eta`.
        cls_channels: channels of :math:`F`.
    """

    def __init__(self, reliable_channels: int, cls_channels: int) -> None:
        super().__init__()
        self.projection = nn.Sequential(
            nn.Conv2d(reliable_channels, cls_channels, 1, bias=False),
            BatchNorm2d(cls_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, cls_feature: Tensor, reliable_feature: Tensor) -> Tensor:
        eta = self.projection(F.adaptive_avg_pool2d(reliable_feature, cls_feature.shape[-2:]))
        return cls_feature + cls_feature * eta


class EvidentialHead(nn.Module):
    r"""Image-level evidential classifier: GAP -> linear -> evidence -> Dirichlet.

    .. math::
        e = g(W\,\mathrm{GAP}(F') + b), \quad \alpha = e + 1, \quad S = \textstyle\sum_k \alpha_k,
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
        logits = self.linear(feature.mean(dim=(2, 3)))
        stats = dirichlet(evidence_from_logits(logits, self.evidence), dim=1)
        return ModelOutput(
            class_alpha=stats.alpha, class_uncertainty=stats.uncertainty, class_prob=stats.prob
        )


def image_head(in_ch: int, num_classes: int, head: str, evidence: str) -> nn.Module:
    """The image-level head: :class:`EvidentialHead` (``"evidential"``) or ``SoftmaxHead``."""
    if head == "evidential":
        return EvidentialHead(in_ch, num_classes, evidence)
    return SoftmaxHead(in_ch, num_classes)


def downsample_to(x: Tensor, reference: Tensor) -> Tensor:
    """Average-pool ``x`` to the spatial size of ``reference`` (identity when they match)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.adaptive_avg_pool2d(x, reference.shape[-2:])


def upsample_to(x: Tensor, size: torch.Size) -> Tensor:
    """Bilinearly resize ``x`` to ``size`` (identity when it already has it)."""
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UML(nn.Module):
    """The UML network (``name="uml"``, the paper's 2023 structure, or ``"uml2024"``).

    Build it with :func:`umlkit.models.build_model`; ``model.config`` holds the
    :class:`~umlkit.models.ModelConfig` that rebuilds it. Ablation switches of the config:
    ``navigator=False`` (plain U-Net skips, no reliable mask; side outputs then come from the
    decoder's intermediate levels), ``instructor=False`` (the classifier sees only its own
    encoder), ``head="softmax"`` (softmax image head instead of the evidential one; the pixel
    head of the mutual decoder stays evidential, it is what the navigator needs).

    Args:
        config: the model configuration.
        load_weights: load ``config.encoder_weights`` (if set) into both encoders; ``False`` when
            a checkpoint is about to overwrite every weight anyway.
    """

    def __init__(self, config: ModelConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        width, depth, classes = config.width, config.depth, config.num_seg_classes
        self.variant = "2024" if config.name == "uml2024" else "2023"
        self.seg_encoder = Encoder(config.in_channels, width, depth)
        self.cls_encoder = Encoder(config.in_channels, width, depth)
        channels = self.seg_encoder.channels
        mutual_width = config.mutual_width or max(width // 2, 1)
        mutual_channels = level_channels(mutual_width, depth)
        self.mixers = nn.ModuleList(
            FeatureMixer(c, m) for c, m in zip(channels, mutual_channels, strict=True)
        )
        self.mutual_decoder = MutualDecoder(
            mutual_width,
            depth,
            classes,
            evidence=config.evidence,
            upsample=config.upsample,
            deep_supervision=self.variant == "2024",
        )
        self.seg_decoder = Decoder(width, depth, config.upsample)
        if config.navigator and self.variant == "2023":
            self.bottleneck_navigator = UncertaintyNavigator(
                channels[-1], mutual_channels[-1], classes
            )
            self.output_navigator = UncertaintyNavigator(width, mutual_width, classes)
        elif config.navigator:
            self.skip_navigators = nn.ModuleList(
                AttentionGateNavigator(c, m)
                for c, m in zip(channels[:-1], mutual_channels[:-1], strict=True)
            )
        if not config.navigator or self.variant == "2024":
            # Deep supervision of the decoder's intermediate levels (strides 4, 2 at depth 4).
            self.side_heads = nn.ModuleList(
                nn.Conv2d(c, classes, 1) for c in reversed(channels[1:-1])
            )
        self.seg_head = nn.Conv2d(width, classes, 1)
        if config.instructor:
            self.instructor = UncertaintyInstructor(width, channels[-1])
        self.class_head = image_head(channels[-1], config.num_classes, config.head, config.evidence)
        if config.encoder_weights is not None and load_weights:
            load_encoder_weights(self.seg_encoder, config.encoder_weights)
            load_encoder_weights(self.cls_encoder, config.encoder_weights)

    def forward(self, x: Tensor) -> ModelOutput:
        """Run both tasks on a batch ``x`` (B, in_channels, H, W), sides divisible by 8.

        Raises:
            ValueError: wrong shape, channel count, or sides not divisible by ``2**(depth-1)``.
        """
        size = x.shape[-2:]
        seg_features = self.seg_encoder(x)
        cls_features = self.cls_encoder(x)
        mutual = [
            mix(s, c) for mix, s, c in zip(self.mixers, seg_features, cls_features, strict=True)
        ]
        mutual_feature, mutual_levels, mutual_dirichlets = self.mutual_decoder(mutual)
        pixel = mutual_dirichlets[-1]  # full-resolution alpha^m, U^s
        if self.variant == "2023":
            decoded, side_logits, reliable_mask = self._navigate_2023(
                seg_features, mutual, mutual_feature, pixel
            )
        else:
            decoded, side_logits, reliable_mask = self._navigate_2024(
                seg_features, mutual_levels, mutual_dirichlets
            )
        seg_logits = self.seg_head(decoded)
        cls_feature = cls_features[-1]
        if self.config.instructor:
            cls_feature = self.instructor(cls_feature, decoded)
        output = self.class_head(cls_feature)
        output.seg_logits = seg_logits
        output.seg_prob = F.softmax(seg_logits, dim=1)
        output.side_logits = [upsample_to(side, size) for side in side_logits]
        output.pixel_alpha = pixel.alpha
        output.pixel_uncertainty = pixel.uncertainty
        if self.variant == "2024":
            # The extra, coarser levels only: the full-resolution alpha^m is pixel_alpha.
            output.mutual_alphas = [upsample_to(d.alpha, size) for d in mutual_dirichlets[:-1]]
        output.reliable_mask = reliable_mask
        output.features = decoded
        return output

    def _side_outputs(self, intermediate: list[Tensor]) -> list[Tensor]:
        """Logits of the decoder's intermediate levels (all up-step outputs but the last)."""
        return [head(f) for head, f in zip(self.side_heads, intermediate[:-1], strict=True)]

    def _navigate_2023(
        self,
        seg_features: list[Tensor],
        mutual: list[Tensor],
        mutual_feature: Tensor,
        pixel: DirichletStats,
    ) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """Segmentation decoder with the navigator at the bottleneck and at full resolution."""
        if not self.config.navigator:
            decoded, intermediate = self.seg_decoder(seg_features, return_intermediate=True)
            return decoded, self._side_outputs(intermediate), None
        bottleneck = seg_features[-1]
        evidence_low = downsample_to(pixel.evidence, bottleneck)  # E^m pooled to stride 8
        uncertainty_low = downsample_to(pixel.uncertainty, bottleneck)  # U^s pooled to stride 8
        navigated, side_low, _ = self.bottleneck_navigator(
            bottleneck, mutual[-1], evidence_low, uncertainty_low
        )
        decoded = self.seg_decoder([*seg_features[:-1], navigated])
        eta, side_full, reliable_mask = self.output_navigator(
            decoded, mutual_feature, pixel.evidence, pixel.uncertainty
        )
        return eta, [side_low, side_full], reliable_mask

    def _navigate_2024(
        self,
        seg_features: list[Tensor],
        mutual_levels: list[Tensor],
        mutual_dirichlets: list[DirichletStats],
    ) -> tuple[Tensor, list[Tensor], Tensor | None]:
        r"""Segmentation decoder whose skips pass through uncertainty-aware attention gates.

        The skip of level ``i`` (strides 1, 2, 4 at depth 4) is gated with the mutual decoder's
        feature and uncertainty at that stride. ``reliable_mask`` is then the full-resolution
        per-pixel weight the gate applies, :math:`e^{-u} \psi` (B,1,H,W).
        """
        if not self.config.navigator:
            decoded, intermediate = self.seg_decoder(seg_features, return_intermediate=True)
            return decoded, self._side_outputs(intermediate), None
        skips = []
        # mutual_levels / mutual_dirichlets run coarsest first; the skips finest first.
        levels = list(zip(mutual_levels[::-1], mutual_dirichlets[::-1], strict=True))
        reliable_mask = None
        for gate, skip, (mutual, stats) in zip(
            self.skip_navigators, seg_features[:-1], levels, strict=True
        ):
            gated, psi = gate(skip, mutual, stats.uncertainty)
            if reliable_mask is None:
                reliable_mask = torch.exp(-stats.uncertainty) * psi
            skips.append(gated)
        decoded, intermediate = self.seg_decoder(
            [*skips, seg_features[-1]], return_intermediate=True
        )
        return decoded, self._side_outputs(intermediate), reliable_mask
