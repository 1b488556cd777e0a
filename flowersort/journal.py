"""The move journal (SQLite, WAL) and the run lock: what makes a crash harmless.

Before a group of files is moved, its sources are recorded; each step safefs announces
(a temporary copy, a name tried, a name taken, a source removed) is committed before it
happens. On the next start, `recover` finishes every interrupted move whose sources had
started to go, and rolls back every other one, so each photo exists exactly once and no
temporary file is left. The journal and the lock live in the state directory
($XDG_STATE_HOME/flowersort, else ~/.local/state/flowersort).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from flowersort import safefs
from flowersort.errors import LockHeld

log = logging.getLogger("flowersort")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    src TEXT, dest TEXT, undone INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id),
    sources TEXT NOT NULL, keep_source INTEGER NOT NULL, state TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]', finals TEXT
);
CREATE INDEX IF NOT EXISTS moves_state ON moves(state);
"""


# made when first needed, so that journals of earlier versions gain it too
CREATED_DIRS = "CREATE TABLE IF NOT EXISTS created_dirs (run INTEGER NOT NULL, path BLOB NOT NULL)"


@dataclass
class RunInfo:
    """A classify or copy run that moved photos, for undo --list."""

    id: int
    kind: str  # "classify" (moves) or "copy"
    started: float
    finished: float | None  # None: interrupted (or still running)
    src: str | None
    dest: str | None
    undone: bool
    photos: int  # photos moved or copied (each with its sidecars)

    @property
    def state(self) -> str:
        return "undone" if self.undone else "done" if self.finished else "interrupted"

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))

    def to_json(self) -> dict:
        return {
            "run": self.id,
            "kind": "copy" if self.kind == "copy" else "move",
            "started": self.when(),
            "photos": self.photos,
            "state": self.state,
            "src": self.src,
            "dest": self.dest,
        }


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "flowersort"


def _paths(text: str) -> list[Path]:
    return [Path(p) for p in json.loads(text)]


def _text(paths) -> str:
    return json.dumps([os.fspath(p) for p in paths])  # lone surrogates survive as \\udcxx


