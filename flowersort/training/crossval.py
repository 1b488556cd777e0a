"""The examples cut into folds: a model's members trained on all folds but one, which
stops them and on which the threshold is chosen (fit_model); and, with the examples'
sources, every example scored by the same training on the folds of whole sources that do
not hold it (out_of_fold), what those scores say per source (fold_summary). FitDetails is
what a training says besides its model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flowersort.base.errors import TrainingError
from flowersort.model.features import FeatureConfig
from flowersort.model.file import Model, ViewConfig
from flowersort.model.metrics import (
    DEFAULT_REVIEW_BAND,
    Lines,
    confusion,
    effective_band,
    precision_threshold,
)
from flowersort.scoring.pipeline import default_workers, example_scores
from flowersort.training.config import Progress, TrainConfig
from flowersort.training.loop import Split
from flowersort.training.members import MemberJob, train_members


@dataclass
class Data:
    """The examples a training learns from: feature maps x (N, tiles, a, b), labels y (1.0
    a flower), each photo's augmented crops (N, copies, tiles, a, b) and its file, if known."""

    x: np.ndarray
    y: np.ndarray
    augmented: np.ndarray | None = None
    paths: Sequence[str] | None = None

    def subset(self, idx: np.ndarray) -> Data:
        return Data(
            self.x[idx],
            self.y[idx],
            None if self.augmented is None else self.augmented[idx],
            None if self.paths is None else [self.paths[i] for i in idx],
        )

    def scores(self, model: Model, idx: np.ndarray, workers: int | None) -> np.ndarray:
        """The model's scores of the examples at idx, as classify gives them (with their
        files: over the model's views too)."""
        paths = [self.paths[i] for i in idx] if self.paths is not None else []
        return example_scores(model, self.x[idx], paths, workers)


@dataclass(frozen=True)
class FitDetails:
    """What a training says besides its model: its held-out fold, the members' training."""

    val_idx: np.ndarray  # the held-out fold's indices: it stops every member
    val_scores: np.ndarray  # the model's scores of that fold, as classify gives them
    history: list[tuple[float, float, float]]  # (loss, val_loss, val_acc) a member's epoch
    members: list[dict]  # each member's "epochs_run" and "best_epoch"
    oof_scores: np.ndarray | None = None  # with folds of whole sources: each example's score


def folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint stratified folds of indices (each class dealt round the folds), fixed by
    the seed; together they hold every example once."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for label in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == label))
        for i in range(k):
            parts[i].append(idx[i::k])
    return [np.concatenate(p) for p in parts]


def fit_model(
    data: Data,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    progress: Progress | None,
    workers: int | None,
) -> tuple[Model, FitDetails, float]:
    """The members trained on all folds but the first, stopped on it; the model, its
    details and the threshold chosen on that fold."""
    parts = folds(data.y, cfg.folds, cfg.seed)
    val_idx, train_idx = parts[0], np.concatenate(parts[1:])
    model = Model(feature_cfg, [], data.x.mean(axis=(0, 1)), data.x.std(axis=(0, 1)) + 1e-6)
    if data.paths is not None:
        model.views = ViewConfig(crops=cfg.view_crops)
    split = _normalised(model, data, train_idx, val_idx, cfg)
    jobs = [MemberJob(split, feature_cfg, cfg, cfg.seed + member) for member in range(cfg.members)]
    try:
        trained = train_members(jobs, workers or default_workers(), progress)
    except MemoryError:
        raise TrainingError(
            f"not enough memory to train nets of layers {cfg.tile_layers} / {cfg.head_layers} "
            f"on batches of {cfg.batch_size}: use smaller layers or a smaller batch size"
        ) from None
    members: list[dict] = []
    history: list[tuple[float, float, float]] = []
    for net, log, best_epoch in trained:
        model.nets.append(net)
        members.append({"epochs_run": len(log), "best_epoch": best_epoch})
        history += log
    val_scores = data.scores(model, val_idx, workers)  # as classify
    threshold = precision_threshold(
        val_scores, data.y[val_idx], cfg.flower_share, cfg.min_precision
    )
    model.threshold = threshold
    return model, FitDetails(val_idx, val_scores, history, members), threshold


