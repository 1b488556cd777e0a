"""Classification figures and the choice of a decision threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Scores this close to the threshold are borderline: sent to --review-to, else left in
# place (train --review-band, saved in the model; narrowed near 0 or 1: effective_band).
DEFAULT_REVIEW_BAND = 0.1


def confusion(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """accuracy, precision, recall, f1 and the four counts; flower is the positive class."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    tn = int(np.sum(~truth & ~predicted))
    fn = int(np.sum(truth & ~predicted))
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """The threshold with the best accuracy on (scores, truth); ties go to the one nearest 0.5.

    Candidates are the midpoints between consecutive distinct scores, so the chosen value
    does not sit on any one photo's score.
    """
    s = np.unique(np.asarray(scores, float))
    candidates = np.concatenate([[0.5], (s[:-1] + s[1:]) / 2]) if len(s) > 1 else np.array([0.5])
    truth = np.asarray(truth) > 0.5
    acc = np.array([np.mean((scores >= t) == truth) for t in candidates])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def precision_threshold(
    scores: np.ndarray, truth: np.ndarray, share: float, min_precision: float
) -> float:
    """The threshold for a collection where `share` of the photos are flowers: the lowest
    one whose precision there reaches `min_precision`, else the one with the best F0.5
    there (precision counted twice as much as recall).

    The held-out examples are mostly balanced, a home archive is not: each flower's vote
    is scaled so that flowers make up `share` of the weight, which gives the precision the
    same threshold would have on such a collection (recall does not change). Candidates
    are the midpoints between consecutive distinct scores, as in best_threshold.
    """
    scores, truth = np.asarray(scores, float), np.asarray(truth) > 0.5
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return best_threshold(scores, truth)
    s = np.unique(scores)
    candidates = (s[:-1] + s[1:]) / 2 if len(s) > 1 else np.array([0.5])
    # scores at or above each candidate, counted with sorted scores: no loop over candidates
    tp = n_pos - np.searchsorted(np.sort(scores[truth]), candidates, side="left")
    fp = n_neg - np.searchsorted(np.sort(scores[~truth]), candidates, side="left")
    weight = share / (1 - share) * n_neg / n_pos  # one flower counts this many photos
    called = weight * tp + fp
    precision = np.where(called > 0, weight * tp / np.maximum(called, 1e-12), 0.0)
    recall = tp / n_pos
    reached = np.flatnonzero((precision >= min_precision) & (tp > 0))
    if len(reached):
        return float(candidates[reached[0]])
    f05 = 1.25 * precision * recall / np.maximum(0.25 * precision + recall, 1e-12)
    return float(candidates[np.argmax(f05)])


def sweep(scores: np.ndarray, truth: np.ndarray, thresholds=None) -> list[dict]:
    """Precision and recall at several thresholds."""
    thresholds = np.round(np.arange(0.1, 0.95, 0.1), 2) if thresholds is None else thresholds
    return [{"threshold": float(t), **confusion(truth, scores >= t)} for t in thresholds]


def effective_band(threshold: float, band: float) -> float:
    """The review band classify applies around `threshold`: near 0 or 1 a model's band
    shrinks so that at least half the room on each side is sure (a threshold of 0.96 with
    a band of 0.1 would otherwise move nothing)."""
    return min(band, (1 - threshold) / 2, threshold / 2)


@dataclass(frozen=True)
class Lines:
    """Where a model's scores are cut, as classify cuts them: at or above `move` a photo
    moves; from `low` up to `move` it is borderline (the review band); `threshold` and
    `band` are what the model file stores (classify derives the two lines from them)."""

    threshold: float
    band: float
    move: float
    low: float


def lines_for(move: float, band: float) -> Lines:
    """The threshold to store with `band` so that classify moves from `move` up: found by
    bisection, since threshold + effective band rises with the threshold. The band then
    reaches down to `low` (less far than `band` where it narrows near 1)."""
    lo, hi = 0.0, move
    for _ in range(60):
        mid = (lo + hi) / 2
        if mid + effective_band(mid, band) < move:
            lo = mid
        else:
            hi = mid
    threshold = hi  # threshold + its band reaches `move`, never falls short of it
    return Lines(threshold, band, move, threshold - effective_band(threshold, band))


def review_low(
    scores: np.ndarray, truth: np.ndarray, share: float, move: float, min_precision: float
) -> float:
    """The lowest line below `move` such that the photos from it up to `move` are still at
    least `min_precision` flowers in a collection with `share` flowers (weighted as in
    precision_threshold): the review band holds the photos worth a look. `move` itself when
    the photos just below it are mostly not flowers."""
    scores, truth = np.asarray(scores, float), np.asarray(truth) > 0.5
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    below = scores < move
    if not n_pos or not n_neg or not below.any():
        return move
    weight = share / (1 - share) * n_neg / n_pos
    order = np.argsort(-scores[below], kind="stable")
    s, t = scores[below][order], truth[below][order]
    tp, fp = np.cumsum(t) * weight, np.cumsum(~t)
    ok = np.flatnonzero(tp / (tp + fp) >= min_precision)
    if not len(ok):
        return move
    k = ok[-1]  # the photos s[0..k] are in the band: the line sits below s[k]
    return float((s[k] + s[k + 1]) / 2) if k + 1 < len(s) else float(s[k])


def choose_lines(
    scores: np.ndarray,
    truth: np.ndarray,
    share: float,
    min_precision: float,
    review_precision: float,
    band: float | None = None,
) -> Lines:
    """The lines for scores of photos from sources the model's nets never saw (out-of-fold
    scores): what moves is the photos at or above the lowest line whose precision reaches
    `min_precision` at `share` flowers (precision_threshold), and the review band below it
    reaches down as far as its photos stay `review_precision` flowers (review_low), or is
    `band` wide around the threshold when given."""
    move = precision_threshold(scores, truth, share, min_precision)
    if band is None:
        band = (move - review_low(scores, truth, share, move, review_precision)) / 2
    return lines_for(move, band)
