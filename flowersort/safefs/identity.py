"""Which file a name holds: the same inode or the same bytes, a content key, and what
shows that a source changed (was written or swapped) while it was being moved."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from flowersort.safefs.seams import BUF

Key = tuple[int, str]  # a file's content: size in bytes, SHA-256 hex


def content_key(path: str | os.PathLike) -> Key:
    """Which photo a file holds, whatever its name or place (streamed, never read whole)."""
    return content_key_and_version(path)[0]


def content_key_and_version(path: str | os.PathLike) -> tuple[Key, tuple[int, int, int] | None]:
    """content_key, with the version of the file it read: (size, mtime_ns, inode), the
    same before and after reading; None when the file changed meanwhile."""
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        digest = hashlib.sha256()  # hashlib.file_digest is 3.11+; we support 3.10
        while chunk := f.read(BUF):
            digest.update(chunk)
        after = os.fstat(f.fileno())
    version = (after.st_size, after.st_mtime_ns, after.st_ino)
    same = (before.st_size, before.st_mtime_ns, before.st_ino) == version
    return (before.st_size, digest.hexdigest()), version if same else None


def identity(path: Path) -> dict[str, int]:
    """What recovery checks to know a name still holds the file this run put there."""
    st = os.lstat(path)
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


CHANGED = "changed while being moved"


class Changed(OSError):
    """A source changed (was written, or replaced) while it was being moved: left in place."""


def version(source: Path, final: Path) -> tuple | None:
    """What shows a write to source: None for a hard link to final (its writes are the
    final's too)."""
    st, fin = os.lstat(source), os.lstat(final)
    if (st.st_dev, st.st_ino) == (fin.st_dev, fin.st_ino):
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_at(path: Path, follow: bool) -> tuple[int, int]:
    """(device, inode) of the file at path; a link is refused unless `follow`."""
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, f"{path.name} is now a symbolic link; left in place")
    return st.st_dev, st.st_ino


def same_file(a: Path, b: Path) -> bool:
    """The same inode (a hard link made by a move) or the same bytes."""
    try:
        return os.path.samefile(a, b) or same_bytes(a, b)
    except OSError:
        return False


def same_bytes(a: Path, b: Path) -> bool:
    """Byte compare, cheapest test first."""
    if os.stat(a).st_size != os.stat(b).st_size:
        return False
    with open(open_to_read(a), "rb") as fa, open(open_to_read(b), "rb") as fb:
        while True:
            ca, cb = fa.read(BUF), fb.read(BUF)
            if ca != cb:
                return False
            if not ca:
                return True


def open_to_read(path: Path, follow: bool = True) -> int:
    """Reading to compare must not change what a move keeps: no access time, where the
    kernel lets us (the owner, or root). Without `follow`, a link is refused (ELOOP)."""
    flags = os.O_RDONLY | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except OSError as e:  # not ours (EPERM), or a filesystem that refuses the flag
        if e.errno == errno.ELOOP:
            why = f"{path.name} is now a symbolic link; left in place"
            raise OSError(errno.ELOOP, why) from None
        return os.open(path, flags)
