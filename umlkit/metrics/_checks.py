"""Input validation shared by the metrics: numpy conversion and clear ``ValueError`` messages.

Metrics accept numpy arrays, torch tensors (any device, detached here) and nested lists. They never
repair their input: probabilities must already be probabilities (no silent softmax), labels must be
class indices in range, and masks must be binary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Rows of a probability matrix must sum to 1 within this tolerance.
ROW_SUM_TOLERANCE = 1e-4


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (tensors are detached and moved to the CPU; bfloat16 -> float32)."""
    if x is None:
        raise ValueError(f"{name} is None")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise if a float array holds NaN or inf."""
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~np.isfinite(x)).sum())} values)")


def row_sum_tolerance(probs: Any, num_classes: int) -> float:
    """How far from 1 a row of ``probs`` may sum: :data:`ROW_SUM_TOLERANCE`, or ``K * eps``.

    Half-precision probabilities (float16: eps ≈ 1e-3, bfloat16: eps ≈ 8e-3) cannot sum to 1
    within 1e-4 after rounding, so for them the tolerance is ``num_classes`` times the machine
    epsilon of their dtype, whichever is larger.
    """
    dtype = getattr(probs, "dtype", None)
    if dtype is None:
        return ROW_SUM_TOLERANCE
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        import torch

        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    else:
        eps = float(np.finfo(dtype).eps) if np.dtype(dtype).kind == "f" else 0.0
    return max(ROW_SUM_TOLERANCE, num_classes * eps)


def check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    """Validate class probabilities and return them as a float64 ``(N, K)`` array.

    Args:
        probs: ``(N, K)`` rows summing to 1, or ``(N,)`` the probability of the positive class of
            a binary problem, read as ``[1 - p, p]``. The tolerance of the row sums is
            :func:`row_sum_tolerance`.
        name: the argument's name for error messages.

    Raises:
        ValueError: wrong number of dimensions, no samples, a single column, NaN/inf, values
            outside [0, 1], or rows that do not sum to 1.
    """
    array = to_numpy(probs, name)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (N, K) or (N,) for a binary positive-class probability; "
            f"got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    check_finite(array, name)
    if array.min() < 0 or array.max() > 1:
        raise ValueError(
            f"{name} must lie in [0, 1] (got min {array.min():.4g}, max {array.max():.4g}); "
            "pass probabilities, not logits (metrics never apply a softmax)"
        )
    if array.ndim == 1:
        return np.stack([1.0 - array, array], axis=1)
    if array.shape[1] < 2:
        raise ValueError(f"{name} has a single column; pass binary probabilities with shape (N,)")
    deviation = np.abs(array.sum(axis=1) - 1.0)
    tolerance = row_sum_tolerance(probs, array.shape[1])
    if deviation.max() > tolerance:
        row = int(deviation.argmax())
        raise ValueError(
            f"rows of {name} must sum to 1 (tolerance {tolerance:.2g}); row {row} sums to "
            f"{array[row].sum():.6g}; pass probabilities, not logits or scores"
        )
    return array


def check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Validate integer class indices: shape ``(n,)``, values in ``[0, num_classes)``; as int64."""
    array = to_numpy(labels, name)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) to match the probabilities, got {array.shape}"
        )
    return check_class_indices(array, num_classes, name)


def check_class_indices(array: Any, num_classes: int | None, name: str) -> np.ndarray:
    """Integer-valued array (any shape) with values in ``[0, num_classes)``; returned as int64."""
    array = to_numpy(array, name)
    if array.dtype.kind == "f":
        check_finite(array, name)
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    elif array.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds a negative class index ({array.min()})")
    if num_classes is not None and array.size and array.max() >= num_classes:
        raise ValueError(
            f"{name} holds class index {array.max()} but there are only {num_classes} classes"
        )
    return array


def check_binary(x: Any, name: str) -> np.ndarray:
    """A binary mask or indicator: bool, or numbers that are all 0 or 1; returned as bool."""
    array = to_numpy(x, name)
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a binary mask (bool or 0/1), got dtype {array.dtype}")
    check_finite(array, name)
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be binary (0/1 or bool); found values other than 0 and 1")
    return array.astype(bool)


def check_scores(x: Any, name: str) -> np.ndarray:
    """A real-valued score array (uncertainty, confidence): finite, non-empty; as float64."""
    array = to_numpy(x, name)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    check_finite(array, name)
    return array


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise if two arrays differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape: {a.shape} vs {b.shape}")


def check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    """Raise if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_n_bins(n_bins: int) -> None:
    """Raise unless ``n_bins`` is a positive integer."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
