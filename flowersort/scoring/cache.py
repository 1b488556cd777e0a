"""Scores remembered between runs: (path, size, mtime_ns, inode) -> score, per model.

A nightly rerun over an unchanged archive then decodes nothing. Lookups load one folder's
rows at a time (the walk goes folder by folder), so memory stays small and a rerun costs
little more than the walk itself. The cache lives in
$XDG_CACHE_HOME/flowersort (else ~/.cache/flowersort) unless a path is given. A corrupt
cache file is rebuilt with a warning; SQLite's WAL mode and a busy timeout let two runs
share it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import sys
import time
from pathlib import Path

from flowersort.base import rights
from flowersort.base.errors import CacheError, StateError
from flowersort.base.xdg import base_dir

log = logging.getLogger("flowersort")


def model_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the model file: ties cached scores to the model that made them."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# 3: scores read from JPEG previews have their own key; a cache of version 2 may hold some
# under the photo's key, so it is started afresh (one night decodes everything again)
# 4: sha256, the photo's content hash once a run needed it (a size a veto has): a version 3
# cache gets the column and keeps its scores
VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    dir BLOB, name BLOB, size INTEGER, mtime_ns INTEGER, inode INTEGER,
    model TEXT, score REAL, reason TEXT, sha256 TEXT, PRIMARY KEY (dir, name)
)
"""
COMMIT_EVERY = 500

Key = tuple[int, int, int]  # size, mtime_ns, inode
FS_ENCODING, FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def default_cache_path() -> Path:
    return base_dir("XDG_CACHE_HOME", ".cache") / "flowersort" / "scores.sqlite"


def _cannot_write(e: sqlite3.Error) -> bool:
    """Errors that waiting will not cure: a folder or file that cannot be written, a full
    disk; the others (busy, locked, ...) are worth another try."""
    name = getattr(e, "sqlite_errorname", "")  # Python 3.11+
    lasting = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PERM")
    words = ("unable to open", "readonly", "disk is full", "disk I/O error")
    return name.startswith(lasting) or any(w in str(e) for w in words)


