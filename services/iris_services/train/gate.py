"""The promotion policy, in one place: who may become the champion, and the reason in rows.

A version is promoted when its held-out accuracy reaches the threshold and it is not worse than
the champion on the same rows beyond the noise of a paired test (or ``promotion_tolerance``);
a tie goes to the newer model. The trainer's gate, ``record_score``, ``promote`` and
``rollback`` all ask here. Dependency-free: no scikit-learn, no MLflow.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# Accuracies are counts of rows over a row count: 0.9 is not exactly 27/30 in binary, so every
# comparison allows this much float noise.
EPSILON = 1e-9


def meets_threshold(accuracy: float, threshold: float) -> bool:
    """At least the threshold (float noise forgiven)."""
    return accuracy + EPSILON >= threshold


def paired_tolerance(rows: int, alpha: float = 0.05) -> float:
    """The largest accuracy deficit on ``rows`` paired rows that is still noise.

    Challenger and champion are scored on the same rows; only the rows where they disagree
    tell them apart. If all k disagreements favour the champion, a one-sided exact sign test
    (McNemar's) calls that significant only when 0.5**k < alpha: k = 5 at 5 %. Fewer rows than
    that (4 rows, 0.133 on 30 rows) cannot show the challenger is worse.
    """
    k = math.ceil(math.log2(1 / alpha))
    return (k - 1) / rows


def is_promotable(
    accuracy: float, threshold: float, champion_accuracy: float | None, tolerance: float = 0.0
) -> bool:
    """At least the threshold, and not worse than the champion beyond ``tolerance``."""
    if not meets_threshold(accuracy, threshold):
        return False
    return champion_accuracy is None or accuracy + EPSILON >= champion_accuracy - tolerance


class Decision(NamedTuple):
    promote: bool
    reason: str  # in held-out rows: the unit people check a gate in


def decide(
    accuracy: float,
    threshold: float,
    champion_version: str | None,
    champion_accuracy: float | None,
    tolerance: float,
    rows: int,
    paired: bool = True,
) -> Decision:
    """Whether a new version becomes the champion, and why (for the summary and the run's
    tags). ``champion_version`` None: there is no champion. ``paired``: the tolerance is the
    paired test's, not a configured ``promotion_tolerance``."""
    if champion_version is None:
        champion_accuracy = None
    promote = is_promotable(accuracy, threshold, champion_accuracy, tolerance)
    if not meets_threshold(accuracy, threshold):
        return Decision(False, f"accuracy {accuracy:.3f} is below the threshold {threshold:g}")
    if champion_accuracy is None:
        return Decision(True, "passed the gate")
    # Both were scored on the same rows, so accuracies are counts of rows: round away float noise.
    worse = round((champion_accuracy - accuracy) * rows)
    noise = round(tolerance * rows + EPSILON)
    basis = "paired test" if paired else "promotion_tolerance"
    than = f"champion v{champion_version}"
    if worse < 0:
        return Decision(
            True, f"passed the gate: {-worse} of {rows} held-out rows better than {than}"
        )
    if promote:
        return Decision(
            True,
            f"passed the gate: {worse} of {rows} held-out rows worse than {than}; up to {noise} "
            f"is within noise ({basis}), and a tie goes to the newer model",
        )
    return Decision(
        False,
        f"{worse} of {rows} held-out rows worse than {than}; only up to {noise} is within "
        f"noise ({basis})",
    )
