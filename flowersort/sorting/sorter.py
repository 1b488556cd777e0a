"""Classifying an archive and moving the flower photos: sidecars, name clashes, the
journal and the lock. Every file operation goes through safefs."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from flowersort import safefs
from flowersort.base import rights
from flowersort.base.errors import EmptySource, FlowersortError, StateError
from flowersort.base.outcomes import Action, Outcome, counted
from flowersort.base.records import MoveAction, RunKind, StrEnum
from flowersort.model.file import Model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, effective_band
from flowersort.photos.archive import OnPass, OnSkip, companion_names, display, suffix_of, walk
from flowersort.scoring.cache import ScoreCache
from flowersort.scoring.pipeline import score_photos
from flowersort.sorting.corrections import KIND_TEXT, Watch, take_back
from flowersort.sorting.journal import (
    DoneMove,
    FolderLock,
    Journal,
    RunInfo,
    RunLock,
    earlier_target,
    state_dir,
)
from flowersort.sorting.tagging import Tagger, recover_tags, tag_runs, undo_tags

log = logging.getLogger("flowersort")
ConflictMode = Literal["rename", "skip", "dedupe"]
FULL = (errno.ENOSPC, errno.EDQUOT)
DEDUPE_SIDECARS = MoveAction.DEDUPE_SIDECARS


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


def _stem(name: str) -> str:
    """os.path.splitext(name)[0], by archive.suffix_of."""
    return name[: len(name) - len(suffix_of(name))]


class Companions:
    """sidecars() from one listing of each folder, kept while the run works in it: a
    listing per photo made a folder of n photos cost n * n. The listing is a hint: each
    companion is looked at on disk before it is taken (one moved or deleted since is not)."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        # the folder's names by their stem (up to the last dot), lower-cased: a companion's
        # stem is the photo's stem (IMG_1.XMP) or its name (IMG_1.JPG.json)
        self.by_stem: dict[str, list[str]] = {}

    def __call__(self, photo: Path) -> list[Path]:
        if photo.parent != self.folder:  # the walk has moved on: the new folder, once
            self.folder, self.by_stem = photo.parent, {}
            try:
                for name in os.listdir(photo.parent):
                    self.by_stem.setdefault(_stem(name).lower(), []).append(name)
            except OSError:
                pass
        name = photo.name
        stems = (_stem(name).lower(), name.lower())
        near = [n for s in stems for n in self.by_stem.get(s, ()) if n != name]
        return sidecars(photo, near) if near else []  # most photos come alone


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
    # effective ids: a root run acting as the folders' owner asks with their rights
    made_by_root = there != target and made_for_the_user(there)
    if not made_by_root and not os.access(there, os.W_OK | os.X_OK, effective_ids=True):
        read_only = os.statvfs(there).f_flag & os.ST_RDONLY
        why = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise FlowersortError(f"cannot {what}: {why}{rights.acting_note()}")
    if probe and there == target:
        name = target / f".flowersort-probe-{os.getpid()}"
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:  # left by a run of this pid killed outright: writable
            return
        except OSError as e:
            raise FlowersortError(f"cannot {what}: {e.strerror}{rights.acting_note()}") from None
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


# what a dry run says for what a run does
WOULD = {
    Action.MOVED: Action.WOULD_MOVE,
    Action.COPIED: Action.WOULD_COPY,
    Action.DEDUPLICATED: Action.WOULD_DEDUPLICATE,
    Action.REVIEW: Action.WOULD_REVIEW,
}


DRY_DONE = (Action.WOULD_MOVE, Action.WOULD_COPY)


class Decision(StrEnum):
    """What a run does with a photo it scored (decide)."""

    VETOED = "vetoed"  # the user took it back out of the target earlier: kept
    CONFIRMED = "confirmed"  # borderline, and the user sorted it into the target: kept
    BORDERLINE = "borderline"  # borderline, no review folder: left in place
    REVIEW = "review"  # borderline: into the review folder
    KEEP = "keep"  # not a flower, or no target
    MOVE = "move"  # into the target


