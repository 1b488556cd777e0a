"""Reading photo files into upright 8-bit BGR pixels; with features.py and columns.py, the only
places that use OpenCV.

A photo is read as bytes into one buffer the size of the file (then ``cv2.imdecode``, so
names in any script work); its header is read first: a file no decoder recognises is
refused unread, huge images before any pixel is decoded, and JPEGs are decoded at a
reduced size when the network needs fewer pixels. HEIC goes through heic.py.
"""

from __future__ import annotations

import functools
import os
import stat
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from flowersort.base.errors import BadImage
from flowersort.photos import heic
from flowersort.photos.exif import ExifInfo, read_exif

MAX_PIXELS = 120_000_000  # larger than any camera's photo; refuse before decoding
# OpenCV's own guard for the formats whose header we do not read (TIFF, WebP, ...)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


class _OpenCV:
    """cv2, imported when first used: a rerun whose photos all have remembered scores
    decodes nothing and need not load it (12 ms of a run's 0.2 s start-up, measured). The
    import replaces this stand-in here; in the modules that took it
    (`from flowersort.photos.decode import cv2`) it keeps each name it passes on."""

    def __getattr__(self, name: str):
        global cv2
        import cv2 as opencv  # after the guard above

        if cv2 is self:
            opencv.setNumThreads(1)  # parallelism comes from our process pool, not OpenCV
            cv2 = opencv
        value = getattr(opencv, name)
        setattr(self, name, value)
        return value


cv2: Any = _OpenCV()  # cv2 itself once imported

MAX_FILE_BYTES = 512 * 1024 * 1024
FIRST_READ = 80 * 1024  # EXIF (with its preview) is at most 64 KiB and comes first
HEADER_BYTES = 256 * 1024  # JPEG markers before the frame header (EXIF, ICC) fit in this


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, or None for other formats."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None  # not a marker where one must be: let the decoder judge it
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(head):
                return None
            h, w = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return w, h
        pos += 2 + length
    return None


