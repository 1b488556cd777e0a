"""Keywords in XMP sidecars (flowersort.photos.xmp): small sidecars in the shapes darktable,
digiKam and Lightroom write, merged byte for byte; atomic writes under real faults."""

import difflib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowersort.photos import xmp, xmp_splice, xmp_write

DARKTABLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2020:06:01 10:00:00"
   xmp:Rating="3"
   xmpMM:DerivedFrom="IMG_0001.jpg"
   darktable:import_timestamp="63750000000000000"
   darktable:xmp_version="5"
   darktable:history_end="1"
   darktable:iop_order_version="4">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Trip</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>darktable|format|jpg</rdf:li>
     <rdf:li>Trip</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <darktable:colorlabels>
    <rdf:Seq>
     <rdf:li>2</rdf:li>
    </rdf:Seq>
   </darktable:colorlabels>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

DIGIKAM = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   xmp:Rating="5"
   digiKam:ColorLabel="3"
   digiKam:PickLabel="2">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>Places/Rome</rdf:li>
     <rdf:li>People/Anna</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <MicrosoftPhoto:LastKeywordXMP>
    <rdf:Bag>
     <rdf:li>Places/Rome</rdf:li>
     <rdf:li>People/Anna</rdf:li>
    </rdf:Bag>
   </MicrosoftPhoto:LastKeywordXMP>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|Rome</rdf:li>
     <rdf:li>People|Anna</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Rome</rdf:li>
     <rdf:li>Anna</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""

# lr:hierarchicalSubject only (no dc namespace at all), with Camera Raw settings and history
LIGHTROOM = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   xmp:Rating="4"
   xmp:Label="Red"
   crs:Version="15.0"
   crs:Exposure2012="+0.50">
   <xmpMM:History>
    <rdf:Seq>
     <rdf:li
      stEvt:action="saved"
      stEvt:softwareAgent="Adobe Photoshop Lightroom Classic 12.0 (Windows)"/>
    </rdf:Seq>
   </xmpMM:History>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|Rome</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

# a namespace no tool here knows, a comment, an entity, CDATA, a second Description
FOREIGN = b"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<!-- written by hand -->
<rdf:Description rdf:about="" xmlns:acme="http://example.com/acme/1.0/">
\t<acme:secret acme:level='7'><![CDATA[<keep> & this]]></acme:secret>
\t<acme:empty/>
</rdf:Description>
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
\t<dc:subject><rdf:Bag><rdf:li>Rock &amp; Roll</rdf:li></rdf:Bag></dc:subject>
</rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""

# Exiv2 (digiKam, darktable) with nothing but simple properties: attributes, <rdf:Description/>
EXIV2_NO_TAGS = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
   xmp:Rating="3"
   digiKam:ColorLabel="1"/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""

