"""A sidecar written atomically: a temporary file in the same folder (O_EXCL, O_NOFOLLOW),
fsynced, given the old sidecar's owner and mode, renamed over it (or, for a new one,
linked to its name), then the folder fsynced; `tag` and `untag`, each step announced
to `note` first. The photo itself is only ever looked at (lstat)."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowersort.photos.xmp import (
    Action,
    Result,
    SidecarChanged,
    SidecarError,
    SidecarRefused,
    SidecarWriteFailed,
    find_sidecar,
    read_sidecar,
)
from flowersort.photos.xmp_splice import add_keyword, new_sidecar, remove_keyword
from flowersort.safefs.attrs import give_owner
from flowersort.safefs.claim import NO_LINKS
from flowersort.safefs.copies import TMP_PREFIX  # a journal's recovery knows these names

Note = Callable[..., None]


def _no_note(step: str, **details) -> None:
    pass


@dataclass(frozen=True)
class _Found:
    data: bytes
    st: os.stat_result


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


# small I/O functions, so tests can reach each step
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _write_sidecar(
    sidecar: Path,
    data: bytes,
    old: os.stat_result | None,
    photo_st: os.stat_result,
    note: Note,
) -> None:
    """Put data at sidecar atomically: replacing `old` (which must still be there,
    unchanged) or, with old None, at a name nothing holds yet."""
    folder = sidecar.parent
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tmp = f"{TMP_PREFIX}{secrets.token_hex(8)}.xmp"
        note("tmp", path=folder / tmp, digest=digest(data))  # what the sidecar will hold
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dfd)  # private until its owner and mode are set
        try:
            try:
                owner = old if old is not None else photo_st  # a new one: the photo's readers
                give_owner(fd, owner.st_uid, owner.st_gid)
                mode = stat.S_IMODE(owner.st_mode)  # a new one: no execute bits, and its
                if old is None:  # owner may write it even if the photo is read-only
                    mode = mode & 0o666 | 0o200
                os.fchmod(fd, mode)  # after chown, which clears set-id bits
                _write_all(fd, data)
                _fsync(fd)
            finally:
                os.close(fd)
            note("replace", path=sidecar)
            if old is not None:
                now = os.stat(sidecar.name, dir_fd=dfd, follow_symlinks=False)
                if not _same_version(now, old):
                    raise SidecarChanged(sidecar, "changed by another program meanwhile")
                os.rename(tmp, sidecar.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                _claim(tmp, sidecar, dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        try:
            _fsync(dfd)
        except OSError as e:
            raise SidecarWriteFailed(
                sidecar, f"written, but its folder could not be synced ({e.strerror})", e.errno
            ) from None
    finally:
        os.close(dfd)


def _claim(tmp: str, sidecar: Path, dfd: int) -> None:
    """Give tmp the sidecar's name, which nothing may hold: link() fails if it exists."""
    try:
        os.link(tmp, sidecar.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except FileExistsError:
        raise SidecarChanged(sidecar, "created by another program meanwhile") from None
    except OSError as e:
        if e.errno not in NO_LINKS:
            raise
        # no hard links (exFAT): a rename, after one more look (a race is left open here)
        try:
            os.stat(sidecar.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(tmp, sidecar.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return
        raise SidecarChanged(sidecar, "created by another program meanwhile") from None
    os.unlink(tmp, dir_fd=dfd)


def _photo_stat(photo: Path) -> os.stat_result:
    st = os.lstat(photo)
    if not stat.S_ISREG(st.st_mode):
        raise SidecarRefused(photo, "the photo is not a regular file (a link?)")
    return st


def _current(sidecar: Path) -> _Found | None:
    try:
        data, st = read_sidecar(sidecar)
    except FileNotFoundError:
        return None
    return _Found(data, st)


def digest(data: bytes) -> str:
    """sha256 of a sidecar's bytes, as the journal keeps it."""
    return hashlib.sha256(data).hexdigest()


def tag(
    photo: Path,
    keyword: str,
    *,
    dry_run: bool = False,
    sidecar: Path | None = None,
    note: Note = _no_note,
) -> Result:
    """Add keyword to photo's sidecar (find_sidecar, or `sidecar`), creating one if there
    is none. The photo's bytes are never touched."""
    photo = Path(photo)
    try:
        photo_st = _photo_stat(photo)
        sidecar = find_sidecar(photo) if sidecar is None else Path(sidecar)
        found = _current(sidecar)
    except OSError as e:  # the photo gone, its folder unreadable
        raise SidecarError(photo, e.strerror or str(e)) from None
    base = found.data if found else new_sidecar()
    out, changed = add_keyword(base, keyword, sidecar)
    if not changed:
        return Result(Action.ALREADY_TAGGED, sidecar)
    if dry_run:
        return Result(Action.WOULD_TAG, sidecar, changed, created=found is None)
    try:
        _write_sidecar(sidecar, out, found.st if found else None, photo_st, note)
    except SidecarError:
        raise
    except OSError as e:
        raise SidecarWriteFailed(sidecar, e.strerror or str(e), e.errno) from None
    return Result(Action.TAGGED, sidecar, changed, created=found is None, digest=digest(out))


def untag(
    photo: Path,
    keyword: str,
    *,
    sidecar: Path | None = None,
    only: tuple[str, ...] | None = None,
    created: str | None = None,
    dry_run: bool = False,
    note: Note = _no_note,
) -> Result:
    """Take keyword out of photo's sidecar again, from the lists in `only` (those tag()
    changed; all three if None): every other keyword stays. `created`: the digest of a
    sidecar tag() created; if it still holds exactly those bytes, it is removed whole."""
    photo = Path(photo)
    sidecar = find_sidecar(photo) if sidecar is None else Path(sidecar)
    found = _current(sidecar)
    if found is None:
        return Result(Action.NOT_TAGGED, sidecar)
    if created is not None and digest(found.data) == created:
        if dry_run:
            return Result(Action.WOULD_UNTAG, sidecar, only or (), removed=True)
        try:
            dfd = os.open(sidecar.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                now = os.stat(sidecar.name, dir_fd=dfd, follow_symlinks=False)
                if not _same_version(now, found.st):
                    raise SidecarChanged(sidecar, "changed by another program meanwhile")
                note("unlink", path=sidecar)
                os.unlink(sidecar.name, dir_fd=dfd)
                _fsync(dfd)
            finally:
                os.close(dfd)
        except SidecarError:
            raise
        except OSError as e:
            raise SidecarWriteFailed(sidecar, e.strerror or str(e), e.errno) from None
        return Result(Action.UNTAGGED, sidecar, only or (), removed=True)
    out, changed = remove_keyword(found.data, keyword, sidecar, only)
    if not changed:
        return Result(Action.NOT_TAGGED, sidecar)
    if dry_run:
        return Result(Action.WOULD_UNTAG, sidecar, changed)
    try:
        _write_sidecar(sidecar, out, found.st, found.st, note)  # the photo may be gone
    except SidecarError:
        raise
    except OSError as e:
        raise SidecarWriteFailed(sidecar, e.strerror or str(e), e.errno) from None
    return Result(Action.UNTAGGED, sidecar, changed, digest=digest(out))
