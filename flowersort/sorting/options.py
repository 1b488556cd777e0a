"""What a classify run is asked to do (`SortOptions`, `WalkOptions`) and whom it tells
(`Hooks`): built once by the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flowersort.photos.archive import OnPass, OnSkip, walk

ConflictMode = Literal["rename", "skip", "dedupe"]


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
