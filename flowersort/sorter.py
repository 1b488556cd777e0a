"""Classifying an archive and moving the flower photos: sidecars, name clashes, the
journal and the lock. Every file operation goes through safefs."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

from flowersort import safefs
from flowersort.archive import OnPass, OnSkip, companion_names, display, walk
from flowersort.cache import ScoreCache
from flowersort.corrections import KIND_TEXT, Watch, take_back
from flowersort.errors import EmptySource, FlowersortError
from flowersort.journal import (
    FolderLock,
    Journal,
    RunInfo,
    RunLock,
    earlier_target,
    state_dir,
)
from flowersort.metrics import DEFAULT_REVIEW_BAND, effective_band
from flowersort.model import Model
from flowersort.outcomes import Action, Outcome
from flowersort.pipeline import score_photos

log = logging.getLogger("flowersort")
ConflictMode = Literal["rename", "skip", "dedupe"]
FULL = (errno.ENOSPC, errno.EDQUOT)


def sidecars(photo: Path, listed: Iterable[str] | None = None) -> list[Path]:
    """Files that belong to a photo (archive.companion_names), as the folder lists them, so
    a case-insensitive disk (exFAT, FAT, macOS) gives each file once. `listed`: names of
    the folder already in hand (see Companions), else it is listed now."""
    wanted = companion_names(photo.name)
    if listed is None:
        try:
            listed = os.listdir(photo.parent)
        except OSError:
            return []
    found = []
    for name in listed:
        if name.lower() in wanted and name != photo.name:
            candidate = photo.parent / name
            if candidate.is_file() and not candidate.is_symlink():
                found.append(candidate)
    return sorted(found)


class Companions:
    """sidecars() from one listing of each folder, kept while the run works in it: a
    listing per photo made a folder of n photos cost n * n. The listing is a hint: each
    companion is looked at on disk before it is taken (one moved or deleted since is not)."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.names: dict[str, list[str]] = {}  # lower-cased -> the names so spelt

    def __call__(self, photo: Path) -> list[Path]:
        if photo.parent != self.folder:  # the walk has moved on: the new folder, once
            self.folder, self.names = photo.parent, {}
            try:
                for name in os.listdir(photo.parent):
                    self.names.setdefault(name.lower(), []).append(name)
            except OSError:
                pass
        wanted = companion_names(photo.name)
        return sidecars(photo, [n for w in wanted for n in self.names.get(w, ())])


class TargetNames:
    """Each target folder's names, casefolded (safefs.names_in_any_case), listed once per
    run and kept up to date as the run claims names: a listing per move made a target of
    n photos cost n * n. Only a hint for choosing a name: safefs claims it with link() or
    O_EXCL, which fails when another process took it meanwhile."""

    def __init__(self) -> None:
        self.folders: dict[Path, set[str]] = {}

    def __call__(self, folder: Path) -> set[str]:
        if folder not in self.folders:
            self.folders[folder] = safefs.names_in_any_case(folder)
        return self.folders[folder]


def own_sidecars(photo: Path, found: list[Path]) -> list[Path]:
    """Of the photo's sidecars `found`, those that belong to its owner: another user's file
    with the same stem (a 0600 RAW twin in a shared folder) is not moved with the photo."""
    try:
        owner = os.lstat(photo).st_uid
    except OSError:
        return []
    own = []
    for side in found:
        try:
            if os.lstat(side).st_uid == owner:
                own.append(side)
        except OSError:
            continue
    return own


def identical_at_target(photo: Path, dest: Path) -> Path | None:
    """A byte-identical copy of photo already in dest under its name or a numbered one."""
    stem, suffix = safefs.split_name(photo.name)
    for candidate_stem in safefs.numbered_stems(stem):
        candidate = dest / (candidate_stem + suffix)
        if not candidate.exists():
            return None
        if os.path.samefile(photo, candidate):  # the photo itself: never its own twin
            continue
        if candidate.is_file() and safefs.same_bytes(photo, candidate):
            return candidate
    return None


