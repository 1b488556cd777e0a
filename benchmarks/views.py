"""Scoring a photo over several views of it: does it rank photos better?

For models saved by heldout.py (/tmp/flowersort-heldout/NAME.npz, trained there with seed
SEED), scores the held-out fold of train (the same fold as in training), dev and the
archive four ways: the photo alone (as `classify` scores today), the mean over the photo
and its centre crop, the mean over the photo, its centre and its four corners (each crop
85 % of each side, cut from the decoded image and read as `features` reads a photo), and
that mean only for a photo that scores GATE or more on its own (the others keep their
own score: the crops' cost is then paid for a few photos of an archive). For each it
chooses the threshold on the held-out fold as `train` does, and prints heldout.py's
columns. Nothing is trained; the crops are decoded in process (a few minutes). The models
must read the default features (FeatureConfig()), as every row it was run on does.

With `--sides 0.85,0.7` (crops' shares of a side, comma-separated) the rows are instead
the photo alone, the gated mean over the photo and each side's five crops, and (for more
than one side) the gated mean over the photo and all the crops.

usage: python benchmarks/views.py [--sides S,S...] NAME:SEED [NAME:SEED ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np
from heldout import (
    OUT,
    TRAIN,
    archive_photos,
    dev_photos,
    features_of,
    heldout_recall,
    precision_at_recall,
)

from flowersort.model.features import FeatureConfig, view_features
from flowersort.model.file import Model, load_model
from flowersort.model.metrics import confusion, precision_threshold
from flowersort.photos.decode import read_image
from flowersort.scoring.pipeline import default_workers
from flowersort.training.config import TrainConfig
from flowersort.training.crossval import folds
from flowersort.training.examples import load_examples
from flowersort.training.featcache import default_feature_cache

SIDES = [0.85]  # a crop keeps this share of each side (one set of five crops per share)


def crop_views(path: str | Path) -> np.ndarray:
    """The feature maps of the centre and the four corner crops for each of SIDES:
    (5 x len(SIDES), tiles, a, b)."""
    cfg = FeatureConfig()
    img = read_image(path, cfg.image_size, False)
    return np.concatenate([view_features(img, cfg, 5, side) for side in SIDES])


def all_views(paths: list[str] | list[Path]) -> np.ndarray:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(default_workers()) as pool:
        return np.stack(list(pool.map(crop_views, paths, chunksize=16)))


GATE = 0.3  # the gated way: the crops only for a photo that scores this much on its own
# each row: its name, the crops it averages over (indices into crop_views), gated or not
VIEWS = [
    ("photo", [], False),
    ("photo + centre", [0], False),
    ("photo + 5 crops", [0, 1, 2, 3, 4], False),
    (f"photo + 5 crops from {GATE}", [0, 1, 2, 3, 4], True),
]


def side_views() -> list[tuple[str, list[int], bool]]:
    rows = [("photo", [], False)]
    for n, side in enumerate(SIDES):
        rows.append((f"photo + 5 crops of {side} from {GATE}", list(range(5 * n, 5 * n + 5)), True))
    if len(SIDES) > 1:
        rows.append(
            (f"photo + all {5 * len(SIDES)} crops from {GATE}", list(range(5 * len(SIDES))), True)
        )
    return rows


def scores(model: Model, photo: np.ndarray, crops: np.ndarray, chosen: list[int], gated: bool):
    out = model.scores(photo)
    mean = (out + sum(model.scores(crops[:, k]) for k in chosen)) / (1 + len(chosen))
    return np.where(out >= GATE, mean, out) if gated else mean


def main() -> None:
    args = sys.argv[1:]
    views = VIEWS
    if args[:1] == ["--sides"]:
        SIDES[:] = [float(side) for side in args[1].split(",")]
        views, args = side_views(), args[2:]
    wanted = [arg.split(":") for arg in args]
    (archive, truth_a), (dev, truth_d) = archive_photos(), dev_photos()
    cfg = FeatureConfig()
    copies = TrainConfig().copies  # as heldout.py reads them: the same cache entries
    ex = load_examples(*TRAIN, cfg, copies=copies, cache_folder=default_feature_cache())
    k = TrainConfig().folds
    held = {int(seed): folds(ex.y, k, int(seed))[0] for _, seed in wanted}
    val = sorted(set(np.concatenate(list(held.values())).tolist()))
    at = {i: n for n, i in enumerate(val)}
    crops_val = all_views([ex.paths[i] for i in val])
    crops_d, crops_a = all_views(dev), all_views(archive)
    photo_d, photo_a = features_of(dev, cfg), features_of(archive, cfg)
    print(
        "| model | scored over | held-out: threshold | held-out: recall at P 0.95 (8 %) | "
        "held-out: P at R 0.85 (8 %) | dev acc | archive P / R | archive P at R 0.85 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, seed in wanted:
        model = load_model(OUT / f"{name}.npz")
        idx = held[int(seed)]
        y = ex.y[idx]
        for view, chosen, gated in views:
            sv = scores(model, ex.x[idx], crops_val[[at[int(i)] for i in idx]], chosen, gated)
            threshold = precision_threshold(sv, y, 0.08, 0.95)
            sd = scores(model, photo_d, crops_d, chosen, gated)
            sa = scores(model, photo_a, crops_a, chosen, gated)
            d, a = confusion(truth_d, sd >= threshold), confusion(truth_a, sa >= threshold)
            print(
                f"| {name} | {view} | {threshold:.3f} | {heldout_recall(sv, y):.3f} | "
                f"{precision_at_recall(sv, y > 0.5, 0.85, share=0.08):.3f} | "
                f"{d['accuracy']:.3f} | {a['precision']:.3f} / {a['recall']:.3f} | "
                f"{precision_at_recall(sa, truth_a, 0.85):.3f} |",
                flush=True,
            )
        gated = np.mean(model.scores(photo_a) >= GATE)
        print(f"|   {name}: archive photos scoring {GATE} or more on their own: {gated:.1%} |")


if __name__ == "__main__":
    main()
