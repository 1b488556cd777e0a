"""Speed and memory, measured in one run on the same photos.

Camera-like 12 MP JPEGs (baseline, quality 92, EXIF preview), made from
../shared/datasets/large (or generated when it is absent):
  - flowersort classify throughput end to end (the CLI), with and without --thumbnails;
  - the original pipeline (../shared/bench/seed_ref.py's own read() and nets, imported
    as they are: full decode, resize to 400x400, the per-tile loop);
  - the decoding limit: reduced-size decoding alone, one process per core (it and classify
    without previews are measured in 3 rounds, in turns; the table gives the medians, and
    each share of the limit is the median of the rounds' own shares).
Small photos:
  - a rerun over an unchanged archive of 20,000 against a bare os.walk + lstat;
  - peak RSS (the whole process tree) of a classify run over 100,000.
iPhone-like HEICs of some of the same 12 MP photos (512-px HEVC tiles, a 320 x 240
thumbnail; needs pillow-heif, written in a temporary folder): classify from the thumbnail
and from the full image, against the same photos as JPEGs.

usage: python benchmarks/speed.py [--quick] [--heic-only]
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowersort.model.features import load_features  # noqa: E402
from flowersort.model.file import default_model_path, load_model  # noqa: E402
from flowersort.photos.decode import HEADER_BYTES, _reduced_flag, header_size  # noqa: E402
from flowersort.scoring.cache import ScoreCache, model_digest  # noqa: E402
from flowersort.sorting.sorter import classify  # noqa: E402
from tests.camera import camera_jpeg  # noqa: E402

# ----------------------------------------------------------------------------- settings
QUICK = "--quick" in sys.argv
HEIC_ONLY = "--heic-only" in sys.argv  # only the HEIC against JPEG comparison
SHARED = ROOT.parent / "shared"
LARGE = SHARED / "datasets" / "large"
SEED_REF = SHARED / "bench" / "seed_ref.py"
N_CAMERA = 30 if QUICK else 120  # distinct 12 MP photos
N_LINKED = 300 if QUICK else 1200  # hard links to them: enough work to dwarf start-up costs
N_ORIGINAL = 5 if QUICK else 20  # the original pipeline is slow: time it on a subset
ROUNDS = 3  # the decoding limit and classify without previews, measured in turns
N_RERUN = 2_000 if QUICK else 20_000
N_RSS = 5_000 if QUICK else 100_000
CAMERA_SIZE = (4000, 3000)
N_HEIC = 4 if QUICK else 8  # distinct HEICs: x265 takes 15-50 s to write one here
N_HEIC_LINKED = 120 if QUICK else 480  # hard links to them, and to the same photos as JPEGs
N_HEIC_FULL = 8 if QUICK else 24  # a full 12 MP HEVC decode takes about 2 s
HEIC_QUALITY = 60  # x265 at this quality: about 2 MB a photo, as an iPhone's
WORKERS = len(os.sched_getaffinity(0))
FLOWERSORT = [sys.executable, "-m", "flowersort"]
# ------------------------------------------------------------------------------------


def make_camera_photos(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    sources = [cv2.imread(str(p)) for p in sorted(LARGE.glob("*.jpg"))] if LARGE.is_dir() else []
    paths = []
    for i in range(n):
        if sources:
            src = sources[i % len(sources)]
            h, w = src.shape[:2]
            ch, cw = int(h * rng.uniform(0.7, 1)), int(w * rng.uniform(0.7, 1))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            img = cv2.resize(src[y : y + ch, x : x + cw], CAMERA_SIZE, cv2.INTER_LINEAR)
            if i % 2:
                img = img[:, ::-1]
        else:
            small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
            img = cv2.resize(small, CAMERA_SIZE, interpolation=cv2.INTER_CUBIC)
        path = folder / f"IMG_{i:04d}.jpg"
        path.write_bytes(camera_jpeg(np.ascontiguousarray(img)))
        paths.append(path)
    return paths


def make_small_photos(folder: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    tiles = [
        cv2.imencode(".jpg", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))[1]
        for _ in range(64)
    ]
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"p{i:06d}.jpg").write_bytes(tiles[i % 64].tobytes())


def run_cli(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        FLOWERSORT + args,
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def decode_reduced(path: Path) -> tuple[int, int]:
    data = np.fromfile(path, np.uint8)
    size = header_size(data[:HEADER_BYTES].tobytes())
    img = cv2.imdecode(data, _reduced_flag(size, True, 96) | cv2.IMREAD_IGNORE_ORIENTATION)
    return img.shape[:2]


def decoding_limit(paths: list[Path]) -> float:
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(decode_reduced, paths[:WORKERS]))  # warm the workers up
        start = time.perf_counter()
        list(pool.map(decode_reduced, paths, chunksize=4))
    return len(paths) / (time.perf_counter() - start)


def original_pipeline(paths: list[Path]) -> float:
    """seed_ref.py's classify path, its own functions as they are, one process."""
    spec = importlib.util.spec_from_file_location("seed_ref", SEED_REF)
    seed_ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_ref)
    np.random.seed(0)
    first, middle = (40, 40), (10, 10)
    size = (first[0] * middle[0], first[1] * middle[1])
    nn = seed_ref.ImgNN(first, middle, size)
    nn2 = seed_ref.NN([middle, (4, middle[0]), (1, 4)])
    start = time.perf_counter()
    for path in paths:
        nn2.calc(nn.calc(seed_ref.read(str(path), size)))
    return len(paths) / (time.perf_counter() - start)


