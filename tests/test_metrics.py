import numpy as np
import pytest

from flowersort.model.metrics import precision_threshold


def weighted_precision(scores, truth, t, share):
    called = scores >= t
    tp, fp = np.sum(called & truth), np.sum(called & ~truth)
    w = share / (1 - share) * np.sum(~truth) / np.sum(truth)
    return w * tp / (w * tp + fp) if tp else 0.0


@pytest.mark.parametrize("share", [0.5, 0.08, 0.02])
def test_lowest_threshold_reaching_the_precision_at_that_share(share):
    rng = np.random.default_rng(1)
    truth = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    scores = np.where(truth, 0.7, 0.3) + rng.normal(0, 0.12, 1000)
    t = precision_threshold(scores, truth, share, 0.95)
    assert weighted_precision(scores, truth, t, share) >= 0.95
    # no lower candidate reaches it (brute force over every midpoint)
    s = np.unique(scores)
    lower = [m for m in (s[:-1] + s[1:]) / 2 if m < t]
    assert all(weighted_precision(scores, truth, m, share) < 0.95 for m in lower)


def test_fewer_flowers_need_a_higher_threshold():
    rng = np.random.default_rng(2)
    truth = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = np.clip(np.where(truth, 0.7, 0.3) + rng.normal(0, 0.2, 1000), 0, 1)
    balanced = precision_threshold(scores, truth, 0.5, 0.95)
    rare = precision_threshold(scores, truth, 0.08, 0.95)
    assert rare > balanced


def test_unreachable_precision_falls_back_to_best_f05():
    truth = np.array([True, False, True, False, True, False])
    scores = np.array([0.9, 0.9, 0.8, 0.8, 0.7, 0.7])  # every cut is half wrong
    t = precision_threshold(scores, truth, 0.5, 0.95)
    # precision 0.5 everywhere: F0.5 is best with the most recall, the lowest cut
    assert t == pytest.approx(0.75)


@pytest.mark.parametrize("share", [0.5, 0.08])
def test_without_such_a_threshold_the_best_f05_at_that_share(share):
    rng = np.random.default_rng(3)
    truth = np.r_[np.ones(200, bool), np.zeros(300, bool)]
    scores = np.where(truth, 0.6, 0.4) + rng.normal(0, 0.15, 500)
    scores[np.flatnonzero(~truth)[0]] = 2.0  # a non-flower on top: precision 1 is never reached
    t = precision_threshold(scores, truth, share, 1.0)
    s = np.unique(scores)
    candidates = (s[:-1] + s[1:]) / 2

    def f(beta2, m):
        p = weighted_precision(scores, truth, m, share)
        r = np.mean(scores[truth] >= m)
        return (1 + beta2) * p * r / (beta2 * p + r) if p + r else 0.0

    assert f(0.25, t) == pytest.approx(max(f(0.25, m) for m in candidates))
    assert f(1.0, t) < max(f(1.0, m) for m in candidates)  # not the F1 choice


def test_best_threshold_ties_go_to_the_one_nearest_one_half():
    from flowersort.model.metrics import best_threshold

    # 4 of 6 right at both 0.075 and 0.66 (and at no other candidate, 0.5 included)
    scores = np.array([0.03, 0.12, 0.3, 0.42, 0.65, 0.67])
    truth = np.array([0, 1, 1, 0, 0, 1])
    assert best_threshold(scores, truth) == pytest.approx(0.66)
    assert best_threshold(1 - scores, 1 - truth) == pytest.approx(1 - 0.66)  # either side
