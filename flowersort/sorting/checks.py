"""Checks before a run moves anything: the target and SRC usable, no planted links."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from flowersort.base import rights
from flowersort.base.errors import EmptySource, FlowersortError
from flowersort.base.outcomes import Action, Outcome
from flowersort.photos.archive import walk
from flowersort.sorting.folders import made_for_the_user
from flowersort.sorting.journal import earlier_target
from flowersort.sorting.options import SortOptions

log = logging.getLogger("flowersort")


def check_target(src: Path, dest: Path) -> None:
    """A target that is SRC itself (or SRC's own folder, for one photo) is a usage error:
    every photo would be compared with itself. A target inside SRC is never searched,
    so photos already in it are never classified: say so, unless it is an earlier run's
    target (the nightly Pictures/Flowers, whose photos are flowersort's own)."""
    real_src, real_dest = src.resolve(), dest.resolve()
    folder = real_src if real_src.is_dir() else real_src.parent
    if real_dest == folder:
        raise FlowersortError(f"the target {dest} is {src} itself: choose a folder outside it")
    if real_dest.is_relative_to(folder) and real_dest.is_dir() and not earlier_target(dest):
        if next(walk(real_dest), None) is not None:
            log.warning(
                "warning: the target %s is inside %s and already holds photos: they are "
                "never classified (the target is not searched)",
                dest,
                src,
            )


def check_writable(folder: Path, probe: bool) -> None:
    """A target that cannot be written (a read-only disk, a folder without write permission,
    a file in the way) stops the run before its first photo, in one line naming it, rather
    than once per photo. Asked of the folder, or of the nearest folder above it that exists;
    with `probe`, an empty file is also created in the folder and removed (a network share
    can refuse what access() allows). A dry run only asks, and so touches nothing."""
    target = Path(os.path.abspath(folder))
    there = target
    while not os.path.lexists(there) and there != there.parent:
        there = there.parent
    what = f"write into the target {folder}"
    if there != target:
        what = f"create the target {folder} in {there}"
    if not there.is_dir():
        if there == target:
            raise FlowersortError(f"the target {folder} is not a folder")
        raise FlowersortError(f"cannot {what}: {there} is not a folder")
    # effective ids: a root run acting as the folders' owner asks with their rights
    made_by_root = there != target and made_for_the_user(there)
    if not made_by_root and not os.access(there, os.W_OK | os.X_OK, effective_ids=True):
        read_only = os.statvfs(there).f_flag & os.ST_RDONLY
        why = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise FlowersortError(f"cannot {what}: {why}{rights.acting_note()}")
    if probe and there == target:
        name = target / f".flowersort-probe-{os.getpid()}"
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:  # left by a run of this pid killed outright: writable
            return
        except OSError as e:
            raise FlowersortError(f"cannot {what}: {e.strerror}{rights.acting_note()}") from None
        try:
            os.unlink(name)
        except OSError as e:  # an append-only folder (chattr +a), a write-once share
            why = f"a file made there cannot be removed ({e.strerror})"
            raise FlowersortError(f"cannot {what}: {why}: remove {name}") from None


def is_empty_folder(folder: Path) -> bool:
    """A folder holding nothing at all, as the mount point of a disk that is not mounted (an
    archive whose photos all went to the target still holds their folders)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:  # a file, or a folder that cannot be read: the walk says so
        return False


def foreign_link(folder: Path) -> tuple[Path, int] | None:
    """A symbolic link on the way to folder that another user owns (not root, not us), and
    its owner: a root run must not follow where that user points it."""
    path = Path(os.path.abspath(folder))
    for part in (path, *path.parents):
        try:
            st = os.lstat(part)
        except OSError:
            continue  # not made yet: make_dirs makes a folder, never a link
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
            return part, st.st_uid
    return None


def check_no_foreign_links(folder: Path) -> None:
    """A target or review folder reached through a link that another user owns is
    refused: a root run into ~owner/Pictures/Flowers must not follow the owner's link to a
    folder of root's."""
    if found := foreign_link(folder):
        part, uid = found
        raise FlowersortError(
            f"{folder}: {part} is a symbolic link of another user's (uid {uid}); "
            "give the folder it points to, or run as that user"
        )


def link_in_the_way(photo: Path) -> Outcome | None:
    """Undo: a folder of photo's old place that another user replaced by a link since (a
    stand-in for /etc/cron.d) is never followed; the photo stays in the target."""
    if found := foreign_link(photo.parent):
        part, uid = found
        why = f"{part} is now a symbolic link of another user's (uid {uid}); left in the target"
        return Outcome(photo, Action.FAILED, reason=why)
    return None


def check_run(src: Path, options: SortOptions) -> None:
    """What stops a run before it starts, in one line: no SRC, an empty one (a disk not
    mounted), a target that is SRC itself, reached through another user's link, or that
    cannot be written."""
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    # before any folder is made (none in a NAS's bare mount point), and before the target's
    # checks: a mount point the user cannot write is still a disk not mounted
    if is_empty_folder(src):
        raise EmptySource(f"{src} is empty: nothing to do, nothing created (is it mounted?)")
    if options.dest is None:
        return
    folders = [Path(f) for f in options.targets if f is not None]
    for folder in folders:
        check_no_foreign_links(folder)
    check_target(src, Path(options.dest))
    for folder in folders:
        check_writable(folder, probe=not options.dry_run)
