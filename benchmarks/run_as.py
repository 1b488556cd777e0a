"""What a root run acting as the owner of the tree costs (issue 32), roughly.

A tree of N small generated JPEGs (10 folders) owned by an unprivileged user; through the CLI
with 2 workers and a fresh state each time: score every photo (threshold 1: none moves),
again from the score cache (the nightly rerun), then move them all. Acting as the owner (the
default) against `--run-as root`, or against another flowersort command (`--against CMD`,
e.g. a checkout of an earlier commit run with root's rights), 3 rounds in turns; prints
each round and the medians in ms a photo. Needs root and the user (default probeowner).

usage: python benchmarks/run_as.py [N] [--user NAME] [--against CMD] [--no-move]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_photo, write_photo  # noqa: E402

FLOWERSORT = str(Path(sys.executable).with_name("flowersort"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=300)
    parser.add_argument("--user", default="probeowner")
    parser.add_argument("--against", help="another flowersort command, run with root's rights")
    parser.add_argument("--no-move", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    owner = pwd.getpwnam(args.user)
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="flowersort-run-as-bench-"))
    base.chmod(0o755)
    try:
        gen = base / "gen"
        for i in range(args.n):
            photo = make_photo(np.random.default_rng(i), i % 2 == 0)
            write_photo(gen / f"d{i % 10}" / f"IMG_{i}.jpg", photo)
        ways = {"as the owner": ([FLOWERSORT], [])}
        other = args.against.split() if args.against else [FLOWERSORT]
        ways["against"] = (other, [] if args.against else ["--run-as", "root"])
        times: dict[str, list[tuple[float, float, float]]] = {w: [] for w in ways}
        for round_ in range(3):
            for way, (command, extra) in ways.items():
                home = base / f"{round_}-{len(times[way])}-{way[:2]}"
                shutil.copytree(gen, home / "Pictures")
                for p in [home, *home.rglob("*")]:
                    os.chown(p, owner.pw_uid, owner.pw_gid)
                env = dict(os.environ, XDG_STATE_HOME=str(home) + ".state")
                env["XDG_CACHE_HOME"] = str(home) + ".cache"
                run = [*command, "classify", str(home / "Pictures"), "--move-to"]
                run += [str(home / "Flowers"), "--workers", "2", "-q", *extra, "--threshold"]
                score, rerun = timed([*run, "1"], env), timed([*run, "1"], env)
                move = 0.0 if args.no_move else timed([*run, "0"], env)
                times[way].append((score, rerun, move))
                print(f"{way}, round {round_ + 1}: score {score:.2f} s, rerun {rerun:.2f} s, "
                      f"move {move:.2f} s", flush=True)  # fmt: skip
        for way, rounds in times.items():
            score, rerun, move = (1000 * statistics.median(c) / args.n for c in zip(*rounds))
            print(f"{way}: ms a photo: score {score:.2f}, rerun {rerun:.2f}, move {move:.2f}")
    finally:
        shutil.rmtree(base)


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-400:]}")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