def _normalised(
    model: Model, data: Data, train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig
) -> Split:
    """What the members learn from: the examples scaled once, here, as the model scales
    what it scores; their crops only with cfg.augment; the labels as float32 targets."""
    augmented = None
    if data.augmented is not None and cfg.augment:
        augmented = model.normalize(data.augmented)
    targets = data.y.astype(np.float32)
    return Split(model.normalize(data.x), targets, train_idx, val_idx, augmented)


@dataclass
class OutOfFold:
    """Each example's score by the training on the folds of whole sources without it."""

    parts: list[np.ndarray]  # the folds' indices
    scores: np.ndarray
    thresholds: list[float]  # each fold's training's threshold, chosen on its held-out fold


def out_of_fold(
    data: Data,
    parts: list[np.ndarray],
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    progress: Progress | None,
    workers: int | None,
) -> OutOfFold:
    """For each fold of `parts`, the same training (fit_model) on the other folds scores
    it: every photo scored by nets that never saw its source."""
    scores = np.zeros(len(data.y))
    thresholds = []
    for f, part in enumerate(parts):
        rest = np.setdiff1d(np.arange(len(data.y)), part)
        inner, _, inner_t = fit_model(
            data.subset(rest), feature_cfg, cfg, _fold_progress(progress, f + 1), workers
        )
        scores[part] = data.scores(inner, part, workers)
        thresholds.append(inner_t)
    return OutOfFold(parts, scores, thresholds)


def _fold_progress(progress: Progress | None, fold: int) -> Progress | None:
    """progress, told which source fold (1, 2, ...) an epoch belongs to."""
    if progress is None:
        return None
    return lambda epoch, stats: progress(epoch, {**stats, "fold": fold})


def fold_summary(
    unseen: OutOfFold,
    y: np.ndarray,
    sources: np.ndarray,
    lines: Lines,
    heldout_threshold: float,
    cfg: TrainConfig,
) -> dict:
    """What the out-of-fold scores say: the lines, what moves and what each source's
    photos would do, at these lines and at the threshold each fold's own training chose on
    its held-out fold (the rule without sources) with the same band rule."""
    oof, parts, fold_thresholds = unseen.scores, unseen.parts, unseen.thresholds
    truth = y > 0.5
    fold_of = np.empty(len(y), int)
    for f, part in enumerate(parts):
        fold_of[part] = f
    own = np.array(fold_thresholds)[fold_of]
    band = cfg.review_band if cfg.review_band is not None else DEFAULT_REVIEW_BAND
    own_move = np.array([t + effective_band(t, band) for t in fold_thresholds])[fold_of]
    moves, own_moves = oof >= lines.move, oof >= own_move
    per_source = {}
    for name in np.unique(sources):
        at = sources == name
        entry: dict = {"fold": int(fold_of[at][0])}
        for kind, of_kind in (("flower", truth), ("other", ~truth)):
            sel = at & of_kind
            entry[kind] = {
                "photos": int(sel.sum()),
                "called": int((oof[sel] >= lines.threshold).sum()),
                "moved": int(moves[sel].sum()),
                "held_back": int(((oof[sel] >= lines.low) & ~moves[sel]).sum()),
                "own_called": int((oof[sel] >= own[sel]).sum()),
                "own_moved": int(own_moves[sel].sum()),
            }
        per_source[str(name)] = entry
    return {
        "folds": len(parts),
        "move_line": lines.move,
        "review_low": lines.low,
        "heldout_threshold": heldout_threshold,
        "fold_thresholds": fold_thresholds,
        "what_moves": confusion(truth, moves),
        "own_lines_move": confusion(truth, own_moves),
        "sources": per_source,
    }
