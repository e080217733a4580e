r"""Faster ways to compute two things umlkit's models and losses need, with the same numbers.

The model and loss code is written the way the formulas read: batch norm is ``nn.BatchNorm2d``
(:class:`umlkit.models.blocks.BatchNorm2d`) and the evidential loss is autograd over
``torch.digamma`` and ``torch.lgamma`` (:func:`umlkit.evidential.mean_evidential_terms`). This
module holds the two places where umlkit computes the same numbers another way because it is
faster:

- :func:`one_thread_batch_norm` — training-mode batch norm of a channels-last CPU map run on one
  thread, in place of PyTorch's multi-threaded kernel (taken when
  :func:`takes_one_thread_batch_norm` says so);
- :func:`mean_digamma_terms` — the means of the digamma evidential loss and of the KL term with a
  hand-derived backward, in place of autograd through both formulas.

One switch decides for both, read each time a layer or loss runs:

>>> from umlkit import fastpath
>>> fastpath.enabled()                 # on by default
True
>>> with fastpath.disabled():          # the plain computations, e.g. to compare
...     fastpath.enabled()
False

``UMLKIT_FASTPATH=0`` in the environment switches it off for a whole run, and
:func:`set_enabled` for the rest of a session. Under ``torch.compile`` the fast paths always step
aside: the plain computations are what the compiler can trace and fuse. Which way is faster
where is measured by ``umlkit bench`` (:mod:`umlkit.benchmarks.models`), which times every model
with the fast paths on and off; ``tests/test_fastpath.py`` checks that both give the same values,
gradients and batch-norm running statistics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import Tensor, nn

#: The environment variable that switches the fast paths off when set to ``0``.
ENVIRONMENT_VARIABLE = "UMLKIT_FASTPATH"

# None: follow the environment variable; True/False: set by set_enabled or use.
_choice: bool | None = None


def enabled() -> bool:
    """Whether the fast paths are on: by default yes, unless ``UMLKIT_FASTPATH=0``.

    :func:`set_enabled` and :func:`use` override the environment; inside ``torch.compile`` the
    answer is always ``False``.
    """
    if torch.compiler.is_compiling():
        return False
    if _choice is not None:
        return _choice
    return os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() != "0"


def set_enabled(flag: bool | None) -> bool | None:
    """Switch the fast paths on (``True``) or off (``False``), or back to the environment (``None``).

    Returns:
        The previous setting, so that it can be restored.
    """
    global _choice
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"flag must be True, False or None, got {flag!r}")
    previous, _choice = _choice, flag
    return previous


@contextmanager
def use(flag: bool) -> Iterator[None]:
    """The fast paths on (``True``) or off (``False``) inside the block, restored on the way out."""
    previous = set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def disabled() -> AbstractContextManager[None]:
    """The plain computations inside the block: ``with fastpath.disabled(): ...``."""
    return use(False)


# ------------------------------------------------------------------------------ batch norm


def takes_one_thread_batch_norm(layer: nn.BatchNorm2d, x: Tensor) -> bool:
    """Whether ``layer(x)`` goes through :func:`one_thread_batch_norm`.

    Only in the case where PyTorch's own CPU kernel is slow: fast paths on, training mode, a
    float32 channels-last map on a CPU with more than one thread, a channel count that is not a
    multiple of 16, an affine layer with momentum-based running statistics, no autocast.
    """
    return (
        enabled()
        and layer.training
        and x.device.type == "cpu"
        and x.ndim == 4
        and x.shape[1] % 16 != 0
        and x.is_contiguous(memory_format=torch.channels_last)
        and x.dtype == torch.float32
        and layer.affine
        and layer.track_running_stats
        and layer.momentum is not None
        and torch.get_num_threads() > 1
        and not torch.is_autocast_enabled("cpu")
    )


def one_thread_batch_norm(layer: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """``nn.BatchNorm2d.forward`` in training mode, run on one CPU thread (forward and backward).

    Replaces PyTorch's multi-threaded channels-last batch norm, which is slower than one thread
    when the channel count is not a multiple of 16 (the threads seem to share cache lines for
    their per-channel sums: 16 float32 channels fill one 64-byte line). The kernels and hence the
    numbers are PyTorch's own; the running statistics and ``num_batches_tracked`` are updated as
    ``nn.BatchNorm2d`` updates them.
    """
    layer._check_input_dim(x)
    layer.num_batches_tracked.add_(1)
    return _OneThreadBatchNorm.apply(
        x,
        layer.weight,
        layer.bias,
        layer.running_mean,
        layer.running_var,
        layer.momentum,
        layer.eps,
    )


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch's intra-op CPU threads set to 1 inside the block, restored on the way out."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _OneThreadBatchNorm(torch.autograd.Function):
    """Training-mode batch norm whose forward and backward call ATen's kernels on one thread."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        with _one_thread():
            y, mean, invstd = torch.native_batch_norm(
                x, weight, bias, running_mean, running_var, True, momentum, eps
            )
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        with _one_thread():
            grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
                grad,
                x,
                weight,
                None,
                None,
                mean,
                invstd,
                True,
                ctx.eps,
                list(ctx.needs_input_grad[:3]),
            )
        return grad_x, grad_weight, grad_bias, None, None, None, None


