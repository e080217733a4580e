"""Failure cases, notebook 08: which images a model gets wrong, and what they have in common.

* galleries: :func:`add_failure_columns` (the outcomes studied: a wrong label, a failed
  segmentation, the label's own ambiguity), :func:`select_cases` (most uncertain, confidently
  wrong, uncertain but right)
* selective prediction: :func:`risk_coverage_curves` (what is left when the most uncertain images
  are set aside)
* explanatory factors: :func:`failure_factors`, :func:`factor_regression`, :func:`flag_rates`,
  with :func:`describe_effects` for sentences computed from the numbers;
  :func:`factor_weights` (notebook 03: which generator factors a classifier reads)
* the takeaways: :func:`failure_takeaways` (the notebook's closing sentences)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from umlkit import metrics
from umlkit.analysis.frames import require_columns


def select_cases(
    table: pd.DataFrame,
    n: int = 6,
    uncertainty: str = "uncertainty",
    correct: str = "correct",
) -> dict[str, pd.DataFrame]:
    """The three galleries of notebook 08, each sorted by the image uncertainty.

    * ``most uncertain``: the ``n`` images with the highest uncertainty, right or wrong;
    * ``confidently wrong``: wrong predictions with the *lowest* uncertainty (the dangerous ones);
    * ``uncertain but right``: right predictions with the highest uncertainty (needless alarms).

    A gallery holds fewer than ``n`` rows when there are not enough such images.

    Raises:
        ValueError: missing columns, NaN uncertainty or ``n < 1``.
    """
    require_columns(table, (uncertainty, correct), "table")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if table[uncertainty].isna().any():
        raise ValueError(f"column {uncertainty!r} has NaN: the model has no such uncertainty")
    right = table[correct].astype(bool)
    return {
        "most uncertain": table.sort_values(uncertainty, ascending=False, kind="stable").head(n),
        "confidently wrong": table[~right].sort_values(uncertainty, kind="stable").head(n),
        "uncertain but right": table[right]
        .sort_values(uncertainty, ascending=False, kind="stable")
        .head(n),
    }


def add_failure_columns(table: pd.DataFrame, dice_threshold: float = 0.7) -> pd.DataFrame:
    """The evaluation table with the outcomes and the difficulty notebook 08 studies.

    Adds ``error`` = 1 - correct (a wrong image label; NaN without a class head),
    ``segmentation_failure`` = 1[Dice < dice_threshold] (NaN without a segmentation) and, on
    synthetic data, ``bayes_error`` = min(p_true, 1 - p_true): the error probability of the
    Bayes-optimal classifier on that image, i.e. how ambiguous its label is *by construction*.

    Returns:
        A copy of ``table`` with the new columns.
    """
    require_columns(table, ("correct", "dice"), "table")
    if not 0 <= dice_threshold <= 1:
        raise ValueError(f"dice_threshold must lie in [0, 1], got {dice_threshold}")
    table = table.copy()
    table["error"] = 1 - table["correct"]
    table["segmentation_failure"] = (
        (table["dice"] < dice_threshold).astype(float).where(table["dice"].notna())
    )
    if "p_true" in table:
        table["bayes_error"] = np.minimum(table["p_true"], 1 - table["p_true"])
    return table


def risk_coverage_curves(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray, str]],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pd.DataFrame]:
    """Risk-coverage curves and AURC of several scores (:mod:`umlkit.metrics.uncertainty`).

    Args:
        scores: label -> ``(score, correct, kind)`` with kind ``"confidence"`` or
            ``"uncertainty"`` (how to read the score).

    Returns:
        ``(curves, table)``: ``"label (AURC 0.123)" -> (coverage, risk)`` for
        :func:`umlkit.plots.risk_coverage`, and one row per label (the index ``score``) with
        ``aurc``, ``error_rate`` (the risk at full coverage) and ``optimal_aurc``, the AURC of a
        perfect ranking of the same images (:func:`umlkit.metrics.optimal_aurc`).
    """
    curves, rows = {}, []
    for label, (score, correct, kind) in scores.items():
        curve = metrics.risk_coverage_curve(score, correct, kind)
        area = metrics.aurc(score, correct, kind)
        rate = float(1 - np.mean(np.asarray(correct, dtype=float)))
        optimal = metrics.optimal_aurc(correct)
        curves[f"{label} (AURC {area:.3f})"] = (
            curve["coverage"].to_numpy(),
            curve["risk"].to_numpy(),
        )
        rows.append({"score": label, "aurc": area, "error_rate": rate, "optimal_aurc": optimal})
    return curves, pd.DataFrame(rows).set_index("score")


#: Metadata columns that are bookkeeping or the answer itself, never an explanatory factor.
_NOT_FACTORS = ("id", "index", "split", "label", "p_true", "risk_logit", "image", "mask", "family")


def failure_factors(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The generator's continuous factors and binary nuisance flags present in an evaluation table.

    Returns:
        ``(factors, flags)``: numeric metadata columns with more than two values, and those with
        values in {0, 1}; the model's own columns (predictions, scores) and columns that are
        constant on these images are left out.
    """
    from umlkit.evaluate import TABLE_COLUMNS

    skip = set(_NOT_FACTORS) | set(TABLE_COLUMNS)
    skip |= {"uncertainty", "error", "segmentation_failure", "bayes_error"}
    skip |= {c for c in table.columns if c.startswith(("dice_", "iou_", "hd95_", "assd_"))}
    factors, flags = [], []
    for column in table.columns:
        if column in skip or not pd.api.types.is_numeric_dtype(table[column]):
            continue
        values = table[column].dropna().unique()
        if len(values) < 2:
            continue  # constant on these images: it cannot explain anything here
        (flags if set(values) <= {0, 1} else factors).append(column)
    return factors, flags


