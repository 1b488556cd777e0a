"""A verified copy under a temporary name: private until it is the source's, fsynced,
compared byte for byte."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from flowersort.base.records import StepKind
from flowersort.safefs import seams
from flowersort.safefs.attrs import copy_owner_and_mode
from flowersort.safefs.identity import CHANGED, Changed, open_to_read, same_bytes
from flowersort.safefs.privacy import as_its_group_sees, check_copy_keeps_private
from flowersort.safefs.seams import Note, no_note

TMP_PREFIX = ".flowersort-tmp-"


def copy_verified(
    src: Path,
    folder: Path,
    note: Note = no_note,
    verify: bool = True,
    private: bool = True,
    *,
    follow: bool = False,
    expect: tuple[int, int] | None = None,
) -> Path:
    """Copy src to a fresh temporary name in `folder`, fsync it and verify it byte for byte
    (a move verifies later, right before it removes the source). With `private`, a copy
    that `folder` would make readable by more people than src raises Exposed first. A
    link at src is refused unless `follow`; `expect` (device, inode) is the file the move
    started with: another one now at src (swapped meanwhile) is refused, and the bytes
    copied are those of the file checked."""
    tmp = folder / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    note(StepKind.TMP, path=tmp)
    src_fd = open_to_read(src, follow)
    try:
        st = os.fstat(src_fd)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            raise Changed(errno.EAGAIN, f"{src.name} {CHANGED}; left in place")
        dst_fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )  # private until its owner and mode are the source's
        try:
            _fill(src_fd, dst_fd, st, src.name, folder, private)
        finally:
            os.close(dst_fd)
        if verify and not same_bytes(src, tmp):
            raise OSError(errno.EIO, "the copy differs from the source", str(tmp))
    except BaseException:
        seams.remove_quietly(tmp)
        raise
    finally:
        os.close(src_fd)
    return tmp


def _fill(
    src_fd: int, dst_fd: int, st: os.stat_result, name: str, folder: Path, private: bool
) -> None:
    """Give the open temporary its source's owner, mode and attributes, check who could
    read it (with `private`), then write the bytes, the dates, and fsync."""
    copy_owner_and_mode(src_fd, dst_fd, st)  # before any byte lands: who may read it
    if private:
        check_copy_keeps_private(as_its_group_sees(st, src_fd, dst_fd), dst_fd, name, folder)
    seams.copy_bytes(src_fd, dst_fd)
    try:  # last: writing sets them
        os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    except PermissionError:  # a stick that gives its files to root, written by a user
        raise OSError(
            errno.EPERM,
            f"{folder} cannot keep the dates of {name} (not permitted: its files "
            "there belong to another user); left in place",
        ) from None
    seams.fsync(dst_fd)
