"""The names a moved file may take: its own, else a numbered stem free for its whole
group, chosen in any case."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

MAX_NAME_TRIES = 10_000


def split_name(name: str) -> tuple[str, str]:
    """("IMG_0001", ".jpg"); a dot-file or a name without a dot has no suffix."""
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if stem else (name, "")


def numbered_stems(stem: str) -> Iterator[str]:
    """IMG_0001, IMG_0001 (1), IMG_0001 (2), ..."""
    yield stem
    for n in range(1, MAX_NAME_TRIES):
        yield f"{stem} ({n})"


def free_names(names: list[str], present: set[str]) -> Iterator[list[str]]:
    """The names a group (names[0] is its photo's) may take in a folder that holds
    `present` (casefolded, names_in_any_case), in the order transfer tries them: its own
    names, then the first numbered stem free for every member ("IMG_0001 (1).jpg" with
    "IMG_0001 (1).xmp"), and so on. The one place the names of a move are chosen: a dry
    run plans with it what transfer then claims."""
    stem, _ = split_name(names[0])
    for new_stem in numbered_stems(stem):
        candidate = [member_name(n, stem, new_stem) for n in names]
        if not present & {n.casefold() for n in candidate}:
            yield candidate


def member_name(name: str, stem: str, new_stem: str) -> str:
    """A group member's name when its photo's stem becomes new_stem: IMG_0001.xmp goes
    with IMG_0001 (1).jpg as IMG_0001 (1).xmp. The stem matches in any case (img_0001.heic's
    IMG_0001.MOV becomes img_0001 (1).MOV); a name is never changed without need."""
    if new_stem != stem and name.lower().startswith(stem.lower()):
        return new_stem + name[len(stem) :]
    return name


def names_in_any_case(folder: Path) -> set[str]:
    """The names folder holds, casefolded: a photo must not take a name that differs only in
    case from one there (img_0001.jpg beside IMG_0001.JPG would share its sidecars, which
    match in any case), so it takes a new number. Listed once per move, not per name tried."""
    try:
        return {n.casefold() for n in os.listdir(folder)}
    except OSError:
        return set()
