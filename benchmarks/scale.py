"""Linear in the archive (issue 28): what a run costs per file as a folder grows, against a
bare walk with one lstat per file measured in the same run.

Makes tiny photos (16x16 JPEGs, each made unique by a comment segment, so that decoding
is cheap and the bookkeeping shows) in one folder of each size in SIZES, and in a
year/month tree of TREE photos, then runs the CLI as a user would (`python -m flowersort
classify SRC --move-to DEST --threshold T -q`, own state and cache folders):

  dry     the first run, a dry run: every photo decoded (and its score cached)
  dry2    the same dry run again: scores from the cache, the share above T planned
  move    the real run: the share above T moved into DEST
  rerun   the same run again over the unchanged archive: nothing to move
  veto    VETOES of the moved photos taken back into SRC by hand, then the run again
          (it learns them as vetoes), then this run once more: `veto` is that last one

Each is printed as time per file (after the start-up of a run over an empty folder, a
dry one for a dry run, is taken off; a step that leaves the archive as it found it, dry2,
rerun and veto, is run REPEATS times and the fastest taken, as the start-up is, since at
1,000 photos the start-up's own spread is most of the step) and as a multiple of the bare
walk's time per file over SRC and DEST (walked just before), with the run's peak RSS (the
main process or a worker, whichever is larger); then the same in CPU time (user + system,
of the run and its workers, against the walk's own), which other jobs on a shared machine
disturb less than the time on the clock. T is set from the scores of the generated
pictures so that SHARE of the photos would move.

usage: python benchmarks/scale.py [--quick] [--sizes 1000,10000] [--tree N] [--keep DIR]
       [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# ----------------------------------------------------------------------------- settings
ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 10_000, 50_000)  # photos in one folder
TREE = 200_000  # photos in a year/month tree
QUICK_SIZES, QUICK_TREE = (500, 2_000, 5_000), 10_000
YEARS = 10  # the tree: YEARS x 12 month folders
PIXELS = 16  # each photo is PIXELS x PIXELS
POOL = 64  # distinct pictures; each photo is one of them with its own comment
SHARE = 0.2  # of the photos above the threshold: moved (planned) by a run
VETOES = 0.01  # of the moved photos taken back by hand for the `veto` run
STARTS = 5  # runs over an empty folder; the fastest is the start-up
REPEATS = 3  # runs of a step that leaves the archive as it found it (dry2, rerun, veto)
# ------------------------------------------------------------------------------------


def pictures(rng: np.random.Generator) -> list[bytes]:
    """POOL small JPEGs, from flat colours to noise, so that their scores spread."""
    out = []
    for i in range(POOL):
        hue = rng.integers(0, 180)
        hsv = np.full((PIXELS, PIXELS, 3), (hue, 40 + 3 * i, 200), np.uint8)
        noise = rng.integers(0, 1 + 2 * i, (PIXELS, PIXELS, 3))
        img = cv2.cvtColor(np.clip(hsv + noise, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
        ok, data = cv2.imencode(".jpg", img)
        assert ok
        out.append(data.tobytes())
    return out


def unique(jpeg: bytes, n: int) -> bytes:
    """The picture with a COM segment holding n after the SOI marker: new bytes, same
    pixels."""
    text = b"flowersort scale %d" % n
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def pool_scores(pool: list[bytes], work: Path) -> list[float]:
    """Each picture's score with the shipped model (its default settings)."""
    sys.path.insert(0, str(ROOT))
    from flowersort.model.file import default_model_path, load_model
    from flowersort.scoring.pipeline import score_photos

    folder = work / "pool"
    folder.mkdir()
    paths = []
    for i, data in enumerate(pool):
        (path := folder / f"p{i:03d}.jpg").write_bytes(data)
        paths.append(path)
    model = load_model(default_model_path())
    scores = [s.score for s in score_photos(model, paths, workers=1)]
    shutil.rmtree(folder)
    return scores


