"""The networks: UML (paper structure and 2024 variant) and the baselines, built by name.

>>> from umlkit.models import build_model
>>> model = build_model("uml", width=16)                 # the official 2023 structure
>>> model = build_model("uml", width=16, navigator=False)  # ablation: no Uncertainty Navigator
>>> model = build_model("multitask", width=16)             # shared encoder, softmax heads

Every model carries the :class:`ModelConfig` that built it as ``model.config``; checkpoints store
``model.config.to_dict()`` and :func:`model_from_config` rebuilds the same architecture.

Models (``name``):

- ``"uml"`` — :class:`~umlkit.models.uml.UML`, the MICCAI 2023 structure as the official code builds it.
- ``"uml2024"`` — :class:`~umlkit.models.uml2024.UML2024`, the authors' 2024 code: attention-gate
  navigators and mutual evidence at every level.
- ``"unet"`` — segmentation only; ``"classifier"`` — classification only; ``"multitask"`` —
  shared encoder with a segmentation decoder and a softmax image head
  (:mod:`umlkit.models.baselines`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from umlkit.evidential import EVIDENCE_KINDS
from umlkit.models.baselines import Classifier, MultiTaskNet, SegmentationUNet
from umlkit.models.blocks import (
    UPSAMPLE_MODES,
    ConvBlock,
    Decoder,
    Encoder,
    ModelOutput,
    UNet,
    check_positive_int,
    load_encoder_weights,
)
from umlkit.models.uml import UML
from umlkit.models.uml2024 import UML2024

MODEL_NAMES = ("uml", "uml2024", "unet", "classifier", "multitask")
UML_NAMES = ("uml", "uml2024")
HEADS = ("evidential", "softmax")

_UML_OPTIONS = (
    "depth",
    "head",
    "evidence",
    "navigator",
    "instructor",
    "mixer_width",
    "dropout",
    "encoder_weights",
)
#: The options (beyond name, classes, width, channels) each model understands.
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "uml": (*_UML_OPTIONS, "navigate_final"),
    "uml2024": _UML_OPTIONS,
    "unet": ("depth", "upsample", "encoder_weights"),
    "classifier": ("depth", "head", "evidence", "encoder_weights"),
    "multitask": ("depth", "head", "evidence", "upsample", "encoder_weights"),
}

_CLASSES = {
    "uml": UML,
    "uml2024": UML2024,
    "unet": SegmentationUNet,
    "classifier": Classifier,
    "multitask": MultiTaskNet,
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint)."""

    name: str = "uml"  # "uml", "uml2024", "unet", "classifier" or "multitask"
    num_classes: int = 2  # K: image-level classes (e.g. melanoma yes/no)
    num_seg_classes: int = 2  # C: pixel classes, background included
    width: int = 16  # channels of the first encoder level; level i has width * 2**i
    in_channels: int = 3  # image channels (3 for RGB)
    depth: int = 4  # encoder levels, at strides 1, 2, ..., 2**(depth-1)
    head: str | None = None  # image head "evidential"/"softmax"; None: evidential for UML only
    evidence: str = "softplus"  # evidence function of evidential heads: softplus, relu or exp
    navigator: bool = True  # UML: Uncertainty Navigator on (False: plain U-Net skips)
    instructor: bool = (
        True  # UML: Uncertainty Instructor on (False: classifier sees only its encoder)
    )
    upsample: str = "bilinear"  # baselines' decoder upsampling: "bilinear" (+1x1) or "transpose"
    mixer_width: int | None = (
        None  # UML: P, the mixer's projection width; None: 4 * width (official)
    )
    dropout: float = 0.1  # UML: 2-D dropout of the double convolutions and navigators (official)
    navigate_final: bool = False  # uml, umlkit's option: final segmentation after the navigator
    encoder_weights: str | None = None  # local Encoder state-dict file loaded into every encoder

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model name {self.name!r}: choose one of {MODEL_NAMES}")
        if self.head is None:  # frozen dataclass: resolve the default once, here
            object.__setattr__(self, "head", "evidential" if self.name in UML_NAMES else "softmax")
        for name in ("num_classes", "num_seg_classes", "width", "in_channels", "depth"):
            check_positive_int(getattr(self, name), name)
        if self.mixer_width is not None:
            check_positive_int(self.mixer_width, "mixer_width")
            if self.mixer_width % 2:
                raise ValueError(f"mixer_width must be even, got {self.mixer_width}")
        if isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        for name in ("num_classes", "num_seg_classes"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        if self.depth < 2:
            raise ValueError(f"depth must be at least 2 (one downsampling), got {self.depth}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.evidence not in EVIDENCE_KINDS:
            raise ValueError(f"evidence must be one of {EVIDENCE_KINDS}, got {self.evidence!r}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        for name in ("navigator", "instructor", "navigate_final"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config fields {unknown}; known: {sorted(known)}")
        return cls(**values)


def build_model(
    name: str,
    num_classes: int = 2,
    num_seg_classes: int = 2,
    width: int = 16,
    in_channels: int = 3,
    **options: Any,
) -> nn.Module:
    """Build the network ``name`` (see :data:`MODEL_NAMES`).

    Args:
        name: ``"uml"``, ``"uml2024"``, ``"unet"``, ``"classifier"`` or ``"multitask"``.
        num_classes: K, image classes.
        num_seg_classes: C, pixel classes (background included).
        width: channels of the first level (level i has ``width * 2**i``).
        in_channels: image channels.
        **options: the model's options (:data:`MODEL_OPTIONS`): ``depth``, ``head``
            (``"evidential"`` by default for UML, ``"softmax"`` for the baselines), ``evidence``,
            ``navigator``, ``instructor``, ``upsample`` (baselines), ``mixer_width``,
            ``dropout``, ``navigate_final`` (``"uml"``), ``encoder_weights``.

    Returns:
        The model, in training mode, with ``model.config`` set.

    Raises:
        ValueError: an unknown name, an option the model does not have, or an invalid value.
        FileNotFoundError: ``encoder_weights`` names a missing file.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}: choose one of {MODEL_NAMES}")
    not_applicable = sorted(set(options) - set(MODEL_OPTIONS[name]))
    if not_applicable:
        raise ValueError(
            f"model {name!r} has no option(s) {not_applicable}; its options are "
            f"{list(MODEL_OPTIONS[name])}"
        )
    config = ModelConfig(
        name=name,
        num_classes=num_classes,
        num_seg_classes=num_seg_classes,
        width=width,
        in_channels=in_channels,
        **options,
    )
    return model_from_config(config)


def model_from_config(config: ModelConfig | dict[str, Any], load_weights: bool = True) -> nn.Module:
    """Build the model a :class:`ModelConfig` (or its dict) describes.

    Args:
        config: the configuration.
        load_weights: load ``config.encoder_weights`` if set (``False`` when restoring a
            checkpoint, which holds every weight).
    """
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    model = _CLASSES[config.name](config, load_weights=load_weights)
    # Weights in channels-last memory, like the features (see Encoder.forward): a convolution
    # whose weight and input share the layout needs no reorder on every call.
    return model.to(memory_format=torch.channels_last)


__all__ = [
    "HEADS",
    "MODEL_NAMES",
    "MODEL_OPTIONS",
    "UML",
    "UML2024",
    "Classifier",
    "ConvBlock",
    "Decoder",
    "Encoder",
    "ModelConfig",
    "ModelOutput",
    "MultiTaskNet",
    "SegmentationUNet",
    "UNet",
    "build_model",
    "load_encoder_weights",
    "model_from_config",
]