def identity(path: str | Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime_ns): which file a path holds, and whether it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def check_target(src: Path, dest: Path) -> None:
    """A target that is SRC itself (or SRC's own folder, for one photo) is a usage error:
    every photo would be compared with itself. A target inside SRC is never searched,
    so photos already in it are never classified: say so, unless it is an earlier run's
    target (the nightly Pictures/Flowers, whose photos are flowersort's own)."""
    real_src, real_dest = src.resolve(), dest.resolve()
    folder = real_src if real_src.is_dir() else real_src.parent
    if real_dest == folder:
        raise FlowersortError(f"the target {dest} is {src} itself: choose a folder outside it")
    if real_dest.is_relative_to(folder) and real_dest.is_dir() and not earlier_target(dest):
        if next(walk(real_dest), None) is not None:
            log.warning(
                "warning: the target %s is inside %s and already holds photos: they are "
                "never classified (the target is not searched)",
                dest,
                src,
            )


def check_writable(folder: Path, probe: bool) -> None:
    """A target that cannot be written (a read-only disk, a folder without write permission,
    a file in the way) stops the run before its first photo, in one line naming it, rather
    than once per photo. Asked of the folder, or of the nearest folder above it that exists;
    with `probe`, an empty file is also created in the folder and removed (a network share
    can refuse what access() allows). A dry run only asks, and so touches nothing."""
    target = Path(os.path.abspath(folder))
    there = target
    while not os.path.lexists(there) and there != there.parent:
        there = there.parent
    what = f"write into the target {folder}"
    if there != target:
        what = f"create the target {folder} in {there}"
    if not there.is_dir():
        if there == target:
            raise FlowersortError(f"the target {folder} is not a folder")
        raise FlowersortError(f"cannot {what}: {there} is not a folder")
    if not os.access(there, os.W_OK | os.X_OK):
        read_only = os.statvfs(there).f_flag & os.ST_RDONLY
        why = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise FlowersortError(f"cannot {what}: {why}")
    if probe and there == target:
        name = target / f".flowersort-probe-{os.getpid()}"
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:  # left by a run of this pid killed outright: writable
            return
        except OSError as e:
            raise FlowersortError(f"cannot {what}: {e.strerror}") from None
        try:
            os.unlink(name)
        except OSError as e:  # an append-only folder (chattr +a), a write-once share
            why = f"a file made there cannot be removed ({e.strerror})"
            raise FlowersortError(f"cannot {what}: {why}: remove {name}") from None


def is_empty_folder(folder: Path) -> bool:
    """A folder holding nothing at all, as the mount point of a disk that is not mounted (an
    archive whose photos all went to the target still holds their folders)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:  # a file, or a folder that cannot be read: the walk says so
        return False


def foreign_link(folder: Path) -> tuple[Path, int] | None:
    """A symbolic link on the way to folder that another user owns (not root, not us), and
    its owner: a root run must not follow where that user points it."""
    path = Path(os.path.abspath(folder))
    for part in (path, *path.parents):
        try:
            st = os.lstat(part)
        except OSError:
            continue  # not made yet: make_dirs makes a folder, never a link
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
            return part, st.st_uid
    return None


def check_no_foreign_links(folder: Path) -> None:
    """A target or review folder reached through a link that another user owns is
    refused: a root run into ~owner/Pictures/Flowers must not follow the owner's link to a
    folder of root's."""
    if found := foreign_link(folder):
        part, uid = found
        raise FlowersortError(
            f"{folder}: {part} is a symbolic link of another user's (uid {uid}); "
            "give the folder it points to, or run as that user"
        )


def _link_in_the_way(photo: Path) -> Outcome | None:
    """Undo: a folder of photo's old place that another user replaced by a link since (a
    stand-in for /etc/cron.d) is never followed; the photo stays in the target."""
    if found := foreign_link(photo.parent):
        part, uid = found
        why = f"{part} is now a symbolic link of another user's (uid {uid}); left in the target"
        return Outcome(photo, Action.FAILED, reason=why)
    return None


def same_photo(photo: Path, there: Path) -> bool:
    """there is another file holding photo's bytes (not photo itself, as after undo)."""
    try:
        same_inode = os.path.samefile(photo, there)
        return there.is_file() and not same_inode and safefs.same_bytes(photo, there)
    except OSError:
        return False


