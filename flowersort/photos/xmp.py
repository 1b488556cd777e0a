"""Keywords in XMP sidecars: find a photo's sidecar, read its keywords; what a tag did.

An existing sidecar is edited by splicing bytes at the offsets the parser reports, never
re-serialised: every byte outside the keyword we add or remove stays as it was (other
keywords, ratings, labels, history, namespaces we do not know, comments, the xpacket
padding). A sidecar that cannot be parsed is left untouched (SidecarUnreadable). Writes
are atomic: a temporary file in the same folder (O_EXCL, O_NOFOLLOW), fsynced, given the
old sidecar's owner and mode, renamed over it, then the folder is fsynced. The photo
itself is only ever looked at (lstat), never opened for writing. Rule and reasons:
docs/xmp-rule.md. Adding or removing a keyword by a byte splice: `xmp_splice`; writing
a sidecar atomically, `tag` and `untag`: `xmp_write`.
"""

from __future__ import annotations

import errno
import os
import stat
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from flowersort.base.errors import ExitCode, FlowersortError

MAX_SIDECAR = 16 * 1024 * 1024  # darktable's with a long history is some 100 KB

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

DC = "http://purl.org/dc/elements/1.1/"

LR = "http://ns.adobe.com/lightroom/1.0/"

DIGIKAM = "http://www.digikam.org/ns/1.0/"


@dataclass(frozen=True)
class Field:
    """An XMP keyword list: where it lives, its usual prefix and array type, and how a
    hierarchical keyword ("flowersort|Flowers") is spelt in it."""

    name: str  # as the journal and --json name it
    ns: str
    local: str
    prefix: str
    array: str  # Bag or Seq
    spell: Callable[[list[str]], str]


SUBJECT = Field("dc:subject", DC, "subject", "dc", "Bag", lambda path: path[-1])

HIERARCHICAL = Field("lr:hierarchicalSubject", LR, "hierarchicalSubject", "lr", "Bag", "|".join)

TAGS_LIST = Field("digiKam:TagsList", DIGIKAM, "TagsList", "digiKam", "Seq", "/".join)

FIELDS = (SUBJECT, HIERARCHICAL, TAGS_LIST)

ALWAYS = (SUBJECT, HIERARCHICAL)  # TagsList only where the sidecar has one already


class Action(Enum):
    TAGGED = "tagged"
    WOULD_TAG = "would-tag"
    ALREADY_TAGGED = "already-tagged"
    UNTAGGED = "untagged"
    WOULD_UNTAG = "would-untag"
    NOT_TAGGED = "not-tagged"  # nothing to remove


@dataclass(frozen=True)
class Result:
    """What tag() or untag() did. `fields`: the keyword lists changed (what undo takes
    the keyword out of again); `created`: the sidecar did not exist before; `removed`: an
    untag deleted a sidecar that held nothing but what tag() had created; `digest`: sha256
    of the bytes now in the sidecar (None when none was written)."""

    action: Action
    sidecar: Path
    fields: tuple[str, ...] = ()
    created: bool = False
    removed: bool = False
    digest: str | None = None


class SidecarError(FlowersortError):
    """A sidecar left untouched: the photo is reported, as for a failed move."""

    exit_code = ExitCode.FAILED

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path.name}: {reason}; left untouched")
        self.path = path
        self.reason = reason


class SidecarUnreadable(SidecarError):
    """Not well-formed XML, not UTF-8, no rdf:RDF, a DTD, or a keyword list of a shape
    we do not edit (a plain text dc:subject)."""


class SidecarRefused(SidecarError):
    """A symbolic link, not a regular file, a file with other hard links, or too large:
    run as root over folders others can write, writing there could reach another file."""


class SidecarChanged(SidecarError):
    """Another program changed the sidecar while we worked on it."""


class SidecarWriteFailed(SidecarError):
    """The write itself failed (a full disk, an I/O error): the sidecar is as before, or,
    when only the folder's fsync failed, complete with the change."""

    def __init__(self, path: Path, reason: str, errno_: int | None = None):
        super().__init__(path, reason)
        self.errno = errno_


def sidecar_names(photo: Path) -> tuple[str, str]:
    """The two names a sidecar of `photo` goes by: NAME.ext.xmp (darktable, digiKam,
    Immich's first choice) and NAME.xmp (Lightroom, Bridge, Capture One)."""
    return photo.name + ".xmp", os.path.splitext(photo.name)[0] + ".xmp"


