"""Where a move puts a photo and under which names: its folder in the target
(--keep-structure), each target folder's names as the run claims them, another file that
already holds its bytes, and how a dedupe takes its sidecars to the twin's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from flowersort.safefs.identity import same_bytes
from flowersort.safefs.names import member_name, names_in_any_case, split_name
from flowersort.sorting.companions import own_sidecars, sidecars


class TargetNames:
    """Each target folder's names, casefolded (safefs.names_in_any_case), listed once per
    run and kept up to date as the run claims names: a listing per move made a target of
    n photos cost n * n. Only a hint for choosing a name: safefs claims it with link() or
    O_EXCL, which fails when another process took it meanwhile."""

    def __init__(self) -> None:
        self.folders: dict[Path, set[str]] = {}

    def __call__(self, folder: Path) -> set[str]:
        if folder not in self.folders:
            self.folders[folder] = names_in_any_case(folder)
        return self.folders[folder]


def same_photo(photo: Path, there: Path) -> bool:
    """there is another file holding photo's bytes (not photo itself, as after undo)."""
    try:
        same_inode = os.path.samefile(photo, there)
        return there.is_file() and not same_inode and same_bytes(photo, there)
    except OSError:
        return False


def target_folder(dest: Path, photo: Path, keep_below: Path | None) -> Path:
    """dest; with --keep-structure, dest plus the photo's folder relative to src
    (Pictures/2020/07 Trip/x.jpg -> Flowers/2020/07 Trip/)."""
    if keep_below is None or not keep_below.is_dir():
        return dest
    rel = os.path.relpath(photo.parent, keep_below)
    return dest if rel == "." or rel.startswith("..") else dest / rel


class DedupePlan(NamedTuple):
    """What a dedupe does with a photo and its sidecars."""

    dups: list[Path]  # the photo and the sidecars identical to one by the twin: removed
    twins: list[Path]  # the file each of dups is identical to
    free: list[Path]  # sidecars with no file of their name by the twin: moved there
    names: list[str]  # each one's name there, under the twin's stem


def dedupe_plan(photo: Path, twin: Path, sides: list[Path] | None = None) -> DedupePlan | None:
    """How a dedupe would take photo's sidecars (`sides`, else sidecars(photo)); None when
    another file holds such a name, and the group is moved as with rename."""
    stem, twin_stem = split_name(photo.name)[0], split_name(twin.name)[0]
    dups, twins, free, names = [photo], [twin], [], []
    for side in own_sidecars(photo, sidecars(photo) if sides is None else sides):
        name = member_name(side.name, stem, twin_stem)
        there = twin.parent / name  # by the twin: with --keep-structure, in its album
        if not os.path.lexists(there):
            free.append(side)
            names.append(name)
        elif there.is_file() and not there.is_symlink() and same_bytes(side, there):
            dups.append(side)
            twins.append(there)
        else:
            return None
    return DedupePlan(dups, twins, free, names)
