"""The target side of a run (`Targets`) and each move planned and applied (`Mover`), with
the photo's companions: sidecars, Live Photo videos, RAW twins."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from flowersort.base.errors import FlowersortError, StateError
from flowersort.base.outcomes import Action, Outcome
from flowersort.base.records import MoveAction, RunKind
from flowersort.safefs.identity import same_bytes
from flowersort.safefs.names import free_names, numbered_stems, split_name
from flowersort.safefs.privacy import Exposed, PrivateByFolder, Ways, check_folders_keep_private
from flowersort.sorting.companions import Companions, Live, own_sidecars
from flowersort.sorting.decide import Decision
from flowersort.sorting.folders import make_dirs
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import FolderLock, RunLock
from flowersort.sorting.options import ConflictMode, SortOptions
from flowersort.sorting.placing import TargetNames, dedupe_plan, same_photo, target_folder
from flowersort.sorting.state import state_dir
from flowersort.sorting.watch import Watch

log = logging.getLogger("flowersort")


FULL = (errno.ENOSPC, errno.EDQUOT)


DEDUPE_SIDECARS = MoveAction.DEDUPE_SIDECARS


def identical_at_target(photo: Path, dest: Path) -> Path | None:
    """A byte-identical copy of photo already in dest under its name or a numbered one;
    another name of the photo's own file there counts (see linked_at_target)."""
    stem, suffix = split_name(photo.name)
    for candidate_stem in numbered_stems(stem):
        candidate = dest / (candidate_stem + suffix)
        if not candidate.exists():
            return None
        if os.path.samefile(photo, candidate):
            if candidate.is_file() and not os.path.samefile(photo.parent, dest):
                return candidate
            continue  # the photo itself: never its own twin
        if candidate.is_file() and same_bytes(photo, candidate):
            return candidate
    return None


def linked_at_target(photo: Path, dest: Path) -> Path | None:
    """The photo's own file already in dest (another folder) under its name or a numbered
    one: a hard link, as a move on one filesystem leaves it when it is cut short between
    linking the final name and removing the source. Its record gone (a damaged journal),
    the move is finished from what is on disk: the source goes, as recovery would do;
    moved again, the photo would have two names in dest."""
    stem, suffix = split_name(photo.name)
    for candidate_stem in numbered_stems(stem):
        candidate = dest / (candidate_stem + suffix)
        try:
            if not os.path.samefile(photo, candidate):
                continue
        except OSError:  # the first free name: no link of it further on
            return None
        linked = candidate.is_file() and not candidate.is_symlink()
        return candidate if linked and not os.path.samefile(photo.parent, dest) else None
    return None


def identity(path: str | Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime_ns): which file a path holds, and whether it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# what a dry run says for what a run does
WOULD = {
    Action.MOVED: Action.WOULD_MOVE,
    Action.COPIED: Action.WOULD_COPY,
    Action.DEDUPLICATED: Action.WOULD_DEDUPLICATE,
    Action.REVIEW: Action.WOULD_REVIEW,
}


DRY_DONE = (Action.WOULD_MOVE, Action.WOULD_COPY)


class Targets:
    """The target side of a run: the Mover (moves and copies, in a dry run only said)
    and the Watch (what the user taught by moving files). `act` applies each decision
    that changes files: another kind of action (tagging a sidecar, say) is one more
    Decision and one more branch there."""

    def __init__(self, mover: Mover, watch: Watch, review: Path | None):
        self.mover, self.watch, self.review = mover, watch, review

    @classmethod
    def open(cls, src: Path, options: SortOptions) -> Targets:
        """Take the lock and open the journal (a dry run: neither), make the target
        folders, lock the source and target folders, and learn what the user did since
        the last run."""
        assert options.dest is not None
        dry_run, review = options.dry_run, options.review
        # a locked-out run makes nothing
        mover = Mover(options.dest, options.copy, options.on_conflict, options.wait, src, dry_run)
        mover.keep_below = src if options.keep_structure else None
        mover.follow = options.walk.follow_symlinks
        try:
            if not dry_run:
                try:
                    created = make_dirs(mover.dest) + (make_dirs(review) if review else [])
                except OSError as e:
                    raise FlowersortError(f"cannot create {e.filename}: {e.strerror}") from None
                mover.note_created_dirs(created)
                # the source, then the target: the same order in every run
                mover.folder_locks = []
                for f in (src if src.is_dir() else src.parent, mover.dest):
                    mover.folder_locks.append(FolderLock(f, options.wait))
            watch = Watch(mover.dest, review, dry_run=dry_run, run=mover.run)
            learnt = watch.start()
        except BaseException:
            mover.close()
            raise
        if learnt.found:
            log.warning(
                "the target %s already holds %d photo%s that flowersort did not put there: "
                "left there, and not taken as flowers you chose (photos you put there from "
                "now on are)",
                options.dest,
                learnt.found,
                "" if learnt.found == 1 else "s",
            )
        if n := len(learnt.confirmations):
            examples = "photo put into %s by you: a flower example"
            if n > 1:
                examples = "photos put into %s by you: flower examples"
            log.info("%d " + examples, n, options.dest)
        return cls(mover, watch, review)

    def act(
        self, decision: Decision, path: str, score: float, flower: bool, scored_as: tuple | None
    ) -> Outcome:
        """MOVE: into the target; REVIEW: into the review folder. A photo placed is
        recorded, so that taking it back out later is a veto."""
        review = decision == Decision.REVIEW
        outcome = self.mover.move(path, score, scored_as, self.review if review else None)
        if outcome.action in (Action.MOVED, Action.COPIED):
            self.watch.placed(outcome.target, "review" if review else "dest", self.mover.run)
        elif outcome.action == Action.DEDUPLICATED and self.mover.linked_twin is not None:
            self.watch.unfinished_move(self.mover.linked_twin)
        if review:
            outcome.flower = flower
            if outcome.action in (Action.MOVED, Action.COPIED, *DRY_DONE):
                outcome.action = self.mover.said(Action.REVIEW)
        return outcome

    def stop(self) -> None:
        """A signal came: the run is marked stopped (undo --list says so)."""
        self.mover.stopped = True

    def finish(self) -> None:
        """The walk is complete: the photos placed earlier that it never met are gone."""
        if gone := self.watch.finish():
            said = (
                "photo flowersort had placed is"
                if gone == 1
                else "photos flowersort had placed are"
            )
            log.info("%d %s gone (deleted, or moved out of the archive)", gone, said)

    def close(self) -> None:
        self.watch.close()
        self.mover.close()


