"""classify --tag: a keyword in each flower photo's XMP sidecar instead of a move.

Nothing is renamed or moved and no photo's bytes change: the keyword goes into the photo's
sidecar (xmp.find_sidecar; one is made if there is none) where digiKam, darktable,
Lightroom and Immich read keywords. Each write is journaled in the table `tags` of the
journal before it starts (with the temporary file it will use and the digest of the bytes
it will write), so the next run finishes or forgets one a crash interrupted and `undo`
takes the keyword out again, and only it (the table, its recovery and that undo are
tagjournal.py's).

The photo manager is the interface for corrections, as the file manager is for moves: a
keyword flowersort wrote that the user removed is a veto (the photo is never tagged
again, and is a non-flower example for `train --with-corrections`); a photo the user gave
the keyword by hand is a flower example. Both are kept in the corrections store by
content, as watch.Watch keeps those of moves.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from flowersort.base.errors import FlowersortError, StateError
from flowersort.base.outcomes import Action, Outcome
from flowersort.base.records import RunKind
from flowersort.photos import xmp, xmp_write
from flowersort.safefs.identity import Key, content_key
from flowersort.sorting.corrections import Correction, Store
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import FolderLock, RunLock
from flowersort.sorting.state import state_dir
from flowersort.sorting.tagjournal import REMOVED, TagJournal, has_tags

if TYPE_CHECKING:  # sorter imports this module
    from flowersort.sorting.options import SortOptions

log = logging.getLogger("flowersort")


def review_keyword(keyword: str) -> str:
    """The review band's keyword: "Flowers" -> "Flowers?"."""
    return keyword + "?"


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
            if self.journal is not None and (not dry_run or has_tags(self.journal)):
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

    def held(self, path: str | os.PathLike, seen: tuple | None = None) -> Correction | None:
        """The veto that keeps this photo untagged: its content vetoed before, or a keyword
        flowersort wrote that the user has removed since (a new veto). `seen` is not needed
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
            plan = xmp_write.tag(photo, keyword, dry_run=True, sidecar=self._sidecar(photo))
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
                result = xmp_write.tag(photo, keyword, sidecar=plan.sidecar, note=note)
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
