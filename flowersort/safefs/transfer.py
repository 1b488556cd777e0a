"""Moving files so that they are never lost, damaged or silently overwritten.

Knows nothing of photos. The rules: a final name is only ever claimed with an operation
that fails if the name exists (``os.link``), never by check-then-rename; a source is
removed only once an identical, fsynced file holds its final name, and only while it
still equals that file; a group of files
(a photo and its sidecars) arrives all or none. Every step is announced to `note` first,
so a journal can finish or undo it after a crash. All I/O goes through `seams` so tests
can inject faults.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flowersort.base.records import StepKind
from flowersort.safefs import seams
from flowersort.safefs.attrs import metadata as metadata_of
from flowersort.safefs.attrs import set_metadata
from flowersort.safefs.claim import claim_first_free
from flowersort.safefs.copies import copy_verified
from flowersort.safefs.identity import CHANGED, Changed, file_at, same_bytes, same_file, version
from flowersort.safefs.names import free_names, names_in_any_case
from flowersort.safefs.privacy import check_folders_keep_private
from flowersort.safefs.seams import Note, no_note

log = logging.getLogger("flowersort")

CROSS_DEVICE = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK)


class GroupSplit(OSError):
    """A group left partly moved: a source could not be removed and one removed before it
    could not be put back. Nothing is lost, but the group is in two places."""


def transfer(
    sources: list[Path],
    folder: Path,
    *,
    keep_source: bool = False,
    exact_names: list[str] | None = None,
    note: Note = no_note,
    metadata: list[dict] | None = None,
    undoing: bool = False,
    present: set[str] | None = None,
    follow: bool = False,
) -> list[Path]:
    """Move (or copy, with keep_source) a group of files into folder: all or none.

    The reason for nine parameters: this is the one place every move, copy and undo goes
    through, and each keyword is a different caller's need (names kept on undo, metadata
    of a copy, the names in hand, links followed); bundling them would only move the list
    into a dataclass every caller fills the same way.

    sources[0] names the group: on a clash every member gets the same numbered stem
    ("IMG_0001 (1).jpg" with "IMG_0001 (1).xmp"); with exact_names a clash is an error.
    Same filesystem: hard links to the final names, then the sources are unlinked.
    Otherwise (or for a copy): fsynced temporary copies, linked to the final names (or,
    without hard links, renamed over empty files that took them). A source is removed
    only while it equals its final file. On any error the sources are intact and nothing
    is left in folder (except a copy whose source vanished meanwhile). Returns the final
    paths, in the order of sources. `metadata` (safefs.metadata per source) is given to
    a copy before it takes its name, so it is never seen with the copy's own (undo from
    an exFAT stick: a private photo must not appear 0777 even for a moment). `undoing`:
    the files go back to the folder they were in, which exposes nothing new, so its
    folders are not checked (a photo sorted from an open card into a closed home goes back).
    `present`: folder's names in hand (names_in_any_case, kept by the caller over many
    moves), else it is listed now; the names taken are added to it. Only a hint for
    choosing names: a name is still claimed only by link or O_EXCL.
    A source that is a link is refused unless `follow` (--follow-symlinks), and each
    source must stay the file (device, inode) it was when the move started: one swapped
    meanwhile, or reached through a folder swapped for a link, is neither copied nor
    removed.

    Reason for the nine parameters: each is one independent, keyword-only choice of the
    caller (journal.Journal.transfer passes each through as it gets it); grouped in a
    dataclass they would be the same list, once more.
    """
    sources = [Path(s) for s in sources]
    folder = Path(folder)
    group = _Group(sources, folder, [file_at(s, follow) for s in sources], note, follow)
    if not undoing:
        check_folders_keep_private(sources, folder)
    candidates = functools.partial(_names_to_try, sources, folder, exact_names, present)
    finals = _land(group, candidates, keep_source, metadata)
    if present is not None:
        present.update(f.name.casefold() for f in finals)
    try:
        seams.fsync_dir(folder)
    except OSError:  # the names may not last (EIO): give them up, the sources stay
        for final in finals:
            seams.remove_quietly(final)
        raise
    if keep_source:
        return finals
    checked = _unchanged(group, finals)
    _remove_sources(group, finals, checked)
    _sync_parents(sources)
    return finals


def _names_to_try(
    sources: list[Path], folder: Path, exact_names: list[str] | None, present: set[str] | None
) -> Iterator[list[str]]:
    """The names transfer tries in turn (see free_names); `folder` is listed only once
    a name is asked for."""
    if exact_names is not None:
        yield exact_names
        return
    there = names_in_any_case(folder) if present is None else present
    yield from free_names([s.name for s in sources], there)


@dataclass
class _Group:
    """One transfer's files as its steps pass them on: the sources, the folder they go to,
    each source's (device, inode) when the move started, whom each step is announced to,
    and whether a source may be a link."""

    sources: list[Path]
    folder: Path
    born: list[tuple[int, int]]
    note: Note
    follow: bool


def _land(
    group: _Group,
    candidates: Callable[[], Iterator[list[str]]],
    keep_source: bool,
    metadata: list[dict] | None,
) -> list[Path]:
    """Give each source's bytes its final name: a hard link to the source, else (another
    filesystem, or a copy) a verified temporary copy linked there. The temporaries are
    removed whatever happens: each final name holds its bytes then, or the move failed."""
    sources, folder, note, follow = group.sources, group.folder, group.note, group.follow
    temps: list[Path] = []  # each one as soon as it exists: a failure removes them all
    try:
        stand_ins = sources
        if keep_source:
            for s, b in zip(sources, group.born):
                temps.append(copy_verified(s, folder, note, follow=follow, expect=b))
            stand_ins = list(temps)
        try:
            return claim_first_free(stand_ins, folder, candidates(), note, keep_source)
        except OSError as e:
            if keep_source or e.errno not in CROSS_DEVICE:
                raise
            for s, b in zip(sources, group.born):
                temps.append(copy_verified(s, folder, note, False, follow=follow, expect=b))
            for temp, meta in zip(temps, metadata or []):
                set_metadata(temp, meta)
            return claim_first_free(temps, folder, candidates(), note, True)
    finally:
        for tmp in temps:  # each final name holds its bytes now (or the move failed)
            seams.remove_temporary(tmp)


def _unchanged(group: _Group, finals: list[Path]) -> list[tuple | None]:
    """Each source's version (see identity.version) once it is found to equal its final
    file; else the final files are given up and Changed raised.

    rsync's rule: a source is removed only while it still equals its copy (a sync client
    or a camera import may still be writing it, or it was replaced since it was copied).
    """
    checked = []  # each source's stat from before its compare: a write since shows in it
    for source, final in zip(group.sources, finals):
        if not os.path.lexists(source):  # deleted meanwhile: the copy is all there is now
            raise OSError(errno.ENOENT, f"{source.name} vanished while being moved", str(final))
        checked.append(version(source, final))
        if file_at(source, group.follow) != group.born[len(checked) - 1] or not same_file(
            source, final
        ):
            for f in finals:
                seams.remove_quietly(f)
            raise Changed(errno.EAGAIN, f"{source.name} {CHANGED}; left in place")
    return checked


def _remove_sources(group: _Group, finals: list[Path], checked: list[tuple | None]) -> None:
    """Remove each source, unless it changed since `checked`: all or none (one that cannot
    be removed gets back those removed before it, and the final files are given up)."""
    sources, note = group.sources, group.note
    removed: list[int] = []
    for i, source in enumerate(sources):
        note(StepKind.UNLINK, path=source)  # a journal commit: writes may land meanwhile
        try:
            if version(source, finals[i]) != checked[i]:
                raise Changed(errno.EAGAIN, CHANGED)
            seams.remove(source)
        except OSError as e:  # (an immutable sidecar, a writer): the group goes back whole
            note(StepKind.ROLLBACK, path=source)
            try:
                for j in removed:
                    put_back(finals[j], sources[j], note)
            except OSError as e2:
                raise GroupSplit(
                    e2.errno,
                    f"{source.name} cannot be removed ({e.strerror}) and {sources[j].name} "
                    f"cannot be put back ({e2.strerror}): the group is split, see {group.folder}",
                ) from None
            for final in finals:
                seams.remove_quietly(final)
            if isinstance(e, Changed):
                raise Changed(e.errno, f"{source.name} {CHANGED}; left in place") from None
            raise OSError(
                e.errno, f"{source.name} cannot be removed ({e.strerror}); the group stays"
            ) from None
        removed.append(i)


def _sync_parents(sources: list[Path]) -> None:
    """Make the sources' removal last; a folder that cannot be synced only warns: the move
    is done, its copies are fsynced in their folder."""
    for parent in {s.parent for s in sources}:
        try:
            seams.fsync_dir(parent)
        except OSError as e:  # the move is done: its copies are fsynced in their folder
            log.warning(
                "warning: %s could not be synced after the move (%s): a power cut now may "
                "bring a moved source back",
                parent,
                e.strerror,
            )


def put_back(kept: Path, source: Path, note: Note = no_note, *, link: bool = True) -> None:
    """Give a removed source its name back from `kept`, its copy (a hard link where
    `link` and the filesystem allow, else a verified copy); never overwriting."""
    note(StepKind.RESTORE, path=source)
    if link:
        try:
            seams.link(kept, source)
            return
        except OSError as e:
            if e.errno not in CROSS_DEVICE:
                raise
    # not `private`: the source was there before, as that disk shows it
    tmp = copy_verified(kept, source.parent, note, private=False)
    try:
        claim_first_free([tmp], source.parent, [[source.name]], note, temporaries=True)
    finally:
        seams.remove_quietly(tmp)
    seams.fsync_dir(source.parent)


def remove_duplicates(sources: list[Path], twins: list[Path], note: Note = no_note) -> None:
    """Remove each source, whose byte-identical twin stays: all or none (a source that
    cannot be removed gets back those removed before it, copied from their twins)."""
    checked = []  # as in transfer: a write after the compare shows in the stat
    for source, twin in zip(sources, twins):
        # None: another name of the twin's own file, which its removal leaves whole
        checked.append(before := version(source, twin))
        if before is not None and not same_bytes(source, twin):
            raise Changed(errno.EAGAIN, f"{source.name} is no longer a copy of {twin}")
    removed: list[tuple[Path, Path, dict]] = []
    for i, (source, twin) in enumerate(zip(sources, twins)):
        own = metadata_of(source)  # the twin has its own: undo gives the source back its
        note(StepKind.UNLINK, path=source, kept=own)  # a journal commit: writes may land meanwhile
        try:
            if version(source, twin) != checked[i]:
                raise Changed(errno.EAGAIN, CHANGED)
            seams.remove(source)
        except OSError as e:
            note(StepKind.ROLLBACK, path=source)
            for gone, kept, meta in removed:
                put_back(kept, gone, note, link=False)
                set_metadata(gone, meta)
            if isinstance(e, Changed):
                raise Changed(e.errno, f"{source.name} is no longer a copy of {twin}") from None
            raise OSError(e.errno, f"{source.name} cannot be removed: {e.strerror}") from None
        removed.append((source, twin, own))
    for parent in {s.parent for s in sources}:
        seams.fsync_dir(parent)


def move_file(src: Path, folder: Path) -> Path:
    """Move one file into folder without ever overwriting; returns the final path."""
    return transfer([src], folder)[0]


def copy_file(src: Path, folder: Path) -> Path:
    """Copy one file into folder without ever overwriting; the copy is verified first."""
    return transfer([src], folder, keep_source=True)[0]
