"""The table `tags` of the journal (`TagJournal`): each keyword write of a tag run
(classify --tag, tagging.py) journaled before it starts, with the temporary file it will use
and the digest of the bytes it will write; its recovery after a crash (`recover`) and its
undo (`undo_tags`), which takes the keyword out again, and only it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flowersort.base.outcomes import Action, Outcome
from flowersort.base.records import RunKind
from flowersort.photos import xmp, xmp_write
from flowersort.sorting.history import RunInfo
from flowersort.sorting.journal import Journal

log = logging.getLogger("flowersort")

TAGS = """
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY, run INTEGER NOT NULL, photo BLOB NOT NULL, sidecar BLOB NOT NULL,
    keyword TEXT NOT NULL, fields TEXT NOT NULL DEFAULT '[]', created INTEGER NOT NULL,
    digest TEXT, tmp BLOB, state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_photo ON tags(photo);
CREATE INDEX IF NOT EXISTS tags_run ON tags(run);
"""


# a tag's state: started (journaled, being written), done, failed (nothing changed),
# undone (undo took it out), removed (the user took it out: a veto)
STARTED, DONE, FAILED, UNDONE, REMOVED = "started", "done", "failed", "undone", "removed"


@dataclass(frozen=True)
class Tag:
    """One journaled keyword write."""

    id: int
    run: int
    photo: Path
    sidecar: Path
    keyword: str
    fields: tuple[str, ...]
    created: bool
    digest: str | None
    tmp: Path | None
    state: str


def _tag(row: tuple) -> Tag:
    id_, run, photo, sidecar, keyword, fields, created, digest, tmp, state = row
    return Tag(
        id_,
        run,
        Path(os.fsdecode(photo)),
        Path(os.fsdecode(sidecar)),
        keyword,
        tuple(json.loads(fields)),
        bool(created),
        digest,
        Path(os.fsdecode(tmp)) if tmp else None,
        state,
    )


COLUMNS = "id, run, photo, sidecar, keyword, fields, created, digest, tmp, state"


class TagJournal:
    """The table `tags` in the journal's database."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.db = journal.db
        if not has_tags(journal):  # made when first needed
            for statement in TAGS.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)

    def start(self, run: int, photo: Path, sidecar: Path, keyword: str, plan: xmp.Result):
        """A new journaled write and the note() xmp_write.tag calls before each step."""
        cur = self.db.execute(
            "INSERT INTO tags(run, photo, sidecar, keyword, fields, created, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run,
                os.fsencode(os.path.abspath(photo)),
                os.fsencode(os.path.abspath(sidecar)),
                keyword,
                json.dumps(plan.fields),
                int(plan.created),
                STARTED,
            ),
        )
        tag_id = cur.lastrowid

        def note(step: str, path: Path, **details) -> None:
            if step == "tmp":  # committed before the file exists: recovery removes it
                self.db.execute(
                    "UPDATE tags SET tmp = ?, digest = ? WHERE id = ?",
                    (os.fsencode(os.path.abspath(path)), details.get("digest"), tag_id),
                )

        return tag_id, note

    def finish(self, tag_id: int, result: xmp.Result | None) -> None:
        """The write is done (result) or failed having changed nothing (None)."""
        if result is None:
            self.db.execute("UPDATE tags SET state = ?, tmp = NULL WHERE id = ?", (FAILED, tag_id))
            return
        self.db.execute(
            "UPDATE tags SET state = ?, fields = ?, created = ?, digest = ?, tmp = NULL "
            "WHERE id = ?",
            (DONE, json.dumps(result.fields), int(result.created), result.digest, tag_id),
        )

    def set_state(self, tag_id: int, state: str) -> None:
        self.db.execute("UPDATE tags SET state = ?, tmp = NULL WHERE id = ?", (state, tag_id))

    def undo_note(self, tag_id: int):
        """The note() of an undo's write: its temporary, committed before the file exists,
        so that recover() removes it after a kill (the tag stays done: the next undo takes
        the keyword out, or finds it out already)."""

        def note(step: str, path: Path, **details) -> None:
            if step == "tmp":
                self.db.execute(
                    "UPDATE tags SET tmp = ? WHERE id = ?",
                    (os.fsencode(os.path.abspath(path)), tag_id),
                )

        return note

    def recover(self, quiet: bool = False) -> int:
        """Finish or forget each write a crash interrupted: its temporary is removed; the
        sidecar is either as before (the tag is forgotten) or complete (done)."""
        undoing = self.db.execute(  # an undo's write a kill interrupted (undo_note)
            f"SELECT {COLUMNS} FROM tags WHERE state != ? AND tmp IS NOT NULL", (STARTED,)
        )
        for t in [_tag(r) for r in undoing.fetchall()]:
            assert t.tmp is not None
            _remove_temporary(t.tmp)
            self.db.execute("UPDATE tags SET tmp = NULL WHERE id = ?", (t.id,))
        rows = self.db.execute(f"SELECT {COLUMNS} FROM tags WHERE state = ?", (STARTED,))
        recovered = 0
        for t in [_tag(r) for r in rows.fetchall()]:
            if t.tmp is not None:
                _remove_temporary(t.tmp)
            try:
                data = xmp.read_bytes(t.sidecar)
                words = xmp.parse_keywords(data, t.sidecar) if data is not None else None
            except (OSError, xmp.SidecarError):
                data = words = None
            done = (
                data is not None
                and words is not None
                and (xmp_write.digest(data) == t.digest or words.has_in(t.keyword, t.fields))
            )
            if done:
                assert data is not None
                self.db.execute(
                    "UPDATE tags SET state = ?, digest = ?, tmp = NULL WHERE id = ?",
                    (DONE, xmp_write.digest(data), t.id),
                )
            else:
                self.finish(t.id, None)
            recovered += 1
            if not quiet:
                what = "done" if done else "not made"
                log.warning("recovered an interrupted tag of %s: %s", t.photo, what)
        return recovered

    def ours(self) -> dict[Path, list[Tag]]:
        """The keywords flowersort wrote and nobody took back, by photo."""
        rows = self.db.execute(f"SELECT {COLUMNS} FROM tags WHERE state = ?", (DONE,))
        found: dict[Path, list[Tag]] = {}
        for t in map(_tag, rows.fetchall()):
            found.setdefault(t.photo, []).append(t)
        return found

    def done(self, run: int) -> list[Tag]:
        """A run's tags still in place, the last first."""
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM tags WHERE run = ? AND state = ? ORDER BY id DESC",
            (run, DONE),
        )
        return [_tag(r) for r in rows.fetchall()]

    def runs(self, run: int | None = None) -> list[RunInfo]:
        """The tag runs that wrote keywords, oldest first (or just `run`), for undo."""
        columns = "runs.id, kind, started, finished, src, dest, undone, COUNT(tags.id), stopped"
        rows = self.db.execute(
            f"SELECT {columns} FROM runs JOIN tags ON tags.run = runs.id "
            "AND tags.state IN (?, ?, ?) WHERE kind = ? AND (? IS NULL OR runs.id = ?) "
            "GROUP BY runs.id ORDER BY runs.id",
            (DONE, UNDONE, REMOVED, RunKind.TAG.value, run, run),
        ).fetchall()
        return [
            RunInfo(
                r[0], RunKind(r[1]), r[2], r[3], r[4], r[5], bool(r[6]), r[7], stopped=bool(r[8])
            )
            for r in rows
        ]