def factor_regression(
    table: pd.DataFrame,
    columns: Sequence[str],
    target: str = "error",
    n_bootstrap: int = 200,
    seed: int = 0,
    C: float = 10.0,
    min_events: int = 10,
) -> pd.DataFrame:
    """Which factors explain the failures: a logistic regression of ``target`` on ``columns``.

    Each column is standardised (z = (x - mean) / sd), so a coefficient is the change in the
    log-odds of a failure per standard deviation of the factor (for a 0/1 flag, per sd of the flag).
    The model is scikit-learn's ``LogisticRegression`` with a mild L2 penalty (``C``) that keeps
    the fit finite when a factor separates the classes. The interval is the 2.5-97.5 % range of
    ``n_bootstrap`` refits on images resampled with replacement (resamples with one class only
    are skipped).

    With a handful of failures the fit (and its bootstrap) is driven by single images and the
    intervals look sharp while meaning nothing, so at least ``min_events`` failures *and*
    successes are required.

    Returns:
        One row per column: ``factor``, ``coefficient``, ``lower``, ``upper``, sorted by
        ``|coefficient|``, largest first.

    Raises:
        ValueError: missing columns, NaN, a non-binary target, or fewer than ``min_events``
            images in either class of it.
    """
    from sklearn.linear_model import LogisticRegression

    require_columns(table, (target, *columns), "table")
    if not columns:
        raise ValueError("factor_regression needs at least one column")
    data = table[[target, *columns]]
    if data.isna().any().any():
        raise ValueError(f"NaN in {list(data.columns[data.isna().any()])}")
    y = data[target].to_numpy()
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"target {target!r} must be 0/1")
    events = int(min((y == 1).sum(), (y == 0).sum()))
    if events < min_events:
        raise ValueError(
            f"target {target!r} has only {events} images in its smaller class; a regression "
            f"needs at least min_events={min_events}"
        )
    x = data[list(columns)].to_numpy(float)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - x.mean(axis=0)) / scale

    def fit(rows: np.ndarray) -> np.ndarray:
        return LogisticRegression(C=C, max_iter=1000).fit(z[rows], y[rows]).coef_[0]

    coefficient = fit(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) == 2:
            draws.append(fit(rows))
    draws = np.array(draws) if draws else np.full((1, len(columns)), np.nan)
    result = pd.DataFrame(
        {
            "factor": list(columns),
            "coefficient": coefficient,
            "lower": np.percentile(draws, 2.5, axis=0),
            "upper": np.percentile(draws, 97.5, axis=0),
        }
    )
    return result.reindex(
        result["coefficient"].abs().sort_values(ascending=False).index
    ).reset_index(drop=True)


