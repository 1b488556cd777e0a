"""The run lock (one moving run at a time for this user) and folder locks (runs
over the same folders with different state folders wait for each other).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from flowersort.base import rights
from flowersort.base.errors import LockHeld, StateError
from flowersort.sorting.state import make_state_dir

log = logging.getLogger("flowersort")

_held_locks: set[int] = set()  # fds of the run locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a worker): close the lock fds it inherited. The lock stays with
    the parent, but dies with it: a worker that outlives a killed run must not hold it."""
    for fd in _held_locks:
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunLock:
    """An exclusive flock: one moving run at a time for this user (cron overlap)."""

    @rights.as_root()
    def __init__(self, folder: Path, wait: bool = False):
        make_state_dir(folder)
        try:  # never inherited by a program we start (O_CLOEXEC)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a link: refused
            self.fd = os.open(folder / "lock", flags, 0o644)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
            raise StateError(f"cannot create the run lock {folder / 'lock'}: {why}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(
                    "another flowersort run is moving photos; try again later or use --wait"
                ) from None
            raise
        _held_locks.add(self.fd)
        try:  # the holder's pid, for a person looking: not worth failing over (a full disk)
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass

    def release(self) -> None:
        _held_locks.discard(self.fd)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class FolderLock:
    """An exclusive flock on a folder itself (its own file descriptor): runs over the same
    archive or target with different state folders (root's cron and the user's shell)
    wait for each other or exit 3 as two runs with the same one do. A filesystem that
    cannot lock (some FUSE ones) is not locked."""

    def __init__(self, folder: Path, wait: bool = False):
        self.fd: int | None = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(
                    f"another flowersort run is moving photos in {folder}; try again later "
                    "or use --wait"
                ) from None
            log.debug("%s cannot be locked: %s", folder, e.strerror)
            return
        _held_locks.add(self.fd)

    def release(self) -> None:
        if self.fd is not None:
            _held_locks.discard(self.fd)
            os.close(self.fd)  # the lock goes with it
            self.fd = None
