"""Peak memory of `flowersort classify` over huge files that are not photos (or only
start as one): the whole process tree (main process and workers), from /proc: the sampled
sum of their RSS, and each process's own peak (VmHWM), which sampling cannot miss.

Makes, in a temporary folder, FILES random .jpg files of SIZE_MB each (and as many JPEGs
with SIZE_MB of data after their end, like motion photos), runs the CLI over each folder
and prints the peak RSS of the tree and of its largest process.

usage: python benchmarks/memory.py [--code PATH]   (PATH: another checkout to measure)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- settings
SIZE_MB = 500  # each huge file
FILES = 2  # huge files per folder, read by 2 workers at once
WORKERS = 2
POLL = 0.005  # seconds between samples
# -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.runs import process_tree  # noqa: E402


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS now, peak RSS so far) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields.get("VmRSS", "0 kB").split()[0]), int(fields.get("VmHWM", "0 kB").split()[0])


def measure(folder: Path, code: Path) -> tuple[float, float, float, float]:
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "flowersort", "classify", str(folder), "--no-cache"]
    cmd += ["--workers", str(WORKERS), "--quiet"]
    t0 = time.perf_counter()
    # cwd: not this checkout, which `python -m` would import instead of `code`
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, cwd=folder)
    peak_tree = 0
    peaks: dict[int, int] = {}  # VmHWM per process: its exact peak, whenever it happened
    while proc.poll() is None:
        now = {p: memory_kib(p) for p in process_tree(proc.pid)}
        peak_tree = max(peak_tree, sum(rss for rss, _ in now.values()))
        for p, (_, hwm) in now.items():
            peaks[p] = max(peaks.get(p, 0), hwm)
        time.sleep(POLL)
    return (
        peak_tree / 1024,
        sum(peaks.values()) / 1024,
        max(peaks.values()) / 1024,
        (time.perf_counter() - t0),
    )


def main() -> None:
    code = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else ROOT
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        random_dir, motion_dir = Path(tmp) / "random", Path(tmp) / "motion"
        random_dir.mkdir()
        motion_dir.mkdir()
        import cv2

        photo = cv2.imencode(".jpg", rng.integers(0, 256, (400, 600, 3), np.uint8))[1].tobytes()
        for i in range(FILES):
            noise = rng.integers(0, 256, SIZE_MB * 2**20, np.uint8).tobytes()
            (random_dir / f"random_{i}.jpg").write_bytes(noise)
            (motion_dir / f"motion_{i}.jpg").write_bytes(photo + noise)
            del noise
        print(f"code: {code}; {FILES} files of {SIZE_MB} MB, {WORKERS} workers\n")
        print(
            "| files | tree RSS, sampled peak | sum of the processes' peaks "
            "| largest process peak | time |"
        )
        print("|---|---|---|---|---|")
        for name, folder in (("random bytes named .jpg", random_dir), ("JPEG + data", motion_dir)):
            tree_mb, sum_mb, one_mb, seconds = measure(folder, code)
            print(
                f"| {name} | {tree_mb:.0f} MB | {sum_mb:.0f} MB | {one_mb:.0f} MB "
                f"| {seconds:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
