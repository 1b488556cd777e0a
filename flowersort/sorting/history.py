"""The journal's read side: the runs it recorded and their moves, as undo, undo --list
and the corrections store ask for them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from flowersort.base.records import MoveAction, RunKind, StepKind
from flowersort.sorting.entries import (
    decode_folder,
    decode_paths,
    decode_steps,
    encode_paths,
    first_path_is,
)
from flowersort.sorting.recovery import kept_unlink

if TYPE_CHECKING:
    from flowersort.sorting.journal import JournalDb


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


class DoneMove(NamedTuple):
    """A move undo can take back; for a dedupe, the finals are the twins that stayed."""

    sources: list[Path]
    finals: list[Path]
    keep_source: bool
    action: MoveAction


class RunHistory:
    """The queries of the journal's past runs (Journal's base: `db` is its connection)."""

    db: JournalDb

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
                out[tuple(decode_paths(finals))] = (recorded["before"], recorded["landed"])
        return out

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
        return [
            DoneMove(decode_paths(s), decode_paths(f), bool(k), MoveAction(a))
            for s, f, k, a in rows
        ]

    def restored_by_undo(self, run: int) -> set[tuple[Path, ...]]:
        """The finals of `run`'s moves that a later undo (one interrupted, say) already
        moved back: its moves' sources (a set: undo asks once per move)."""
        rows = self.db.execute(
            "SELECT m.sources FROM moves m JOIN runs r ON m.run = r.id "
            "WHERE r.kind = 'undo' AND r.id > ? AND m.state = 'done' AND m.keep_source = 0",
            (run,),
        ).fetchall()
        return {tuple(decode_paths(sources)) for (sources,) in rows}

    def removed_duplicates(self, run: int, sources: list[Path]) -> dict[Path, dict]:
        """The metadata (safefs.metadata) of each source `run` removed as a duplicate, to
        give it back on undo (none from journals older than this record)."""
        rows = self.db.execute(
            "SELECT steps FROM moves WHERE run = ? AND action = 'dedupe' AND sources = ?",
            (run, encode_paths(sources)),
        ).fetchall()
        steps = [s for (text,) in rows for s in decode_steps(text)]
        return {Path(s.path): s.details["kept"] for s in steps if kept_unlink(s)}

    def split_moves(self, run: int) -> list[tuple[list[Path], list[Path]]]:
        """Groups a failed move left in two places (see safefs.GroupSplit), with the
        final names they were given."""
        rows = self.db.execute(
            "SELECT sources, steps FROM moves WHERE run = ? AND state = 'split'", (run,)
        ).fetchall()
        out = []
        for sources, steps in rows:
            claimed = [Path(s.path) for s in decode_steps(steps) if s.kind == StepKind.CLAIMED]
            out.append((decode_paths(sources), claimed[-len(decode_paths(sources)) :]))
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
        finals = decode_paths(row[0]) if row is not None and row[0] else []
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
                src=decode_folder(row[4]),
                dest=decode_folder(row[5]),
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

    def created_dirs(self, run: int) -> list[Path]:
        self.db.execute(CREATED_DIRS)
        rows = self.db.execute("SELECT path FROM created_dirs WHERE run = ?", (run,)).fetchall()
        return [Path(os.fsdecode(row[0])) for row in rows]

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
