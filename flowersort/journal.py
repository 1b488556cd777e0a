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
from pathlib import Path

from flowersort import safefs
from flowersort.errors import LockHeld, StateError
from flowersort.xdg import base_dir

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


def state_dir() -> Path:
    return base_dir("XDG_STATE_HOME", ".local/state") / "flowersort"


def _make_state_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "it is not a folder" if isinstance(e, FileExistsError) else e.strerror
        raise StateError(
            f"cannot use the state folder {folder} (journal and lock): {why}"
        ) from None


def _paths(text: str) -> list[Path]:
    return [Path(p) for p in json.loads(text)]


def _text(paths) -> str:
    return json.dumps([os.fspath(p) for p in paths])  # lone surrogates survive as \\udcxx


_held_locks: set[int] = set()  # fds of the run locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a worker): close the lock fds it inherited. The lock stays with
    the parent, but dies with it: a worker that outlives a killed run must not hold it."""
    for fd in _held_locks:
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunLock:
    """An exclusive flock: one moving run at a time for this user (cron overlap)."""

    def __init__(self, folder: Path, wait: bool = False):
        _make_state_dir(folder)
        try:  # never inherited by a program we start (O_CLOEXEC)
            self.fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StateError(
                f"cannot create the run lock {folder / 'lock'}: {e.strerror}"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(
                    "another flowersort run is moving photos; try again later or use --wait"
                ) from None
            raise
        _held_locks.add(self.fd)
        try:  # the holder's pid, for a person looking: not worth failing over (a full disk)
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass

    def release(self) -> None:
        _held_locks.discard(self.fd)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _Db:
    """The journal's connection: any SQLite error (a full disk, a read-only folder, damage)
    becomes a StateError, one line for the user."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=60)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise StateError(f"cannot write the journal {self.path}: {e}") from None

    def close(self) -> None:
        self.conn.close()


def _damaged(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", "")  # Python 3.11+
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(
        words in str(e) for words in ("not a database", "malformed")
    )


def _set_aside(path: Path, why: str) -> StateError:
    """Rename a damaged journal (and its WAL files) out of the way, never delete it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            if os.path.lexists(f"{path}{suffix}"):
                os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    except OSError as e:
        return StateError(f"the journal {path} is damaged ({why}) and cannot be set aside: {e}")
    return StateError(
        f"the journal {path} was damaged ({why}) and is set aside as {aside.name}: the runs "
        "it recorded can no longer be undone, and a move it left unfinished is not checked "
        "(look for .flowersort-tmp-* files in the target); the next run starts a new journal"
    )


class Journal:
    def __init__(self, folder: Path):
        _make_state_dir(folder)
        path = folder / "journal.sqlite"
        try:
            self.db = _Db(path)
            self.db.conn.execute("PRAGMA journal_mode=WAL")
            self.db.conn.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
            self.db.conn.executescript(SCHEMA)
            check = self.db.conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as e:
            if hasattr(self, "db"):
                self.db.close()
            if _damaged(e):
                raise _set_aside(path, str(e)) from None
            raise StateError(f"cannot write the journal {path}: {e}") from None
        if check != "ok":
            self.db.close()
            raise _set_aside(path, check)

    def close(self) -> None:
        self.db.close()

    def start_run(self, kind: str, src: Path | None, dest: Path | None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(kind, started, src, dest) VALUES (?, ?, ?, ?)",
            (kind, time.time(), src and os.fspath(src), dest and os.fspath(dest)),
        )
        return cur.lastrowid

    def finish_run(self, run: int) -> None:
        try:  # informative only: a journal that failed during the run need not fail again
            self.db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run))
        except StateError:
            pass

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

        unwritten: list[str] = []  # the step the journal could not take, if any

        def note(step: str, path: Path) -> None:
            steps.append([step, os.fspath(path)])
            try:
                self.db.execute(
                    "UPDATE moves SET steps = ? WHERE id = ?", (json.dumps(steps), move_id)
                )
            except StateError:
                steps.pop()  # a step is noted before it happens: this one did not
                unwritten.append(step)
                if step == "claimed":  # ... except a link, noted once made: take it back
                    try:
                        safefs._unlink(path)
                    except OSError:
                        pass
                raise

        try:
            finals = safefs.transfer(
                sources, folder, keep_source=keep_source, exact_names=exact_names, note=note
            )
        except OSError:
            self.db.execute("UPDATE moves SET state = 'failed' WHERE id = ?", (move_id,))
            raise
        except StateError:
            # the journal cannot take the next step, so the move stops here, whole: safefs
            # gave back what it had claimed, unless every name was taken already
            try:
                if any(step == "unlink" for step, _ in steps):  # sources going: finish
                    _recover_one(sources, keep_source, steps)
                elif unwritten == ["unlink"]:  # all names taken, no source removed yet
                    claimed = [Path(p) for step, p in steps if step == "claimed"]
                    for final in claimed[-len(sources) :]:
                        safefs._unlink(final)
                for step, tmp in steps:  # fresh random names (O_EXCL): ours alone
                    if step == "tmp" and os.path.lexists(tmp):
                        safefs._unlink(Path(tmp))
            except OSError as e:
                log.error("journal: cannot tidy up the move of %s: %s", sources[0], e)
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