def make_photos(folders: list[Path], n: int, pool: list[bytes]) -> list[int]:
    """n photos spread evenly over folders; returns which picture each photo is."""
    which = []
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = (i * 7919) % POOL  # a fixed scatter: the share above T is the same everywhere
        folder = folders[i * len(folders) // n]
        with open(folder / f"IMG_{i:06d}.jpg", "wb") as f:
            f.write(unique(pool[k], i))
        which.append(k)
    return which


def bare_walk(*roots: Path) -> tuple[float, float, int]:
    """Seconds, CPU seconds and files: scandir down every folder, one lstat per file."""
    start, cpu, files = time.perf_counter(), time.process_time(), 0
    stack = [os.fspath(r) for r in roots if r.exists()]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.lstat(entry.path)
                    files += 1
    return time.perf_counter() - start, time.process_time() - cpu, files


def run(args: list[str], env: dict) -> tuple[float, float, float]:
    """Seconds, CPU seconds (user + system, with its workers) and peak RSS (MiB) of one
    CLI run; a failed run stops the benchmark."""
    cmd = [sys.executable, "-m", "flowersort", "classify", *args, "-q"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024  # wait4: the child and its waited children


def environment(work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["XDG_STATE_HOME"], env["XDG_CACHE_HOME"] = str(work / "state"), str(work / "cache")
    return env


def startup(work: Path, *extra: str) -> tuple[float, float]:
    """The fastest of STARTS runs over an empty folder, with a target, and the least CPU
    time of them: the fixed cost, with the journal's few fsyncs, whose time varies most on
    a shared disk."""
    empty, dest = work / "empty", work / "empty-dest"
    empty.mkdir(exist_ok=True)
    # no photo, but not empty: an empty SRC is a disk not mounted (exit 5)
    (empty / "notes.txt").write_text("no photo here")
    env = environment(work / "empty-state")
    runs = [run([str(empty), "--move-to", str(dest), *extra], env) for _ in range(STARTS)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def case(name: str, folders: int, n: int, pool, scores, threshold, bases, work: Path):
    """One archive: generate it, run each step, print a line per step."""
    top = work / name
    src, dest = top / "Pictures", top / "Flowers"
    if folders == 1:
        where = [src / "DCIM" / "Camera"]
    else:
        where = [src / f"{2010 + y}" / f"{m:02d}" for y in range(YEARS) for m in range(1, 13)]
    start = time.perf_counter()
    which = make_photos(where, n, pool)
    made = time.perf_counter() - start
    flowers = sum(scores[k] >= threshold for k in which)
    print(
        f"\n{name}: {n:,} photos in {len(where)} folder(s), made in {made:.1f} s; "
        f"{flowers:,} ({flowers / n:.0%}) above the threshold; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    env = environment(top)
    common = [str(src), "--move-to", str(dest), "--threshold", f"{threshold:.6f}"]
    steps = [
        ("dry", [*common, "--dry-run"]),
        ("dry2", [*common, "--dry-run"]),
        ("move", common),
        ("rerun", common),
    ]
    for step, args in steps:
        report(
            step, args, env, bases, src, dest, n, repeats=1 if step in ("dry", "move") else REPEATS
        )
    moved = sorted(dest.iterdir())
    back = moved[: max(1, int(len(moved) * VETOES))]
    for i, photo in enumerate(back):  # taken back by hand, under a name of the user's
        photo.rename(src / f"kept {i}.jpg")
    run(common, env)  # learns the vetoes
    note = f"{len(back)} vetoes held"
    report("veto", common, env, bases, src, dest, n, note=note, repeats=REPEATS)
    shutil.rmtree(top)


def report(step, args, env, bases, src, dest, n, note="", repeats=1):
    walk_s, walk_cpu, files = bare_walk(src, dest)
    runs = [run(args, env) for _ in range(repeats)]
    seconds, cpu, rss = (min(r[i] for r in runs) for i in range(3))
    base, base_cpu = bases[1] if "--dry-run" in args else bases[0]
    per_file, cpu_per_file = max(seconds - base, 0.0) / n, max(cpu - base_cpu, 0.0) / n
    walk_per_file, walk_cpu_per_file = walk_s / files, max(walk_cpu, 1e-9) / files
    print(
        f"  {step:6s} {seconds:8.2f} s  {per_file * 1e6:8.1f} us/file  "
        f"walk {walk_per_file * 1e6:5.2f} us/file  x{per_file / walk_per_file:7.1f}  "
        f"peak RSS {rss:6.0f} MiB  | CPU {cpu:7.2f} s  {cpu_per_file * 1e6:8.1f} us/file  "
        f"walk {walk_cpu_per_file * 1e6:5.2f}  x{cpu_per_file / walk_cpu_per_file:7.1f}  {note}",
        flush=True,
    )


def main() -> None:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--sizes", help="photos in one folder, comma-separated")
    parser.add_argument("--tree", type=int, help="photos in the year/month tree (0: none)")
    parser.add_argument("--keep", type=Path, help="work here (default: a temporary folder)")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="runs of dry2, rerun and veto (fastest)"
    )
    opts = parser.parse_args()
    REPEATS = opts.repeats
    sizes = QUICK_SIZES if opts.quick else SIZES
    if opts.sizes:
        sizes = tuple(int(s) for s in opts.sizes.split(","))
    tree = opts.tree if opts.tree is not None else QUICK_TREE if opts.quick else TREE
    print(
        f"flowersort scale benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python "
        f"{platform.python_version()}, commit {git_commit()}"
    )
    with tempfile.TemporaryDirectory(dir=opts.keep) as tmp:
        work = Path(tmp)
        # compiled modules kept, as an installed flowersort has them (outside the tree)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        pool = pictures(np.random.default_rng(0))
        scores = pool_scores(pool, work)
        threshold = float(np.quantile(scores, 1 - SHARE))
        base, plan = startup(work), startup(work, "--dry-run")
        print(
            f"start-up (a run over an empty folder, fastest of {STARTS}): {base[0]:.2f} s, "
            f"CPU {base[1]:.2f} s ({plan[0]:.2f} s, CPU {plan[1]:.2f} s for a dry run; each "
            f"taken off its kind of step); threshold {threshold:.4f}"
        )
        for n in sizes:
            case(f"one-folder-{n}", 1, n, pool, scores, threshold, (base, plan), work)
        if tree:
            case(f"tree-{tree}", YEARS * 12, tree, pool, scores, threshold, (base, plan), work)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip() or "?"


if __name__ == "__main__":
    main()