def factor_weights(
    table: pd.DataFrame,
    factors: Sequence[str] | None = None,
    true_weights: Sequence[float] | None = None,
    prob: str = "prob",
    eps: float = 1e-4,
) -> pd.DataFrame:
    r"""Which generator factors a classifier uses: a linear fit of its log-odds on the factors.

    On synthetic derm data the true log-odds are linear in the factors,
    :math:`\mathrm{logit}\,p_{true} = b_0 + \sum_j w_j (f_j - 1/2)`. Fitting the model's own
    log-odds :math:`\log(p / (1 - p))` the same way (least squares, scikit-learn's
    ``LinearRegression``) shows what it learned to read: a factor with a weight near 0 is one the
    network ignores, however well it classifies overall. Evidential models are shrunk towards
    p = 1/2, so compare the *shares* (each weight over the sum of the absolute weights) rather
    than the raw weights.

    Args:
        table: one row per image with the probability column ``prob`` (α/S of the positive
            class, as in :attr:`umlkit.evaluate.Evaluation.table`) and the factor columns.
        factors: the factor columns; default the derm factors of :mod:`umlkit.data.scenes`.
        true_weights: the generator's weights in the same order; default the derm risk weights
            when ``factors`` is the default, else none (the ``true_*`` columns are then NaN).
        prob: the probability column.
        eps: probabilities are clipped to [eps, 1 - eps] so that a certain prediction has a
            finite log-odds.

    Returns:
        One row per factor: ``factor``, ``weight`` (log-odds per unit of the factor), ``share``,
        ``true_weight``, ``true_share``; ``table.attrs["r2"]`` holds the fit's R².

    Raises:
        ValueError: missing columns, NaN, probabilities outside [0, 1], fewer images than
            factors + 2, or true weights of the wrong length.
    """
    from scipy.special import logit
    from sklearn.linear_model import LinearRegression

    from umlkit.data.scenes import DERM_FACTORS, DERM_RISK_WEIGHTS

    if factors is None:
        factors = DERM_FACTORS
        if true_weights is None:
            true_weights = DERM_RISK_WEIGHTS
    factors = list(factors)
    require_columns(table, (prob, *factors), "table")
    data = table[[prob, *factors]]
    if data.isna().any().any():
        raise ValueError(f"NaN in {list(data.columns[data.isna().any()])}")
    p = data[prob].to_numpy(float)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"column {prob!r} must hold probabilities in [0, 1]")
    if len(data) < len(factors) + 2:
        raise ValueError(f"need at least {len(factors) + 2} images to fit {len(factors)} weights")
    if true_weights is not None and len(true_weights) != len(factors):
        raise ValueError(f"{len(true_weights)} true weights for {len(factors)} factors")
    log_odds = logit(np.clip(p, eps, 1.0 - eps))
    x = data[factors].to_numpy(float)
    fit = LinearRegression().fit(x, log_odds)
    weight = fit.coef_
    truth = np.full(len(factors), np.nan) if true_weights is None else np.asarray(true_weights)
    result = pd.DataFrame(
        {
            "factor": factors,
            "weight": weight,
            "share": weight / np.abs(weight).sum(),
            "true_weight": truth.astype(float),
            "true_share": truth / np.abs(truth).sum(),
        }
    )
    result.attrs["r2"] = float(fit.score(x, log_odds))
    return result


def describe_effects(effects: pd.DataFrame, outcome: str) -> list[str]:
    """Sentences naming the factors whose bootstrap interval excludes 0 (:func:`factor_regression`).

    Returns:
        One sentence per such factor (largest effect first), or one saying none was found.
    """
    require_columns(effects, ("factor", "coefficient", "lower", "upper"), "effects")
    clear = effects[(effects["lower"] > 0) | (effects["upper"] < 0)]
    if clear.empty:
        return [
            f"No factor changes the odds of {outcome} clearly: every 95 % bootstrap interval "
            "contains 0 (too few failures, or failures that the recorded factors do not explain)."
        ]
    sentences = []
    for row in clear.itertuples():
        direction = "raises" if row.coefficient > 0 else "lowers"
        sentences.append(
            f"{row.factor} {direction} the odds of {outcome}: {row.coefficient:+.2f} log-odds per "
            f"sd (95 % interval {row.lower:+.2f} to {row.upper:+.2f}, "
            f"odds x{np.exp(row.coefficient):.2f})."
        )
    return sentences


def flag_rates(table: pd.DataFrame, flags: Sequence[str], target: str = "error") -> pd.DataFrame:
    """The failure rate with and without each binary flag.

    Returns:
        One row per flag: ``flag``, ``n_present``, ``rate_present``, ``rate_absent`` and
        ``difference`` = present - absent (NaN when one group is empty).
    """
    require_columns(table, (target, *flags), "table")
    rows = []
    for flag in flags:
        present = table[flag].astype(bool)
        rate_present = float(table.loc[present, target].mean()) if present.any() else np.nan
        rate_absent = float(table.loc[~present, target].mean()) if (~present).any() else np.nan
        rows.append(
            {
                "flag": flag,
                "n_present": int(present.sum()),
                "rate_present": rate_present,
                "rate_absent": rate_absent,
                "difference": rate_present - rate_absent,
            }
        )
    return pd.DataFrame(rows)


def _strongest_clear_effect(effects: pd.DataFrame) -> pd.Series | None:
    """The factor with the largest coefficient whose bootstrap interval excludes 0, if any."""
    clear = effects[(effects["lower"] > 0) | (effects["upper"] < 0)]
    if clear.empty:
        return None
    return clear.loc[clear["coefficient"].abs().idxmax()]


