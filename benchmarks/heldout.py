"""Settings compared on held-out folds of train (issue 13), with dev and the archive once each.

For each named setting (SETTINGS below) trains a model as `flowersort train` does (the same
`fit`, features from the feature cache) on ../shared/datasets/train and prints one row:
the threshold chosen on the held-out fold, the recall there at precision >= 0.95 weighted
to 8 % flowers (the rule of the stored threshold) and the precision weighted to 8 % flowers
at recall 0.85 (steadier: it rests on more photos), the figures settings are chosen by;
then, for the record, dev accuracy at that threshold, archive precision / recall at it and
the archive precision at recall 0.85. Dev and archive features are decoded in process (as
`classify` without --thumbnail does) and remembered in the same cache. Models are written
to /tmp/flowersort-heldout/.

usage: python benchmarks/heldout.py SETTING [SETTING ...]
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.model.metrics import confusion
from flowersort.photos.archive import walk
from flowersort.scoring.pipeline import scan
from flowersort.training.config import TrainConfig
from flowersort.training.examples import load_examples
from flowersort.training.featcache import FeatureCache, default_feature_cache
from flowersort.training.train import fit

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
TRAIN = (DATA / "train" / "flowers", DATA / "train" / "noflowers")
OUT = Path("/tmp/flowersort-heldout")
F, T = FeatureConfig(), TrainConfig()
# the wider net with the weight decay it was first measured with, and the default before it
# (the previous session's rows change one thing from that)
W = replace(T, weight_decay=1e-4)
P = replace(W, tile_layers=[16, 4, 1], head_layers=[8, 1, 1])
S = replace(F, mode="hue-sat-subject")
WIDE = {"tile_layers": [32, 8, 1], "head_layers": [16, 1, 1]}
SETTINGS = {  # name -> (feature config, train config[, cue rows left out (set to 0)])
    "default": (F, T),
    # the previous session's rows, from the previous default
    "previous-default": (F, P),
    "subject": (S, P),
    "subject-fine": (S, P, (5, 6, 7)),  # hue-sat-cues + the quarter-tile spread only
    "subject-coarse": (S, P, (4, 7)),  # + sharpness and saturation around only
    "subject-bright": (S, P, (4, 5, 6)),  # + brightness - border only
    "seed1": (F, replace(P, seed=1)),
    "members4": (F, replace(P, members=4)),
    "noflower-weight-2": (F, replace(P, noflower_weight=2.0)),
    "hard-negatives-2": (F, replace(P, hard_negative_weight=2.0)),
    "tile-map-8": (F, replace(P, tile_layers=[16, 4, 2])),
    # this session's rows
    "wide": (F, replace(P, **WIDE)),
    "wide-16": (F, replace(P, tile_layers=[32, 16, 1], head_layers=[16, 1, 1])),
    "wide-deep": (F, W),
    "wide-head-32": (F, replace(P, tile_layers=[32, 8, 1], head_layers=[32, 1, 1])),
    "wide-edge-hue": (replace(F, mode="hue-sat-cues-edge-hue"), replace(P, **WIDE)),
    "wide-deep-seed1": (F, replace(W, seed=1)),
    "size-144": (replace(F, image_size=144), P),
    "grid-8": (replace(F, image_size=128, grid=8), P),
    "weight-decay-1e-3": (F, T),  # the new default
    "weight-decay-1e-3-seed1": (F, replace(T, seed=1)),
    "crops-6": (F, replace(T, crops=6)),
    "deeper": (F, replace(W, tile_layers=[32, 16, 8, 1])),
    # the next session's rows, from the new default
    "ema-0.995": (F, replace(T, ema_decay=0.995)),
    "ema-0.995-seed1": (F, replace(T, ema_decay=0.995, seed=1)),
    "ema-0.999": (F, replace(T, ema_decay=0.999)),
    "ema-0.995-seed2": (F, replace(T, ema_decay=0.995, seed=2)),
    "weight-decay-1e-3-seed2": (F, replace(T, seed=2)),
    "members3": (F, replace(T, members=3)),
    "members3-seed2": (F, replace(T, members=3, seed=2)),
    "val-third": (F, replace(T, val_fraction=1 / 3)),
    "val-third-seed1": (F, replace(T, val_fraction=1 / 3, seed=1)),
    "val-third-seed2": (F, replace(T, val_fraction=1 / 3, seed=2)),
    "mixup-0.3": (F, replace(T, mixup=0.3)),
    "weight-decay-3e-3": (F, replace(T, weight_decay=3e-3)),
    "weight-decay-3e-3-seed1": (F, replace(T, weight_decay=3e-3, seed=1)),
    "weight-decay-1e-2": (F, replace(T, weight_decay=1e-2)),
    # session 7: the learning rate cut to 0.3 of itself after 8 epochs without progress
    "lr-drop-8": (F, replace(T, lr_drop_patience=8)),
    "lr-drop-8-seed1": (F, replace(T, lr_drop_patience=8, seed=1)),
    "lr-drop-8-seed2": (F, replace(T, lr_drop_patience=8, seed=2)),
    # the head sees each tile-map channel sorted: what is in the photo, not where
    "sorted-tiles": (F, replace(T, sorted_tiles=True)),
    "sorted-tiles-seed1": (F, replace(T, sorted_tiles=True, seed=1)),
    "sorted-tiles-seed2": (F, replace(T, sorted_tiles=True, seed=2)),
    # finer or richer inputs, measured before with the previous small net, on today's
    "size-144-now": (replace(F, image_size=144), T),
    "grid-8-now": (replace(F, image_size=128, grid=8), T),
    "subject-now": (S, T),
    "subject-now-seed1": (S, replace(T, seed=1)),
    "subject-now-seed2": (S, replace(T, seed=2)),
    "edge-hue-now": (replace(F, mode="hue-sat-cues-edge-hue"), T),
}
# ------------------------------------------------------------------------------------


def features_of(paths: list[Path], cfg: FeatureConfig) -> np.ndarray:
    cache = FeatureCache(default_feature_cache(), cfg, 0)
    known = [(p, cache.get(p)) for p in paths]
    out = []
    for photo in scan(known, cfg):
        if photo.skipped:
            raise SystemExit(f"{photo.path}: {photo.skip_reason}")
        if photo.known is None:
            cache.put(photo.path, photo.features)
        out.append(photo.features if photo.known is None else photo.known)
    return np.stack(out)


def heldout_recall(scores: np.ndarray, y: np.ndarray, share=0.08, min_precision=0.95) -> float:
    """The recall at the lowest threshold whose precision weighted to `share` flowers
    reaches min_precision (0 if none)."""
    pos, neg = np.sort(scores[y > 0.5]), np.sort(scores[y < 0.5])
    weight = share / (1 - share) * len(neg) / len(pos)
    for t in np.unique(scores):
        tp, fp = len(pos) - np.searchsorted(pos, t), len(neg) - np.searchsorted(neg, t)
        if tp and weight * tp / (weight * tp + fp) >= min_precision:
            return tp / len(pos)
    return 0.0


def threshold_for_recall(scores: np.ndarray, truth: np.ndarray, recall: float) -> float:
    """The highest threshold that finds `recall` of the flowers."""
    truth = np.asarray(truth, bool)
    need = int(np.ceil(recall * truth.sum()))
    return float(np.sort(scores[truth])[::-1][need - 1])


def precision_at_recall(
    scores: np.ndarray, truth: np.ndarray, recall: float, share: float | None = None
) -> float:
    """Precision at the highest threshold that finds `recall` of the flowers; with `share`,
    weighted to a collection with that share of flowers (as heldout_recall)."""
    truth = np.asarray(truth, bool)
    t = threshold_for_recall(scores, truth, recall)
    tp, fp = np.sum(truth & (scores >= t)), np.sum(~truth & (scores >= t))
    weight = 1.0 if share is None else share / (1 - share) * np.sum(~truth) / np.sum(truth)
    return float(weight * tp / (weight * tp + fp))


class Labelled(NamedTuple):
    paths: list[str]
    truth: np.ndarray  # True: a flower


def dev_photos() -> Labelled:
    """dev's photos, flowers first, and which are flowers."""
    paths = [*walk(DATA / "dev" / "flowers"), *walk(DATA / "dev" / "noflowers")]
    return Labelled(paths, np.array([Path(p).parent.name == "flowers" for p in paths]))


