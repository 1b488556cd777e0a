"""classify --tag: a keyword in each flower photo's XMP sidecar instead of a move.

Nothing is renamed or moved and no photo's bytes change: the keyword goes into the photo's
sidecar (xmp.find_sidecar; one is made if there is none) where digiKam, darktable,
Lightroom and Immich read keywords. Each write is journaled in the table `tags` of the
journal before it starts (with the temporary file it will use and the digest of the bytes
it will write), so the next run finishes or forgets one a crash interrupted and `undo`
takes the keyword out again, and only it.

The photo manager is the interface for corrections, as the file manager is for moves: a
keyword flowersort wrote that the user removed is a veto (the photo is never tagged
again, and is a non-flower example for `train --with-corrections`); a photo the user gave
the keyword by hand is a flower example. Both are kept in the corrections store by
content, as corrections.Watch keeps those of moves.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowersort.base.errors import FlowersortError, StateError
from flowersort.base.outcomes import Action, Outcome
from flowersort.base.records import RunKind
from flowersort.photos import xmp
from flowersort.safefs import Key, content_key
from flowersort.sorting.corrections import Correction, Store
from flowersort.sorting.history import RunInfo
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import FolderLock, RunLock
from flowersort.sorting.state import state_dir

if TYPE_CHECKING:  # sorter imports this module
    from flowersort.sorting.options import SortOptions

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


def review_keyword(keyword: str) -> str:
    """The review band's keyword: "Flowers" -> "Flowers?"."""
    return keyword + "?"


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
        if not _has_tags(journal):  # made when first needed
            for statement in TAGS.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)

    def start(self, run: int, photo: Path, sidecar: Path, keyword: str, plan: xmp.Result):
        """A new journaled write and the note() xmp.tag calls before each step."""
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
                and (xmp.digest(data) == t.digest or words.has_in(t.keyword, t.fields))
            )
            if done:
                assert data is not None
                self.db.execute(
                    "UPDATE tags SET state = ?, digest = ?, tmp = NULL WHERE id = ?",
                    (DONE, xmp.digest(data), t.id),
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


def _has_tags(journal: Journal) -> bool:
    there = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tags'"
    return journal.db.execute(there).fetchone() is not None


def recover_tags(journal: Journal) -> None:
    """TagJournal.recover, where the journal has tags: before an undo picks its run (a run
    killed at its first write has no keyword journaled done until this)."""
    if _has_tags(journal):
        TagJournal(journal).recover()


def tag_runs(journal: Journal, run: int | None = None) -> list[RunInfo]:
    """TagJournal.runs of a journal that may be read only and have no tags yet."""
    return TagJournal(journal).runs(run) if _has_tags(journal) else []


def _remove_temporary(path: Path) -> None:
    """A temporary flowersort made, if it is one (never a link or another name)."""
    if not path.name.startswith(xmp.TMP_PREFIX):
        return
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


class Tagger:
    """The target side of a tag run, as sorter.Targets is of a move run: one tag run's side
    effects, under the run lock, journaled; with dry_run nothing is written (not the
    sidecars, not the journal, not the corrections store). It is its own `watch`: `held`
    (a veto) and `confirmed` (tagged by hand) are asked of each photo."""

    stopped = False  # by a signal: the run is marked so

    def __init__(
        self, src: Path, keyword: str, review: str | None, *, dry_run: bool, wait: bool = False
    ):
        for word in (keyword, review):
            if word is not None:
                try:
                    xmp.split_keyword(word)
                except ValueError as e:
                    raise FlowersortError(str(e)) from None
        self.keyword, self.review_word, self.dry_run = keyword, review, dry_run
        folder = state_dir()
        self.lock = self.folder_lock = None
        self.run: int | None = None
        self.journal: Journal | None = None
        try:
            if dry_run:
                self.journal = Journal.reader(folder)
            else:
                self.lock = RunLock(folder, wait)
                self.journal = Journal(folder)
                self.journal.recover()
            self.tags = None  # a dry run reads a journal that may have no table tags yet
            if self.journal is not None and (not dry_run or _has_tags(self.journal)):
                self.tags = TagJournal(self.journal)
            if self.tags is not None and not dry_run:
                assert self.journal is not None  # the tags live in it
                self.tags.recover()
                self.run = self.journal.start_run(RunKind.TAG, Path(src).absolute(), None)
                self.folder_lock = FolderLock(src if src.is_dir() else src.parent, wait)
            self.ours = self.tags.ours() if self.tags is not None else {}
            self.store = Store(dry_run=dry_run)
        except BaseException:
            self.close()
            raise
        self.hand: set[Path] = set()  # photos the user gave the keyword, met so far
        self.folder: Path | None = None  # the folder the walk is in, and its names
        self.names: list[str] = []
        self.by_key: dict[Key, Correction] = {c.key: c for c in self.store.corrections()}
        self.sizes = {c.size for c in self.by_key.values()}

    @classmethod
    def open(cls, src: Path, options: SortOptions) -> Tagger:
        """The Tagger of a classify run with options.tag (sorter.SortOptions)."""
        assert options.tag is not None
        return cls(src, options.tag, options.review_tag, dry_run=options.dry_run, wait=options.wait)

    @property
    def watch(self) -> Tagger:
        return self

    @property
    def review(self) -> str | None:  # sorter asks: is there a review band's keyword?
        return self.review_word

    def stop(self) -> None:
        self.stopped = True

    def finish(self) -> None:
        """The walk is complete (nothing to forget: a tag stays with its photo)."""

    def act(
        self, decision: str, path: str, score: float, flower: bool, scored_as: object = None
    ) -> Outcome:
        """sorter.Decision MOVE: the keyword; REVIEW: the review band's keyword."""
        return self.tag(path, score, flower, review=decision == "review")

    def confirmed(self, path: str | os.PathLike) -> bool:
        """The user gave this photo the keyword (held() looked): a borderline score of it
        gets no review keyword."""
        return Path(os.path.abspath(path)) in self.hand

    # ------------------------------------------------------------------ corrections

    def _sidecar(self, photo: Path) -> Path:
        """xmp.find_sidecar from one listing of each folder (a listing per photo made a
        folder of n photos cost n * n): only a hint, as a new sidecar's name is claimed
        with link(), which fails if another program made one meanwhile."""
        if photo.parent != self.folder:
            self.folder, self.names = photo.parent, os.listdir(photo.parent)
        return xmp.find_sidecar(photo, self.names)

    def _keywords(self, photo: Path) -> xmp.Keywords | None:
        try:
            return xmp.read_keywords(self._sidecar(photo))
        except (OSError, xmp.SidecarError):
            return None  # tag() says why

    def _key(self, photo: Path) -> Key | None:
        try:
            return content_key(photo)
        except OSError:
            return None

    def held(self, path: str | os.PathLike, size: int | None = None) -> Correction | None:
        """The veto that keeps this photo untagged: its content vetoed before, or a keyword
        flowersort wrote that the user has removed since (a new veto). `size` is not needed
        here (Watch.held's)."""
        photo = Path(os.path.abspath(path))
        by_hand = self.hand_tagged(photo)
        if by_hand:
            self.hand.add(photo)
        removed = []
        if photo in self.ours and (words := self._keywords(photo)) is not None:
            removed = [t for t in self.ours[photo] if not words.has(t.keyword)]
        if removed and by_hand:  # our review keyword swapped for the keyword: a confirmation
            for t in removed:  # (hand_tagged noted the flower example)
                if not self.dry_run:
                    assert self.tags is not None
                    self.tags.set_state(t.id, REMOVED)
            removed = []
        if removed and (key := self._key(photo)) is not None:
            for t in removed:
                if not self.dry_run:
                    assert self.tags is not None  # a real run has its journal
                    self.tags.set_state(t.id, REMOVED)
            correction = self.store.note(key, "not-flower", "tag-removed", photo, self.run)
            self.by_key[key] = correction
            self.sizes.add(key[0])
            return correction
        if not self.sizes:
            return None
        try:
            if os.lstat(photo).st_size not in self.sizes:
                return None
        except OSError:
            return None
        key = self._key(photo)
        known = self.by_key.get(key) if key is not None else None
        return known if known is not None and known.label == "not-flower" else None

    def hand_tagged(self, path: str | os.PathLike) -> bool:
        """The user gave this photo the keyword (not flowersort): a flower example, noted
        once in the corrections store."""
        photo = Path(os.path.abspath(path))
        if any(t.keyword == self.keyword for t in self.ours.get(photo, [])):
            return False
        words = self._keywords(photo)
        if words is None or not words.has(self.keyword):
            return False
        key = self._key(photo)
        known = self.by_key.get(key) if key is not None else None
        # a veto by a removed keyword is older than the keyword there now: the newest wins
        if key is not None and (known is None or known.kind == "tag-removed"):
            # no run: the user's own keyword, which no undo of ours takes back
            self.by_key[key] = self.store.note(key, "flower", "tagged-by-hand", photo)
            self.sizes.add(key[0])
        return True

    # ------------------------------------------------------------------ tagging

    def tag(self, path: str, score: float, flower: bool, review: bool = False) -> Outcome:
        """Give the photo the keyword (the review band's, with review)."""
        photo = Path(path)
        keyword = self.review_word if review else self.keyword
        assert keyword is not None
        mine = self.ours.get(Path(os.path.abspath(photo)), [])
        if review and any(t.keyword == self.keyword for t in mine):
            keyword = self.keyword  # tagged as a flower before: not also as borderline
        try:
            plan = xmp.tag(photo, keyword, dry_run=True, sidecar=self._sidecar(photo))
            if plan.action is xmp.Action.ALREADY_TAGGED or self.dry_run:
                action = (
                    Action.ALREADY_TAGGED
                    if plan.action is xmp.Action.ALREADY_TAGGED
                    else Action.WOULD_TAG
                )
                return Outcome(
                    photo, action, score, flower, os.fsdecode(plan.sidecar), keyword=keyword
                )
            assert self.tags is not None and self.run is not None  # a real run
            tag_id, note = self.tags.start(self.run, photo, plan.sidecar, keyword, plan)
            try:
                result = xmp.tag(photo, keyword, sidecar=plan.sidecar, note=note)
            except BaseException:  # the sidecar is as before, or complete (only the folder's
                self.tags.recover(quiet=True)  # fsync failed): the journal says which
                raise
            self.tags.finish(tag_id, result)
        except xmp.SidecarError as e:
            return Outcome(photo, Action.FAILED, score, flower, reason=str(e), keyword=keyword)
        except StateError:
            raise
        except OSError as e:  # its folder unreadable
            why = f"{e.strerror}; left untouched"
            return Outcome(photo, Action.FAILED, score, flower, reason=why, keyword=keyword)
        if result.created and photo.parent == self.folder:
            self.names.append(result.sidecar.name)
        action = Action.TAGGED if result.action is xmp.Action.TAGGED else Action.ALREADY_TAGGED
        return Outcome(photo, action, score, flower, os.fsdecode(result.sidecar), keyword=keyword)

    def close(self) -> None:
        if self.folder_lock is not None:
            self.folder_lock.release()
        if self.journal is not None:
            if self.run is not None:
                self.journal.finish_run(self.run, self.stopped)
            self.journal.close()
        if getattr(self, "store", None) is not None:
            self.store.close()
        if self.lock is not None:
            self.lock.release()


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
            result = xmp.untag(
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
