"""Camera-like JPEGs: an EXIF block with the orientation and a 160 x 120 preview in IFD1,
letterboxed the way cameras fit other aspect ratios into it."""

import struct

import cv2
import numpy as np

PREVIEW = (160, 120)


def preview_of(img: np.ndarray, quality: int = 75) -> bytes:
    h, w = img.shape[:2]
    scale = min(PREVIEW[0] / w, PREVIEW[1] / h)
    small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((PREVIEW[1], PREVIEW[0], 3), np.uint8)
    y, x = (PREVIEW[1] - small.shape[0]) // 2, (PREVIEW[0] - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def exif_block(orientation: int = 1, thumbnail: bytes | None = None) -> bytes:
    """APP1 segment: IFD0 with the orientation, IFD1 pointing at the thumbnail."""
    ifd0_at = 8
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd1_at = ifd0_at + len(ifd0) + 4
    if thumbnail is None:
        tiff = b"II*\x00" + struct.pack("<I", ifd0_at) + ifd0 + struct.pack("<I", 0)
    else:
        thumb_at = ifd1_at + 2 + 2 * 12 + 4
        ifd1 = struct.pack("<H", 2)
        ifd1 += struct.pack("<HHII", 0x0201, 4, 1, thumb_at)
        ifd1 += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack("<I", 0)
        tiff = b"II*\x00" + struct.pack("<I", ifd0_at) + ifd0 + struct.pack("<I", ifd1_at)
        tiff += ifd1 + thumbnail
    return b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff


def camera_jpeg(img: np.ndarray, quality: int = 92, orientation: int = 1) -> bytes:
    """A baseline JPEG of img with an EXIF preview, as a camera writes it."""
    body = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    return body[:2] + exif_block(orientation, preview_of(img)) + body[2:]
