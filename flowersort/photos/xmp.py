"""Keywords in XMP sidecars: find a photo's sidecar, read its keywords, add or remove one.

An existing sidecar is edited by splicing bytes at the offsets the parser reports, never
re-serialised: every byte outside the keyword we add or remove stays as it was (other
keywords, ratings, labels, history, namespaces we do not know, comments, the xpacket
padding). A sidecar that cannot be parsed is left untouched (SidecarUnreadable). Writes
are atomic: a temporary file in the same folder (O_EXCL, O_NOFOLLOW), fsynced, given the
old sidecar's owner and mode, renamed over it, then the folder is fsynced. The photo
itself is only ever looked at (lstat), never opened for writing. Rule and reasons:
docs/xmp-rule.md.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from flowersort.base.errors import ExitCode, FlowersortError
from flowersort.safefs.attrs import give_owner

TMP_PREFIX = ".flowersort-tmp-"  # as safefs: a journal's recovery knows these names
NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.ENOSYS)  # link() refused: exFAT, FAT
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


Note = Callable[..., None]


def _no_note(step: str, **details) -> None:
    pass


# ---------------------------------------------------------------------------- the rule


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


# ------------------------------------------------------------------------- the parse


@dataclass
class _Element:
    ns: str
    local: str
    start: int  # offset of its "<"
    head_end: int  # just after its start tag's ">"
    empty: bool  # <x/>
    scope: dict[str, str]  # prefix ("" for the default) -> namespace, in force here
    end_start: int = -1  # offset of its end tag's "<" (empty: head_end)
    end: int = -1  # just after its end tag
    children: list[_Element] = field(default_factory=list)
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


def _parse(data: bytes, path: Path) -> _Element:
    """The document's root element with byte offsets for every element."""
    if len(data) > MAX_SIDECAR:
        raise SidecarRefused(path, f"larger than {MAX_SIDECAR // 2**20} MB")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SidecarUnreadable(path, "not UTF-8 (XMP sidecars are)") from None
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    stack: list[_Element] = []
    scopes: list[dict[str, str]] = [{"xml": "http://www.w3.org/XML/1998/namespace"}]
    pending: dict[str, str] = {}
    root: list[_Element] = []

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
        el = _Element(ns, local, at, head_end, empty, scope, attrs=frozenset(attrs))
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


def _descriptions(root: _Element) -> list[_Element]:
    """The rdf:Description elements directly under rdf:RDF (x:xmpmeta may wrap it)."""
    rdfs = [root] if (root.ns, root.local) == (RDF, "RDF") else []
    if not rdfs:
        rdfs = [c for c in root.children if (c.ns, c.local) == (RDF, "RDF")]
    return [d for r in rdfs for d in r.children if (d.ns, d.local) == (RDF, "Description")]


def _items(prop: _Element, path: Path, f: Field) -> list[_Element]:
    """The rdf:li of a keyword list's array."""
    arrays = [c for c in prop.children if c.ns == RDF and c.local in ("Bag", "Seq", "Alt")]
    if len(arrays) != 1 or len(prop.children) != 1:
        raise SidecarUnreadable(path, f"its {f.name} is not a list")
    return [c for c in arrays[0].children if (c.ns, c.local) == (RDF, "li")]


def _li_text(li: _Element) -> str:
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


def _props(root: _Element, path: Path) -> dict[Field, list[_Element]]:
    found: dict[Field, list[_Element]] = {f: [] for f in FIELDS}
    for d in _descriptions(root):
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
    root = _parse(data, path)
    if (root.ns, root.local) != (RDF, "RDF") and not any(
        (c.ns, c.local) == (RDF, "RDF") for c in root.children
    ):
        raise SidecarUnreadable(path, "no rdf:RDF in it")
    props = _props(root, path)
    lists = [tuple(_li_text(li) for p in props[f] for li in _items(p, path, f)) for f in FIELDS]
    return Keywords(*lists)


def read_keywords(sidecar: Path) -> Keywords:
    """The keywords in a sidecar (none if it does not exist). A link or special file is
    refused, an unparsable one raises SidecarUnreadable."""
    try:
        data, _ = _read(sidecar)
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


