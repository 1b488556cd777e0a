"""What moves with a photo: its sidecars, a Live Photo's video, RAW twins."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowersort.photos.archive import companion_names, suffix_of
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import RunLock


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
        self.folder: str | None = None  # as os.path.dirname gives it (no Path a photo)
        # the folder's names by their stem (up to the last dot), lower-cased: a companion's
        # stem is the photo's stem (IMG_1.XMP) or its name (IMG_1.JPG.json)
        self.by_stem: dict[str, list[str]] = {}

    def __call__(self, photo: Path) -> list[Path]:
        folder = os.path.dirname(photo)
        if folder != self.folder:  # the walk has moved on: the new folder, once
            self.folder, self.by_stem = folder, {}
            try:
                for name in os.listdir(photo.parent):
                    self.by_stem.setdefault(_stem(name).lower(), []).append(name)
            except OSError:
                pass
        name = photo.name
        stems = (_stem(name).lower(), name.lower())
        near = [n for s in stems for n in self.by_stem.get(s, ()) if n != name]
        return sidecars(photo, near) if near else []  # most photos come alone


def own_sidecars(photo: Path, found: list[Path]) -> list[Path]:
    """Of the photo's sidecars `found`, those that belong to its owner: another user's file
    with the same stem (a 0600 RAW twin in a shared folder) is not moved with the photo."""
    if not found:  # most photos come alone: no stat for them
        return []
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


@dataclass
class Live:
    """What a run that changes files holds: the lock, the journal and its run there."""

    lock: RunLock
    journal: Journal
    run: int
