"""HEIC files made with pillow-heif (a test dependency), laid out as an iPhone writes them:
HEVC tiles, an optional embedded thumbnail, and for a portrait photo landscape pixels with
an `irot` rotation and the same rotation as EXIF orientation 6."""

from __future__ import annotations

import io

import numpy as np
import pytest

try:
    import pillow_heif
except ImportError:
    pillow_heif = None

needs_pillow_heif = pytest.mark.skipif(pillow_heif is None, reason="pillow-heif is not installed")

# the ftyp box of an iPhone HEIC, enough for a file to be recognised as one
HEIC_HEADER = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"


def exif_orientation(value: int) -> bytes:
    """A big-endian TIFF block holding only the orientation tag."""
    return b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00" + bytes(
        [value, 0, 0, 0, 0, 0, 0]
    )


def heic_bytes(
    bgr: np.ndarray, thumbnail: int | None = None, tile: int | None = None, **save
) -> bytes:
    """A HEIC of a BGR image; `thumbnail`: the long side of an embedded thumbnail."""
    h, w = bgr.shape[:2]
    heif = pillow_heif.from_bytes("BGR", (w, h), np.ascontiguousarray(bgr).tobytes())
    out = io.BytesIO()
    if tile:
        save["tile_size"] = tile
    save.setdefault("enc_params", {"preset": "ultrafast"})  # 8x faster to write, same layout
    heif.save(out, quality=92, thumbnails=[thumbnail] if thumbnail else [], **save)
    return out.getvalue()


def portrait_heic(upright: np.ndarray, thumbnail: int | None = None) -> bytes:
    """A HEIC displayed as `upright` (a portrait BGR image) but stored as an iPhone does:
    landscape pixels, an irot property turning them a quarter clockwise, and EXIF
    orientation 6 saying the same. A reader that applies both turns it twice."""
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # a quarter anticlockwise: landscape
    # pillow-heif writes an irot box from an EXIF orientation; 3 (half a turn) stores the
    # pixels as they are with irot angle 2, which is then set to 3 (270 degrees
    # anticlockwise: a quarter clockwise), the same byte count
    data = heic_bytes(stored, thumbnail, exif=exif_orientation(3))
    at = data.index(b"irot") + 4
    assert data[at] == 2 and data.count(b"irot") == 1
    data = data[:at] + b"\x03" + data[at + 1 :]
    assert data.count(exif_orientation(3)) == 1
    data = data.replace(exif_orientation(3), exif_orientation(6))
    shown = np.asarray(pillow_heif.open_heif(data, bgr_mode=True))  # libheif as the reference
    assert shown.shape == upright.shape and np.abs(shown.astype(int) - upright).mean() < 8
    return data
