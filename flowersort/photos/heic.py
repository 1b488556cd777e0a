"""HEIC/HEIF photos (every iPhone since 2017) through pillow-heif, an optional extra.

pillow-heif wraps libheif; its binary wheels bundle the x265 encoder, which is GPL, so it
is not a default dependency: ``pip install 'flowersort[heic]'`` brings it. Without it a
HEIC photo is skipped with a reason that names the extra.

An iPhone HEIC is a grid of 512-px HEVC tiles plus a small embedded thumbnail (320 x 240).
Like a JPEG decoded at a reduced size, a HEIC is decoded from its thumbnail when that has
enough pixels for the network and is a true scaled copy of the photo (same aspect ratio);
otherwise from the full image.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from flowersort.base.errors import BadImage

EXTRA = "pip install 'flowersort[heic]'"
MISSING = f"HEIC/HEIF photo: pillow-heif is not installed ({EXTRA})"
ASPECT_TOLERANCE = 0.03  # a thumbnail is a true copy when its aspect ratio is this close
# a thumbnail is decoded instead of the photo when its short side has this many times the
# pixels the network reads. Dev as HEIC, against 0.893 from the full images: thumbnails of
# just 96 px a side gave 0.867 (HEVC blurs the textures of so small an image), of 192 px
# 0.887 (4 photos of 600, within the seed spread), an iPhone's 320 x 240 0.901
# (benchmarks/heic_accuracy.py). 1.875, not 2, so that the 320 x 180 thumbnail of a 16:9
# iPhone photo (180 = 1.875 x 96) is used: dev cut to 16:9 gave 0.849 from it against 0.853
# from the full image at threshold 0.5 (0.607 and 0.605 at the model's), and decoding the
# whole 4032 x 2268 grid took 588 ms a photo against 8 ms (heic_accuracy.py --wide)
THUMBNAIL_MARGIN = 1.875

HEVC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
AV1_BRANDS = frozenset({b"avif", b"avis"})
GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})  # HEIF of any codec: the others tell which

Kind = Literal["heic", "avif"]
# pillow_heif once imported (on the first HEIF file), False if not installed
_module: ModuleType | Literal[False] | None = None


def library() -> ModuleType | None:
    """pillow_heif, or None when the extra is not installed. Imported on first use: it
    costs about 70 ms, which an archive without HEIC photos need not pay."""
    global _module
    if _module is None:
        try:
            import pillow_heif
        except ImportError:
            _module = False
        else:
            pillow_heif.options.DECODE_THREADS = 1  # parallelism comes from our process pool
            pillow_heif.options.DEPTH_IMAGES = False  # iPhone depth maps: never needed here
            pillow_heif.options.AUX_IMAGES = False
            _module = pillow_heif
    return _module or None


def kind(head: bytes) -> Kind | None:
    """The kind of HEIF file, from its ftyp box: "heic" (HEVC-coded), "avif" (AV1-coded)
    or None (not a HEIF file)."""
    if head[4:8] != b"ftyp":
        return None
    end = min(int.from_bytes(head[:4], "big"), len(head), 512)
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if major in AV1_BRANDS or (major not in HEVC_BRANDS and brands & AV1_BRANDS):
        return "avif"
    if brands & (HEVC_BRANDS | GENERIC_BRANDS):
        return "heic"
    return None


def can_decode(what: Kind) -> bool:
    """Whether the installed pillow-heif has a decoder for this kind (its wheels 1.x bring
    an HEVC decoder, libde265, but no AV1 decoder)."""
    if (pillow_heif := library()) is None:
        return False
    info = pillow_heif.libheif_info()
    decoders = " ".join(info.get("decoders", {}).values()).lower()
    return ("hevc" in decoders or "de265" in decoders) if what == "heic" else "av1" in decoders


def decode(
    data: bytes | memoryview, need: int, max_pixels: int, preview: bool = False
) -> np.ndarray:
    """Decode a HEIF file's primary image to 8-bit BGR, as it is displayed, from its
    thumbnail when that has THUMBNAIL_MARGIN times `need` pixels a side (just `need` with
    `preview`, as --thumbnails and the report ask). Raises BadImage.

    libheif applies the file's rotation and mirroring (the irot and imir properties). An
    iPhone also writes the same rotation as EXIF orientation: applying that as well would
    turn the photo twice, so it is ignored.
    """
    if (pillow_heif := library()) is None:
        raise BadImage(MISSING)
    try:
        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True, bgr_mode=True)
        primary = heif[heif.primary_index]
        width, height = primary.size  # as displayed; read from the header, nothing decoded
        if width * height > max_pixels:
            raise BadImage(f"image too large ({width} x {height} pixels)", lasting=True)
        if min(width, height) == 0:
            raise BadImage("image has no pixels", lasting=True)
        source, pixels = _thumbnail(primary, need if preview else need * THUMBNAIL_MARGIN)
        if pixels is None:
            source, pixels = primary, np.asarray(primary)
    except BadImage:
        raise
    except (ValueError, EOFError, SyntaxError, RuntimeError, OSError, IndexError) as e:
        # libheif's own words, e.g. "Invalid input: No 'meta' box: Cannot read full meta box"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadImage(f"damaged image: HEIC/HEIF: {reason}", lasting=True) from None
    w, h = source.size
    pixels = pixels[:h, :w]  # rows may be padded to the stride
    if pixels.ndim == 2:  # monochrome
        return np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])  # BGR, without alpha


def _thumbnail(primary: Any, need: float) -> tuple[Any, np.ndarray | None]:
    """The smallest embedded thumbnail with at least `need` pixels a side and the
    photo's own aspect ratio (a cropped or letterboxed one is not a scaled copy), and its
    pixels; (None, None) if there is none or it does not decode."""
    width, height = primary.size
    best = None
    for index in range(len(primary.info.get("thumbnails", []))):
        try:
            thumb = primary.get_thumbnail(index)
        except (ValueError, RuntimeError, IndexError):
            continue
        w, h = thumb.size
        if min(w, h) < need or min(w, h) == 0:
            continue
        if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
            continue
        if best is None or w * h < best.size[0] * best.size[1]:
            best = thumb
    if best is None:
        return None, None
    try:
        return best, np.asarray(best)
    except (ValueError, EOFError, SyntaxError, RuntimeError, OSError):
        return None, None  # a damaged thumbnail: the full image may still decode


# ---------------------------------------------------------------- AVIF through OpenCV


def upright(img: np.ndarray, data: bytes | memoryview) -> np.ndarray:
    """Apply the primary item's rotation and mirroring (irot, imir) to an image decoded
    by a decoder that ignores them (OpenCV's AVIF reader), in the order the file lists."""
    for kind, value in transformations(data):
        if kind == "irot":
            img = np.rot90(img, value)  # value quarter turns anticlockwise
        else:
            img = img[::-1] if value == 0 else img[:, ::-1]  # 0: top to bottom, as libheif
    return np.ascontiguousarray(img)


def transformations(data: bytes | memoryview) -> list[tuple[str, int]]:
    """[("irot", quarter turns anticlockwise) or ("imir", axis), ...] of a HEIF/AVIF
    file's primary item, read from its meta box; [] when there are none or the boxes are
    malformed."""
    try:
        meta = _child(data, 0, len(data), b"meta")
        if meta is None:
            return []
        start, end = meta[0] + 4, meta[1]  # a full box: version and flags come first
        pitm, iprp = _child(data, start, end, b"pitm"), _child(data, start, end, b"iprp")
        if pitm is None or iprp is None:
            return []
        width = 2 if data[pitm[0]] == 0 else 4  # version 0: 16-bit item ids
        primary = int.from_bytes(data[pitm[0] + 4 : pitm[0] + 4 + width], "big")
        ipco, ipma = _child(data, *iprp, b"ipco"), _child(data, *iprp, b"ipma")
        if ipco is None or ipma is None:
            return []
        properties = list(_boxes(data, *ipco))
        out = []
        for index in _associations(data, *ipma, primary):
            kind, body, _ = properties[index - 1]  # property indices start at 1
            if kind == b"irot":
                out.append(("irot", data[body] & 3))
            elif kind == b"imir":
                out.append(("imir", data[body] & 1))
        return out
    except (IndexError, ValueError):
        return []


def _boxes(data: bytes | memoryview, start: int, end: int):
    """(type, body start, body end) of each box between start and end."""
    pos = start
    while pos + 8 <= end:
        size, kind, body = (
            int.from_bytes(data[pos : pos + 4], "big"),
            data[pos + 4 : pos + 8],
            pos + 8,
        )
        if size == 1:  # a 64-bit size follows the type
            size, body = int.from_bytes(data[pos + 8 : pos + 16], "big"), pos + 16
        elif size == 0:  # to the end
            size = end - pos
        if size < body - pos or pos + size > end:
            raise ValueError("box runs past its parent")
        yield kind, body, pos + size
        pos += size


def _child(data: bytes | memoryview, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, body, box_end in _boxes(data, start, end):
        if found == kind:
            return body, box_end
    return None


def _associations(data: bytes | memoryview, start: int, end: int, item: int) -> list[int]:
    """Property indices associated with `item`, in order, from an ipma box."""
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4], "big")
    pos = start + 4
    entries = int.from_bytes(data[pos : pos + 4], "big")
    pos += 4
    id_width, index_width = (2 if version < 1 else 4), (2 if flags & 1 else 1)
    for _ in range(entries):
        item_id = int.from_bytes(data[pos : pos + id_width], "big")
        count = data[pos + id_width]
        pos += id_width + 1
        indices = [
            int.from_bytes(data[pos + i * index_width : pos + (i + 1) * index_width], "big")
            & (0x7FFF if index_width == 2 else 0x7F)  # the top bit marks "essential"
            for i in range(count)
        ]
        pos += count * index_width
        if pos > end:
            raise ValueError("ipma runs past its end")
        if item_id == item:
            return indices
    return []
