"""Image corruptions for the robustness study: noise, salt-and-pepper, blur, contrast loss.

Every corruption takes an image in [0, 1] and a *severity* in the corruption's own units, and
severity 0 is the identity:

====================  ======================================  ==================================
name                  x~ =                                    severity
====================  ======================================  ==================================
``gaussian_noise``    clip(x + N(0, sigma^2), 0, 1)           sigma >= 0 (intensity units)
``salt_and_pepper``   a fraction ``amount`` of the pixels      amount in [0, 1]
                      set to 1 (half) or 0 (other half)
``gaussian_blur``     x * G_sigma (per channel)               sigma >= 0 (pixels)
``contrast``          m + (1 - c)(x - m), m = channel mean    c in [0, 1] (1: flat grey image)
====================  ======================================  ==================================

Salt-and-pepper picks exactly round(amount * H * W) pixel positions per image, sets the first half
(rounded down) to 0 and the rest to 1, in all channels of each position. (The UML reference code
draws ~amount/2 positions and sets them all to 0: no salt at all.) ``amount`` counts the pixels
picked; a picked pixel that already had the new value does not change visibly.

Use :func:`corrupt` for one call, or a :class:`Corruption` as a reusable transform: it accepts an
image (C, H, W), a batch (B, C, H, W) or an item dict (only ``"image"`` is corrupted, so masks and
labels stay clean). Randomness is seeded: the same seed gives the same corruption on CPU. For item
dicts the seed is combined with the item's ``id``, so each image of a dataset gets its own noise,
independent of the order in which items are read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: Severity grids of the robustness study (notebook 07), from clean to heavily corrupted.
DEFAULT_SEVERITIES = {
    "gaussian_noise": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    "salt_and_pepper": (0.0, 0.01, 0.03, 0.05, 0.1, 0.2),
    "gaussian_blur": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "contrast": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9),
}


def gaussian_noise(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x~ = clip(x + N(0, sigma^2), 0, 1), independently per pixel and channel."""
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    return (image + sigma * noise.to(image.device)).clamp_(0.0, 1.0)


def salt_and_pepper(image: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Set round(amount * H * W) random pixel positions per image to 0 (half) or 1 (the rest)."""
    batch, _, height, width = image.shape
    n_pixels = height * width
    n_changed = int(round(amount * n_pixels))
    n_pepper = n_changed // 2
    pepper = torch.zeros(batch, n_pixels, dtype=torch.bool)
    salt = torch.zeros(batch, n_pixels, dtype=torch.bool)
    for b in range(batch):
        positions = torch.randperm(n_pixels, generator=generator)[:n_changed]
        pepper[b, positions[:n_pepper]] = True
        salt[b, positions[n_pepper:]] = True
    # One flag per pixel position, broadcast over the channels: the whole pixel turns black/white.
    pepper = pepper.view(batch, 1, height, width).to(image.device)
    salt = salt.view(batch, 1, height, width).to(image.device)
    return image.masked_fill(pepper, 0.0).masked_fill(salt, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Convolve each channel with a normalised Gaussian of ``sigma`` pixels (radius ceil(3 sigma)).

    Separable: one pass along rows, one along columns; borders are extended by replication, so
    a constant image stays constant.
    """
    if sigma == 0:
        return image.clone()
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    batch, channels, height, width = image.shape
    planes = image.reshape(batch * channels, 1, height, width)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="replicate")
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1))
    planes = F.conv2d(planes, kernel.view(1, 1, -1, 1))
    return planes.reshape(batch, channels, height, width).clamp_(0.0, 1.0)


def contrast(image: torch.Tensor, reduction: float, generator: torch.Generator) -> torch.Tensor:
    """x~ = m + (1 - c)(x - m) with m the per-image, per-channel mean: a blend towards m."""
    mean = image.mean(dim=(-2, -1), keepdim=True)
    return mean + (1.0 - reduction) * (image - mean)


#: name -> function(batch (B, C, H, W), severity, torch.Generator) -> corrupted batch.
CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "salt_and_pepper": salt_and_pepper,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
}
#: Largest valid severity of each corruption (None: unbounded); the smallest is always 0.
MAX_SEVERITY: dict[str, float | None] = {
    "gaussian_noise": None,
    "salt_and_pepper": 1.0,
    "gaussian_blur": None,
    "contrast": 1.0,
}


def _check(name: str, severity: float) -> float:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    try:
        severity = float(severity)
    except (TypeError, ValueError):
        raise ValueError(f"severity of {name} must be a number, got {severity!r}") from None
    upper = MAX_SEVERITY[name]
    if not math.isfinite(severity) or severity < 0 or (upper is not None and severity > upper):
        bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
        raise ValueError(f"severity of {name} must be {bound}, got {severity!r}")
    return severity


class Corruption:
    """A corruption with a fixed severity and seed, usable as a dataset transform.

    Args:
        name: one of :data:`CORRUPTIONS`.
        severity: in the corruption's units (see the module docstring); 0 = identity.
        seed: seeds the random draws (noise, pixel positions).

    Raises:
        ValueError: an unknown name or a severity out of range.
    """

    def __init__(self, name: str, severity: float, seed: int = 0):
        self.severity = _check(name, severity)
        self.name = name
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"Corruption({self.name!r}, severity={self.severity:g}, seed={self.seed})"

    def _generator(self, key: str | None) -> torch.Generator:
        seed = self.seed
        if key is not None:
            digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
            seed = int.from_bytes(digest[:8], "little")
        return torch.Generator().manual_seed(seed)

    def apply(self, image: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """Corrupt an image (C, H, W) or batch (B, C, H, W) in [0, 1]; return a new tensor."""
        if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"expected an image tensor (C, H, W) or (B, C, H, W), got {shape}")
        if not image.is_floating_point():
            raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}")
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(
                f"image values must lie in [0, 1], found [{image.min():.3g}, {image.max():.3g}]"
            )
        if self.severity == 0:
            return image.clone()
        batch = image if image.dim() == 4 else image[None]
        function = CORRUPTIONS[self.name]
        out = function(batch, self.severity, self._generator(key))
        return out if image.dim() == 4 else out[0]

    def __call__(self, x: torch.Tensor | dict) -> torch.Tensor | dict:
        """Corrupt a tensor, or the ``"image"`` of an item dict (seeded by ``seed`` and ``id``)."""
        if isinstance(x, dict):
            if "image" not in x:
                raise ValueError("item dict has no 'image' to corrupt")
            item = dict(x)
            item["image"] = self.apply(x["image"], key=str(x.get("id", "")))
            return item
        return self.apply(x)


def corrupt(image: torch.Tensor | dict, name: str, severity: float, seed: int = 0):
    """Corrupt an image, batch or item dict once: ``Corruption(name, severity, seed)(image)``."""
    return Corruption(name, severity, seed)(image)