SHAPES = {"darktable": DARKTABLE, "digikam": DIGIKAM, "lightroom": LIGHTROOM, "foreign": FOREIGN}
MALFORMED = {
    "truncated": DARKTABLE[: len(DARKTABLE) // 2],
    "not xml": b"not a sidecar at all\n",
    "no rdf": b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>",
    "dtd": b'<!DOCTYPE x [<!ENTITY a "Flowers">]>'
    + DIGIKAM.split(b"?>\n", 1)[1].replace(b"<rdf:li>Rome</rdf:li>", b"<rdf:li>&a;</rdf:li>"),
    "latin-1": DIGIKAM.replace(b"Anna", b"J\xf6rg"),
    "attribute subject": EXIV2_NO_TAGS.replace(b'xmp:Rating="3"', b'dc:subject="Trip"').replace(
        b'xmlns:xmp="http://ns.adobe.com/xap/1.0/"', b'xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ),
    "text subject": DARKTABLE.replace(
        b"<rdf:Bag>\n     <rdf:li>Trip</rdf:li>\n    </rdf:Bag>", b"Trip"
    ),
}


def only_insertions(before: bytes, after: bytes) -> bytes:
    """The bytes added, asserting that every byte of before is still there, in order."""
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    assert all(op in ("equal", "insert") for op, *_ in ops), ops
    return b"".join(after[j1:j2] for op, _, _, j1, j2 in ops if op == "insert")


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "album" / "IMG_0001.jpg"
    p.parent.mkdir()
    p.write_bytes(b"\xff\xd8 a photo \xff\xd9")
    return p


@pytest.mark.parametrize("shape", SHAPES)
def test_a_tag_keeps_every_byte_and_undo_gives_the_file_back(photo, shape):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(SHAPES[shape])
    before = xmp.read_keywords(side)
    photo_bytes = photo.read_bytes()

    result = xmp_write.tag(photo, "Flowers")
    assert result.action is xmp.Action.TAGGED and result.sidecar == side
    after = side.read_bytes()
    added = only_insertions(SHAPES[shape], after)
    assert added.count(b"Flowers") == len(result.fields)
    kw = xmp.read_keywords(side)
    assert kw.subject == (*before.subject, "Flowers")
    assert kw.hierarchical == (*before.hierarchical, "Flowers")
    assert "Flowers" in kw.tags_list or not before.tags_list
    assert result.digest == hashlib.sha256(after).hexdigest()

    assert xmp_write.untag(photo, "Flowers", only=result.fields).action is xmp.Action.UNTAGGED
    assert side.read_bytes() == SHAPES[shape]  # byte for byte
    assert photo.read_bytes() == photo_bytes


def test_a_description_with_attributes_only_gets_the_keyword_in_each_list(photo):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(EXIV2_NO_TAGS)
    result = xmp_write.tag(photo, "Flowers")
    assert result.fields == ("dc:subject", "lr:hierarchicalSubject")
    kw = xmp.read_keywords(side)
    assert kw.subject == ("Flowers",) and kw.hierarchical == ("Flowers",)
    kept = side.read_bytes()
    assert b'xmp:Rating="3"\n   digiKam:ColorLabel="1">' in kept
    assert xmp_write.untag(photo, "Flowers", only=result.fields).action is xmp.Action.UNTAGGED
    assert xmp.read_keywords(side) == xmp.Keywords()
    assert side.read_bytes().replace(b">\n</rdf:Description>", b"/>") == EXIV2_NO_TAGS


def test_lightroom_with_only_hierarchical_subject_gets_a_dc_subject(photo):
    side = photo.parent / "IMG_0001.xmp"  # Lightroom's name
    side.write_bytes(LIGHTROOM)
    result = xmp_write.tag(photo, "Flowers")
    assert result.sidecar == side
    assert result.fields == ("dc:subject", "lr:hierarchicalSubject")
    kw = xmp.read_keywords(side)
    assert kw.subject == ("Flowers",) and kw.hierarchical == ("Places|Rome", "Flowers")


def test_digikam_tags_list_gets_the_keyword_too_and_a_hierarchy_is_spelt_per_list(photo):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DIGIKAM)
    result = xmp_write.tag(photo, "flowersort|Flowers")
    assert result.fields == ("dc:subject", "lr:hierarchicalSubject", "digiKam:TagsList")
    kw = xmp.read_keywords(side)
    assert kw.subject[-1] == "Flowers"
    assert kw.hierarchical[-1] == "flowersort|Flowers"
    assert kw.tags_list[-1] == "flowersort/Flowers"


def test_a_second_tag_adds_nothing_twice(photo):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DARKTABLE)
    assert xmp_write.tag(photo, "Flowers").action is xmp.Action.TAGGED
    once = side.read_bytes()
    st = os.stat(side)
    assert xmp_write.tag(photo, "Flowers").action is xmp.Action.ALREADY_TAGGED
    assert side.read_bytes() == once and os.stat(side).st_ino == st.st_ino
    assert once.count(b">Flowers<") == 2


def test_untag_keeps_a_keyword_added_by_hand_meanwhile(photo):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DIGIKAM)
    result = xmp_write.tag(photo, "Flowers")
    by_hand, _ = xmp_splice.add_keyword(side.read_bytes(), "Bees")  # the user, in digiKam
    side.write_bytes(by_hand)
    assert xmp_write.untag(photo, "Flowers", only=result.fields).action is xmp.Action.UNTAGGED
    kw = xmp.read_keywords(side)
    assert not kw.has("Flowers")
    assert kw.subject == ("Rome", "Anna", "Bees")
    assert kw.tags_list == ("Places/Rome", "People/Anna", "Bees")


