"""Classifying an archive and moving the flower photos: sidecars, name clashes, the
journal and the lock. Every file operation goes through safefs."""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowersort import safefs
from flowersort.archive import OnSkip, walk
from flowersort.cache import ScoreCache
from flowersort.corrections import DEFAULT_REVIEW_BAND, KIND_TEXT, Watch
from flowersort.errors import FlowersortError
from flowersort.journal import Journal, RunLock, state_dir
from flowersort.model import Model
from flowersort.pipeline import score_photos

ConflictMode = Literal["rename", "skip", "dedupe"]
FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("flowersort")
SIDECAR_SUFFIXES = (".xmp", ".aae", ".json")
RAW_SUFFIXES = (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf")
log = logging.getLogger("flowersort")


def sidecars(photo: Path) -> list[Path]:
    """Files that belong to a photo: same stem with a sidecar or RAW suffix (any case),
    and Google Takeout's NAME.jpg.json."""
    stem, _ = safefs.split_name(photo.name)
    found = []
    for suffix in SIDECAR_SUFFIXES + RAW_SUFFIXES:
        for variant in {suffix, suffix.upper()}:
            candidate = photo.with_name(stem + variant)
            if candidate.is_file() and not candidate.is_symlink():
                found.append(candidate)
    for suffix in (".json", ".xmp"):
        candidate = photo.with_name(photo.name + suffix)
        if candidate.is_file() and not candidate.is_symlink():
            found.append(candidate)
    return sorted(set(found) - {photo})


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
    so photos already in it are never classified: say so."""
    real_src, real_dest = src.resolve(), dest.resolve()
    folder = real_src if real_src.is_dir() else real_src.parent
    if real_dest == folder:
        raise FlowersortError(f"the target {dest} is {src} itself: choose a folder outside it")
    if real_dest.is_relative_to(folder) and real_dest.is_dir():
        if next(walk(real_dest), None) is not None:
            log.warning(
                "warning: the target %s is inside %s and already holds photos: they are "
                "never classified (the target is not searched)",
                dest,
                src,
            )


@dataclass
class Outcome:
    """What happened to one photo. action: moved, copied, deduplicated, would-move,
    would-copy, kept, skipped (not a usable photo, or already at the target), failed (a
    move that could not be done), not-attempted (the target was already full); vetoed
    (kept where the user put it back earlier), review, would-review (a borderline score:
    into the review folder), borderline (left in place: no review folder); for undo:
    restored, removed-copy, failed."""

    path: str | Path
    score: float | None
    flower: bool | None
    action: str
    detail: str = ""  # the final path of a move, or why it was skipped or failed

    def to_json(self) -> dict:
        score = None if self.score is None else round(self.score, 6)
        out = {"path": os.fsdecode(self.path), "score": score, "flower": self.flower}
        return out | {"action": self.action, "detail": self.detail}


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
) -> Iterator[Outcome]:
    """Score every photo under src; move (or copy) the flowers into dest unless dry_run.

    A run that changes files holds the lock for its whole length, first finishes or
    rolls back what an interrupted run left in the journal, and journals every move.
    With dest, a score within review_band of the threshold (default: the model's band,
    none when the threshold is set by hand) is borderline: moved into `review` if given,
    else left in place; and the user's earlier choices are learnt and kept (see
    corrections.Watch).
    When `stop()` turns true (a signal), no new photo is started: the run ends after the
    move in hand.
    """
    src = Path(src)
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    if dest is not None:
        check_target(src, Path(dest))
    if review_band is None:  # a threshold set by hand is the line itself: no band
        band = model.summary.get("review_band", DEFAULT_REVIEW_BAND)
        review_band = band if threshold is None else 0.0
    threshold = model.threshold if threshold is None else threshold
    mover = watch = None
    if dest is not None and not dry_run:
        for folder in (dest, review) if review is not None else (dest,):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FlowersortError(f"cannot create {folder}: {e.strerror}") from None
        mover = Mover(dest, copy, on_conflict, wait, src)
    if dest is not None:
        try:
            watch = Watch(dest, review, dry_run=dry_run)
            learnt = watch.start()
        except BaseException:
            if mover:
                mover.close()
            raise
        if learnt.confirmations:
            log.info(
                "%d photos put into %s by you: flower examples", len(learnt.confirmations), dest
            )
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
    )
    try:
        for path, score, reason in score_photos(
            model, noting_identity(photos), workers, cache=cache, thumbnail=thumbnail
        ):
            if stop is not None and stop():
                return
            was = scored_as.pop(path, None)
            while walk_skips:
                skipped, why = walk_skips.popleft()
                yield Outcome(skipped, None, None, "skipped", why)
            if score is None:
                yield Outcome(path, None, None, "skipped", reason)
                continue
            flower = score >= threshold
            borderline = abs(score - threshold) < review_band
            if dest is not None and (veto := watch.held(path)):
                yield Outcome(path, score, flower, "vetoed", KIND_TEXT[veto.kind])
            elif dest is not None and borderline:
                if review is None:
                    yield Outcome(path, score, flower, "borderline")
                elif dry_run:
                    yield Outcome(path, score, flower, "would-review", os.fsdecode(review))
                else:
                    outcome = mover.move(path, score, was, folder=review)
                    outcome.flower = flower
                    if outcome.action in ("moved", "copied"):
                        watch.placed(outcome.detail, "review", mover.run)
                        outcome.action = "review"
                    yield outcome
            elif not flower or dest is None:
                yield Outcome(path, score, flower, "kept")
            elif dry_run:
                action = "would-copy" if copy else "would-move"
                yield Outcome(path, score, flower, action, os.fsdecode(dest))
            else:
                outcome = mover.move(path, score, was)
                if outcome.action in ("moved", "copied"):
                    watch.placed(outcome.detail, "dest", mover.run)
                yield outcome
        for skipped, why in walk_skips:
            yield Outcome(skipped, None, None, "skipped", why)
    finally:
        if watch:
            watch.close()
        if mover:
            mover.close()


class Mover:
    """Moves (or copies) photos with their sidecars into dest, under the lock and journal."""

    def __init__(self, dest: Path, copy: bool, on_conflict: ConflictMode, wait: bool, src: Path):
        folder = state_dir()
        self.lock = RunLock(folder, wait)
        try:
            self.journal = Journal(folder)
            self.journal.recover()
            self.run = self.journal.start_run("copy" if copy else "classify", src, dest)
        except BaseException:
            self.lock.release()
            raise
        self.dest, self.copy, self.on_conflict = dest, copy, on_conflict
        self.full: str | None = None  # why the target took no more: no space, quota

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
        done = "copied" if self.copy else "moved"
        folder = folder or self.dest
        if self.full:  # every further try would fail the same way, and cost a full copy
            return Outcome(photo, score, True, "not-attempted", self.full)
        if scored_as is not None and (now := identity(path)) and now != scored_as:
            return Outcome(
                photo, score, True, "failed", "changed since it was scored; left in place"
            )
        try:
            if self.on_conflict != "rename" and (twin := identical_at_target(photo, folder)):
                if self.on_conflict == "skip" or self.copy:
                    return Outcome(photo, score, True, "skipped", f"already at {twin}")
                if self.dedupe(photo, twin):
                    return Outcome(photo, score, True, "deduplicated", os.fsdecode(twin))
            group = [photo, *sidecars(photo)]
            finals = self.journal.transfer(self.run, group, folder, keep_source=self.copy)
        except OSError as e:
            if e.errno in FULL:
                self.full = f"{folder} is full ({e.strerror})"
            return Outcome(photo, score, True, "failed", e.strerror or str(e))
        return Outcome(photo, score, True, done, os.fsdecode(finals[0]))

    def dedupe(self, photo: Path, twin: Path) -> bool:
        """Remove photo, whose twin is in dest, with its sidecars: each goes if an
        identical one sits by the twin, or moves there under the twin's stem if that name
        is free. Journaled, so undo copies them back. False (the group is to be moved as
        usual) when another file holds a sidecar's name by the twin."""
        stem, twin_stem = safefs.split_name(photo.name)[0], safefs.split_name(twin.name)[0]
        dups, twins, free, free_names = [photo], [twin], [], []
        for side in sidecars(photo):
            name = twin_stem + side.name[len(stem) :] if side.name.startswith(stem) else side.name
            there = self.dest / name
            if not os.path.lexists(there):
                free.append(side)
                free_names.append(name)
            elif there.is_file() and not there.is_symlink() and safefs.same_bytes(side, there):
                dups.append(side)
                twins.append(there)
            else:
                return False
        if free:
            self.journal.transfer(
                self.run, free, self.dest, exact_names=free_names, action="dedupe-sidecars"
            )
        self.journal.dedupe(self.run, dups, twins)
        return True

    def close(self) -> None:
        self.journal.finish_run(self.run)
        self.journal.close()
        self.lock.release()