def _wrong_and_right_sentence(wrong: pd.Series, right: pd.Series) -> str:
    """How uncertain the wrong images are next to the right ones, and how many look sure."""
    gap = wrong.mean() - right.mean()
    compared = f"(u {wrong.mean():.3f} against {right.mean():.3f} on the right ones)"
    confident = int((wrong < right.median()).sum())
    share = (
        f"{confident / len(wrong):.0%} of its wrong images ({confident} of {len(wrong)}) are less "
        "uncertain than the median right image"
    )
    if gap > 0.005:
        return (
            f"UML's wrong labels are more uncertain on average {compared}, yet {share}: "
            "confidently wrong, the ones no threshold on u catches."
        )
    alike = "about as uncertain" if gap >= -0.005 else "less uncertain"
    return (
        f"UML's wrong labels are {alike} on average {compared}: u does not single out its "
        f"errors; {share}."
    )


def _ranking_sentences(
    aurc: pd.DataFrame, segmentation_aurc: pd.DataFrame | None, reference: str
) -> list[str]:
    """Where the reference's AURC lies, and how UML's two pixel uncertainties rank the masks."""
    row = aurc.loc[reference]
    best = aurc["aurc"].idxmin()
    sentences = [
        f"Ranked by {reference.split(', ', 1)[1]}, UML's AURC is {row['aurc']:.3f}: a perfect "
        f"ranking would reach {row['optimal_aurc']:.3f} and a random one about its error rate, "
        f"{row['error_rate']:.3f}. "
        + (
            f"The lowest AURC is {best}'s ({aurc.loc[best, 'aurc']:.3f}, error rate "
            f"{aurc.loc[best, 'error_rate']:.3f})."
            if best != reference
            else "No other score of the table has a lower AURC."
        )
    ]
    pair = ("UML, mean pixel uncertainty", "UML, segmentation entropy, mean pixel uncertainty")
    if segmentation_aurc is not None and all(p in segmentation_aurc.index for p in pair):
        mutual, entropy = (segmentation_aurc.loc[p, "aurc"] for p in pair)
        if abs(mutual - entropy) < 0.0005:
            verdict = "the two rank them alike"
        else:
            better = "U^s" if mutual < entropy else "the segmentation's entropy"
            verdict = f"{better} puts the failed segmentations last more reliably"
        sentences.append(
            f"The same segmentations, ranked two ways: by the mutual decoder's U^s the AURC is "
            f"{mutual:.3f}, by the entropy of UML's own segmentation {entropy:.3f}; {verdict}."
        )
    return sentences


def failure_takeaways(
    table: pd.DataFrame,
    aurc: pd.DataFrame,
    segmentation_aurc: pd.DataFrame | None = None,
    effects: Mapping[str, pd.DataFrame] | None = None,
    reference: str = "UML, u = K/S",
    outcomes: Mapping[str, str] | None = None,
) -> list[str]:
    """The takeaways of notebook 08, as sentences computed from its tables.

    Args:
        table: UML's table with ``uncertainty`` and ``error`` (:func:`add_failure_columns`).
        aurc: the table of :func:`risk_coverage_curves` for classification.
        segmentation_aurc: the same for segmentation (optional); its rows ``"UML, mean pixel
            uncertainty"`` and ``"UML, segmentation entropy, mean pixel uncertainty"`` are
            compared when both are there (the same masks, two uncertainties).
        effects: outcome column -> :func:`factor_regression` (optional).
        reference: the row of ``aurc`` that ranks by UML's u = K/S.
        outcomes: outcome column -> words for it (``{"error": "a wrong label"}``).

    Raises:
        ValueError: a missing column or row.
    """
    require_columns(table, ("uncertainty", "error"), "table")
    require_columns(aurc, ("aurc", "error_rate", "optimal_aurc"), "aurc table")
    if reference not in aurc.index:
        raise ValueError(f"{reference!r} is not a row of the AURC table {list(aurc.index)}")
    wrong = table.loc[table["error"] == 1, "uncertainty"]
    right = table.loc[table["error"] == 0, "uncertainty"]
    sentences = [_wrong_and_right_sentence(wrong, right)] if len(wrong) and len(right) else []
    sentences.extend(_ranking_sentences(aurc, segmentation_aurc, reference))
    for outcome, frame in (effects or {}).items():
        strongest = _strongest_clear_effect(frame)
        words = (outcomes or {}).get(outcome, outcome)
        if strongest is None:
            sentences.append(f"No recorded factor clearly changes the odds of {words}.")
            continue
        direction = "raises" if strongest["coefficient"] > 0 else "lowers"
        sentences.append(
            f"Of the recorded factors, {strongest['factor']} {direction} the odds of {words} most "
            f"({strongest['coefficient']:+.2f} log-odds per standard deviation)."
        )
    return sentences