def classify(
    model: Model,
    src: Path,
    dest: Path | None = None,
    *,
    threshold: float | None = None,
    dry_run: bool = False,
    copy: bool = False,
    follow_symlinks: bool = False,
    include_hidden: bool = False,
    exclude: Iterable[str] = (),
    workers: int | None = None,
    on_conflict: ConflictMode = "rename",
    wait: bool = False,
    cache: ScoreCache | None = None,
    thumbnail: bool = False,
    on_walk_skip: OnSkip | None = None,
    review: Path | None = None,
    review_band: float | None = None,
    stop: Callable[[], bool] | None = None,
    keep_structure: bool = False,
    on_passed_over: OnPass | None = None,
    on_stopped: Callable[[int], None] | None = None,
) -> Iterator[Outcome]:
    """Score every photo under src; move (or copy) the flowers into dest unless dry_run
    (with keep_structure, into the photo's folder below src recreated under dest).

    A run that changes files holds the lock for its whole length, first finishes or
    rolls back what an interrupted run left in the journal, and journals every move.
    With dest, a score within review_band of the threshold (default: the model's band,
    none when the threshold is set by hand) is borderline: moved into `review` if given,
    else left in place; and the user's earlier choices are learnt and kept (see
    corrections.Watch).
    When `stop()` turns true (a signal), no new photo is started: the run ends after the
    move in hand, and `on_stopped` is told how many photos were never looked at.
    Videos and RAW files that are no photo's companion go to `on_passed_over`.
    """
    src = Path(src)
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    # before any folder is made (none in a NAS's bare mount point), and before the target's
    # checks: a mount point the user cannot write is still a disk not mounted
    if is_empty_folder(src):
        raise EmptySource(f"{src} is empty: nothing to do, nothing created (is it mounted?)")
    if dest is not None:
        for folder in (dest, review):
            if folder is not None:
                check_no_foreign_links(Path(folder))
        check_target(src, Path(dest))
        for folder in (dest, review):
            if folder is not None:
                check_writable(Path(folder), probe=not dry_run)
    if review_band is None:  # a threshold set by hand is the line itself: no band
        band = model.summary.get("review_band", DEFAULT_REVIEW_BAND)
        review_band = effective_band(model.threshold, band) if threshold is None else 0.0
    threshold = model.threshold if threshold is None else threshold
    mover = watch = None
    if dest is not None and not dry_run:
        mover = Mover(dest, copy, on_conflict, wait, src)  # a locked-out run creates nothing
        try:
            created = make_dirs(dest) + (make_dirs(review) if review is not None else [])
        except OSError as e:
            mover.close()
            raise FlowersortError(f"cannot create {e.filename}: {e.strerror}") from None
        mover.journal.note_created_dirs(mover.run, created)
        try:  # the source, then the target: the same order in every run
            folder = src if src.is_dir() else src.parent
            mover.folder_locks = []
            for f in (folder, Path(dest)):
                mover.folder_locks.append(FolderLock(f, wait))
        except BaseException:
            mover.close()
            raise
        mover.keep_below = src if keep_structure else None
        mover.follow = follow_symlinks
    plan = DryRun(dest, copy, on_conflict) if dest is not None and dry_run else None
    if plan is not None:
        plan.keep_below = src if keep_structure else None
    if dest is not None:
        try:
            watch = Watch(dest, review, dry_run=dry_run, run=mover.run if mover else None)
            learnt = watch.start()
        except BaseException:
            if mover:
                mover.close()
            raise
        if learnt.found:
            log.warning(
                "the target %s already holds %d photo%s that flowersort did not put there: "
                "left there, and not taken as flowers you chose (photos you put there from "
                "now on are)",
                dest,
                learnt.found,
                "" if learnt.found == 1 else "s",
            )
        if n := len(learnt.confirmations):
            examples = "photo put into %s by you: a flower example"
            if n > 1:
                examples = "photos put into %s by you: flower examples"
            log.info("%d " + examples, n, dest)
    walk_skips: deque[tuple[str, str]] = deque()
    scored_as: dict[str, tuple | None] = {}  # each photo's identity before it was read

    def noting_identity(paths: Iterable[str]) -> Iterator[str]:
        for path in paths:
            scored_as[path] = identity(path)
            yield path

    def note_skip(path: str, reason: str) -> None:
        walk_skips.append((path, reason))
        if on_walk_skip:
            on_walk_skip(path, reason)

    photos = walk(
        src,
        prune=[p for p in (dest, review) if p is not None],
        include_hidden=include_hidden,
        follow_symlinks=follow_symlinks,
        exclude=exclude,
        on_skip=note_skip,
        on_pass=on_passed_over,
    )
    try:
        for scored in score_photos(
            model, noting_identity(photos), workers, cache=cache, thumbnail=thumbnail
        ):
            if stop is not None and stop():
                if on_stopped is not None:  # read but not reported, and the walk's rest
                    on_stopped(len(scored_as) + sum(1 for _ in photos))
                if mover:
                    mover.stopped = True
                return
            path, score, note = scored.path, scored.score, scored.note
            was = scored_as.pop(path, None)
            while walk_skips:
                skipped, why = walk_skips.popleft()
                yield Outcome(skipped, Action.SKIPPED, reason=why)
            if score is None:
                why = scored.skip_reason
                yield Outcome(path, Action.SKIPPED, reason=why, skipped_before=scored.remembered)
                continue
            flower = score >= threshold
            borderline = abs(score - threshold) < review_band
            if dest is not None and (veto := watch.held(path)):
                why = KIND_TEXT[veto.kind]
                yield noted(Outcome(path, Action.VETOED, score, flower, reason=why), note)
            elif dest is not None and borderline and watch.confirmed(path):
                # the user sorted it into dest already (a copy run keeps the original here)
                yield noted(Outcome(path, Action.KEPT, score, flower), note)
            elif dest is not None and borderline:
                if review is None:
                    yield noted(Outcome(path, Action.BORDERLINE, score, flower), note)
                elif dry_run:
                    out = Outcome(path, Action.WOULD_REVIEW, score, flower, os.fsdecode(review))
                    yield noted(out, note)
                else:
                    outcome = mover.move(path, score, was, folder=review)
                    outcome.flower = flower
                    if outcome.action in (Action.MOVED, Action.COPIED):
                        watch.placed(outcome.target, "review", mover.run)
                        outcome.action = Action.REVIEW
                    yield noted(outcome, note)
            elif not flower or dest is None:
                yield noted(Outcome(path, Action.KEPT, score, flower), note)
            elif dry_run:
                yield noted(plan.outcome(Path(path), score), note)
            else:
                outcome = mover.move(path, score, was)
                if outcome.action in (Action.MOVED, Action.COPIED):
                    watch.placed(outcome.target, "dest", mover.run)
                yield noted(outcome, note)
        for skipped, why in walk_skips:
            yield Outcome(skipped, Action.SKIPPED, reason=why)
        if watch and (gone := watch.finish()):  # a stopped run never gets here
            said = (
                "photo flowersort had placed is"
                if gone == 1
                else "photos flowersort had placed are"
            )
            log.info("%d %s gone (deleted, or moved out of the archive)", gone, said)
    finally:
        if watch:
            watch.close()
        if mover:
            mover.close()


