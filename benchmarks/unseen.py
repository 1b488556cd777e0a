"""An archive of sources the model never saw, before and after a few answers.

For each choice in CHOICES (whole repositories of ../shared/datasets/train's MANIFEST.csv
`source` column, flower and non-flower ones) and seed: a model is trained with
`flowersort train`'s default recipe (TrainConfig(), the default FeatureConfig, the feature
cache that train fills) on every other train photo; the left-out photos are copied into a
home-archive-like tree (Pictures/<source>/<batch>/, FLOWER_SHARE of them flowers). Then:

1. what `classify --move-to Flowers --review-to Flowers/Review` would move (a dry run of the
   product's own classify, review band held back, as the user gets it): precision, recall;
2. `flowersort ask` (adapt.ask) puts the photos it wants answered into the review folder;
   the simulated user looks each file's label up by its name and answers only by moving
   files: a flower into Flowers, anything else back into the folder it came from. No label
   reaches the product. `flowersort adapt` (adapt.adapt) then fits the base model to every
   answer so far, and 1. is measured again with the adapted model, at 25, 50 and 100
   answers in all (rounds of 25, 25, 50, each asked by the latest adapted model);
3. the ceiling: a logistic head over the base model's tile maps (mean and max over tiles of
   each member's channels), fitted 5-fold cross-validated on the archive's own labels:
   its precision at recall 0.85. Answers cannot teach a head over this representation more.

Figures are printed per run, then the mean and the spread (min-max) over runs.

The training passes each photo's source (its MANIFEST repository) as `flowersort train
--sources` does, so the threshold and review band are chosen on folds of whole sources (five
more trainings per run); --no-sources chooses them on the held-out fold, as before.

usage: python benchmarks/unseen.py [--quick] [--no-sources] [--models DIR]
--quick: half the other sources' photos for training and a patience of 10 (as loso.py), an
archive of at most QUICK_ARCHIVE photos.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.base.outcomes import Action
from flowersort.model.features import FeatureConfig
from flowersort.model.file import load_model
from flowersort.scoring.pipeline import scan
from flowersort.sorting import adapt
from flowersort.sorting.sorter import classify
from flowersort.training.config import TrainConfig
from flowersort.training.examples import load_examples
from flowersort.training.featcache import default_feature_cache
from flowersort.training.sources import source_name
from flowersort.training.train import fit

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
# (name, repositories left out of training, seed)
CHOICES = [
    (
        "natural-images + intel scenes + cats&dogs",
        [
            "whosue/Natural_Images_Model",
            "afroozsheikh/Intel-Image-Classifier",
            "quoctrung163/keras-cnn-on-cats-and-dogs-dataset",
        ],
        0,
    ),
    (
        "flower-color + SUN/BSD scenes + pets (chanakya) + taming-transformers",
        [
            "Amink8203/Clustering-Flower-Images",
            "majedelhelou/denoising_datasets",
            "chanakya2734/Image-classification-using-CNN",
            "CompVis/taming-transformers",
        ],
        1,
    ),
    (
        "oxford102 + intel scenes + cats&dogs",
        [
            "kibru9399/Image-classifier",
            "afroozsheikh/Intel-Image-Classifier",
            "quoctrung163/keras-cnn-on-cats-and-dogs-dataset",
        ],
        2,
    ),
]
FLOWER_SHARE = 0.08  # of the archive's photos, as in a home archive
BATCH = 40  # photos per archive folder
ROUNDS = (25, 25, 50)  # answers asked per round: 25, 50 and 100 in all
QUICK = {"patience": 10}
QUICK_SHARE = 0.5
QUICK_ARCHIVE = 800
RECALL_AT = 0.85
# -----------------------------------------------------------------------------


def repo(source: str) -> str:
    return source.split(":", 1)[1].split("@")[0] if source.startswith("github:") else source


def train_rows() -> list[dict]:
    with open(DATA / "MANIFEST.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def build_archive(root: Path, rows: list[dict], rng, cap: int | None) -> dict[str, bool]:
    """Copy the left-out photos into root/Pictures/<repo>/<batch>/: name -> is a flower."""
    flowers = [r for r in rows if r["label"] == "flower"]
    others = [r for r in rows if r["label"] != "flower"]
    if cap:
        others = list(rng.permutation(others))[: int(cap * (1 - FLOWER_SHARE))]
    n_flowers = min(len(flowers), round(len(others) * FLOWER_SHARE / (1 - FLOWER_SHARE)))
    chosen = list(rng.permutation(flowers))[:n_flowers] + others
    labels, counts = {}, {}
    for i, r in enumerate(rng.permutation(chosen)):
        name = repo(r["source"]).split("/")[-1][:20]
        k = counts[name] = counts.get(name, -1) + 1
        folder = root / "Pictures" / name / f"{k // BATCH:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        file = f"p{i:05d}{Path(r['path']).suffix.lower()}"
        shutil.copyfile(DATA / r["path"], folder / file)
        labels[file] = r["label"] == "flower"
    return labels


def what_moves(model_path: Path, src: Path, dest: Path, review: Path, labels: dict) -> dict:
    """classify --move-to dest --review-to review --dry-run: precision and recall of what
    would move, over the flowers still in the archive."""
    outcomes = list(classify(load_model(model_path), src, dest, dry_run=True, review=review))
    moved = [Path(o.source).name for o in outcomes if o.action is Action.WOULD_MOVE]
    rated = [o for o in outcomes if o.score is not None]
    y = np.array([labels[Path(o.source).name] for o in rated], float)
    ranking = precision_at_recall(np.array([o.score for o in rated]), y, RECALL_AT)
    left = {p.name for p in src.rglob("*") if p.is_file() and dest not in p.parents}
    tp = sum(labels[n] for n in moved)
    flowers = sum(labels[n] for n in left)
    return {
        "tp": tp,
        "moved": len(moved),
        "precision": tp / len(moved) if moved else float("nan"),
        "recall": tp / flowers if flowers else float("nan"),
        "ranking": ranking,  # precision at RECALL_AT of the scores themselves
    }


def answer(src: Path, dest: Path, review: Path, labels: dict, home: dict) -> tuple[int, int]:
    """The simulated user: each photo in the review folder into dest if a flower, else
    back into its own folder."""
    yes = no = 0
    for photo in sorted(review.iterdir()):
        if labels[photo.name]:
            os.rename(photo, dest / photo.name)
            yes += 1
        else:
            os.rename(photo, home[photo.name] / photo.name)
            no += 1
    return yes, no


def logistic_cv(z: np.ndarray, y: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    """Out-of-fold scores of an L2 logistic regression over z."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % folds
    out = np.zeros(len(y))
    for k in range(folds):
        tr, te = fold != k, fold == k
        mu, sd = z[tr].mean(0), z[tr].std(0) + 1e-6
        a, b = (z[tr] - mu) / sd, (z[te] - mu) / sd
        w, c = np.zeros(z.shape[1]), 0.0
        pos = y[tr].mean()
        sw = np.where(y[tr] == 1, 0.5 / pos, 0.5 / (1 - pos))  # balanced classes
        for _ in range(500):
            p = 1 / (1 + np.exp(-(a @ w + c)))
            g = sw * (p - y[tr]) / len(a)
            w -= 0.5 * (a.T @ g + 1e-3 * w)
            c -= 0.5 * g.sum()
        out[te] = b @ w + c
    return out


