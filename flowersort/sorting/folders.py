"""Folders a run makes and removes in the target: with the user's rights, or, where only
root can change the folder above, made by root and given to the user."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from flowersort.base import rights


def make_dirs(folder: Path) -> list[Path]:
    """mkdir -p; returns the folders it created, outermost first."""
    missing, top = [], folder
    while not top.exists() and top != top.parent:
        missing.append(top)
        top = top.parent
    for f in reversed(missing):
        try:
            make_dir(f)
        except FileExistsError:  # made meanwhile by someone else: not ours
            missing.remove(f)
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    return missing[::-1]


def made_for_the_user(parent: Path) -> bool:
    """Whether a root run acting as a user makes its target in parent with root's rights
    and gives it to them: parent is one they cannot write and only root can change (the
    target /srv/photos/Flowers of a nightly run over alice's ~/Pictures)."""
    if rights.current() is None or os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
        return False
    return rights.writer(parent) is None


def make_dir(folder: Path) -> None:
    """mkdir; see made_for_the_user: then made by root and given to the user at once (in
    a folder only root can change, no one else can put anything in its place meanwhile)."""
    user = rights.current()
    if user is None or not made_for_the_user(folder.parent):
        folder.mkdir()
        return
    with rights.as_root():
        folder.mkdir()
        os.chown(folder, user.uid, user.gid, follow_symlinks=False)


def remove_dir(folder: Path) -> None:
    """rmdir; a folder made for the user in one only root can change goes as it came."""
    if made_for_the_user(folder.parent):
        with rights.as_root():
            folder.rmdir()
        return
    folder.rmdir()