def decide(
    flower: bool,
    borderline: bool,
    *,
    has_target: bool,
    has_review: bool,
    vetoed: bool = False,
    confirmed: bool = False,
) -> Decision:
    """The one rule from a score (flower: at or over the threshold; borderline: within the
    review band of it) and the user's earlier choices to what the run does."""
    if has_target and vetoed:
        return Decision.VETOED
    if has_target and borderline:
        if confirmed:
            return Decision.CONFIRMED
        return Decision.REVIEW if has_review else Decision.BORDERLINE
    if not flower or not has_target:
        return Decision.KEEP
    return Decision.MOVE


def _no_skip(path: str, reason: str) -> None:
    pass


@dataclass(frozen=True)
class WalkOptions:
    """Which files under SRC a run looks at (archive.walk)."""

    include_hidden: bool = False
    follow_symlinks: bool = False
    exclude: tuple[str, ...] = ()

    def photos(
        self,
        src: Path,
        prune: Iterable[Path | None] = (),
        on_skip: OnSkip | None = None,
        on_pass: OnPass | None = None,
    ) -> Iterator[str]:
        return walk(
            src,
            prune=[p for p in prune if p is not None],
            include_hidden=self.include_hidden,
            follow_symlinks=self.follow_symlinks,
            exclude=self.exclude,
            on_skip=on_skip or _no_skip,
            on_pass=on_pass,
        )


@dataclass(frozen=True)
class SortOptions:
    """How a classify run sorts (the CLI's options, built once). dest None: only scored.
    threshold None: the model's; review_band None: the model's band (none with a
    threshold set by hand); keep_structure: into the photo's folder below src recreated
    under dest."""

    dest: Path | None = None
    copy: bool = False
    dry_run: bool = False
    threshold: float | None = None
    review: Path | None = None
    review_band: float | None = None
    on_conflict: ConflictMode = "rename"
    keep_structure: bool = False
    wait: bool = False
    workers: int | None = None
    thumbnail: bool = False
    walk: WalkOptions = field(default_factory=WalkOptions)
    tag: str | None = None  # --tag: this keyword in each flower's sidecar, instead of a move
    review_tag: str | None = None  # with tag: the review band's keyword (None: left alone)

    @property
    def targets(self) -> tuple[Path | None, Path | None]:
        return self.dest, self.review


@dataclass(frozen=True)
class Hooks:
    """What a run tells its caller as it goes, and asks it. stop(): a signal came, so no
    new photo is started (on_stopped is told how many were never looked at);
    on_walk_skip: a file the walk skipped; on_passed_over: a video or RAW file that is
    no photo's companion."""

    stop: Callable[[], bool] | None = None
    on_walk_skip: OnSkip | None = None
    on_passed_over: OnPass | None = None
    on_stopped: Callable[[int], None] | None = None