def count_photos(
    src: Path,
    targets: Iterable[Path | None],
    *,
    include_hidden: bool = False,
    follow_symlinks: bool = False,
    exclude: Iterable[str] = (),
) -> int:
    """How many files classify would look at (for a progress bar's ETA)."""
    prune = [p for p in targets if p is not None]
    return sum(
        1
        for _ in walk(
            src,
            prune=prune,
            include_hidden=include_hidden,
            follow_symlinks=follow_symlinks,
            exclude=exclude,
        )
    )


def noted(outcome: Outcome, note: str) -> Outcome:
    outcome.note = note
    return outcome


def make_dirs(folder: Path) -> list[Path]:
    """mkdir -p; returns the folders it created, outermost first."""
    missing, top = [], folder
    while not top.exists() and top != top.parent:
        missing.append(top)
        top = top.parent
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:  # made meanwhile by someone else: not ours
            missing.remove(f)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    return missing[::-1]


def target_folder(dest: Path, photo: Path, keep_below: Path | None) -> Path:
    """dest; with --keep-structure, dest plus the photo's folder relative to src
    (Pictures/2020/07 Trip/x.jpg -> Flowers/2020/07 Trip/)."""
    if keep_below is None or not keep_below.is_dir():
        return dest
    rel = os.path.relpath(photo.parent, keep_below)
    return dest if rel == "." or rel.startswith("..") else dest / rel


def planned_finals(
    group: list[Path], folder: Path, taken: set[str], present: set[str] | None = None
) -> list[Path]:
    """The names safefs.transfer would give a photo and its sidecars in folder now: the
    first numbered stem free for every member and not planned for an earlier photo.
    `present`: folder's names in hand (TargetNames), else it is listed now."""
    stem, _ = safefs.split_name(group[0].name)
    if present is None:
        present = safefs.names_in_any_case(folder)
    for new_stem in safefs.numbered_stems(stem):
        names = [safefs.member_name(p.name, stem, new_stem) for p in group]
        paths = [os.path.join(folder, n) for n in names]
        if not any(p.casefold() in taken for p in paths) and not (
            present & {n.casefold() for n in names}
        ):
            taken.update(p.casefold() for p in paths)
            return [folder / n for n in names]
    raise FileExistsError(errno.EEXIST, "no free name", str(folder))


