r"""CAML's omni-correlation consistency (OCC): a memory of labeled pixels and the loss against it.

CAML (:mod:`umlkit.semi.caml`) asks its two networks to agree not only pixel by pixel but in how
each unlabeled pixel relates to the labeled ones. Every pixel feature passes a small
:class:`ProjectionHead`; the projections of labeled pixels that both models classify correctly
are kept in a :class:`CorrelationMemory`, one slot per labeled image. In each step a few entries
per class are drawn from it as *keys*, the most confident unlabeled pixels of each class are
picked as *queries* (:func:`select_queries`), and model v's correlation of its queries with the
keys (:func:`correlation`) should match model a's (:func:`omni_correlation_loss`):

.. math::

    C = \mathrm{softmax}\left(q\,M^\top / \tau\right), \qquad
    L_o = \frac{1}{N}\sum_n \sum_k -C_a[n, k]\,\ln(C_v[n, k] + \epsilon).

Fidelity to the official code (Herschel555/CAML: ``networks/VNet.py``,
``utils/feature_memory.py``, ``utils/correlation.py``, ``train_caml.py``) is described in
:mod:`umlkit.semi.caml`.

References:
    Gao, Zhang, Ma, Li, Zhang. Correlation-Aware Mutual Learning for Semi-supervised Medical Image
    Segmentation. MICCAI 2023, arXiv:2307.06312.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """A row-wise MLP ``Linear(in -> out) -> BatchNorm1d -> ReLU -> Linear(out -> out)``.

    CAML's projection head (``in`` = the decoder width, ``out`` = 32) and prediction head
    (32 -> 32) both have this form. It acts on pixels flattened to rows ``(N, in)``, so in
    training mode batch norm normalises over the rows it is given. No L2 normalisation follows:
    correlations are raw dot products, as in the official code.
    """

    def __init__(self, in_features: int, out_features: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features),
            nn.ReLU(inplace=True),
            nn.Linear(out_features, out_features),
        )

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``(N, in_features)`` -> ``(N, out_features)``."""
        return self.layers(rows)


