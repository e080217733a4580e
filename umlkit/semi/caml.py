r"""CAML: Correlation-Aware Mutual Learning (Gao et al., MICCAI 2023), in 2-D.

Two segmentation networks of the same U-Net family learn from each other on a batch of labeled and
unlabeled images:

* **model v** (the first model, used at test time): a U-Net whose decoder upsamples by transposed
  convolution;
* **model a** (the auxiliary model): a U-Net whose decoder upsamples bilinearly followed by a
  convolution, with a :class:`CrossSampleMutualAttention` (CMA) module in its encoder that lets the
  samples of a batch attend to each other (training only).

Their objective:

.. math::

    L = 0.5\,[L_{sup}(v) + L_{sup}(a)] + r(t)\,L_c + 0.05\,r(t)\,L_o

* :math:`L_{sup}`: the supervised loss of each model on the labeled images;
* :math:`L_c` (:func:`mutual_consistency_loss`): each model regresses the other's *sharpened*
  probabilities, :math:`L_c = \mathrm{MSE}(p_v, S(p_a)) + \mathrm{MSE}(p_a, S(p_v))`;
* :math:`L_o` (:func:`~umlkit.semi.correlation.omni_correlation_loss`, in
  :mod:`umlkit.semi.correlation` with the memory it reads): omni-correlation consistency: model
  v's similarity distribution of confident unlabeled pixels over a memory of labeled pixels
  should match model a's;
* :math:`r(t)`: the sigmoid ramp-up (:func:`umlkit.semi.ema.sigmoid_rampup`).

Fidelity to the official code (Herschel555/CAML, ``code/``; umlkit writes its own code and takes
facts only):

* two networks that share no weights, v with transposed-conv and a with interpolation + conv
  upsampling, CMA in a only: same as official (``networks/VNet.py``, ``CAML3d_v1``). Deviation:
  umlkit's 2-D four-level U-Net (:func:`~umlkit.semi.base.segmentation_unet`) instead of a 3-D
  five-level V-Net, so CMA acts on the deepest feature (``8 * width`` channels at 1/8 resolution;
  the official x4 is also ``8 * 16`` channels at 1/8, but one level above the bottleneck).
* dropout: channel dropout (``feature_dropout`` = 0.5) on the deepest feature and on the last
  decoder feature, during training only: same as official (``VNet.py``, ``Dropout3d`` on x5 and
  x9), as ``Dropout2d``.
* CMA: same as official (``VNet.py``, ``IntraSampleAttention`` then ``InterSampleAttention``):
  see :class:`CrossSampleMutualAttention`.
* batch norm: deviation: the labeled and the unlabeled images pass through each network's
  convolutions separately (umlkit's shared choice, :func:`~umlkit.semi.base.forward_in_parts`);
  CMA still sees the whole batch.
* :math:`L_{sup}`: deviation: umlkit's shared supervised loss (Dice over all classes, plus
  ``ce_weight`` times cross-entropy, a loop-wide choice); the official loss is the binary Dice of
  the foreground channel. The 0.5 and the sum over the two models are official (``--lamda``).
* :math:`L_c`: same as official (``train_caml.py``, ``sharpening`` and ``loss_c``), including
  the gradient through the sharpened targets.
* projection and prediction heads: same as official (``VNet.py``, ``projection_head1/2`` and
  ``prediction_head1/2``; :class:`~umlkit.semi.correlation.ProjectionHead`), on ``width``
  input channels.
* memory: same as official (``utils/feature_memory.py``, ``MemoryBank``, and its use in
  ``train_caml.py``; :class:`~umlkit.semi.correlation.CorrelationMemory`). Deviation: the
  official code flattens model a's decoder feature without moving its channels last, so a's half
  of every stored entry comes from the wrong pixels; umlkit does not reproduce that bug.
* queries and :math:`L_o`: same as official (``train_caml.py`` and
  ``utils/correlation.py``, ``cal_correlation_matrix``). Deviation: at most
  ``max_query_pixels_per_class`` = 256 queries per class instead of 12800 (see :class:`CAML`).
* weights :math:`\lambda_c = 1`, :math:`\lambda_o = 0.05`: same as official (``train_caml.py``,
  ``--consistency``, ``--consistency_o``). Deviation: :math:`r(t)`, optimiser and batches are the
  training loop's (:mod:`umlkit.semi.loop`), shared by all methods; the official ramp counts
  "epochs" of 150 iterations.
* test model: model v, no CMA, no dropout: as far as the stored official code shows (its test
  script is not in the repository; MC-Net's, which CAML builds on, takes the first output).
* sizes: deviation: the U-Net width comes from the loop (official: 16 filters); the head width
  32, the 256 keys per class and the temperatures 0.1 are the official values.

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

from umlkit.models.blocks import ModelOutput, UNet, segmentation_output
from umlkit.semi.base import (
    Progress,
    SemiSupervisedMethod,
    pixel_prediction,
    segmentation_unet,
    supervised_loss,
)
from umlkit.semi.correlation import (
    CorrelationMemory,
    ProjectionHead,
    omni_correlation_loss,
    select_queries,
)

#: Probabilities are clipped to [eps, 1 - eps] inside :func:`sharpen` so that its gradient stays
#: finite at exactly 0 or 1 (where the true derivative is 0 for T < 1).
_SHARPEN_EPS = 1e-6


def sharpen(prob: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    r"""Sharpen probabilities towards 0 or 1, element by element.

    .. math:: S(p) = \frac{p^{1/T}}{p^{1/T} + (1 - p)^{1/T}}
              = \sigma\!\left(\frac{\ln p - \ln(1 - p)}{T}\right)

    The right-hand form is the same function computed without underflow for small ``T``; ``p`` is
    clipped to :math:`[10^{-6}, 1 - 10^{-6}]` first, which keeps the gradient finite. Each entry
    is treated as a binary probability. For a two-class softmax output this is consistent
    (:math:`S(1 - p) = 1 - S(p)`, so the sharpened pair still sums to 1); for three or more classes
    (fundus: background, rim, cup) each class probability is sharpened on its own, as CAML and
    MC-Net+ do, and the sharpened vector no longer sums exactly to 1.

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
    clipped = prob.clamp(_SHARPEN_EPS, 1 - _SHARPEN_EPS)
    return torch.sigmoid(torch.logit(clipped) / temperature)


