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
import functools
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from flowersort.base import rights
from flowersort.base.errors import LockHeld, StateError
from flowersort.base.records import MoveAction, MoveState, RunKind, Step, StepKind
from flowersort.base.xdg import base_dir
from flowersort.safefs import attrs, identity, seams, transfer

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
CREATE INDEX IF NOT EXISTS moves_first_source ON moves(json_extract(sources, '$[0]'));
CREATE INDEX IF NOT EXISTS moves_first_final ON moves(json_extract(finals, '$[0]'));
CREATE INDEX IF NOT EXISTS moves_run ON moves(run);
"""


# made when first needed, so that journals of earlier versions gain it too
CREATED_DIRS = "CREATE TABLE IF NOT EXISTS created_dirs (run INTEGER NOT NULL, path BLOB NOT NULL)"


@dataclass
class RunInfo:
    """A classify or copy run that moved photos, for undo --list."""

    id: int
    kind: RunKind  # CLASSIFY (moves) or COPY
    started: float
    finished: float | None  # None: interrupted (or still running)
    src: str | None
    dest: str | None
    undone: bool
    photos: int  # photos moved or copied (each with its sidecars)
    restored: int = 0  # of them, put back by an undo that was stopped half-way
    stopped: bool = False  # ended by a signal (Ctrl-C, SIGTERM) before its last photo

    @property
    def state(self) -> str:
        if self.undone:
            return "undone"
        if self.restored:
            return "partly undone"
        if not self.finished:
            return "interrupted"
        return "stopped" if self.stopped else "done"

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))

    def to_json(self) -> dict:
        return {
            "run": self.id,
            "kind": {RunKind.COPY: "copy", RunKind.TAG: "tag"}.get(self.kind, "move"),
            "started": self.when(),
            "photos": self.photos,
            "state": self.state,
            "src": self.src,
            "dest": self.dest,
        }


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


def _metadata(paths: list[Path]) -> list[dict] | None:
    try:
        return [attrs.metadata(p) for p in paths]
    except OSError:  # gone meanwhile: the move says so itself
        return None


@rights.as_root()
def earlier_target(folder: Path) -> bool:
    """Whether an earlier run moved or copied photos into folder (the journal read only;
    False without one)."""
    try:
        path = state_dir() / "journal.sqlite"
    except StateError:
        return False
    if not path.exists():
        return False
    try:
        journal = Journal.reader(path.parent)
        if journal is None:
            return False
        try:
            dests = journal.targets()
        finally:
            journal.close()
    except (sqlite3.Error, StateError):
        return False
    real = os.path.realpath(folder)
    return any(os.path.realpath(dest) == real for dest in dests)


@rights.as_root()
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


TAKES_A_NAME = (StepKind.CLAIM, StepKind.CLAIMED, StepKind.TMP)  # a name in the target


def _absolute(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def _rowid(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT made (always one: the journal's tables have ids)."""
    if cursor.lastrowid is None:
        raise StateError("the journal made no row")
    return cursor.lastrowid


def _steps(text: str) -> list[Step]:
    return [Step.from_json(item) for item in json.loads(text)]


def _text(paths) -> str:
    """Absolute: recovery and undo may run from another folder (cron starts in $HOME)."""
    return json.dumps([os.path.abspath(p) for p in paths])  # lone surrogates survive as \\udcxx


def _folder_value(folder: Path | None) -> str | bytes | None:
    """A run's src or dest as stored: text, or its bytes where the name is not UTF-8 (a
    Latin-1 album: SQLite's text cannot hold a lone surrogate)."""
    if folder is None:
        return None
    name = os.fspath(folder)
    try:
        name.encode()
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _folder_name(value: str | bytes | None) -> str | None:
    return None if value is None else os.fsdecode(value)


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

    @rights.as_root()
    def __init__(self, folder: Path, wait: bool = False):
        _make_state_dir(folder)
        try:  # never inherited by a program we start (O_CLOEXEC)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a link: refused
            self.fd = os.open(folder / "lock", flags, 0o644)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
            raise StateError(f"cannot create the run lock {folder / 'lock'}: {why}") from None
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


