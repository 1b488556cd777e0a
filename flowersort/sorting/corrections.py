"""What the user teaches flowersort by moving files: vetoes, confirmations and marks.

The file manager is the interface. A photo flowersort put into DEST (or the review folder)
that the user took back out into the archive, under any name, is a *veto*: it is never
moved again, and it is a non-flower example for `train --with-corrections`. A photo the
user put into DEST by hand, or moved from the review folder into DEST, is a *confirmation*:
a flower example. Photos are recognised by content (size, then SHA-256), never by path, so
renames, moves to other folders and a move of the whole archive to another disk change
nothing.

The store is `corrections.sqlite` beside the journal ($XDG_STATE_HOME/flowersort): the
table `corrections` holds what the user taught (one row per content key, with the label,
how it was learnt and where the photo was last seen) and `placed` every photo flowersort
put into DEST or the review folder (content key, path, journal run), which is how a photo
missing from DEST is recognised when it turns up elsewhere in the archive. The table
`found` holds the photos that were already in a target before flowersort's first run into
it (and those whose flower label was forgotten or undone): they are nobody's choice, and
never learnt as flowers. Read it with `flowersort corrections list` or the sqlite3 shell;
back it up by copying the file.

This module is the store and what is asked of it directly (`take_back` by undo, `find` and
`in_folder` by `corrections list`); a classify run's view of the user's moves is
watch.py's (`Watch`), the training examples from the store and marks files marks.py's.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowersort.base import rights
from flowersort.base.errors import FlowersortError, StateError
from flowersort.photos.archive import size_of, walk
from flowersort.safefs.identity import Key, content_key
from flowersort.sorting.state import damaged_file, make_state_dir, state_dir
from flowersort.sorting.state import read_only as _read_only

Label = Literal["flower", "not-flower"]
# how a correction was learnt
Kind = Literal[
    "taken-out", "review-out", "review-in", "added", "mark", "tag-removed", "tagged-by-hand"
]
Folder = Literal["dest", "review"]

# a photo flowersort moved that stayed in DEST this long is a weak confirmation
WEAK_AFTER_DAYS = 14

SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, label TEXT NOT NULL, kind TEXT NOT NULL,
    path BLOB NOT NULL, noted REAL NOT NULL, run INTEGER, PRIMARY KEY (size, sha256)
);
CREATE TABLE IF NOT EXISTS found (
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, target BLOB NOT NULL, path BLOB NOT NULL,
    noted REAL NOT NULL, PRIMARY KEY (size, sha256)
);
CREATE TABLE IF NOT EXISTS placed (
    path BLOB PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    folder TEXT NOT NULL, run INTEGER, placed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS placed_key ON placed(size, sha256);
"""
VERSION = 2  # 2: corrections.run (the classify run that learnt it) and the table found


def _blob(path: str | os.PathLike) -> bytes:
    return os.fsencode(path)


def _path(blob: bytes) -> Path:
    return Path(os.fsdecode(blob))


def store_path() -> Path:
    return state_dir() / "corrections.sqlite"


@dataclass
class Correction:
    """One thing the user taught, keyed by content."""

    size: int
    sha256: str
    label: Label
    kind: Kind
    path: Path  # where the photo was last seen
    noted: float  # when (seconds since the epoch)

    @property
    def key(self) -> Key:
        return self.size, self.sha256

    def to_json(self) -> dict:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.noted))
        return {
            "path": os.fsdecode(self.path),
            "label": self.label,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "noted": when,
        }


KIND_TEXT = {
    "taken-out": "taken out of the target folder",
    "review-out": "sorted out of the review folder",
    "review-in": "sorted from the review folder into the target",
    "added": "put into the target folder by hand",
    "mark": "marked in a report",
    "tag-removed": "its keyword removed by you in a photo manager",
    "tagged-by-hand": "given the keyword by you",
}


@dataclass
class Placed:
    """A photo flowersort put into DEST or the review folder. Its path is kept as text
    (`where`): a Path made for every photo in DEST was most of what a rerun's start cost."""

    where: str
    size: int
    sha256: str
    folder: Folder
    run: int | None
    placed: float

    @property
    def path(self) -> Path:
        return Path(self.where)

    @path.setter
    def path(self, path: str | os.PathLike) -> None:
        self.where = os.fspath(path)

    @property
    def key(self) -> Key:
        return self.size, self.sha256