def test_untag_takes_the_keyword_only_from_the_lists_tag_added_it_to(photo):
    """Flowers in dc:subject was the user's: tag added it to lr:hierarchicalSubject only."""
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(
        DARKTABLE.replace(
            b"<rdf:li>Trip</rdf:li>\n    </rdf:Bag>\n   </dc:subject>",
            b"<rdf:li>Trip</rdf:li>\n     <rdf:li>Flowers</rdf:li>\n"
            b"    </rdf:Bag>\n   </dc:subject>",
        )
    )
    result = xmp_write.tag(photo, "Flowers")
    assert result.fields == ("lr:hierarchicalSubject",)
    xmp_write.untag(photo, "Flowers", only=result.fields)
    kw = xmp.read_keywords(side)
    assert kw.subject == ("Trip", "Flowers") and "Flowers" not in kw.hierarchical


def test_a_new_sidecar_has_the_photos_owner_and_mode_and_undo_removes_it(photo):
    os.chmod(photo, 0o640)
    if os.geteuid() == 0:
        os.chown(photo, 65534, 65534)
    result = xmp_write.tag(photo, "Flowers")
    side = photo.parent / "IMG_0001.jpg.xmp"
    assert result.created and result.sidecar == side
    st, pst = os.stat(side), os.stat(photo)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (pst.st_uid, pst.st_gid, 0o640)
    assert xmp.read_keywords(side).hierarchical == ("Flowers",)
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_0001.jpg", side.name]
    undone = xmp_write.untag(photo, "Flowers", only=result.fields, created=result.digest)
    assert undone.removed and not side.exists()


def test_a_read_only_photo_gets_a_new_sidecar_its_owner_can_still_edit(photo):
    """A photo made read-only against accidents: digiKam or darktable must still be able to
    write the sidecar (remove the keyword: a veto), as they could one they made."""
    os.chmod(photo, 0o440)
    result = xmp_write.tag(photo, "Flowers")
    assert os.stat(result.sidecar).st_mode & 0o7777 == 0o640  # no wider than the photo


def test_a_replaced_sidecar_keeps_its_owner_and_mode(photo):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DARKTABLE)
    os.chmod(side, 0o604)
    if os.geteuid() == 0:
        os.chown(side, 65534, 100)
    old = os.stat(side)
    xmp_write.tag(photo, "Flowers")
    new = os.stat(side)
    assert new.st_ino != old.st_ino  # a new file took the name (atomic rename)
    assert (new.st_uid, new.st_gid, new.st_mode) == (old.st_uid, old.st_gid, old.st_mode)


def test_dry_run_writes_nothing(photo):
    result = xmp_write.tag(photo, "Flowers", dry_run=True)
    assert result.action is xmp.Action.WOULD_TAG and result.created
    assert [p.name for p in photo.parent.iterdir()] == ["IMG_0001.jpg"]


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_sidecar_that_cannot_be_parsed_is_left_untouched(photo, kind):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(MALFORMED[kind])
    st = os.stat(side)
    with pytest.raises(xmp.SidecarUnreadable) as info:
        xmp_write.tag(photo, "Flowers")
    assert str(info.value).startswith("IMG_0001.jpg.xmp: ") and "\n" not in str(info.value)
    assert info.value.exit_code == 1
    assert side.read_bytes() == MALFORMED[kind]
    assert os.stat(side).st_mtime_ns == st.st_mtime_ns
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_0001.jpg", side.name]


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder"])
def test_a_sidecar_that_is_a_link_or_no_file_is_refused(photo, tmp_path, kind):
    """Run as root over folders others can write: IMG_0001.jpg.xmp -> /etc/passwd must not
    make flowersort write (or copy) the file it points to."""
    target = tmp_path / "elsewhere.xmp"
    target.write_bytes(DARKTABLE)
    side = photo.parent / "IMG_0001.jpg.xmp"
    if kind == "symlink":
        side.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, side)
    else:
        side.mkdir()
    with pytest.raises(xmp.SidecarRefused):
        xmp_write.tag(photo, "Flowers")
    assert target.read_bytes() == DARKTABLE
    assert side.is_symlink() == (kind == "symlink")
    assert not [p for p in photo.parent.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)]


