r"""A 2-D toy problem and evidence sweeps for the evidential primer (notebook 02).

Two interleaved half moons, small enough to train a network in well under a second on a CPU,
and two kinds of network side by side:

- ``features="mlp"``: a plain ReLU MLP. Far from the data its logits grow linearly, so *any* head,
  softmax or evidential, becomes more confident there (Hein et al. 2019).
- ``features="rbf"``: Gaussian radial-basis features :math:`\phi_j(x) = \exp(-\|x - c_j\|^2 /
  2\sigma^2)` around learned centres, then a linear layer without bias. Far from every centre
  :math:`\phi \to 0`, the logits go to 0 and the uncertainty rises, for either head.

Whether uncertainty grows away from the data is therefore a property of the features; what the
evidential head adds is an explicit "no evidence" mass :math:`u = K/S` next to the expected
probabilities :math:`\alpha/S`. The sweeps (:func:`evidence_sweep`, :func:`loss_sweep`) tabulate
the subjective-logic quantities and the losses of :mod:`umlkit.evidential` against evidence.

References:
    Hein, Andriushchenko, Bitterwolf. Why ReLU networks yield high-confidence predictions far away
    from the training data and how to mitigate the problem. CVPR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from sklearn.datasets import make_moons
from torch import nn

from umlkit.evidential import (
    LOSS_KINDS,
    dirichlet,
    evidence_from_logits,
    evidential_loss,
    kl_to_uniform,
)
from umlkit.losses import classification_loss

HEADS = ("softmax", "evidential")
FEATURES = ("mlp", "rbf")

#: Toy sizes per run profile (see :mod:`umlkit.profiles`): training points, full-batch epochs and
#: the resolution of the uncertainty maps. Even "paper" takes seconds: the toy needs no GPU.
TOY_SETTINGS = {
    "smoke": {"n": 200, "epochs": 150, "resolution": 61},
    "default": {"n": 400, "epochs": 400, "resolution": 151},
    "reference": {"n": 400, "epochs": 400, "resolution": 151},  # the same toy as "default"
    "paper": {"n": 400, "epochs": 400, "resolution": 201},
}


def make_moons_data(
    n: int = 400, noise: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two half moons (scikit-learn's ``make_moons``), standardised to zero mean and unit variance.

    Returns:
        ``(x, y)``: float32 points ``(n, 2)`` and int64 labels ``(n,)``.
    """
    points, labels = make_moons(n_samples=n, noise=noise, random_state=seed)
    points = (points - points.mean(axis=0)) / points.std(axis=0)
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)


