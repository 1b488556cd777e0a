"""Learning from the user, on ../shared/datasets/archive: the nightly loop, simulated.

Half of the archive (chosen at random, fixed by SEED) is copied to a temporary folder and
sorted by the CLI with the shipped model, as cron would: `classify --move-to Flowers
--review-to Flowers/Review`. A simulated user then takes every non-flower out of Flowers/
(back to where it came from) and sorts Review/ correctly (flowers into Flowers/, the rest
back). Two more nightly runs follow: no corrected photo may move again. Then `train
--with-corrections` retrains on the shipped model's example folders plus the corrections,
and precision and recall on the other half of the archive (never corrected, never seen)
are printed for the model before and after corrections. With --control the same training
runs without corrections too, to separate the corrections' effect from retraining.

usage: nice python benchmarks/corrections.py [--control] [--keep]
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.file import default_model_path, load_model
from flowersort.model.metrics import confusion
from flowersort.photos.archive import walk
from flowersort.safefs.identity import content_key
from flowersort.scoring.pipeline import score_photos

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
SEED = 0  # which half of the archive the user corrects
NIGHTS_AFTER = 2  # nightly runs after the user's corrections
# -----------------------------------------------------------------------------


def flowersort_cli(*args, env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flowersort", *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[2:4])} failed: {proc.stderr[-2000:]}")
    return proc


def nightly(archive: Path, flowers: Path, review: Path, env) -> list[dict]:
    proc = flowersort_cli(
        "classify", archive, "--move-to", flowers, "--review-to", review, "--json", env=env
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def manifest() -> tuple[dict[str, str], list[Path], list[Path]]:
    """Labels of the archive by SHA-256, and the shipped model's example photos."""
    labels, flowers, others = {}, [], []
    with open(DATA / "MANIFEST.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "archive":
                labels[row["sha256"]] = row["label"]
            elif row["split"] == "train":  # the shipped model's examples (revision 4)
                (flowers if row["label"] == "flower" else others).append(DATA / row["path"])
    return labels, flowers, others


def label_of(path: str | Path, labels: dict[str, str]) -> str:
    return labels[content_key(path)[1]]


def metrics(model_path: Path, photos: list[Path], truth: np.ndarray) -> dict:
    model = load_model(model_path)
    scores = np.array([scored.score for scored in score_photos(model, photos)])
    return confusion(truth, scores >= model.threshold)


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent")
    control, keep = "--control" in sys.argv, "--keep" in sys.argv
    labels, ex_flowers, ex_others = manifest()
    photos = sorted(Path(p) for p in walk(DATA / "archive" / "Pictures"))
    rng = np.random.default_rng(SEED)
    user_half = set(rng.permutation(len(photos))[: len(photos) // 2].tolist())
    held_out = [p for i, p in enumerate(photos) if i not in user_half]
    tmp = Path(tempfile.mkdtemp(prefix="flowersort-corrections-bench-"))
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    try:
        archive = tmp / "Pictures"
        for i in sorted(user_half):
            to = archive / photos[i].relative_to(DATA / "archive" / "Pictures")
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photos[i], to)
        examples = tmp / "examples"
        for folder, files in (("flowers", ex_flowers), ("noflowers", ex_others)):
            (examples / folder).mkdir(parents=True)
            for p in files:
                shutil.copyfile(p, examples / folder / p.name)
        flowers, review = archive / "Flowers", archive / "Flowers" / "Review"
        n_user = len(user_half)
        n_flowers = sum(label_of(photos[i], labels) == "flower" for i in user_half)
        print(f"archive: {len(photos)} photos; the user's half {n_user} ({n_flowers} flowers)")

        t0 = time.perf_counter()
        first = nightly(archive, flowers, review, env)
        seconds = time.perf_counter() - t0
        actions = {a: sum(o["action"] == a for o in first) for a in ("moved", "review", "kept")}
        print(f"night 1 ({seconds:.1f} s): {actions}")

        # the user: non-flowers out of Flowers/, Review/ sorted; back where they came from
        corrected: dict[str, str] = {}  # sha256 -> label the user gave
        wrong_in_flowers = 0
        for o in first:
            if o["action"] not in ("moved", "review"):
                continue
            now, home = Path(o["detail"]), Path(o["path"])
            key = content_key(now)[1]
            label = labels[key]
            if label == "noflower":
                home.parent.mkdir(parents=True, exist_ok=True)
                os.rename(now, home)
                corrected[key] = label
                wrong_in_flowers += o["action"] == "moved"
            elif o["action"] == "review":
                assert not (flowers / now.name).exists()
                os.rename(now, flowers / now.name)
                corrected[key] = label
        print(
            f"the user took {wrong_in_flowers} non-flowers out of Flowers/ and sorted "
            f"{sum(o['action'] == 'review' for o in first)} photos from Review/"
        )

        for night in range(2, 2 + NIGHTS_AFTER):
            outcomes = nightly(archive, flowers, review, env)
            moved_again = sum(
                1
                for o in outcomes
                if o["action"] in ("moved", "review") and content_key(o["detail"])[1] in corrected
            )
            vetoed = sum(o["action"] == "vetoed" for o in outcomes)
            print(
                f"night {night}: {vetoed} kept by the user's earlier choice, "
                f"{moved_again} corrected photos moved again"
            )
        listing = flowersort_cli("corrections", "list", env=env).stdout.splitlines()[-1]
        print(f"corrections list: {listing}")

        truth = np.array([label_of(p, labels) == "flower" for p in held_out])
        print(f"held-out half: {len(held_out)} photos ({int(truth.sum())} flowers)")
        models = [("before corrections (shipped model)", default_model_path(), None)]
        train_args = [examples / "flowers", examples / "noflowers"]
        runs = [("with corrections", ["--with-corrections"])]
        if control:
            runs.insert(0, ("retrained, no corrections (control)", []))
        for name, extra in runs:
            out = tmp / f"{name.split()[0]}.npz"
            t0 = time.perf_counter()
            proc = flowersort_cli("train", *train_args, "--model", out, "--json", *extra, env=env)
            summary = json.loads(proc.stdout.splitlines()[-1])
            models.append((name, out, (time.perf_counter() - t0, summary)))
        print()
        print("| model | precision | recall | F1 | tp | fp | fn | training |")
        print("|---|---|---|---|---|---|---|---|")
        for name, path, trained in models:
            m = metrics(path, held_out, truth)
            took = f"{trained[0]:.0f} s" if trained else "-"
            print(
                f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
                f"| {m['tp']} | {m['fp']} | {m['fn']} | {took} |"
            )
            if trained and "corrections" in trained[1]:
                print(f"  (examples {trained[1]['examples']}, corrections "
                      f"{trained[1]['corrections']})")  # fmt: skip
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