class SortRun:
    """One classify run: `with SortRun(model, src, options) as run: for outcome in run:`.
    Score every photo under src; move (or copy) the flowers into options.dest unless a
    dry run. A run that changes files holds the lock from its first outcome to the end
    of the with block, first finishes or rolls back what an interrupted run left in the
    journal, and journals every move. With a target, a score within the review band of
    the threshold is borderline: moved into the review folder if given, else left in
    place; and the user's earlier choices are learnt and kept (see corrections.Watch)."""

    def __init__(
        self,
        model: Model,
        src: Path,
        options: SortOptions | None = None,
        *,
        cache: ScoreCache | None = None,
        hooks: Hooks | None = None,
    ):
        options = options or SortOptions()
        self._outcomes: Generator[Outcome, None, None] = _sort(
            model, Path(src), options, hooks or Hooks(), cache
        )

    def __enter__(self) -> SortRun:
        return self

    def __iter__(self) -> Iterator[Outcome]:
        return self._outcomes

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock, the journal and the corrections store (a run stopped half-way
        releases them now)."""
        self._outcomes.close()


def classify(
    model: Model, src: Path, dest: Path | None = None, **options: Any
) -> Iterator[Outcome]:
    """SortRun for a library caller (tests, benchmarks): the keywords are those of
    SortOptions, WalkOptions and Hooks, and `cache`."""
    walk_keys = {f.name for f in fields(WalkOptions)}
    hook_keys = {f.name for f in fields(Hooks)}
    cache = options.pop("cache", None)
    walk_options = WalkOptions(**{k: options.pop(k) for k in walk_keys & options.keys()})
    hooks = Hooks(**{k: options.pop(k) for k in hook_keys & options.keys()})
    sort = SortOptions(dest=dest, walk=walk_options, **options)
    with SortRun(model, src, sort, cache=cache, hooks=hooks) as run:
        yield from run


def _sort(
    model: Model, src: Path, options: SortOptions, hooks: Hooks, cache: ScoreCache | None
) -> Generator[Outcome, None, None]:
    """SortRun's outcomes, as a generator: closing it ends the run."""
    src = Path(src)
    check_run(src, options)
    threshold, band = decision_line(model, options)
    targets: Targets | Tagger | None = None
    if options.tag is not None:  # nothing moves: keywords in the sidecars (tagging.py)
        targets = Tagger.open(src, options)
    elif options.dest is not None:
        targets = Targets.open(src, options)
    walk_skips: deque[tuple[str, str]] = deque()
    scored_as: dict[str, tuple | None] = {}  # each photo's identity before it was read

    def noting_identity(paths: Iterable[str]) -> Iterator[str]:
        for path in paths:
            scored_as[path] = identity(path)
            yield path

    def cache_key(path: str | Path) -> tuple[int, int, int] | None:
        """The score cache's key from the stat noting_identity made: one stat a photo."""
        was = scored_as.get(os.fspath(path))
        return None if was is None else (was[2], was[3], was[1])  # size, mtime_ns, inode

    def note_skip(path: str, reason: str) -> None:
        walk_skips.append((path, reason))
        if hooks.on_walk_skip:
            hooks.on_walk_skip(path, reason)

    on_pass = hooks.on_passed_over
    photos = options.walk.photos(src, options.targets, on_skip=note_skip, on_pass=on_pass)
    scoring = noting_identity(photos)
    try:
        for scored in score_photos(
            model,
            scoring,
            options.workers,
            cache=cache,
            thumbnail=options.thumbnail,
            key_of=cache_key,
        ):
            if hooks.stop is not None and hooks.stop():
                if hooks.on_stopped is not None:  # read but not reported, and the walk's rest
                    hooks.on_stopped(len(scored_as) + sum(1 for _ in photos))
                if targets:
                    targets.stop()
                return
            path, score = os.fspath(scored.path), scored.score
            was = scored_as.pop(path, None)
            while walk_skips:
                skipped, why = walk_skips.popleft()
                yield Outcome(skipped, Action.SKIPPED, reason=why)
            if score is None:
                why = scored.skip_reason
                yield Outcome(path, Action.SKIPPED, reason=why, skipped_before=scored.remembered)
                continue
            flower, borderline = score >= threshold, abs(score - threshold) < band
            yield noted(sort_one(path, score, flower, borderline, targets, was), scored.note)
        for skipped, why in walk_skips:
            yield Outcome(skipped, Action.SKIPPED, reason=why)
        if targets:  # a stopped run never gets here
            targets.finish()
    except GeneratorExit:  # closed before its last photo (`| head` went away): stopped
        if targets:
            targets.stop()
        raise
    finally:
        if targets:
            targets.close()


def check_run(src: Path, options: SortOptions) -> None:
    """What stops a run before it starts, in one line: no SRC, an empty one (a disk not
    mounted), a target that is SRC itself, reached through another user's link, or that
    cannot be written."""
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    # before any folder is made (none in a NAS's bare mount point), and before the target's
    # checks: a mount point the user cannot write is still a disk not mounted
    if is_empty_folder(src):
        raise EmptySource(f"{src} is empty: nothing to do, nothing created (is it mounted?)")
    if options.dest is None:
        return
    folders = [Path(f) for f in options.targets if f is not None]
    for folder in folders:
        check_no_foreign_links(folder)
    check_target(src, Path(options.dest))
    for folder in folders:
        check_writable(folder, probe=not options.dry_run)


def decision_line(model: Model, options: SortOptions) -> tuple[float, float]:
    """(threshold, review band): the options', else the model's. A threshold set by hand
    is the line itself: no band unless one is given too."""
    threshold, band = options.threshold, options.review_band
    if band is None:
        band = DEFAULT_REVIEW_BAND if model.review_band is None else model.review_band
        band = effective_band(model.threshold, band) if threshold is None else 0.0
    return (model.threshold if threshold is None else threshold), band


