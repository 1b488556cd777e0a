"""A classify run: walk, score, decide and act on each photo, holding the lock, the
journal and the corrections store (`SortRun`)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from flowersort.base.outcomes import Action, Outcome
from flowersort.model.file import Model
from flowersort.scoring.cache import ScoreCache
from flowersort.scoring.pipeline import score_photos
from flowersort.sorting.checks import check_run
from flowersort.sorting.corrections import KIND_TEXT
from flowersort.sorting.decide import Decision, decide, decision_line
from flowersort.sorting.moves import Targets, identity
from flowersort.sorting.options import Hooks, SortOptions, WalkOptions
from flowersort.sorting.tagging import Tagger


class SortRun:
    """One classify run: `with SortRun(model, src, options) as run: for outcome in run:`.
    Score every photo under src; move (or copy) the flowers into options.dest unless a
    dry run. A run that changes files holds the lock from its first outcome to the end
    of the with block, first finishes or rolls back what an interrupted run left in the
    journal, and journals every move. With a target, a score within the review band of
    the threshold is borderline: moved into the review folder if given, else left in
    place; and the user's earlier choices are learnt and kept (see watch.Watch)."""

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


class _Walk:
    """The photos of a run's walk, each one's identity noted before it is read (the score
    cache's key comes from that stat: one stat a photo), and the walk's skips, reported in
    their place among the outcomes."""

    def __init__(self, src: Path, options: SortOptions, hooks: Hooks):
        self.hooks = hooks
        self.skips: deque[tuple[str, str]] = deque()
        self.scored_as: dict[str, tuple | None] = {}  # each photo's identity before it was read
        on_pass = hooks.on_passed_over
        self.photos = options.walk.photos(
            src, options.targets, on_skip=self.note_skip, on_pass=on_pass
        )

    def noting_identity(self) -> Iterator[str]:
        for path in self.photos:
            self.scored_as[path] = identity(path)
            yield path

    def cache_key(self, path: str | Path) -> tuple[int, int, int] | None:
        """The score cache's key from the stat noting_identity made: one stat a photo."""
        was = self.scored_as.get(os.fspath(path))
        return None if was is None else (was[2], was[3], was[1])  # size, mtime_ns, inode

    def note_skip(self, path: str, reason: str) -> None:
        self.skips.append((path, reason))
        if self.hooks.on_walk_skip:
            self.hooks.on_walk_skip(path, reason)

    def skipped(self) -> Iterator[Outcome]:
        """The walk's skips noted so far."""
        while self.skips:
            skipped, why = self.skips.popleft()
            yield Outcome(skipped, Action.SKIPPED, reason=why)


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
    if isinstance(targets, Targets) and cache is not None:  # hashes kept with the scores
        targets.watch.hashes = cache
    walk = _Walk(src, options, hooks)
    try:
        for scored in score_photos(
            model,
            walk.noting_identity(),
            options.workers,
            cache=cache,
            thumbnail=options.thumbnail,
            key_of=walk.cache_key,
        ):
            if hooks.stop is not None and hooks.stop():
                if hooks.on_stopped is not None:  # read but not reported, and the walk's rest
                    hooks.on_stopped(len(walk.scored_as) + sum(1 for _ in walk.photos))
                if targets:
                    targets.stop()
                return
            path, score = os.fspath(scored.path), scored.score
            was = walk.scored_as.pop(path, None)
            if walk.skips:
                yield from walk.skipped()
            if score is None:
                why = scored.skip_reason
                yield Outcome(path, Action.SKIPPED, reason=why, skipped_before=scored.remembered)
                continue
            flower, borderline = score >= threshold, abs(score - threshold) < band
            outcome = sort_one(path, score, flower, borderline, targets, was)
            outcome.note = scored.note
            yield outcome
        yield from walk.skipped()
        if targets:  # a stopped run never gets here
            targets.finish()
    except GeneratorExit:  # closed before its last photo (`| head` went away): stopped
        if targets:
            targets.stop()
        raise
    finally:
        if targets:
            targets.close()


def sort_one(
    path: str,
    score: float,
    flower: bool,
    borderline: bool,
    targets: Targets | Tagger | None,
    scored_as: tuple | None,
) -> Outcome:
    """One scored photo: decided (decide), then left, or acted on by the targets."""
    veto = targets.watch.held(path, scored_as) if targets else None  # as the walk saw it
    decision = decide(
        flower,
        borderline,
        has_target=targets is not None,
        has_review=targets is not None and targets.review is not None,
        vetoed=veto is not None,
        confirmed=bool(targets and borderline and not veto and targets.watch.confirmed(path)),
    )
    # a decision that changes no file, told by identity (most photos of a rerun); confirmed:
    # the user sorted it into dest already (a copy run keeps the original here)
    if decision is Decision.KEEP or decision is Decision.CONFIRMED:
        return Outcome(path, Action.KEPT, score, flower)
    if decision is Decision.BORDERLINE:
        return Outcome(path, Action.BORDERLINE, score, flower)
    if veto is not None:  # Decision.VETOED
        return Outcome(path, Action.VETOED, score, flower, reason=KIND_TEXT[veto.kind])
    assert targets is not None  # decide acts only with a target
    return targets.act(decision, path, score, flower, scored_as)


def count_photos(src: Path, targets: Iterable[Path | None], walk_options: WalkOptions) -> int:
    """How many files classify would look at (for a progress bar's ETA)."""
    return sum(1 for _ in walk_options.photos(src, targets))