def png_damage(data: bytes | memoryview) -> str | None:
    """Why a PNG is damaged (a chunk that overruns the file or fails its CRC), or None.

    Checked before decoding because OpenCV's PNG decoder can spend seconds on a few
    kilobytes of corrupt data."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return "PNG is truncated" if kind == b"IDAT" else "PNG chunk runs past the end"
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(memoryview(data)[pos + 4 : end - 4]) != crc:  # no copy of the chunk
            return f"PNG chunk {kind.decode('latin-1')!r} fails its checksum"
        if kind == b"IEND":
            break
        pos = end
    return None


def _reduced_flag(size: tuple[int, int] | None, is_jpeg: bool, need: int) -> int:
    """The smallest OpenCV decoding mode that still gives at least `need` pixels a side."""
    if not is_jpeg or size is None:
        return cv2.IMREAD_COLOR
    short = min(size)
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if short // factor >= need:
            return flag
    return cv2.IMREAD_COLOR


def read_image(path: str | os.PathLike, need: int = 0, thumbnail: bool = False) -> np.ndarray:
    """Decode a photo to 8-bit BGR, upright, at least `need` pixels a side where the file
    allows.

    With `thumbnail`, a JPEG whose EXIF preview has at least `need` pixels a side is
    decoded from that preview alone, reading only the start of the file. Raises BadImage
    with a reason a person understands. Never opens anything but a regular file (a FIFO
    or a device would hang the run).
    """
    path = Path(path)
    take_decode_note()  # a note is about this photo or none
    file_size = _regular_file_size(path)
    try:
        with open(path, "rb") as f:
            read = _read(f, file_size, need, thumbnail)
    except FileNotFoundError:
        raise BadImage("file vanished") from None
    except OSError as e:
        raise BadImage(e.strerror or str(e)) from None
    if isinstance(read, np.ndarray):  # the EXIF preview, upright
        return read
    return _decode(read, need, thumbnail)


def _regular_file_size(path: Path) -> int:
    """The size of the regular file at path; BadImage for anything else, an empty file or
    one too large to read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadImage("file vanished") from None
    except OSError as e:
        raise BadImage(e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise BadImage(kind)
    if st.st_size == 0:
        raise BadImage("empty file", lasting=True)
    if st.st_size > MAX_FILE_BYTES:
        raise BadImage(f"file too large ({st.st_size // 2**20} MiB)")
    return st.st_size


class _Read(NamedTuple):
    """A photo's file read: its first bytes, what they say, and the whole file."""

    head: bytes
    size: tuple[int, int] | None  # (width, height) from the header, if it says
    is_jpeg: bool
    exif: ExifInfo | None
    data: np.ndarray


def _read(f: BinaryIO, file_size: int, need: int, thumbnail: bool) -> _Read | np.ndarray:
    """The file read whole, after its header passed the checks; with `thumbnail`, the
    EXIF preview instead (upright) where it is large enough."""
    head = f.read(FIRST_READ)
    if len(head) < file_size and not opencv_signature(head):  # decide from the header
        raise _undecodable(head)
    size = header_size(head)
    if size is None and len(head) == FIRST_READ:  # big metadata blocks first
        head += f.read(HEADER_BYTES - FIRST_READ)
        size = header_size(head)
    is_jpeg = head[:2] == b"\xff\xd8"
    exif = read_exif(head) if is_jpeg else None
    if thumbnail and exif and exif.thumbnail:
        preview = _decode_preview(head, exif.thumbnail, size, need * 3 // 4)
        if preview is not None:
            return orient(preview, exif.orientation)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise BadImage(f"image too large ({size[0]} x {size[1]} pixels)", lasting=True)
    if size is not None and min(size) == 0:
        raise BadImage("image has no pixels", lasting=True)
    return _Read(head, size, is_jpeg, exif, _read_rest(f, head, file_size))


def _decode(read: _Read, need: int, thumbnail: bool) -> np.ndarray:
    """The pixels of a file read whole: OpenCV, or pillow-heif for HEIC (and AVIF where
    OpenCV has no codec for it), turned upright."""
    head, data = read.head, read.data
    if head[:8] == b"\x89PNG\r\n\x1a\n" and (damage := png_damage(data.data)):
        raise BadImage(f"damaged image: {damage}", lasting=True)
    if (heif := heic.kind(head)) == "heic":  # OpenCV has no HEVC decoder
        return heic.decode(data.data, need, MAX_PIXELS, thumbnail)
    flag = _reduced_flag(read.size, read.is_jpeg, need)
    try:
        # OpenCV turns photos upright only at full size, so we do it ourselves, always
        img = _decode_noting(data, flag | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None and read.is_jpeg and bytes(data[-2:]) != JPEG_END:
            # cut short (a copy or sync that stopped): OpenCV 5 refuses a JPEG without its
            # end marker, which libjpeg decodes in part; a copy only for such a file
            ended = np.concatenate([data, np.frombuffer(JPEG_END, np.uint8)])
            img = _decode_noting(ended, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        if heif == "avif" and heic.can_decode("avif"):
            return heic.decode(data.data, need, MAX_PIXELS, thumbnail)
        if heif == "avif" and opencv_reads_avif():  # the codec is there: the file is bad
            raise BadImage("damaged image: AVIF: OpenCV cannot decode it", lasting=True)
        raise _undecodable(head)
    if heif == "avif":  # OpenCV's AVIF reader ignores the file's rotation and mirroring
        return heic.upright(img, data.data)
    return orient(img, read.exif.orientation) if read.exif else img


JPEG_END = b"\xff\xd9"  # the EOI marker


def _read_rest(f, head: bytes, size: int) -> np.ndarray:
    """The whole file in one buffer of its size, `head` first: a file is never held twice
    (`head + f.read()` held a 500 MB file two and a half times)."""
    try:
        data = np.empty(max(size, len(head)), np.uint8)
    except MemoryError:
        raise BadImage(f"not enough memory to read it ({size // 2**20} MiB)") from None
    view = data.data  # a memoryview: no copy
    view[: len(head)] = head
    filled = len(head)
    while filled < len(data) and (n := f.readinto(view[filled:])):
        filled += n
    return data[:filled]  # shorter if the file shrank since it was measured


# The first bytes OpenCV's decoders recognise (imgcodecs' checkSignature): JPEG, PNG, BMP,
# GIF, TIFF and BigTIFF, Sun raster, JPEG 2000 (file and codestream), OpenEXR, Radiance
# HDR, JPEG XL (codestream and file); RIFF/WebP, ISO media (AVIF, HEIC) and PxM/PFM below.
SIGNATURES = (
    b"\xff\xd8",
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"\x59\xa6\x6a\x95",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\xff\x4f\xff\x51",
    b"v/1\x01",
    b"#?RADIANCE",
    b"#?RGBE",
    b"\xff\x0a",
    b"\x00\x00\x00\x0cJXL \r\n\x87\n",
)


def opencv_signature(head: bytes) -> bool:
    """Whether the file starts like a format OpenCV may decode; anything else is refused
    before the rest of the file is read."""
    if head.startswith(SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[4:8] == b"ftyp":  # AVIF decodes; HEIC gets its own reason
        return True
    return len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"1234567Ff" and head[2:3].isspace()


_decode_note = ""  # what the decoder said about the last photo read_image decoded
_capture: Any = None  # a temporary file that stands in for fd 2 while decoding


def _decode_noting(data: np.ndarray, flag: int) -> np.ndarray | None:
    """cv2.imdecode, with what libjpeg prints on fd 2 itself ('Corrupt JPEG data:
    premature end of data segment') caught in a temporary file instead of reaching the
    terminal or cron's mail without a file name; take_decode_note() returns it."""
    global _capture, _decode_note
    if _capture is None:
        _capture = tempfile.TemporaryFile()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(_capture.fileno(), 2)
        try:
            img = cv2.imdecode(data, flag)
        finally:
            os.dup2(saved, 2)
    finally:
        os.close(saved)
    _capture.seek(0)
    said = _capture.read(4096).decode("utf-8", "replace")
    _capture.seek(0)
    _capture.truncate()
    lines = list(dict.fromkeys(line.strip() for line in said.splitlines() if line.strip()))
    _decode_note = f"decoded in part ({'; '.join(lines)})" if lines else ""
    return img


def take_decode_note() -> str:
    """The decoder's note about the last photo read_image decoded ('' if none), once."""
    global _decode_note
    note, _decode_note = _decode_note, ""
    return note


def _decode_preview(
    head: bytes, where: tuple[int, int], size: tuple[int, int] | None, need: int
) -> np.ndarray | None:
    """The EXIF preview, without the black bars cameras add to fit it to 160 x 120; None
    if it is missing, damaged or smaller than `need`."""
    offset, length = where
    if offset + length > len(head) or size is None:
        return None
    try:
        img = cv2.imdecode(np.frombuffer(head, np.uint8, length, offset), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if img is None:
        return None
    h, w = img.shape[:2]
    aspect = size[0] / size[1]  # of the photo itself
    if w / h > aspect * 1.02:  # bars left and right
        keep = round(h * aspect)
        img = img[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    elif w / h < aspect / 1.02:  # bars top and bottom
        keep = round(w / aspect)
        img = img[(h - keep) // 2 : (h - keep) // 2 + keep]
    return img if min(img.shape[:2]) >= need else None


@functools.cache
def opencv_reads_avif() -> bool:
    """Whether this OpenCV build decodes AVIF: a tiny image through its own codec, asked
    once, only after an AVIF failed (cv2.haveImageReader would read the file by a name that
    may not be UTF-8, which crashes it)."""
    try:
        ok, data = cv2.imencode(".avif", np.zeros((16, 16, 3), np.uint8))
        return bool(ok) and cv2.imdecode(data, cv2.IMREAD_COLOR) is not None
    except cv2.error:
        return False


def _undecodable(head: bytes) -> BadImage:
    if heic.kind(head) == "avif":  # installing pillow-heif may cure it
        return BadImage("AVIF image: neither this OpenCV build nor pillow-heif can decode it")
    if head[:2] == b"\xff\xd8" or head[:8] == b"\x89PNG\r\n\x1a\n":
        return BadImage("damaged image: OpenCV cannot decode it", lasting=True)
    return BadImage("not an image OpenCV can decode", lasting=True)


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the photo is as it is displayed."""
    if orientation in (2, 4, 5, 7):  # the mirrored ones: flip, then rotate like 1/3/8/6
        img = cv2.flip(img, 1)
        orientation = {2: 1, 4: 3, 5: 8, 7: 6}[orientation]
    rotation = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(img, rotation[orientation]) if orientation in rotation else img


def jpeg_thumbnail(bgr: np.ndarray, side: int, quality: int = 70) -> bytes:
    """A small JPEG of the photo, at most `side` pixels on its longer side (the report's
    cards)."""
    h, w = bgr.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(
        bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
