r"""CAML: Correlation-Aware Mutual Learning (Gao et al., MICCAI 2023), in 2-D.

Two segmentation networks of the same U-Net family learn from each other on a batch of labeled and
unlabeled images:

* **model v** (the first model, used at test time): a U-Net whose decoder upsamples by transposed
  convolution;
* **model a** (the auxiliary model): a U-Net whose decoder upsamples bilinearly followed by a
  convolution, with a :class:`CrossSampleMutualAttention` (CMA) module in its encoder bottleneck
  that lets the unlabeled samples of a batch attend to the labeled ones (training only).

Their objective (METHODS.md §2):

.. math::

    L = 0.5\,L_{dice}(\text{labeled}) + r(t)\,L_c + 0.05\,r(t)\,L_o

* :math:`L_{dice}`: soft Dice of both models on the labeled images, averaged over the two models;
* :math:`L_c` (:func:`mutual_consistency_loss`): each model regresses the other's *sharpened*
  probabilities, :math:`L_c = \mathrm{MSE}(p_v, S(p_a)) + \mathrm{MSE}(p_a, S(p_v))`;
* :math:`L_o` (:func:`omni_correlation_loss`): omni-correlation consistency between the two models'
  similarity distributions of unlabeled pixels to a memory of labeled pixels;
* :math:`r(t)`: the sigmoid ramp-up (:func:`umlkit.semi.ema.sigmoid_rampup`).

What the paper does not pin down and umlkit had to choose (umlkit's reconstruction, not the paper's
code, which umlkit never copies): the sharpened targets are treated as constants (no gradient flows
through :math:`S(\cdot)`); the projection head's layers and the L2 normalisation of projections;
what the memory stores (the normalised mean of both models' projections), its size and how many
pixels enter it per step; the number of unlabeled query pixels; and the symmetric, stop-gradient
form of the cross-entropy in :math:`L_o`. Each is a parameter of :class:`CAMLConfig`.

References:
    Gao, Zhang, Ma, Li, Zhang. Correlation-Aware Mutual Learning for Semi-supervised Medical Image
    Segmentation. MICCAI 2023, arXiv:2307.06312.
    Wu et al. Mutual consistency learning for semi-supervised medical image segmentation (MC-Net+).
    Medical Image Analysis 2022 (the sharpening function and the mutual-consistency form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from umlkit.models.blocks import BatchNorm2d, ModelOutput, segmentation_output
from umlkit.semi.base import (
    Progress,
    SemiSupervisedMethod,
    forward_in_parts,
    in_batch_order,
    pixel_prediction,
    segmentation_unet,
    supervised_loss,
)


def sharpen(prob: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    r"""Sharpen probabilities towards 0 or 1, element by element.

    .. math:: S(p) = \frac{p^{1/T}}{p^{1/T} + (1 - p)^{1/T}}
              = \sigma\!\left(\frac{\ln p - \ln(1 - p)}{T}\right)

    The right-hand form is the same number computed without underflow for small ``T``. Each entry
    is treated as a binary probability. For a two-class softmax output this is consistent
    (:math:`S(1 - p) = 1 - S(p)`, so the sharpened pair still sums to 1); for three or more classes
    (fundus: background, rim, cup) each class probability is sharpened on its own, as CAML and
    MC-Net+ do, and the sharpened vector no longer sums exactly to 1. umlkit keeps it that way: the
    target of the MSE is a per-class "how sure is the other model that this pixel is class k".

    Args:
        prob: probabilities in [0, 1], any shape.
        temperature: :math:`T > 0`; smaller is sharper (CAML: 0.1).

    Returns:
        The sharpened probabilities, same shape.

    Raises:
        ValueError: if ``temperature <= 0`` or ``prob`` has values outside [0, 1].
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if prob.numel() and (bool((prob < 0).any()) or bool((prob > 1).any())):
        raise ValueError(
            f"prob must lie in [0, 1] (got min {prob.min().item():.4g}, max "
            f"{prob.max().item():.4g}); pass probabilities, not logits"
        )
    return torch.sigmoid(torch.logit(prob) / temperature)


