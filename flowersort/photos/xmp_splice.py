"""A keyword added to or removed from a sidecar's bytes by a splice at the offsets the
parser reports, never re-serialised: every byte outside the keyword stays as it was
(other keywords, ratings, history, namespaces we do not know, comments, padding)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowersort.photos.xmp import (
    ALWAYS,
    DC,
    FIELDS,
    LR,
    RDF,
    Element,
    Field,
    SidecarUnreadable,
    descriptions_in,
    item_text,
    keyword_props,
    list_items,
    parse_keywords,
    parse_tree,
    split_keyword,
)


def _prefix(scope: dict[str, str], ns: str) -> str | None:
    """A prefix bound to ns in scope ("" for the default namespace), or None."""
    for prefix, uri in scope.items():
        if uri == ns:
            return prefix
    return None


def _qname(prefix: str, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


def _indent_before(data: bytes, el: Element, parent_head_end: int) -> bytes:
    """The whitespace that opens el's line (between the previous tag and el)."""
    i = el.start
    while i > parent_head_end and data[i - 1 : i] in (b" ", b"\t", b"\n", b"\r"):
        i -= 1
    return data[i : el.start]


def _child_indent(data: bytes, parent: Element) -> tuple[bytes, bytes]:
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


def _into_list(data: bytes, array: Element, spelt: bytes) -> _Edit:
    """The edit that adds an item `spelt` (escaped) to an existing list `array`."""
    rdf = _prefix(array.scope, RDF) or "rdf"
    li = f"<{_qname(rdf, 'li')}>".encode() + spelt + f"</{_qname(rdf, 'li')}>".encode()
    indent, closing = _child_indent(data, array)
    if array.empty:  # <rdf:Bag/> becomes <rdf:Bag>...</rdf:Bag>
        head = data[array.start : array.head_end - 2].rstrip() + b">"
        tail = b"</" + _qname(rdf, array.local).encode() + b">"
        return _Edit(array.start, array.head_end - array.start, head + indent + li + tail)
    at = array.children[-1].end if array.children else array.head_end
    return _Edit(at, 0, indent + li)


def _new_list(data: bytes, d: Element, f: Field, spelt: bytes) -> bytes:
    """A new keyword list `f` holding `spelt` (escaped), as it goes into description d."""
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
    return indent + prop


def _add_edits(data: bytes, path: Path, keyword: str) -> tuple[list[_Edit], list[Field]]:
    root = parse_tree(data, path)
    descriptions = descriptions_in(root)
    if not descriptions:
        raise SidecarUnreadable(path, "no rdf:Description in it")
    props = keyword_props(root, path)
    words = split_keyword(keyword)
    edits, changed = [], []
    d = descriptions[0]  # where a new list goes
    new_props = b""  # in one edit: an empty <rdf:Description/> is opened once
    for f in FIELDS:
        if f not in ALWAYS and not props[f]:
            continue
        spelt = _escape(f.spell(words)).encode()
        if props[f]:
            items = [li for p in props[f] for li in list_items(p, path, f)]
            if f.spell(words) in (item_text(li) for li in items):
                continue
            edits.append(_into_list(data, props[f][0].children[0], spelt))
        else:
            new_props += _new_list(data, d, f, spelt)
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
    root = parse_tree(data, path)
    props = keyword_props(root, path)
    words = split_keyword(keyword)
    edits, changed = [], []
    for f in FIELDS:
        if only is not None and f.name not in only:
            continue
        for p in props[f]:
            array = p.children[0] if p.children else None
            items = list_items(p, path, f)
            ours = [li for li in items if item_text(li) == f.spell(words)]
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


def _indent_start(data: bytes, el: Element, floor: int = 0) -> int:
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
