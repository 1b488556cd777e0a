"""Walking a photo archive: streaming, sorted, and careful about what it enters."""

from __future__ import annotations

import fnmatch
import operator
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flowersort.base.errors import FlowersortError, TrainingError

PHOTO_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .bmp .dib .tif .tiff .webp .gif .jp2 .pbm .pgm .ppm".split()
    + ".heic .heif .avif".split()
)
RAW_SUFFIXES = (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf")
LIVE_PHOTO_STILLS = (".heic", ".heif", ".jpg", ".jpeg")  # a .MOV of the same stem is its motion
VIDEO_SUFFIXES = (".mov", ".mp4", ".m4v", ".3gp", ".avi", ".mts", ".m2ts", ".mkv", ".mpg")
SIDECAR_SUFFIXES = (".xmp", ".aae", ".json")
# thumbnail caches that NAS boxes and desktops leave inside archives
CACHE_NAMES = frozenset({"@eaDir", ".@__thumb", ".thumbnails", "Thumbs.db", "@Recycle"})

PASSED_OVER_SUFFIXES = frozenset(RAW_SUFFIXES + VIDEO_SUFFIXES)

OnSkip = Callable[[str, str], None]
OnPass = Callable[[str], None]


Listed = tuple[os.DirEntry, str]  # an entry of a folder the walk lists, with its suffix_of
BY_NAME = operator.attrgetter("name")


def _ignore(path: str, reason: str) -> None:
    pass


@dataclass
class Skips:
    """Files that were passed over, with why: kept, and handed on to on_skip as they come."""

    on_skip: OnSkip | None = None
    found: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, path: str, reason: str) -> None:
        self.found.append((path, reason))
        if self.on_skip:
            self.on_skip(path, reason)


@dataclass(frozen=True)
class Labelled:
    """A photo of a labelled pair of folders (train's examples, evaluate's test set)."""

    path: str
    flower: bool
    root: Path  # the folder of its class


def check_distinct(flowers: Path, noflowers: Path) -> None:
    """Raise TrainingError when the two labelled folders are the same folder or one is
    inside the other: its photos would be photos of both classes."""
    real = [os.path.realpath(flowers), os.path.realpath(noflowers)]
    if real[0] == real[1]:
        raise TrainingError(
            f"FLOWERS and NOFLOWERS are the same folder ({flowers}): give a folder of flower "
            f"photos and another of other photos"
        )
    for (a, name_a, path_a), (b, name_b, path_b) in (
        ((real[1], "NOFLOWERS", noflowers), (real[0], "FLOWERS", flowers)),
        ((real[0], "FLOWERS", flowers), (real[1], "NOFLOWERS", noflowers)),
    ):
        if os.path.commonpath([a, b]) == b:
            raise TrainingError(
                f"{name_a} ({path_a}) is inside {name_b} ({path_b}): its photos would be "
                f"examples of both classes"
            )


def labelled_photos(flowers: Path, noflowers: Path, on_skip: OnSkip) -> Iterator[Labelled]:
    """The photos under FLOWERS, then under NOFLOWERS, each with its label (two folders
    neither of which holds the other)."""
    for root in (flowers, noflowers):
        if not Path(root).is_dir():
            raise FlowersortError(f"not a folder: {root}")
    check_distinct(flowers, noflowers)
    for root, flower in ((Path(flowers), True), (Path(noflowers), False)):
        for path in walk(root, on_skip=on_skip):
            yield Labelled(path, flower, root)


def suffix_of(name: str) -> str:
    """os.path.splitext(name)[1].lower(), at a third of its cost (the walk asks it of
    every name): leading dots start no suffix ('.jpg' has none)."""
    i = name.rfind(".")
    if i <= 0 or (name[0] == "." and not name[:i].strip(".")):
        return ""
    return name[i:].lower()


def is_photo_name(name: str) -> bool:
    return suffix_of(name) in PHOTO_SUFFIXES


def companion_names(photo_name: str) -> set[str]:
    """The names, lower-cased, of the files that belong to a photo of this name: the same
    stem with a sidecar or RAW suffix, Google Takeout's NAME.jpg.json and NAME.jpg.xmp, and
    for a HEIC or JPEG still the .MOV that makes it a Live Photo. Names match in any case:
    a renamer may have lower-cased the still but not its .MOV."""
    stem, photo_suffix = os.path.splitext(photo_name)
    suffixes: tuple[str, ...] = SIDECAR_SUFFIXES + RAW_SUFFIXES
    if photo_suffix.lower() in LIVE_PHOTO_STILLS:
        suffixes += (".mov",)
    names = {(stem + s).lower() for s in suffixes}
    return names | {(photo_name + s).lower() for s in (".json", ".xmp")}


def _passed_over(listed: list[Listed], follow_symlinks: bool) -> list[str]:
    """Videos and RAW files (regular files) among the listed entries that are no companion
    of one of the photos walk yields there (a RAW's twin, a Live Photo's still; a linked
    photo followed is moved with its companions too): nothing classifies them, nothing moves
    them."""
    found = [e for e, suffix in listed if suffix in PASSED_OVER_SUFFIXES and _is_file(e)]
    if not found:  # most folders: no companions worth working out
        return []
    photos = [
        e for e, suffix in listed if suffix in PHOTO_SUFFIXES and _is_file(e, follow_symlinks)
    ]
    companions = set().union(*(companion_names(e.name) for e in photos))
    return [e.path for e in found if e.name.lower() not in companions]


def _is_file(entry: os.DirEntry, follow_symlinks: bool = False) -> bool:
    try:
        return entry.is_file(follow_symlinks=follow_symlinks)
    except OSError:
        return False


