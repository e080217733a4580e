"""Conclusions that survive the budget: is a sentence a finding, or a snapshot of the stopping time?

A comparison of short training runs can print "A beats B, beyond the seed-to-seed spread" and
print the opposite after one more epoch: what it measured was where training happened to stop,
not the method. So every comparative sentence of notebooks 04, 05, 07 and 09 is computed twice
from the same runs, with

* the **final** weights (what the run kept at the end), and
* the **half-budget** weights (the best epoch within the first half of the training,
  :func:`umlkit.train.half_budget_model`; evaluating them costs one forward pass),

and it is printed as a **finding** only where both budgets say the same thing:

1. the same leader (for a ranking: the same variant is first),
2. the same sign of the difference (who is better), and
3. the same "beyond the spread" verdict, judged at each budget by the rule the sentence already
   uses (:func:`paired_beyond_spread` for differences paired by seed,
   :func:`ranking_beyond_spread` for the gap between two variants' means).

Anything else is "not settled at this budget", printed with both budgets' numbers, and so is a
sentence read from a single seed: one seed has no spread to judge a gap by.

The API:

* :class:`Reading`: what one budget says (difference, spread, verdict, leader);
  :func:`paired_reading` (per-seed differences), :func:`summary_reading` (their mean and std)
  and :func:`ranking_reading` make one by each rule
* :class:`Verdict`: a claim with its two readings; ``settled``, ``reason`` and ``text`` follow
* :func:`two_budget`: the verdict of per-seed paired differences (or values) at both budgets
* :func:`settled_sentences`: the printed lines of several verdicts, and a closing count
* :func:`findings`: a notebook's closing note, the lines that are findings
* :func:`half_budget_models`: the half-budget models of a notebook's runs
* :func:`budget_note`: the line a profile too small to settle anything prints first

>>> verdict = two_budget([0.03, 0.04, 0.05], [0.02, 0.03, 0.04], "UML beats multitask on Dice.")
>>> verdict.settled
True
>>> verdict.text
'Finding: UML beats multitask on Dice (final +0.040 ± 0.010, beyond the spread; half +0.030 ± 0.010, beyond the spread).'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

#: Profiles whose runs are too small to settle any comparison (they only check that the code runs).
SETTLES_NOTHING = ("smoke",)
#: How the line of a settled verdict begins (:attr:`Verdict.text`, read by :func:`findings`).
FINDING = "Finding: "


@dataclass(frozen=True)
class Reading:
    """What the runs of one budget say about a claim.

    Attributes:
        difference: the compared quantity, signed so that > 0 favours the claim's subject (a
            mean paired difference, or the gap between a variant and its runner-up).
        spread: the seed-to-seed spread the difference is judged by; NaN with one seed.
        beyond: whether the difference is beyond the spread (by the rule of the sentence);
            ``None`` where it cannot be judged (one seed).
        leader: for a ranking, the variant that is first at this budget; ``None`` otherwise.
    """

    difference: float
    spread: float
    beyond: bool | None
    leader: str | None = None

    @property
    def sign(self) -> int:
        """+1, -1, or 0 for an exact tie (equal means, exact by construction)."""
        return int(np.sign(self.difference))

    def describe(self) -> str:
        """The reading in a few words: ``"UML first, +0.012 ± 0.004, beyond the spread"``."""
        first = f"{self.leader} first, " if self.leader is not None else ""
        spread = f" ± {self.spread:.3f}" if np.isfinite(self.spread) else ""
        verdict = {
            True: ", beyond the spread",
            False: ", within the spread",
            None: ", one seed",
        }[self.beyond]
        return f"{first}{self.difference:+.3f}{spread}{verdict}"


@dataclass(frozen=True)
class Verdict:
    """A claim (the sentence the final weights print) and what both budgets say about it.

    ``settled`` is True only where the two readings agree on the leader, the sign and the
    beyond-the-spread verdict, and both could judge it; ``reason`` names the first disagreement
    (empty when settled); ``text`` is the line a notebook prints.
    """

    claim: str
    final: Reading
    half: Reading

    @property
    def reason(self) -> str:
        """Why the claim is not settled ("" when it is)."""
        final, half = self.final, self.half
        if final.beyond is None or half.beyond is None:
            return "one seed: no spread to judge it by"
        if final.leader != half.leader:
            return f"first at the final budget {final.leader}, at half the training {half.leader}"
        if final.sign != half.sign:
            return "the sign flips between the budgets"
        if final.beyond != half.beyond:
            return "beyond the spread at one budget only"
        return ""

    @property
    def settled(self) -> bool:
        """Whether the claim holds at both budgets (a finding)."""
        return self.reason == ""

    @property
    def text(self) -> str:
        """``"Finding: <claim> (final ...; half ...)."`` or ``"Not settled at this budget: ..."``."""
        claim = self.claim.rstrip(".")
        numbers = f"final {self.final.describe()}; half {self.half.describe()}"
        if self.settled:
            return f"{FINDING}{claim} ({numbers})."
        return f"Not settled at this budget: {claim} — {self.reason} ({numbers})."


def paired_beyond_spread(mean: float, spread: float) -> bool | None:
    """The rule for differences paired by seed: beyond when ``|mean| > std`` of the differences.

    ``None`` where the spread is undefined (one seed).
    """
    if not np.isfinite(spread):
        return None
    return bool(abs(mean) > spread)


def ranking_beyond_spread(gap: float, spreads: Sequence[float]) -> bool | None:
    """The rule for a gap between two variants' means over seeds: beyond when ``|gap|`` is at
    least the larger of their standard deviations (:func:`umlkit.analysis.compare_variants`).

    ``None`` where neither spread is defined (one seed).
    """
    finite = [s for s in spreads if np.isfinite(s)]
    if not finite:
        return None
    return bool(abs(gap) >= max(finite))


def _checked(values: pd.Series | Sequence[float] | np.ndarray, name: str) -> pd.Series:
    series = (
        values.astype(float) if isinstance(values, pd.Series) else pd.Series(values, dtype=float)
    )
    if series.empty:
        raise ValueError(f"{name}: no values (one per seed expected)")
    if series.isna().any():
        raise ValueError(f"{name}: NaN among the per-seed values {series.tolist()}")
    return series


def paired_reading(differences: pd.Series | Sequence[float] | np.ndarray) -> Reading:
    """One budget's reading of per-seed paired differences: mean, std (ddof=1), rule of
    :func:`paired_beyond_spread`.

    Raises:
        ValueError: empty, or NaN among the differences.
    """
    differences = _checked(differences, "differences")
    spread = float(differences.std(ddof=1)) if len(differences) > 1 else float("nan")
    return summary_reading(float(differences.mean()), spread)


def summary_reading(mean: float, spread: float) -> Reading:
    """:func:`paired_reading` from a mean and a standard deviation already in a table.

    Raises:
        ValueError: the mean is not a number.
    """
    if not np.isfinite(mean):
        raise ValueError(f"the mean difference is not a number: {mean}")
    return Reading(float(mean), float(spread), paired_beyond_spread(mean, spread))


def ranking_reading(leader: str, gap: float, spreads: Sequence[float]) -> Reading:
    """One budget's reading of a ranking: who is first, the gap between the subject and its
    nearest rival (> 0: the subject is ahead), judged by :func:`ranking_beyond_spread`."""
    if not np.isfinite(gap):
        raise ValueError(f"the gap of {leader!r} is not a number: {gap}")
    return Reading(float(gap), _larger(spreads), ranking_beyond_spread(gap, spreads), leader)


def _larger(spreads: Sequence[float]) -> float:
    finite = [float(s) for s in spreads if np.isfinite(s)]
    return max(finite) if finite else float("nan")


def two_budget(
    final: pd.Series | Sequence[float] | np.ndarray,
    half: pd.Series | Sequence[float] | np.ndarray,
    claim: str,
) -> Verdict:
    """The verdict of a claim read from per-seed paired differences at both budgets.

    Args:
        final: one difference per seed (> 0 favours the claim's subject), from the final weights;
            a Series indexed by seed, or a plain sequence in seed order.
        half: the same seeds' differences from the half-budget weights.
        claim: the sentence the final weights print.

    Raises:
        ValueError: empty, NaN, or the two budgets read different seeds.
    """
    final, half = _checked(final, "final"), _checked(half, "half")
    if sorted(final.index) != sorted(half.index):
        raise ValueError(
            f"the budgets read different seeds: final {sorted(final.index)}, "
            f"half {sorted(half.index)}"
        )
    return Verdict(claim, paired_reading(final), paired_reading(half.loc[final.index]))


def settled_sentences(sentences: Sequence[Verdict | str], count: bool = True) -> list[str]:
    """The lines a notebook prints: each verdict's text (plain strings, sentences that compare
    nothing, pass through), then (``count``) how many of the verdicts are findings."""
    lines = [s.text if isinstance(s, Verdict) else s for s in sentences]
    verdicts = [s for s in sentences if isinstance(s, Verdict)]
    if count and verdicts:
        settled = sum(verdict.settled for verdict in verdicts)
        lines.append(
            f"{settled} of {len(verdicts)} comparisons hold at both budgets (the final weights "
            "and those of half the training)."
        )
    return lines


def findings(sentences: Iterable[str]) -> list[str]:
    """A notebook's closing note: the printed lines that are findings, with both budgets' numbers.

    >>> findings(["Finding: A beats B (final ...; half ...).", "Not settled at this budget: C."])
    ['Findings (they hold at the final and at the half-budget weights): 1', '- A beats B (final ...; half ...).']
    """
    found = [s.removeprefix(FINDING) for s in sentences if s.startswith(FINDING)]
    if not found:
        return ["No comparison above holds at both budgets: none of them is a finding."]
    title = f"Findings (they hold at the final and at the half-budget weights): {len(found)}"
    return [title, *(f"- {sentence}" for sentence in found)]


def half_budget_models(results: Mapping[Any, Any]) -> dict[Any, torch.nn.Module]:
    """The half-budget model of every run (:func:`umlkit.train.half_budget_model`), keyed as
    ``results`` (e.g. ``(variant, seed)`` of :func:`umlkit.analysis.train_variants`).

    Raises:
        ValueError: a run keeps no half-budget weights (trained by an older umlkit).
    """
    from umlkit.train import half_budget_model

    return {key: half_budget_model(result) for key, result in results.items()}


def budget_note(profile: str, training: str, n_images: int) -> list[str]:
    """The line a profile in :data:`SETTLES_NOTHING` prints before its sentences (else none).

    Args:
        profile: the notebook's profile.
        training: how long the runs trained, in words (``"2 epochs"``, ``"4 steps"``).
        n_images: the images of the dataset they trained on.

    >>> budget_note("smoke", "2 epochs", 48)
    ['smoke profile: 2 epochs on 48 images; these sentences settle nothing']
    """
    if profile not in SETTLES_NOTHING:
        return []
    return [f"{profile} profile: {training} on {n_images} images; these sentences settle nothing"]