class ScoreCache:
    """Raises CacheError when the cache cannot be opened or written (a folder that cannot
    be written, a full disk); a busy cache is not used, a damaged one is rebuilt."""

    @rights.as_root()  # the cache folder is root's in a root run acting as a user
    def __init__(self, path: Path, model_digest: str, thumbnail: bool = False):
        self.path, self.thumbnail = Path(path), thumbnail
        # a score read from a JPEG's preview is not the photo's: each has its own key
        self.model = model_digest + (" thumbnails" if thumbnail else "")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._error(e.strerror or str(e)) from None
        self.db: sqlite3.Connection | None = None
        for attempt in range(5):
            try:
                self.db = self._open()
                break
            except sqlite3.OperationalError as e:
                if _cannot_write(e):
                    raise self._error(str(e)) from None
                if attempt == 4:  # busy: another run is setting it up
                    log.warning("warning: score cache %s is busy (%s); not using it", path, e)
                time.sleep(0.1 * (attempt + 1))
            except sqlite3.DatabaseError as e:  # not a database, or damaged
                log.warning("warning: score cache %s is unusable (%s); rebuilding it", path, e)
                try:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                except OSError as e:
                    raise self._error(e.strerror or str(e)) from None
        self.pending = 0
        self.lost = False  # said once that this run's scores cannot be remembered
        self.damaged_said = False  # said once that a row held no usable score
        self.folder: str | None = None  # the path's text before its last separator
        self.rows: dict[str, tuple] = {}

    def _error(self, why: str) -> CacheError:
        return CacheError(f"cannot use the score cache {self.path}: {why}")

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a lost cache entry only costs a decode
        if self._ready(db):  # the usual case: read only, so a run that holds the cache's
            return db  # write lock (another run, stopped mid-write) does not hold this one up
        # one transaction, so that two runs opening a new cache at once cannot both see the
        # old version and the second drop the rows the first has written meanwhile
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 3 and self._has_scores(db):  # its scores hold: one column more
                db.execute("ALTER TABLE scores ADD COLUMN sha256 TEXT")
            elif version != VERSION:
                db.execute("DROP TABLE IF EXISTS scores")  # an older layout: start afresh
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute(SCHEMA)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        db.execute("SELECT count(*) FROM scores WHERE rowid = 1").fetchone()
        return db

    @staticmethod
    def _ready(db: sqlite3.Connection) -> bool:
        """The cache already has this version's layout."""
        if db.execute("PRAGMA user_version").fetchone()[0] != VERSION:
            return False
        if not ScoreCache._has_scores(db):
            return False
        db.execute("SELECT count(*) FROM scores WHERE rowid = 1").fetchone()
        return True

    @staticmethod
    def _has_scores(db: sqlite3.Connection) -> bool:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scores'")
        return found.fetchone() is not None

    @staticmethod
    def key(path: str | Path) -> Key | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def get(self, path: str | Path, key: Key) -> tuple[float | None, str] | None:
        """(score, "") or (None, skip reason) remembered for this exact file and model."""
        if self.db is None:
            return None
        path = os.fspath(path)
        cut = path.rfind(os.sep) + 1  # os.path.split's cut: the text before it (with its
        if path[:cut] != self.folder:  # separator) gives the folder; a new one: its rows, once
            self.folder = path[:cut]
            self.rows = self._folder_rows(os.fsencode(os.path.split(path)[0]))
        row = self.rows.get(path[cut:])
        if row is None or row[1] != key[0] or row[2] != key[1] or row[3] != key[2]:
            return None
        score, reason = row[4], row[5]
        if isinstance(score, (int, float)) and math.isfinite(score):
            return float(score), reason if isinstance(reason, str) else ""
        if score is None and isinstance(reason, str) and reason:
            return None, reason
        if not self.damaged_said:  # a text or NULL score without a reason: scored again
            self.damaged_said = True
            log.warning(
                "warning: score cache %s holds damaged rows; they are scored again", self.path
            )
        return None

    def _folder_rows(self, folder: bytes) -> dict[str, tuple]:
        """One folder's rows of this model, by name as the walk gives it (os.fsdecode's,
        decoded here once a row rather than encoded once a lookup)."""
        assert self.db is not None
        try:
            rows = self.db.execute(
                "SELECT name, size, mtime_ns, inode, score, reason, sha256 FROM scores "
                "WHERE dir = ? AND model = ?",
                (folder, self.model),
            ).fetchall()
        except sqlite3.DatabaseError:
            return {}
        # a name that is no bytes was never written so: no path's name
        return {r[0].decode(FS_ENCODING, FS_ERRORS): r for r in rows if type(r[0]) is bytes}

    def put(
        self, path: str | Path, key: Key, score: float | None, reason: str, lasting: bool = False
    ) -> None:
        """Remember a score (reason: the decoder's note), or a skip whose reason is
        `lasting` (BadImage.lasting); other skips are tried again next time."""
        if self.db is None or (score is None and not lasting):
            return
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO scores"
                "(dir, name, size, mtime_ns, inode, model, score, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*os.path.split(os.fsencode(path)), *key, self.model, score, reason),
            )
            self._written()
        except sqlite3.DatabaseError as e:  # e.g. another run holds the write lock too long
            self._not_remembered(e)

    def content(self, path: str | Path, key: Key) -> str | None:
        """The SHA-256 remembered for this exact file (put_content), if any: a photo whose
        size a veto has is not hashed again every night while it is unchanged."""
        if self.db is None:
            return None
        path = os.fspath(path)
        cut = path.rfind(os.sep) + 1
        if path[:cut] == self.folder:  # the folder get() has in hand (most photos)
            row = self.rows.get(path[cut:], ())
            same = row[1:4] == key
            sha = row[6] if same else None
        else:
            folder, name = os.path.split(os.fsencode(path))
            try:
                found = self.db.execute(
                    "SELECT sha256 FROM scores WHERE dir = ? AND name = ? AND size = ? "
                    "AND mtime_ns = ? AND inode = ?",
                    (folder, name, *key),
                ).fetchone()
            except sqlite3.DatabaseError:
                return None
            sha = found[0] if found is not None else None
        return sha if isinstance(sha, str) and len(sha) == 64 else None

    def put_content(self, path: str | Path, key: Key, sha256: str) -> None:
        """Remember the SHA-256 of this exact file (key: its size, mtime_ns and inode when
        it was hashed), beside its score."""
        if self.db is None:
            return
        folder, name = os.path.split(os.fsencode(path))
        try:
            self.db.execute(
                "UPDATE scores SET sha256 = ? WHERE dir = ? AND name = ? AND size = ? "
                "AND mtime_ns = ? AND inode = ?",
                (sha256, folder, name, *key),
            )
            self._written()
            text = os.fspath(path)
            cut = text.rfind(os.sep) + 1  # as get() cuts it
            if text[:cut] == self.folder and (row := self.rows.get(text[cut:])) is not None:
                self.rows[text[cut:]] = (*row[:6], sha256)
        except sqlite3.DatabaseError as e:
            self._not_remembered(e)

    def _written(self) -> None:
        self.pending += 1
        if self.pending >= COMMIT_EVERY:
            assert self.db is not None
            self.db.commit()
            self.pending = 0

    def _not_remembered(self, e: sqlite3.DatabaseError) -> None:
        """A full disk or a cache made read-only during the run will not pass: say so once
        (every later run would decode these photos again); a busy moment only costs a few."""
        if _cannot_write(e) and not self.lost:
            self.lost = True
            log.warning(
                "warning: score cache %s: %s; this run's scores are not remembered", self.path, e
            )
        else:
            log.debug("score cache: %s", e)

    @rights.as_root()
    def close(self) -> None:
        if self.db is None:
            return
        try:
            self.db.commit()
        except sqlite3.DatabaseError as e:
            self._not_remembered(e)
        self.db.close()


def open_score_cache(
    path: Path | None, model_file: Path, changes_files: bool, thumbnail: bool = False
) -> ScoreCache | None:
    """The score cache for a run of model_file (path: else the default), scoring JPEGs from
    their previews (`thumbnail`) or not. A run that changes files stops when it cannot be
    used (StateError: no HOME, a folder that cannot be written); a plan needs no state, so
    it runs without one, with a warning."""
    try:
        return ScoreCache(path or default_cache_path(), model_digest(model_file), thumbnail)
    except StateError as e:
        if changes_files:
            hint = " (--no-cache runs without one)" if isinstance(e, CacheError) else ""
            raise StateError(f"{e}{hint}") from None
        log.warning("warning: %s; running without the score cache", e)
        return None