class FolderLock:
    """An exclusive flock on a folder itself (its own file descriptor): runs over the same
    archive or target with different state folders (root's cron and the user's shell)
    wait for each other or exit 3 as two runs with the same one do. A filesystem that
    cannot lock (some FUSE ones) is not locked."""

    def __init__(self, folder: Path, wait: bool = False):
        self.fd: int | None = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(
                    f"another flowersort run is moving photos in {folder}; try again later "
                    "or use --wait"
                ) from None
            log.debug("%s cannot be locked: %s", folder, e.strerror)
            return
        _held_locks.add(self.fd)

    def release(self) -> None:
        if self.fd is not None:
            _held_locks.discard(self.fd)
            os.close(self.fd)  # the lock goes with it
            self.fd = None


class _Db:
    """The journal's connection: any SQLite error (a full disk, a read-only folder, damage)
    becomes a StateError, one line for the user."""

    def __init__(self, path: Path, connection: sqlite3.Connection | None = None):
        self.path = path
        self.conn = connection or sqlite3.connect(path, isolation_level=None, timeout=60)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise StateError(f"cannot write the journal {self.path}: {e}") from None

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        try:
            return self.conn.executemany(sql, rows)
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


class JournalNote:
    """safefs's note() for one journaled move: each step is committed before it happens.
    `steps`: what the journal holds of the move, for transfer's clean-up."""

    def __init__(self, db: _Db, move_id: int):
        self.db, self.move_id = db, move_id
        self.steps: list[Step] = []

    def __call__(self, step: StepKind, path: Path, **details: Any) -> None:
        # absolute, as _text: valid from any working folder
        self.steps.append(Step(StepKind(step), os.path.abspath(path), details))
        text = json.dumps([s.to_json() for s in self.steps])
        try:
            self.db.execute("UPDATE moves SET steps = ? WHERE id = ?", (text, self.move_id))
        except StateError:
            self.steps.pop()  # noted before it happens: it did not happen (safefs undoes
            raise  # a link whose "claimed" note failed)


class DoneMove(NamedTuple):
    """A move undo can take back; for a dedupe, the finals are the twins that stayed."""

    sources: list[Path]
    finals: list[Path]
    keep_source: bool
    action: MoveAction


