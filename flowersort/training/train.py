"""Training the two-stage network end to end on examples: `fit`, the entry, and the order
of its steps.

One fold of k = round(1 / val_fraction) stratified folds is held out from every member:
it stops their training. Without the examples' sources (fit's `sources`), the threshold is
chosen on the scores the model itself (the members' mean) gives that fold. The mean of
several nets is less often extreme than one net's probability, so a threshold chosen on
single nets' scores does not give the model the precision and recall it was chosen for.

With the sources and cfg.source_folds, the examples are also cut into that many folds,
each source whole in one (sources.source_folds); for each fold the same training on the
other folds scores it, and the threshold and review band are chosen on those out-of-fold
scores, all photos scored by nets that never saw their source (metrics.choose_lines): the
precision asked of what moves then holds on sources the model never saw, where a threshold
chosen on the held-out fold, whose sources the nets learnt, is too high for them. The
model's nets are the same either way.

Each step has its module:

- config: TrainConfig, what a training is asked to do;
- examples: the examples read from the two folders (load_examples);
- crossval: the folds, the model's members trained and its threshold chosen on the
  held-out fold (fit_model), the out-of-fold scores of the folds of whole sources;
- members: each member net built and trained, on several processes;
- loop: one net's training loop (fit_net) and its optimiser (Adam).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from flowersort.base.errors import TrainingError
from flowersort.model.features import FeatureConfig
from flowersort.model.file import Model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, choose_lines, confusion
from flowersort.training.config import MIN_PER_CLASS, Progress, TrainConfig
from flowersort.training.crossval import (
    Data,
    FitDetails,
    fit_model,
    fold_summary,
    out_of_fold,
)
from flowersort.training.sources import source_folds


def fit(
    x: np.ndarray,
    y: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    progress: Progress | None = None,
    augmented: np.ndarray | None = None,
    workers: int | None = None,
    paths: Sequence[str] | None = None,
    sources: np.ndarray | None = None,
) -> tuple[Model, FitDetails]:
    """Train cfg.members nets on the same examples, each from its own seed, and return the
    model (their average) and what the training says besides (FitDetails: the held-out
    fold and its scores, the members' history). `augmented` (N, copies, tiles, a, b) holds
    crops of each photo; with cfg.augment each training step draws one version of each
    photo (itself or a crop) and flips half of them. Members train on up to
    `workers` processes (default: one per core); each depends only on its own seed. The
    threshold is chosen on the held-out fold, or with `sources` on folds of whole sources:
    see the module's docstring.

    With `paths` (each example's file), the model scores photos over cfg.view_crops crops
    too, and the held-out photos are scored that way (their files decoded again where
    crops are needed); without, each photo alone.

    The reason for 9 parameters: the arrays of the examples are what each caller has at
    hand (tests and benchmarks pass subsets); the steps get them as one crossval.Data.
    """
    _check_classes(y)
    t0 = time.perf_counter()
    data = Data(x, y, augmented, paths)
    unseen = None  # the out-of-fold scores of the folds of whole sources, if any
    if sources is not None and cfg.source_folds:
        parts = source_folds(np.asarray(sources), y, cfg.source_folds)
        if parts is not None:  # else too few sources
            unseen = out_of_fold(data, parts, feature_cfg, cfg, progress, workers)
    model, fitted, heldout_threshold = fit_model(data, feature_cfg, cfg, progress, workers)
    summary = _summary(y, fitted, cfg)
    if unseen is None:
        model.threshold = heldout_threshold
        summary["review_band"] = DEFAULT_REVIEW_BAND if cfg.review_band is None else cfg.review_band
    else:
        lines = choose_lines(
            unseen.scores,
            y,
            cfg.flower_share,
            cfg.min_precision,
            cfg.review_precision,
            cfg.review_band,
        )
        model.threshold = lines.threshold
        summary["review_band"] = lines.band
        summary["source_folds"] = fold_summary(
            unseen, y, np.asarray(sources), lines, heldout_threshold, cfg
        )
        fitted = replace(fitted, oof_scores=unseen.scores)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["validation"] = confusion(y[fitted.val_idx] > 0.5, fitted.val_scores >= model.threshold)
    model.summary = summary
    return model, fitted


def _check_classes(y: np.ndarray) -> None:
    """Raise TrainingError unless both classes have MIN_PER_CLASS examples or more."""
    n_flowers, n_other = int(y.sum()), int(len(y) - y.sum())
    if min(n_flowers, n_other) == 0:
        raise TrainingError("training needs photos of both classes (flowers and noflowers)")
    if min(n_flowers, n_other) < MIN_PER_CLASS:
        raise TrainingError(f"too few photos: each class needs at least {MIN_PER_CLASS}")


def _summary(y: np.ndarray, fitted: FitDetails, cfg: TrainConfig) -> dict:
    """The model's summary, as far as the members' training says it."""
    n_val = len(fitted.val_idx)
    return {
        "train_config": asdict(cfg),
        "examples": {"flowers": int(y.sum()), "noflowers": int(len(y) - y.sum())},
        "train_size": len(y) - n_val,
        "val_size": n_val,
        "epochs_run": sum(m["epochs_run"] for m in fitted.members),
        "members": fitted.members,
    }
