"""What a classify run learns from the user's moves (`Watch`): a photo put into DEST by
hand, or sorted from the review folder into it, is a confirmation; one flowersort placed
that turns up back in the archive is a veto. Kept in the corrections store
(corrections.py), by content.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flowersort.base.errors import StateError
from flowersort.photos.archive import size_of, walk
from flowersort.safefs.identity import Key, content_key, content_key_and_version
from flowersort.sorting.corrections import (
    Below,
    Correction,
    Folder,
    Kind,
    Label,
    Placed,
    Store,
    is_below,
)
from flowersort.sorting.journal import Journal
from flowersort.sorting.state import state_dir


def _absolute(text: str) -> str:
    """os.path.abspath(text), at no cost for a path that is absolute and normal already
    (as the store keeps them: no '.', '..' or empty part, no separator at the end)."""
    if (
        os.sep == "/"
        and text[:1] == "/"
        and "/." not in text
        and "//" not in text
        and text[-1] != "/"
    ):
        return text
    return os.path.abspath(text)


Version = tuple[int, int, int]  # a file's size, mtime_ns and inode (the score cache's key)


class Hashes(Protocol):
    """Where a run remembers a photo's SHA-256 by its version (scoring.cache.ScoreCache)."""

    def content(self, path: str, version: Version) -> str | None: ...

    def put_content(self, path: str, version: Version, sha256: str) -> None: ...


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
class _Scan:
    """What Watch.start has met so far of the photos flowersort placed and of DEST. The
    placed photos are kept by path as text: a Path per photo cost most here."""

    placed: dict[str, Placed] = field(default_factory=dict)  # this target's, by path
    elsewhere: dict[Key, list[Placed]] = field(default_factory=dict)  # elsewhere, by content
    by_path: dict[str, Correction] = field(default_factory=dict)
    placed_by_key: dict[Key, Placed] = field(default_factory=dict)
    found: set[str] = field(default_factory=set)  # paths in DEST of photos flowersort placed
    flowers_in_dest: set[Key] = field(default_factory=set)  # the user's, still in DEST
    confirmations: list[Correction] = field(default_factory=list)
    nobodys: set[Key] = field(default_factory=set)  # in a target before our first run into it
    first_run: bool = False
    there_before: int = 0


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
        # a photo's hash remembered by its version (the run's score cache), else None
        self.hashes: Hashes | None = None
        self.gone_flowers: set[Key] = set()  # pending: flowers the user had put into DEST

    def start(self) -> Learnt:
        journal = _JournalView()
        try:
            return self._start(journal)
        finally:
            journal.close()

    def _start(self, journal: _JournalView) -> Learnt:
        s = self._placed_by_target(journal)
        if s.elsewhere and self.review is not None and self.review.is_dir():
            sizes = {k[0] for k in s.elsewhere}
            for text in walk(self.review):
                if text not in s.placed and size_of(text) in sizes:
                    try:
                        self._moved_along(s, content_key(text), Path(text), "review")
                    except OSError:
                        continue
        self.by_key = {c.key: c for c in self.store.corrections()}
        s.by_path = {os.fspath(c.path): c for c in self.by_key.values()}
        s.placed_by_key = {(p.size, p.sha256): p for p in s.placed.values()}  # (p.key)
        s.nobodys = self.store.found()  # in a target before our first run into it
        # asked of the journal: photos placed below this target (by runs into a folder inside
        # it) or into a review folder it shares with another target are no run into it
        s.first_run = not _earlier_run_into(self.dest, self.run)
        in_dest = walk(self.dest, prune=[self.review] if self.review else [])
        for text in in_dest if self.dest.is_dir() else ():
            self._meet_in_dest(s, journal, text)
        self._find_pending(s)
        self.sizes = {k[0] for k in self.pending} | {
            c.size for c in self.by_key.values() if c.label == "not-flower"
        }
        return Learnt(s.confirmations, len(self.pending), s.there_before)

    def _placed_by_target(self, journal: _JournalView) -> _Scan:
        """The photos flowersort placed, this target's (and review folder's) by path and
        the others by content; those an undo put back are forgotten (no choice of yours)."""
        undone = journal.undone()
        undone_paths = {os.fspath(u) for u in undone if not isinstance(u, int)}
        s = _Scan()
        roots = [os.fspath(r) for r in (self.dest, self.review) if r is not None]
        ours = Below(roots)  # another target's are not ours
        for p in self.store.placed():
            if p.run in undone or p.where in undone_paths:  # undo put it back: no choice
                self.store.drop_placed(p.path)  # of yours
            elif ours(_absolute(p.where)):
                s.placed[p.where] = p
            else:
                s.elsewhere.setdefault(p.key, []).append(p)
        return s

    def _moved_along(self, s: _Scan, key: Key, path: Path, folder: Folder) -> Placed | None:
        """A photo placed at a path that is gone, now in this target: the archive was
        moved (another disk, another name) with its target, so it is flowersort's still."""
        for p in s.elsewhere.get(key, []):
            if p.folder == folder and size_of(p.path) is None:
                s.elsewhere[key].remove(p)
                self.store.move_placed(p.path, path)
                p.path = path
                s.placed[os.fspath(path)] = p
                return p
        return None

    def _meet_in_dest(self, s: _Scan, journal: _JournalView, text: str) -> None:
        """One photo in DEST: flowersort's (still there, renamed, moved along), or a
        confirmation, or nobody's (there before the first run)."""
        size = size_of(text)
        if size is None:
            return
        if (here := s.placed.get(text)) is not None:  # still where it was put (edited
            if size != here.size:  # there, perhaps): kept; edited: the new bytes are
                self._rekey(here)  # what may come back
            s.found.add(text)
            return
        path = Path(text)
        known = s.by_path.get(text)
        if known and known.size == size and known.label == "flower":
            s.flowers_in_dest.add(known.key)
            return
        try:
            key = content_key(path)
        except OSError:
            return
        if journal.moved_to(path):  # (not placed: see above)
            # moved by a flowersort that kept no `placed` rows (an upgrade): note it now
            self.store.add_placed(path, key, "dest", None)
            s.placed[text] = Placed(text, key[0], key[1], "dest", None, time.time())
            s.found.add(text)
            return
        mine = s.placed_by_key.get(key)
        if mine is None and self._moved_along(s, key, path, "dest") is not None:
            s.found.add(text)
            return
        if mine is not None and mine.folder == "dest":
            was = mine.where
            if was in s.placed and size_of(was) is None:  # renamed inside DEST
                self.store.move_placed(mine.path, path)
                s.placed[text] = s.placed.pop(was)
                s.placed[text].path = path
            s.found.add(text)  # else a copy of one it placed: not the user's example
            return
        self._learn_in_dest(s, key, path, mine)

    def _learn_in_dest(self, s: _Scan, key: Key, path: Path, mine: Placed | None) -> None:
        """A photo in DEST flowersort did not put there: a confirmation (sorted from the
        review folder, or put there by hand), or nobody's choice."""
        if mine is not None:  # from the review folder into DEST: sorted as a flower
            self.store.drop_placed(mine.path)
            s.placed.pop(mine.where, None)
            s.confirmations.append(self._learn(key, "flower", "review-in", path))
        elif key in self.by_key and self.by_key[key].label == "flower":
            self.store.seen_at(key, path)
        elif s.first_run or key in s.nobodys:
            if s.first_run:
                self.store.add_found(key, self.dest, path)
                s.nobodys.add(key)
                s.there_before += 1
            return
        else:
            s.confirmations.append(self._learn(key, "flower", "added", path))
        s.flowers_in_dest.add(key)

    def _find_pending(self, s: _Scan) -> None:
        """The photos placed that are gone from their place, and the user's flowers taken
        out of DEST again: pending, until the walk meets them (a veto) or not (deleted)."""
        for p in s.placed.values():
            if p.where in s.found:
                continue
            if p.folder == "review" and size_of(p.path) is not None:
                if size_of(p.path) != p.size:
                    self._rekey(p)
                continue  # still waiting in the review folder
            self.pending[p.key] = p
        for c in self.by_key.values():  # a flower of yours taken out of DEST again: pending
            if (
                c.label == "flower"
                and c.key not in s.flowers_in_dest
                and c.key not in self.pending
                and is_below(os.path.abspath(c.path), [os.fspath(self.dest)])
                and not (
                    self.review and is_below(os.path.abspath(c.path), [os.fspath(self.review)])
                )
            ):
                pending = Placed(os.fspath(c.path), c.size, c.sha256, "dest", None, c.noted)
                self.pending[c.key] = pending
                self.gone_flowers.add(c.key)

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

    def held(self, path: str | os.PathLike, seen: tuple | None = None) -> Correction | None:
        """The veto that keeps this photo where it is, if any (hashes only on a size match).
        `seen`: the photo's identity as the walk stat'ed it (sorting.moves.identity: device,
        inode, size, mtime_ns), if it did: its size, and the version its hash is kept by."""
        if not self.sizes or (size_of(path) if seen is None else seen[2]) not in self.sizes:
            return None
        try:
            key = self._content_key(path, seen)
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

    def _content_key(self, path: str | os.PathLike, seen: tuple | None) -> Key:
        """content_key(path); with `hashes`, remembered by the photo's version (size,
        mtime_ns, inode, as `seen` by the walk), so that an unchanged photo whose size a veto
        has is hashed once, not every night. A hash is remembered only for bytes that were
        that version all the while they were read."""
        if self.hashes is None or seen is None:
            return content_key(path)
        text, version = os.fspath(path), (seen[2], seen[3], seen[1])
        if (sha := self.hashes.content(text, version)) is not None:
            return version[0], sha
        key, read = content_key_and_version(path)
        if read == version:
            self.hashes.put_content(text, version, key[1])
        return key

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

    def unfinished_move(self, final: str | os.PathLike) -> None:
        """`final`, in DEST, was the photo's own file: left there by a move cut short whose
        record is gone, finished now (moves.linked_at_target). flowersort's doing, never
        the user's choice: a flower label learnt from it as put there by hand is taken
        back, and it is remembered as found (nobody's choice), as a photo in a target
        before the first run into it is."""
        try:
            key = content_key(final)
        except OSError:
            return
        known = self.by_key.get(key)
        if known is not None and known.kind == "added":
            self.store.forget(key)
            del self.by_key[key]
        self.store.add_found(key, self.dest, Path(os.path.abspath(final)))

    def close(self) -> None:
        self.store.close()
