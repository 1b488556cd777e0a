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
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowersort.base import rights
from flowersort.base.errors import FlowersortError, StateError
from flowersort.photos.archive import OnSkip, size_of, walk
from flowersort.safefs import Key, content_key
from flowersort.sorting.journal import Journal
from flowersort.sorting.state import _damaged, _make_state_dir, state_dir
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
                _make_state_dir(self.path.parent)  # a file in the way: one line, exit 2
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(corrections)")}
                if "run" not in columns:  # a version 1 store: its labels have no run
                    self.db.execute("ALTER TABLE corrections ADD COLUMN run INTEGER")
                self.db.execute(f"PRAGMA user_version = {VERSION}")
        except sqlite3.DatabaseError as e:
            if not _damaged(e):  # a full disk, a read-only folder: not the file's fault
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


def _below(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class _JournalView:
    """What Watch.start asks of the journal (see Journal.undone_since and moved_to), read
    only; a journal that cannot be read is taken for none."""

    def __init__(self) -> None:
        self.journal: Journal | None = None
        try:
            self.journal = Journal.reader(state_dir())
        except StateError:  # no state folder (a dry run without HOME): no journal either
            return

    def undone(self) -> set[int | Path]:
        if self.journal is None:
            return set()
        try:
            return self.journal.undone_since()
        except StateError:
            return set()

    def moved_to(self, path: Path) -> bool:
        if self.journal is None:
            return False
        try:
            return self.journal.moved_to(path)
        except StateError:
            return False

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def _earlier_run_into(target: Path, run: int | None) -> bool:
    """Whether a run other than `run` had this target (the journal read only)."""
    try:
        journal = Journal.reader(state_dir())
    except StateError:
        return False
    if journal is None:
        return False
    try:
        dests = journal.targets(but=run)
    except StateError:
        return False
    finally:
        journal.close()
    real = os.path.realpath(target)
    return any(os.path.realpath(dest) == real for dest in dests)


@dataclass
class Learnt:
    """What the start of a run found: new vetoes come later, as the walk meets them."""

    confirmations: list[Correction]
    pending: int  # photos flowersort placed that are no longer where it put them
    found: int = 0  # photos in a target no run of ours had used yet: nobody's choice


class Watch:
    """One classify run's view of the user's choices.

    `start` looks at DEST: a photo there that flowersort never put there is a confirmation
    (from the review folder: a sorted one); a photo flowersort placed that is gone from its
    place becomes pending. `held` is asked for each photo of the walk: a photo whose content
    the user vetoed, or a pending one found back in the archive (a new veto), is held.
    `finish`, after a complete walk, forgets the pending photos it did not meet (deleted).
    On the first run into a target, the photos already there are nobody's choice: they are
    remembered as found, never learnt as flowers (only photos put there later are).
    """

    def __init__(
        self, dest: Path, review: Path | None, *, dry_run: bool = False, run: int | None = None
    ):
        # absolute, as the places it records: a relative spelling must find them too
        self.dest = Path(os.path.abspath(dest))
        self.review = Path(os.path.abspath(review)) if review is not None else None
        self.store = Store(dry_run=dry_run)
        self.run = run  # the journal's run: its undo takes back the flower labels it learnt
        self.by_key: dict[Key, Correction] = {}
        self.pending: dict[Key, Placed] = {}
        self.sizes: set[int] = set()  # sizes worth hashing a photo for
        self.gone_flowers: set[Key] = set()  # pending: flowers the user had put into DEST

    def start(self) -> Learnt:
        journal = _JournalView()
        try:
            return self._start(journal)
        finally:
            journal.close()

    def _start(self, journal: _JournalView) -> Learnt:
        undone = journal.undone()
        undone_paths = {os.fspath(u) for u in undone if not isinstance(u, int)}
        placed: dict[str, Placed] = {}  # by path, as text: a Path per photo costs most here
        elsewhere: dict[Key, list[Placed]] = {}  # placed into another target (or an old place)
        roots = [os.fspath(r) for r in (self.dest, self.review) if r is not None]
        for p in self.store.placed():
            if p.run in undone or p.where in undone_paths:  # undo put it back: no choice
                self.store.drop_placed(p.path)  # of yours
            elif _below(os.path.abspath(p.where), roots):  # another target's are not ours
                placed[p.where] = p
            else:
                elsewhere.setdefault(p.key, []).append(p)

        def moved_along(key: Key, path: Path, folder: Folder) -> Placed | None:
            """A photo placed at a path that is gone, now in this target: the archive was
            moved (another disk, another name) with its target, so it is flowersort's still."""
            for p in elsewhere.get(key, []):
                if p.folder == folder and size_of(p.path) is None:
                    elsewhere[key].remove(p)
                    self.store.move_placed(p.path, path)
                    p.path = path
                    placed[os.fspath(path)] = p
                    return p
            return None

        if elsewhere and self.review is not None and self.review.is_dir():
            sizes = {k[0] for k in elsewhere}
            for text in walk(self.review):
                if text not in placed and size_of(text) in sizes:
                    try:
                        moved_along(content_key(text), Path(text), "review")
                    except OSError:
                        continue
        self.by_key = {c.key: c for c in self.store.corrections()}
        by_path = {os.fspath(c.path): c for c in self.by_key.values()}
        placed_by_key = {p.key: p for p in placed.values()}
        found: set[str] = set()  # paths in DEST of photos flowersort placed
        flowers_in_dest: set[Key] = set()  # the user's flowers still in DEST, anywhere
        confirmations = []
        nobodys = self.store.found()  # in a target before our first run into it
        # asked of the journal: photos placed below this target (by runs into a folder inside
        # it) or into a review folder it shares with another target are no run into it
        first_run = not _earlier_run_into(self.dest, self.run)
        there_before = 0
        in_dest = walk(self.dest, prune=[self.review] if self.review else [])
        for text in in_dest if self.dest.is_dir() else ():
            size = size_of(text)
            if size is None:
                continue
            if (here := placed.get(text)) is not None:  # still where it was put (edited
                if size != here.size:  # there, perhaps): kept; edited: the new bytes are
                    self._rekey(here)  # what may come back
                found.add(text)
                continue
            path = Path(text)
            known = by_path.get(text)
            if known and known.size == size and known.label == "flower":
                flowers_in_dest.add(known.key)
                continue
            try:
                key = content_key(path)
            except OSError:
                continue
            if journal.moved_to(path):  # (not placed: see above)
                # moved by a flowersort that kept no `placed` rows (an upgrade): note it now
                self.store.add_placed(path, key, "dest", None)
                placed[text] = Placed(text, key[0], key[1], "dest", None, time.time())
                found.add(text)
                continue
            mine = placed_by_key.get(key)
            if mine is None and moved_along(key, path, "dest") is not None:
                found.add(text)
                continue
            if mine is not None and mine.folder == "dest":
                was = mine.where
                if was in placed and size_of(was) is None:  # renamed inside DEST
                    self.store.move_placed(mine.path, path)
                    placed[text] = placed.pop(was)
                    placed[text].path = path
                found.add(text)  # else a copy of one it placed: not the user's example
                continue
            if mine is not None:  # from the review folder into DEST: sorted as a flower
                self.store.drop_placed(mine.path)
                placed.pop(mine.where, None)
                confirmations.append(self._learn(key, "flower", "review-in", path))
            elif key in self.by_key and self.by_key[key].label == "flower":
                self.store.seen_at(key, path)
            elif first_run or key in nobodys:
                if first_run:
                    self.store.add_found(key, self.dest, path)
                    nobodys.add(key)
                    there_before += 1
                continue
            else:
                confirmations.append(self._learn(key, "flower", "added", path))
            flowers_in_dest.add(key)
        for p in placed.values():
            if p.where in found:
                continue
            if p.folder == "review" and size_of(p.path) is not None:
                if size_of(p.path) != p.size:
                    self._rekey(p)
                continue  # still waiting in the review folder
            self.pending[p.key] = p
        for c in self.by_key.values():  # a flower of yours taken out of DEST again: pending
            if (
                c.label == "flower"
                and c.key not in flowers_in_dest
                and c.key not in self.pending
                and _below(os.path.abspath(c.path), [os.fspath(self.dest)])
                and not (self.review and _below(os.path.abspath(c.path), [os.fspath(self.review)]))
            ):
                pending = Placed(os.fspath(c.path), c.size, c.sha256, "dest", None, c.noted)
                self.pending[c.key] = pending
                self.gone_flowers.add(c.key)
        self.sizes = {k[0] for k in self.pending} | {
            c.size for c in self.by_key.values() if c.label == "not-flower"
        }
        return Learnt(confirmations, len(self.pending), there_before)

    def _rekey(self, p: Placed) -> None:
        """A placed photo edited where it is (its size changed; an edit that keeps the size
        is not noticed): its new content is what is recognised if it is taken out."""
        try:
            p.size, p.sha256 = content_key(p.path)
        except OSError:
            return
        self.store.add_placed(p.path, p.key, p.folder, p.run, p.placed)

    def _learn(self, key: Key, label: Label, kind: Kind, path: Path) -> Correction:
        correction = self.store.note(key, label, kind, path, self.run)
        self.by_key[key] = correction
        return correction

    def held(self, path: str | os.PathLike, size: int | None = None) -> Correction | None:
        """The veto that keeps this photo where it is, if any (hashes only on a size match;
        `size`: the photo's, if the caller has stat'ed it already)."""
        if not self.sizes or (size_of(path) if size is None else size) not in self.sizes:
            return None
        try:
            key = content_key(path)
        except OSError:
            return None
        path = Path(os.path.abspath(path))  # train may run from another folder
        known = self.by_key.get(key)
        if known is not None and known.label == "not-flower":
            if known.path != path:
                self.store.seen_at(key, path)
            return known
        mine = self.pending.pop(key, None)
        if mine is None:
            return None
        self.store.drop_placed(mine.path)
        kind: Kind = "review-out" if mine.folder == "review" else "taken-out"
        return self._learn(key, "not-flower", kind, path)

    def finish(self) -> int:
        """The walk of the archive is complete. A photo flowersort placed that is gone from
        its place and was not met in the archive was deleted (or taken out of the archive),
        which is no veto: it is forgotten, so that the same bytes imported again later (a
        camera card read twice) are a new photo, not a veto. Returns how many."""
        for p in self.pending.values():
            self.store.drop_placed(p.path)
            if p.key in self.gone_flowers:  # a flower you put in, deleted: nothing to learn
                self.store.forget(p.key)
        gone, self.pending = len(self.pending), {}
        return gone

    def confirmed(self, path: str | os.PathLike) -> bool:
        """Whether the user called this photo a flower (a copy of one sorted from the review
        folder into DEST, say): a borderline score of it is not sent to review again."""
        flowers = {c.size for c in self.by_key.values() if c.label == "flower"}
        if size_of(path) not in flowers:
            return False
        try:
            known = self.by_key.get(content_key(path))
        except OSError:
            return False
        return known is not None and known.label == "flower"

    def placed(self, final: str | os.PathLike, folder: Folder, run: int | None) -> None:
        """flowersort has just put a photo at `final`."""
        try:
            key = content_key(final)
        except OSError:
            return
        self.store.add_placed(Path(os.path.abspath(final)), key, folder, run)

    def close(self) -> None:
        self.store.close()


def _file_size(path: str | os.PathLike) -> int | None:
    """The size of a regular file (a folder or a FIFO named in a marks file is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


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
        elif not _below(os.path.abspath(c.path), [root]):
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


# ---------------------------------------------------------------------- training

MARKS_FORMAT = "flowersort-marks"  # the "format" of the JSON the report's button saves


@dataclass
class Example:
    path: Path
    label: Label
    source: str  # "corrections" or the marks file


def read_marks(path: Path) -> list[dict]:
    """The marks a report saved: [{"path", "size", "label", ...}] (see report.py)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FlowersortError(f"cannot read marks file {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != MARKS_FORMAT:
        raise FlowersortError(f"{path} is not a marks file saved from a flowersort report")
    marks = doc.get("marks")
    if not isinstance(marks, list) or not all(
        isinstance(m, dict) and isinstance(m.get("path"), str) and m.get("label") in LABELS
        for m in marks
    ):
        raise FlowersortError(f"{path}: marks must be a list of {{path, label}}")
    return marks


LABELS = ("flower", "not-flower")


def training_examples(
    store: Store, marks_files: list[Path], on_skip: OnSkip, *, stored: bool = True
) -> list[Example]:
    """The photos named by marks files and (with `stored`) by the store's corrections,
    found where they were last seen and checked by content. Marks are recorded in the store
    too (content-keyed), so a photo marked "not a flower" is held by later runs."""
    examples: dict[Key, Example] = {}
    for marks_file in marks_files:
        for mark in read_marks(marks_file):
            path = Path(os.path.abspath(mark["path"]))
            size = _file_size(path)
            key = None
            if size is not None and mark.get("size") in (None, size):
                try:
                    key = content_key(path)
                except OSError:
                    pass
            if key is None:
                on_skip(mark["path"], f"marked in {marks_file}, but no longer there as it was")
                continue
            store.note(key, mark["label"], "mark", path)
            examples[key] = Example(path, mark["label"], os.fspath(marks_file))
    for c in store.corrections() if stored else ():
        if c.key in examples:
            continue
        try:
            there = _file_size(c.path) == c.size and content_key(c.path) == c.key
        except OSError:
            there = False
        if not there:
            on_skip(os.fspath(c.path), "a correction, but the photo is no longer there")
            continue
        examples[c.key] = Example(c.path, c.label, "corrections")
    return list(examples.values())