def test_a_sidecar_changed_meanwhile_is_not_overwritten(photo, monkeypatch):
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DARKTABLE)
    real = xmp_write._fsync
    theirs = DARKTABLE.replace(b'xmp:Rating="3"', b'xmp:Rating="5"')

    def digikam_writes(fd):  # after our temporary is written, before it takes the name
        real(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(xmp_write.TMP_PREFIX):
            side.write_bytes(theirs)

    monkeypatch.setattr(xmp_write, "_fsync", digikam_writes)
    with pytest.raises(xmp.SidecarChanged):
        xmp_write.tag(photo, "Flowers")
    assert side.read_bytes() == theirs
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_0001.jpg", side.name]


def test_a_sidecar_created_meanwhile_is_not_overwritten(photo, monkeypatch):
    side = photo.parent / "IMG_0001.jpg.xmp"
    real = xmp_write._fsync

    def darktable_imports(fd):  # our new sidecar is written, not yet given its name
        real(fd)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(xmp_write.TMP_PREFIX):
            side.write_bytes(DARKTABLE)

    monkeypatch.setattr(xmp_write, "_fsync", darktable_imports)
    with pytest.raises(xmp.SidecarChanged):
        xmp_write.tag(photo, "Flowers")
    assert side.read_bytes() == DARKTABLE
    assert sorted(p.name for p in photo.parent.iterdir()) == ["IMG_0001.jpg", side.name]


def test_a_splice_that_went_wrong_never_lands(photo, monkeypatch):
    """The edited bytes are parsed again before they are written: a splice that lost a
    keyword (here: one that drops the first rdf:li it meets) leaves the sidecar as it was."""
    side = photo.parent / "IMG_0001.jpg.xmp"
    side.write_bytes(DIGIKAM)
    real = xmp_splice._apply
    monkeypatch.setattr(
        xmp_splice,
        "_apply",
        lambda data, edits: re.sub(rb"<rdf:li>Rome</rdf:li>", b"", real(data, edits)),
    )
    with pytest.raises(xmp.SidecarUnreadable):
        xmp_write.tag(photo, "Flowers")
    assert side.read_bytes() == DIGIKAM


@pytest.mark.parametrize(
    "names,expected",
    [
        (["IMG_0001.jpg"], "IMG_0001.jpg.xmp"),
        (["IMG_0001.jpg", "IMG_0001.xmp"], "IMG_0001.xmp"),
        (["IMG_0001.jpg", "IMG_0001.XMP"], "IMG_0001.XMP"),
        (["IMG_0001.jpg", "IMG_0001.xmp", "IMG_0001.jpg.xmp"], "IMG_0001.jpg.xmp"),
        (["IMG_0001.jpg", "IMG_0001.JPG.XMP"], "IMG_0001.JPG.XMP"),
        (["IMG_0001.jpg", "IMG_0001.CR2", "IMG_0001.xmp"], "IMG_0001.xmp"),  # the RAW's
        (["IMG_0001.jpg", "IMG_0001.png", "IMG_0001.xmp"], "IMG_0001.jpg.xmp"),  # whose?
    ],
)
def test_which_sidecar(tmp_path, names, expected):
    assert xmp.find_sidecar(tmp_path / "IMG_0001.jpg", names) == tmp_path / expected


# ---------------------------------------------------------------- a real reader: exiftool


@pytest.mark.parametrize("shape", [None, *SHAPES])
def test_exiftool_reads_the_keywords_back(photo, shape):
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl)")
    side = photo.parent / "IMG_0001.jpg.xmp"
    if shape:
        side.write_bytes(SHAPES[shape])
    before = xmp.read_keywords(side)
    xmp_write.tag(photo, "flowersort|Flowers")
    out = subprocess.run(
        ["exiftool", "-G1", "-s", "-sep", "##", "-XMP:all", str(side)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tags = {f"{g}:{t}": v for g, t, v in re.findall(r"^\[([\w-]+)\]\s+(\w+)\s+: (.*)$", out, re.M)}
    subject = tags["XMP-dc:Subject"].split("##")
    hierarchical = tags["XMP-lr:HierarchicalSubject"].split("##")
    assert subject == [*before.subject, "Flowers"]
    assert hierarchical == [*before.hierarchical, "flowersort|Flowers"]
    if before.tags_list:
        assert tags["XMP-digiKam:TagsList"].split("##")[-1] == "flowersort/Flowers"
    if shape == "lightroom":  # the rest is still there as exiftool reads it
        assert tags["XMP-xmp:Rating"] == "4" and tags["XMP-crs:Exposure2012"] == "+0.50"
    if shape == "darktable":
        assert (
            tags["XMP-xmp:Rating"] == "3" and tags["XMP-darktable:HistoryOperation"] == "exposure"
        )


# ------------------------------------------------------------ real faults, through strace

DRIVER = (
    "import sys; from pathlib import Path; from flowersort.photos import xmp, xmp_write\n"
    "try:\n"
    "    print(xmp_write.tag(Path(sys.argv[1]), 'Flowers').action.value)\n"
    "except xmp.SidecarError as e:\n"
    "    print(e); sys.exit(1)\n"
)
CALLS = ("write", "fsync", "rename", "renameat", "renameat2", "link", "linkat")
FAULT = {"write": "ENOSPC", "fsync": "EIO"}  # rename and link: EIO as well


def run_driver(photo: Path, strace: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["strace", "-f", "-qq", *strace, sys.executable, "-c", DRIVER, str(photo)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def points(photo: Path, log: Path) -> list[tuple[str, int, str]]:
    """(syscall, which call of it, the line) for each write, fsync, rename and link a
    clean tag run makes in the photo's folder: where strace can fail or kill it."""
    run_driver(photo, ["-y", "-o", str(log), "-e", "trace=" + ",".join(CALLS)])
    seen: dict[str, int] = {}
    found = []
    for line in log.read_text().splitlines():
        line = re.sub(r"^\d+\s+", "", line)
        if not (m := re.match(r"(\w+)\((.*)\)\s+= ", line)) or m[1] not in CALLS:
            continue
        seen[m[1]] = seen.get(m[1], 0) + 1
        if str(photo.parent) in m[2]:
            found.append((m[1], seen[m[1]], line))
    return found


def state(photo: Path, before: bytes | None) -> str:
    """ "before" (as it was, or still absent) or "complete" (every old keyword, and ours);
    anything else fails the test."""
    side = photo.parent / "IMG_0001.jpg.xmp"
    if not side.exists():
        assert before is None
        return "before"
    data = side.read_bytes()
    if data == before:
        return "before"
    old = xmp.parse_keywords(before or xmp_splice.new_sidecar(), side)
    kw = xmp.parse_keywords(data, side)
    assert kw.subject == (*old.subject, "Flowers") and kw.hierarchical == (
        *old.hierarchical,
        "Flowers",
    )
    only_insertions(before or xmp_splice.new_sidecar(), data)
    return "complete"


def temporaries(photo: Path) -> list[str]:
    return [p.name for p in photo.parent.iterdir() if p.name.startswith(xmp_write.TMP_PREFIX)]


def fresh(tmp_path: Path, name: str, sidecar: bytes | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    photo = folder / "IMG_0001.jpg"
    photo.write_bytes(b"\xff\xd8 a photo \xff\xd9")
    if sidecar is not None:
        (folder / "IMG_0001.jpg.xmp").write_bytes(sidecar)
    return photo


@pytest.mark.parametrize("existing", [True, False], ids=["merge", "new"])
def test_a_failure_at_each_write_fsync_and_rename_leaves_the_sidecar_before_or_complete(
    tmp_path, existing
):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    before = DARKTABLE if existing else None
    clean = fresh(tmp_path, "clean", before)
    found = points(clean, tmp_path / "strace.log")
    calls = [c for c, _, _ in found]
    # the temporary's write and fsync, its rename (or link and unlink), the folder's fsync
    assert "write" in calls and calls.count("fsync") == 2, found
    assert ("renameat" in calls) == existing and ("linkat" in calls) != existing, found
    assert state(clean, before) == "complete"
    outcomes = []
    for i, (call, n, line) in enumerate(found):
        photo = fresh(tmp_path, f"fault{i}", before)
        fault = f"inject={call}:error={FAULT.get(call, 'EIO')}:when={n}"
        done = run_driver(photo, ["-o", os.devnull, "-e", f"trace={call}", "-e", fault])
        got = state(photo, before)
        outcomes.append((call, got))
        assert done.returncode == 1, (line, done.stdout, done.stderr)
        assert "left untouched" in done.stdout or "could not be synced" in done.stdout
        assert temporaries(photo) == [], line  # an error cleans up after itself
        last = i == len(found) - 1  # the folder's fsync: the new sidecar is in place
        assert got == ("complete" if last else "before"), (line, done.stdout)
    assert [c for c, _ in outcomes] == calls


@pytest.mark.parametrize("existing", [True, False], ids=["merge", "new"])
def test_a_kill_at_each_write_fsync_and_rename_leaves_the_sidecar_before_or_complete(
    tmp_path, existing
):
    """SIGKILL (strace) at each step: the sidecar is as before or complete; a kill before
    the name is taken leaves the temporary it interrupted (a journal removes it)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    before = DARKTABLE if existing else None
    found = points(fresh(tmp_path, "clean", before), tmp_path / "strace.log")
    for i, (call, n, line) in enumerate(found):
        photo = fresh(tmp_path, f"kill{i}", before)
        inject = f"inject={call}:signal=KILL:when={n}"
        killed = run_driver(photo, ["-o", os.devnull, "-e", f"trace={call}", "-e", inject])
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), line
        got = state(photo, before)
        if call in ("write", "renameat", "linkat") or (
            call == "fsync" and xmp_write.TMP_PREFIX in line
        ):
            assert got == "before" and len(temporaries(photo)) == 1, line  # interrupted
        else:  # the folder's fsync, or the temporary's unlink after link: all in place
            assert got == "complete", line


def test_a_folder_swapped_for_a_link_is_not_written_through(photo, tmp_path):
    """The photo's folder became a link to another (a user's swap, while root tags): the
    write opens the folder with O_NOFOLLOW and writes nothing there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "IMG_0001.jpg").write_bytes(b"theirs")
    (elsewhere / "IMG_0001.jpg.xmp").write_bytes(DARKTABLE)
    album = photo.parent
    os.rename(album, tmp_path / "was")
    album.symlink_to(elsewhere)
    with pytest.raises(xmp.SidecarError):
        xmp_write.tag(album / "IMG_0001.jpg", "Flowers")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["IMG_0001.jpg", "IMG_0001.jpg.xmp"]
    assert (elsewhere / "IMG_0001.jpg.xmp").read_bytes() == DARKTABLE


def test_tagging_on_an_exfat_stick(tmp_path):
    """No hard links, no modes, no owners: a new sidecar takes its name by rename after one
    more look, an existing one is merged as anywhere else."""
    from tests.conftest import exfat

    with exfat(tmp_path / "stick") as stick:
        for name in ("IMG_0001.jpg", "IMG_0002.jpg"):
            (stick / name).write_bytes(b"\xff\xd8 photo \xff\xd9")
        (stick / "IMG_0002.jpg.xmp").write_bytes(DIGIKAM)
        assert xmp_write.tag(stick / "IMG_0001.jpg", "Flowers").created
        assert xmp_write.tag(stick / "IMG_0002.jpg", "Flowers").action is xmp.Action.TAGGED
        assert xmp.read_keywords(stick / "IMG_0001.jpg.xmp").subject == ("Flowers",)
        assert only_insertions(DIGIKAM, (stick / "IMG_0002.jpg.xmp").read_bytes())
        assert sorted(p.name for p in stick.iterdir()) == [
            "IMG_0001.jpg", "IMG_0001.jpg.xmp", "IMG_0002.jpg", "IMG_0002.jpg.xmp"
        ]  # fmt: skip
