"""Whose rights a root run acts with (logrotate's `su`, and its refusal of insecure folders).

A run started by root over folders another user can change must not do their work with
root's rights: a link or a swap that user makes would lead root anywhere. So a root run
over SRC owned by a user acts as that user: `acting` sets the effective groups, gid and
uid to theirs for the whole command, and the kernel then checks every file operation with
that user's rights (an effective uid other than 0 has no CAP_DAC_OVERRIDE, CAP_FOWNER or
the rest). The state folder (journal, lock, corrections, score cache) stays root's:
`as_root` lends root's rights back while it is opened or closed; the connections stay
open, and writing to an open file needs no rights. A worker process becomes the user for
good (`settle_worker`). A root run whose folders only root can change stays root's; one
over folders another user can change, without being told to act as them, is refused
(`acting_user`). Everything here is a no-op in a run not started by root.
"""

from __future__ import annotations

import builtins
import grp
import os
import pwd
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from flowersort.base.errors import FlowersortError

ROOT_NAME = "root"


@dataclass(frozen=True)
class User:
    """Whom a root run acts as: their uid, gid and supplementary groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class Writer:
    """Someone other than root who may change what a folder holds (or the way to it)."""

    folder: Path  # the folder whose owner or mode lets them in
    who: str  # "user alice", "group staff", "everyone"
    uid: int | None  # the folder's owner, when that is who


class Refused(FlowersortError):
    """A root run over folders another user can change, not told whose rights to use."""


def user_named(name: str) -> User:
    """--run-as NAME (or a uid): that user with their groups; an unknown one is a usage
    error."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise FlowersortError(f"--run-as {name}: no such user") from None
    return _from_entry(entry)


def user_of(uid: int, gid: int) -> User:
    """The user with this uid: their passwd entry's gid and groups; a uid without a name
    gets `gid` (the group of the folder it owns) alone."""
    try:
        return _from_entry(pwd.getpwuid(uid))
    except KeyError:
        return User(str(uid), uid, gid, (gid,))


