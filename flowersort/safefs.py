"""Moving a file so that it is never lost, damaged or silently overwritten.

Knows nothing of photos. The one rule: the source is removed only once an identical,
fsynced copy holds its final name, and a final name is only ever claimed with an
operation that fails if the name exists (``os.link``), never by check-then-rename.
All I/O goes through the small functions below so tests can inject faults.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path

TMP_PREFIX = ".flowersort-tmp-"
BUF = 1024 * 1024


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _link(src: Path, dst: Path) -> None:
    os.link(src, dst, follow_symlinks=False)


def _unlink(path: Path) -> None:
    os.unlink(path)


def _copy_bytes(src_fd: int, dst_fd: int) -> None:
    while chunk := os.read(src_fd, BUF):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BUF):
            digest.update(chunk)
    return digest.hexdigest()


def same_bytes(a: Path, b: Path) -> bool:
    """Byte compare, cheapest test first."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(BUF), fb.read(BUF)
            if ca != cb:
                return False
            if not ca:
                return True


def candidate_names(name: str):
    """IMG_0001.jpg, IMG_0001 (1).jpg, IMG_0001 (2).jpg, ..."""
    yield name
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no suffix, or a dot-file
        stem, dot, suffix = name, "", ""
    n = 1
    while True:
        yield f"{stem} ({n}){dot}{suffix}"
        n += 1


def claim(tmp: Path, folder: Path, name: str, max_tries: int = 10_000) -> Path:
    """Give `tmp` a final name in `folder`: `name`, or `name (n)` on a clash. Atomic per try."""
    for i, candidate in enumerate(candidate_names(name)):
        if i >= max_tries:
            break
        target = folder / candidate
        try:
            _link(tmp, target)
            return target
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name", str(folder / name))


def copy_verified(src: Path, folder: Path) -> Path:
    """Copy src to a fresh temporary name in `folder`, fsync it and verify it byte for byte."""
    tmp = folder / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _copy_bytes(src_fd, dst_fd)
            _fsync(dst_fd)
        finally:
            os.close(dst_fd)
        st = os.fstat(src_fd)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if not same_bytes(src, tmp):
            raise OSError(errno.EIO, "copy differs from the source", str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(src_fd)
    return tmp


def move_file(src: Path, folder: Path, name: str | None = None) -> Path:
    """Move src into folder without ever overwriting; returns the final path.

    Same filesystem: hard link to the final name, then unlink the source. Across
    filesystems (or where hard links are refused): a verified copy under a temporary
    name, linked to the final name, then the source removed. On any error before the
    source is removed, the source is intact and nothing is left in the target.
    """
    src, folder = Path(src), Path(folder)
    name = name or src.name
    try:
        final = claim(src, folder, name)
        fsync_dir(folder)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        tmp = copy_verified(src, folder)
        try:
            final = claim(tmp, folder, name)
        finally:
            _unlink(tmp)
        fsync_dir(folder)
    try:
        _unlink(src)
    except OSError:
        _unlink(final)  # the source stays: undo the copy rather than duplicate the photo
        raise
    fsync_dir(src.parent)
    return final


def copy_file(src: Path, folder: Path, name: str | None = None) -> Path:
    """Copy src into folder without ever overwriting; the copy is verified before it is named."""
    src, folder = Path(src), Path(folder)
    tmp = copy_verified(src, folder)
    try:
        final = claim(tmp, folder, name or src.name)
    finally:
        _unlink(tmp)
    fsync_dir(folder)
    return final
