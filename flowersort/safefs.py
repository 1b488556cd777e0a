"""Moving files so that they are never lost, damaged or silently overwritten.

Knows nothing of photos. The rules: a final name is only ever claimed with an operation
that fails if the name exists (``os.link``), never by check-then-rename; a source is
removed only once an identical, fsynced file holds its final name, and only while it
still equals that file; a group of files
(a photo and its sidecars) arrives all or none. Every step is announced to `note` first,
so a journal can finish or undo it after a crash. All I/O goes through the small
functions below so tests can inject faults.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import pwd
import secrets
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from flowersort.base.records import StepKind
from flowersort.base.xdg import current_umask

log = logging.getLogger("flowersort")
TMP_PREFIX = ".flowersort-tmp-"
BUF = 1024 * 1024
MAX_NAME_TRIES = 10_000
CROSS_DEVICE = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK)
NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.ENOSYS)  # link() refused: exFAT, FAT

# note(step, path=..., **details) before each step (records.StepKind says what each is)
Note = Callable[..., None]


class GroupSplit(OSError):
    """A group left partly moved: a source could not be removed and one removed before it
    could not be put back. Nothing is lost, but the group is in two places."""


class Changed(OSError):
    """A source changed (was written, or replaced) while it was being moved: left in place."""


class Exposed(OSError):
    """A copy would be readable by more people than its source (a disk without Unix modes,
    such as exFAT, shows every file 0777): it is removed before any byte lands in it."""


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


def _no_note(step: str, **details) -> None:
    pass


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _link(src: Path, dst: Path) -> None:
    os.link(src, dst, follow_symlinks=False)


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)


def _unlink(path: Path) -> None:
    os.unlink(path)


def remove(path: Path) -> None:
    """Remove a file, through the seam the tests inject faults at (_unlink)."""
    _unlink(path)


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


def _open_to_read(path: Path, follow: bool = True) -> int:
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


def same_bytes(a: Path, b: Path) -> bool:
    """Byte compare, cheapest test first."""
    if os.stat(a).st_size != os.stat(b).st_size:
        return False
    with open(_open_to_read(a), "rb") as fa, open(_open_to_read(b), "rb") as fb:
        while True:
            ca, cb = fa.read(BUF), fb.read(BUF)
            if ca != cb:
                return False
            if not ca:
                return True


def identity(path: Path) -> dict[str, int]:
    """What recovery checks to know a name still holds the file this run put there."""
    st = os.lstat(path)
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


CHANGED = "changed while being moved"


def _version(source: Path, final: Path) -> tuple | None:
    """What shows a write to source: None for a hard link to final (its writes are the
    final's too)."""
    st, fin = os.lstat(source), os.lstat(final)
    if (st.st_dev, st.st_ino) == (fin.st_dev, fin.st_ino):
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def same_file(a: Path, b: Path) -> bool:
    """The same inode (a hard link made by a move) or the same bytes."""
    try:
        return os.path.samefile(a, b) or same_bytes(a, b)
    except OSError:
        return False


def split_name(name: str) -> tuple[str, str]:
    """("IMG_0001", ".jpg"); a dot-file or a name without a dot has no suffix."""
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if stem else (name, "")


def numbered_stems(stem: str) -> Iterator[str]:
    """IMG_0001, IMG_0001 (1), IMG_0001 (2), ..."""
    yield stem
    for n in range(1, MAX_NAME_TRIES):
        yield f"{stem} ({n})"


def free_names(names: list[str], present: set[str]) -> Iterator[list[str]]:
    """The names a group (names[0] is its photo's) may take in a folder that holds
    `present` (casefolded, names_in_any_case), in the order transfer tries them: its own
    names, then the first numbered stem free for every member ("IMG_0001 (1).jpg" with
    "IMG_0001 (1).xmp"), and so on. The one place the names of a move are chosen: a dry
    run plans with it what transfer then claims."""
    stem, _ = split_name(names[0])
    for new_stem in numbered_stems(stem):
        candidate = [member_name(n, stem, new_stem) for n in names]
        if not present & {n.casefold() for n in candidate}:
            yield candidate


def member_name(name: str, stem: str, new_stem: str) -> str:
    """A group member's name when its photo's stem becomes new_stem: IMG_0001.xmp goes
    with IMG_0001 (1).jpg as IMG_0001 (1).xmp. The stem matches in any case (img_0001.heic's
    IMG_0001.MOV becomes img_0001 (1).MOV); a name is never changed without need."""
    if new_stem != stem and name.lower().startswith(stem.lower()):
        return new_stem + name[len(stem) :]
    return name


Key = tuple[int, str]  # a file's content: size in bytes, SHA-256 hex


def content_key(path: str | os.PathLike) -> Key:
    """Which photo a file holds, whatever its name or place (streamed, never read whole)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.sha256()  # hashlib.file_digest is 3.11+; we support 3.10
        while chunk := f.read(BUF):
            digest.update(chunk)
    return size, digest.hexdigest()


def names_in_any_case(folder: Path) -> set[str]:
    """The names folder holds, casefolded: a photo must not take a name that differs only in
    case from one there (img_0001.jpg beside IMG_0001.JPG would share its sidecars, which
    match in any case), so it takes a new number. Listed once per move, not per name tried."""
    try:
        return {n.casefold() for n in os.listdir(folder)}
    except OSError:
        return set()


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


Ways = dict[Path, Way]  # each folder's _way, as a run found it (see readers_let_in)


def _way_of(folder: Path, ways: Ways | None) -> Way:
    if ways is None:
        return _way(folder.resolve())
    if folder not in ways:
        ways[folder] = _way(folder.resolve())
    return ways[folder]


def readers_let_in(source: Path, folder: Path, ways: Ways | None = None) -> str | None:
    """Who could read the photo in `folder` but cannot reach it where it is ("everyone",
    "group N", "user NAME"), or None: a 0644 photo in a 0700 folder is private by its
    folder, and a move must not change who can read it (the photo's own mode:
    wider_readers). `ways`: the folders' modes found earlier in this run, kept there (a
    plan's: the move itself looks again, see transfer), else every folder up to the root
    is looked at now."""
    st = os.stat(source)
    src_way, dst_way = _way_of(source.parent, ways), _way_of(folder, ways)
    src_others, src_group = _kept_out(src_way, st.st_gid)
    dst_others, dst_group = _kept_out(dst_way, st.st_gid)
    if st.st_mode & stat.S_IROTH and src_others and not dst_others:
        return "everyone"
    if st.st_mode & stat.S_IRGRP and src_group and not dst_group:
        return f"group {st.st_gid}"
    return _owner_let_in(st, src_way, dst_way)


class PrivateByFolder(Exposed):
    """A photo that its folders keep private would be readable by more people in the
    target folder (see readers_let_in)."""


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


def copy_verified(
    src: Path,
    folder: Path,
    note: Note = _no_note,
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
    src_fd = _open_to_read(src, follow)
    try:
        st = os.fstat(src_fd)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            raise Changed(errno.EAGAIN, f"{src.name} {CHANGED}; left in place")
        dst_fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )  # private until its owner and mode are the source's
        try:
            copy_owner_and_mode(src_fd, dst_fd, st)  # before any byte lands: who may read it
            if private:
                if who := wider_readers(_as_its_group_sees(st, src_fd, dst_fd), os.fstat(dst_fd)):
                    why = (
                        "that disk does not keep its file permissions"
                        if who == "everyone"
                        else "that folder gives its files an owner or group other than the "
                        "photo's, or keeps no ACL"
                    )
                    raise Exposed(
                        errno.EPERM,
                        f"{folder} cannot keep {src.name} private (it would be readable by "
                        f"{who}: {why})",
                    )
            _copy_bytes(src_fd, dst_fd)
            try:  # last: writing sets them
                os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            except PermissionError:  # a stick that gives its files to root, written by a user
                raise OSError(
                    errno.EPERM,
                    f"{folder} cannot keep the dates of {src.name} (not permitted: its files "
                    "there belong to another user); left in place",
                ) from None
            _fsync(dst_fd)
        finally:
            os.close(dst_fd)
        if verify and not same_bytes(src, tmp):
            raise OSError(errno.EIO, "the copy differs from the source", str(tmp))
    except BaseException:
        _remove_quietly(tmp)
        raise
    finally:
        os.close(src_fd)
    return tmp


ACCESS_ACL = "system.posix_acl_access"


def _access_acl(fd: int) -> bytes | None:
    try:
        return os.getxattr(fd, ACCESS_ACL)
    except OSError:
        return None


def _as_its_group_sees(st: os.stat_result, src_fd: int, dst_fd: int) -> os.stat_result:
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


def _remove_quietly(path: Path) -> None:
    try:
        _unlink(path)
    except FileNotFoundError:
        pass


def _remove_temporary(tmp: Path) -> None:
    """Remove a temporary whose job is done; one that cannot be removed (EIO) does not
    undo a move whose final names hold the bytes, nor hide the error a failed one has:
    it is named in a warning, for the user to remove."""
    try:
        _remove_quietly(tmp)
    except OSError as e:
        log.warning("warning: could not remove the temporary file %s (%s)", tmp, e.strerror)


def _claim_first_free(
    stand_ins: list[Path],
    folder: Path,
    candidates: Iterable[list[str]],
    note: Note,
    temporaries: bool = False,
) -> list[Path]:
    """Link every stand-in to its name, for the first candidate list whose names are all
    free; a clash gives back the names this try took and moves on to the next list.

    A folder without hard links (exFAT, FAT: link() is refused) takes each name with an
    empty file made with O_CREAT|O_EXCL instead, all of the group's names first, then
    renames each of our `temporaries` over its own empty file. Such a folder may ignore
    case: 'img.jpg' then clashes with 'IMG.JPG' and gets a new number like any clash.
    """
    names_left = iter(candidates)
    names = next(names_left, None)
    without_links = False
    while names is not None:
        claimed: list[Path] = []
        try:
            for stand_in, name in zip(stand_ins, names):
                target = folder / name
                if without_links:
                    note(StepKind.CREATE, path=target, at=time.time_ns())
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    claimed.append(target)
                    note(StepKind.CREATED, path=target)
                    continue
                note(StepKind.CLAIM, path=target)
                _link(stand_in, target)
                claimed.append(target)  # before the note: if noting fails, it is still undone
                note(StepKind.CLAIMED, path=target, **identity(target))
            if without_links:
                for stand_in, target in zip(stand_ins, claimed):
                    _rename(stand_in, target)  # over the empty file this move made
                    note(StepKind.CLAIMED, path=target, **identity(target))
            return claimed
        except FileExistsError:
            for target in claimed:  # our own links or empty files
                _unlink(target)
            taken = [n.casefold() for n in names[: len(claimed)]]
            if names[len(claimed)].casefold() in taken:
                raise OSError(
                    errno.EEXIST, f"{folder} ignores case, and the group's names differ only by it"
                ) from None
            names = next(names_left, None)
        except OSError as e:
            for target in claimed:
                _remove_quietly(target)
            if temporaries and not without_links and not claimed and e.errno in NO_LINKS:
                without_links = True  # the same names again, taken the other way
                continue
            raise
        except BaseException:
            for target in claimed:
                _remove_quietly(target)
            raise
    raise FileExistsError(errno.EEXIST, "no free name", str(folder))


def transfer(
    sources: list[Path],
    folder: Path,
    *,
    keep_source: bool = False,
    exact_names: list[str] | None = None,
    note: Note = _no_note,
    metadata: list[dict] | None = None,
    undoing: bool = False,
    present: set[str] | None = None,
    follow: bool = False,
) -> list[Path]:
    """Move (or copy, with keep_source) a group of files into folder: all or none.

    sources[0] names the group: on a clash every member gets the same numbered stem
    ("IMG_0001 (1).jpg" with "IMG_0001 (1).xmp"); with exact_names a clash is an error.
    Same filesystem: hard links to the final names, then the sources are unlinked.
    Otherwise (or for a copy): fsynced temporary copies, linked to the final names (or,
    without hard links, renamed over empty files that took them). A source is removed
    only while it equals its final file. On any error the sources are intact and nothing
    is left in folder (except a copy whose source vanished meanwhile). Returns the final
    paths, in the order of sources. `metadata` (safefs.metadata per source) is given to
    a copy before it takes its name, so it is never seen with the copy's own (undo from
    an exFAT stick: a private photo must not appear 0777 even for a moment). `undoing`:
    the files go back to the folder they were in, which exposes nothing new, so its
    folders are not checked (a photo sorted from an open card into a closed home goes back).
    `present`: folder's names in hand (names_in_any_case, kept by the caller over many
    moves), else it is listed now; the names taken are added to it. Only a hint for
    choosing names: a name is still claimed only by link or O_EXCL.
    A source that is a link is refused unless `follow` (--follow-symlinks), and each
    source must stay the file (device, inode) it was when the move started: one swapped
    meanwhile, or reached through a folder swapped for a link, is neither copied nor
    removed.
    """
    sources = [Path(s) for s in sources]
    folder = Path(folder)
    born = [_file_at(s, follow) for s in sources]
    stem, _ = split_name(sources[0].name)
    if not undoing:
        check_folders_keep_private(sources, folder)

    def candidates() -> Iterator[list[str]]:
        if exact_names is not None:
            yield exact_names
            return
        there = names_in_any_case(folder) if present is None else present
        yield from free_names([s.name for s in sources], there)

    temps: list[Path] = []  # each one as soon as it exists: a failure removes them all
    try:
        stand_ins = sources
        if keep_source:
            for s, b in zip(sources, born):
                temps.append(copy_verified(s, folder, note, follow=follow, expect=b))
            stand_ins = list(temps)
        try:
            finals = _claim_first_free(stand_ins, folder, candidates(), note, keep_source)
        except OSError as e:
            if keep_source or e.errno not in CROSS_DEVICE:
                raise
            for s, b in zip(sources, born):
                temps.append(copy_verified(s, folder, note, False, follow=follow, expect=b))
            for temp, meta in zip(temps, metadata or []):
                set_metadata(temp, meta)
            finals = _claim_first_free(temps, folder, candidates(), note, True)
    finally:
        for tmp in temps:  # each final name holds its bytes now (or the move failed)
            _remove_temporary(tmp)
    if present is not None:
        present.update(f.name.casefold() for f in finals)
    try:
        fsync_dir(folder)
    except OSError:  # the names may not last (EIO): give them up, the sources stay
        for final in finals:
            _remove_quietly(final)
        raise
    if keep_source:
        return finals
    # rsync's rule: a source is removed only while it still equals its copy (a sync client
    # or a camera import may still be writing it, or it was replaced since it was copied)
    checked = []  # each source's stat from before its compare: a write since shows in it
    for source, final in zip(sources, finals):
        if not os.path.lexists(source):  # deleted meanwhile: the copy is all there is now
            raise OSError(errno.ENOENT, f"{source.name} vanished while being moved", str(final))
        checked.append(_version(source, final))
        if _file_at(source, follow) != born[len(checked) - 1] or not same_file(source, final):
            for f in finals:
                _remove_quietly(f)
            raise Changed(errno.EAGAIN, f"{source.name} {CHANGED}; left in place")
    removed: list[int] = []
    for i, source in enumerate(sources):
        note(StepKind.UNLINK, path=source)  # a journal commit: writes may land meanwhile
        try:
            if _version(source, finals[i]) != checked[i]:
                raise Changed(errno.EAGAIN, CHANGED)
            _unlink(source)
        except OSError as e:  # (an immutable sidecar, a writer): the group goes back whole
            note(StepKind.ROLLBACK, path=source)
            try:
                for j in removed:
                    put_back(finals[j], sources[j], note)
            except OSError as e2:
                raise GroupSplit(
                    e2.errno,
                    f"{source.name} cannot be removed ({e.strerror}) and {sources[j].name} "
                    f"cannot be put back ({e2.strerror}): the group is split, see {folder}",
                ) from None
            for final in finals:
                _remove_quietly(final)
            if isinstance(e, Changed):
                raise Changed(e.errno, f"{source.name} {CHANGED}; left in place") from None
            raise OSError(
                e.errno, f"{source.name} cannot be removed ({e.strerror}); the group stays"
            ) from None
        removed.append(i)
    for parent in {s.parent for s in sources}:
        try:
            fsync_dir(parent)
        except OSError as e:  # the move is done: its copies are fsynced in their folder
            log.warning(
                "warning: %s could not be synced after the move (%s): a power cut now may "
                "bring a moved source back",
                parent,
                e.strerror,
            )
    return finals


def _file_at(path: Path, follow: bool) -> tuple[int, int]:
    """(device, inode) of the file at path; a link is refused unless `follow`."""
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, f"{path.name} is now a symbolic link; left in place")
    return st.st_dev, st.st_ino


def put_back(kept: Path, source: Path, note: Note = _no_note, *, link: bool = True) -> None:
    """Give a removed source its name back from `kept`, its copy (a hard link where
    `link` and the filesystem allow, else a verified copy); never overwriting."""
    note(StepKind.RESTORE, path=source)
    if link:
        try:
            _link(kept, source)
            return
        except OSError as e:
            if e.errno not in CROSS_DEVICE:
                raise
    # not `private`: the source was there before, as that disk shows it
    tmp = copy_verified(kept, source.parent, note, private=False)
    try:
        _claim_first_free([tmp], source.parent, [[source.name]], note, temporaries=True)
    finally:
        _remove_quietly(tmp)
    fsync_dir(source.parent)


def remove_duplicates(sources: list[Path], twins: list[Path], note: Note = _no_note) -> None:
    """Remove each source, whose byte-identical twin stays: all or none (a source that
    cannot be removed gets back those removed before it, copied from their twins)."""
    checked = []  # as in transfer: a write after the compare shows in the stat
    for source, twin in zip(sources, twins):
        checked.append(before := _version(source, twin))
        if before is None or not same_bytes(source, twin):
            raise Changed(errno.EAGAIN, f"{source.name} is no longer a copy of {twin}")
    removed: list[tuple[Path, Path, dict]] = []
    for i, (source, twin) in enumerate(zip(sources, twins)):
        own = metadata(source)  # the twin has its own: undo gives the source back its
        note(StepKind.UNLINK, path=source, kept=own)  # a journal commit: writes may land meanwhile
        try:
            if _version(source, twin) != checked[i]:
                raise Changed(errno.EAGAIN, CHANGED)
            _unlink(source)
        except OSError as e:
            note(StepKind.ROLLBACK, path=source)
            for gone, kept, meta in removed:
                put_back(kept, gone, note, link=False)
                set_metadata(gone, meta)
            if isinstance(e, Changed):
                raise Changed(e.errno, f"{source.name} is no longer a copy of {twin}") from None
            raise OSError(e.errno, f"{source.name} cannot be removed: {e.strerror}") from None
        removed.append((source, twin, own))
    for parent in {s.parent for s in sources}:
        fsync_dir(parent)


def move_file(src: Path, folder: Path) -> Path:
    """Move one file into folder without ever overwriting; returns the final path."""
    return transfer([src], folder)[0]


def copy_file(src: Path, folder: Path) -> Path:
    """Copy one file into folder without ever overwriting; the copy is verified first."""
    return transfer([src], folder, keep_source=True)[0]