def dedupe_plan(photo: Path, twin: Path, sides: list[Path] | None = None):
    """How a dedupe would take photo's sidecars (`sides`, else sidecars(photo)):
    (duplicates, their twins, sidecars to move by the twin, their names there); None when
    another file holds such a name, and the group is moved as with rename."""
    stem, twin_stem = safefs.split_name(photo.name)[0], safefs.split_name(twin.name)[0]
    dups, twins, free, free_names = [photo], [twin], [], []
    for side in own_sidecars(photo, sidecars(photo) if sides is None else sides):
        name = safefs.member_name(side.name, stem, twin_stem)
        there = twin.parent / name  # by the twin: with --keep-structure, in its album
        if not os.path.lexists(there):
            free.append(side)
            free_names.append(name)
        elif there.is_file() and not there.is_symlink() and safefs.same_bytes(side, there):
            dups.append(side)
            twins.append(there)
        else:
            return None
    return dups, twins, free, free_names


def failed(photo: Path, score: float, error: OSError, copy: bool) -> Outcome:
    """A photo that could not be moved (copied), and why; a refusal to expose a photo
    says its group stayed whole."""
    reason = error.strerror or str(error)
    if isinstance(error, safefs.Exposed):
        reason += "; not copied" if copy else "; not moved"
    private = isinstance(error, safefs.PrivateByFolder)
    return Outcome(photo, Action.FAILED, score, True, reason=reason, private_by_folder=private)


class DryRun:
    """What a run would do, photo by photo, touching nothing: the final names (a clash
    with a file in dest or an earlier photo of this run is numbered) and the sidecars."""

    def __init__(self, dest: Path, copy: bool, on_conflict: ConflictMode):
        self.dest, self.copy, self.on_conflict = dest, copy, on_conflict
        self.taken: set[str] = set()
        self.moved: set[Path] = set()  # sidecars an earlier photo would take with it
        self.keep_below: Path | None = None
        self.sidecars, self.names = Companions(), TargetNames()

    def outcome(self, photo: Path, score: float) -> Outcome:
        folder = target_folder(self.dest, photo, self.keep_below)
        if self.copy or self.on_conflict == "skip":
            if twin := identical_at_target(photo, folder):
                return Outcome(photo, Action.ALREADY_THERE, score, True, os.fsdecode(twin))
        elif self.on_conflict == "dedupe" and (twin := identical_at_target(photo, folder)):
            if (plan := dedupe_plan(photo, twin, self.sidecars(photo))) is not None:
                _, twins, free, free_names = plan
                try:  # the sidecars that move go by the twin, as a run checks them
                    safefs.check_folders_keep_private(free, twin.parent)
                except safefs.Exposed as e:
                    return failed(photo, score, e, self.copy)
                beside = sorted(twins[1:] + [twin.parent / name for name in free_names])
                self.taken.update(os.fsdecode(p).casefold() for p in beside)
                target = os.fsdecode(twin)
                action = Action.WOULD_DEDUPLICATE
                return Outcome(photo, action, score, True, target, _names(beside))
        group = [
            photo,
            *(s for s in own_sidecars(photo, self.sidecars(photo)) if s not in self.moved),
        ]
        try:
            safefs.check_folders_keep_private(group, folder)
            finals = planned_finals(group, folder, self.taken, self.names(folder))
        except OSError as e:  # as the run will say it
            return failed(photo, score, e, self.copy)
        if not self.copy:  # IMG_0004.xmp goes with IMG_0004.jpg, not with img_0004.JPG too
            self.moved.update(group[1:])
        action = Action.WOULD_COPY if self.copy else Action.WOULD_MOVE
        return Outcome(photo, action, score, True, os.fsdecode(finals[0]), _names(finals[1:]))