def precision_at_recall(scores: np.ndarray, y: np.ndarray, recall: float) -> float:
    order = np.argsort(-scores)
    tp = np.cumsum(y[order])
    k = int(np.searchsorted(tp, recall * y.sum())) + 1
    return float(tp[k - 1] / k)


def ceiling(model_path: Path, paths: list[Path], y: np.ndarray, seed: int) -> float:
    model = load_model(model_path)
    xs, keep = [], []
    for i, photo in enumerate(scan(paths, model.features)):
        if not photo.skipped:
            xs.append(photo.features)
            keep.append(i)
    x = model.normalize(np.stack(xs)).astype(np.float32)
    z = np.concatenate(
        [f(net.tile_map(x), axis=1) for net in model.nets for f in (np.mean, np.max)], axis=1
    )
    return precision_at_recall(logistic_cv(z, y[keep], seed), y[keep], RECALL_AT)


def run(
    name, left_out, seed, quick, examples, work: Path, by_source: bool = True, models=None
) -> dict:
    rng = np.random.default_rng(seed)
    rows = train_rows()
    out_rows = [r for r in rows if repo(r["source"]) in left_out]
    out_paths = {os.fspath(DATA / r["path"]) for r in out_rows}
    x, y, paths, aug = examples
    keep = np.array([p not in out_paths for p in paths])
    if quick:
        keep &= rng.random(len(keep)) < QUICK_SHARE
    cfg = TrainConfig(seed=seed, **(QUICK if quick else {}))
    source_of = {os.fspath(DATA / r["path"]): source_name(r["source"]) for r in rows}
    sources = np.array([source_of[p] for p, k in zip(paths, keep) if k]) if by_source else None
    t0 = time.perf_counter()
    kept = (
        models / f"base-{seed}-{'sources' if by_source else 'heldout'}-{quick}.npz"
        if models
        else None
    )
    if kept is not None and kept.exists():  # the same training, made by an earlier run
        model = load_model(kept)
    else:
        model, _ = fit(
            x[keep],
            y[keep],
            FeatureConfig(),
            cfg,
            augmented=aug[keep],
            paths=[p for p, k in zip(paths, keep) if k],
            sources=sources,
        )
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            model.save(kept)
    base = work / "base.npz"
    model.save(base)
    trained = time.perf_counter() - t0
    print(
        f"{name}: trained in {trained:.0f} s; threshold {model.threshold:.3f}, band "
        f"{model.summary['review_band']:.3f}",
        flush=True,
    )
    labels = build_archive(work, out_rows, rng, QUICK_ARCHIVE if quick else None)
    src, dest = work / "Pictures", work / "Pictures" / "Flowers"
    review = dest / "Review"
    home = {p.name: p.parent for p in src.rglob("*") if p.is_file()}
    os.environ["XDG_STATE_HOME"] = os.fspath(work / "state")  # its own journal and answers
    result = {
        "name": name,
        "seed": seed,
        "train_s": trained,
        "photos": len(labels),
        "flowers": sum(labels.values()),
        "kept_out": int((~keep).sum()),
    }
    result[0] = what_moves(base, src, dest, review, labels)
    current, total = base, 0
    adapt_s = []
    for n in ROUNDS:
        dest.mkdir(parents=True, exist_ok=True)
        list(adapt.ask(load_model(current), src, dest, review, n))
        answer(src, dest, review, labels, home)
        total += n
        t1 = time.perf_counter()
        current = work / f"adapted-{total}.npz"
        adapt.adapt(
            load_model(base),
            src,
            dest,
            review,
            current,
            on_skip=lambda p, why: None,
            source=os.fspath(base),
        )
        adapt_s.append(time.perf_counter() - t1)
        result[total] = what_moves(current, src, dest, review, labels)
        result[total]["control"] = what_moves(base, src, dest, review, labels)
        # what the user has in the target after that night: answered flowers and moved ones
        answered = sum(1 for _ in dest.glob("p*"))
        m = result[total]
        m["dest_precision"] = (m["tp"] + answered) / (m["moved"] + answered)
        m["dest_recall"] = (m["tp"] + answered) / result["flowers"]
    result["adapt_s"] = max(adapt_s)
    everything = sorted(p for p in src.rglob("p*") if p.is_file())
    truth = np.array([labels[p.name] for p in everything], float)
    result["ceiling"] = ceiling(base, everything, truth, seed)
    return result


