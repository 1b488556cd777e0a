"""The two things flowersort needs from a JPEG's EXIF block: the orientation, and where the
embedded preview (IFD1 thumbnail) lies. Reads only the header bytes; never raises."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class ExifInfo:
    orientation: int = 1  # 1..8 as in the EXIF standard; 1 = as stored
    thumbnail: tuple[int, int] | None = None  # (offset from file start, length) of the preview


def _app1_exif(head: bytes) -> int | None:
    """Offset of the TIFF header inside the first APP1 'Exif' segment, if any."""
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata
            return None
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker == 0xE1 and head[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return pos + 10
        pos += 2 + length
    return None


def read_exif(head: bytes) -> ExifInfo:
    """Orientation and preview location from the first bytes of a JPEG; defaults if absent
    or malformed."""
    try:
        return _read(head)
    except (struct.error, IndexError, ValueError):
        return ExifInfo()


def _read(head: bytes) -> ExifInfo:
    base = _app1_exif(head)
    if base is None:
        return ExifInfo()
    order = {b"II": "<", b"MM": ">"}.get(head[base : base + 2])
    if order is None:
        return ExifInfo()

    def u16(at: int) -> int:
        return struct.unpack(order + "H", head[base + at : base + at + 2])[0]

    def u32(at: int) -> int:
        return struct.unpack(order + "I", head[base + at : base + at + 4])[0]

    def entries(ifd: int) -> dict[int, int]:
        out = {}
        for i in range(min(u16(ifd), 512)):
            at = ifd + 2 + 12 * i
            tag, kind = u16(at), u16(at + 2)
            out[tag] = u16(at + 8) if kind == 3 else u32(at + 8)  # SHORT or LONG
        return out

    ifd0 = u32(4)
    tags0 = entries(ifd0)
    orientation = tags0.get(0x0112, 1)
    orientation = orientation if 1 <= orientation <= 8 else 1
    thumbnail = None
    ifd1 = u32(ifd0 + 2 + 12 * u16(ifd0))
    if ifd1:
        tags1 = entries(ifd1)
        offset, length = tags1.get(0x0201), tags1.get(0x0202)
        if offset and length:
            thumbnail = (base + offset, length)
    return ExifInfo(orientation, thumbnail)