class Mover:
    """Moves (or copies) photos with their sidecars into dest, under the lock and journal."""

    keep_below: Path | None = None  # --keep-structure: src, whose sub-folders are kept
    folder_locks: list = []  # FolderLock on src and dest, once dest is made
    follow: bool = False  # --follow-symlinks: a photo that is a link is moved by its link
    stopped = False  # by a signal: undo --list says so

    def __init__(self, dest: Path, copy: bool, on_conflict: ConflictMode, wait: bool, src: Path):
        folder = state_dir()
        self.lock = RunLock(folder, wait)
        try:
            self.journal = Journal(folder)
            self.journal.recover()
            kind = "copy" if copy else "classify"  # absolute: undo --list is read from anywhere
            self.run = self.journal.start_run(kind, src.absolute(), dest.absolute())
        except BaseException:
            self.lock.release()
            raise
        self.dest, self.copy, self.on_conflict = dest, copy, on_conflict
        self.full: str | None = None  # why the target took no more: no space, quota
        self.sidecars, self.names = Companions(), TargetNames()

    def move(
        self,
        path: str,
        score: float,
        scored_as: tuple | None = None,
        folder: Path | None = None,
    ) -> Outcome:
        """Move path into folder (default: dest). scored_as: the photo's identity() when
        it was scored; a photo replaced or changed since is left where it is (its score is
        not its own)."""
        photo = Path(path)
        done = Action.COPIED if self.copy else Action.MOVED
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
            if self.on_conflict != "rename" and (twin := identical_at_target(photo, folder)):
                if self.on_conflict == "skip" or self.copy:
                    return Outcome(photo, Action.SKIPPED, score, True, reason=f"already at {twin}")
                if (beside := self.dedupe(photo, twin)) is not None:
                    target, sides = os.fsdecode(twin), _names(beside)
                    return Outcome(photo, Action.DEDUPLICATED, score, True, target, sides)
            group = [photo, *own_sidecars(photo, self.sidecars(photo))]
            if folder != base:
                safefs.check_folders_keep_private(group, folder)  # before its folders are made
                self.journal.note_created_dirs(self.run, make_dirs(folder))
            finals = self.journal.transfer(
                self.run,
                group,
                folder,
                keep_source=self.copy,
                present=self.names(folder),
                follow=self.follow,
            )
        except OSError as e:
            if e.errno in FULL:
                self.full = f"{folder} is full ({e.strerror})"
            return failed(photo, score, e, self.copy)
        sidecar_finals = [os.fsdecode(f) for f in finals[1:]]
        return Outcome(photo, done, score, True, os.fsdecode(finals[0]), sidecar_finals)

    def already_there(self, photo: Path, folder: Path) -> Path | None:
        """Where an earlier run put this photo, if it is still there with the same bytes;
        for a copy (or --on-conflict skip), also a byte-identical twin under its name or a
        numbered one: a nightly --copy-to must not pile up copies."""
        earlier = self.journal.earlier_final(photo, self.dest)
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
        dups, twins, free, free_names = plan
        if free:
            self.journal.transfer(
                self.run,
                free,
                twin.parent,
                exact_names=free_names,
                action="dedupe-sidecars",
                present=self.names(twin.parent),
            )
        self.journal.dedupe(self.run, dups, twins)
        return sorted(twins[1:] + [twin.parent / name for name in free_names])

    def close(self) -> None:
        for lock in self.folder_locks:
            lock.release()
        self.journal.finish_run(self.run, self.stopped)
        self.journal.close()
        self.lock.release()