# ------------------------------------------------------------------------- evidential loss


def mean_digamma_terms(alpha: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    r"""The means of the digamma evidential loss and of the KL term, with a hand-derived backward.

    Replaces ``evidential_loss(alpha, target).mean(), kl_to_uniform(alpha, target).mean()``
    (:mod:`umlkit.evidential`): autograd reaches the same gradient through the digamma of every
    :math:`\ln\Gamma` and some thirty intermediate maps, where this computes it from one closed
    form (trigamma values) and keeps five maps for the backward.

    With :math:`\alpha_y` the true class's concentration, :math:`\tilde S = S - \alpha_y + 1` and
    :math:`\tilde\alpha` as in :func:`~umlkit.evidential.kl_to_uniform` (:math:`\tilde\alpha_y = 1`),
    per sample

    .. math::
        L = \psi(S) - \psi(\alpha_y), \qquad
        \mathrm{KL} = \ln\Gamma(\tilde S) - \ln\Gamma(K) - \sum_k \ln\Gamma(\tilde\alpha_k)
        + \sum_k (\tilde\alpha_k - 1)\,\psi(\tilde\alpha_k) - (\tilde S - K)\,\psi(\tilde S)

    (the last term is :math:`\sum_k (\tilde\alpha_k - 1)\,\psi(\tilde S)` summed out), and the
    derivatives are, with :math:`\psi'` the trigamma function,

    .. math::
        \frac{\partial L}{\partial \alpha_k} = \psi'(S) - [k = y]\,\psi'(\alpha_y), \qquad
        \frac{\partial \mathrm{KL}}{\partial \alpha_k} = [k \ne y]\,\big((\alpha_k - 1)\,
        \psi'(\alpha_k) - (\tilde S - K)\,\psi'(\tilde S)\big).

    Args:
        alpha: checked float concentrations :math:`\alpha \ge 1`, ``(B, K)`` or ``(B, K, H, W)``.
        target: checked integer class indices, ``(B,)`` or ``(B, H, W)``.

    Returns:
        ``(mean loss, mean KL)``, two scalars.
    """
    return _MeanDigammaTerms.apply(alpha, target)


class _MeanDigammaTerms(torch.autograd.Function):
    """The autograd function behind :func:`mean_digamma_terms`."""

    @staticmethod
    def forward(ctx, alpha: Tensor, target: Tensor):
        num_classes = alpha.shape[1]
        index = target.long().unsqueeze(1)  # (B, 1, ...)
        strength = alpha.sum(dim=1, keepdim=True)
        alpha_true = alpha.gather(1, index)
        alpha_tilde = alpha.scatter(1, index, 1.0)  # the true class's evidence removed
        strength_tilde = strength - alpha_true + 1.0
        loss = torch.digamma(strength) - torch.digamma(alpha_true)
        kl = (
            torch.lgamma(strength_tilde)
            - math.lgamma(num_classes)
            - torch.lgamma(alpha_tilde).sum(dim=1, keepdim=True)
            + ((alpha_tilde - 1.0) * torch.digamma(alpha_tilde)).sum(dim=1, keepdim=True)
            - (strength_tilde - num_classes) * torch.digamma(strength_tilde)
        )
        ctx.save_for_backward(index, strength, alpha_true, alpha_tilde, strength_tilde)
        return loss.mean(), kl.mean()

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_kl: Tensor):
        index, strength, alpha_true, alpha_tilde, strength_tilde = ctx.saved_tensors
        num_classes = alpha_tilde.shape[1]
        scale_loss = grad_loss / strength.numel()  # d mean / d sample = 1 / (number of samples)
        scale_kl = grad_kl / strength.numel()
        trigamma_strength = torch.polygamma(1, strength)
        # Every class: the psi(S) part of L and the KL gradient (zero at the true class below).
        shared = scale_loss * trigamma_strength - scale_kl * (
            (strength_tilde - num_classes) * torch.polygamma(1, strength_tilde)
        )
        grad = shared + scale_kl * (alpha_tilde - 1.0) * torch.polygamma(1, alpha_tilde)
        # The true class: alpha~_y is the constant 1 (no KL gradient); L adds -psi'(alpha_y).
        true_class = scale_loss * (trigamma_strength - torch.polygamma(1, alpha_true))
        return grad.scatter(1, index, true_class), None
