"""Accuracy on real photos: flowersort and the original article's pipeline, side by side.

Trains flowersort on ../shared/datasets/train, evaluates on ../shared/datasets/dev, and in
the same run trains and evaluates ../shared/bench/seed_ref.py (run as it is) on the same
split. Prints one table (accuracy, precision, recall, F1, training time, classify time per
photo), an ablation table, and the errors per category of the manifest for the default
setting. Settings are chosen on the validation split carved from train; dev is reported
once per setting.

usage: python benchmarks/accuracy.py [--no-seed-ref] [--quick]
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.model.metrics import confusion
from flowersort.photos.archive import walk
from flowersort.training.config import TrainConfig
from flowersort.training.evaluate import evaluate
from flowersort.training.examples import load_examples
from flowersort.training.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# ----------------------------------------------------------------------------- settings
SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "datasets"
SEED_REF = SHARED / "bench" / "seed_ref.py"
DEFAULT_FEATURES = FeatureConfig()
DEFAULT_TRAIN = TrainConfig()
SEEDS = (1, 2)  # the default setting again with these seeds, to show the spread
# (name, feature config, train config, decision rule): each row changes one thing
ABLATION = [
    ("default: hue-sat-cues, 6x6 tiles, 2 nets", DEFAULT_FEATURES, DEFAULT_TRAIN, "val"),
    (
        "input: ... + textures (no subject cues; the previous default)",
        replace(DEFAULT_FEATURES, mode="hue-sat-texture"),
        DEFAULT_TRAIN,
        "val",
    ),
    ("input: hue matrix (original)", replace(DEFAULT_FEATURES, mode="hue"), DEFAULT_TRAIN, "val"),
    ("input: hue histogram only", replace(DEFAULT_FEATURES, mode="hue-hist"), DEFAULT_TRAIN, "val"),
    (
        "input: hue by saturation + grey brightness (no edges, no texture)",
        replace(DEFAULT_FEATURES, mode="hue-sat-hist"),
        DEFAULT_TRAIN,
        "val",
    ),
    (
        "input: ... + edge directions (no texture)",
        replace(DEFAULT_FEATURES, mode="hue-sat-edges"),
        DEFAULT_TRAIN,
        "val",
    ),
    (
        "tile net left random (original)",
        DEFAULT_FEATURES,
        replace(DEFAULT_TRAIN, train_tile_net=False),
        "val",
    ),
    ("tile grid 4x4", replace(DEFAULT_FEATURES, grid=4), DEFAULT_TRAIN, "val"),
    ("tile grid 8x8", replace(DEFAULT_FEATURES, grid=8), DEFAULT_TRAIN, "val"),
    (
        "one number per tile (original)",
        DEFAULT_FEATURES,
        replace(DEFAULT_TRAIN, tile_layers=[16, 1, 1]),
        "val",
    ),
    ("one net instead of two", DEFAULT_FEATURES, replace(DEFAULT_TRAIN, members=1), "val"),
    (
        "augmentation: flips only (no crops, no hue shifts)",
        DEFAULT_FEATURES,
        replace(DEFAULT_TRAIN, crops=0),
        "val",
    ),
    ("augmentation off", DEFAULT_FEATURES, replace(DEFAULT_TRAIN, augment=False), "val"),
    ("threshold fixed at 0.5", DEFAULT_FEATURES, DEFAULT_TRAIN, "0.5"),
    (
        "hard bins (no vote split, no wrap-around)",
        replace(DEFAULT_FEATURES, binning="hard"),
        DEFAULT_TRAIN,
        "val",
    ),
    (
        "hue histogram only, every pixel votes (no chroma weight)",
        replace(DEFAULT_FEATURES, mode="hue-hist", binning="unweighted"),
        DEFAULT_TRAIN,
        "val",
    ),
]
# ------------------------------------------------------------------------------------


def folders(split: str) -> tuple[Path, Path]:
    return DATA / split / "flowers", DATA / split / "noflowers"


def run_seed_ref() -> dict:
    """The original pipeline, as it is, on the same split; parse its closing line."""
    cmd = [sys.executable, str(SEED_REF), *map(str, folders("train") + folders("dev"))]
    proc = subprocess.run(cmd, cwd=SHARED, capture_output=True, text=True, check=True)
    line = proc.stdout.strip().splitlines()[-1]
    nums = dict(re.findall(r"(\w+) ([\d.]+)", line))
    tp, fp, fn = (int(nums[k]) for k in ("tp", "fp", "fn"))
    precision, recall = float(nums["precision"]), float(nums["recall"])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    train_s = float(re.search(r"train (\d+) s", line).group(1))
    ms = float(re.search(r"classify ([\d.]+) ms/photo", line).group(1))
    return {
        "accuracy": float(nums["accuracy"]),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "train_s": train_s,
        "ms_per_photo": ms,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def run_flowersort(cfg: FeatureConfig, tcfg: TrainConfig, rule: str, cache: dict) -> tuple:
    """Train on train/ (features read once per input setting), score dev/ end to end."""
    key = repr(cfg) + f"+{tcfg.copies}"
    if key not in cache:
        t0 = time.perf_counter()
        examples = load_examples(*folders("train"), cfg, copies=tcfg.copies)
        cache[key] = (examples, time.perf_counter() - t0)
    ex, read_s = cache[key]
    t1 = time.perf_counter()
    model, _ = fit(ex.x, ex.y, cfg, tcfg, augmented=ex.augmented)
    fit_s = time.perf_counter() - t1
    if rule == "0.5":
        model.threshold = 0.5
    t2 = time.perf_counter()
    result = evaluate(model, *folders("dev"))
    ms = 1000 * (time.perf_counter() - t2) / len(result.paths)
    m = result.metrics()
    result.model = model
    # training time = reading and decoding the photos + fitting, as `flowersort train` spends it
    return {**m, "train_s": read_s + fit_s, "ms_per_photo": ms}, result


def per_category(result) -> dict[str, tuple[int, int]]:
    rows = csv.DictReader(open(DATA / "MANIFEST.csv", newline=""))
    category = {
        (DATA / r["path"]).resolve(): "oxford102 (70 species)"
        if "Image-classifier" in r["source"]
        else r["category"]
        for r in rows
    }
    out: dict[str, list[int]] = {}
    for path, truth, score in zip(result.paths, result.truth, result.scores):
        cat = category.get(Path(path).resolve(), "?")
        wrong = (score >= result.threshold) != truth
        out.setdefault(cat, [0, 0])
        out[cat][0] += wrong
        out[cat][1] += 1
    return {k: tuple(v) for k, v in sorted(out.items(), key=lambda kv: -kv[1][0])}


def decoding_paths(reduced) -> str:
    """Accuracy with reduced JPEG decoding (the default) against full-size decoding, and
    from EXIF previews made the way cameras make them (160 x 120, letterboxed) against
    the same files decoded in full."""
    from unittest import mock

    import cv2

    from flowersort.photos import decode
    from tests.camera import camera_jpeg

    model = reduced.model
    with mock.patch.object(decode, "_reduced_flag", lambda *a: cv2.IMREAD_COLOR):
        full = evaluate(model, *folders("dev"))
    rows = [
        ("reduced-size decoding (default)", reduced.metrics()),
        ("full-size decoding", full.metrics()),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for src, label in zip(folders("dev"), ("flowers", "noflowers")):
            (Path(tmp) / label).mkdir()
            for path in walk(src):
                img = cv2.imread(path)
                if img is not None:
                    (Path(tmp) / label / (Path(path).stem + ".jpg")).write_bytes(camera_jpeg(img))
        camera = (Path(tmp) / "flowers", Path(tmp) / "noflowers")
        rows.append(("camera-like copies, full decoding", evaluate(model, *camera).metrics()))
        rows.append(
            (
                "camera-like copies, from the EXIF preview (--thumbnails)",
                evaluate(model, *camera, thumbnail=True).metrics(),
            )
        )
    lines = ["| decoding | accuracy | F1 |", "|---|---|---|"]
    lines += [f"| {name} | {m['accuracy']:.3f} | {m['f1']:.3f} |" for name, m in rows]
    return "\n".join(lines)


def fmt(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['accuracy']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
        f"{m['f1']:.3f} | {m['train_s']:.0f} s | {m['ms_per_photo']:.1f} ms |"
    )


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: nothing to measure")
    quick = "--quick" in sys.argv
    n_train = sum(1 for _ in walk(DATA / "train"))
    print(f"train: {n_train} photos, dev: {sum(1 for _ in walk(DATA / 'dev'))} photos\n")
    header = (
        "| setting | accuracy | precision | recall | F1 | training | classify/photo |\n"
        "|---|---|---|---|---|---|---|"
    )
    cache: dict = {}
    rows = ABLATION[:1] if quick else ABLATION
    results = []
    print("Ablation (each row changes one thing from the default; dev figures):\n")
    print(header, flush=True)
    for name, cfg, tcfg, rule in rows:
        m, result = run_flowersort(cfg, tcfg, rule, cache)
        results.append((name, m, result))
        print(fmt(name, m), flush=True)
    default_m, default_result = results[0][1], results[0][2]

    if not quick:
        print("\nThe default setting with other seeds (folds, initial weights, batch order):\n")
        print(header, flush=True)
        print(fmt("seed 0 (the row above)", default_m), flush=True)
        for seed in SEEDS:
            m, _ = run_flowersort(DEFAULT_FEATURES, replace(DEFAULT_TRAIN, seed=seed), "val", cache)
            print(fmt(f"seed {seed}", m), flush=True)

    print("\nSide by side on the same split:\n")
    print(header)
    print(fmt("flowersort (default)", default_m), flush=True)
    if "--no-seed-ref" not in sys.argv:
        print(fmt("original pipeline (seed_ref.py)", run_seed_ref()), flush=True)

    print("\nErrors per category (default setting, dev):\n")
    print("| category | wrong | of |\n|---|---|---|")
    for cat, (wrong, n) in per_category(default_result).items():
        print(f"| {cat} | {wrong} | {n} |")

    print("\nDecoding paths (the default model as trained above, dev):\n", flush=True)
    print(decoding_paths(default_result))

    print("\nThreshold sweep (default setting, dev):\n")
    print("| threshold | precision | recall | accuracy |\n|---|---|---|---|")
    scores, truth = np.array(default_result.scores), np.array(default_result.truth)
    for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        c = confusion(truth, scores >= t)
        print(f"| {t:.1f} | {c['precision']:.3f} | {c['recall']:.3f} | {c['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