def failed(photo: Path, score: float, error: OSError, copy: bool) -> Outcome:
    """A photo that could not be moved (copied), and why; a refusal to expose a photo
    says its group stayed whole."""
    reason = error.strerror or str(error)
    if isinstance(error, Exposed):
        reason += "; not copied" if copy else "; not moved"
    private = isinstance(error, PrivateByFolder)
    return Outcome(photo, Action.FAILED, score, True, reason=reason, private_by_folder=private)


class Mover:
    """Moves (or copies) photos with their sidecars into dest. Each photo is planned (a
    copy already at the target, a dedupe, else the final names of its group from
    safefs.free_names) and the plan applied: under the lock and journal, or in a dry run
    only said (would-move ...). The two differ only where a file would change."""

    keep_below: Path | None = None  # --keep-structure: src, whose sub-folders are kept
    folder_locks: list = []  # FolderLock on src and dest, once dest is made
    follow: bool = False  # --follow-symlinks: a photo that is a link is moved by its link
    stopped = False  # by a signal: undo --list says so
    linked_twin: Path | None = None  # the last move's: its own file found in the target

    def __init__(
        self,
        dest: Path,
        copy: bool,
        on_conflict: ConflictMode,
        wait: bool,
        src: Path,
        dry_run: bool = False,
    ):
        self.dest, self.copy, self.on_conflict, self.dry_run = dest, copy, on_conflict, dry_run
        self.full: str | None = None  # why the target took no more: no space, quota
        self.sidecars, self.names = Companions(), TargetNames()
        # each folder's modes up to the root, looked at once per run for the plan (a move
        # looks again right before it: safefs.transfer)
        self.ways = Ways()
        self.moved: set[Path] = set()  # sidecars an earlier photo took with it
        self.live: Live | None = None  # None: a dry run
        self.journal: Journal | None = None  # read by both, written by a live run
        if dry_run:  # read only, for where earlier runs put photos
            self.journal = journal_reader()
            return
        folder = state_dir()
        lock = RunLock(folder, wait)
        try:
            self.journal = journal = Journal(folder)
            journal.recover()
            kind = RunKind.COPY if copy else RunKind.CLASSIFY
            # absolute: undo --list is read from anywhere
            self.live = Live(
                lock, journal, journal.start_run(kind, src.absolute(), dest.absolute())
            )
        except BaseException:
            lock.release()
            raise

    @property
    def run(self) -> int | None:
        """The run's id in the journal (None: a dry run)."""
        return self.live.run if self.live else None

    def _live(self) -> Live:
        if self.live is None:
            raise AssertionError("a dry run changes no file")
        return self.live

    def note_created_dirs(self, folders: list[Path]) -> None:
        live = self._live()
        live.journal.note_created_dirs(live.run, folders)

    def said(self, action: Action) -> Action:
        return WOULD.get(action, action) if self.dry_run else action

    def move(
        self,
        path: str | Path,
        score: float,
        scored_as: tuple | None = None,
        folder: Path | None = None,
    ) -> Outcome:
        """Move path into folder (default: dest). scored_as: the photo's identity() when
        it was scored; a photo replaced or changed since is left where it is (its score is
        not its own)."""
        photo = Path(path)
        base = folder or self.dest
        folder = target_folder(base, photo, self.keep_below)
        if self.full:  # every further try would fail the same way, and cost a full copy
            return Outcome(photo, Action.NOT_ATTEMPTED, score, True, reason=self.full)
        if scored_as is not None and (now := identity(path)) and now != scored_as:
            reason = "changed since it was scored; left in place"
            return Outcome(photo, Action.FAILED, score, True, reason=reason)
        try:
            if twin := self.already_there(photo, folder):
                return Outcome(photo, Action.ALREADY_THERE, score, True, os.fsdecode(twin))
            twin = self.linked_twin = None if self.copy else linked_at_target(photo, folder)
            if twin is None and self.on_conflict != "rename":
                twin = identical_at_target(photo, folder)
            if twin is not None:
                if self.on_conflict == "skip" or self.copy:
                    return Outcome(photo, Action.SKIPPED, score, True, reason=f"already at {twin}")
                if (beside := self.dedupe(photo, twin)) is not None:
                    target, sides = os.fsdecode(twin), path_names(beside)
                    action = self.said(Action.DEDUPLICATED)
                    return Outcome(photo, action, score, True, target, sides)
            found = own_sidecars(photo, self.sidecars(photo))
            group = [photo, *(s for s in found if s not in self.moved)]
            finals = self.transfer(group, folder, made=folder != base)
        except OSError as e:
            if e.errno in FULL:
                self.full = f"{folder} is full ({e.strerror})"
            return failed(photo, score, e, self.copy)
        if not self.copy:  # IMG_0004.xmp goes with IMG_0004.jpg, not with img_0004.JPG too
            self.moved.update(group[1:])
        done = self.said(Action.COPIED if self.copy else Action.MOVED)
        return Outcome(photo, done, score, True, os.fsdecode(finals[0]), path_names(finals[1:]))

    def transfer(self, group: list[Path], folder: Path, made: bool) -> list[Path]:
        """Move (copy) group into folder under the names safefs.free_names gives it;
        `made`: folder is the photo's own below the target (--keep-structure), made now."""
        present = self.names(folder)
        # before its folders are made
        check_folders_keep_private(group, folder, self.ways)
        if self.dry_run:
            names = next(free_names([p.name for p in group], present), None)
            if names is None:
                raise FileExistsError(errno.EEXIST, "no free name", str(folder))
            present.update(n.casefold() for n in names)
            return [folder / n for n in names]
        live = self._live()
        if made:
            live.journal.note_created_dirs(live.run, make_dirs(folder))
        return live.journal.transfer(
            live.run, group, folder, keep_source=self.copy, present=present, follow=self.follow
        )

    def already_there(self, photo: Path, folder: Path) -> Path | None:
        """Where an earlier run put this photo, if it is still there with the same bytes;
        for a copy (or --on-conflict skip), also a byte-identical twin under its name or a
        numbered one: a nightly --copy-to must not pile up copies."""
        earlier = self.journal.earlier_final(photo, self.dest) if self.journal else None
        if earlier is not None and same_photo(photo, earlier):
            return earlier
        if self.copy or self.on_conflict == "skip":
            return identical_at_target(photo, folder)
        return None

    def dedupe(self, photo: Path, twin: Path) -> list[Path] | None:
        """Remove photo, whose twin is in dest, with its sidecars: each goes if an
        identical one sits by the twin, or moves there under the twin's stem if that name
        is free. Journaled, so undo copies them back. Returns where the sidecars are now,
        by the twin; None (the group is to be moved as usual) when another file holds a
        sidecar's name by the twin."""
        if (plan := dedupe_plan(photo, twin, self.sidecars(photo))) is None:
            return None
        dups, twins, free, names = plan
        if free and self.dry_run:  # as transfer checks them
            check_folders_keep_private(free, twin.parent, self.ways)
            self.names(twin.parent).update(n.casefold() for n in names)
        elif free:
            live = self._live()
            live.journal.transfer(
                live.run,
                free,
                twin.parent,
                exact_names=names,
                action=MoveAction.DEDUPE_SIDECARS,
                present=self.names(twin.parent),
            )
        if not self.dry_run:
            live = self._live()
            live.journal.dedupe(live.run, dups, twins)
        self.moved.update(free)
        return sorted(twins[1:] + [twin.parent / name for name in names])

    def close(self) -> None:
        if self.live is None:
            if self.journal is not None:
                self.journal.close()
            return
        for lock in self.folder_locks:
            lock.release()
        self.live.journal.finish_run(self.live.run, self.stopped)
        self.live.journal.close()
        self.live.lock.release()


def journal_reader() -> Journal | None:
    """The journal read only (a dry run writes nothing), or None."""
    try:
        return Journal.reader(state_dir())
    except StateError:
        return None


def path_names(paths) -> list[str]:
    return [os.fsdecode(p) for p in paths]
