"""Who may read a moved file: a move must never let more people read a photo than could
where it was, neither by the copy's own mode, owner, group or ACL (wider_readers), nor by
the folders above it (readers_let_in)."""

from __future__ import annotations

import errno
import functools
import os
import pwd
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from flowersort.base.xdg import current_umask
from flowersort.safefs.attrs import ACCESS_ACL


class Exposed(OSError):
    """A copy would be readable by more people than its source (a disk without Unix modes,
    such as exFAT, shows every file 0777): it is removed before any byte lands in it."""


class PrivateByFolder(Exposed):
    """A photo that its folders keep private would be readable by more people in the
    target folder (see readers_let_in)."""


def wider_readers(source: os.stat_result, copy: os.stat_result) -> str | None:
    """Who could read the copy but not the source ("everyone", "group N", "user N"), or
    None. The copy's owner can chmod it, so an owner other than the source's, root or this
    process (which read the source) counts whatever the owner bits say."""
    if source.st_mode & stat.S_IROTH:
        return None
    if copy.st_mode & stat.S_IROTH:
        return "everyone"
    if copy.st_mode & stat.S_IRGRP and not (
        source.st_mode & stat.S_IRGRP and copy.st_gid == source.st_gid
    ):
        return f"group {copy.st_gid}"
    if copy.st_uid not in (source.st_uid, 0, os.geteuid()):
        return f"user {copy.st_uid}"
    return None


def _access_acl(fd: int) -> bytes | None:
    try:
        return os.getxattr(fd, ACCESS_ACL)
    except OSError:
        return None


def check_copy_keeps_private(source: os.stat_result, dst_fd: int, name: str, folder: Path) -> None:
    """Raise Exposed if the open copy of `name` in `folder` would be readable by more people
    than its source (`source`: as its group sees it, see as_its_group_sees)."""
    if who := wider_readers(source, os.fstat(dst_fd)):
        why = (
            "that disk does not keep its file permissions"
            if who == "everyone"
            else "that folder gives its files an owner or group other than the "
            "photo's, or keeps no ACL"
        )
        raise Exposed(
            errno.EPERM,
            f"{folder} cannot keep {name} private (it would be readable by {who}: {why})",
        )


def as_its_group_sees(st: os.stat_result, src_fd: int, dst_fd: int) -> os.stat_result:
    """st with the group bits its owning group has: with an ACL, the mode's group bits are
    the ACL's mask (the most any user or group it names gets), and those bits are what
    the group gets in a copy that could not keep the ACL (a disk without ACLs: ramfs)."""
    acl = _access_acl(src_fd)
    if acl is None or _access_acl(dst_fd) == acl:
        return st
    entries = struct.iter_unpack("<HHI", acl[4:])  # after the version: tag, permissions, id
    group = next((perms for tag, perms, _ in entries if tag == 0x04), 0)  # ACL_GROUP_OBJ
    mode = st.st_mode & ~stat.S_IRWXG | (group & 0o7) << 3
    return os.stat_result((mode, *st[1:]))


Way = list[tuple[int, int, int]]  # mode, owner, group of each folder up to the root


def _way(folder: Path) -> Way:
    """Mode, owner and group of each folder on the way to `folder` (itself included); a
    folder not made yet as mkdir will make it."""
    way = []
    for part in (folder, *folder.parents):
        try:
            st = os.stat(part)
            way.append((st.st_mode, st.st_uid, st.st_gid))
        except FileNotFoundError:
            way.append((0o777 & ~current_umask(), os.geteuid(), os.getegid()))
    return way


def _kept_out(way: Way, gid: int) -> tuple[bool, bool]:
    """Whether a folder on `way` keeps out everyone else, and the members of group gid:
    neither may search it."""
    others = group = False
    for mode, _, owner_group in way:
        others |= not mode & stat.S_IXOTH
        group |= not mode & (stat.S_IXGRP if owner_group == gid else stat.S_IXOTH)
    return others, group


@functools.lru_cache(maxsize=64)
def _user(uid: int) -> tuple[str, frozenset[int]]:
    """A user's name and groups (none known for a uid without a name)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return str(uid), frozenset()
    return entry.pw_name, frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))


def _may(uid: int, groups: frozenset[int], mode: int, owner: int, group: int, bits: int) -> bool:
    """Whether user uid has `bits` (read, search: as the owner's, rwx------) on a file."""
    shift = 6 if uid == owner else 3 if group in groups else 0
    return bool(mode & (bits >> (6 - shift)))


def _owner_let_in(st: os.stat_result, src_way: Way, dst_way: Way) -> str | None:
    """A user who owns a folder on the way to the target (a root run sorting into another
    user's home) and could read the photo there, but cannot reach it where it is."""
    for uid in {owner for _, owner, _ in dst_way} - {st.st_uid, 0}:
        name, groups = _user(uid)
        if not _may(uid, groups, st.st_mode, st.st_uid, st.st_gid, stat.S_IRUSR):
            continue
        if all(_may(uid, groups, *part, stat.S_IXUSR) for part in dst_way) and not all(
            _may(uid, groups, *part, stat.S_IXUSR) for part in src_way
        ):
            return f"user {name}"
    return None


@dataclass
class Ways:
    """What a run found of the folders' modes (see readers_let_in): each folder's way up to
    the root, and who each kind of photo (mode, owner, group) from one folder into another
    would let in, which those ways decide."""

    folders: dict[Path, Way] = field(default_factory=dict)
    answers: dict[tuple, str | None] = field(default_factory=dict)


def _way_of(folder: Path, ways: Ways | None) -> Way:
    if ways is None:
        return _way(folder.resolve())
    if folder not in ways.folders:
        ways.folders[folder] = _way(folder.resolve())
    return ways.folders[folder]


def readers_let_in(source: Path, folder: Path, ways: Ways | None = None) -> str | None:
    """Who could read the photo in `folder` but cannot reach it where it is ("everyone",
    "group N", "user NAME"), or None: a 0644 photo in a 0700 folder is private by its
    folder, and a move must not change who can read it (the photo's own mode:
    wider_readers). `ways`: the folders' modes found earlier in this run, kept there (a
    plan's: the move itself looks again, see transfer), else every folder up to the root
    is looked at now."""
    st = os.stat(source)
    if ways is None:
        return _readers(st, source, folder, None)
    # the answer depends on the photo only by its mode, owner and group: once per kind
    kind = (os.path.dirname(source), os.fspath(folder), st.st_mode, st.st_uid, st.st_gid)
    if kind not in ways.answers:
        ways.answers[kind] = _readers(st, source, folder, ways)
    return ways.answers[kind]


def _readers(st: os.stat_result, source: Path, folder: Path, ways: Ways | None) -> str | None:
    src_way, dst_way = _way_of(source.parent, ways), _way_of(folder, ways)
    src_others, src_group = _kept_out(src_way, st.st_gid)
    dst_others, dst_group = _kept_out(dst_way, st.st_gid)
    if st.st_mode & stat.S_IROTH and src_others and not dst_others:
        return "everyone"
    if st.st_mode & stat.S_IRGRP and src_group and not dst_group:
        return f"group {st.st_gid}"
    return _owner_let_in(st, src_way, dst_way)


def check_folders_keep_private(sources: list[Path], folder: Path, ways: Ways | None = None) -> None:
    """Raise PrivateByFolder if moving the files into `folder` would let more people read
    one (`ways`: see readers_let_in)."""
    for source in sources:
        if who := readers_let_in(source, folder, ways):
            raise PrivateByFolder(
                errno.EPERM,
                f"{folder} would let {who} read {source.name} (a folder above it keeps them "
                "out where it is)",
            )