class RBFFeatures(nn.Module):
    r"""Gaussian radial-basis features :math:`\phi_j(x) = \exp(-\|x - c_j\|^2 / 2\sigma^2)`.

    The centres :math:`c_j` start at training points and are learned, like the shared width
    :math:`\sigma` (through its logarithm, to keep it positive).
    """

    def __init__(self, centres: torch.Tensor, width: float = 0.5) -> None:
        super().__init__()
        self.centres = nn.Parameter(centres.clone())
        self.log_width = nn.Parameter(torch.tensor(float(np.log(width))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squared_distance = torch.cdist(x, self.centres) ** 2
        return torch.exp(-squared_distance / (2.0 * self.log_width.exp() ** 2))


def make_toy_network(
    features: str,
    x_train: torch.Tensor,
    num_classes: int = 2,
    hidden: int = 64,
    n_centres: int = 32,
) -> nn.Module:
    """The toy network: a 2-hidden-layer ReLU MLP, or RBF features + a linear layer without bias.

    Args:
        features: ``"mlp"`` or ``"rbf"``.
        x_train: training points; the RBF centres start at ``n_centres`` of them (chosen with
            torch's global generator, so seed it first).
        num_classes: outputs (logits).
        hidden: MLP width.
        n_centres: number of RBF centres.
    """
    if features == "mlp":
        return nn.Sequential(
            nn.Linear(x_train.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
    if features == "rbf":
        centres = x_train[torch.randperm(len(x_train))[:n_centres]]
        # No bias: far from all centres the logits are exactly 0 (no evidence, uniform softmax).
        return nn.Sequential(RBFFeatures(centres), nn.Linear(len(centres), num_classes, bias=False))
    raise ValueError(f"unknown features {features!r}: choose one of {FEATURES}")


@dataclass
class ToyRun:
    """A trained toy network with its head, features and per-epoch training loss."""

    model: nn.Module
    head: str
    features: str
    losses: list[float] = field(default_factory=list)


def train_toy(
    x: torch.Tensor,
    y: torch.Tensor,
    head: str = "evidential",
    features: str = "mlp",
    epochs: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    anneal_epochs: int | None = None,
) -> ToyRun:
    """Train a toy network full-batch with Adam.

    The softmax head minimises cross-entropy; the evidential head (softplus evidence) minimises
    :func:`umlkit.losses.classification_loss`, the digamma loss plus the KL term annealed over
    ``anneal_epochs`` (default: half of ``epochs``).

    Args:
        x, y: training points ``(n, 2)`` and labels ``(n,)``.
        head: ``"softmax"`` or ``"evidential"``.
        features: ``"mlp"`` or ``"rbf"`` (see :func:`make_toy_network`).
        epochs: full-batch steps.
        lr: Adam learning rate.
        seed: seeds the initialisation (same seed, same network on CPU).
        anneal_epochs: KL annealing length for the evidential head.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: choose one of {HEADS}")
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    anneal_epochs = max(1, epochs // 2) if anneal_epochs is None else anneal_epochs
    torch.manual_seed(seed)
    model = make_toy_network(features, x, num_classes=int(y.max()) + 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    run = ToyRun(model=model, head=head, features=features)
    # Matrices this small gain nothing from threads, and on a busy 2-core machine the BLAS
    # threads' waiting made training 10-50x slower; the caller's setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for epoch in range(epochs):
            logits = model(x)
            if head == "softmax":
                loss = F.cross_entropy(logits, y)
            else:
                alpha = dirichlet(evidence_from_logits(logits)).alpha
                loss = classification_loss(alpha, y, epoch, anneal_epochs=anneal_epochs)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            run.losses.append(float(loss.detach()))
    finally:
        torch.set_num_threads(threads)
    return run


@torch.no_grad()
def toy_predict(run: ToyRun, points: torch.Tensor) -> dict[str, np.ndarray]:
    r"""Probabilities and uncertainty of a trained toy network at ``points`` ``(n, 2)``.

    Returns:
        ``prob`` ``(n, K)`` and ``uncertainty`` ``(n,)`` in [0, 1]: for the evidential head
        :math:`u = K/S` and :math:`p = \alpha/S`; for the softmax head the normalised entropy
        :math:`-\sum_k p_k \ln p_k / \ln K` (a softmax has no :math:`u`; the entropy is its usual
        stand-in, 1 for a uniform prediction).
    """
    run.model.eval()
    logits = run.model(points)
    if run.head == "evidential":
        stats = dirichlet(evidence_from_logits(logits))
        prob, uncertainty = stats.prob, stats.uncertainty[:, 0]
    else:
        prob = torch.softmax(logits, dim=1)
        entropy = -(prob * torch.log(prob.clamp_min(1e-12))).sum(dim=1)
        uncertainty = entropy / np.log(prob.shape[1])
    return {"prob": prob.numpy(), "uncertainty": uncertainty.numpy()}


def toy_grid(run: ToyRun, extent: float = 5.0, resolution: int = 101) -> dict[str, np.ndarray]:
    """:func:`toy_predict` on a square grid over ``[-extent, extent]^2``.

    Returns:
        ``xx``, ``yy`` (``(R, R)`` coordinates), ``prob`` ``(R, R, K)``, ``uncertainty`` ``(R, R)``.
    """
    axis = np.linspace(-extent, extent, resolution, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    points = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1))
    prediction = toy_predict(run, points)
    return {
        "xx": xx,
        "yy": yy,
        "prob": prediction["prob"].reshape(resolution, resolution, -1),
        "uncertainty": prediction["uncertainty"].reshape(resolution, resolution),
    }


def uncertainty_by_distance(
    grid: dict[str, np.ndarray], x_train: torch.Tensor, bin_width: float = 0.25
) -> pd.DataFrame:
    """Mean grid uncertainty against the distance to the nearest training point.

    Returns:
        A DataFrame with ``distance`` (bin centre), ``uncertainty`` (mean) and ``count`` per bin.
    """
    points = np.stack([grid["xx"].ravel(), grid["yy"].ravel()], axis=1)
    distance, _ = cKDTree(x_train.numpy()).query(points)
    frame = pd.DataFrame(
        {
            "distance": (np.floor(distance / bin_width) + 0.5) * bin_width,
            "uncertainty": grid["uncertainty"].ravel(),
        }
    )
    return (
        frame.groupby("distance")["uncertainty"].agg(uncertainty="mean", count="size").reset_index()
    )


def evidence_sweep(
    num_classes: int = 3, max_evidence: float = 50.0, steps: int = 101
) -> pd.DataFrame:
    """Belief, probability and uncertainty as evidence for class 0 grows (other classes: none).

    With :math:`e = (t, 0, \\dots, 0)`: :math:`b_0 = t/(t + K)`, :math:`p_0 = (t + 1)/(t + K)`,
    :math:`u = K/(t + K)`.

    Returns:
        A long DataFrame with ``evidence``, ``quantity`` (``"belief b_0"``, ``"probability p_0"``,
        ``"uncertainty u"``) and ``value``.
    """
    evidence = torch.zeros(steps, num_classes, dtype=torch.float64)
    evidence[:, 0] = torch.linspace(0.0, max_evidence, steps, dtype=torch.float64)
    stats = dirichlet(evidence)
    columns = {
        "belief b_0": stats.belief[:, 0],
        "probability p_0": stats.prob[:, 0],
        "uncertainty u": stats.uncertainty[:, 0],
    }
    return pd.concat(
        pd.DataFrame({"evidence": evidence[:, 0].numpy(), "quantity": name, "value": v.numpy()})
        for name, v in columns.items()
    )


def loss_sweep(num_classes: int = 2, max_evidence: float = 20.0, steps: int = 101) -> pd.DataFrame:
    """The evidential losses and the KL term against evidence, for a sample of class 0.

    Two sweeps: evidence on the **true** class (the losses fall, the KL term stays 0) and
    evidence on a **wrong** class (the losses and the KL term rise).

    Returns:
        A long DataFrame with ``evidence``, ``on`` (``"true class"`` / ``"wrong class"``),
        ``term`` (``"digamma"``, ``"log"``, ``"mse"``, ``"KL"``) and ``value``.
    """
    grid = torch.linspace(0.0, max_evidence, steps, dtype=torch.float64)
    target = torch.zeros(steps, dtype=torch.long)
    frames = []
    for on, column in (("true class", 0), ("wrong class", 1)):
        evidence = torch.zeros(steps, num_classes, dtype=torch.float64)
        evidence[:, column] = grid
        alpha = evidence + 1.0
        terms = {kind: evidential_loss(alpha, target, kind) for kind in LOSS_KINDS}
        terms["KL"] = kl_to_uniform(alpha, target)
        for term, value in terms.items():
            frames.append(
                pd.DataFrame(
                    {"evidence": grid.numpy(), "on": on, "term": term, "value": value.numpy()}
                )
            )
    return pd.concat(frames, ignore_index=True)


def compare_heads(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 300,
    resolution: int = 101,
    extent: float = 5.0,
    far: float = 2.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train every (features, head) pair on the same data and tabulate where each is uncertain.

    Args:
        x, y: training points and labels.
        epochs: training epochs of each network.
        resolution: grid points per axis of the uncertainty maps.
        extent: the maps cover ``[-extent, extent]^2``.
        far: grid points farther than this from every training point count as "far from the data".
        seed: initialisation seed (the same for every network).

    Returns:
        ``grids`` (name -> :func:`toy_grid` output), ``distance`` (stacked
        :func:`uncertainty_by_distance` tables with a ``model`` column) and ``summary`` (one row
        per model: training accuracy, mean uncertainty on the training points and far from them).
    """
    grids, frames, rows = {}, [], []
    for features in FEATURES:
        for head in HEADS:
            name = f"{features} + {head}"
            run = train_toy(x, y, head=head, features=features, epochs=epochs, seed=seed)
            grid = toy_grid(run, extent=extent, resolution=resolution)
            on_data = toy_predict(run, x)
            by_distance = uncertainty_by_distance(grid, x)
            far_rows = by_distance[by_distance["distance"] > far]
            grids[name] = grid
            frames.append(by_distance.assign(model=name))
            rows.append(
                {
                    "model": name,
                    "training accuracy": float((on_data["prob"].argmax(1) == y.numpy()).mean()),
                    "uncertainty on the data": float(on_data["uncertainty"].mean()),
                    f"uncertainty > {far:g} from the data": float(
                        np.average(far_rows["uncertainty"], weights=far_rows["count"])
                    ),
                }
            )
    return {
        "grids": grids,
        "distance": pd.concat(frames, ignore_index=True),
        "summary": pd.DataFrame(rows).set_index("model"),
    }


def subjective_logic_table(
    logits: torch.Tensor, names: list[str] | None = None, kind: str = "softplus", decimals: int = 2
) -> pd.DataFrame:
    """One row per logit vector: evidence, S, belief, uncertainty, alpha/S and, for contrast, softmax.

    Args:
        logits: ``(N, K)`` logits.
        names: row labels (default 0..N-1).
        kind: evidence function (:func:`umlkit.evidential.evidence_from_logits`).
        decimals: rounding of the shown numbers.
    """
    stats = dirichlet(evidence_from_logits(logits, kind))

    def rows(tensor: torch.Tensor) -> list[list[float]]:
        return [np.round(row, decimals).tolist() for row in tensor.detach().numpy()]

    return pd.DataFrame(
        {
            "logits z": rows(logits),
            "evidence e": rows(stats.evidence),
            "strength S": stats.strength[:, 0].numpy().round(decimals),
            "belief b": rows(stats.belief),
            "uncertainty u": stats.uncertainty[:, 0].numpy().round(decimals + 1),
            "p = alpha/S": rows(stats.prob),
            "softmax(z)": rows(torch.softmax(logits.float(), dim=1)),
        },
        index=names,
    )