# ------------------------------------------------------------------------- the splice


def _prefix(scope: dict[str, str], ns: str) -> str | None:
    """A prefix bound to ns in scope ("" for the default namespace), or None."""
    for prefix, uri in scope.items():
        if uri == ns:
            return prefix
    return None


def _qname(prefix: str, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


def _indent_before(data: bytes, el: _Element, parent_head_end: int) -> bytes:
    """The whitespace that opens el's line (between the previous tag and el)."""
    i = el.start
    while i > parent_head_end and data[i - 1 : i] in (b" ", b"\t", b"\n", b"\r"):
        i -= 1
    return data[i : el.start]


def _child_indent(data: bytes, parent: _Element) -> tuple[bytes, bytes]:
    """(indent for a new child, indent of the parent's end tag), copied from the file."""
    if parent.children:
        child = _indent_before(data, parent.children[-1], parent.head_end)
        prev = parent.children[-1].end
    else:
        child = b""
        prev = parent.head_end
    closing = data[prev : parent.end_start] if not parent.empty else b""
    closing = closing if closing.strip() == b"" else b""
    if not child:
        child = (closing or b"\n") + b" "
    return child, closing


@dataclass(frozen=True)
class _Edit:
    at: int
    drop: int  # bytes replaced from `at`
    insert: bytes


def _apply(data: bytes, edits: list[_Edit]) -> bytes:
    out = data  # from the end, so offsets hold; at one offset, the first edit ends first
    for _, e in sorted(enumerate(edits), key=lambda ie: (ie[1].at, ie[0]), reverse=True):
        out = out[: e.at] + e.insert + out[e.at + e.drop :]
    return out


def _escape(text: str) -> str:
    """XML's escapes of &, < and >: saxutils' own, imported only when a tag is written, as
    saxutils loads urllib.request, which a run that tags nothing does not need."""
    from xml.sax.saxutils import escape

    return escape(text)


def _add_edits(data: bytes, path: Path, keyword: str) -> tuple[list[_Edit], list[Field]]:
    root = _parse(data, path)
    descriptions = _descriptions(root)
    if not descriptions:
        raise SidecarUnreadable(path, "no rdf:Description in it")
    props = _props(root, path)
    words = split_keyword(keyword)
    edits, changed = [], []
    d = descriptions[0]  # where a new list goes
    new_props = b""  # in one edit: an empty <rdf:Description/> is opened once
    for f in FIELDS:
        if f not in ALWAYS and not props[f]:
            continue
        spelt = _escape(f.spell(words)).encode()
        if props[f]:
            items = [li for p in props[f] for li in _items(p, path, f)]
            if f.spell(words) in (_li_text(li) for li in items):
                continue
            array = props[f][0].children[0]
            rdf = _prefix(array.scope, RDF) or "rdf"
            li = f"<{_qname(rdf, 'li')}>".encode() + spelt + f"</{_qname(rdf, 'li')}>".encode()
            indent, closing = _child_indent(data, array)
            if array.empty:  # <rdf:Bag/> becomes <rdf:Bag>...</rdf:Bag>
                head = data[array.start : array.head_end - 2].rstrip() + b">"
                tail = b"</" + _qname(rdf, array.local).encode() + b">"
                edits.append(
                    _Edit(array.start, array.head_end - array.start, head + indent + li + tail)
                )
            else:
                at = array.children[-1].end if array.children else array.head_end
                edits.append(_Edit(at, 0, indent + li))
        else:
            found = _prefix(d.scope, RDF)
            rdf = "rdf" if found is None else found
            own = _prefix(d.scope, f.ns)
            declare = b""
            if own is None or own == "":
                own = f.prefix
                declare = f' xmlns:{own}="{f.ns}"'.encode()
            indent, closing = _child_indent(data, d)
            inner = indent + b" "
            q = _qname(own, f.local).encode()
            arr = _qname(rdf, f.array).encode()
            li = _qname(rdf, "li").encode()
            prop = (
                b"<" + q + declare + b">" + inner + b"<" + arr + b">"
                + inner + b" <" + li + b">" + spelt + b"</" + li + b">"
                + inner + b"</" + arr + b">" + indent + b"</" + q + b">"
            )  # fmt: skip
            new_props += indent + prop
        changed.append(f)
    if new_props and d.empty:
        found = _prefix(d.scope, RDF)
        rdf = "rdf" if found is None else found
        head = data[d.start : d.head_end - 2].rstrip() + b">"
        tail = b"\n" + b"</" + _qname(rdf, "Description").encode() + b">"
        edits.append(_Edit(d.start, d.head_end - d.start, head + new_props + tail))
    elif new_props:
        at = d.children[-1].end if d.children else d.head_end
        edits.append(_Edit(at, 0, new_props))
    return edits, changed


def _remove_edits(
    data: bytes, path: Path, keyword: str, only: tuple[str, ...] | None
) -> tuple[list[_Edit], list[Field]]:
    root = _parse(data, path)
    props = _props(root, path)
    words = split_keyword(keyword)
    edits, changed = [], []
    for f in FIELDS:
        if only is not None and f.name not in only:
            continue
        for p in props[f]:
            array = p.children[0] if p.children else None
            items = _items(p, path, f)
            ours = [li for li in items if _li_text(li) == f.spell(words)]
            if not ours:
                continue
            if len(ours) == len(items):  # the list held only ours: it goes whole
                d_start = _indent_start(data, p)
                edits.append(_Edit(d_start, p.end - d_start, b""))
            else:
                for li in ours:
                    s = _indent_start(data, li, array.head_end if array else 0)
                    edits.append(_Edit(s, li.end - s, b""))
            if f not in changed:
                changed.append(f)
    return edits, changed


def _indent_start(data: bytes, el: _Element, floor: int = 0) -> int:
    i = el.start
    while i > floor and data[i - 1 : i] in (b" ", b"\t", b"\n", b"\r"):
        i -= 1
    return i


def add_keyword(
    data: bytes, keyword: str, path: Path = Path("sidecar.xmp")
) -> tuple[bytes, tuple[str, ...]]:
    """data with keyword added to dc:subject and lr:hierarchicalSubject (and to a
    digiKam:TagsList there is), only where it is missing; (new bytes, lists changed)."""
    edits, changed = _add_edits(data, path, keyword)
    out = _apply(data, edits)
    _check(out, data, path, keyword, changed, added=True)
    return out, tuple(f.name for f in changed)


def remove_keyword(
    data: bytes, keyword: str, path: Path = Path("sidecar.xmp"), only: tuple[str, ...] | None = None
) -> tuple[bytes, tuple[str, ...]]:
    """data without keyword in the lists named by `only` (all three if None); every other
    keyword stays."""
    edits, changed = _remove_edits(data, path, keyword, only)
    out = _apply(data, edits)
    _check(out, data, path, keyword, changed, added=False)
    return out, tuple(f.name for f in changed)


def _check(
    out: bytes, data: bytes, path: Path, keyword: str, changed: list[Field], added: bool
) -> None:
    """The spliced bytes parse, and hold the keywords they held, with ours added or taken
    out of the lists changed and nothing else: a splice that went wrong never lands."""
    before, after = parse_keywords(data, path), parse_keywords(out, path)
    words = split_keyword(keyword)
    for f in FIELDS:
        want = list(before.of(f))
        if f in changed:
            want = [*want, f.spell(words)] if added else [k for k in want if k != f.spell(words)]
        if sorted(after.of(f)) != sorted(want):
            raise SidecarUnreadable(path, f"its {f.name} could not be edited safely")


def new_sidecar() -> bytes:
    """A minimal sidecar with no keywords, in the shape exiftool writes."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="flowersort">\n'
        f' <rdf:RDF xmlns:rdf="{RDF}">\n'
        '  <rdf:Description rdf:about=""\n'
        f'    xmlns:dc="{DC}"\n'
        f'    xmlns:lr="{LR}">\n'
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    ).encode()


# -------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class _Found:
    data: bytes
    st: os.stat_result


def _read(sidecar: Path) -> tuple[bytes, os.stat_result]:
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
        data, _ = _read(sidecar)
    except FileNotFoundError:
        return None
    return data


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
        data, st = _read(sidecar)
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