class RunLock:
    """An exclusive flock: one moving run at a time for this user (cron overlap)."""

    def __init__(self, folder: Path, wait: bool = False):
        folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(
                    "another flowersort run is moving photos; try again later or use --wait"
                ) from None
            raise
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Journal:
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "journal.sqlite"
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def start_run(self, kind: str, src: Path | None, dest: Path | None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(kind, started, src, dest) VALUES (?, ?, ?, ?)",
            (kind, time.time(), src and os.fspath(src), dest and os.fspath(dest)),
        )
        return cur.lastrowid

    def finish_run(self, run: int) -> None:
        self.db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run))

    def transfer(
        self, run: int, sources: list[Path], folder: Path, *, keep_source=False, exact_names=None
    ) -> list[Path]:
        """safefs.transfer with every step committed to the journal before it happens."""
        cur = self.db.execute(
            "INSERT INTO moves(run, sources, keep_source, state) VALUES (?, ?, ?, 'started')",
            (run, _text(sources), int(keep_source)),
        )
        move_id = cur.lastrowid
        steps: list[list[str]] = []

        def note(step: str, path: Path) -> None:
            steps.append([step, os.fspath(path)])
            self.db.execute("UPDATE moves SET steps = ? WHERE id = ?", (json.dumps(steps), move_id))

        try:
            finals = safefs.transfer(
                sources, folder, keep_source=keep_source, exact_names=exact_names, note=note
            )
        except OSError:
            self.db.execute("UPDATE moves SET state = 'failed' WHERE id = ?", (move_id,))
            raise
        self.db.execute(
            "UPDATE moves SET state = 'done', finals = ? WHERE id = ?", (_text(finals), move_id)
        )
        return finals

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Finish or roll back every move a crash interrupted; returns how many."""
        rows = self.db.execute(
            "SELECT id, sources, keep_source, steps FROM moves WHERE state = 'started'"
        ).fetchall()
        for move_id, sources, keep_source, steps in rows:
            state, finals = _recover_one(_paths(sources), bool(keep_source), json.loads(steps))
            self.db.execute(
                "UPDATE moves SET state = ?, finals = ? WHERE id = ?",
                (state, _text(finals), move_id),
            )
            log.warning("recovered an interrupted move of %s: %s", json.loads(sources)[0], state)
        return len(rows)

    # ------------------------------------------------------------------ undo

    def last_run(self) -> tuple[int, str] | None:
        return self.db.execute(
            "SELECT id, kind FROM runs WHERE kind IN ('classify', 'copy') AND undone = 0 "
            "AND EXISTS (SELECT 1 FROM moves WHERE run = runs.id AND state = 'done') "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def done_moves(self, run: int) -> list[tuple[list[Path], list[Path], bool]]:
        rows = self.db.execute(
            "SELECT sources, finals, keep_source FROM moves WHERE run = ? AND state = 'done' "
            "ORDER BY id DESC",
            (run,),
        ).fetchall()
        return [(_paths(s), _paths(f), bool(k)) for s, f, k in rows]

    def earlier_final(self, source: Path, dest: Path) -> Path | None:
        """Where the latest run not undone put the file that was at source, if inside dest."""
        first = "[" + json.dumps(os.fspath(source))  # sources[0], whole: a quote ends it
        row = self.db.execute(
            "SELECT finals FROM moves JOIN runs ON runs.id = moves.run "
            "WHERE moves.state = 'done' AND runs.undone = 0 AND runs.kind IN ('classify', 'copy')"
            " AND substr(moves.sources, 1, ?) = ? ORDER BY moves.id DESC LIMIT 1",
            (len(first), first),
        ).fetchone()
        finals = _paths(row[0]) if row is not None and row[0] else []
        if not finals:
            return None
        final = finals[0]
        inside = os.path.commonpath([os.path.abspath(final), os.path.abspath(dest)])
        return final if inside == os.path.abspath(dest) else None

    def runs(self, run: int | None = None) -> list[RunInfo]:
        """The classify and copy runs that moved photos, oldest first (or just `run`)."""
        rows = self.db.execute(
            "SELECT runs.id, kind, started, finished, src, dest, undone, COUNT(moves.id) "
            "FROM runs JOIN moves ON moves.run = runs.id AND moves.state = 'done' "
            "WHERE kind IN ('classify', 'copy') AND (? IS NULL OR runs.id = ?) "
            "GROUP BY runs.id ORDER BY runs.id",
            (run, run),
        ).fetchall()
        return [RunInfo(*row[:6], bool(row[6]), row[7]) for row in rows]

    def note_created_dirs(self, run: int, folders: list[Path]) -> None:
        """Folders this run created, so that its undo can remove them once empty."""
        self.db.execute(CREATED_DIRS)
        self.db.executemany(
            "INSERT INTO created_dirs(run, path) VALUES (?, ?)",
            [(run, os.fsencode(f)) for f in folders],
        )

    def created_dirs(self, run: int) -> list[Path]:
        self.db.execute(CREATED_DIRS)
        rows = self.db.execute("SELECT path FROM created_dirs WHERE run = ?", (run,)).fetchall()
        return [Path(os.fsdecode(row[0])) for row in rows]

    def mark_undone(self, run: int) -> None:
        self.db.execute("UPDATE runs SET undone = 1 WHERE id = ?", (run,))


def _recover_one(
    sources: list[Path], keep_source: bool, steps: list[list[str]]
) -> tuple[str, list[Path]]:
    temps = [Path(p) for step, p in steps if step == "tmp"]
    claimed = [Path(p) for step, p in steps if step == "claimed"]
    # names we may have linked: those noted as taken, and a last try cut short by the
    # crash (an earlier try followed by another one failed: that name was never ours)
    linked = claimed + [Path(steps[-1][1])] if steps and steps[-1][0] == "claim" else claimed
    removing = any(step == "unlink" for step, _ in steps)
    stand_ins = [p for p in sources + temps if p.exists()]

    def ours(path: Path) -> bool:  # a link to one of our own files, by inode
        return path.exists() and any(os.path.samefile(path, s) for s in stand_ins)

    if not removing or keep_source:
        # no source was touched: take back every name we linked, and the temporaries
        for path in set(linked):
            if ours(path) and path not in sources:
                safefs._unlink(path)
        state, finals = "rolled-back", []
    else:
        # sources had started to go, so every final name was taken: finish the job
        finals = claimed[-len(sources) :]
        for source, final in zip(sources, finals):
            if source.exists() and final.exists() and safefs.same_file(source, final):
                safefs._unlink(source)
            elif not final.exists():
                log.error("journal: %s is missing at %s", source, final)
        state = "done"
    for tmp in temps:
        if tmp.exists():
            safefs._unlink(tmp)
    return state, finals
