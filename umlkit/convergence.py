"""Has a run finished learning? The plateau rule, early stopping and the half-budget weights.

A validation score that still rises at the last epoch means the run was stopped by its budget,
not by its learning: what it reports is the stopping time, not the method. Every umlkit run
therefore says whether it has *plateaued*, by one rule:

**The plateau rule.** Smooth the validation score with a running mean over the last ``window``
epochs (the score of 600 validation images swings by a few hundredths from epoch to epoch). The
run has plateaued after epoch ``t`` when the best smoothed score up to ``t`` exceeds the best
smoothed score up to ``t - patience`` by at most ``tolerance``: ``patience`` epochs brought no
improvement worth the name. A run needs ``window + patience`` epochs before the rule can fire.

With :attr:`umlkit.train.TrainConfig.patience` set, :func:`umlkit.train.train` stops as soon as
the rule fires, unless the epoch just trained is the best so far (a run is never stopped while it
is still improving; early stopping, ``epochs`` is then the maximum). Without it the run trains all its
epochs and the rule, with :data:`REPORT_PATIENCE`, still says whether it had plateaued.

**Two budgets.** A conclusion drawn from a run should not depend on when the run was stopped. So
every run also keeps the weights it would have returned with *half* the training: the best epoch
(by the raw validation score, as model selection does) among the first ``n // 2`` of the ``n``
epochs it trained. :class:`HalfBudget` tracks them while the run trains; evaluating them costs one
forward pass, and notebooks 04-09 print a comparison as a finding only where it holds at both.

>>> scores = [0.70, 0.80, 0.85, 0.86, 0.86, 0.861, 0.86, 0.859]
>>> plateaued(scores, window=3, patience=2, tolerance=0.005)
True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: The plateau rule's defaults: running mean over 3 epochs, 4 epochs without a gain above 0.005.
WINDOW = 3
TOLERANCE = 0.005
#: The patience with which a run trained without early stopping is judged.
REPORT_PATIENCE = 4


def smoothed(scores: Sequence[float], window: int = WINDOW) -> np.ndarray:
    """The running mean of ``scores`` over the last ``window`` epochs (fewer at the start)."""
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"scores must be one score per epoch, got shape {values.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    # each window's own mean (not differences of a cumulative sum, whose rounding would make
    # equal windows differ in the last digit)
    return np.array(
        [values[max(0, end - window) : end].mean() for end in range(1, len(values) + 1)]
    )


def plateaued(
    scores: Sequence[float],
    window: int = WINDOW,
    patience: int = REPORT_PATIENCE,
    tolerance: float = TOLERANCE,
) -> bool:
    """Whether the run whose validation scores are ``scores`` has plateaued (module docstring).

    Args:
        scores: the validation score after each epoch, in order.
        window: epochs of the running mean.
        patience: epochs that must bring no gain above ``tolerance``.
        tolerance: the smallest gain of the best smoothed score that counts as improving.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    values = smoothed(scores, window)
    if np.isnan(values).any():
        raise ValueError("scores contain NaN: a run without a validation score cannot plateau")
    if len(values) < window + patience:
        return False
    gain = values.max() - values[: len(values) - patience].max()
    return bool(gain <= tolerance)


def plateau_epoch(
    scores: Sequence[float],
    window: int = WINDOW,
    patience: int = REPORT_PATIENCE,
    tolerance: float = TOLERANCE,
) -> int | None:
    """The first epoch (0-based) after which the rule fired, or ``None`` if it never did."""
    for end in range(window + patience, len(scores) + 1):
        if plateaued(scores[:end], window, patience, tolerance):
            return end - 1
    return None


@dataclass(frozen=True)
class Convergence:
    """What a run reports about its own convergence (:func:`convergence`)."""

    epochs_run: int  # epochs trained
    max_epochs: int  # the budget (TrainConfig.epochs)
    best_epoch: int  # 0-based epoch of the returned weights
    plateaued: bool  # the plateau rule holds after the last epoch
    plateau_epoch: int | None  # the first epoch after which it held (None: never)
    stopped_early: bool  # training stopped on the rule before the budget ran out
    still_improving: bool  # the best epoch is the last: more training would likely help
    rule: str  # the rule, in words, with its numbers

    def describe(self) -> str:
        """One line for a notebook: how long it trained and whether it converged."""
        if self.stopped_early:
            state = f"stopped early after epoch {self.epochs_run} of at most {self.max_epochs}"
        else:
            state = f"trained all {self.epochs_run} epochs"
        verdict = "plateaued" if self.plateaued else "NOT plateaued"
        text = f"{state}; best epoch {self.best_epoch + 1}; {verdict}"
        return text + (
            " (still improving: its best epoch is its last)" if self.still_improving else ""
        )

    def to_dict(self) -> dict:
        return asdict(self)


