"""The leave-one-source-out table of a model trained on folds of whole sources, from its
own summary, and what an earlier model does with the sources it never saw.

`flowersort train ... --sources MANIFEST.csv` scores every photo of train with nets that
never saw its source (5 folds of whole sources, each scored by the same training on the
other four) and keeps, per source, how many of its photos those scores would have moved
(the review band held back) and called flowers (at the threshold): at the model's lines,
chosen on all those scores, and at the lines of the rule without sources (each fold's
training's own held-out threshold and the default band of 0.1, narrowed near 1). This
prints them: for a flower source the recall, for a non-flower source the share called
flowers. Nothing is trained here.

With --old MODEL (e.g. the previous default, trained on an earlier revision of train), it
also scores, as classify does, the photos of the sources that MODEL's training did not
have (--old-revision-sources: those whose MANIFEST category starts with `r5:`, revision 5)
and prints the same figures for it at its own stored lines.

usage: python benchmarks/source_folds.py [MODEL] [--old OLD_MODEL]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.file import default_model_path, load_model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, effective_band
from flowersort.scoring.pipeline import score_photos
from flowersort.training.sources import source_name

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
NEW_SOURCES = "r5:"  # MANIFEST category prefix of the sources revision 5 added to train
# ------------------------------------------------------------------------------------


def pct(k: int, n: int) -> str:
    return f"{k / n:.1%} ({k}/{n})" if n else "-"


def table(model_path: Path) -> None:
    model = load_model(model_path)
    folds = model.summary.get("source_folds")
    if not folds:
        raise SystemExit(f"{model_path} was not trained on folds of whole sources")
    m, own = folds["what_moves"], folds["own_lines_move"]
    print(
        f"{model_path}: {folds['folds']} folds of whole sources; lines: threshold "
        f"{model.threshold:.3f}, band {model.summary['review_band']:.3f}: moves from "
        f"{folds['move_line']:.3f}, held back from {folds['review_low']:.3f} (each fold's own "
        f"held-out thresholds: {', '.join(f'{t:.3f}' for t in folds['fold_thresholds'])}; "
        f"the final training's: {folds['heldout_threshold']:.3f})"
    )
    print(
        f"what moves over all photos, each scored by nets that never saw its source: "
        f"precision {m['precision']:.3f}, recall {m['recall']:.3f} (tp {m['tp']}, fp {m['fp']}); "
        f"at each fold's own lines: precision {own['precision']:.3f}, recall "
        f"{own['recall']:.3f} (tp {own['tp']}, fp {own['fp']})\n"
    )
    print(
        "| source | fold | flowers | others | moves: flowers | moves: others | "
        "called: flowers | called: others | own lines, moves: flowers | own lines, moves: "
        "others | own lines, called: flowers | own lines, called: others |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = sorted(
        folds["sources"].items(),
        key=lambda kv: (-kv[1]["flower"]["photos"], -kv[1]["other"]["photos"]),
    )
    for name, s in rows:
        f, o = s["flower"], s["other"]
        print(
            f"| {name} | {s['fold']} | {f['photos']} | {o['photos']} | "
            f"{pct(f['moved'], f['photos'])} | {pct(o['moved'], o['photos'])} | "
            f"{pct(f['called'], f['photos'])} | {pct(o['called'], o['photos'])} | "
            f"{pct(f['own_moved'], f['photos'])} | {pct(o['own_moved'], o['photos'])} | "
            f"{pct(f['own_called'], f['photos'])} | {pct(o['own_called'], o['photos'])} |"
        )


def old_model(path: Path) -> None:
    model = load_model(path)
    band = effective_band(model.threshold, model.summary.get("review_band", DEFAULT_REVIEW_BAND))
    with open(DATA / "MANIFEST.csv", newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if r["split"] == "train" and r["category"].startswith(NEW_SOURCES)
        ]
    paths = [DATA / r["path"] for r in rows]
    scores = {os.fspath(s.path): s.score for s in score_photos(model, paths)}
    print(
        f"\n{path}: threshold {model.threshold:.3f}, band {band:.3f} (moves from "
        f"{model.threshold + band:.3f}), on the {len(rows)} photos of the {NEW_SOURCES} sources "
        f"its training did not have\n"
    )
    print(
        "| source | flowers | others | moves: flowers | moves: others | called: flowers | "
        "called: others |"
    )
    print("|---|---|---|---|---|---|---|")
    by: dict[str, list] = {}
    for r, p in zip(rows, paths):
        s = scores.get(os.fspath(p))
        if s is not None:
            by.setdefault(source_name(r["source"]), []).append((r["label"] == "flower", s))
    truth_all, moved_all = [], []
    for name, items in sorted(by.items(), key=lambda kv: -sum(f for f, _ in kv[1])):
        y = np.array([f for f, _ in items])
        s = np.array([v for _, v in items])
        moved, called = s >= model.threshold + band, s >= model.threshold
        truth_all += list(y)
        moved_all += list(moved)
        print(
            f"| {name} | {y.sum()} | {(~y).sum()} | {pct(int((moved & y).sum()), int(y.sum()))} | "
            f"{pct(int((moved & ~y).sum()), int((~y).sum()))} | "
            f"{pct(int((called & y).sum()), int(y.sum()))} | "
            f"{pct(int((called & ~y).sum()), int((~y).sum()))} |"
        )
    y, m = np.array(truth_all), np.array(moved_all)
    tp, fp = int((y & m).sum()), int((~y & m).sum())
    print(
        f"\nwhat moves over these photos: {tp + fp}, precision "
        f"{tp / max(tp + fp, 1):.3f}, recall {tp / max(int(y.sum()), 1):.3f} (tp {tp}, fp {fp})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=default_model_path())
    parser.add_argument("--old", type=Path)
    args = parser.parse_args()
    table(args.model)
    if args.old:
        old_model(args.old)


if __name__ == "__main__":
    main()
