"""The semi-supervised methods by name: build one, or rebuild a trained one from its checkpoint.

Every method (:mod:`umlkit.semi.baselines`, :mod:`umlkit.semi.caml`, :mod:`umlkit.semi.burl`) is a
:class:`~umlkit.semi.base.SemiSupervisedMethod` built from the same three numbers (input channels,
classes, U-Net width) and its own keyword options, so one name is enough to pick it:

>>> method = build_method("caml", num_classes=2, width=8, sharpen_temperature=0.1)

A checkpoint of the training loop (:func:`umlkit.semi.loop.fit_semi`) stores exactly these as its
``model_config`` (``method``, ``in_channels``, ``num_classes``, ``width``, ``options``), which is
how :func:`load_method` rebuilds the method before loading its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from umlkit.checkpoints import load_checkpoint, load_module_state
from umlkit.runtime import pick_device
from umlkit.semi.base import SemiSupervisedMethod
from umlkit.semi.baselines import MeanTeacher, SupervisedOnly
from umlkit.semi.burl import BURL
from umlkit.semi.caml import CAML

#: The methods by name, in the order the notebook compares them.
METHODS: dict[str, type[SemiSupervisedMethod]] = {
    "supervised": SupervisedOnly,
    "mean_teacher": MeanTeacher,
    "caml": CAML,
    "burl": BURL,
}


def build_method(
    name: str, in_channels: int = 3, num_classes: int = 2, width: int = 8, **options: Any
) -> SemiSupervisedMethod:
    """A semi-supervised method by name (:data:`METHODS`), with its keyword ``options``.

    Raises:
        ValueError: an unknown name, or options the method does not take.
    """
    if name not in METHODS:
        raise ValueError(f"unknown semi-supervised method {name!r}: choose one of {list(METHODS)}")
    try:
        return METHODS[name](in_channels, num_classes, width, **options)
    except TypeError as error:
        raise ValueError(f"bad options {sorted(options)} for method {name!r}: {error}") from None


def load_method(path: str | Path, device: str | None = "cpu") -> SemiSupervisedMethod:
    """Rebuild a method from a ``best.pt`` / ``last.pt`` of :func:`umlkit.semi.loop.fit_semi`, in eval mode.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: not a checkpoint of a semi-supervised run.
    """
    return method_from_checkpoint(load_checkpoint(path), path, device)


def method_from_checkpoint(
    checkpoint: dict[str, Any], path: str | Path, device: str | None
) -> SemiSupervisedMethod:
    """The method of a checkpoint :func:`load_checkpoint` read, with its weights, in eval mode."""
    model_config = checkpoint["model_config"]
    if "method" not in model_config:
        raise ValueError(f"{path} is not a semi-supervised checkpoint (no method in model_config)")
    method = build_method(
        model_config["method"],
        in_channels=model_config["in_channels"],
        num_classes=model_config["num_classes"],
        width=model_config["width"],
        **model_config["options"],
    )
    load_module_state(method, checkpoint["model_state"], path)
    return method.to(pick_device(device)).eval()