def _from_entry(entry: pwd.struct_passwd) -> User:
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def existing(path: Path) -> Path:
    """path, or the nearest folder above it that exists (a target not made yet)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def writer(folder: Path) -> Writer | None:
    """Who other than root may change what folder holds, or swap a folder on the way to
    it for a link: an owner other than root (who may chmod it), a group other than root's
    with write permission, or everyone with it; but a sticky folder (/tmp, a tmpfs) lets
    no one rename or remove what others made in it, and a name planted there is only a
    clash (a name is claimed by link or O_EXCL). A folder not made yet is asked of the
    nearest one above it."""
    here, linked = existing(folder), False
    for part in (here, *here.parents):
        st = os.lstat(part)
        shielded = st.st_mode & stat.S_ISVTX
        if st.st_uid != 0:
            return Writer(part, f"user {_name(st.st_uid)}", st.st_uid)
        if stat.S_ISLNK(st.st_mode):  # root's link: its mode means nothing, where it leads
            linked = True  # does (asked below)
            continue
        if shielded:
            continue
        if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
            return Writer(part, f"group {_group(st.st_gid)}", None)
        if st.st_mode & stat.S_IWOTH:
            return Writer(part, "everyone", None)
    return writer(Path(os.path.realpath(here))) if linked else None


def owner(folder: Path) -> tuple[int, int]:
    """(uid, gid) of folder, or of the nearest folder above it that exists."""
    st = os.stat(existing(folder))
    return st.st_uid, st.st_gid


def acting_user(run_as: str | None, src: Path | None, written: list[Path]) -> User | None:
    """Whom a run acts as (None: root, or not a root run at all). `src`: the folder whose
    owner the run works for (SRC; for undo, the run's SRC); `written`: every folder the
    run writes into (SRC, the target, the review folder, the log file's folder).

    A run not started by root is its user's. `--run-as root` keeps root's rights
    knowingly; `--run-as NAME` acts as NAME. Else the owner of SRC, when that is not
    root and every other folder written is root's or theirs; else root, when only root
    can change each folder written. Anything else is refused, naming the folder."""
    if os.geteuid() != 0:
        return None
    if run_as is not None:
        return None if run_as in (ROOT_NAME, "0") else user_named(run_as)
    written = [Path(f) for f in written]
    if src is not None:
        uid, gid = owner(src)
        if uid != 0:
            for folder in written:
                there = owner(folder)[0]
                if there not in (0, uid):
                    raise Refused(
                        f"{folder} belongs to user {_name(there)} and {src} to user "
                        f"{_name(uid)}: a root run acts as one of them; say which with "
                        f"--run-as {_name(uid)} or --run-as {_name(there)} (or --run-as "
                        "root to keep root's rights knowingly)"
                    )
            return user_of(uid, gid)
    for folder in written:
        if (found := writer(folder)) is not None:
            whom = _name(found.uid) if found.uid is not None else "USER"
            raise Refused(
                f"{folder}: {found.who} can change {found.folder}, so a root run will not "
                f"write there with root's rights; --run-as {whom} acts as that user, "
                "--run-as root keeps root's rights knowingly"
            )
    return None


# the user this process acts as (None: its own rights), and how deep as_root is nested
_acting: User | None = None
_lent = 0
_root_ids: tuple[int, list[int]] = (0, [])  # egid and groups to go back to


def _become(user: User) -> None:
    os.setgroups(list(user.groups))
    os.setegid(user.gid)
    os.seteuid(user.uid)


def _back_to_root() -> None:
    os.seteuid(0)
    os.setegid(_root_ids[0])
    os.setgroups(_root_ids[1])


def current() -> User | None:
    """The user this process acts as, or None."""
    return _acting


@contextmanager
def acting(user: User | None) -> Iterator[None]:
    """Act as user (every thread: glibc changes the ids of all of them) until the block
    ends; None: as before."""
    global _acting, _root_ids
    if user is None or _acting is not None:
        yield
        return
    _root_ids = (os.getegid(), os.getgroups())
    _become(user)
    _acting = user
    builtins.__import__ = _import_as_root
    try:
        yield
    finally:
        builtins.__import__ = _import
        _acting = None
        _back_to_root()


@contextmanager
def as_root() -> Iterator[None]:
    """Root's rights for the block, when acting as a user (the state folder is root's)."""
    global _lent
    if _acting is None:
        yield
        return
    if _lent == 0:
        _back_to_root()
    _lent += 1
    try:
        yield
    finally:
        _lent -= 1
        if _lent == 0:
            _become(_acting)


def root_where_only_root_writes(folder: Path) -> AbstractContextManager[None]:
    """as_root for a file in a folder only root can change (/var/log), where a user acted
    as may not write; else the rights in hand."""
    if _acting is not None and writer(folder) is None:
        return as_root()
    return nullcontext()


def acting_note() -> str:
    """What an error about a folder adds when the run acts as a user."""
    if _acting is None:
        return ""
    return (
        f" (a root run acts as {_acting.name}, who owns the folders it sorts; --run-as "
        "root keeps root's rights)"
    )


_import = builtins.__import__


def _import_as_root(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
    """`import` while acting as a user: a module not loaded yet is read with root's rights
    (Python's own files may be root's alone: /root/.pyenv), and only a module: none of
    flowersort's own imports touches a photo."""
    module = sys.modules.get(name) if level == 0 and not _lent else None
    if module is not None and all(hasattr(module, n) for n in fromlist or ()):
        return _import(name, globals, locals, fromlist, level)
    with as_root():
        return _import(name, globals, locals, fromlist, level)


def settle_worker(preload: Callable[[], object] | None = None) -> None:
    """In a worker process (forked while acting): the user's ids for good, real and saved
    too, so that nothing it reads can give it root's back. `preload` first, with root's
    rights: what the worker will import (a decoder), which it could not read afterwards."""
    if _acting is None:
        return
    builtins.__import__ = _import
    os.seteuid(0)  # the saved uid is still root's: back to it, to give everything away
    if preload is not None:
        preload()
    os.setgroups(list(_acting.groups))
    os.setresgid(_acting.gid, _acting.gid, _acting.gid)
    os.setresuid(_acting.uid, _acting.uid, _acting.uid)