def find_sidecar(photo: Path, listed: list[str] | None = None) -> Path:
    """The sidecar to read and write for photo (it may not exist yet): NAME.ext.xmp if it
    exists, else NAME.xmp if it exists and no other photo has that stem (IMG_0001.jpg
    beside IMG_0001.png: whose would it be?), else a new NAME.ext.xmp. Names match in
    any case, as the folder lists them. See docs/xmp-rule.md."""
    from flowersort.photos.archive import is_photo_name  # archive loads cv2 only where it decodes

    if listed is None:
        listed = os.listdir(photo.parent)
    by_lower: dict[str, str] = {}
    for name in listed:
        by_lower.setdefault(name.lower(), name)
    full, short = sidecar_names(photo)
    if full.lower() in by_lower:
        return photo.parent / by_lower[full.lower()]
    stem = os.path.splitext(photo.name)[0].lower()
    others = [
        n
        for n in listed
        if n != photo.name and is_photo_name(n) and os.path.splitext(n)[0].lower() == stem
    ]
    if short.lower() in by_lower and not others and short.lower() != photo.name.lower():
        return photo.parent / by_lower[short.lower()]
    return photo.parent / full


@dataclass
class Element:
    ns: str
    local: str
    start: int  # offset of its "<"
    head_end: int  # just after its start tag's ">"
    empty: bool  # <x/>
    scope: dict[str, str]  # prefix ("" for the default) -> namespace, in force here
    end_start: int = -1  # offset of its end tag's "<" (empty: head_end)
    end: int = -1  # just after its end tag
    children: list[Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    attrs: frozenset[str] = frozenset()  # its attributes' names, "namespace local"


def _tag_end(data: bytes, start: int) -> int:
    """Just after the ">" closing the tag that opens at start (quotes may hold ">")."""
    quote = None
    for i in range(start + 1, len(data)):
        c = data[i]
        if quote is not None:
            if c == quote:
                quote = None
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
    raise ValueError("unterminated tag")


def parse_tree(data: bytes, path: Path) -> Element:
    """The document's root element with byte offsets for every element."""
    if len(data) > MAX_SIDECAR:
        raise SidecarRefused(path, f"larger than {MAX_SIDECAR // 2**20} MB")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SidecarUnreadable(path, "not UTF-8 (XMP sidecars are)") from None
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    stack: list[Element] = []
    scopes: list[dict[str, str]] = [{"xml": "http://www.w3.org/XML/1998/namespace"}]
    pending: dict[str, str] = {}
    root: list[Element] = []

    def start_ns(prefix: str | None, uri: str | None) -> None:
        pending[prefix or ""] = uri or ""

    def start(name: str, attrs: dict) -> None:
        ns, _, local = name.rpartition(" ")
        scope = {**scopes[-1], **pending}
        pending.clear()
        scopes.append(scope)
        at = parser.CurrentByteIndex
        head_end = _tag_end(data, at)
        empty = data[head_end - 2 : head_end] == b"/>"
        el = Element(ns, local, at, head_end, empty, scope, attrs=frozenset(attrs))
        (stack[-1].children if stack else root).append(el)
        stack.append(el)

    def end(name: str) -> None:
        el = stack.pop()
        scopes.pop()
        if el.empty:
            el.end_start = el.end = el.head_end
        else:
            el.end_start = parser.CurrentByteIndex
            el.end = _tag_end(data, el.end_start)

    def text(t: str) -> None:
        if stack:
            stack[-1].text.append(t)

    def no_dtd(*args) -> None:
        raise ValueError("a DTD (XMP has none)")

    parser.StartNamespaceDeclHandler = start_ns
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = no_dtd
    parser.EntityDeclHandler = no_dtd
    try:
        parser.Parse(data, True)
    except (xml.parsers.expat.ExpatError, ValueError) as e:
        raise SidecarUnreadable(path, f"not well-formed XMP ({e})") from None
    return root[0]


def descriptions_in(root: Element) -> list[Element]:
    """The rdf:Description elements directly under rdf:RDF (x:xmpmeta may wrap it)."""
    rdfs = [root] if (root.ns, root.local) == (RDF, "RDF") else []
    if not rdfs:
        rdfs = [c for c in root.children if (c.ns, c.local) == (RDF, "RDF")]
    return [d for r in rdfs for d in r.children if (d.ns, d.local) == (RDF, "Description")]


def list_items(prop: Element, path: Path, f: Field) -> list[Element]:
    """The rdf:li of a keyword list's array."""
    arrays = [c for c in prop.children if c.ns == RDF and c.local in ("Bag", "Seq", "Alt")]
    if len(arrays) != 1 or len(prop.children) != 1:
        raise SidecarUnreadable(path, f"its {f.name} is not a list")
    return [c for c in arrays[0].children if (c.ns, c.local) == (RDF, "li")]


def item_text(li: Element) -> str:
    return "".join(li.text).strip()


@dataclass(frozen=True)
class Keywords:
    """A sidecar's keywords, per list, in the order they are written."""

    subject: tuple[str, ...] = ()
    hierarchical: tuple[str, ...] = ()
    tags_list: tuple[str, ...] = ()

    def of(self, f: Field) -> tuple[str, ...]:
        return {SUBJECT: self.subject, HIERARCHICAL: self.hierarchical}.get(f, self.tags_list)

    def has_in(self, keyword: str, names: tuple[str, ...]) -> bool:
        """keyword is in each of the lists named ("dc:subject", ...)."""
        path = split_keyword(keyword)
        return all(f.spell(path) in self.of(f) for f in FIELDS if f.name in names)

    def has(self, keyword: str) -> bool:
        """keyword ("Flowers" or "flowersort|Flowers") is in any of the lists."""
        path = split_keyword(keyword)
        return any(f.spell(path) in self.of(f) for f in FIELDS)


def keyword_props(root: Element, path: Path) -> dict[Field, list[Element]]:
    found: dict[Field, list[Element]] = {f: [] for f in FIELDS}
    for d in descriptions_in(root):
        for f in FIELDS:  # dc:subject="Trip": a list as text, which a reader may drop
            if f"{f.ns} {f.local}" in d.attrs:
                raise SidecarUnreadable(path, f"its {f.name} is not a list")
        for c in d.children:
            for f in FIELDS:
                if (c.ns, c.local) == (f.ns, f.local):
                    found[f].append(c)
    return found


def parse_keywords(data: bytes, path: Path) -> Keywords:
    """The keywords of a sidecar's bytes (path: for messages)."""
    root = parse_tree(data, path)
    if (root.ns, root.local) != (RDF, "RDF") and not any(
        (c.ns, c.local) == (RDF, "RDF") for c in root.children
    ):
        raise SidecarUnreadable(path, "no rdf:RDF in it")
    props = keyword_props(root, path)
    lists = [
        tuple(item_text(li) for p in props[f] for li in list_items(p, path, f)) for f in FIELDS
    ]
    return Keywords(*lists)


def read_keywords(sidecar: Path) -> Keywords:
    """The keywords in a sidecar (none if it does not exist). A link or special file is
    refused, an unparsable one raises SidecarUnreadable."""
    try:
        data, _ = read_sidecar(sidecar)
    except FileNotFoundError:
        return Keywords()
    return parse_keywords(data, sidecar)


def split_keyword(keyword: str) -> list[str]:
    """ "flowersort|Flowers" -> ["flowersort", "Flowers"] (Lightroom's separator)."""
    path = [part.strip() for part in keyword.split("|")]
    if not all(path) or any(c in keyword for c in "\r\n\t/") or not _xml_text(keyword):
        raise ValueError(f"not a keyword: {keyword!r}")
    return path


def _xml_text(text: str) -> bool:
    """Every character is one XML can hold (not a control character; not a lone surrogate,
    which is how a byte of a non-UTF-8 argument arrives)."""
    return all(c >= " " and not "\ud800" <= c <= "\udfff" and c not in "\ufffe\uffff" for c in text)


def read_sidecar(sidecar: Path) -> tuple[bytes, os.stat_result]:
    """The bytes and stat of an existing sidecar, opened without following a link."""
    try:
        fd = os.open(sidecar, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SidecarRefused(sidecar, "a symbolic link") from None
        if e.errno == errno.ENOENT:
            raise
        raise SidecarError(sidecar, e.strerror or "cannot be read") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SidecarRefused(sidecar, "not a regular file")
        if st.st_nlink > 1:
            raise SidecarRefused(sidecar, f"it has {st.st_nlink - 1} other hard link(s)")
        if st.st_size > MAX_SIDECAR:
            raise SidecarRefused(sidecar, f"larger than {MAX_SIDECAR // 2**20} MB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def read_bytes(sidecar: Path) -> bytes | None:
    """A sidecar's bytes (None if there is none), read as tag() reads it: a link or a
    special file is refused."""
    try:
        data, _ = read_sidecar(sidecar)
    except FileNotFoundError:
        return None
    return data