# what a decision that changes no file says
SAID = {
    Decision.KEEP: Action.KEPT,
    Decision.CONFIRMED: Action.KEPT,  # the user sorted it into dest already (a copy run
    Decision.BORDERLINE: Action.BORDERLINE,  # keeps the original here)
}


def sort_one(
    path: str,
    score: float,
    flower: bool,
    borderline: bool,
    targets: Targets | Tagger | None,
    scored_as: tuple | None,
) -> Outcome:
    """One scored photo: decided (decide), then left, or acted on by the targets."""
    size = scored_as[2] if scored_as is not None else None  # as the walk saw it
    veto = targets.watch.held(path, size) if targets else None
    decision = decide(
        flower,
        borderline,
        has_target=targets is not None,
        has_review=targets is not None and targets.review is not None,
        vetoed=veto is not None,
        confirmed=bool(targets and borderline and not veto and targets.watch.confirmed(path)),
    )
    if decision in SAID:
        return Outcome(path, SAID[decision], score, flower)
    if veto is not None:  # Decision.VETOED
        return Outcome(path, Action.VETOED, score, flower, reason=KIND_TEXT[veto.kind])
    assert targets is not None  # decide acts only with a target
    return targets.act(decision, path, score, flower, scored_as)


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


def count_photos(src: Path, targets: Iterable[Path | None], walk_options: WalkOptions) -> int:
    """How many files classify would look at (for a progress bar's ETA)."""
    return sum(1 for _ in walk_options.photos(src, targets))


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
            _mkdir(f)
        except FileExistsError:  # made meanwhile by someone else: not ours
            missing.remove(f)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    return missing[::-1]


def made_for_the_user(parent: Path) -> bool:
    """Whether a root run acting as a user makes its target in parent with root's rights
    and gives it to them: parent is one they cannot write and only root can change (the
    target /srv/photos/Flowers of a nightly run over alice's ~/Pictures)."""
    if rights.current() is None or os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
        return False
    return rights.writer(parent) is None


def _mkdir(folder: Path) -> None:
    """mkdir; see made_for_the_user: then made by root and given to the user at once (in
    a folder only root can change, no one else can put anything in its place meanwhile)."""
    user = rights.current()
    if user is None or not made_for_the_user(folder.parent):
        folder.mkdir()
        return
    with rights.as_root():
        folder.mkdir()
        os.chown(folder, user.uid, user.gid, follow_symlinks=False)


def _rmdir(folder: Path) -> None:
    """rmdir; a folder made for the user in one only root can change goes as it came."""
    if made_for_the_user(folder.parent):
        with rights.as_root():
            folder.rmdir()
        return
    folder.rmdir()


def target_folder(dest: Path, photo: Path, keep_below: Path | None) -> Path:
    """dest; with --keep-structure, dest plus the photo's folder relative to src
    (Pictures/2020/07 Trip/x.jpg -> Flowers/2020/07 Trip/)."""
    if keep_below is None or not keep_below.is_dir():
        return dest
    rel = os.path.relpath(photo.parent, keep_below)
    return dest if rel == "." or rel.startswith("..") else dest / rel


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


@dataclass
class Live:
    """What a run that changes files holds: the lock, the journal and its run there."""

    lock: RunLock
    journal: Journal
    run: int


