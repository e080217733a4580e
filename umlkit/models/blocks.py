"""Building blocks shared by every umlkit network: convolutions, encoder, decoder, U-Net, output.

These are the pieces the UML network (:mod:`umlkit.models.uml`), the baselines
(:mod:`umlkit.models.baselines`) and the semi-supervised models (:mod:`umlkit.semi`) are made of:

- :class:`ConvBlock` — two 3x3 convolution-BatchNorm-ReLU layers, the unit of every U-Net.
- :class:`Encoder` — ``depth`` levels of ConvBlocks; level ``i`` runs at stride ``2**i`` with
  ``width * 2**i`` channels, so a depth-4 encoder returns features at strides 1, 2, 4 and 8.
- :class:`Decoder` — the U-Net upward path: upsample, concatenate the skip feature, ConvBlock;
  returns the full-resolution feature map with ``width`` channels.
- :class:`UNet` — Encoder + Decoder + a 1x1 segmentation head.
- :class:`ModelOutput` — the one output object every umlkit model returns; a model fills the
  fields it has and leaves the others ``None``.

The paper's encoders are ImageNet-pretrained Res2Net-50 and VGG16-BN. No weights can be
downloaded here, so umlkit trains small encoders of its own from scratch;
:func:`load_encoder_weights` loads a local checkpoint file into an :class:`Encoder` where one
exists (e.g. an encoder saved from an earlier run).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umlkit import fastpath
from umlkit.evidential import dirichlet, evidence_from_logits

UPSAMPLE_MODES = ("bilinear", "transpose")


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is a positive int (bools excluded), else raise a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def level_channels(width: int, depth: int) -> list[int]:
    """Channels of each encoder level: ``width * 2**i`` for ``i = 0 .. depth-1``."""
    return [width * 2**level for level in range(depth)]


def check_image_batch(x: Tensor, in_channels: int, depth: int) -> None:
    """Raise a ``ValueError`` unless ``x`` is a (B, in_channels, H, W) batch the encoder can halve.

    An encoder of ``depth`` levels halves the image ``depth - 1`` times, so both sides must be
    divisible by ``2**(depth - 1)`` (8 for the default depth 4) for the decoder's skip connections
    to line up.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"expected an image tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"expected an image batch of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
        )
    factor = 2 ** (depth - 1)
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"image sides must be divisible by {factor} (depth {depth}: {depth - 1} halvings), "
            f"got {height}x{width}; resize or pad the images"
        )