def size_of(path: str | os.PathLike) -> int | None:
    """A file's size, or None where there is none (gone, unreadable)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def display(path: os.PathLike | str) -> str:
    """A path as one printable line, whatever bytes its name holds."""
    text = os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def exclude_matcher(root: str | Path, patterns: Iterable[str]) -> Callable[[str, str], bool]:
    """(name, path) -> excluded? A glob matches the bare name or the path relative to root
    ('2020/*', '2020/01', '*/Screenshots'; '*' also matches '/'), whatever root's spelling
    ('Pictures', './Pictures/', an absolute path); a glob starting with '/' matches the
    absolute path. Excluding a folder excludes everything in it."""
    relative: list[str] = []
    absolute: list[str] = []
    for pattern in patterns:
        pattern = os.path.normpath(pattern) if pattern not in ("", ".") else pattern
        (absolute if os.path.isabs(pattern) else relative).append(pattern)
    if not relative and not absolute:
        return lambda name, path: False
    prefix = os.path.join(os.fspath(root), "")
    abs_prefix = os.path.join(os.path.abspath(root), "")

    def excluded(name: str, path: str) -> bool:
        rel = path[len(prefix) :] if path.startswith(prefix) else name
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in relative):
            return True
        return any(fnmatch.fnmatch(abs_prefix + rel, p) for p in absolute)

    return excluded


def walk(
    root: str | Path,
    *,
    prune: Iterable[Path] = (),
    include_hidden: bool = False,
    follow_symlinks: bool = False,
    exclude: Iterable[str] = (),
    on_skip: OnSkip = _ignore,
    on_pass: OnPass | None = None,
) -> Iterator[str]:
    """Yield the paths (str, for speed) of photo files under root, depth first in name order,
    one folder in memory at a time.

    Never enters a folder in `prune` (such as the target folder inside the archive).
    Symbolic links are skipped unless `follow_symlinks`; then each real folder is entered
    once, so a link loop ends. Hidden names and thumbnail caches are skipped unless
    `include_hidden`; `exclude` holds glob patterns (see `exclude_matcher`).
    Videos and RAW files without a photo of the same name go to `on_pass`, if given.
    """
    exclude = tuple(exclude)
    walker = _Walker(
        pruned={os.path.realpath(p) for p in prune},
        is_excluded=exclude_matcher(root, exclude) if exclude else None,
        include_hidden=include_hidden,
        follow_symlinks=follow_symlinks,
        on_skip=on_skip,
        on_pass=on_pass,
    )
    root = os.fspath(root)
    if stat.S_ISDIR(os.stat(root).st_mode):
        yield from walker.visit(root)
    else:
        yield root


@dataclass
class _Walker:
    """One walk's choices (see walk) and the real folders it has entered."""

    pruned: set[str]
    is_excluded: Callable[[str, str], bool] | None  # None: no --exclude
    include_hidden: bool
    follow_symlinks: bool
    on_skip: OnSkip
    on_pass: OnPass | None
    seen: set[tuple[int, int]] = field(default_factory=set)

    def listing(self, folder: str) -> list[Listed]:
        """The folder's entries to look at, in name order, each with its suffix cut once
        (none for a folder seen already or that cannot be read)."""
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in self.seen:
                self.on_skip(folder, "folder already visited (symbolic link loop)")
                return []
            self.seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=BY_NAME)
        except OSError as e:
            self.on_skip(folder, f"cannot read folder: {e.strerror}")
            return []
        if not self.include_hidden:  # hidden names and thumbnail caches
            entries = [e for e in entries if e.name[0] != "." and e.name not in CACHE_NAMES]
        if (excluded := self.is_excluded) is not None:  # each name matched once
            entries = [e for e in entries if not excluded(e.name, e.path)]
        listed = [(e, suffix_of(e.name)) for e in entries]
        if self.on_pass is not None:
            for path in _passed_over(listed, self.follow_symlinks):
                self.on_pass(path)
        return listed

    def is_dir(self, entry: os.DirEntry) -> bool | None:
        """Whether entry is a folder (True) or a file (False); None for one skipped: a
        link not followed, a broken link, an entry that cannot be looked at."""
        path = entry.path
        try:
            if entry.is_symlink():
                if not self.follow_symlinks:
                    if is_photo_name(entry.name) or entry.is_dir():
                        self.on_skip(path, "symbolic link (use --follow-symlinks to follow)")
                    return None
                if not os.path.exists(path):
                    self.on_skip(path, "broken symbolic link")
                    return None
            return entry.is_dir(follow_symlinks=self.follow_symlinks)
        except OSError as e:
            self.on_skip(path, e.strerror or str(e))
            return None

    def visit(self, folder: str) -> Iterator[str]:
        # a stack of the folders being listed, not a generator per folder: a photo deep in
        # the tree is yielded once, not passed up through every folder above it
        stack = [iter(self.listing(folder))]
        while stack:
            for entry, suffix in stack[-1]:
                photo = suffix in PHOTO_SUFFIXES
                try:  # most entries: a photo that is a regular file, no link (no stat)
                    if photo and entry.is_file(follow_symlinks=False):
                        yield entry.path
                        continue
                except OSError:
                    pass  # is_dir says why
                is_dir = self.is_dir(entry)
                if is_dir is None:
                    continue
                if is_dir:
                    if os.path.realpath(entry.path) not in self.pruned:
                        stack.append(iter(self.listing(entry.path)))  # into it, then on
                        break
                elif photo:
                    yield entry.path
            else:  # this folder is done
                stack.pop()
