"""Generalisation to photos unlike anything in train: leave one source out.

For each source of ../shared/datasets/train (grouped as in SOURCES, from MANIFEST.csv's
source and category columns) a model with the default setting (`flowersort train`'s
defaults) is trained without that source's photos and scores them as `classify` does (a
photo at the model's gate over its crops too, decoded again for them) at its own threshold
(chosen as `train` chooses it: precision at the default flower share on its held-out fold,
scored the same way). For a non-flower source the figure is the share of its photos called
flowers (what happens to a user's photos that look like nothing in train); for a flower
source, the recall on it.

One training per source is expensive, so each row uses a cheaper training than the
default, stated in CHEAPER and TRAIN_SHARE below and in the README: the same features, net,
crops, members (2, so the threshold is chosen on scores like the shipped model's) and
threshold rule, but a patience of 10 epochs instead of 30 and a random half of the other
sources' photos. Decoded features come from the
feature cache that `flowersort train` fills (see featcache), so each row pays only the
fitting; rows train on one process per core.

usage: python benchmarks/loso.py [--setting NAME] [SOURCE ...]     (default: every source)

--setting takes the feature and train settings of a row of heldout.py instead of the
defaults (the same cheaper training per row).
"""

from __future__ import annotations

import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.scoring.pipeline import default_workers, example_scores
from flowersort.training.config import TrainConfig
from flowersort.training.examples import load_examples
from flowersort.training.featcache import default_feature_cache
from flowersort.training.train import fit

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
TRAIN = (DATA / "train" / "flowers", DATA / "train" / "noflowers")
CHEAPER = {"patience": 10}  # per left-out row, over the default settings
TRAIN_SHARE = 0.5  # each row learns from this share of the other sources' photos (at random)
# repository (from MANIFEST's source column) -> source name; non-flowers of Natural Images
# (person, car, airplane, motorbike) and the two pet repositories are one source each
SOURCES = {
    "UmaimaKhan01/RESNET-and-VIT-performance-on-Human-Action-Recognition-": "people (har)",
    "afroozsheikh/Intel-Image-Classifier": "scenes (intel)",
    "quoctrung163/keras-cnn-on-cats-and-dogs-dataset": "pets",
    "chanakya2734/Image-classification-using-CNN": "pets",
    "zzzDavid/ICDAR-2019-SROIE": "documents",
    "srohit0/food_mnist": "food",
    "chanjianliu/fruit_recognition": "fruit",
    "pmlodzianowski/WeatherClassification": "sunsets",
    "dynamic-stacker/clothing-dataset-small": "clothes",
    "YINYIPENG-EN/Pruning_for_yolov4": "street",
    "majedelhelou/denoising_datasets": "scenes (SUN, Berkeley, Urban100)",
    "JoelOscarsson/dl-assignment": "flowers: 5 species (Kaggle)",
    "kibru9399/Image-classifier": "flowers: Oxford 102",
}
NATURAL_IMAGES = "whosue/Natural_Images_Model"  # flower-scene and person/car/airplane/motorbike
# ------------------------------------------------------------------------------------


def source_of(row: dict) -> str:
    repo = row["source"].split(":", 1)[1].split("@", 1)[0]
    if repo == NATURAL_IMAGES:
        return (
            "flowers: scenes (Natural Images)"
            if row["label"] == "flower"
            else ("natural images: person, car, airplane, motorbike")
        )
    return SOURCES[repo]


DATA_ROWS: dict = {}  # the examples, set before the pool forks


def left_out_row(name: str) -> str:
    ex, sources, features, cfg = (DATA_ROWS[k] for k in ("ex", "sources", "features", "cfg"))
    out = sources == name
    rng = np.random.default_rng(0)
    learn = ~out & (rng.random(len(out)) < TRAIN_SHARE)
    start = time.perf_counter()
    paths = np.array(ex.paths)
    model, _ = fit(
        ex.x[learn],
        ex.y[learn],
        features,
        cfg,
        augmented=ex.augmented[learn],
        workers=1,
        paths=list(paths[learn]),
    )
    scores = example_scores(model, ex.x[out], list(paths[out]), workers=1)
    called = float(np.mean(scores >= model.threshold))
    label = "recall" if ex.y[out].mean() > 0.5 else "called flowers"
    return (
        f"| {name} | {int(out.sum())} | {called:.1%} ({label}) | "
        f"{model.threshold:.3f} | {time.perf_counter() - start:.0f} |"
    )


def main() -> None:
    with open(DATA / "MANIFEST.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    args = sys.argv[1:]
    features, base = FeatureConfig(), TrainConfig()  # the default setting
    if args[:1] == ["--setting"]:
        from heldout import SETTINGS  # beside this script

        if len(args) < 2 or args[1] not in SETTINGS:
            raise SystemExit(f"--setting needs one of heldout.py's settings: {', '.join(SETTINGS)}")
        features, base = SETTINGS[args[1]][:2]
        print(f"setting {args[1]}")
        args = args[2:]
    cfg = replace(base, **CHEAPER)
    start = time.perf_counter()
    ex = load_examples(*TRAIN, features, copies=cfg.copies, cache_folder=default_feature_cache())
    print(f"features of {len(ex.y)} photos read in {time.perf_counter() - start:.0f} s")
    sources = np.array(
        [source_of(rows[str(Path(p).resolve().relative_to(DATA))]) for p in ex.paths]
    )
    wanted = args or sorted(set(sources), key=lambda s: (s.startswith("flowers"), s))
    print(
        f"\nLeave one source out: {features.mode}, {cfg.members} member net(s), patience "
        f"{cfg.patience} and {TRAIN_SHARE:.0%} of the other photos per row (the default: "
        f"{base.members}, {base.patience}, all); "
        f"threshold: precision >= {cfg.min_precision} at {cfg.flower_share:.0%} flowers on "
        f"the held-out fold\n"
    )
    print("| left-out source | photos | called flowers | threshold | seconds |")
    print("|---|---|---|---|---|")
    DATA_ROWS.update(ex=ex, sources=sources, features=features, cfg=cfg)
    with ProcessPoolExecutor(default_workers()) as pool:
        for line in pool.map(left_out_row, wanted):
            print(line, flush=True)


if __name__ == "__main__":
    main()