def archive_photos() -> Labelled:
    """The archive's photos in walk order, and which are flowers (from MANIFEST.csv)."""
    with open(DATA / "MANIFEST.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    paths = sorted(walk(DATA / "archive" / "Pictures"))
    labels = [rows[str(Path(p).resolve().relative_to(DATA))]["label"] for p in paths]
    return Labelled(paths, np.array([label == "flower" for label in labels]))


def main() -> None:
    (archive, truth_a), (dev, truth_d) = archive_photos(), dev_photos()
    print(
        "| setting | held-out: threshold | held-out: recall at P 0.95 (8 %) | dev acc | "
        "held-out: P at R 0.85 (8 %) | archive P / R | archive P at R 0.85 | fit s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    OUT.mkdir(exist_ok=True)
    for name in sys.argv[1:]:
        fcfg, tcfg, *drop = SETTINGS[name]
        drop = list(drop[0]) if drop else []
        ex = load_examples(*TRAIN, fcfg, copies=tcfg.copies, cache_folder=default_feature_cache())
        if drop:  # the same features with these cue rows constant (0)
            ex.x[..., drop, 5] = 0
            ex.augmented[..., drop, 5] = 0
        start = time.perf_counter()
        model, report = fit(ex.x, ex.y, fcfg, tcfg, augmented=ex.augmented)
        seconds = time.perf_counter() - start
        model.save(OUT / f"{name}.npz")
        held = heldout_recall(report.val_scores, ex.y[report.val_idx])
        held_p = precision_at_recall(
            report.val_scores, ex.y[report.val_idx] > 0.5, 0.85, share=0.08
        )
        fd, fa = features_of(dev, fcfg), features_of(archive, fcfg)
        fd[..., drop, 5] = fa[..., drop, 5] = 0
        sd, sa = model.scores(fd), model.scores(fa)
        d = confusion(truth_d, sd >= model.threshold)
        a = confusion(truth_a, sa >= model.threshold)
        print(
            f"| {name} | {model.threshold:.3f} | {held:.3f} | {d['accuracy']:.3f} | {held_p:.3f} | "
            f"{a['precision']:.3f} / {a['recall']:.3f} | "
            f"{precision_at_recall(sa, truth_a, 0.85):.3f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
