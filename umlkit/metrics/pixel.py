r"""Pixel-level calibration by streaming bin counts: memory independent of the number of pixels.

A 256 × 256 test set of a few hundred images already holds 10^7-10^8 pixels; keeping every pixel's
confidence to compute one ECE at the end would need gigabytes. The reliability statistics of
equal-width bins are sums, so they can be accumulated batch by batch instead:

.. math::

    n_b = \sum_{i \in b} 1, \qquad C_b = \sum_{i \in b} c_i, \qquad O_b = \sum_{i \in b} o_i,
    \qquad \mathrm{ECE} = \frac{1}{N}\sum_b |O_b - C_b|

(``c`` the confidence, ``o`` the 0/1 outcome; :math:`\frac{n_b}{N}|O_b/n_b - C_b/n_b|` simplifies
to :math:`|O_b - C_b|/N`). :class:`PixelCalibration` keeps these three length-``n_bins``
float64 arrays for the pooled ECE, plus one ECE value per image for the per-image mean: its memory
grows with the number of images (one Python float each), never with the number of pixels. The bins
and the confidence/outcome conventions are exactly those of :mod:`umlkit.metrics.calibration`, so
the streamed pooled ECE equals :func:`~umlkit.metrics.expected_calibration_error` of all pixels at
once (up to float64 summation order). Equal-mass bins need all confidences at once and are not
offered here.

Two summaries, because they answer different questions:

- **pooled**: all pixels of all images in one set of bins (dominated by large images/structures);
- **per-image mean**: the ECE of each image, averaged over images (each image counts the same).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from umlkit.metrics._checks import check_choice, check_n_bins, row_sum_tolerance
from umlkit.metrics.calibration import (
    MODES,
    bins_frame,
    ece_from_sums,
    uniform_bin_edges,
    uniform_bin_index,
)


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array or tensor: {error}") from error


class PixelCalibration:
    """Streaming pixel calibration: ``update()`` per batch, ``compute()`` at the end.

    Example::

        calibration = PixelCalibration(n_bins=15, include_background=False)
        for batch in loader:
            output = model(batch["image"])
            calibration.update(dirichlet_from_alpha(output.pixel_alpha).prob, batch["mask"])
        result = calibration.compute()  # result["ece_pooled"], result["ece_per_image_mean"]

    Args:
        n_bins: number of equal-width confidence bins [lower, upper) (1.0 in the last one).
        include_background: ``True``: every pixel counts. ``False``: only foreground pixels,
            as ``foreground`` defines them. Confident, correct background would otherwise swamp
            the statistics with near-perfect pixels.
        foreground: which pixels count when ``include_background=False``:

            - ``"union"`` (default): the true class **or** the predicted class is not
              ``background_class`` (the union of the true and the predicted foreground), so
              background mistaken for foreground and missed foreground both stay in. The
              selection depends on the labels, which biases the ECE upwards: for a perfectly
              calibrated model it drops the correct low-confidence background pixels but keeps
              the wrong ones (3 classes, calibrated by construction: ECE 0.056 instead of 0.000
              in ``umlkit.benchmarks.metrics``). Compare models with it, don't read it as an
              absolute.
            - ``"predicted"``: the predicted class is not background. This selection depends
              on the probabilities alone, so a calibrated model (labels distributed as its
              probabilities say) stays calibrated on it; but missed foreground (the false
              negatives) drops out.
        background_class: the class index treated as background.
        mode: ``"top_label"`` (confidence = max probability, outcome = argmax is right) or
            ``"positive_class"`` (binary only: confidence = p(class 1), outcome = true class is 1).

    Raises:
        ValueError: a bad ``n_bins``, ``foreground`` or ``mode``.
    """

    def __init__(
        self,
        n_bins: int = 15,
        include_background: bool = True,
        foreground: str = "union",
        background_class: int = 0,
        mode: str = "top_label",
    ) -> None:
        check_n_bins(n_bins)
        check_choice(mode, MODES, "mode")
        check_choice(foreground, ("union", "predicted"), "foreground")
        self.n_bins = n_bins
        self.include_background = include_background
        self.foreground = foreground
        self.background_class = background_class
        self.mode = mode
        self.edges = uniform_bin_edges(n_bins)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.count = np.zeros(self.n_bins)
        self.confidence_sum = np.zeros(self.n_bins)
        self.outcome_sum = np.zeros(self.n_bins)
        self.image_ece: list[float] = []
        self.images_without_pixels = 0

    def update(self, probs: Any, mask: Any) -> None:
        """Add a batch of probability maps and their true label maps.

        Args:
            probs: ``(B, C, H, W)`` class probabilities (any number of spatial dimensions; tensor
                on any device or numpy), summing to 1 over ``C`` (within 1e-4, or ``C`` times
                the machine epsilon for half precision); e.g.
                :math:`\\alpha/S` or a softmax. Never softmaxed here.
            mask: integer class indices ``(B, H, W)``.

        Raises:
            ValueError: shapes that do not match, NaN/inf, probabilities outside [0, 1] or not
                summing to 1, or class indices out of range.
        """
        probs = _as_tensor(probs, "probs")
        mask = _as_tensor(mask, "mask")
        self._check(probs, mask)
        if probs.dtype not in (torch.float32, torch.float64):
            probs = probs.float()
        mask = mask.to(device=probs.device, dtype=torch.long)
        # ties go to the lowest class index, as numpy.argmax in umlkit.metrics.calibration
        max_prob, predicted = probs.max(dim=1)
        if self.mode == "top_label":
            confidence, outcome = max_prob, predicted == mask
        else:
            confidence, outcome = probs[:, 1], mask == 1
        batch = probs.shape[0]
        # Only (B, H, W) maps leave the device: the class dimension is already reduced.
        confidence = confidence.reshape(batch, -1).cpu().numpy()
        outcome = outcome.reshape(batch, -1).cpu().numpy()
        bins = uniform_bin_index(confidence, self.edges)
        # One bincount over (image, bin) pairs gives per-image and (summed) pooled statistics.
        flat = bins + self.n_bins * np.arange(batch)[:, None]
        if not self.include_background:
            keep = predicted != self.background_class
            if self.foreground == "union":
                keep |= mask != self.background_class
            keep = keep.reshape(batch, -1).cpu().numpy()
            flat, confidence, outcome = flat[keep], confidence[keep], outcome[keep]
        size = batch * self.n_bins
        count = np.bincount(flat.ravel(), minlength=size).reshape(batch, self.n_bins)
        confidence_sum = np.bincount(
            flat.ravel(), weights=confidence.ravel(), minlength=size
        ).reshape(batch, self.n_bins)
        outcome_sum = np.bincount(flat.ravel(), weights=outcome.ravel(), minlength=size).reshape(
            batch, self.n_bins
        )
        self.count += count.sum(axis=0)
        self.confidence_sum += confidence_sum.sum(axis=0)
        self.outcome_sum += outcome_sum.sum(axis=0)
        for image in range(batch):
            if count[image].sum() == 0:
                self.images_without_pixels += 1
            else:
                self.image_ece.append(
                    ece_from_sums(count[image], confidence_sum[image], outcome_sum[image])
                )

    def _check(self, probs: torch.Tensor, mask: torch.Tensor) -> None:
        if probs.ndim < 3:
            raise ValueError(f"probs must have shape (B, C, H, W), got {tuple(probs.shape)}")
        expected = (probs.shape[0], *probs.shape[2:])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"mask must have shape {expected} to match probs {tuple(probs.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        if not probs.dtype.is_floating_point:
            raise ValueError(f"probs must be floating point, got {probs.dtype}")
        if mask.dtype.is_floating_point or mask.dtype == torch.bool:
            raise ValueError(f"mask must hold integer class indices, got {mask.dtype}")
        num_classes = probs.shape[1]
        if num_classes < 2:
            raise ValueError("probs needs at least 2 classes in dimension 1")
        if self.mode == "positive_class" and num_classes != 2:
            raise ValueError(f'mode="positive_class" needs 2 classes, got {num_classes}')
        if probs.numel() == 0:
            raise ValueError("probs is empty")
        low, high = (float(v) for v in torch.aminmax(probs))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("probs contains NaN or inf")
        if low < 0 or high > 1:
            raise ValueError(
                f"probs must lie in [0, 1] (min {low:.4g}, max {high:.4g}); pass probabilities, "
                "not logits"
            )
        deviation = float((probs.sum(dim=1, dtype=torch.float32) - 1).abs().max())
        if deviation > row_sum_tolerance(probs, num_classes):
            raise ValueError(
                f"probs must sum to 1 over the class dimension 1 (largest deviation {deviation:.3g})"
            )
        mask_low, mask_high = (int(v) for v in torch.aminmax(mask))
        if mask_low < 0 or mask_high >= num_classes:
            raise ValueError(
                f"mask holds class indices in [{mask_low}, {mask_high}] but probs has "
                f"{num_classes} classes"
            )

    def compute(self) -> dict[str, Any]:
        """The calibration of everything seen since the last :meth:`reset`.

        Returns:
            A dict with ``ece_pooled`` and ``mce_pooled`` (all pixels in one set of bins),
            ``ece_per_image_mean`` (mean of the per-image ECEs), ``ece_per_image`` (the array of
            them), ``n_pixels``, ``n_images`` (images with at least one counted pixel),
            ``images_without_pixels`` (images skipped because ``include_background=False`` left
            nothing) and ``bins`` (the pooled reliability table, as
            :func:`~umlkit.metrics.reliability_bins` returns it).

        Raises:
            ValueError: nothing has been accumulated.
        """
        if self.count.sum() == 0:
            raise ValueError("PixelCalibration.compute(): no pixels accumulated yet; call update()")
        sums = {
            "lower": self.edges[:-1],
            "upper": self.edges[1:],
            "count": self.count.copy(),
            "confidence_sum": self.confidence_sum.copy(),
            "outcome_sum": self.outcome_sum.copy(),
        }
        bins: pd.DataFrame = bins_frame(sums, "uniform", self.mode)
        image_ece = np.asarray(self.image_ece)
        return {
            "ece_pooled": ece_from_sums(self.count, self.confidence_sum, self.outcome_sum),
            "mce_pooled": float(bins.loc[bins["count"] > 0, "gap"].abs().max()),
            "ece_per_image_mean": float(image_ece.mean()),
            "ece_per_image": image_ece,
            "n_pixels": int(self.count.sum()),
            "n_images": int(image_ece.size),
            "images_without_pixels": self.images_without_pixels,
            "bins": bins,
        }