def mutual_consistency_loss(
    prob_v: torch.Tensor,
    prob_a: torch.Tensor,
    temperature: float = 0.1,
    detach_targets: bool = False,
) -> torch.Tensor:
    r"""CAML's mutual consistency: each model fits the other's sharpened prediction.

    .. math:: L_c = \mathrm{MSE}(p_v, S(p_a)) + \mathrm{MSE}(p_a, S(p_v))

    over every element of the batch (labeled and unlabeled images, all classes). As in the
    official code, the gradient also flows through the sharpened targets :math:`S(\cdot)`;
    ``detach_targets=True`` makes them constants instead (a stop-gradient variant, not CAML's).

    Args:
        prob_v: probabilities of model v, ``(B, C, H, W)``.
        prob_a: probabilities of model a, same shape.
        temperature: sharpening temperature (0.1 in CAML).
        detach_targets: stop the gradient through :math:`S(p_a)` and :math:`S(p_v)`.

    Returns:
        A scalar loss.

    Raises:
        ValueError: if the shapes differ (or as :func:`sharpen`).
    """
    if prob_v.shape != prob_a.shape:
        raise ValueError(f"prob_v {tuple(prob_v.shape)} and prob_a {tuple(prob_a.shape)} differ")
    target_for_v = sharpen(prob_a, temperature)
    target_for_a = sharpen(prob_v, temperature)
    if detach_targets:
        target_for_v, target_for_a = target_for_v.detach(), target_for_a.detach()
    return F.mse_loss(prob_v, target_for_v) + F.mse_loss(prob_a, target_for_a)