def undo(wait: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[Outcome]:
    """Put the last classify run's moves back where they were, never overwriting; when
    `stop()` turns true, stop after the photo in hand."""
    folder = state_dir()
    with RunLock(folder, wait):
        journal = Journal(folder)
        try:
            journal.recover()
            last = journal.last_run()
            if last is None:
                raise FlowersortError("nothing to undo: no run has moved photos")
            run_id, _ = last
            run = journal.start_run("undo", None, None)
            for sources, finals in journal.split_moves(run_id):  # said, never skipped
                where = ", ".join(os.fsdecode(f) for f in finals if f.exists())
                yield Outcome(sources[0], None, None, "failed", f"left split by its move: {where}")
            restored = journal.restored_by_undo(run_id)
            already = 0  # put back by an undo that was interrupted: finish quietly
            for sources, finals, keep_source, action in journal.done_moves(run_id):
                if stop is not None and stop():
                    journal.finish_run(run)
                    return
                if finals in restored or (
                    (keep_source or action == "dedupe")
                    and all(s.exists() for s in sources)
                    and not (keep_source and any(f.exists() for f in finals))
                ):
                    already += action != "dedupe-sidecars"
                    continue
                if action == "dedupe":
                    yield _undo_dedupe(journal, run, sources, finals)
                elif action == "dedupe-sidecars":  # part of the dedupe above: said there
                    if (out := _undo_one(journal, run, sources, finals, False)).action == "failed":
                        yield out
                else:
                    yield _undo_one(journal, run, sources, finals, keep_source)
            if already:
                log.info(
                    "%d photos had already been put back by an undo that was interrupted; "
                    "the rest are done now",
                    already,
                )
            journal.mark_undone(run_id)
            journal.finish_run(run)
        finally:
            journal.close()


def _undo_one(journal: Journal, run: int, sources, finals, keep_source: bool) -> Outcome:
    photo = sources[0]
    if keep_source:  # a copy: remove it only while the original is still there, unchanged
        if all(
            s.exists() and f.exists() and safefs.same_bytes(s, f) for s, f in zip(sources, finals)
        ):
            for f in finals:
                safefs._unlink(f)
            return Outcome(photo, None, None, "removed-copy", os.fsdecode(finals[0]))
        return Outcome(photo, None, None, "failed", "the copy or its original has changed")
    present = [f for f in finals if f.exists()]
    if len(present) != len(finals):
        return Outcome(photo, None, None, "failed", f"{finals[0]} is no longer there")
    try:
        photo.parent.mkdir(parents=True, exist_ok=True)
        journal.transfer(run, finals, photo.parent, exact_names=[s.name for s in sources])
    except FileExistsError:
        return Outcome(photo, None, None, "failed", "a file of that name has appeared since")
    except OSError as e:
        return Outcome(photo, None, None, "failed", e.strerror or str(e))
    return Outcome(photo, None, None, "restored", os.fsdecode(finals[0]))


def _undo_dedupe(journal: Journal, run: int, sources: list[Path], twins: list[Path]) -> Outcome:
    """A removed duplicate comes back as a copy of the twin that stayed."""
    photo = sources[0]
    gone = [(s, t) for s, t in zip(sources, twins) if not s.exists()]
    if not all(t.exists() for _, t in gone):
        return Outcome(photo, None, None, "failed", f"{twins[0]} is no longer there")
    try:
        photo.parent.mkdir(parents=True, exist_ok=True)
        if gone:
            journal.transfer(
                run,
                [t for _, t in gone],
                photo.parent,
                keep_source=True,
                exact_names=[s.name for s, _ in gone],
            )
    except FileExistsError:
        return Outcome(photo, None, None, "failed", "a file of that name has appeared since")
    except OSError as e:
        return Outcome(photo, None, None, "failed", e.strerror or str(e))
    return Outcome(photo, None, None, "restored", os.fsdecode(twins[0]))


def summarize(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.action for o in outcomes)
