"""What to do with a photo's score: a pure decision (`decide`), and its line in the log."""

from __future__ import annotations

from flowersort.base.records import StrEnum
from flowersort.model.file import Model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, effective_band
from flowersort.sorting.options import SortOptions


class Decision(StrEnum):
    """What a run does with a photo it scored (decide)."""

    VETOED = "vetoed"  # the user took it back out of the target earlier: kept
    CONFIRMED = "confirmed"  # borderline, and the user sorted it into the target: kept
    BORDERLINE = "borderline"  # borderline, no review folder: left in place
    REVIEW = "review"  # borderline: into the review folder
    KEEP = "keep"  # not a flower, or no target
    MOVE = "move"  # into the target


def decide(
    flower: bool,
    borderline: bool,
    *,
    has_target: bool,
    has_review: bool,
    vetoed: bool = False,
    confirmed: bool = False,
) -> Decision:
    """The one rule from a score (flower: at or over the threshold; borderline: within the
    review band of it) and the user's earlier choices to what the run does."""
    if has_target and vetoed:
        return Decision.VETOED
    if has_target and borderline:
        if confirmed:
            return Decision.CONFIRMED
        return Decision.REVIEW if has_review else Decision.BORDERLINE
    if not flower or not has_target:
        return Decision.KEEP
    return Decision.MOVE


def decision_line(model: Model, options: SortOptions) -> tuple[float, float]:
    """(threshold, review band): the options', else the model's. A threshold set by hand
    is the line itself: no band unless one is given too."""
    threshold, band = options.threshold, options.review_band
    if band is None:
        band = DEFAULT_REVIEW_BAND if model.review_band is None else model.review_band
        band = effective_band(model.threshold, band) if threshold is None else 0.0
    return (model.threshold if threshold is None else threshold), band


def move_line(model: Model) -> float:
    """The score from which classify moves a photo with the model's own threshold and band."""
    threshold, band = decision_line(model, SortOptions())
    return threshold + band