def has_tags(journal: Journal) -> bool:
    there = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tags'"
    return journal.db.execute(there).fetchone() is not None


def recover_tags(journal: Journal) -> None:
    """TagJournal.recover, where the journal has tags: before an undo picks its run (a run
    killed at its first write has no keyword journaled done until this)."""
    if has_tags(journal):
        TagJournal(journal).recover()


def tag_runs(journal: Journal, run: int | None = None) -> list[RunInfo]:
    """TagJournal.runs of a journal that may be read only and have no tags yet."""
    return TagJournal(journal).runs(run) if has_tags(journal) else []


def _remove_temporary(path: Path) -> None:
    """A temporary flowersort made, if it is one (never a link or another name)."""
    if not path.name.startswith(xmp_write.TMP_PREFIX):
        return
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def undo_tags(journal: Journal, run_id: int, *, dry_run: bool = False) -> Iterator[Outcome]:
    """Take the keywords a tag run wrote out again, each only from the lists it added it
    to; a keyword the user added meanwhile stays, and a sidecar the run created is removed
    if it still holds just what the run wrote."""
    tags = TagJournal(journal)
    if not dry_run:
        tags.recover()
    for t in tags.done(run_id):
        created = t.digest if t.created else None
        try:
            result = xmp_write.untag(
                t.photo,
                t.keyword,
                sidecar=t.sidecar,
                only=t.fields,
                created=created,
                dry_run=dry_run,
                note=tags.undo_note(t.id),  # a dry run writes nothing: never called
            )
        except xmp.SidecarError as e:
            if not dry_run:
                tags.set_state(t.id, DONE)  # still done (its temporary gone): undo tries again
            yield Outcome(t.photo, Action.FAILED, reason=str(e), keyword=t.keyword)
            continue
        if not dry_run:
            tags.set_state(t.id, UNDONE)
        action = {
            xmp.Action.UNTAGGED: Action.UNTAGGED,
            xmp.Action.WOULD_UNTAG: Action.WOULD_UNTAG,
        }.get(result.action, Action.NOT_TAGGED)
        yield Outcome(t.photo, action, target=os.fsdecode(t.sidecar), keyword=t.keyword)
