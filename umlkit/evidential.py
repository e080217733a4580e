r"""Evidential deep learning: evidence, Dirichlet statistics, evidential losses and the KL term.

An evidential head does not output class probabilities directly. It outputs non-negative
*evidence* :math:`e_k \ge 0` for each of the :math:`K` classes, which parametrises a Dirichlet
distribution over the probability simplex (subjective logic, Sensoy et al. 2018):

.. math::

    \alpha_k = e_k + 1, \qquad S = \sum_k \alpha_k, \qquad
    b_k = e_k / S, \qquad u = K / S, \qquad \sum_k b_k + u = 1, \qquad p_k = \alpha_k / S.

``b_k`` is the *belief* mass of class ``k``, ``u`` the *uncertainty* mass (1 without any evidence,
towards 0 as evidence accumulates) and ``p_k`` the expected class probability under the Dirichlet.
umlkit uses :math:`p = \alpha / S` everywhere (never a softmax of :math:`\alpha`).

The losses are those of the TMC / TBraTS family that UML (MICCAI 2023) trains with; each one below
shows its formula beside the code. Every function works with the class dimension at ``dim=1``, so
the same call serves image-level tensors ``(B, K)`` and pixel-level tensors ``(B, K, H, W)``.
Half-precision inputs are cast up to float32 (digamma and lgamma lose too much in float16) and the
results come back as float32.

References:
    Sensoy, Kaplan, Kandemir. Evidential Deep Learning to Quantify Classification Uncertainty.
    NeurIPS 2018.
    Han, Zhang, Fu, Zhou. Trusted Multi-View Classification (TMC). ICLR 2021.
    Zou et al. TBraTS: Trusted Brain Tumor Segmentation. MICCAI 2022.
    Ren et al. Uncertainty Informed Mutual Learning for Joint Medical Image Classification and
    Segmentation (UML). MICCAI 2023, arXiv:2303.10049.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from umlkit import fastpath

EVIDENCE_KINDS = ("softplus", "relu", "exp")
LOSS_KINDS = ("digamma", "log", "mse")

#: ``exp`` evidence clamps the logits to this range first: e^10 ≈ 2.2e4 is far more evidence than
#: any loss needs, and without the clamp a logit of 89 already overflows float32 to inf.
EXP_LOGIT_CLAMP = 10.0


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Cast half precision (float16, bfloat16) and integers up to float32; keep float32/64."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _check_tensor(x: torch.Tensor, name: str, min_ndim: int = 2) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have a class dimension at dim 1, i.e. shape (B, K) or (B, K, H, W); "
            f"got shape {tuple(x.shape)}"
        )


def evidence_from_logits(logits: torch.Tensor, kind: str = "softplus") -> torch.Tensor:
    r"""Turn a network's raw outputs into non-negative evidence :math:`e \ge 0`.

    - ``"softplus"`` (UML's choice): :math:`e = \ln(1 + e^{z})`, smooth, gradient everywhere.
    - ``"relu"``: :math:`e = \max(0, z)`, zero gradient for negative logits (dead classes).
    - ``"exp"``: :math:`e = \exp(\mathrm{clamp}(z, -10, 10))`; the clamp keeps it finite.

    Args:
        logits: any shape; half precision is computed in float32.
        kind: ``"softplus"``, ``"relu"`` or ``"exp"``.

    Returns:
        Evidence of the same shape as ``logits`` (float32 or float64).

    Raises:
        ValueError: unknown ``kind`` or a ``logits`` that is not a tensor.
    """
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    logits = _as_float(logits)
    if kind == "softplus":
        return F.softplus(logits)
    if kind == "relu":
        return F.relu(logits)
    if kind == "exp":
        return torch.exp(logits.clamp(-EXP_LOGIT_CLAMP, EXP_LOGIT_CLAMP))
    raise ValueError(f"unknown evidence kind {kind!r}: choose one of {', '.join(EVIDENCE_KINDS)}")


@dataclass(frozen=True)
class DirichletStats:
    r"""The subjective-logic view of a Dirichlet :math:`\mathrm{Dir}(\alpha)`.

    All tensors keep the input's layout; ``strength`` and ``uncertainty`` keep the class dimension
    with size 1, so they have shape ``(B, 1)`` or ``(B, 1, H, W)`` and broadcast against ``alpha``.

    Attributes:
        evidence: :math:`e_k = \alpha_k - 1`.
        alpha: Dirichlet concentration :math:`\alpha_k = e_k + 1`.
        strength: Dirichlet strength :math:`S = \sum_k \alpha_k`.
        belief: belief masses :math:`b_k = e_k / S`.
        prob: expected probabilities :math:`p_k = \alpha_k / S` (rows sum to 1).
        uncertainty: uncertainty mass :math:`u = K / S` in (0, 1].
        dim: the class dimension.
    """

    evidence: torch.Tensor
    alpha: torch.Tensor
    strength: torch.Tensor
    belief: torch.Tensor
    prob: torch.Tensor
    uncertainty: torch.Tensor
    dim: int = 1


def dirichlet(evidence: torch.Tensor, dim: int = 1) -> DirichletStats:
    r"""Dirichlet statistics from evidence: :math:`\alpha = e + 1`, :math:`S`, :math:`b`, :math:`p`, :math:`u`.

    Args:
        evidence: non-negative evidence, class dimension ``dim`` (``(B, K)`` or ``(B, K, H, W)``
            with the default ``dim=1``).
        dim: the class dimension.

    Returns:
        A frozen :class:`DirichletStats` with ``alpha, strength, belief, prob, uncertainty``.

    Raises:
        ValueError: negative or non-finite evidence, or a tensor without the dimension ``dim``.
    """
    if not isinstance(evidence, torch.Tensor):
        raise ValueError(f"evidence must be a torch.Tensor, got {type(evidence).__name__}")
    _check_class_dim(evidence, dim, "evidence")
    evidence = _as_float(evidence)
    if torch.compiler.is_compiling():
        # The checks below read values back to Python; a compiled graph skips them.
        return _stats(evidence + 1.0, dim)
    # One pass over the map for both checks: NaN propagates into the minimum, inf is the maximum.
    low, high = _value_range(evidence)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("evidence contains NaN or inf")
    if low < 0:
        raise ValueError(
            f"evidence must be >= 0 (min {evidence.min().item():.4g}); "
            "use evidence_from_logits() to map logits to evidence"
        )
    return _stats(evidence + 1.0, dim)


def dirichlet_from_alpha(alpha: torch.Tensor, dim: int = 1) -> DirichletStats:
    r"""The same statistics as :func:`dirichlet`, starting from :math:`\alpha \ge 1` (e.g. a model output).

    Raises:
        ValueError: :math:`\alpha < 1` or non-finite, or a tensor without the dimension ``dim``.
    """
    if not isinstance(alpha, torch.Tensor):
        raise ValueError(f"alpha must be a torch.Tensor, got {type(alpha).__name__}")
    _check_class_dim(alpha, dim, "alpha")
    alpha = _as_float(alpha)
    _check_alpha_values(alpha)
    return _stats(alpha, dim)


def _check_class_dim(tensor: torch.Tensor, dim: int, name: str) -> None:
    """A ValueError unless ``tensor`` has the class dimension ``dim`` (negative counts back)."""
    if not -tensor.ndim <= dim < tensor.ndim:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} has no class dimension dim={dim}: give a "
            "batch of scores, (B, K) or (B, K, H, W), or the dim that holds the K classes"
        )


def _stats(alpha: torch.Tensor, dim: int) -> DirichletStats:
    num_classes = alpha.shape[dim]
    # S = sum_k alpha_k, kept as a size-1 class dimension so it broadcasts against alpha.
    strength = alpha.sum(dim=dim, keepdim=True)
    evidence = alpha - 1.0
    return DirichletStats(
        evidence=evidence,
        alpha=alpha,
        strength=strength,
        belief=evidence / strength,  # b_k = e_k / S
        prob=alpha / strength,  # p_k = alpha_k / S
        uncertainty=num_classes / strength,  # u = K / S
        dim=dim,
    )


def _value_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of ``x`` in one pass (NaN if ``x`` holds a NaN); ``(0, 0)`` when empty."""
    if not x.numel():
        return 0.0, 0.0
    low, high = torch.aminmax(x.detach())
    return float(low), float(high)


def one_hot_classes(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot ``(B, K, ...)`` of integer class indices ``target`` (B, ...), class dimension 1.

    The same numbers as ``F.one_hot(target, K).movedim(-1, 1).to(dtype)``, written by one
    comparison with the class numbers instead of an int64 scatter and a cast.
    """
    classes = torch.arange(num_classes, device=target.device)
    return (target.unsqueeze(1) == classes.view(1, -1, *([1] * (target.ndim - 1)))).to(dtype)


def check_class_indices(target: torch.Tensor, num_classes: int, name: str = "target") -> None:
    """Raise a ``ValueError`` unless every entry of integer ``target`` is in ``[0, num_classes)``."""
    low, high = _value_range(target)
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} holds class indices outside [0, {num_classes - 1}] "
            f"(out of range: min {int(low)}, max {int(high)})"
        )


def _check_alpha_values(alpha: torch.Tensor) -> None:
    low, high = _value_range(alpha)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("alpha contains NaN or inf")
    if low < 1:
        raise ValueError(
            f"alpha must be >= 1 (alpha = evidence + 1), got min {alpha.min().item():.4g}"
        )


def _prepare(
    alpha: torch.Tensor, target: torch.Tensor, one_hot: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``alpha`` (B, K, ...) and ``target`` (B, ...); return float ``alpha`` and one-hot y.

    With ``one_hot=False`` the second value is ``None`` (for callers that index by ``target``).
    """
    _check_tensor(alpha, "alpha")
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.device != alpha.device:
        raise ValueError(f"target is on {target.device} but alpha is on {alpha.device}")
    alpha = _as_float(alpha)
    _check_alpha_values(alpha)
    expected = (alpha.shape[0], *alpha.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must hold class indices of shape {expected} for alpha of shape "
            f"{tuple(alpha.shape)} (class dimension 1), got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer tensor of class indices, got {target.dtype}")
    num_classes = alpha.shape[1]
    check_class_indices(target, num_classes)
    if not one_hot:
        return alpha, None
    return alpha, one_hot_classes(target, num_classes, alpha.dtype)


def evidential_loss(
    alpha: torch.Tensor, target: torch.Tensor, kind: str = "digamma"
) -> torch.Tensor:
    r"""Per-sample evidential classification loss, no reduction.

    With one-hot targets :math:`y`, :math:`S = \sum_k \alpha_k` and :math:`p_k = \alpha_k / S`:

    - ``"digamma"`` (UML; the expected cross-entropy under :math:`\mathrm{Dir}(\alpha)`):
      :math:`L = \sum_k y_k\,(\psi(S) - \psi(\alpha_k))`
    - ``"log"`` (the negative log of the expected likelihood, "type-II ML"):
      :math:`L = \sum_k y_k\,(\ln S - \ln \alpha_k)`
    - ``"mse"`` (Bayes risk of the squared error = squared bias + variance):
      :math:`L = \sum_k (y_k - p_k)^2 + p_k (1 - p_k) / (S + 1)`

    All three fall as evidence goes on the true class. Evidence on a wrong class raises them only
    slowly (like :math:`\ln S` for digamma and log, boundedly for mse), and the pull on it fades as
    the true class gathers evidence (the gradient scales like :math:`1/S`): misleading evidence is
    not driven to zero. That is what :func:`kl_to_uniform` is for.

    Args:
        alpha: Dirichlet concentrations :math:`\alpha \ge 1`, shape ``(B, K)`` or
            ``(B, K, H, W)`` (class dimension 1). Half precision is computed in float32.
        target: integer class indices of shape ``(B,)`` or ``(B, H, W)``.
        kind: ``"digamma"``, ``"log"`` or ``"mse"``.

    Returns:
        The loss per sample (``(B,)``) or per pixel (``(B, H, W)``), float32 (float64 for float64
        input).

    Raises:
        ValueError: unknown ``kind``, :math:`\alpha < 1` or non-finite, a ``target`` of the wrong
            shape or dtype, or a class index out of range.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown evidential loss kind {kind!r}: choose one of {LOSS_KINDS}")
    return _evidential_loss(*_prepare(alpha, target), kind)


def _evidential_loss(alpha: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """:func:`evidential_loss` of a checked float ``alpha`` and one-hot ``y`` (B, K, ...)."""
    strength = alpha.sum(dim=1)
    if kind == "digamma":
        # sum_k y_k (psi(S) - psi(alpha_k)) = psi(S) - psi(alpha_y) for a one-hot y; taking
        # alpha_y = sum_k y_k alpha_k first evaluates psi on one map instead of K.
        return torch.digamma(strength) - torch.digamma((y * alpha).sum(dim=1))
    if kind == "log":
        # sum_k y_k (ln S - ln alpha_k) = ln S - ln alpha_y
        return torch.log(strength) - torch.log((y * alpha).sum(dim=1))
    strength = strength.unsqueeze(1)
    prob = alpha / strength
    # sum_k (y_k - p_k)^2 + p_k (1 - p_k) / (S + 1)
    return ((y - prob) ** 2 + prob * (1.0 - prob) / (strength + 1.0)).sum(dim=1)


def kl_to_uniform(alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Per-sample KL divergence of the *misleading* evidence from the uniform Dirichlet.

    The true class's evidence is removed, :math:`\tilde\alpha = y + (1 - y)\,\alpha`, and what
    remains is pulled towards :math:`\mathrm{Dir}(\mathbf{1})` (no evidence at all):

    .. math::

        \mathrm{KL}(\mathrm{Dir}(\tilde\alpha)\,\|\,\mathrm{Dir}(\mathbf 1))
        = \ln\Gamma(\tilde S) - \ln\Gamma(K) - \sum_k \ln\Gamma(\tilde\alpha_k)
        + \sum_k (\tilde\alpha_k - 1)\,(\psi(\tilde\alpha_k) - \psi(\tilde S)),
        \qquad \tilde S = \sum_k \tilde\alpha_k.

    It is exactly 0 when every wrong class has zero evidence. :math:`\ln\Gamma(K)` is built on the
    input's device (the reference implementation hard-codes ``.cuda()`` there and fails on CPU).
    In float32 the result stays finite for evidence up to 1e6 and beyond, but the cancellation
    between large :math:`\ln\Gamma` terms (about 1.3e7 at evidence 1e6) costs absolute precision:
    at misleading evidence 1e6 (K = 2) float32 gives 13.05 where the exact value is 12.82. Pass
    float64 ``alpha`` where that matters.

    Args:
        alpha: :math:`\alpha \ge 1`, shape ``(B, K)`` or ``(B, K, H, W)`` (class dimension 1).
        target: integer class indices, shape ``(B,)`` or ``(B, H, W)``.

    Returns:
        KL per sample (``(B,)``) or per pixel (``(B, H, W)``), float32 (float64 for float64 input).

    Raises:
        ValueError: as :func:`evidential_loss`.
    """
    return _kl_to_uniform(*_prepare(alpha, target))


def _kl_to_uniform(alpha: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`kl_to_uniform` of a checked float ``alpha`` and one-hot ``y`` (B, K, ...)."""
    # alpha~ = y + (1 - y) alpha: the true class gets alpha 1, i.e. zero evidence.
    alpha_tilde = y + (1.0 - y) * alpha
    strength_tilde = alpha_tilde.sum(dim=1)
    num_classes = torch.tensor(float(alpha.shape[1]), dtype=alpha.dtype, device=alpha.device)
    # ln Gamma(S~) - ln Gamma(K) - sum_k ln Gamma(alpha~_k)
    log_normaliser = (
        torch.lgamma(strength_tilde)
        - torch.lgamma(num_classes)
        - torch.lgamma(alpha_tilde).sum(dim=1)
    )
    # + sum_k (alpha~_k - 1)(psi(alpha~_k) - psi(S~))
    digamma_term = (
        (alpha_tilde - 1.0)
        * (torch.digamma(alpha_tilde) - torch.digamma(strength_tilde).unsqueeze(1))
    ).sum(dim=1)
    return log_normaliser + digamma_term


def evidential_terms(
    alpha: torch.Tensor, target: torch.Tensor, kind: str = "digamma"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both per-sample terms of an evidential objective: ``(evidential_loss, kl_to_uniform)``.

    The same numbers as calling :func:`evidential_loss` and :func:`kl_to_uniform` one after the
    other, but ``alpha`` and ``target`` are checked and ``target`` one-hot encoded once: on
    pixel maps, where the losses run over every pixel of a batch, that is a noticeable share of
    a training step.

    Raises:
        ValueError: as :func:`evidential_loss`.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown evidential loss kind {kind!r}: choose one of {LOSS_KINDS}")
    alpha, y = _prepare(alpha, target)
    return _evidential_loss(alpha, y, kind), _kl_to_uniform(alpha, y)


def mean_evidential_terms(
    alpha: torch.Tensor, target: torch.Tensor, kind: str = "digamma"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The means over all samples (or pixels) of :func:`evidential_loss` and :func:`kl_to_uniform`.

    ``mean_evidential_terms(alpha, target)`` equals ``tuple(t.mean() for t in
    evidential_terms(alpha, target))``, which is how it is computed with the fast paths off. For
    the ``"digamma"`` kind the fast path (:func:`umlkit.fastpath.mean_digamma_terms`, on by
    default) computes the same two means and their gradient from closed forms instead.

    Raises:
        ValueError: as :func:`evidential_loss`.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown evidential loss kind {kind!r}: choose one of {LOSS_KINDS}")
    fast = kind == "digamma" and fastpath.enabled()
    alpha, y = _prepare(alpha, target, one_hot=not fast)
    if fast:
        return fastpath.mean_digamma_terms(alpha, target)
    return _evidential_loss(alpha, y, kind).mean(), _kl_to_uniform(alpha, y).mean()


def annealing_coefficient(epoch: int, anneal_epochs: int = 50) -> float:
    r"""The weight of the KL term, :math:`\lambda_t = \min(1, t / T)`, for the 0-based epoch ``t``.

    Early in training the network has little evidence anywhere; a full-weight KL term would push
    all of it to zero before the fit term can build it up, so the KL weight ramps in linearly over
    ``anneal_epochs`` epochs (T = 50 in the UML reference configuration).

    Raises:
        ValueError: a negative ``epoch`` or a non-positive ``anneal_epochs``.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (0-based), got {epoch}")
    if anneal_epochs <= 0:
        raise ValueError(f"anneal_epochs must be positive, got {anneal_epochs}")
    return min(1.0, epoch / anneal_epochs)