class Store:
    """The corrections file. With dry_run every write is skipped (a dry run records nothing)
    and a missing file is not created."""

    @rights.as_root()  # the state folder is root's in a root run acting as a user
    def __init__(self, path: Path | None = None, *, dry_run: bool = False):
        self.path: Path | None
        try:
            self.path = path or store_path()
        except StateError:  # no state folder at all: a dry run needs none
            if not dry_run:
                raise
            self.path = None
        self.dry_run = dry_run
        try:
            if dry_run and (self.path is None or not self.path.exists()):
                self.db = sqlite3.connect(":memory:")
                self.db.executescript(SCHEMA)
            elif self.path is None:  # only a dry run goes without a state folder
                raise AssertionError("no corrections file")
            elif dry_run:
                self.db = _read_only(self.path)
                self.db.execute("SELECT count(*) FROM corrections").fetchone()
            else:
                make_state_dir(self.path.parent)  # a file in the way: one line, exit 2
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(corrections)")}
                if "run" not in columns:  # a version 1 store: its labels have no run
                    self.db.execute("ALTER TABLE corrections ADD COLUMN run INTEGER")
                self.db.execute(f"PRAGMA user_version = {VERSION}")
        except sqlite3.DatabaseError as e:
            if not damaged_file(e):  # a full disk, a read-only folder: not the file's fault
                raise StateError(f"cannot write the corrections file {self.path}: {e}") from None
            raise FlowersortError(
                f"corrections file {self.path} is damaged ({e}); move it away to start afresh"
            ) from None

    @rights.as_root()
    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple) -> None:
        if not self.dry_run:
            try:
                self.db.execute(sql, args)
            except sqlite3.Error as e:
                raise StateError(f"cannot write the corrections file {self.path}: {e}") from None

    # ------------------------------------------------------------------ corrections

    def corrections(self) -> list[Correction]:
        rows = self.db.execute(
            "SELECT size, sha256, label, kind, path, noted FROM corrections ORDER BY noted"
        ).fetchall()
        return [Correction(s, h, lab, k, _path(p), t) for s, h, lab, k, p, t in rows]

    def note(
        self, key: Key, label: Label, kind: Kind, path: str | os.PathLike, run: int | None = None
    ) -> Correction:
        """Record what the user taught about this content (the newest choice wins); run:
        the classify run that learnt it, whose undo takes a flower label back."""
        now = time.time()
        self._write(
            "INSERT OR REPLACE INTO corrections(size, sha256, label, kind, path, noted, run) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key[0], key[1], label, kind, _blob(path), now, run),
        )
        return Correction(key[0], key[1], label, kind, Path(os.fsdecode(path)), now)

    def seen_at(self, key: Key, path: str | os.PathLike) -> None:
        self._write(
            "UPDATE corrections SET path = ? WHERE size = ? AND sha256 = ?",
            (_blob(path), key[0], key[1]),
        )

    def forget(self, key: Key) -> bool:
        if self.dry_run:
            return False
        cur = self.db.execute(
            "DELETE FROM corrections WHERE size = ? AND sha256 = ?", (key[0], key[1])
        )
        return cur.rowcount > 0

    def learnt_by(self, run: int) -> list[Correction]:
        """The flower labels a classify run learnt from photos it found in its target."""
        try:
            rows = self.db.execute(
                "SELECT size, sha256, label, kind, path, noted FROM corrections "
                "WHERE run = ? AND label = 'flower' AND kind IN ('added', 'review-in')",
                (run,),
            ).fetchall()
        except sqlite3.OperationalError:  # a version 1 store, read only: no run column
            return []
        return [Correction(s, h, lab, k, _path(p), t) for s, h, lab, k, p, t in rows]

    # ------------------------------------------------------------------ found photos

    def found(self) -> set[Key]:
        """Photos that are nobody's choice: in a target before our first run into it."""
        try:
            return {(s, h) for s, h in self.db.execute("SELECT size, sha256 FROM found")}
        except sqlite3.OperationalError:  # a version 1 store, read only: no such table
            return set()

    def add_found(self, key: Key, target: Path, path: Path) -> None:
        self._write(
            "INSERT OR REPLACE INTO found(size, sha256, target, path, noted) "
            "VALUES (?, ?, ?, ?, ?)",
            (key[0], key[1], _blob(target), _blob(path), time.time()),
        )

    # ------------------------------------------------------------------ placed photos

    def placed(self) -> list[Placed]:
        rows = self.db.execute(
            "SELECT path, size, sha256, folder, run, placed FROM placed"
        ).fetchall()
        return [Placed(os.fsdecode(p), s, h, f, r, t) for p, s, h, f, r, t in rows]

    def add_placed(
        self, path: Path, key: Key, folder: Folder, run: int | None, when: float | None = None
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO placed(path, size, sha256, folder, run, placed) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_blob(path), key[0], key[1], folder, run, time.time() if when is None else when),
        )

    def drop_placed(self, path: Path) -> None:
        self._write("DELETE FROM placed WHERE path = ?", (_blob(path),))

    def move_placed(self, old: Path, new: Path) -> None:
        self._write("UPDATE placed SET path = ? WHERE path = ?", (_blob(new), _blob(old)))


