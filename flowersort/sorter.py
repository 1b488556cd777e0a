"""Classifying an archive and moving the flower photos: sidecars, name clashes, the
journal and the lock. Every file operation goes through safefs."""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowersort import safefs
from flowersort.archive import LIVE_PHOTO_STILLS, RAW_SUFFIXES, OnPass, OnSkip, walk
from flowersort.cache import ScoreCache
from flowersort.errors import FlowersortError
from flowersort.journal import Journal, RunLock, state_dir
from flowersort.model import Model
from flowersort.pipeline import score_photos

ConflictMode = Literal["rename", "skip", "dedupe"]
SIDECAR_SUFFIXES = (".xmp", ".aae", ".json")
LIVE_PHOTO_MOTION = tuple(sorted({a + b + c for a in "mM" for b in "oO" for c in "vV"}))


def sidecars(photo: Path) -> list[Path]:
    """Files that belong to a photo: same stem with a sidecar or RAW suffix (lower or upper
    case), Google Takeout's NAME.jpg.json, and for a HEIC or JPEG still the .MOV (any case)
    that makes it a Live Photo."""
    stem, photo_suffix = safefs.split_name(photo.name)
    found = []
    suffixes = [v for suffix in SIDECAR_SUFFIXES + RAW_SUFFIXES for v in {suffix, suffix.upper()}]
    if photo_suffix.lower() in LIVE_PHOTO_STILLS:
        suffixes += ["." + motion for motion in LIVE_PHOTO_MOTION]
    for variant in suffixes:
        candidate = photo.with_name(stem + variant)
        if candidate.is_file() and not candidate.is_symlink():
            found.append(candidate)
    for suffix in (".json", ".xmp"):
        candidate = photo.with_name(photo.name + suffix)
        if candidate.is_file() and not candidate.is_symlink():
            found.append(candidate)
    return _real_names(sorted(set(found) - {photo}))


def _real_names(files: list[Path]) -> list[Path]:
    """On a case-insensitive disk (exFAT, FAT, macOS) every spelling of a name finds the
    same file: when two spellings were found, keep the ones the folder lists (or the
    first, if it lists another spelling)."""
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name.lower(), []).append(f)
    if all(len(spellings) == 1 for spellings in by_name.values()):
        return files
    try:
        listed = set(os.listdir(files[0].parent))
    except OSError:
        listed = set()
    kept = [
        [f for f in spellings if f.name in listed] or spellings[:1]
        for spellings in by_name.values()
    ]
    return sorted(f for spellings in kept for f in spellings)


def identical_at_target(photo: Path, dest: Path) -> Path | None:
    """A byte-identical copy of photo already in dest under its name or a numbered one."""
    stem, suffix = safefs.split_name(photo.name)
    for candidate_stem in safefs.numbered_stems(stem):
        candidate = dest / (candidate_stem + suffix)
        if not candidate.exists():
            return None
        if candidate.is_file() and safefs.same_bytes(photo, candidate):
            return candidate
    return None


@dataclass
class Outcome:
    """What happened to one photo. action: moved, copied, deduplicated, would-move,
    would-copy, kept, skipped (not a usable photo, or already at the target), failed (a
    move that could not be done); for undo: restored, removed-copy, failed."""

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
    on_passed_over: OnPass | None = None,
) -> Iterator[Outcome]:
    """Score every photo under src; move (or copy) the flowers into dest unless dry_run.

    A run that changes files holds the lock for its whole length, first finishes or
    rolls back what an interrupted run left in the journal, and journals every move.
    Videos and RAW files that are no photo's companion go to `on_passed_over`.
    """
    src = Path(src)
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    threshold = model.threshold if threshold is None else threshold
    mover = None
    if dest is not None and not dry_run:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FlowersortError(f"cannot create {dest}: {e.strerror}") from None
        mover = Mover(dest, copy, on_conflict, wait, src)
    walk_skips: deque[tuple[str, str]] = deque()

    def note_skip(path: str, reason: str) -> None:
        walk_skips.append((path, reason))
        if on_walk_skip:
            on_walk_skip(path, reason)

    photos = walk(
        src,
        prune=[dest] if dest is not None else [],
        include_hidden=include_hidden,
        follow_symlinks=follow_symlinks,
        exclude=exclude,
        on_skip=note_skip,
        on_pass=on_passed_over,
    )
    try:
        for path, score, reason in score_photos(
            model, photos, workers, cache=cache, thumbnail=thumbnail
        ):
            while walk_skips:
                skipped, why = walk_skips.popleft()
                yield Outcome(skipped, None, None, "skipped", why)
            if score is None:
                yield Outcome(path, None, None, "skipped", reason)
                continue
            flower = score >= threshold
            if not flower or dest is None:
                yield Outcome(path, score, flower, "kept")
            elif dry_run:
                action = "would-copy" if copy else "would-move"
                yield Outcome(path, score, flower, action, os.fsdecode(dest))
            else:
                yield mover.move(path, score)
        for skipped, why in walk_skips:
            yield Outcome(skipped, None, None, "skipped", why)
    finally:
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

    def move(self, path: str, score: float) -> Outcome:
        photo = Path(path)
        done = "copied" if self.copy else "moved"
        try:
            if self.on_conflict != "rename" and (twin := identical_at_target(photo, self.dest)):
                if self.on_conflict == "skip" or self.copy:
                    return Outcome(photo, score, True, "skipped", f"already at {twin}")
                safefs._unlink(photo)  # dedupe: the byte compare above found a twin
                return Outcome(photo, score, True, "deduplicated", os.fsdecode(twin))
            group = [photo, *sidecars(photo)]
            finals = self.journal.transfer(self.run, group, self.dest, keep_source=self.copy)
        except OSError as e:
            return Outcome(photo, score, True, "failed", e.strerror or str(e))
        return Outcome(photo, score, True, done, os.fsdecode(finals[0]))

    def close(self) -> None:
        self.journal.finish_run(self.run)
        self.journal.close()
        self.lock.release()


def undo(wait: bool = False) -> Iterator[Outcome]:
    """Put the last classify run's moves back where they were, never overwriting."""
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
            for sources, finals, keep_source in journal.done_moves(run_id):
                yield _undo_one(journal, run, sources, finals, keep_source)
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


def summarize(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.action for o in outcomes)