class Journal:
    @rights.as_root()  # opened and closed with root's rights, written through its files
    def __init__(self, folder: Path):
        _make_state_dir(folder)
        path = folder / "journal.sqlite"
        try:
            self.db = _Db(path)
            self.db.conn.execute("PRAGMA journal_mode=WAL")
            self.db.conn.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
            self.db.conn.executescript(SCHEMA)
            check = self.db.conn.execute("PRAGMA quick_check").fetchone()[0]
            if check == "ok":
                self._add_columns()
        except sqlite3.Error as e:
            if hasattr(self, "db"):
                self.db.close()
            if _damaged(e):
                raise _set_aside(path, str(e)) from None
            raise StateError(f"cannot write the journal {path}: {e}") from None
        if check != "ok":
            self.db.close()
            raise _set_aside(path, check)

    def _add_columns(self) -> None:
        """Journals written by older versions gain the columns added since."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(moves)")}
        if "action" not in have:
            self.db.execute("ALTER TABLE moves ADD COLUMN action TEXT NOT NULL DEFAULT 'move'")
        if "metadata" not in have:
            self.db.execute("ALTER TABLE moves ADD COLUMN metadata TEXT")
        if "stopped" not in {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}:
            self.db.execute("ALTER TABLE runs ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0")
        self._absolute_paths()

    def _absolute_paths(self) -> None:
        """Journals written before paths were absolute hold a move of a run given relative
        folders relative to the folder it was started in: recovery or undo started in
        another folder (cron's) took its files for missing. That folder is found again
        from the run's src and dest, which were recorded as the folder + the argument."""
        rows = self.db.execute(
            "SELECT moves.id, sources, steps, finals, src, dest FROM moves "
            "JOIN runs ON runs.id = moves.run WHERE substr(sources, 3, 1) != '/'"
        ).fetchall()
        for move_id, sources, text, finals, src, dest in rows:
            if not _parses(sources, text, finals or "[]"):
                continue  # damaged: recover sets it aside
            steps = _steps(text)
            started_in = _started_in(src, [Path(p) for p in json.loads(sources)], dest, steps)
            if started_in is None:
                continue
            absolute = functools.partial(_absolute, started_in)
            steps = [Step(s.kind, absolute(s.path), s.details) for s in steps]
            self.db.execute(
                "UPDATE moves SET sources = ?, steps = ?, finals = ? WHERE id = ?",
                (
                    json.dumps([absolute(p) for p in json.loads(sources)]),
                    json.dumps([s.to_json() for s in steps]),
                    finals and json.dumps([absolute(p) for p in json.loads(finals)]),
                    move_id,
                ),
            )

    @rights.as_root()
    def close(self) -> None:
        self.db.close()

    @classmethod
    @rights.as_root()
    def reader(cls, folder: Path) -> Journal | None:
        """The journal opened to read only, writing nothing (undo --list works with a
        read-only state folder); None when there is none yet."""
        path = folder / "journal.sqlite"
        if not path.exists():
            return None
        self = cls.__new__(cls)
        self.db = _Db(path, connection=read_only(path))
        return self

    def start_run(self, kind: RunKind, src: Path | None, dest: Path | None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(kind, started, src, dest) VALUES (?, ?, ?, ?)",
            (RunKind(kind).value, time.time(), _folder_value(src), _folder_value(dest)),
        )
        return _rowid(cur)

    def finish_run(self, run: int, stopped: bool = False) -> None:
        """The run ended (`stopped`: by a signal, before its last photo)."""
        try:  # informative only: a journal that failed during the run need not fail again
            self.db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run))
            if stopped:
                self.db.execute("UPDATE runs SET stopped = 1 WHERE id = ?", (run,))
        except StateError:
            pass

    def transfer(
        self,
        run: int,
        sources: list[Path],
        folder: Path,
        *,
        keep_source=False,
        exact_names=None,
        action: MoveAction = MoveAction.MOVE,
        metadata: list[dict] | None = None,
        undoing: bool = False,
        present: set[str] | None = None,
        follow: bool = False,
    ) -> list[Path]:
        """safefs.transfer with every step committed to the journal before it happens;
        `action` tells undo what the move was part of."""
        sources = [Path(os.path.abspath(s)) for s in sources]  # as the journal has them
        before = None if keep_source else _metadata(sources)
        move_id, note = self._start_move(
            run, sources, keep_source, MoveAction(action), before=before
        )
        try:
            finals = transfer.transfer(
                sources,
                folder,
                keep_source=keep_source,
                exact_names=exact_names,
                note=note,
                metadata=metadata,
                undoing=undoing,
                present=present,
                follow=follow,
            )
        except transfer.GroupSplit:
            self._set_state(move_id, MoveState.SPLIT)
            raise
        except OSError:
            self._set_state(move_id, MoveState.FAILED)
            raise
        except StateError:
            # the journal cannot take the next step, so the move stops here, whole: from
            # the steps it did take, recovery finishes it (sources had started to go) or
            # takes back every name it took, and removes the temporaries
            try:
                _recover_one(sources, keep_source, note.steps, failed=True)
            except OSError as e:
                log.error("journal: cannot tidy up the move of %s: %s", sources[0], e)
            raise
        landed = before and _metadata(finals)
        recorded = json.dumps({"before": before, "landed": landed}) if landed else None
        self.db.execute(
            "UPDATE moves SET state = ?, finals = ?, metadata = ? WHERE id = ?",
            (MoveState.DONE.value, _text(finals), recorded, move_id),
        )
        return finals

    def moved_metadata(self, run: int) -> dict[tuple[Path, ...], tuple[list, list]]:
        """For each move of `run`, by its finals: what its files were like before it (mode,
        owner, times, tags: safefs.metadata) and as they landed. Read once per undo; moves
        journaled before this record have none."""
        rows = self.db.execute(
            "SELECT finals, metadata FROM moves "
            "WHERE run = ? AND state = 'done' AND metadata IS NOT NULL",
            (run,),
        ).fetchall()
        out = {}
        for finals, text in rows:
            recorded = json.loads(text)
            if recorded.get("landed"):  # not if recovery could not read them
                out[tuple(_paths(finals))] = (recorded["before"], recorded["landed"])
        return out

    def dedupe(self, run: int, sources: list[Path], twins: list[Path]) -> None:
        """safefs.remove_duplicates, journaled: undo copies the twins back."""
        move_id, note = self._start_move(run, sources, False, MoveAction.DEDUPE, twins)
        try:
            transfer.remove_duplicates(sources, twins, note)
        except OSError:
            self._set_state(move_id, MoveState.FAILED)
            raise
        self._set_state(move_id, MoveState.DONE)

    def _set_state(self, move_id: int, state: MoveState) -> None:
        self.db.execute("UPDATE moves SET state = ? WHERE id = ?", (state.value, move_id))

    def _start_move(
        self,
        run: int,
        sources: list[Path],
        keep_source: bool,
        action: MoveAction = MoveAction.MOVE,
        finals: list[Path] | None = None,
        before: list[dict] | None = None,
    ) -> tuple[int, JournalNote]:
        """A new journaled move, and the note() that commits each of its steps. `before`,
        its files' metadata, is kept from the start: undo needs it for a move a crash
        stopped and recovery finished too."""
        cur = self.db.execute(
            "INSERT INTO moves(run, sources, keep_source, state, action, finals, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run,
                _text(sources),
                int(keep_source),
                MoveState.STARTED.value,
                action.value,
                finals and _text(finals),
                json.dumps({"before": before}) if before else None,
            ),
        )
        move_id = _rowid(cur)
        return move_id, JournalNote(self.db, move_id)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Finish or roll back every move a crash interrupted; returns how many. One that
        cannot be (an I/O error) is said and left for the next run."""
        rows = self.db.execute(
            "SELECT id, sources, keep_source, steps, action, finals, state, metadata FROM moves "
            "WHERE state IN ('started', 'failed')"
        ).fetchall()
        recovered = 0
        for move_id, sources, keep_source, steps, action, twins, was, recorded in rows:
            # a failed move cleaned up after itself unless something stopped that too (a
            # full disk, an I/O error): look again for anything it left
            if not _parses(sources, steps, twins if action == MoveAction.DEDUPE else "[]"):
                self._set_aside_row(move_id)
                continue
            try:
                failed = was == MoveState.FAILED
                if action == MoveAction.DEDUPE:
                    state, finals = _recover_dedupe(
                        _paths(sources), _paths(twins), _steps(steps), failed=failed
                    )
                else:
                    state, finals = _recover_one(
                        _paths(sources), bool(keep_source), _steps(steps), failed=failed
                    )
            except OSError as e:  # left as it is, to be tried again by the next run
                log.error(
                    "could not recover the move of %s (%s); the next run tries again",
                    json.loads(sources)[0],
                    e.strerror or e,
                )
                continue
            if recorded and state == MoveState.DONE:  # as transfer records a move it finished
                recorded = json.dumps({**json.loads(recorded), "landed": _metadata(finals)})
            self.db.execute(
                "UPDATE moves SET state = ?, finals = ?, metadata = ? WHERE id = ?",
                (state.value, _text(finals), recorded, move_id),
            )
            if was == MoveState.STARTED:
                recovered += 1
                log.warning(
                    "recovered an interrupted move of %s: %s", json.loads(sources)[0], state
                )
        return recovered

    def _set_aside_row(self, move_id: int) -> None:
        """A move whose record does not parse (the journal damaged by hand or by a disk) is
        never acted on: its state becomes 'damaged', kept for a person to look at."""
        self._set_state(move_id, MoveState.DAMAGED)
        log.warning(
            "warning: move %d of the journal %s is damaged and set aside (not finished, "
            "not undone): look for .flowersort-tmp-* files in its target",
            move_id,
            self.db.path,
        )

    # ------------------------------------------------------------------ undo

    def last_run(self) -> tuple[int, str] | None:
        return self.db.execute(
            "SELECT id, kind FROM runs WHERE kind IN ('classify', 'copy') AND undone = 0 "
            "AND EXISTS (SELECT 1 FROM moves WHERE run = runs.id AND state IN ('done', 'split')) "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def done_moves(self, run: int) -> list[DoneMove]:
        """Each move of `run` done, the last first."""
        rows = self.db.execute(
            "SELECT sources, finals, keep_source, action FROM moves "
            "WHERE run = ? AND state = 'done' ORDER BY id DESC",
            (run,),
        ).fetchall()
        return [DoneMove(_paths(s), _paths(f), bool(k), MoveAction(a)) for s, f, k, a in rows]

    def restored_by_undo(self, run: int) -> set[tuple[Path, ...]]:
        """The finals of `run`'s moves that a later undo (one interrupted, say) already
        moved back: its moves' sources (a set: undo asks once per move)."""
        rows = self.db.execute(
            "SELECT m.sources FROM moves m JOIN runs r ON m.run = r.id "
            "WHERE r.kind = 'undo' AND r.id > ? AND m.state = 'done' AND m.keep_source = 0",
            (run,),
        ).fetchall()
        return {tuple(_paths(sources)) for (sources,) in rows}

    def removed_duplicates(self, run: int, sources: list[Path]) -> dict[Path, dict]:
        """The metadata (safefs.metadata) of each source `run` removed as a duplicate, to
        give it back on undo (none from journals older than this record)."""
        rows = self.db.execute(
            "SELECT steps FROM moves WHERE run = ? AND action = 'dedupe' AND sources = ?",
            (run, _text(sources)),
        ).fetchall()
        steps = [s for (text,) in rows for s in _steps(text)]
        return {Path(s.path): s.details["kept"] for s in steps if _kept(s)}

    def split_moves(self, run: int) -> list[tuple[list[Path], list[Path]]]:
        """Groups a failed move left in two places (see safefs.GroupSplit), with the
        final names they were given."""
        rows = self.db.execute(
            "SELECT sources, steps FROM moves WHERE run = ? AND state = 'split'", (run,)
        ).fetchall()
        out = []
        for sources, steps in rows:
            claimed = [Path(s.path) for s in _steps(steps) if s.kind == StepKind.CLAIMED]
            out.append((_paths(sources), claimed[-len(_paths(sources)) :]))
        return out

    def earlier_final(self, source: Path, dest: Path) -> Path | None:
        """Where the latest run not undone put the file that was at source, if inside dest."""
        where, params = first_path_is("moves.sources", source)
        row = self.db.execute(
            "SELECT finals FROM moves JOIN runs ON runs.id = moves.run "
            "WHERE moves.state = 'done' AND runs.undone = 0 AND runs.kind IN ('classify', 'copy')"
            f" AND {where} ORDER BY moves.id DESC LIMIT 1",
            params,
        ).fetchone()
        finals = _paths(row[0]) if row is not None and row[0] else []
        if not finals:
            return None
        final = finals[0]
        inside = os.path.commonpath([os.path.abspath(final), os.path.abspath(dest)])
        return final if inside == os.path.abspath(dest) else None

    def runs(self, run: int | None = None) -> list[RunInfo]:
        """The classify and copy runs that moved photos, oldest first (or just `run`)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        stopped = "stopped" if "stopped" in columns else "0"  # a journal of an older version
        rows = self.db.execute(
            "SELECT runs.id, kind, started, finished, src, dest, undone, COUNT(moves.id), "
            f"{stopped} "
            "FROM runs JOIN moves ON moves.run = runs.id AND moves.state IN ('done', 'split') "
            "AND moves.action != 'dedupe-sidecars' "
            "WHERE kind IN ('classify', 'copy') AND (? IS NULL OR runs.id = ?) "
            "GROUP BY runs.id ORDER BY runs.id",
            (run, run),
        ).fetchall()
        infos = [
            RunInfo(
                id=row[0],
                kind=RunKind(row[1]),
                started=row[2],
                finished=row[3],
                src=_folder_name(row[4]),
                dest=_folder_name(row[5]),
                undone=bool(row[6]),
                photos=row[7],
                stopped=bool(row[8]),
            )
            for row in rows
        ]
        for info in infos:
            if not info.undone and (restored := self.restored_by_undo(info.id)):
                info.restored = sum(
                    tuple(m.finals) in restored and m.action != MoveAction.DEDUPE_SIDECARS
                    for m in self.done_moves(info.id)
                )
        return infos

    def note_created_dirs(self, run: int, folders: list[Path]) -> None:
        """Folders this run created, so that its undo can remove them once empty."""
        self.db.execute(CREATED_DIRS)
        self.db.executemany(
            "INSERT INTO created_dirs(run, path) VALUES (?, ?)",
            [(run, os.fsencode(os.path.abspath(f))) for f in folders],
        )

    def created_dirs(self, run: int) -> list[Path]:
        self.db.execute(CREATED_DIRS)
        rows = self.db.execute("SELECT path FROM created_dirs WHERE run = ?", (run,)).fetchall()
        return [Path(os.fsdecode(row[0])) for row in rows]

    def mark_undone(self, run: int) -> None:
        self.db.execute("UPDATE runs SET undone = 1 WHERE id = ?", (run,))

    # ------------------------------------------------------------ corrections

    def undone_since(self) -> set[int | Path]:
        """The runs undone, and the paths any undo took out of a target (their photos went
        back: no veto), an undo stopped half-way included."""
        undone: set[int | Path] = {
            r for (r,) in self.db.execute("SELECT id FROM runs WHERE undone = 1")
        }
        for (text,) in self.db.execute(
            "SELECT sources FROM moves WHERE run IN (SELECT id FROM runs WHERE kind = 'undo') "
            "AND +state = 'done'"  # by the index of runs (+: not by the state's)
        ):
            undone.update(Path(os.path.abspath(p)) for p in json.loads(text or "[]"))
        return undone

    _finals: set[str] | None = None  # a journal without the index of finals: all, read once

    def moved_to(self, path: Path) -> bool:
        """Whether a live classify or copy run moved a photo to path, by the index of
        finals; a journal older than that index is read whole, once."""
        live = (
            "FROM moves JOIN runs ON runs.id = moves.run WHERE moves.state = 'done' "
            "AND runs.undone = 0 AND runs.kind IN ('classify', 'copy')"
        )
        index = "SELECT 1 FROM sqlite_master WHERE name = 'moves_first_final'"
        if self._finals is None and not self.db.execute(index).fetchone():
            rows = self.db.execute(f"SELECT finals {live}")
            self._finals = {os.path.abspath(p) for (t,) in rows for p in json.loads(t or "[]")}
        if self._finals is not None:
            return os.path.abspath(path) in self._finals
        where, params = first_path_is("moves.finals", path)
        query = f"SELECT 1 {live} AND {where} LIMIT 1"
        return self.db.execute(query, params).fetchone() is not None

    def targets(self, but: int | None = None) -> list[str]:
        """Every target a run (other than run `but`) moved or copied into."""
        rows = self.db.execute(
            "SELECT DISTINCT dest FROM runs WHERE dest IS NOT NULL AND id IS NOT ?", (but,)
        ).fetchall()
        return [os.fsdecode(dest) for (dest,) in rows]


def first_path_is(column: str, path: str | os.PathLike) -> tuple[str, tuple]:
    """SQL (and its parameters) for "the first path in this JSON column is path", by the
    column's index (moves_first_source, moves_first_final): a journal of many moves is not
    read whole. A name that is not UTF-8 is compared as JSON text, without the index."""
    path = os.path.abspath(path)
    try:
        path.encode()
        return f"json_extract({column}, '$[0]') = ?", (path,)
    except UnicodeEncodeError:
        first = "[" + json.dumps(path)  # the first path, whole: a quote ends it
        return f"substr({column}, 1, ?) = ?", (len(first), first)


def _parses(sources: str, steps: str, twins: str) -> bool:
    """Whether a move's record is what the journal writes: lists of paths and of steps
    ([step, path, details?])."""

    try:
        paths, twins, steps = json.loads(sources), json.loads(twins), json.loads(steps)
    except (TypeError, ValueError):
        return False
    return (
        isinstance(paths, list)
        and isinstance(twins, list)
        and paths != []
        and all(isinstance(p, str) for p in paths + twins)
        and isinstance(steps, list)
        and all(Step.parses(step) for step in steps)
    )


def _recover_one(
    sources: list[Path], keep_source: bool, steps: list[Step], failed: bool = False
) -> tuple[MoveState, list[Path]]:
    temps = _paths_of(steps, StepKind.TMP)
    claimed = _paths_of(steps, StepKind.CLAIMED)
    noted = {Path(s.path): s.details for s in steps if s.kind == StepKind.CLAIMED and s.details}
    # a last try cut short by the crash: linked or not (an earlier try followed by another
    # one failed: that name was never ours)
    cut_short = [Path(steps[-1].path)] if steps and steps[-1].kind == StepKind.CLAIM else []
    # without hard links: names taken with an empty file, and one perhaps taken that way
    # as the crash came (only an empty file made since it was noted can be that one)
    created = _paths_of(steps, StepKind.CREATED)
    if steps and steps[-1].kind == StepKind.CREATE:
        path, at = Path(steps[-1].path), steps[-1].details["at"]
        if _empty_since(path, at - 2_000_000_000):  # FAT times are 2 s coarse
            created.append(path)
    # sources had started to go, and were not being put back
    removing = bool(_paths_of(steps, StepKind.UNLINK)) and not _paths_of(steps, StepKind.ROLLBACK)
    stand_ins = [p for p in sources + temps if p.exists()]

    def linked_to_ours(path: Path) -> bool:  # a link to one of our own files, by inode
        return path.exists() and any(os.path.samefile(path, s) for s in stand_ins)

    def ours(path: Path) -> bool:
        """A name this move took: still the file noted when it was taken (its temporary
        may be gone) and the same bytes as a source still there, so removing it loses
        nothing; or, cut short, a link to one of our files."""
        if linked_to_ours(path):
            return True
        if path in created and path.exists():  # ours: empty, or our copy renamed over it
            return path.stat().st_size == 0 or any(identity.same_bytes(path, s) for s in stand_ins)
        if path not in noted or not path.exists():
            return False
        same = {k: v for k, v in identity.identity(path).items() if k in noted[path]}
        return same == noted[path] and any(identity.same_bytes(path, s) for s in stand_ins)

    if not removing or keep_source:
        # no source is gone for good: put back those removed before a rollback, take back
        # every name we took, and the temporaries
        for source, final in zip(sources, claimed[-len(sources) :]):
            if source in _paths_of(steps, StepKind.UNLINK):
                if not os.path.lexists(source) and final.exists():
                    transfer.put_back(final, source)
        stand_ins = [p for p in sources + temps if p.exists()]
        for path in set(claimed + cut_short + created):
            if path not in sources and ours(path):
                seams.remove(path)
        state = MoveState.FAILED_CLEAN if failed else MoveState.ROLLED_BACK
        finals = []
    else:
        # sources had started to go, so every final name was taken: finish the job
        finals = claimed[-len(sources) :]
        for source, final in zip(sources, finals):
            if source.exists() and final.exists() and identity.same_file(source, final):
                seams.remove(source)
            elif not final.exists() and not failed:
                log.error("journal: %s is missing at %s", source, final)
        state = MoveState.DONE
    for tmp in temps:
        if tmp.exists():
            seams.remove(tmp)
    return state, finals


def _started_in(
    src: str | None, sources: list[Path], dest: str | None, steps: list[Step]
) -> str | None:
    """The folder a run was started in, from its src (that folder + the src argument, as
    Path.absolute made it) and a source relative to that folder (the src argument + the
    rest): the prefix of src left when the argument is taken off its end. The dest and
    the names the move took must agree, when there are any."""
    if not src or not sources or sources[0].is_absolute():
        return None
    found = []
    parts, first = Path(src).parts, sources[0].parts
    for k in range(len(first)):  # the src argument: the first k parts of the source
        if k and parts[-k:] != first[:k]:
            continue
        base = Path(*parts[: len(parts) - k]) if k else Path(src)
        taken = [Path(s.path) for s in steps if s.kind in TAKES_A_NAME]
        if (
            dest
            and taken
            and not all(
                os.path.commonpath([os.path.normpath(base / t), os.path.normpath(dest)])
                == os.path.normpath(dest)
                for t in taken
                if not t.is_absolute()
            )
        ):
            continue
        found.append(str(base))
    return found[0] if len(found) == 1 else None


def _empty_since(path: Path, since_ns: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_size == 0 and st.st_mtime_ns >= since_ns


def _recover_dedupe(
    sources: list[Path], twins: list[Path], steps: list[Step], failed: bool = False
) -> tuple[MoveState, list[Path]]:
    """A dedupe cut short: finish it if sources had started to go (never removing one that
    is no longer its twin's copy), else give back any source removed from its twin."""
    unlinked = _paths_of(steps, StepKind.UNLINK)
    if unlinked and not failed and not _paths_of(steps, StepKind.ROLLBACK):
        for source, twin in zip(sources, twins):
            if source.exists() and twin.exists() and not os.path.samefile(source, twin):
                if identity.same_bytes(source, twin):
                    seams.remove(source)
        return MoveState.DONE, twins
    kept = {Path(s.path): s.details["kept"] for s in steps if _kept(s)}
    for source, twin in zip(sources, twins):
        if source in unlinked and not source.exists() and twin.exists():
            transfer.put_back(twin, source, link=False)
            if source in kept:
                attrs.set_metadata(source, kept[source])
    for tmp in _paths_of(steps, StepKind.TMP):
        if tmp.exists():
            seams.remove(tmp)
    return (MoveState.FAILED_CLEAN if failed else MoveState.ROLLED_BACK), []


def _paths_of(steps: list[Step], kind: StepKind) -> list[Path]:
    return [Path(s.path) for s in steps if s.kind == kind]


def _kept(step: Step) -> bool:
    """A dedupe's unlink that recorded the removed file's metadata (newer journals)."""
    return step.kind == StepKind.UNLINK and "kept" in step.details