class Mover:
    """Moves (or copies) photos with their sidecars into dest. Each photo is planned (a
    copy already at the target, a dedupe, else the final names of its group from
    safefs.free_names) and the plan applied: under the lock and journal, or in a dry run
    only said (would-move ...). The two differ only where a file would change."""

    keep_below: Path | None = None  # --keep-structure: src, whose sub-folders are kept
    folder_locks: list = []  # FolderLock on src and dest, once dest is made
    follow: bool = False  # --follow-symlinks: a photo that is a link is moved by its link
    stopped = False  # by a signal: undo --list says so

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
        self.ways: safefs.Ways = {}
        self.moved: set[Path] = set()  # sidecars an earlier photo took with it
        self.live: Live | None = None  # None: a dry run
        self.journal: Journal | None = None  # read by both, written by a live run
        if dry_run:  # read only, for where earlier runs put photos
            self.journal = _journal_reader()
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
            if self.on_conflict != "rename" and (twin := identical_at_target(photo, folder)):
                if self.on_conflict == "skip" or self.copy:
                    return Outcome(photo, Action.SKIPPED, score, True, reason=f"already at {twin}")
                if (beside := self.dedupe(photo, twin)) is not None:
                    target, sides = os.fsdecode(twin), _names(beside)
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
        return Outcome(photo, done, score, True, os.fsdecode(finals[0]), _names(finals[1:]))

    def transfer(self, group: list[Path], folder: Path, made: bool) -> list[Path]:
        """Move (copy) group into folder under the names safefs.free_names gives it;
        `made`: folder is the photo's own below the target (--keep-structure), made now."""
        present = self.names(folder)
        # before its folders are made
        safefs.check_folders_keep_private(group, folder, self.ways)
        if self.dry_run:
            names = next(safefs.free_names([p.name for p in group], present), None)
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
        dups, twins, free, free_names = plan
        if free and self.dry_run:  # as transfer checks them
            safefs.check_folders_keep_private(free, twin.parent, self.ways)
            self.names(twin.parent).update(n.casefold() for n in free_names)
        elif free:
            live = self._live()
            live.journal.transfer(
                live.run,
                free,
                twin.parent,
                exact_names=free_names,
                action=MoveAction.DEDUPE_SIDECARS,
                present=self.names(twin.parent),
            )
        if not self.dry_run:
            live = self._live()
            live.journal.dedupe(live.run, dups, twins)
        self.moved.update(free)
        return sorted(twins[1:] + [twin.parent / name for name in free_names])

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


def _journal_reader() -> Journal | None:
    """The journal read only (a dry run writes nothing), or None."""
    try:
        return Journal.reader(state_dir())
    except StateError:
        return None