def mutual_consistency_loss(
    prob_v: torch.Tensor, prob_a: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    r"""CAML's mutual consistency: each model fits the other's sharpened prediction.

    .. math:: L_c = \mathrm{MSE}(p_v, \mathrm{sg}[S(p_a)]) + \mathrm{MSE}(p_a, \mathrm{sg}[S(p_v)])

    over every element of the batch (labeled and unlabeled images, all classes); ``sg`` (stop
    gradient) makes each sharpened prediction a fixed target for the other model.

    Args:
        prob_v: probabilities of model v, ``(B, C, H, W)``.
        prob_a: probabilities of model a, same shape.
        temperature: sharpening temperature (0.1 in CAML).

    Returns:
        A scalar loss.

    Raises:
        ValueError: if the shapes differ (or as :func:`sharpen`).
    """
    if prob_v.shape != prob_a.shape:
        raise ValueError(f"prob_v {tuple(prob_v.shape)} and prob_a {tuple(prob_a.shape)} differ")
    target_for_v = sharpen(prob_a.detach(), temperature)
    target_for_a = sharpen(prob_v.detach(), temperature)
    return F.mse_loss(prob_v, target_for_v) + F.mse_loss(prob_a, target_for_a)


class CrossSampleMutualAttention(nn.Module):
    """CMA: attention within each sample, then across the samples of the batch (training only).

    The bottleneck feature ``(B, C, h, w)`` becomes tokens of dimension ``C``:

    1. *intra-sample*: one transformer encoder layer over the ``h·w`` tokens of each sample
       (B sequences of length h·w);
    2. *inter-sample*: one transformer encoder layer over the ``B`` samples at each position
       (h·w sequences of length B) — the bridge through which an unlabeled sample's feature at a
       position is rebuilt from the labeled samples' features at that position.

    The layers are pre-norm with residual connections (``x + attention(norm(x))``), so a fresh
    module changes the feature only mildly. No positional embedding is added: convolutional
    features already carry position through zero padding, and the module then works at any input
    size. At evaluation (``module.eval()``) the module is the identity, as in CAML, where it exists
    to transfer label knowledge during training only; a prediction then never depends on which
    other images share its batch.

    Args:
        channels: feature channels ``C`` (the token dimension).
        num_heads: attention heads; must divide ``channels``.
        feedforward_factor: hidden width of each layer's MLP, as a multiple of ``channels``.
        dropout: dropout inside the transformer layers.

    Raises:
        ValueError: if ``num_heads`` does not divide ``channels``.
    """

    def __init__(
        self, channels: int, num_heads: int = 4, feedforward_factor: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide channels={channels}")

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                d_model=channels,
                nhead=num_heads,
                dim_feedforward=feedforward_factor * channels,
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )

        self.intra_sample = layer()
        self.inter_sample = layer()

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Mix ``feature`` ``(B, C, h, w)`` within and across samples; identity in eval mode."""
        if not self.training:
            return feature
        if feature.ndim != 4:
            raise ValueError(
                f"CMA expects a (B, C, h, w) feature, got shape {tuple(feature.shape)}"
            )
        batch, channels, height, width = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)  # (B, h*w, C): one sequence per sample
        tokens = self.intra_sample(tokens)
        tokens = self.inter_sample(tokens.transpose(0, 1))  # (h*w, B, C): one sequence per position
        return tokens.permute(1, 2, 0).reshape(batch, channels, height, width)


class ProjectionHead(nn.Module):
    """Per-pixel projection of the last decoder feature for the omni-correlation (16 -> 32 dims).

    ``1×1 conv -> batch norm -> ReLU -> 1×1 conv``, then L2 normalisation along the channels so
    that ``q · m`` is a cosine similarity in [-1, 1] and the temperature sets the sharpness of the
    correlation alone (umlkit's choice; the paper gives the dimensions).
    """

    def __init__(self, in_channels: int, out_channels: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False),
            BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> unit-length projections ``(B, out_channels, H, W)``."""
        return F.normalize(self.layers(feature), dim=1)


class CorrelationMemory(nn.Module):
    """A per-class first-in-first-out memory of projections of reliably labeled pixels.

    Each class keeps up to ``size_per_class`` unit vectors of dimension ``dim``. The memory lives in
    buffers, so it follows the model between devices and is saved in checkpoints.

    Args:
        num_classes: number of segmentation classes.
        dim: projection dimension.
        size_per_class: capacity of each class's queue.
    """

    def __init__(self, num_classes: int, dim: int, size_per_class: int = 512) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.size_per_class = size_per_class
        self.register_buffer("bank", torch.zeros(num_classes, size_per_class, dim))
        self.register_buffer("filled", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def push(
        self,
        projections: torch.Tensor,
        labels: torch.Tensor,
        per_class: int,
        generator: torch.Generator | None = None,
    ) -> None:
        """Enqueue at most ``per_class`` randomly chosen rows of ``projections`` per class.

        Args:
            projections: ``(N, dim)`` projections (detached and stored as given).
            labels: ``(N,)`` class index of each row.
            per_class: cap on the rows added per class in this call (keeps one image from filling
                a queue on its own).
            generator: random generator of the subsampling (CPU).
        """
        if projections.ndim != 2 or labels.shape != projections.shape[:1]:
            raise ValueError(
                f"projections must be (N, dim) and labels (N,), got {tuple(projections.shape)} "
                f"and {tuple(labels.shape)}"
            )
        cap = min(per_class, self.size_per_class)
        for cls in range(self.num_classes):
            rows = projections[labels == cls]
            if len(rows) > cap:
                keep = torch.randperm(len(rows), generator=generator)[:cap]
                rows = rows[keep.to(rows.device)]
            if len(rows) == 0:
                continue
            start = int(self.pointer[cls])
            slots = (start + torch.arange(len(rows), device=rows.device)) % self.size_per_class
            self.bank[cls, slots] = rows.detach().to(self.bank.dtype)
            self.pointer[cls] = (start + len(rows)) % self.size_per_class
            self.filled[cls] = min(self.size_per_class, int(self.filled[cls]) + len(rows))

    def sample(
        self, per_class: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw up to ``per_class`` stored entries of every class, without replacement.

        Returns:
            ``(entries, labels)``: ``(M, dim)`` and ``(M,)``; ``M`` is 0 while the memory is empty.
        """
        entries, labels = [], []
        for cls in range(self.num_classes):
            filled = int(self.filled[cls])
            if filled == 0:
                continue
            take = torch.randperm(filled, generator=generator)[:per_class].to(self.bank.device)
            entries.append(self.bank[cls, take])
            labels.append(torch.full((len(take),), cls, dtype=torch.long, device=self.bank.device))
        if not entries:
            return self.bank.new_zeros(0, self.bank.shape[-1]), torch.zeros(
                0, dtype=torch.long, device=self.bank.device
            )
        return torch.cat(entries), torch.cat(labels)


def correlation(
    query: torch.Tensor, memory: torch.Tensor, temperature: float = 0.1, log: bool = False
) -> torch.Tensor:
    r"""The omni-correlation of each query with the memory entries.

    .. math:: C = \mathrm{softmax}\left(q\,M^\top / \tau\right)

    Args:
        query: ``(N, D)`` projections of unlabeled pixels.
        memory: ``(M, D)`` sampled memory entries.
        temperature: :math:`\tau > 0` (CAML: 0.1).
        log: return :math:`\ln C` (computed stably by ``log_softmax``) instead of :math:`C`.

    Returns:
        ``(N, M)``: each row a probability distribution over the memory entries (or its log).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.ndim != 2 or memory.ndim != 2 or query.shape[1] != memory.shape[1]:
        raise ValueError(
            f"query (N, D) and memory (M, D) must share D, got {tuple(query.shape)} and "
            f"{tuple(memory.shape)}"
        )
    scores = query @ memory.T / temperature
    return torch.log_softmax(scores, dim=1) if log else torch.softmax(scores, dim=1)


def omni_correlation_loss(
    query_v: torch.Tensor, query_a: torch.Tensor, memory: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    r"""OCC: the two models should relate an unlabeled pixel to the labeled memory alike.

    With :math:`C_v = \mathrm{softmax}(q_v M^\top/\tau)` and :math:`C_a` likewise,

    .. math::

        L_o = \tfrac12\left[H(\mathrm{sg}[C_a], C_v) + H(\mathrm{sg}[C_v], C_a)\right],
        \qquad H(P, Q) = -\frac{1}{N}\sum_i \sum_j P_{ij} \ln Q_{ij}

    Each model's correlation distribution is the (fixed) target of the other's — the same
    symmetric, stop-gradient pattern as :func:`mutual_consistency_loss` (umlkit's reading of
    "cross-entropy between the two models' correlation distributions").

    Args:
        query_v: ``(N, D)`` projections of the selected unlabeled pixels by model v.
        query_a: ``(N, D)`` projections of the same pixels by model a.
        memory: ``(M, D)`` sampled memory entries.
        temperature: :math:`\tau`.

    Returns:
        A scalar; 0 when there are no query pixels or no memory entries.
    """
    if query_v.shape != query_a.shape:
        raise ValueError(
            f"query_v {tuple(query_v.shape)} and query_a {tuple(query_a.shape)} differ"
        )
    if len(query_v) == 0 or len(memory) == 0:
        return query_v.sum() * 0.0 + query_a.sum() * 0.0
    log_v = correlation(query_v, memory, temperature, log=True)
    log_a = correlation(query_a, memory, temperature, log=True)
    cross_v = -(log_a.detach().exp() * log_v).sum(dim=1).mean()
    cross_a = -(log_v.detach().exp() * log_a).sum(dim=1).mean()
    return 0.5 * (cross_v + cross_a)


class CAML(SemiSupervisedMethod):
    r"""The CAML method: two mutually teaching U-Nets with CMA, mutual consistency and OCC.

    .. math:: L = 0.5\,[L_{sup}(v) + L_{sup}(a)] + \lambda_c\,r(t)\,L_c + \lambda_o\,r(t)\,L_o

    with :math:`\lambda_c = 1`, :math:`\lambda_o = 0.05` and :math:`L_{sup}` the shared supervised
    loss of :mod:`umlkit.semi.base` (Dice, plus cross-entropy when ``ce_weight > 0``; the paper
    uses Dice alone). Model v (transposed-conv decoder) is the test model.

    OCC, step by step (the parts marked * are umlkit's reconstruction):

    1. both models project their last decoder feature per pixel (:class:`ProjectionHead`);
    2. labeled pixels that **both** models classify correctly enter a per-class memory
       (:class:`CorrelationMemory`) as the normalised mean of the two projections*, at most
       ``memory_pixels_per_class`` per class and step*;
    3. unlabeled pixels where the two models **agree** are the queries (at most
       ``max_query_pixels`` per step, drawn at random*);
    4. ``memory_samples_per_class`` (K) entries per class are drawn from the memory, and
       :func:`omni_correlation_loss` asks the two models' correlation distributions to agree.

    Args:
        in_channels: image channels.
        num_classes: pixel classes (background included).
        width: U-Net width; the bottleneck (and CMA) has ``8 * width`` channels.
        ce_weight: cross-entropy weight in :math:`L_{sup}` (0 for the paper's Dice only).
        consistency_weight: :math:`\lambda_c`.
        occ_weight: :math:`\lambda_o`.
        sharpen_temperature: :math:`T` of :func:`sharpen`.
        occ_temperature: :math:`\tau` of :func:`correlation`.
        projection_dim: output dimension of the projection heads (32).
        cma_heads: attention heads of the CMA layers.
        memory_size: memory capacity per class.
        memory_pixels_per_class: labeled pixels added to the memory per class and step.
        memory_samples_per_class: K, entries drawn per class for each step's correlations.
        max_query_pixels: unlabeled pixels used as OCC queries per step.
    """

    name = "caml"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        width: int = 16,
        ce_weight: float = 1.0,
        consistency_weight: float = 1.0,
        occ_weight: float = 0.05,
        sharpen_temperature: float = 0.1,
        occ_temperature: float = 0.1,
        projection_dim: int = 32,
        cma_heads: int = 4,
        memory_size: int = 256,
        memory_pixels_per_class: int = 32,
        memory_samples_per_class: int = 64,
        max_query_pixels: int = 512,
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        self.model_v = segmentation_unet(in_channels, num_classes, width, upsample="transpose")
        self.model_a = segmentation_unet(
            in_channels,
            num_classes,
            width,
            upsample="bilinear",
            bottleneck=CrossSampleMutualAttention(8 * width, num_heads=cma_heads),
        )
        self.projection_v = ProjectionHead(width, projection_dim)
        self.projection_a = ProjectionHead(width, projection_dim)
        self.memory = CorrelationMemory(num_classes, projection_dim, memory_size)
        self.ce_weight = ce_weight
        self.consistency_weight = consistency_weight
        self.occ_weight = occ_weight
        self.sharpen_temperature = sharpen_temperature
        self.occ_temperature = occ_temperature
        self.memory_pixels_per_class = memory_pixels_per_class
        self.memory_samples_per_class = memory_samples_per_class
        self.max_query_pixels = max_query_pixels

    @property
    def test_model(self):
        """Model v, the transposed-conv U-Net (CAML tests with the first model only)."""
        return self.model_v

    def training_loss(self, images, masks, labeled, progress: Progress):
        out_v = forward_in_parts(self.model_v, images, labeled)
        out_a = self._forward_model_a(images, labeled)
        pred_v, pred_a = pixel_prediction(out_v.seg_logits), pixel_prediction(out_a.seg_logits)
        target = masks[labeled]
        supervised = 0.5 * (
            supervised_loss(pred_v.select(labeled), target, self.ce_weight)
            + supervised_loss(pred_a.select(labeled), target, self.ce_weight)
        )
        consistency = mutual_consistency_loss(pred_v.prob, pred_a.prob, self.sharpen_temperature)
        occ = self._omni_correlation(out_v.features, out_a.features, pred_v, pred_a, masks, labeled)
        ramp = progress.ramp
        loss = (
            supervised + self.consistency_weight * ramp * consistency + self.occ_weight * ramp * occ
        )
        return loss, {
            "supervised": supervised.item(),
            "consistency": consistency.item(),
            "occ": occ.item(),
        }

    def _forward_model_a(self, images: torch.Tensor, labeled: torch.Tensor) -> ModelOutput:
        """Model a with batch norm per part but CMA over the whole batch.

        The encoder and decoder run on the labeled and the unlabeled images separately (see
        :func:`umlkit.semi.base.forward_in_parts`); the CMA module in between must see all samples
        at once, since attending from unlabeled to labeled samples is its purpose.
        """
        model = self.model_a
        parts = (labeled, ~labeled)
        encoded = [model.encoder(images[part]) for part in parts]
        bottleneck = model.bottleneck(in_batch_order([e[-1] for e in encoded], labeled))
        for features, part in zip(encoded, parts, strict=True):
            features[-1] = bottleneck[part]
        decoded = [model.decoder(features) for features in encoded]
        logits = in_batch_order([model.head(d) for d in decoded], labeled)
        return segmentation_output(logits, in_batch_order(decoded, labeled))

    def _omni_correlation(self, feature_v, feature_a, pred_v, pred_a, masks, labeled):
        # Projections as (B, H, W, D) so that boolean pixel masks pick rows of D-vectors.
        proj_v = self.projection_v(feature_v).permute(0, 2, 3, 1)
        proj_a = self.projection_a(feature_a).permute(0, 2, 3, 1)
        class_v, class_a = pred_v.prob.argmax(1), pred_a.prob.argmax(1)
        target = masks[labeled]
        reliable = (class_v[labeled] == target) & (class_a[labeled] == target)
        entries = F.normalize(proj_v[labeled][reliable] + proj_a[labeled][reliable], dim=1)
        self.memory.push(entries.detach(), target[reliable], self.memory_pixels_per_class)

        unlabeled = ~labeled
        agree = class_v[unlabeled] == class_a[unlabeled]
        query_v, query_a = proj_v[unlabeled][agree], proj_a[unlabeled][agree]
        if len(query_v) > self.max_query_pixels:
            keep = torch.randperm(len(query_v), device=query_v.device)[: self.max_query_pixels]
            query_v, query_a = query_v[keep], query_a[keep]
        memory, _ = self.memory.sample(self.memory_samples_per_class)
        return omni_correlation_loss(query_v, query_a, memory, self.occ_temperature)

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Where the two models agree (OCC queries) and model a's sharpened confidence (L_c)."""
        prob_v = torch.softmax(self.model_v(images).seg_logits, dim=1)
        prob_a = torch.softmax(self.model_a(images).seg_logits, dim=1)
        agree = (prob_v.argmax(1) == prob_a.argmax(1)).float()
        sharpened = sharpen(prob_a, self.sharpen_temperature).max(dim=1).values
        return {"agreement (OCC)": agree, "sharpened target": sharpened}
