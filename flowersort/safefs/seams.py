"""The file operations a move takes, each a small function: the seams where tests inject
faults (a full disk, EIO, a kill between two steps). Callers reach them as
``seams.link(...)``, so a replaced one is the one called."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("flowersort")

BUF = 1024 * 1024


# note(step, path=..., **details) before each step (records.StepKind says what each is)
Note = Callable[..., None]


def no_note(step: str, **details) -> None:
    pass


def fsync(fd: int) -> None:
    os.fsync(fd)


def link(src: Path, dst: Path) -> None:
    os.link(src, dst, follow_symlinks=False)


def rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)


def remove(path: Path) -> None:
    """Remove a file: every unlink of a move, its recovery and undo goes through here."""
    os.unlink(path)


def copy_bytes(src_fd: int, dst_fd: int) -> None:
    while chunk := os.read(src_fd, BUF):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        remove(path)
    except FileNotFoundError:
        pass


def remove_temporary(tmp: Path) -> None:
    """Remove a temporary whose job is done; one that cannot be removed (EIO) does not
    undo a move whose final names hold the bytes, nor hide the error a failed one has:
    it is named in a warning, for the user to remove."""
    try:
        remove_quietly(tmp)
    except OSError as e:
        log.warning("warning: could not remove the temporary file %s (%s)", tmp, e.strerror)
