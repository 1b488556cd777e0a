"""Accuracy of HEIC photos decoded from their embedded thumbnail against the full image.

Converts ../shared/datasets/dev (600 photos, 227 to 500 px) to HEIC in a temporary folder
(never in the repository), three times: with an iPhone's 320-px thumbnail (a photo no
larger than that gets none), with one of twice the model's 96 pixels on the short side
(the least flowersort decoded before 16:9 thumbnails were measured), and with one of just 96 pixels
(used only as a preview: here forced). Evaluates the shipped model on each, once from the
thumbnail and once from the full image, and on the JPEGs themselves, in one run.

With --wide, only the case of a 16:9 iPhone photo: dev cut to 16:9 (the centre), as HEIC
with the thumbnail an iPhone writes for 16:9 (320 x 180), evaluated from that thumbnail and
from the full image.

usage: python benchmarks/heic_accuracy.py [--wide]
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import cv2
import numpy as np

from flowersort.model.file import default_model_path, load_model
from flowersort.photos import heic
from flowersort.scoring.pipeline import default_workers
from flowersort.training.evaluate import evaluate

# ----------------------------------------------------------------------------- settings
DEV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dev"
QUALITY = 60  # x265 quality for the photo and its thumbnail
IPHONE_THUMBNAIL = 320  # long side of an iPhone's HEIC thumbnail (320 x 240)
NEED = load_model(default_model_path()).features.image_size  # pixels a side the model reads
WORKERS = default_workers()
MARGINS = {"twice": 2, "just": 1}  # short side of the thumbnail / NEED (2: the rule until 16:9)
WIDE = "--wide" in sys.argv  # 16:9 photos with an iPhone's 320 x 180 thumbnail
# ------------------------------------------------------------------------------------


def to_heic(job: tuple[Path, Path, str]) -> bool:
    """Write one HEIC; True if it holds a thumbnail."""
    import pillow_heif

    src, out, kind = job
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    if kind == "wide":  # the centre of the photo at 16:9
        if w * 9 >= h * 16:
            cut = w - round(h * 16 / 9)
            img = img[:, cut // 2 : w - (cut - cut // 2)]
        else:
            cut = h - round(w * 9 / 16)
            img = img[cut // 2 : h - (cut - cut // 2)]
        img = np.ascontiguousarray(img)
        h, w = img.shape[:2]
    if kind in ("iphone", "wide"):
        box = IPHONE_THUMBNAIL
    else:  # a thumbnail with this many times NEED pixels on its short side
        box = math.ceil(NEED * MARGINS[kind] * max(h, w) / min(h, w))
    heif = pillow_heif.from_bytes("BGR", (w, h), img.tobytes())
    heif.save(out, quality=QUALITY, thumbnails=[box], enc_params={"preset": "ultrafast"})
    return len(pillow_heif.open_heif(out).info["thumbnails"]) > 0


def convert(root: Path, kind: str) -> tuple[Path, Path, int]:
    jobs = []
    for label in ("flowers", "noflowers"):
        (root / label).mkdir(parents=True)
        for src in sorted((DEV / label).glob("*.jpg")):
            jobs.append((src, root / label / (src.stem + ".heic"), kind))
    with ProcessPoolExecutor(WORKERS) as pool:
        with_thumbnail = sum(pool.map(to_heic, jobs, chunksize=8))
    return root / "flowers", root / "noflowers", with_thumbnail


def row(name: str, model, flowers: Path, noflowers: Path, threshold: float | None = None) -> None:
    start = time.perf_counter()
    result = evaluate(model, flowers, noflowers, threshold, workers=WORKERS)
    m = result.metrics()
    seconds = time.perf_counter() - start
    print(
        f"| {name} | {m['accuracy']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
        f"| {m['f1']:.3f} | {len(result.skipped)} | {seconds:.1f} s |",
        flush=True,
    )


def main() -> None:
    if not DEV.is_dir():
        sys.exit(f"{DEV} is absent")
    if heic.library() is None:
        sys.exit(f"pillow-heif is not installed ({heic.EXTRA})")
    model = load_model(default_model_path())
    full_image = heic._thumbnail
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for kind in ("wide",) if WIDE else ("iphone", *MARGINS):
            start = time.perf_counter()
            *folders, n = convert(Path(tmp) / kind, kind)
            sets[kind] = folders
            print(
                f"{kind}: 600 dev photos as HEIC in {time.perf_counter() - start:.0f} s, "
                f"{n} with a thumbnail",
                flush=True,
            )
        print("\n| dev, default model | accuracy | precision | recall | F1 | skipped | time |")
        print("|---|---|---|---|---|---|---|")
        if WIDE:  # at the model's threshold and at 0.5 (the earlier models' threshold)
            heic.THUMBNAIL_MARGIN = 0  # forced: every thumbnail is used
            for t in (None, 0.5):
                name = f"threshold {t}" if t else "the model's threshold"
                row(f"16:9, 320 x 180 thumbnail, {name}", model, *sets["wide"], t)
            heic._thumbnail = lambda primary, need: (None, None)  # workers fork with this
            for t in (None, 0.5):
                name = f"threshold {t}" if t else "the model's threshold"
                row(f"16:9, full image, {name}", model, *sets["wide"], t)
            return
        row("JPEG (as in the data set)", model, DEV / "flowers", DEV / "noflowers")
        for kind, label in (
            ("iphone", "HEIC, 320-px thumbnail"),
            ("twice", f"HEIC, thumbnail of {2 * NEED} px on the short side"),
            ("just", f"HEIC, thumbnail of {NEED} px on the short side"),
        ):
            heic.THUMBNAIL_MARGIN = MARGINS.get(kind, MARGINS["twice"])  # "just": forced
            row(f"{label}: from the thumbnail", model, *sets[kind])
            heic._thumbnail = lambda primary, need: (None, None)  # workers fork with this
            try:
                row(f"{label}: from the full image", model, *sets[kind])
            finally:
                heic._thumbnail = full_image


if __name__ == "__main__":
    main()