def undo(
    wait: bool = False,
    run_id: int | None = None,
    dry_run: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Generator[Outcome, None, None]:
    """Put a classify run's moves back where they were (the last run, or run_id), never
    overwriting; then remove the folders that run created, if now empty. A dry run goes
    the same way and says what would happen (would-restore ...), touching nothing. When
    `stop()` turns true, stop after the photo in hand."""
    folder = state_dir()
    with nullcontext() if dry_run else RunLock(folder, wait):
        journal = Journal(folder)
        complete = False  # every move put back: a reader gone at the last line (| head) is late
        run = None
        try:
            if not dry_run:
                journal.recover()
                recover_tags(journal)
            undo_id = run_to_undo(journal, run_id)
            if not dry_run:
                run = journal.start_run(RunKind.UNDO, None, None)
            if tag_runs(journal, undo_id):  # a tag run: its keywords come out, nothing moves
                yield from _untag(journal, undo_id, run, dry_run, stop)
                return
            undoing = Undoing(journal, run, undo_id, dry_run)
            for sources, finals in journal.split_moves(undo_id):  # said, never skipped
                where = ", ".join(os.fsdecode(f) for f in finals if f.exists())
                yield Outcome(sources[0], Action.FAILED, reason=f"left split by its move: {where}")
            restored = journal.restored_by_undo(undo_id)
            already = 0  # put back by an undo that was interrupted: finish quietly
            left = 0  # moves that failed to go back
            held = None  # a dedupe's outcome, until its moved sidecars (the next entry)
            moves = journal.done_moves(undo_id)
            for i, move in enumerate(moves):
                sources, finals, keep_source, action = move
                if action != DEDUPE_SIDECARS:  # a dedupe's group is done: say it
                    if held:
                        yield held
                    held = None
                    if stop is not None and stop():
                        if run is not None:
                            journal.finish_run(run)
                        return
                if tuple(finals) in restored or (
                    (keep_source or action == MoveAction.DEDUPE)
                    and all(s.exists() for s in sources)
                    and not (keep_source and any(f.exists() for f in finals))
                ):
                    already += action != DEDUPE_SIDECARS
                    continue
                out = undoing.take_back(move)
                if action == MoveAction.DEDUPE:
                    held = out
                    left += held.action == Action.FAILED
                elif action == DEDUPE_SIDECARS:  # part of the dedupe above: said there
                    complete = i == len(moves) - 1 and not left
                    if out.action == Action.FAILED:
                        left += 1
                        yield out
                    elif held and held.action in (Action.RESTORED, Action.WOULD_RESTORE):
                        held.sidecars = sorted(held.sidecars + _names(sources))
                else:
                    left += out.action == Action.FAILED
                    complete = i == len(moves) - 1 and not left
                    yield out
            complete = not left
            if held:
                yield held
            if run is None:  # a dry run: nothing to record
                return
            if left:  # the run stays open: the next undo tries what is left
                journal.finish_run(run)
                return
            _undone(journal, undo_id, run, already)
        except GeneratorExit:  # the reader went away: the run is undone if every move is back
            if complete and run is not None:
                _undone(journal, undo_id, run, already)
            raise
        finally:
            journal.close()


def list_runs() -> list[RunInfo]:
    """The runs undo can take back, oldest first (the journal only read)."""
    journal = Journal.reader(state_dir())
    if journal is None:
        return []
    try:
        return _runs(journal)
    finally:
        journal.close()


def undo_folders(run_id: int | None = None) -> list[Path]:
    """The SRC and target of the run undo would take back (the journal read only), for
    whose rights a root undo acts with; none when there is nothing to undo (undo says so)."""
    journal = _journal_reader()
    if journal is None:
        return []
    try:
        infos = _runs(journal, run_to_undo(journal, run_id))
    except (FlowersortError, sqlite3.Error):
        return []
    finally:
        journal.close()
    return [Path(f) for info in infos for f in (info.src, info.dest) if f is not None]


def _runs(journal: Journal, run: int | None = None) -> list[RunInfo]:
    """The move and copy runs, and the tag runs (tagging.py), oldest first."""
    return sorted(journal.runs(run) + tag_runs(journal, run), key=lambda info: info.id)


def _untag(
    journal: Journal,
    undo_id: int,
    run: int | None,
    dry_run: bool,
    stop: Callable[[], bool] | None,
) -> Iterator[Outcome]:
    """The undo of a tag run (run: this undo's, None in a dry run): each keyword it wrote
    comes out; the run is undone once every one has."""
    left = 0  # keywords that could not be taken out: the next undo tries again
    for out in undo_tags(journal, undo_id, dry_run=dry_run):
        left += out.action == Action.FAILED
        yield out
        if stop is not None and stop():  # after the photo in hand
            break
    else:
        if run is not None and not left:
            _undone(journal, undo_id, run, 0)
            return
    if run is not None:
        journal.finish_run(run)


def run_to_undo(journal: Journal, run_id: int | None) -> int:
    """The run an undo takes back: run_id, else the last run that moved photos, if it is
    not undone already (a second undo never walks silently into earlier nights)."""
    hint = "'flowersort undo --list' shows the runs, 'flowersort undo RUN' undoes one"
    runs = _runs(journal, run_id)
    if run_id is not None and not runs:
        raise FlowersortError(f"no run {run_id} moved photos; {hint}")
    if not runs:
        raise FlowersortError("nothing to undo: no run has moved photos")
    info = runs[-1]
    if info.undone:
        which = f"run {info.id}" if run_id is not None else f"the last run ({info.id})"
        raise FlowersortError(
            f"nothing to undo: {which}, {info.when()}, {counted(info.photos, 'photo')}, is "
            "already undone; " + hint
        )
    return info.id


def remove_empty_dirs(folders: list[Path]) -> None:
    """Remove the folders a run created, deepest first, where undo left them empty."""
    for f in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            _rmdir(f)
        except OSError:
            continue  # not empty (or gone): leave it
        log.info("removed empty folder %s", display(f))


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


class Undoing:
    """Takes back the moves of run `run_id`, one journaled move at a time, as undo run
    `run`; in a dry run each is checked the same way and only said (would-restore ...)."""

    def __init__(self, journal: Journal, run: int | None, run_id: int, dry_run: bool):
        self.journal, self.run, self.run_id, self.dry_run = journal, run, run_id, dry_run
        self.metadata = journal.moved_metadata(run_id)  # all at once: not a query per photo

    def _run(self) -> int:
        if self.run is None:
            raise AssertionError("a dry run changes no file")
        return self.run

    def said(self, action: Action) -> Action:
        if not self.dry_run:
            return action
        return {
            Action.RESTORED: Action.WOULD_RESTORE,
            Action.REMOVED_COPY: Action.WOULD_REMOVE_COPY,
        }[action]

    def take_back(self, move: DoneMove) -> Outcome:
        if move.action == MoveAction.DEDUPE:
            return self.dedupe(move.sources, move.finals)
        keep_source = move.keep_source and move.action != DEDUPE_SIDECARS
        if keep_source:
            return self.remove_copy(move.sources, move.finals)
        return self.move_back(move.sources, move.finals)

    def remove_copy(self, sources: list[Path], finals: list[Path]) -> Outcome:
        """A copy: removed only while the original is still there, unchanged."""
        photo = sources[0]
        if not all(
            s.exists() and f.exists() and safefs.same_bytes(s, f) for s, f in zip(sources, finals)
        ):
            return Outcome(photo, Action.FAILED, reason="the copy or its original has changed")
        if not self.dry_run:
            for f in finals:
                safefs.remove(f)
        target, sides = os.fsdecode(finals[0]), _names(sources[1:])
        return Outcome(photo, self.said(Action.REMOVED_COPY), target=target, sidecars=sides)

    def move_back(self, sources: list[Path], finals: list[Path]) -> Outcome:
        photo = sources[0]
        if not all(f.exists() for f in finals):
            return Outcome(photo, Action.FAILED, reason=f"{finals[0]} is no longer there")
        if refused := _link_in_the_way(photo):
            return refused
        if self.dry_run and any(os.path.lexists(s) for s in sources):  # as transfer finds
            return Outcome(photo, Action.FAILED, reason=APPEARED)

        def move() -> None:
            untouched = _untouched_since_moved(self.metadata, finals)
            photo.parent.mkdir(parents=True, exist_ok=True)
            self.journal.transfer(
                self._run(),
                finals,
                photo.parent,
                exact_names=[s.name for s in sources],
                metadata=untouched,
                undoing=True,
            )
            for source, before in zip(sources, untouched or []):
                if before is not None:
                    safefs.set_metadata(source, before)

        return self._put_back(sources, finals[0], move)

    def dedupe(self, sources: list[Path], twins: list[Path]) -> Outcome:
        """A removed duplicate comes back as a copy of the twin that stayed, with its own
        mode, times and tags (where the run journaled them)."""
        photo = sources[0]
        gone = [(s, t) for s, t in zip(sources, twins) if not s.exists()]
        if not all(t.exists() for _, t in gone):
            return Outcome(photo, Action.FAILED, reason=f"{twins[0]} is no longer there")
        if refused := _link_in_the_way(photo):
            return refused

        def copy_back() -> None:
            if not gone:
                return
            photo.parent.mkdir(parents=True, exist_ok=True)
            self.journal.transfer(
                self._run(),
                [t for _, t in gone],
                photo.parent,
                keep_source=True,
                exact_names=[s.name for s, _ in gone],
                undoing=True,
            )
            own = self.journal.removed_duplicates(self.run_id, sources)
            for source, _ in gone:
                if source in own:  # the copy has the twin's mode, times and tags
                    safefs.set_metadata(source, own[source])

        return self._put_back(sources, twins[0], copy_back)

    def _put_back(self, sources: list[Path], target: Path, act: Callable[[], None]) -> Outcome:
        """act() (not in a dry run), and the photo is restored (would be); a name taken
        since, or an I/O error, and it stays where it is."""
        photo = sources[0]
        try:
            if not self.dry_run:
                act()
        except FileExistsError:
            return Outcome(photo, Action.FAILED, reason=APPEARED)
        except OSError as e:
            return Outcome(photo, Action.FAILED, reason=e.strerror or str(e))
        sides = _names(sources[1:])
        return Outcome(
            photo, self.said(Action.RESTORED), target=os.fsdecode(target), sidecars=sides
        )


APPEARED = "a file of that name has appeared since"


def _undone(journal: Journal, run_id: int, run: int, already: int) -> None:
    """Every move of run_id is back: mark it, remove the folders it made, if now empty."""
    if already:
        log.info(
            "%s had already been put back by an undo that was interrupted; the rest are done now",
            counted(already, "photo"),
        )
    journal.mark_undone(run_id)
    info = journal.runs(run_id)
    if labels := take_back(run_id, info[0].dest if info else None):
        log.info("%d flower label%s learnt by that run taken back", labels, "s"[: labels != 1])
    remove_empty_dirs(journal.created_dirs(run_id))
    journal.finish_run(run)


def _names(paths) -> list[str]:
    return [os.fsdecode(p) for p in paths]