def undo(
    wait: bool = False,
    run_id: int | None = None,
    dry_run: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Outcome]:
    """Put a classify run's moves back where they were (the last run, or run_id), never
    overwriting; then remove the folders that run created, if now empty. A dry run only
    says what would happen. When `stop()` turns true, stop after the photo in hand."""
    folder = state_dir()
    with nullcontext() if dry_run else RunLock(folder, wait):
        journal = Journal(folder)
        complete = False  # every move put back: a reader gone at the last line (| head) is late
        try:
            if not dry_run:
                journal.recover()
            run_id = run_to_undo(journal, run_id)
            if dry_run:
                held = None  # a dedupe's line, until its moved sidecars (the next entry)
                for sources, finals, keep_source, action in journal.done_moves(run_id):
                    out = _undo_plan(sources, finals, keep_source)
                    if action == "dedupe-sidecars" and held and out.action != "failed":
                        held.sidecars = sorted(held.sidecars + _names(sources))
                        continue
                    if held:
                        yield held
                    held = out if action == "dedupe" else None
                    if held is None:
                        yield out
                if held:
                    yield held
                return
            run = journal.start_run("undo", None, None)
            for sources, finals in journal.split_moves(run_id):  # said, never skipped
                where = ", ".join(os.fsdecode(f) for f in finals if f.exists())
                yield Outcome(sources[0], Action.FAILED, reason=f"left split by its move: {where}")
            restored = journal.restored_by_undo(run_id)
            already = 0  # put back by an undo that was interrupted: finish quietly
            left = 0  # moves that failed to go back
            held = None  # a dedupe's outcome, until its moved sidecars (the next entry)
            moves = journal.done_moves(run_id)
            metadata = journal.moved_metadata(run_id)  # all at once: not a query per photo
            for i, (sources, finals, keep_source, action) in enumerate(moves):
                if action != "dedupe-sidecars":  # a dedupe's group is done: say it
                    if held:
                        yield held
                    held = None
                    if stop is not None and stop():
                        journal.finish_run(run)
                        return
                if tuple(finals) in restored or (
                    (keep_source or action == "dedupe")
                    and all(s.exists() for s in sources)
                    and not (keep_source and any(f.exists() for f in finals))
                ):
                    already += action != "dedupe-sidecars"
                    continue
                if action == "dedupe":
                    held = _undo_dedupe(journal, run, sources, finals, run_id)
                    left += held.action == Action.FAILED
                elif action == "dedupe-sidecars":  # part of the dedupe above: said there
                    out = _undo_one(journal, run, sources, finals, False, metadata)
                    complete = i == len(moves) - 1 and not left
                    if out.action == Action.FAILED:
                        left += 1
                        yield out
                    elif held and held.action == Action.RESTORED:
                        held.sidecars = sorted(held.sidecars + _names(sources))
                else:
                    out = _undo_one(journal, run, sources, finals, keep_source, metadata)
                    left += out.action == Action.FAILED
                    complete = i == len(moves) - 1 and not left
                    yield out
            complete = not left
            if held:
                yield held
            if left:  # the run stays open: the next undo tries what is left
                journal.finish_run(run)
                return
            _undone(journal, run_id, run, already)
        except GeneratorExit:  # the reader went away: the run is undone if every move is back
            if complete:
                _undone(journal, run_id, run, already)
            raise
        finally:
            journal.close()


def list_runs() -> list[RunInfo]:
    """The runs undo can take back, oldest first (the journal only read)."""
    journal = Journal.reader(state_dir())
    if journal is None:
        return []
    try:
        return journal.runs()
    finally:
        journal.close()


def run_to_undo(journal: Journal, run_id: int | None) -> int:
    """The run an undo takes back: run_id, else the last run that moved photos, if it is
    not undone already (a second undo never walks silently into earlier nights)."""
    hint = "'flowersort undo --list' shows the runs, 'flowersort undo RUN' undoes one"
    runs = journal.runs(run_id)
    if run_id is not None and not runs:
        raise FlowersortError(f"no run {run_id} moved photos; {hint}")
    if not runs:
        raise FlowersortError("nothing to undo: no run has moved photos")
    info = runs[-1]
    if info.undone:
        which = f"run {info.id}" if run_id is not None else f"the last run ({info.id})"
        raise FlowersortError(
            f"nothing to undo: {which}, {info.when()}, {info.photos} photos, is already undone; "
            + hint
        )
    return info.id


def remove_empty_dirs(folders: list[Path]) -> None:
    """Remove the folders a run created, deepest first, where undo left them empty."""
    for f in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            f.rmdir()
        except OSError:
            continue  # not empty (or gone): leave it
        log.info("removed empty folder %s", display(f))


def _undo_plan(sources, finals, keep_source: bool) -> Outcome:
    """What _undo_one would do, checked the same way, touching nothing."""
    photo = sources[0]
    if keep_source:
        if all(
            s.exists() and f.exists() and safefs.same_bytes(s, f) for s, f in zip(sources, finals)
        ):
            target, sides = os.fsdecode(finals[0]), _names(sources[1:])
            return Outcome(photo, Action.WOULD_REMOVE_COPY, target=target, sidecars=sides)
        return Outcome(photo, Action.FAILED, reason="the copy or its original has changed")
    if not all(f.exists() for f in finals):
        return Outcome(photo, Action.FAILED, reason=f"{finals[0]} is no longer there")
    if any(os.path.lexists(s) for s in sources):
        return Outcome(photo, Action.FAILED, reason="a file of that name has appeared since")
    target = os.fsdecode(finals[0])
    return Outcome(photo, Action.WOULD_RESTORE, target=target, sidecars=_names(sources[1:]))


