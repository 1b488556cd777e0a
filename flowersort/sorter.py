"""Classifying an archive and moving the flower photos; every move goes through safefs."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flowersort import safefs
from flowersort.archive import OnSkip, walk
from flowersort.errors import FlowersortError
from flowersort.model import Model
from flowersort.pipeline import score_photos


@dataclass
class Outcome:
    """What happened to one photo. action: moved, copied, would-move, would-copy, kept,
    skipped (not a usable photo) or failed (a move that could not be done)."""

    path: Path
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
    on_walk_skip: OnSkip | None = None,
) -> Iterator[Outcome]:
    """Score every photo under src; move (or copy) the flowers into dest unless dry_run."""
    src = Path(src)
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    threshold = model.threshold if threshold is None else threshold
    if dest is not None and not dry_run:
        dest.mkdir(parents=True, exist_ok=True)
    walk_skips: list[tuple[Path, str]] = []

    def note_skip(path: Path, reason: str) -> None:
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
    )
    for path, score, reason in score_photos(model, photos, workers):
        while walk_skips:
            skipped, why = walk_skips.pop(0)
            yield Outcome(skipped, None, None, "skipped", why)
        if score is None:
            yield Outcome(path, None, None, "skipped", reason)
            continue
        flower = score >= threshold
        if not flower or dest is None:
            yield Outcome(path, score, flower, "kept")
        elif dry_run:
            yield Outcome(path, score, flower, "would-copy" if copy else "would-move", str(dest))
        else:
            yield _move(path, score, dest, copy)
    for skipped, why in walk_skips:
        yield Outcome(skipped, None, None, "skipped", why)


def _move(path: Path, score: float, dest: Path, copy: bool) -> Outcome:
    try:
        final = safefs.copy_file(path, dest) if copy else safefs.move_file(path, dest)
    except OSError as e:
        return Outcome(path, score, True, "failed", e.strerror or str(e))
    return Outcome(path, score, True, "copied" if copy else "moved", os.fsdecode(final))


def summarize(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.action for o in outcomes)