class CrossSampleMutualAttention(nn.Module):
    """CMA: attention within each sample, then across the samples of the batch (training only).

    The feature ``(B, C, h, w)`` becomes tokens of dimension ``C``:

    1. *intra-sample*: one transformer encoder layer over the ``h·w`` tokens of each sample
       (B sequences of length h·w);
    2. *inter-sample*: one transformer encoder layer over the ``B`` samples at each position
       (h·w sequences of length B), through which an unlabeled sample's feature at a position is
       rebuilt partly from the other samples' features there.

    Each is a PyTorch ``nn.TransformerEncoderLayer`` as the official code builds it: post-norm
    (``x = norm(x + block(x))``), ReLU, a feed-forward width of 4 ``C``, dropout 0.5 on the
    attention weights, inside the feed-forward block and on both residual branches. No positional
    encoding is added. At evaluation (``module.eval()``) the module is the identity, as in CAML,
    so a prediction never depends on which other images share its batch.

    Args:
        channels: feature channels ``C`` (the token dimension).
        num_heads: attention heads; must divide ``channels``.
        feedforward_factor: hidden width of each layer's feed-forward block, in ``channels``.
        dropout: dropout inside the transformer layers.

    Raises:
        ValueError: if ``num_heads`` does not divide ``channels``.
    """

    def __init__(
        self, channels: int, num_heads: int = 4, feedforward_factor: int = 4, dropout: float = 0.5
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
                activation="relu",
                batch_first=True,
                norm_first=False,
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


class CAML(SemiSupervisedMethod):
    r"""The CAML method: two mutually teaching U-Nets with CMA, mutual consistency and OCC.

    .. math:: L = 0.5\,[L_{sup}(v) + L_{sup}(a)] + \lambda_c\,r(t)\,L_c + \lambda_o\,r(t)\,L_o

    with :math:`\lambda_c = 1`, :math:`\lambda_o = 0.05` and :math:`L_{sup}` the shared supervised
    loss of :mod:`umlkit.semi.base` (Dice, plus cross-entropy when ``ce_weight > 0``; the paper
    uses Dice alone). Model v (transposed-conv decoder) is the test model.

    OCC in one training step, in the official order:

    1. **memory update**: for each labeled image of the batch, the pixels that both models
       classify correctly replace that image's slot of
       :class:`~umlkit.semi.correlation.CorrelationMemory`, each as :math:`\tfrac12[\mathrm{proj}_v(f_v) + \mathrm{proj}_a(f_a)]` of the last decoder features,
       computed with the projection heads in eval mode (batch-norm running statistics), detached,
       with its ground-truth class;
    2. **keys**: ``memory_samples_per_class`` entries of every class with at least that many
       (:meth:`~umlkit.semi.correlation.CorrelationMemory.sample`);
    3. **queries**: unlabeled pixels where both models' argmax agree, with model v's class and
       max probability; :math:`\mathrm{pred}(\mathrm{proj}(f))` of each model (training-mode
       batch norm over all agreeing pixels); per class the ``max_query_pixels_per_class`` most
       confident (:func:`~umlkit.semi.correlation.select_queries`), the same rows for both models;
    4. :func:`~umlkit.semi.correlation.omni_correlation_loss` of the two query sets against the
       keys.

    ``max_query_pixels_per_class`` defaults to 256, not the official 12800: the official cap is a
    small share of the about 2·10⁶ unlabeled voxels of a step (two 112×112×80 crops), so it keeps
    only the most confident pixels; at umlkit's 4 × 32 × 32 = 4096 unlabeled pixels 12800 would
    never bind and the selection by confidence would do nothing, while 256 still keeps the most
    confident part of every large class and leaves enough rows for a stable mean.
    ``memory_samples_per_class`` keeps the official 256, which umlkit's labeled sets reach for
    their larger classes after a few steps (a smaller class joins once it has 256 entries).

    Args:
        in_channels: image channels.
        num_classes: pixel classes (background included).
        width: U-Net width; the deepest feature (and CMA) has ``8 * width`` channels.
        ce_weight: cross-entropy weight in :math:`L_{sup}` (0 for the paper's Dice only).
        consistency_weight: :math:`\lambda_c`.
        occ_weight: :math:`\lambda_o`.
        sharpen_temperature: :math:`T` of :func:`sharpen`.
        occ_temperature: :math:`\tau` of :func:`~umlkit.semi.correlation.correlation`.
        projection_dim: output dimension of the projection and prediction heads (32).
        cma_heads: attention heads of the CMA layers (4).
        cma_feedforward_factor: feed-forward width of the CMA layers, in channels (4).
        cma_dropout: dropout inside the CMA layers (0.5).
        feature_dropout: channel dropout on the deepest and the last decoder feature (0.5).
        memory_samples_per_class: keys drawn per class each step (official 256).
        max_query_pixels_per_class: the most queries kept per class (official 12800).

    Raises:
        ValueError: ``memory_samples_per_class`` or ``max_query_pixels_per_class`` below 2.
    """

    name = "caml"
    needs_image_indices = True

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
        cma_feedforward_factor: int = 4,
        cma_dropout: float = 0.5,
        feature_dropout: float = 0.5,
        memory_samples_per_class: int = 256,
        max_query_pixels_per_class: int = 256,
    ) -> None:
        super().__init__(in_channels, num_classes, width)
        for name, value in (
            ("memory_samples_per_class", memory_samples_per_class),
            ("max_query_pixels_per_class", max_query_pixels_per_class),
        ):
            if value < 2:
                raise ValueError(f"{name} must be at least 2, got {value}")
        self.model_v = segmentation_unet(in_channels, num_classes, width, upsample="transpose")
        self.model_a = segmentation_unet(
            in_channels,
            num_classes,
            width,
            upsample="bilinear",
            bottleneck=CrossSampleMutualAttention(
                8 * width, cma_heads, cma_feedforward_factor, cma_dropout
            ),
        )
        self.feature_dropout = nn.Dropout2d(feature_dropout)
        self.projection_v = ProjectionHead(width, projection_dim)
        self.projection_a = ProjectionHead(width, projection_dim)
        self.prediction_v = ProjectionHead(projection_dim, projection_dim)
        self.prediction_a = ProjectionHead(projection_dim, projection_dim)
        self.memory = CorrelationMemory(num_classes, projection_dim)
        self.ce_weight = ce_weight
        self.consistency_weight = consistency_weight
        self.occ_weight = occ_weight
        self.sharpen_temperature = sharpen_temperature
        self.occ_temperature = occ_temperature
        self.memory_samples_per_class = memory_samples_per_class
        self.max_query_pixels_per_class = max_query_pixels_per_class

    @property
    def test_model(self):
        """Model v, the transposed-conv U-Net, evaluated without CMA or dropout (Fidelity)."""
        return self.model_v

    def training_loss(self, images, masks, labeled, progress: Progress, indices=None):
        """The loss of one mixed batch (see the class docstring).

        Args:
            images: ``(B, C, H, W)``.
            masks: ``(B, H, W)``; read where ``labeled`` only.
            labeled: ``(B,)`` bool.
            progress: step, epoch and ramp weight.
            indices: ``(B,)`` dataset index of each image; the labeled ones key the memory's
                slots (the loop passes them, since :attr:`needs_image_indices` is set).

        Raises:
            ValueError: ``indices`` is missing or has the wrong length.
        """
        if indices is None or len(indices) != len(images):
            raise ValueError(
                "CAML's memory keeps one slot per labeled image: pass indices=, the (B,) dataset "
                "index of each image"
            )
        out_v = self._forward(self.model_v, images, labeled)
        out_a = self._forward(self.model_a, images, labeled)
        pred_v, pred_a = pixel_prediction(out_v.seg_logits), pixel_prediction(out_a.seg_logits)
        target = masks[labeled]
        supervised = 0.5 * (
            supervised_loss(pred_v.select(labeled), target, self.ce_weight)
            + supervised_loss(pred_a.select(labeled), target, self.ce_weight)
        )
        consistency = mutual_consistency_loss(pred_v.prob, pred_a.prob, self.sharpen_temperature)
        occ = self._omni_correlation(
            out_v.features, out_a.features, pred_v.prob, pred_a.prob, masks, labeled, indices
        )
        ramp = progress.ramp
        loss = (
            supervised + self.consistency_weight * ramp * consistency + self.occ_weight * ramp * occ
        )
        return loss, {
            "supervised": supervised.item(),
            "consistency": consistency.item(),
            "occ": occ.item(),
        }

    def _forward(self, model: UNet, images: torch.Tensor, labeled: torch.Tensor) -> ModelOutput:
        """A training forward pass: convolutions per part, bottleneck module on the whole batch.

        The encoder and the decoder run on the labeled and on the unlabeled images separately
        (see :func:`umlkit.semi.base.forward_in_parts`); model a's CMA module in between sees all
        samples at once, since attending across samples is its purpose. Channel dropout
        (``feature_dropout``) hits the deepest feature after the bottleneck module and the last
        decoder feature, which feeds both the segmentation head and the projection head.
        """
        parts = [part for part in (labeled, ~labeled) if bool(part.any())]
        order = torch.argsort(torch.cat([torch.nonzero(part)[:, 0] for part in parts]))
        encoded = [model.encoder(images[part]) for part in parts]
        deepest = torch.cat([features[-1] for features in encoded])[order]
        deepest = self.feature_dropout(model.bottleneck(deepest))
        for features, part in zip(encoded, parts, strict=True):
            features[-1] = deepest[part]
        decoded = [self.feature_dropout(model.decoder(features)) for features in encoded]
        logits = torch.cat([model.head(feature) for feature in decoded])[order]
        return segmentation_output(logits, torch.cat(decoded)[order])

    def _omni_correlation(self, feature_v, feature_a, prob_v, prob_a, masks, labeled, indices):
        """:math:`L_o` of one batch: memory update, keys, queries, loss (class docstring)."""
        rows_v = feature_v.permute(0, 2, 3, 1)  # (B, H, W, width): boolean masks pick pixel rows
        rows_a = feature_a.permute(0, 2, 3, 1)
        confidence_v, class_v = prob_v.max(dim=1)
        class_a = prob_a.argmax(dim=1)
        slots = torch.as_tensor(indices).cpu()[labeled.cpu()].tolist()
        self._update_memory(
            rows_v[labeled],
            rows_a[labeled],
            class_v[labeled],
            class_a[labeled],
            masks[labeled],
            slots,
        )
        keys, _ = self.memory.sample(self.memory_samples_per_class, device=feature_v.device)

        unlabeled = ~labeled
        agree = class_v[unlabeled] == class_a[unlabeled]
        if int(agree.sum()) < 2:  # no class can have more than one query
            return feature_v.sum() * 0.0 + feature_a.sum() * 0.0
        query_v = self.prediction_v(self.projection_v(rows_v[unlabeled][agree]))
        query_a = self.prediction_a(self.projection_a(rows_a[unlabeled][agree]))
        chosen = select_queries(
            confidence_v[unlabeled][agree],
            class_v[unlabeled][agree],
            self.num_classes,
            self.max_query_pixels_per_class,
        )
        return omni_correlation_loss(query_v[chosen], query_a[chosen], keys, self.occ_temperature)

    @torch.no_grad()
    def _update_memory(self, rows_v, rows_a, class_v, class_a, target, slots) -> None:
        """Replace the slots of the labeled images by their pixels both models got right.

        Args:
            rows_v: ``(L, H, W, width)`` last decoder feature of model v (channels last).
            rows_a: the same of model a.
            class_v: ``(L, H, W)`` argmax of model v.
            class_a: ``(L, H, W)`` argmax of model a.
            target: ``(L, H, W)`` ground truth.
            slots: the ``L`` dataset indices of the labeled images.
        """
        correct = (class_v == target) & (class_a == target)
        heads = (self.projection_v, self.projection_a)
        modes = [head.training for head in heads]
        for head in heads:
            head.eval()  # running statistics, as the official model.eval() around this step
        try:
            if bool(correct.any()):
                entries = 0.5 * (
                    self.projection_v(rows_v[correct]) + self.projection_a(rows_a[correct])
                )
            else:
                entries = rows_v.new_zeros(0, self.memory.dim)
        finally:
            for head, mode in zip(heads, modes, strict=True):
                head.train(mode)
        counts = correct.flatten(1).sum(dim=1).tolist()
        for slot, values, labels in zip(
            slots, entries.split(counts), target[correct].split(counts), strict=True
        ):
            self.memory.replace(slot, values, labels)

    def trusted_regions(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Where the two models agree (OCC queries) and model a's sharpened confidence (L_c)."""
        prob_v = torch.softmax(self.model_v(images).seg_logits, dim=1)
        prob_a = torch.softmax(self.model_a(images).seg_logits, dim=1)
        agree = (prob_v.argmax(1) == prob_a.argmax(1)).float()
        sharpened = sharpen(prob_a, self.sharpen_temperature).max(dim=1).values
        return {"agreement (OCC)": agree, "sharpened target": sharpened}