class Below:
    """Whether a path is one of `roots` or below one: built once for a loop over many."""

    def __init__(self, roots: list[str]) -> None:
        self.exact = set(roots)
        self.prefixes = tuple(r.rstrip(os.sep) + os.sep for r in roots)

    def __call__(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


def is_below(path: str, roots: list[str]) -> bool:
    return Below(roots)(path)


def weak_confirmations(store: Store, days: float = WEAK_AFTER_DAYS) -> Iterator[Placed]:
    """Photos flowersort moved into DEST that are still there after `days`."""
    cutoff = time.time() - days * 86400
    for p in store.placed():
        if p.folder == "dest" and p.placed < cutoff and size_of(p.path) == p.size:
            yield p


@rights.as_root()  # the store is root's in a root run acting as a user (and only stats photos)
def take_back(run: int, target: str | None) -> int:
    """The undo of classify run `run`: the flower labels it learnt from photos it found in
    its target are forgotten, and those photos become nobody's choice (not learnt again by
    the next run). Vetoes are kept: taking a photo out happened before the run, and undo
    does not put it back. Returns how many."""
    try:
        path = store_path()
    except StateError:
        return 0
    if not path.exists():
        return 0
    store = Store(path)
    try:
        labels = store.learnt_by(run)
        for c in labels:
            unlabel(store, c, Path(target) if target else c.path.parent)
    finally:
        store.close()
    return len(labels)


def unlabel(store: Store, c: Correction, target: Path) -> None:
    """Forget a correction; a flower label of a photo that is still where it was seen (in
    a target, most likely) becomes nobody's choice, or the next run would learn it again."""
    store.forget(c.key)
    if c.label == "flower" and size_of(c.path) == c.size:
        store.add_found(c.key, Path(os.path.abspath(target)), c.path)


def in_folder(store: Store, folder: str | os.PathLike) -> list[Correction]:
    """The corrections of the photos in a folder now (found by content), or last seen in it."""
    root = os.path.abspath(folder)
    rows = store.corrections()
    sizes = {c.size for c in rows}
    here: dict[Key, Path] = {}
    for text in walk(os.fspath(folder), include_hidden=True):
        if size_of(text) in sizes:
            try:
                here[content_key(text)] = Path(os.path.abspath(text))
            except OSError:
                continue
    matched = []
    for c in rows:
        if c.key in here:
            c.path = here[c.key]
        elif not is_below(os.path.abspath(c.path), [root]):
            continue
        matched.append(c)
    return matched


def find(store: Store, target: str) -> list[Correction]:
    """Corrections matching a file (by content) or a SHA-256 prefix (at least 8 digits)."""
    if os.path.exists(target):
        try:
            key = content_key(target)
        except OSError as e:
            raise FlowersortError(f"cannot read {target}: {e.strerror}") from None
        return [c for c in store.corrections() if c.key == key]
    prefix = target.lower()
    if len(prefix) < 8 or any(ch not in "0123456789abcdef" for ch in prefix):
        raise FlowersortError(f"no such file, and not a SHA-256 prefix: {target}")
    return [c for c in store.corrections() if c.sha256.startswith(prefix)]