def bare_walk(root: Path) -> int:
    n = 0
    for folder, _, files in os.walk(root):
        for name in files:
            os.lstat(os.path.join(folder, name))
            n += 1
    return n


def peak_tree_rss(cmd: list[str]) -> tuple[float, float]:
    """Run cmd; return (seconds, peak of the summed RSS of it and its children, in MB)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def tree_rss() -> int:
        total = 0
        for pid in [proc.pid, *children(proc.pid)]:
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss())
            time.sleep(0.05)

    start = time.perf_counter()
    watcher = threading.Thread(target=poll)
    watcher.start()
    proc.wait()
    done.set()
    watcher.join()
    return time.perf_counter() - start, peak / 1024


def children(pid: int) -> list[int]:
    out = []
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return out
    for kid in map(int, kids):
        out += [kid, *children(kid)]
    return out


def write_heic(job: tuple[Path, Path]) -> None:
    import pillow_heif

    jpeg, out = job
    img = cv2.imread(str(jpeg))
    heif = pillow_heif.from_bytes("BGR", (img.shape[1], img.shape[0]), img.tobytes())
    heif.save(out, quality=HEIC_QUALITY, thumbnails=[320], tile_size=512)


def linked_copies(folder: Path, paths: list[Path], n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        os.link(paths[i % len(paths)], folder / f"IMG_{i:05d}{paths[0].suffix}")
    return folder


def heic_against_jpeg(tmp: Path, jpegs: list[Path]) -> None:
    """classify photos/s, in process on every core: the same photos as HEIC (from the
    thumbnail, and from the full image) and as JPEG."""
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        print("\nHEIC: pillow-heif is not installed (pip install 'flowersort[heic]'): skipped")
        return
    from flowersort.photos import heic

    heics = [tmp / f"IMG_{i:04d}.HEIC" for i in range(N_HEIC)]
    start = time.perf_counter()
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(write_heic, zip(jpegs, heics)))
    mb = sum(p.stat().st_size for p in heics) / len(heics) / 2**20
    print(
        f"\n{N_HEIC} of the same photos as HEIC ({mb:.1f} MB each, 512-px tiles, 320x240 "
        f"thumbnail), written in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    model = load_model(default_model_path())

    def rate(folder: Path) -> float:
        start = time.perf_counter()
        outcomes = list(classify(model, folder, workers=WORKERS))
        assert all(o.score is not None for o in outcomes), outcomes[0]
        return len(outcomes) / (time.perf_counter() - start)

    heic_many = linked_copies(tmp / "heic", heics, N_HEIC_LINKED)
    heic_few = linked_copies(tmp / "heic-full", heics, N_HEIC_FULL)
    jpeg_many = linked_copies(tmp / "jpeg", jpegs[:N_HEIC], N_HEIC_LINKED)
    rates = {"jpeg": rate(jpeg_many), "thumbnail": rate(heic_many)}
    thumbnail = heic._thumbnail
    heic._thumbnail = lambda primary, need: (None, None)  # workers fork with this: no thumbnail
    try:
        rates["full"] = rate(heic_few)
    finally:
        heic._thumbnail = thumbnail
    rates["jpeg again"] = rate(jpeg_many)
    rates["thumbnail again"] = rate(heic_many)
    jpeg = (rates["jpeg"] + rates["jpeg again"]) / 2
    print("\n| the same photos | photos/s | vs JPEG |\n|---|---|---|")
    for name, value in [
        ("JPEG 4000x3000 (reduced-size decode)", jpeg),
        ("HEIC, from its 320x240 thumbnail", (rates["thumbnail"] + rates["thumbnail again"]) / 2),
        ("HEIC, from the full image (thumbnail ignored)", rates["full"]),
    ]:
        print(f"| {name} | {value:.1f} | {value / jpeg:.2f}x |", flush=True)
    print(f"(each rate: {', '.join(f'{k} {v:.1f}' for k, v in rates.items())})")


def main() -> None:
    print(f"{WORKERS} cores; {'quick run' if QUICK else 'full run'}\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        camera = tmp / "camera"
        camera.mkdir()
        if HEIC_ONLY:
            heic_against_jpeg(tmp, make_camera_photos(camera, N_HEIC))
            return
        paths = make_camera_photos(camera, N_CAMERA)
        mb = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
        print(
            f"{N_CAMERA} camera-like photos, {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}, "
            f"{mb:.1f} MB each, q92 with a 160x120 EXIF preview",
            flush=True,
        )

        many = tmp / "many"  # the same photos again under other names (all in page cache)
        many.mkdir()
        linked = []
        for i in range(N_LINKED):
            linked.append(many / f"{i // 100:02d}" / f"IMG_{i:05d}.jpg")
            linked[-1].parent.mkdir(exist_ok=True)
            os.link(paths[i % N_CAMERA], linked[-1])
        print(f"{N_LINKED} photos classified (hard links to those), all in the page cache")

        model = load_model(default_model_path())
        alone = model.scores(np.stack([load_features(p, model.features) for p in paths]))
        print(
            f"{np.mean(alone >= model.views.gate):.0%} of them score {model.views.gate} or more "
            f"alone, so are scored over {model.views.crops} crops too",
            flush=True,
        )

        def library_rate(thumbnail: bool) -> float:
            start = time.perf_counter()
            n = sum(1 for _ in classify(model, many, workers=WORKERS, thumbnail=thumbnail))
            return n / (time.perf_counter() - start)

        common = ["classify", str(many), "--json", "--quiet", "--no-cache"]
        # this machine's speed drifts by 10-20 % from minute to minute: the decoding limit
        # and classify are measured in turns, each ratio against the limit of its own round,
        # and the table gives the medians
        rounds = []
        for i in range(ROUNDS):
            limit = decoding_limit(linked)
            full = N_LINKED / run_cli([*common, "--no-thumbnails"])
            full_lib = library_rate(False)
            rounds.append((limit, full, full_lib))
            print(
                f"round {i + 1}: decoding limit {limit:.1f} photos/s; classify through the CLI "
                f"{full:.1f} ({full / limit:.0%}), in process {full_lib:.1f} "
                f"({full_lib / limit:.0%})",
                flush=True,
            )
        limit, full, full_lib = (float(np.median(column)) for column in zip(*rounds))
        full_share = float(np.median([cli / lim for lim, cli, _ in rounds]))
        lib_share = float(np.median([lib / lim for lim, _, lib in rounds]))
        thumbs = N_LINKED / run_cli([*common, "--thumbnails"])
        thumbs_lib = library_rate(True)
        original = original_pipeline(paths[:N_ORIGINAL])
        print(
            f"\n| pipeline (median of {ROUNDS} rounds where repeated) | photos/s | vs original "
            "| vs decoding limit (where repeated: the median of the rounds' own shares, not "
            "the ratio of the medians) |\n|---|---|---|---|"
        )
        for name, rate, share in [
            ("original (seed_ref.py: full decode, 400x400, tile loop, 1 process)", original, None),
            ("decoding limit (reduced-size decode only, 1 process per core)", limit, 1.0),
            ("flowersort classify (CLI, end to end)", full, full_share),
            ("flowersort classify (library, in process)", full_lib, lib_share),
            ("flowersort classify --thumbnails (CLI, end to end)", thumbs, None),
            ("flowersort classify --thumbnails (library, in process)", thumbs_lib, None),
        ]:
            share = rate / limit if share is None else share
            print(f"| {name} | {rate:.1f} | {rate / original:.1f}x | {share:.0%} |", flush=True)

        small = tmp / "small"
        make_small_photos(small, N_RERUN)
        model_file = default_model_path()
        cache_file = tmp / "scores.sqlite"

        def library_run() -> float:
            cache = ScoreCache(cache_file, model_digest(model_file))
            start = time.perf_counter()
            n = sum(1 for _ in classify(model, small, cache=cache))
            cache.close()
            assert n == N_RERUN
            return time.perf_counter() - start

        first = library_run()
        rerun = library_run()
        start = time.perf_counter()
        assert bare_walk(small) == N_RERUN
        walk_s = time.perf_counter() - start
        cli_rerun = run_cli(
            ["classify", str(small), "--json", "--quiet", "--cache", str(cache_file)]
        )
        print(f"\nRerun over an unchanged archive of {N_RERUN} small photos:")
        print(
            f"  first run (decodes all): {first:.2f} s; rerun (library, in process): "
            f"{rerun:.2f} s; bare os.walk + lstat: {walk_s:.2f} s; "
            f"ratio {rerun / walk_s:.1f}x"
        )
        print(
            f"  rerun through the CLI, with interpreter start and imports: {cli_rerun:.2f} s",
            flush=True,
        )

        rss_dir = tmp / "rss"
        make_small_photos(rss_dir, N_RSS)
        seconds, peak = peak_tree_rss(
            FLOWERSORT + ["classify", str(rss_dir), "--json", "--quiet", "--no-cache"]
        )
        print(
            f"\nClassify over {N_RSS} small photos: {seconds:.0f} s, "
            f"peak RSS of the process tree {peak:.0f} MB"
        )
        heic_against_jpeg(tmp, paths)


if __name__ == "__main__":
    main()
