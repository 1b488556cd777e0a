"""What a file keeps besides its bytes: owner, mode, times, extended attributes (desktop
tags, ACLs); copied to a file as far as its filesystem can hold them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("flowersort")

ACCESS_ACL = "system.posix_acl_access"


def give_owner(fd: int, uid: int, gid: int) -> None:
    """Give the open file this owner and group where permitted: not root, the group alone
    if we are in it; a disk without owners (exFAT) keeps its own."""
    try:
        os.fchown(fd, uid, gid)
    except OSError:
        try:
            os.fchown(fd, -1, gid)
        except OSError:
            pass


def copy_owner_and_mode(src_fd: int, dst_fd: int, st: os.stat_result) -> None:
    """What `mv` keeps across filesystems but the times (copy_verified sets those once the
    bytes are written): extended attributes (desktop tags, ACLs), owner and group where
    permitted, mode; so, who may read the copy. A target that cannot hold some of it
    (exFAT has no owners, modes or xattrs) keeps what it can."""
    try:
        names = os.listxattr(src_fd)
    except OSError:
        names = []
    for name in names:
        try:
            os.setxattr(dst_fd, name, os.getxattr(src_fd, name))
        except OSError as e:
            log.debug("extended attribute %s not kept: %s", name, e.strerror)
    if ACCESS_ACL not in names:  # as `mv`: not the ACL a folder's default gives new files
        try:
            os.removexattr(dst_fd, ACCESS_ACL)
        except OSError:
            pass
    give_owner(dst_fd, st.st_uid, st.st_gid)
    wanted = stat.S_IMODE(st.st_mode)
    try:
        os.fchmod(dst_fd, wanted)  # after chown, which clears set-id bits
    except OSError as e:
        # a disk without modes (exFAT) shows its own, and that is fine; but a copy left
        # with fewer read bits than the photo had (the temporary's 0600) would shut out
        # those who could read it: then the move is not done
        lost = wanted & 0o444 & ~os.fstat(dst_fd).st_mode
        if lost:
            raise OSError(e.errno, f"cannot give the copy the photo's mode ({e.strerror})") from e
        log.debug("mode not kept: %s", e.strerror)


def metadata(path: Path) -> dict:
    """A file's mode, owner, times and extended attributes, as JSON: what a removed
    duplicate gets back when it is restored from its twin (another file, with its own)."""
    st = os.lstat(path)
    try:
        names = os.listxattr(path, follow_symlinks=False)
        xattrs = {n: os.getxattr(path, n, follow_symlinks=False).hex() for n in names}
    except OSError:
        xattrs = {}
    return {
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "atime_ns": st.st_atime_ns,
        "mtime_ns": st.st_mtime_ns,
        "xattrs": xattrs,
    }


def set_metadata(path: Path, meta: dict) -> None:
    """Give path the `metadata` of another file, as far as its filesystem can hold it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            for name in os.listxattr(fd):
                if name not in meta["xattrs"]:
                    os.removexattr(fd, name)
        except OSError:
            pass
        for name, value in meta["xattrs"].items():
            try:
                os.setxattr(fd, name, bytes.fromhex(value))
            except OSError as e:
                log.debug("extended attribute %s not kept: %s", name, e.strerror)
        try:
            os.fchown(fd, meta["uid"], meta["gid"])
        except OSError:  # not root, or no owners (exFAT)
            pass
        try:
            os.fchmod(fd, meta["mode"])  # after chown, which clears set-id bits
        except OSError as e:
            log.debug("mode not kept: %s", e.strerror)
        try:
            os.utime(fd, ns=(meta["atime_ns"], meta["mtime_ns"]))
        except OSError as e:
            log.debug("times not kept: %s", e.strerror)
    finally:
        os.close(fd)
