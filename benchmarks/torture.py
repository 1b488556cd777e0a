"""Kill flowersort classify --move-to with SIGKILL at random moments (half of them aimed at the
moves: as soon as the journal shows a few started), many times, then let a
last run finish; count lost, damaged and duplicated photos by SHA-256 census, temporaries
left, and how many kills interrupted a move (a kill between moves proves nothing).

usage: python benchmarks/torture.py [TRIALS] [PHOTOS]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

# ----------------------------------------------------------------------------- settings
TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 40  # kills per filesystem setting
PHOTOS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SIDECAR_EVERY = 7  # every 7th photo gets an .xmp sidecar
PRIVATE_EVERY = 5  # every 5th photo is mode 600 with a desktop tag (an extended attribute)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import census  # noqa: E402
from tests.runs import classify_cmd, in_flight, last_move  # noqa: E402

# ------------------------------------------------------------------------------------


def make_archive(root: Path, n: int, rng: np.random.Generator) -> None:
    for i in range(n):
        folder = root / f"{i % 13:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", img)
        name = f"IMG_{i % 97:04d}"
        (folder / f"{name}.jpg").write_bytes(buf.tobytes())
        if i % SIDECAR_EVERY == 0:
            (folder / f"{name}.xmp").write_text(f"<xmp n='{i}'/>")
        if i % PRIVATE_EVERY == 0:  # a private, tagged photo: metadata a move must keep
            (folder / f"{name}.jpg").chmod(0o600)
            try:
                os.setxattr(folder / f"{name}.jpg", "user.xdg.tags", b"flowers")
            except OSError:
                pass


def metadata(*roots: Path) -> dict[str, tuple]:
    """sha256 -> (mode, mtime_ns, tags) of every file: what a move must keep besides bytes."""
    out = {}
    for p in (p for r in roots if r.exists() for p in r.rglob("*") if p.is_file()):
        try:
            tags = os.getxattr(p, "user.xdg.tags")
        except OSError:
            tags = None
        st = p.stat()
        out[hashlib.sha256(p.read_bytes()).hexdigest()] = (
            st.st_mode & 0o7777,
            st.st_mtime_ns,
            tags,
        )
    return out


def trial_run(
    src: Path, dest: Path, state: Path, trials: int, rng
) -> tuple[int, int, int, int, int, int]:
    # the kill test's command, more trials; no score cache: a rerun would score everything at
    # once and make its moves back to back in a blink, where few kills could land
    cmd = [*classify_cmd(src, dest), "--no-cache"]
    env = {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONPATH": str(ROOT)}
    before, kept = census(src), metadata(src)
    start = time.perf_counter()
    subprocess.run([*cmd, "--dry-run"], env=env, capture_output=True)
    startup = time.perf_counter() - start
    interrupted = 0
    for _ in range(trials):
        last = last_move(state)  # a run killed before its recovery leaves earlier ones started
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if rng.random() < 0.5:  # any moment: while scoring, too
            time.sleep(startup * float(rng.uniform(0.5, 2.0)))
        else:  # aimed at the moves: once a few of those left have started (so that later
            # trials still find photos to move)
            left = sum(1 for p in src.rglob("*.jpg"))
            aim = int(rng.integers(1, max(2, left // 4)))
            while proc.poll() is None and last_move(state) - last < aim:
                time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted += in_flight(state, after=last) > 0
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    after = census(src, dest)
    lost = sum((before - after).values())
    damaged = sum(n for h, n in after.items() if h not in before)
    duplicated = sum(n - before[h] for h, n in after.items() if h in before and n > before[h])
    leftovers = sum(1 for r in (src, dest) for p in r.rglob(".flowersort-tmp-*"))
    now = metadata(src, dest)
    changed = sum(1 for h, m in kept.items() if h in now and now[h] != m)
    return lost, damaged, duplicated, leftovers, interrupted, changed


def main() -> None:
    rng = np.random.default_rng(0)
    settings = [("same filesystem", None)]
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev:
        settings.append(("across filesystems (tmpfs target)", shm))
    total = Counter()
    for label, target_root in settings:
        work = Path(tempfile.mkdtemp())
        target = Path(tempfile.mkdtemp(dir=target_root))
        try:
            make_archive(work / "Pictures", PHOTOS, rng)
            files = sum(1 for p in (work / "Pictures").rglob("*") if p.is_file())
            lost, damaged, dup, left, hit, meta = trial_run(
                work / "Pictures", target / "Flowers", work / "state", TRIALS, rng
            )
            print(
                f"{label}: {TRIALS} kills ({hit} interrupted a move), {files} files "
                f"({PHOTOS} photos), {lost} lost, {damaged} damaged, {dup} duplicated, "
                f"{left} temporary files left, {meta} with metadata lost",
                flush=True,
            )
            total.update(
                trials=TRIALS,
                hit=hit,
                photos=PHOTOS,
                lost=lost,
                damaged=damaged,
                dup=dup,
                left=left,
                meta=meta,
            )
        finally:
            shutil.rmtree(work)
            shutil.rmtree(target)
    print(
        f"{total['trials']} kills ({total['hit']} interrupted a move), {total['photos']} "
        f"photos, {total['lost']} lost, {total['damaged']} damaged, {total['dup']} duplicated, "
        f"{total['left']} temporary files left, {total['meta']} with metadata lost (mode, "
        "mtime, tags)"
    )


if __name__ == "__main__":
    main()
