"""flowersort run as its own process, as cron runs it, and watched from outside: the
command, its journal's moves in flight, its worker processes, another filesystem. Shared by
the kill and signal tests and by benchmarks/torture.py and benchmarks/memory.py."""

import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.conftest import make_photo, write_photo

ROOT = Path(__file__).resolve().parents[1]


def make_archive(root: Path, n: int) -> None:
    rng = np.random.default_rng(11)
    for i in range(n):
        sub = root / f"{i % 7:02d}"
        write_photo(sub / f"IMG_{i % 50:04d}.jpg", make_photo(rng, i % 2 == 0, size=32))
        if i % 10 == 0:
            (sub / f"IMG_{i % 50:04d}.xmp").write_text(f"<xmp id='{i}'/>")


def classify_cmd(src: Path, dest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flowersort",
        "classify",
        str(src),
        "--move-to",
        str(dest),
        "--threshold",
        "0",
        "--workers",
        "1",
        "--quiet",
    ]


def other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if (
        shm.is_dir()
        and os.access(shm, os.W_OK)
        and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev
    ):
        return shm
    return None


def env_with(state: Path) -> dict:
    return {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONPATH": str(ROOT)}


def _journal_count(state: Path, sql: str, *params) -> int:
    path = state / "flowersort" / "journal.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        return db.execute(sql, params).fetchone()[0] or 0
    except sqlite3.Error:  # not made yet (the run is starting): counts as none
        return 0
    finally:
        db.close()


def in_flight(state: Path, after: int = 0) -> int:
    """Moves a killed run left started (those numbered above `after`: a run killed before
    its recovery leaves the previous kill's moves started too): what the kill interrupted."""
    return _journal_count(
        state, "SELECT count(*) FROM moves WHERE state = 'started' AND id > ?", after
    )


def last_move(state: Path) -> int:
    """The number of the journal's last move (0 without one)."""
    return _journal_count(state, "SELECT max(id) FROM moves")


def process_tree(root: int) -> list[int]:
    """root and its descendants, from /proc/*/stat."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        found += frontier
    return found


def children(pid: int) -> list[int]:
    """pid's direct children."""
    tree = process_tree(pid)
    parents = {}
    for p in tree[1:]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        parents[p] = int(stat.rsplit(")", 1)[1].split()[1])
    return [p for p, parent in parents.items() if parent == pid]