def convergence(
    scores: Sequence[float],
    best_epoch: int,
    max_epochs: int,
    window: int = WINDOW,
    patience: int | None = None,
    tolerance: float = TOLERANCE,
) -> Convergence:
    """The :class:`Convergence` of a run from its validation scores.

    Args:
        scores: the validation score of every epoch it trained.
        best_epoch: the 0-based epoch whose weights it returns.
        max_epochs: its budget; a run with fewer epochs stopped early.
        window, tolerance: the plateau rule's (module docstring).
        patience: the run's early-stopping patience; ``None`` (no early stopping) judges it with
            :data:`REPORT_PATIENCE`.
    """
    patience = REPORT_PATIENCE if patience is None else patience
    scores = [float(s) for s in scores]
    if not scores:
        raise ValueError("a run with no validated epoch has no convergence to report")
    if not 0 <= best_epoch < len(scores):
        raise ValueError(f"best_epoch {best_epoch} is not one of the {len(scores)} epochs run")
    finite = [s for s in scores if not np.isnan(s)]
    reached = len(finite) == len(scores) and plateaued(scores, window, patience, tolerance)
    return Convergence(
        epochs_run=len(scores),
        max_epochs=int(max_epochs),
        best_epoch=int(best_epoch),
        plateaued=reached,
        plateau_epoch=plateau_epoch(scores, window, patience, tolerance) if reached else None,
        stopped_early=len(scores) < max_epochs,
        still_improving=best_epoch == len(scores) - 1 and len(scores) > 1,
        rule=(
            f"running mean over {window} epochs; plateaued when {patience} epochs raised its "
            f"best by at most {tolerance}"
        ),
    )


def half_point(epochs_run: int) -> int:
    """How many epochs the half budget of a run of ``epochs_run`` epochs has (at least 1)."""
    return max(1, epochs_run // 2)


class HalfBudget:
    """The weights a run would have returned with half its training, tracked as it trains.

    After ``n`` epochs the half budget is the best epoch among the first :func:`half_point`
    (``n``) ones. Every time the best score improves, :meth:`improved` keeps a copy of the weights;
    copies that can no longer be the half budget's (an older one once a newer improvement lies
    inside the first half) are dropped, so at most the improvements of the second half are held.

    Args:
        entries: ``(epoch, state)`` pairs already kept (a resumed run's), oldest first.
    """

    def __init__(self, entries: Sequence[tuple[int, dict]] = ()) -> None:
        self.entries: list[tuple[int, dict]] = list(entries)

    def improved(self, epoch: int, state: dict, epochs_run: int) -> None:
        """Keep ``state``, the new best weights of epoch ``epoch``; then drop what is stale."""
        self.entries.append((int(epoch), state))
        self.drop_stale(epochs_run)

    def drop_stale(self, epochs_run: int) -> None:
        """Forget the copies that are older than the half budget's after ``epochs_run`` epochs."""
        limit = half_point(epochs_run)
        while len(self.entries) > 1 and self.entries[1][0] < limit:
            self.entries.pop(0)

    def current(self, epochs_run: int) -> tuple[int, dict] | None:
        """``(epoch, state)`` of the half budget after ``epochs_run`` epochs (None: none kept)."""
        limit = half_point(epochs_run)
        inside = [entry for entry in self.entries if entry[0] < limit]
        return inside[-1] if inside else None


# ------------------------------------------------------------------- what the training loops use
def run_convergence(history: Any, best_epoch: int, config: Any) -> Convergence | None:
    """The :class:`Convergence` of a supervised run's history (a list of rows or a table with
    ``val_score``) under ``config``'s plateau rule (:class:`umlkit.train.TrainConfig`'s
    ``epochs``, ``plateau_window``, ``patience``, ``plateau_tolerance``); ``None`` before any
    epoch."""
    if isinstance(history, list):
        scores = [row["val_score"] for row in history]
    else:
        scores = list(history["val_score"]) if len(history) else []
    if not scores or best_epoch < 0:
        return None
    return convergence(
        scores,
        best_epoch,
        config.epochs,
        window=config.plateau_window,
        patience=config.patience,
        tolerance=config.plateau_tolerance,
    )


def validated_convergence(
    history: Any, column: str, best_epoch: int, epochs: int, interval: int
) -> Convergence | None:
    """The :class:`Convergence` of a run validated every ``interval`` epochs only (the
    semi-supervised loop): judged over its validations, so ``epochs_run``, ``best_epoch`` and
    ``plateau_epoch`` count validations, not epochs. ``history`` is a table with ``epoch`` and
    ``column`` (NaN where an epoch was not validated); ``None`` before any validation."""
    if not len(history) or best_epoch < 0:
        return None
    validated = history[history[column].notna()].reset_index(drop=True)
    if not len(validated):
        return None
    best = int((validated["epoch"] <= best_epoch).sum()) - 1
    planned = -(-epochs // interval)  # ceil: the validations a full run has
    return convergence(list(validated[column]), best, max(planned, len(validated)))


def half_budget_copy(module: Any, half_state: dict | None, what: str) -> Any:
    """A copy of ``module`` holding the half-budget weights ``half_state``, in eval mode.

    Raises:
        ValueError: ``half_state`` is ``None`` (``what`` names the run in the message).
    """
    if half_state is None:
        raise ValueError(
            f"{what} keeps no half-budget weights (not validated in the first half of its "
            "epochs, or trained by an older umlkit): train it again"
        )
    copied = copy.deepcopy(module)
    copied.load_state_dict(half_state)
    return copied.eval()


def half_budget_model(result: Any) -> Any:
    """A copy of a :class:`umlkit.train.TrainResult`'s model holding its half-budget weights
    (eval mode): a conclusion that holds for both this model and ``result.model`` does not
    depend on when training stopped.

    Raises:
        ValueError: the result has no half-budget weights.
    """
    return half_budget_copy(result.model, result.half_state, f"the {result.config.model} run")