def _untouched_since_moved(metadata: dict, finals) -> list[dict] | None:
    """For each file of a move, its mode, owner, times and tags from before the move if
    they are still as the move left them (a disk without them, such as exFAT, made a
    private photo 0777: undo gives it back its own); yours where you changed them since."""
    recorded = metadata.get(tuple(finals))
    if recorded is None:
        return None
    out = []
    for final, before, landed in zip(finals, *recorded):
        # each part on its own: an edit on exFAT changes the bytes and times, never the
        # 0777 the stick gave the photo, which must not come home with it
        now = safefs.metadata(final)
        merged = dict(now)
        for keys in (("mode",), ("uid", "gid"), ("atime_ns", "mtime_ns"), ("xattrs",)):
            if all(now[k] == landed[k] for k in keys if k != "atime_ns"):
                merged.update({k: before[k] for k in keys})
        out.append(merged)
    return out


def _undo_one(
    journal: Journal, run: int, sources, finals, keep_source: bool, metadata: dict
) -> Outcome:
    photo = sources[0]
    if keep_source:  # a copy: remove it only while the original is still there, unchanged
        if all(
            s.exists() and f.exists() and safefs.same_bytes(s, f) for s, f in zip(sources, finals)
        ):
            for f in finals:
                safefs._unlink(f)
            target = os.fsdecode(finals[0])
            return Outcome(photo, Action.REMOVED_COPY, target=target, sidecars=_names(sources[1:]))
        return Outcome(photo, Action.FAILED, reason="the copy or its original has changed")
    present = [f for f in finals if f.exists()]
    if len(present) != len(finals):
        return Outcome(photo, Action.FAILED, reason=f"{finals[0]} is no longer there")
    if refused := _link_in_the_way(photo):
        return refused
    try:
        untouched = _untouched_since_moved(metadata, finals)
        photo.parent.mkdir(parents=True, exist_ok=True)
        journal.transfer(
            run,
            finals,
            photo.parent,
            exact_names=[s.name for s in sources],
            metadata=untouched,
            undoing=True,
        )
        for source, before in zip(sources, untouched or []):
            if before is not None:
                safefs.set_metadata(source, before)
    except FileExistsError:
        return Outcome(photo, Action.FAILED, reason="a file of that name has appeared since")
    except OSError as e:
        return Outcome(photo, Action.FAILED, reason=e.strerror or str(e))
    target = os.fsdecode(finals[0])
    return Outcome(photo, Action.RESTORED, target=target, sidecars=_names(sources[1:]))


def _undone(journal: Journal, run_id: int, run: int, already: int) -> None:
    """Every move of run_id is back: mark it, remove the folders it made, if now empty."""
    if already:
        log.info(
            "%d photos had already been put back by an undo that was interrupted; "
            "the rest are done now",
            already,
        )
    journal.mark_undone(run_id)
    info = journal.runs(run_id)
    if labels := take_back(run_id, info[0].dest if info else None):
        log.info("%d flower label%s learnt by that run taken back", labels, "s"[: labels != 1])
    remove_empty_dirs(journal.created_dirs(run_id))
    journal.finish_run(run)


def _names(paths) -> list[str]:
    return [os.fsdecode(p) for p in paths]


def _undo_dedupe(
    journal: Journal, run: int, sources: list[Path], twins: list[Path], deduped_by: int
) -> Outcome:
    """A removed duplicate comes back as a copy of the twin that stayed, with its own
    mode, times and tags (where run `deduped_by` journaled them)."""
    photo = sources[0]
    gone = [(s, t) for s, t in zip(sources, twins) if not s.exists()]
    if not all(t.exists() for _, t in gone):
        return Outcome(photo, Action.FAILED, reason=f"{twins[0]} is no longer there")
    if refused := _link_in_the_way(photo):
        return refused
    try:
        photo.parent.mkdir(parents=True, exist_ok=True)
        if gone:
            journal.transfer(
                run,
                [t for _, t in gone],
                photo.parent,
                keep_source=True,
                exact_names=[s.name for s, _ in gone],
                undoing=True,
            )
            own = journal.removed_duplicates(deduped_by, sources)
            for source, _ in gone:
                if source in own:  # the copy has the twin's mode, times and tags
                    safefs.set_metadata(source, own[source])
    except FileExistsError:
        return Outcome(photo, Action.FAILED, reason="a file of that name has appeared since")
    except OSError as e:
        return Outcome(photo, Action.FAILED, reason=e.strerror or str(e))
    target, sides = os.fsdecode(twins[0]), _names(sources[1:])
    return Outcome(photo, Action.RESTORED, target=target, sidecars=sides)
