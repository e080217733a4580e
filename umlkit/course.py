"""Course helpers: the "What you should see" checks that end each chapter.

A chapter ends with a few statements about *this* run that a re-run at the ``default`` profile must
keep (inequalities with margins, never typed numbers): "UML's Dice is above 0.8", "the image head's
mean uncertainty is higher on misclassified images". :func:`what_you_should_see` prints each one
as holding or not, so a student sees at once whether their run looks like the lecturer's. At the
``smoke`` profile the models are trained for a few steps only, so statements about trained models
are printed as not checked instead of failing.

Example::

    >>> frame = what_you_should_see(
    ...     {"the metric is between 0 and 1": 0.0 <= 0.3 <= 1.0}, profile="default"
    ... )
    What you should see (default profile)
      holds           the metric is between 0 and 1
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

#: Profiles whose models are trained enough for the statements to be checked.
CHECKED_PROFILES = ("default", "reference", "paper")

HOLDS, FAILS, UNCHECKED = "holds", "DOES NOT HOLD", "not checked"


def what_you_should_see(
    statements: Mapping[str, bool], *, profile: str, always: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Print and return whether each statement holds in this run.

    Args:
        statements: statement -> whether it holds (a ``bool`` or anything ``bool()`` accepts,
            such as a NumPy boolean).
        profile: the notebook's profile. Outside :data:`CHECKED_PROFILES` (the ``smoke`` profile)
            only the statements named in ``always`` are checked; the others print "not checked".
        always: statements that hold whatever the training budget (about the data, or a formula),
            checked at every profile.

    Returns:
        One row per statement: ``statement`` and ``status`` (``"holds"``, ``"DOES NOT HOLD"`` or
        ``"not checked"``).

    Raises:
        ValueError: no statement, or ``always`` names a statement that is not among them.
    """
    if not statements:
        raise ValueError("what_you_should_see needs at least one statement")
    unknown = [name for name in always if name not in statements]
    if unknown:
        raise ValueError(f"always names statements that are not given: {unknown}")
    checked = profile in CHECKED_PROFILES
    rows = []
    for statement, holds in statements.items():
        if checked or statement in always:
            status = HOLDS if bool(holds) else FAILS
        else:
            status = UNCHECKED
        rows.append({"statement": statement, "status": status})
    frame = pd.DataFrame(rows, columns=["statement", "status"])
    print(f"What you should see ({profile} profile)")
    for row in rows:
        print(f"  {row['status']:<15} {row['statement']}")
    if not checked and len(always) < len(rows):
        print(f"  ({profile} profile: the models train too little for the others to be checked)")
    return frame