class BatchNorm2d(nn.BatchNorm2d):
    r"""Batch normalisation of a (B, C, H, W) map: ``nn.BatchNorm2d``, same numbers, same state dict.

    .. math:: y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,\gamma_c + \beta_c

    with the mean :math:`\mu_c` and variance :math:`\sigma_c^2` of channel ``c`` over the batch and
    the pixels in training (running averages of them kept for evaluation). The only addition is a
    faster way to compute the same numbers in training on a CPU, taken when
    :func:`umlkit.fastpath.takes_one_thread_batch_norm` says so; with the fast paths off
    (:mod:`umlkit.fastpath`) this is ``nn.BatchNorm2d`` line for line.
    """

    def forward(self, x: Tensor) -> Tensor:
        if fastpath.takes_one_thread_batch_norm(self, x):
            return fastpath.one_thread_batch_norm(self, x)
        return super().forward(x)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolution -> BatchNorm -> ReLU layers (``in_ch`` -> ``out_ch`` -> ``out_ch``).

    The convolutions carry no bias: the BatchNorm that follows each one has its own shift.
    Spatial size is kept (padding 1).
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    """One convolution -> BatchNorm -> ReLU layer with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """A U-Net encoder: ``depth`` ConvBlocks separated by 2x2 max-pooling.

    Level ``i`` (``i = 0 .. depth-1``) works at stride ``2**i`` with ``width * 2**i`` channels.

    Args:
        in_channels: image channels (3 for RGB).
        width: channels of the first, full-resolution level.
        depth: number of levels (4: strides 1, 2, 4, 8).

    Attributes:
        channels: the channels of each level, e.g. ``[16, 32, 64, 128]`` for width 16.

    Raises:
        ValueError: a non-positive or non-integer ``in_channels``, ``width`` or ``depth``.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
        self.in_channels = in_channels
        self.depth = depth
        self.channels = level_channels(width, depth)
        stages = [ConvBlock(in_channels, self.channels[0])]
        for previous, current in zip(self.channels[:-1], self.channels[1:], strict=True):
            stages.append(nn.Sequential(nn.MaxPool2d(2), ConvBlock(previous, current)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of every level, finest first: ``[stride 1, stride 2, ..., stride 2**(depth-1)]``.

        Raises:
            ValueError: ``x`` is not (B, in_channels, H, W) with sides divisible by
                ``2**(depth-1)``.
        """
        check_image_batch(x, self.in_channels, self.depth)
        # Channels-last (NHWC) memory: with the few channels of umlkit's small networks, oneDNN's
        # CPU convolutions are faster on it than on NCHW, and CUDA's tensor cores want it too
        # (`umlkit bench` times whole steps). Every later feature inherits it.
        x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def load_encoder_weights(encoder: Encoder, path: str | Path) -> Encoder:
    """Load a local checkpoint (an :class:`Encoder` ``state_dict`` saved by ``torch.save``).

    This stands in for the ImageNet-pretrained backbones of the paper, which cannot be downloaded
    here: e.g. save ``model.seg_encoder.state_dict()`` from one run and start another from it.

    Args:
        encoder: the encoder to fill (its width, depth and in_channels must match the file's).
        path: the checkpoint file.

    Returns:
        ``encoder``, with the loaded weights.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file does not hold a state dict matching this encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"encoder checkpoint {path}: expected a state dict, got {type(state)}")
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        key for key in set(own) & set(state) if tuple(own[key].shape) != tuple(state[key].shape)
    )
    if missing or unexpected or mismatched:
        raise ValueError(
            f"encoder checkpoint {path} does not fit an Encoder(in_channels="
            f"{encoder.in_channels}, width={encoder.channels[0]}, depth={encoder.depth}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {mismatched[:3]}"
        )
    encoder.load_state_dict(state)
    return encoder


class UpStep(nn.Module):
    """One step of the U-Net upward path: upsample x2, concatenate the skip, ConvBlock.

    ``bilinear``: bilinear interpolation, then a 1x1 convolution halving the channels;
    ``transpose``: a 2x2 transposed convolution with stride 2 that halves them. Either way the
    ConvBlock sees ``2 * skip_ch`` channels (upsampled + skip), which keeps the decoder as cheap
    as the encoder level it mirrors. ``convs=1`` replaces the ConvBlock by a single
    conv-BN-ReLU (a lighter decoder, e.g. UML's mutual decoder).
    """

    def __init__(self, in_ch: int, skip_ch: int, upsample: str, convs: int = 2) -> None:
        super().__init__()
        if upsample == "bilinear":
            # The 1x1 conv and the interpolation commute (both linear, no bias); convolving
            # first works on a quarter of the pixels and interpolates half the channels.
            self.up = nn.Sequential(
                nn.Conv2d(in_ch, skip_ch, 1, bias=False),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            )
        else:
            self.up = nn.ConvTranspose2d(in_ch, skip_ch, 2, stride=2, bias=False)
        self.block = (
            ConvBlock(2 * skip_ch, skip_ch) if convs == 2 else conv_bn_relu(2 * skip_ch, skip_ch)
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class Decoder(nn.Module):
    """The U-Net upward path over the features of an :class:`Encoder` of the same width/depth.

    Starting from the deepest feature, each :class:`UpStep` doubles the resolution and fuses the
    skip feature of that level, ending at full resolution with ``width`` channels.

    Args:
        width: the encoder's width.
        depth: the encoder's depth.
        upsample: ``"bilinear"`` (interpolation + 1x1 conv) or ``"transpose"`` (transposed conv).
        convs_per_step: 3x3 conv-BN-ReLU layers after each upsampling: 2 (a ConvBlock, the
            U-Net standard) or 1.

    Raises:
        ValueError: a bad ``width``/``depth``/``convs_per_step`` or an unknown ``upsample``.
    """

    def __init__(
        self, width: int = 16, depth: int = 4, upsample: str = "bilinear", convs_per_step: int = 2
    ) -> None:
        super().__init__()
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if convs_per_step not in (1, 2):
            raise ValueError(f"convs_per_step must be 1 or 2, got {convs_per_step!r}")
        self.depth = depth
        self.channels = level_channels(width, depth)
        self.steps = nn.ModuleList(
            UpStep(self.channels[level + 1], self.channels[level], upsample, convs_per_step)
            for level in reversed(range(depth - 1))
        )

    def forward(
        self, features: list[Tensor], return_intermediate: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Decode ``features`` (finest first, as :class:`Encoder` returns them).

        Args:
            features: ``depth`` feature maps at strides 1, 2, ..., ``2**(depth-1)``.
            return_intermediate: also return the output of every up step.

        Returns:
            The full-resolution feature (B, width, H, W); with ``return_intermediate``, a pair
            (that feature, the list of up-step outputs from coarsest to finest — the last one
            is the full-resolution feature itself).

        Raises:
            ValueError: ``features`` does not hold ``depth`` maps.
        """
        if len(features) != self.depth:
            raise ValueError(f"expected {self.depth} feature maps, got {len(features)}")
        x = features[-1]
        intermediate = []
        for step, skip in zip(self.steps, reversed(features[:-1]), strict=True):
            x = step(x, skip)
            intermediate.append(x)
        return (x, intermediate) if return_intermediate else x


@dataclass
class ModelOutput:
    """What every umlkit model returns; fields a model does not produce stay ``None``.

    Shapes: B images, K image classes, C pixel classes, H x W pixels.
    Probabilities are the expected Dirichlet probabilities alpha/S for evidential heads and a
    softmax of the logits for softmax heads (the ``*_prob`` fields say which was used through the
    presence of ``*_alpha``).
    """

    class_logits: Tensor | None = None  # (B,K) image-level head output before evidence/softmax
    class_alpha: Tensor | None = None  # (B,K) Dirichlet parameters alpha = evidence + 1
    class_uncertainty: Tensor | None = None  # (B,1) u = K / S of the image-level Dirichlet
    class_prob: Tensor | None = None  # (B,K) alpha/S (evidential) or softmax (softmax head)
    seg_logits: Tensor | None = None  # (B,C,H,W) final segmentation logits
    seg_prob: Tensor | None = None  # (B,C,H,W) softmax of seg_logits
    side_logits: list[Tensor] | None = None  # deep-supervision logits, each (B,C,H,W)
    pixel_alpha: Tensor | None = None  # (B,C,H,W) mutual decoder's pixel Dirichlet alpha^m
    pixel_uncertainty: Tensor | None = None  # (B,1,H,W) U^s = C / S per pixel
    mutual_alphas: list[Tensor] | None = None  # uml2024: alphas of the coarser levels, (B,C,H,W)
    reliable_mask: Tensor | None = None  # (B,C,H,W) or (B,1,H,W) uncertainty-screened mask
    features: Tensor | None = None  # (B,width,H,W) last decoder feature

    def float(self) -> ModelOutput:
        """A copy with every tensor cast to float32 (losses run in float32 after bf16 autocast)."""

        def cast(value):
            if isinstance(value, Tensor):
                return value.float()
            if isinstance(value, list):
                return [cast(item) for item in value]
            return value

        return ModelOutput(**{f.name: cast(getattr(self, f.name)) for f in fields(self)})


def segmentation_output(seg_logits: Tensor, features: Tensor | None = None) -> ModelOutput:
    """A :class:`ModelOutput` holding segmentation logits, their softmax and the last feature."""
    return ModelOutput(
        seg_logits=seg_logits, seg_prob=F.softmax(seg_logits, dim=1), features=features
    )


class UNet(nn.Module):
    """A plain U-Net: :class:`Encoder` -> optional bottleneck module -> :class:`Decoder` -> 1x1 head.

    Args:
        in_channels: image channels.
        num_seg_classes: pixel classes C (background included).
        width: channels of the first level.
        depth: number of levels.
        upsample: ``"bilinear"`` or ``"transpose"`` (see :class:`UpStep`).
        bottleneck: a module applied to the deepest encoder feature before decoding (shape
            preserved), e.g. a cross-sample attention layer; identity by default.

    Forward returns a :class:`ModelOutput` with ``seg_logits``, ``seg_prob`` and ``features``
    (the full-resolution decoder feature).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_seg_classes: int = 2,
        width: int = 16,
        depth: int = 4,
        upsample: str = "bilinear",
        bottleneck: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_seg_classes, "num_seg_classes")
        self.encoder = Encoder(in_channels, width, depth)
        self.bottleneck = nn.Identity() if bottleneck is None else bottleneck
        self.decoder = Decoder(width, depth, upsample)
        self.head = nn.Conv2d(width, num_seg_classes, 1)

    def forward(self, x: Tensor) -> ModelOutput:
        features = self.encoder(x)
        features[-1] = self.bottleneck(features[-1])
        decoded = self.decoder(features)
        return segmentation_output(self.head(decoded), decoded)


def image_output(logits: Tensor, head: str = "softmax", evidence: str = "softplus") -> ModelOutput:
    r"""The :class:`ModelOutput` of image-level logits (B, K), for a softmax or evidential head.

    ``"softmax"``: ``class_logits`` and :math:`p = \mathrm{softmax}(z)`. ``"evidential"``:
    :math:`e = g(z)` with the evidence function ``evidence``, :math:`\alpha = e + 1`,
    :math:`p = \alpha / S` and :math:`u = K / S` (``class_alpha``, ``class_prob``,
    ``class_uncertainty``).
    """
    if head == "softmax":
        return ModelOutput(class_logits=logits, class_prob=F.softmax(logits, dim=1))
    stats = dirichlet(evidence_from_logits(logits, evidence), dim=1)
    return ModelOutput(
        class_alpha=stats.alpha, class_uncertainty=stats.uncertainty, class_prob=stats.prob
    )


class SoftmaxHead(nn.Module):
    """Image-level softmax classifier: global average pooling -> linear -> logits -> softmax."""

    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_ch, num_classes)

    def forward(self, feature: Tensor) -> ModelOutput:
        return image_output(self.linear(feature.mean(dim=(2, 3))))