class CorrelationMemory(nn.Module):
    """One slot per labeled image: projections of the pixels both models got right, with classes.

    Each time a labeled image is in a batch its slot is **replaced** by the projections of its
    pixels that both models classify correctly, each stored with its ground-truth class (no
    first-in-first-out queue). :meth:`sample` draws, for every class, ``per_class`` entries
    uniformly without replacement from all slots together; a class with fewer entries is left out.

    The slots are part of the module's state dict (as one extra-state CPU tensor, rows
    ``[slot, class, projection...]`` in slot order), so checkpoints and resumed runs keep them.
    Slots live on the device of the projections they were given (a restored one on the CPU until
    it is replaced); :meth:`entries` and :meth:`sample` gather them on one device.

    Args:
        num_classes: number of segmentation classes.
        dim: projection dimension.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.slots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        """The number of stored entries, all slots together."""
        return sum(len(labels) for _, labels in self.slots.values())

    def replace(self, index: int, projections: torch.Tensor, labels: torch.Tensor) -> None:
        """Make ``(projections, labels)`` the whole content of slot ``index`` (stored detached).

        Raises:
            ValueError: bad shapes, or an index that a float32 slot column cannot hold exactly.
        """
        if projections.ndim != 2 or projections.shape[1] != self.dim:
            raise ValueError(f"projections must be (N, {self.dim}), got {tuple(projections.shape)}")
        if labels.shape != projections.shape[:1]:
            raise ValueError(f"labels must be ({len(projections)},), got {tuple(labels.shape)}")
        if not 0 <= index < 2**24:
            raise ValueError(f"slot index must be in [0, 2**24), got {index}")
        self.slots[int(index)] = (projections.detach().float(), labels.detach().long())

    def entries(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored ``(projections (M, dim), labels (M,))``, slots in ascending index order."""
        if not self.slots:
            return torch.zeros(0, self.dim, device=device), torch.zeros(
                0, dtype=torch.long, device=device
            )
        keys = sorted(self.slots)
        device = self.slots[keys[0]][0].device if device is None else device
        projections = torch.cat([self.slots[k][0].to(device) for k in keys])
        labels = torch.cat([self.slots[k][1].to(device) for k in keys])
        return projections, labels

    def sample(
        self, per_class: int, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For every class with at least ``per_class`` entries, draw ``per_class`` of them.

        Uniform without replacement (``torch.randperm`` on the global CPU generator, so the
        loop's seeding makes it reproducible); classes with fewer entries contribute nothing.

        Returns:
            ``(keys, labels)``: ``(K, dim)`` and ``(K,)``, classes in ascending order; ``K`` is 0
            when no class has enough entries.
        """
        projections, labels = self.entries(device)
        chosen = []
        for cls in range(self.num_classes):
            rows = torch.nonzero(labels == cls)[:, 0]
            if len(rows) < per_class:
                continue
            chosen.append(rows[torch.randperm(len(rows))[:per_class].to(rows.device)])
        if not chosen:
            return projections[:0], labels[:0]
        index = torch.cat(chosen)
        return projections[index], labels[index]

    def get_extra_state(self) -> torch.Tensor:
        """The slots as one CPU tensor, rows ``[slot index, class, projection...]``."""
        if not self.slots:
            return torch.zeros(0, 2 + self.dim)
        rows = []
        for key in sorted(self.slots):
            projections, labels = (tensor.cpu() for tensor in self.slots[key])
            columns = torch.stack([torch.full_like(labels, key), labels], dim=1)
            rows.append(torch.cat([columns.to(projections.dtype), projections], dim=1))
        return torch.cat(rows)

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore the slots from :meth:`get_extra_state`'s tensor."""
        self.slots = {}
        slot_column = state[:, 0].long()
        for key in torch.unique(slot_column).tolist():
            rows = state[slot_column == key]
            self.slots[int(key)] = (rows[:, 2:].clone(), rows[:, 1].long())


def select_queries(
    confidence: torch.Tensor, classes: torch.Tensor, num_classes: int, per_class: int
) -> torch.Tensor:
    """Rows of the most confident query pixels of each class, as CAML picks its OCC queries.

    For each class ``c`` (ascending), the rows labeled ``c`` sorted by decreasing confidence, cut
    to ``per_class``; a class with at most one row is left out.

    Args:
        confidence: ``(N,)`` confidence of each candidate (model v's max probability).
        classes: ``(N,)`` class of each candidate (model v's argmax).
        num_classes: number of classes.
        per_class: the most rows kept per class.

    Returns:
        ``(M,)`` long indices into the candidates.
    """
    picked = []
    for cls in range(num_classes):
        rows = torch.nonzero(classes == cls)[:, 0]
        if len(rows) < 2:
            continue
        order = torch.sort(confidence[rows], descending=True, stable=True).indices
        picked.append(rows[order[:per_class]])
    if not picked:
        return torch.zeros(0, dtype=torch.long, device=classes.device)
    return torch.cat(picked)


def correlation(
    query: torch.Tensor, memory: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    r"""The omni-correlation of each query with the memory entries.

    .. math:: C = \mathrm{softmax}\left(q\,M^\top / \tau\right)

    Args:
        query: ``(N, D)`` (projected and predicted) features of unlabeled pixels.
        memory: ``(M, D)`` sampled memory entries.
        temperature: :math:`\tau > 0` (CAML: 0.1).

    Returns:
        ``(N, M)``: each row a probability distribution over the memory entries.

    Raises:
        ValueError: ``temperature <= 0``, or shapes that do not share ``D``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.ndim != 2 or memory.ndim != 2 or query.shape[1] != memory.shape[1]:
        raise ValueError(
            f"query (N, D) and memory (M, D) must share D, got {tuple(query.shape)} and "
            f"{tuple(memory.shape)}"
        )
    return torch.softmax(query @ memory.T / temperature, dim=1)


def omni_correlation_loss(
    query_v: torch.Tensor,
    query_a: torch.Tensor,
    memory: torch.Tensor,
    temperature: float = 0.1,
    eps: float = 1e-8,
) -> torch.Tensor:
    r"""OCC: model v's correlation to the labeled memory should match model a's.

    With :math:`C_v = \mathrm{softmax}(q_v M^\top/\tau)` and :math:`C_a` likewise,

    .. math:: L_o = \frac{1}{N}\sum_{n=1}^{N} \sum_{k} -C_a[n, k]\,\ln(C_v[n, k] + \epsilon)

    a cross-entropy with model a's correlation as the target and model v's as the prediction,
    one-directional and without stop-gradient, so the gradient reaches both query sets (as the
    official code; :math:`\epsilon = 10^{-8}` is its guard, which also caps each term). The
    memory ``M`` is a constant.

    Args:
        query_v: ``(N, D)`` queries of model v.
        query_a: ``(N, D)`` queries of model a, same pixels in the same order.
        memory: ``(M, D)`` sampled memory entries (detached here).
        temperature: :math:`\tau`.
        eps: :math:`\epsilon` inside the logarithm.

    Returns:
        A scalar; 0 (connected to the queries' graph) when there are no query rows or no memory
        entries.

    Raises:
        ValueError: if the query shapes differ (or as :func:`correlation`).
    """
    if query_v.shape != query_a.shape:
        raise ValueError(
            f"query_v {tuple(query_v.shape)} and query_a {tuple(query_a.shape)} differ"
        )
    if len(query_v) == 0 or len(memory) == 0:
        return query_v.sum() * 0.0 + query_a.sum() * 0.0
    memory = memory.detach()
    corr_v = correlation(query_v, memory, temperature)
    corr_a = correlation(query_a, memory, temperature)
    return -(corr_a * torch.log(corr_v + eps)).sum(dim=1).mean()
