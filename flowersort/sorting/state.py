"""The state folder ($XDG_STATE_HOME/flowersort, else ~/.local/state/flowersort),
where the journal, the lock and the corrections store live, and how its SQLite files are
opened to read only or found damaged.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowersort.base import rights
from flowersort.base.errors import StateError
from flowersort.base.xdg import base_dir


def state_dir() -> Path:
    return base_dir("XDG_STATE_HOME", ".local/state") / "flowersort"


@rights.as_root()  # the state folder is root's in a root run acting as a user
def read_only(path: Path) -> sqlite3.Connection:
    """Open without writing anything, not even SQLite's -wal and -shm files (a dry run
    records nothing): when no other connection has them open, read the main file as is."""
    wal = path.with_name(path.name + "-wal").exists()
    mode = "mode=ro" if wal else "immutable=1"
    conn = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=60)
    try:  # SQLite opens the -wal and -shm files at the first read: now, with our rights
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        pass  # damaged: the caller's first query says so
    return conn


@rights.as_root()
def make_state_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "it is not a folder" if isinstance(e, FileExistsError) else e.strerror
        raise StateError(
            f"cannot use the state folder {folder} (journal and lock): {why}"
        ) from None


def damaged_file(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", "")  # Python 3.11+
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(
        words in str(e) for words in ("not a database", "malformed")
    )
