"""The move journal (SQLite, WAL): what makes a crash harmless.

Before a group of files is moved, its sources are recorded; each step safefs announces
(a temporary copy, a name tried, a name taken, a source removed) is committed before it
happens. On the next start, `recover` (recovery.py) finishes every interrupted move whose
sources had started to go, and rolls back every other one, so each photo exists exactly
once and no temporary file is left. The journal lives in the state directory (state.py);
its queries of past runs are history.py's, the run lock is lock.py's.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from flowersort.base import rights
from flowersort.base.errors import StateError
from flowersort.base.records import MoveAction, MoveState, RunKind, Step, StepKind
from flowersort.safefs import transfer
from flowersort.sorting import recovery
from flowersort.sorting.entries import encode_folder, encode_paths, inserted_id, paths_metadata
from flowersort.sorting.history import CREATED_DIRS, RunHistory
from flowersort.sorting.migrate import absolute_paths
from flowersort.sorting.recovery import recover_one
from flowersort.sorting.state import damaged_file, make_state_dir, read_only, state_dir

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


class JournalDb:
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

    def __init__(self, db: JournalDb, move_id: int):
        self.db, self.move_id = db, move_id
        self.steps: list[Step] = []

    def __call__(self, step: StepKind, path: Path, **details: Any) -> None:
        # absolute, as encode_paths: valid from any working folder
        self.steps.append(Step(StepKind(step), os.path.abspath(path), details))
        text = json.dumps([s.to_json() for s in self.steps])
        try:
            self.db.execute("UPDATE moves SET steps = ? WHERE id = ?", (text, self.move_id))
        except StateError:
            self.steps.pop()  # noted before it happens: it did not happen (safefs undoes
            raise  # a link whose "claimed" note failed)


class Journal(RunHistory):
    """The move journal: runs and their moves, each step committed before it happens; its
    queries of past runs are RunHistory's."""

    @rights.as_root()  # opened and closed with root's rights, written through its files
    def __init__(self, folder: Path):
        make_state_dir(folder)
        path = folder / "journal.sqlite"
        try:
            self.db = JournalDb(path)
            self.db.conn.execute("PRAGMA journal_mode=WAL")
            self.db.conn.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
            self.db.conn.executescript(SCHEMA)
            check = self.db.conn.execute("PRAGMA quick_check").fetchone()[0]
            if check == "ok":
                self._add_columns()
        except sqlite3.Error as e:
            if hasattr(self, "db"):
                self.db.close()
            if damaged_file(e):
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
        absolute_paths(self.db)

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
        self.db = JournalDb(path, connection=read_only(path))
        return self

    def start_run(self, kind: RunKind, src: Path | None, dest: Path | None) -> int:
        cur = self.db.execute(
            "INSERT INTO runs(kind, started, src, dest) VALUES (?, ?, ?, ?)",
            (RunKind(kind).value, time.time(), encode_folder(src), encode_folder(dest)),
        )
        return inserted_id(cur)

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
        `action` tells undo what the move was part of. The reason for its long parameter
        list: the keywords after `action` are safefs.transfer's own, passed through as
        they are (moves.Mover and undo.Undoing each give a different few)."""
        sources = [Path(os.path.abspath(s)) for s in sources]  # as the journal has them
        before = None if keep_source else paths_metadata(sources)
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
            self.set_state(move_id, MoveState.SPLIT)
            raise
        except OSError:
            self.set_state(move_id, MoveState.FAILED)
            raise
        except StateError:
            # the journal cannot take the next step, so the move stops here, whole: from
            # the steps it did take, recovery finishes it (sources had started to go) or
            # takes back every name it took, and removes the temporaries
            try:
                recover_one(sources, keep_source, note.steps, failed=True)
            except OSError as e:
                log.error("journal: cannot tidy up the move of %s: %s", sources[0], e)
            raise
        landed = before and paths_metadata(finals)
        recorded = json.dumps({"before": before, "landed": landed}) if landed else None
        self.db.execute(
            "UPDATE moves SET state = ?, finals = ?, metadata = ? WHERE id = ?",
            (MoveState.DONE.value, encode_paths(finals), recorded, move_id),
        )
        return finals

    def dedupe(self, run: int, sources: list[Path], twins: list[Path]) -> None:
        """transfer.remove_duplicates, journaled: undo copies the twins back."""
        move_id, note = self._start_move(run, sources, False, MoveAction.DEDUPE, twins)
        try:
            transfer.remove_duplicates(sources, twins, note)
        except OSError:
            self.set_state(move_id, MoveState.FAILED)
            raise
        self.set_state(move_id, MoveState.DONE)

    def set_state(self, move_id: int, state: MoveState) -> None:
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
                encode_paths(sources),
                int(keep_source),
                MoveState.STARTED.value,
                action.value,
                finals and encode_paths(finals),
                json.dumps({"before": before}) if before else None,
            ),
        )
        move_id = inserted_id(cur)
        return move_id, JournalNote(self.db, move_id)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """recovery.recover: finish or roll back every move a crash interrupted."""
        return recovery.recover(self)

    # ------------------------------------------------------------------ undo

    def note_created_dirs(self, run: int, folders: list[Path]) -> None:
        """Folders this run created, so that its undo can remove them once empty."""
        self.db.execute(CREATED_DIRS)
        self.db.executemany(
            "INSERT INTO created_dirs(run, path) VALUES (?, ?)",
            [(run, os.fsencode(os.path.abspath(f))) for f in folders],
        )

    def mark_undone(self, run: int) -> None:
        self.db.execute("UPDATE runs SET undone = 1 WHERE id = ?", (run,))
