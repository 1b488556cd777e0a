"""Learning the user's own archive from a few answers.

`ask` puts into the review folder the photos whose answers help most: the likeliest flowers
that do not move yet, no two near-duplicates of each other. A "yes" puts a flower where it
belongs at once; a "no" shows the model what looks like a flower on this archive and is not.
(Asked on archives of sources the model never saw, these found about three times the flowers
the most uncertain scores did, at the same precision: benchmarks.md.) The user answers as
with any review: a photo moved into the target folder is a flower, one moved back into the
archive is not (watch.Watch records both). `adapt` then fine-tunes a model's head nets on
those answers, started from the model's own weights and held close to them and to the
model's own scores of the archive's other photos, sets the threshold so that it moves as
many of them as the model did, and writes a model file of the same format.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from flowersort.base.errors import BadImage, EmptySource, FlowersortError
from flowersort.base.outcomes import Action, Outcome
from flowersort.model.file import Model
from flowersort.photos.archive import OnSkip, walk
from flowersort.photos.decode import read_image
from flowersort.safefs.identity import Key, content_key
from flowersort.scoring.cache import ScoreCache
from flowersort.scoring.pipeline import scan, score_photos
from flowersort.sorting.checks import check_target, is_empty_folder
from flowersort.sorting.decide import move_line
from flowersort.sorting.finetune import AdaptConfig, fine_tune, same_count_threshold
from flowersort.sorting.folders import make_dirs
from flowersort.sorting.moves import Mover, identity
from flowersort.sorting.watch import Watch

log = logging.getLogger("flowersort")

NEAR_DUPLICATE = 2  # 8 x 8 average hashes this close (Hamming distance) are one photo twice


@dataclass
class AdaptResult:
    model: Model
    flowers: int  # answers: flowers
    noflowers: int  # answers: not flowers
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    moves: int | None = None  # of the archive's other photos, what the adapted model moves


def average_hash(path: str | os.PathLike) -> int | None:
    """The 8 x 8 grey average hash of a photo (None if it cannot be read)."""
    try:
        bgr = read_image(path, 64)
    except BadImage:
        return None
    grey = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (8, 8), interpolation=cv2.INTER_AREA)
    bits = (grey > grey.mean()).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def likeliest(
    scored: list[tuple[str, float]],
    below: float,
    n: int,
    hashes: dict[str, int | None] | None = None,
) -> list[str]:
    """The n highest-scored photos under `below` (the line from which photos move anyway),
    each no near-duplicate of one taken before it."""
    order = sorted((p for p in scored if p[1] < below), key=lambda p: -p[1])
    chosen: list[str] = []
    taken: list[int] = []
    for path, _ in order:
        if len(chosen) == n:
            break
        h = hashes.get(path) if hashes is not None else average_hash(path)
        if h is not None and any(bin(h ^ t).count("1") <= NEAR_DUPLICATE for t in taken):
            continue
        chosen.append(path)
        if h is not None:
            taken.append(h)
    return chosen


@dataclass
class AskOptions:
    """How `ask` runs, as the command's options say: with dry_run nothing changes; with
    `cache` (the nightly classify's) the photos it scored already are not decoded again."""

    dry_run: bool = False
    workers: int | None = None
    exclude: Iterable[str] = ()
    wait: bool = False  # for the run lock, else exit 3 when another run holds it
    cache: ScoreCache | None = None


def ask(
    model: Model,
    src: Path,
    dest: Path,
    review: Path,
    n: int,
    options: AskOptions | None = None,
) -> Generator[Outcome, None, None]:
    """Move the n photos under src whose answers would teach the model most into the review
    folder (journalled, as classify moves borderline photos: `undo` puts them back). Photos
    the user already answered are not asked again. With options.dry_run nothing changes:
    each chosen photo comes back as `would-review`."""
    options = options or AskOptions()
    src, dest, review = Path(src), Path(dest), Path(review)
    _check_ask(src, dest, review)
    mover = _ask_mover(src, dest, review, options)
    watch = None
    try:
        watch = Watch(dest, review, dry_run=options.dry_run)
        watch.start()
        skipped, candidates, was = _candidates(model, src, [dest, review], watch, options)
        watch.finish()
        yield from skipped
        score_of = dict(candidates)
        for path in questions(model, candidates, n):
            flower = score_of[path] >= model.threshold
            outcome = mover.move(path, score_of[path], was[path], folder=review)
            outcome.flower = flower
            if outcome.action is Action.MOVED:
                watch.placed(outcome.target, "review", mover.run)
            if outcome.action in (Action.MOVED, Action.WOULD_MOVE):
                outcome.action = mover.said(Action.REVIEW)
            yield outcome
    except GeneratorExit:  # closed before its last photo (`| head` went away): stopped
        mover.stopped = True
        raise
    finally:
        if watch:
            watch.close()
        mover.close()


def questions(
    model: Model,
    candidates: list[tuple[str, float]],
    n: int,
    hashes: dict[str, int | None] | None = None,
) -> list[str]:
    """The n photos to ask about: the likeliest flowers under the line from which the
    model moves photos anyway (its threshold and review band, as classify draws it)."""
    return likeliest(candidates, move_line(model), n, hashes)


def _check_ask(src: Path, dest: Path, review: Path) -> None:
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    if is_empty_folder(src):  # a disk not mounted: no folder is made in its mount point
        raise EmptySource(f"{src} is empty: nothing to do, nothing created (is it mounted?)")
    check_target(src, dest)
    check_target(src, review)


def _ask_mover(src: Path, dest: Path, review: Path, options: AskOptions) -> Mover:
    """The Mover of an ask run, its review folder made (and journalled) unless dry_run."""
    mover = Mover(dest, False, "rename", options.wait, src, options.dry_run)  # a dry run only says
    if not options.dry_run:
        try:
            created = make_dirs(review)
        except OSError as e:
            mover.close()
            raise FlowersortError(f"cannot create {e.filename}: {e.strerror}") from None
        mover.note_created_dirs(created)
    return mover


def _candidates(
    model: Model, src: Path, prune: list[Path], watch: Watch, options: AskOptions
) -> tuple[list[Outcome], list[tuple[str, float]], dict[str, tuple | None]]:
    """The photos under src that may be asked about, with their scores and identities
    (neither vetoed nor confirmed), and the skipped ones' outcomes."""
    skipped: list[Outcome] = []
    photos = walk(
        src,
        prune=prune,
        exclude=options.exclude,
        on_skip=lambda p, why: skipped.append(Outcome(p, Action.SKIPPED, reason=why)),
    )
    candidates: list[tuple[str, float]] = []
    was: dict[str, tuple | None] = {}
    paths = (Path(p) for p in photos)
    for scored in score_photos(model, paths, options.workers, cache=options.cache):
        path = os.fspath(scored.path)
        if scored.score is None:
            skipped.append(Outcome(path, Action.SKIPPED, reason=scored.skip_reason))
        elif watch.held(path) is None and not watch.confirmed(path):
            was[path] = identity(path)
            candidates.append((path, scored.score))
    return skipped, candidates, was


def answers(
    src: Path, dest: Path, review: Path | None, *, dry_run: bool = False, exclude=()
) -> list[tuple[Path, bool]]:
    """Every answer the user gave by moving files (photo, is a flower), as classify learns
    them at the start of a run and along its walk, and recorded (not with dry_run); only
    photos still there with the same bytes."""
    watch = Watch(dest, review, dry_run=dry_run)
    try:
        watch.start()
        seen: dict[Key, Path] = {}  # where a photo is now, if the walk met it
        prune = [p for p in (dest, review) if p is not None]
        for name in walk(src, prune=prune, exclude=exclude):
            if (c := watch.held(name)) is not None:
                seen[c.key] = Path(name)
        watch.finish()
        found = []
        for c in watch.by_key.values():
            path = seen.get(c.key, c.path)
            try:
                there = os.path.isfile(path) and content_key(path) == c.key
            except OSError:
                there = False
            if there:
                found.append((path, c.label == "flower"))
        return found
    finally:
        watch.close()


@dataclass
class AdaptOptions:
    """How `adapt` runs: `cfg`, the fitting's settings; with dry_run nothing is written;
    with `cache` (the nightly classify's) the model's scores of the archive come from there."""

    cfg: AdaptConfig | None = None
    dry_run: bool = False
    workers: int | None = None
    cache: ScoreCache | None = None


def adapt(
    model: Model,
    src: Path,
    dest: Path,
    review: Path | None,
    out: Path | None,
    *,
    on_skip: OnSkip,
    source: str = "",
    options: AdaptOptions | None = None,
) -> AdaptResult:
    """Fit model to the answers the user gave under src (into dest: flowers; back into
    the archive: not), held to its own scores on the archive's other photos, with the
    threshold that moves as many of them as the model did (same_count_threshold), and write
    it to `out` (nothing written with options.dry_run). `source`: the model's file, noted in
    the adapted model's summary."""
    options = options or AdaptOptions()
    workers = options.workers
    t0 = time.perf_counter()
    found = answers(Path(src), Path(dest), review, dry_run=options.dry_run)
    if not found:
        raise FlowersortError(
            f"no answers yet: sort the photos in the review folder (into {dest} if a flower, "
            f"back into the archive if not), then run adapt again; 'flowersort ask' puts "
            f"the photos worth answering there"
        )
    label = {os.fspath(p): flower for p, flower in found}
    xs, ys, skipped = _answered_features(model, found, workers, on_skip)
    y = np.array(ys)
    cfg = options.cfg or AdaptConfig()
    # the archive's other photos: the head is held to the model's own scores on a spread
    # of them, and the adapted model moves as many of them as the model did
    prune = [p for p in (dest, review) if p is not None]
    archive = sorted(p for p in walk(Path(src), prune=prune) if p not in label)
    scored = score_photos(model, map(Path, archive), workers, cache=options.cache)
    base = [(os.fspath(s.path), s.score) for s in scored if s.score is not None]
    keep = _kept_features(model, base, cfg.keep_photos, workers)
    kept = np.stack(keep) if keep else None
    adapted = fine_tune(model, np.stack(xs), y, cfg, kept)
    adapted.summary["adapted"]["from"] = source
    moved = None
    if base:
        moved = same_count_threshold(model, adapted, base, workers)
        adapted.summary["adapted"]["archive"] = {"photos": len(base), "moved": moved}
    if not options.dry_run and out is not None:
        adapted.save(out)
    flowers = int(y.sum())
    seconds = time.perf_counter() - t0
    return AdaptResult(adapted, flowers, len(y) - flowers, seconds, skipped, moved)


def _answered_features(
    model: Model, found: list[tuple[Path, bool]], workers: int | None, on_skip: OnSkip
) -> tuple[list[np.ndarray], list[float], list[tuple[str, str]]]:
    """The answered photos' feature maps and labels (1.0: a flower), and those skipped."""
    label = {os.fspath(p): flower for p, flower in found}
    xs, ys, skipped = [], [], []
    for photo in scan([p for p, _ in found], model.features, workers):
        if photo.skipped:
            skipped.append((os.fspath(photo.path), photo.skip_reason))
            on_skip(os.fspath(photo.path), photo.skip_reason)
            continue
        assert photo.features is not None  # not skipped, and scan was given no scores
        xs.append(photo.features)
        ys.append(float(label[os.fspath(photo.path)]))
    if not xs:
        raise FlowersortError("none of the answered photos could be read")
    return xs, ys, skipped


def _kept_features(
    model: Model, base: list[tuple[str, float]], keep_photos: int, workers: int | None
) -> list[np.ndarray]:
    """The feature maps of a spread of `keep_photos` of the archive's scored photos."""
    step = max(1, len(base) // keep_photos) if keep_photos else 0
    spread = [Path(p) for p, _ in base[::step][:keep_photos]] if step else []
    return [
        photo.features
        for photo in scan(spread, model.features, workers)
        if photo.features is not None
    ]