def show(r: dict) -> None:
    print(
        f"\n{r['name']} (seed {r['seed']}): {r['photos']} photos, {r['flowers']} flowers; "
        f"{r['kept_out']} train photos not trained on; training {r['train_s']:.0f} s, "
        f"adapt at most {r['adapt_s']:.1f} s"
    )
    for k in (0, 25, 50, 100):
        m = r[k]
        print(
            f"  {k:3d} answers: {m['moved']:4d} would move, precision {m['precision']:.3f}, "
            f"recall {m['recall']:.3f}; scores' precision at recall {RECALL_AT} {m['ranking']:.3f}"
        )
        if k:
            c = m["control"]
            print(
                f"      (the base model on the same photos: {c['moved']} would move, precision "
                f"{c['precision']:.3f}, recall {c['recall']:.3f}, scores {c['ranking']:.3f}; "
                f"in the target with the answered flowers: precision "
                f"{m['dest_precision']:.3f}, recall {m['dest_recall']:.3f})"
            )
    print(
        f"  ceiling (CV logistic head on tile maps) precision at recall {RECALL_AT}: "
        f"{r['ceiling']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=len(CHOICES))
    parser.add_argument("--no-sources", action="store_true")
    parser.add_argument(
        "--models",
        type=Path,
        help="a folder to keep each run's base model in and take it from when there (the same "
        "training: its figures then measure only what follows it)",
    )
    args = parser.parse_args()
    cfg = TrainConfig()
    t0 = time.perf_counter()
    ex = load_examples(
        DATA / "train" / "flowers",
        DATA / "train" / "noflowers",
        FeatureConfig(),
        copies=cfg.copies,
        cache_folder=default_feature_cache(),
    )
    examples = (ex.x, ex.y, [os.fspath(p) for p in ex.paths], ex.augmented)
    print(f"{len(ex.y)} train photos read in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    for name, left_out, seed in CHOICES[: args.runs]:
        with tempfile.TemporaryDirectory(prefix="unseen-") as work:
            results.append(
                run(
                    name,
                    left_out,
                    seed,
                    args.quick,
                    examples,
                    Path(work),
                    not args.no_sources,
                    args.models,
                )
            )
        show(results[-1])
        sys.stdout.flush()
    print("\nover runs: mean (min-max)")
    for k in (0, 25, 50, 100):
        keys = ("precision", "recall", "ranking") + (("dest_precision", "dest_recall") if k else ())
        for key in keys:
            v = np.array([r[k][key] for r in results])
            print(
                f"  {k:3d} answers {key:9s} {np.nanmean(v):.3f} ({np.nanmin(v):.3f}-"
                f"{np.nanmax(v):.3f})"
            )
    for k in (25, 50, 100):
        v = np.array([r[k]["control"]["ranking"] for r in results])
        print(
            f"  {k:3d} answers, base model's scores on the same photos {v.mean():.3f} "
            f"({v.min():.3f}-{v.max():.3f})"
        )
    v = np.array([r["ceiling"] for r in results])
    print(f"  ceiling {v.mean():.3f} ({v.min():.3f}-{v.max():.3f})")


if __name__ == "__main__":
    main()
