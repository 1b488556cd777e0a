"""The columns of a tile's matrix, each computed for every tile of an HSV photo at once:
the histograms (hue, vivid hue and grey brightness; edge directions; the hue on edges;
textures) and the subject cues, and how a pixel votes in a histogram (the binnings)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from flowersort.photos.decode import cv2  # cv2 after decode's pixel-count guard

Binning = Literal["soft", "hard", "unweighted"]
BINNINGS: tuple[str, ...] = get_args(Binning)
GREY = 0.2  # pixels less saturated than this have no meaningful hue
VIVID = 0.55  # saturation from which a colour counts as vivid
TEXTURE_STEP = 0.02  # a neighbour this much brighter (of full scale) counts as brighter


def cut_tiles(plane: np.ndarray, tile: int) -> np.ndarray:
    """Cut (H, W, ...) into (R*C, tile, tile, ...) tiles, row-major, with one reshape."""
    rows, cols = plane.shape[0] // tile, plane.shape[1] // tile
    rest = plane.shape[2:]
    t = plane[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile, *rest)
    return t.swapaxes(1, 2).reshape(rows * cols, tile, tile, *rest)


def _soft_histograms(
    values: np.ndarray,
    weight: np.ndarray,
    bins: int,
    circular: bool | np.ndarray,
    column: np.ndarray | int = 0,
    columns: int = 1,
) -> np.ndarray:
    """Per-row histograms of values in [0, 1] (rows = tiles), each vote split linearly
    between the two nearest bin centres, normalised by the row length: (rows, bins), or
    (rows, bins, columns) when each value names the column it votes in. Circular values
    wrap (the neighbour of the last bin is the first); the others' outer half-bins count
    fully to the end bins. `circular` may say so per value."""
    rows, n = values.shape
    pos = values * bins - 0.5
    low = np.floor(pos)
    frac = pos - low
    low = low.astype(np.int64)
    # values in [0, 1] put low in [-1, bins - 1] and high in [0, bins]: only those two
    # ends leave the histogram, to the other end (circular) or to their own (not); cheaper
    # than a remainder, which costs as much here as a whole histogram
    high = low + 1
    low_end: int | np.ndarray
    high_end: int | np.ndarray
    if np.ndim(circular) == 0:
        low_end, high_end = (bins - 1, 0) if circular else (0, bins - 1)
    else:
        low_end = np.where(circular, bins - 1, 0)
        high_end = np.where(circular, 0, bins - 1)
    low = np.where(low < 0, low_end, low)
    high = np.where(high == bins, high_end, high)
    base = np.arange(rows)[:, None] * (bins * columns) + column  # flat (row, bin, column)
    size = rows * bins * columns
    hist = np.bincount((base + columns * low).ravel(), (weight * (1 - frac)).ravel(), size)
    hist += np.bincount((base + columns * high).ravel(), (weight * frac).ravel(), size)
    shape = (rows, bins) if columns == 1 else (rows, bins, columns)
    return (hist.reshape(shape) / n).astype(np.float32)


def _hard_histograms(values, weight, bins: int, column=0, columns: int = 1) -> np.ndarray:
    """Ablation: each pixel's whole vote to the bin it falls in (so nothing wraps around);
    otherwise as _soft_histograms."""
    rows, n = values.shape
    low = np.minimum((values * bins).astype(np.int64), bins - 1)
    index = np.arange(rows)[:, None] * (bins * columns) + columns * low + column
    hist = np.bincount(index.ravel(), weight.ravel(), rows * bins * columns)
    shape = (rows, bins) if columns == 1 else (rows, bins, columns)
    return (hist.reshape(shape) / n).astype(np.float32)


def _histograms(binning: Binning, values, weight, bins, circular, column=0, columns=1):
    """Per-tile histograms as FeatureConfig.binning says."""
    if binning == "hard":
        return _hard_histograms(values, weight, bins, column, columns)
    if binning == "unweighted":
        weight = np.ones_like(weight)
    return _soft_histograms(values, weight, bins, circular, column, columns)


def hue_histograms(hsv: np.ndarray, tile: int, bins: int, binning: Binning = "soft") -> np.ndarray:
    """One circular, chroma-weighted hue histogram per tile: (tiles, bins).

    Hue is circular (red is both 0 and 1), so each pixel's vote is split linearly between
    its two nearest bin centres, and the last bin's neighbour is the first: red near 0.99
    and red near 0.01 land in the same pair of bins. Each pixel votes with its chroma
    (saturation x value), so grey, white and black pixels, whose hue means nothing, barely
    vote; a tile's histogram sums to its mean chroma, not to 1.
    """
    tiles = cut_tiles(hsv, tile).reshape(-1, tile * tile, 3)  # (T, t*t, 3)
    hue, sat, val = tiles[..., 0], tiles[..., 1], tiles[..., 2]
    return _histograms(binning, hue, sat * val, bins, True)


def hue_sat_histograms(
    hsv: np.ndarray, tile: int, bins: int, binning: Binning = "soft"
) -> np.ndarray:
    """Per tile a (bins, 3) matrix: the circular hue histogram of softly saturated pixels,
    that of vivid pixels (both weighted by value, so dark pixels barely vote), and the
    brightness histogram of grey pixels, whose hue means nothing but whose brightness
    tells white petals from grey walls. Saturation and value help here: see docs/experiments.md."""
    tiles = cut_tiles(hsv, tile).reshape(-1, tile * tile, 3)  # (T, t*t, 3)
    hue, sat, val = tiles[..., 0], tiles[..., 1], tiles[..., 2]
    # every pixel votes in exactly one of the three histograms: all three in one pass
    grey = sat < GREY
    column = 2 * grey + (sat >= VIVID)  # 0, 1 or 2: no pixel is both grey and vivid
    values = np.where(grey, val, hue)
    weight = np.where(grey, np.float32(1), val)
    return _histograms(binning, values, weight, bins, ~grey, column, 3)  # brightness: no wrap


def brightness_edges(hsv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's brightness-gradient magnitude and direction (degrees in [0, 360]: OpenCV's
    cartToPolar can round a direction just below 0 up to 360), from 3 x 3 Sobel filters:
    computed once per photo for the edge columns."""
    value = np.ascontiguousarray(hsv[..., 2])
    gx = cv2.Sobel(value, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(value, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.cartToPolar(gx, gy, angleInDegrees=True)


def edge_orientations(
    magnitude: np.ndarray, degrees: np.ndarray, tile: int, bins: int, binning: Binning = "soft"
) -> np.ndarray:
    """Per tile the histogram of brightness-edge directions, each pixel voting with its
    gradient magnitude (brightness_edges): (tiles, bins). Directions are taken modulo 180
    degrees (bin 0 starts at a horizontal gradient) and binned circularly. Petals, leaves
    and stems give many edges in all directions; plates, fur, skies and walls few or one
    way."""
    # modulo 180 by subtraction, exact for angles in [0, 360] (cartToPolar can round up to
    # 360): a float remainder costs as much as the histogram itself
    direction = np.where(degrees >= 180.0, degrees - 180.0, degrees)
    direction = np.where(direction >= 180.0, direction - 180.0, direction) / 180.0
    magnitude = cut_tiles(magnitude, tile).reshape(-1, tile * tile)
    direction = cut_tiles(direction, tile).reshape(-1, tile * tile)
    return _histograms(binning, direction, magnitude, bins, True)


def edge_hue_histograms(
    hsv: np.ndarray, magnitude: np.ndarray, tile: int, bins: int, binning: Binning = "soft"
) -> np.ndarray:
    """Per tile the circular hue histogram of the coloured pixels on brightness edges, each
    voting with its gradient magnitude (brightness_edges) times its saturation: (tiles,
    bins). Beside the plain hue histogram it tells the colour of outlines (petal rims,
    veins, a flower against its leaves) from that of smooth surfaces (fruit skin, a wall,
    a shirt)."""
    weight = magnitude * np.where(hsv[..., 1] < GREY, 0, hsv[..., 1])
    hue = cut_tiles(np.ascontiguousarray(hsv[..., 0]), tile).reshape(-1, tile * tile)
    weight = cut_tiles(weight, tile).reshape(-1, tile * tile)
    return _histograms(binning, hue, weight, bins, True)


def _texture_labels() -> np.ndarray:
    """For each 8-bit ring pattern (bit i: neighbour i is brighter), its texture label: the
    number of brighter neighbours (0-8) when they form one unbroken arc (at most two 0/1
    changes round the ring), else 9 ("no simple shape")."""
    labels = np.empty(256, np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        changes = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        labels[code] = sum(bits) if changes <= 2 else TEXTURE_PATTERNS - 1
    return labels


TEXTURE_PATTERNS = 10
TEXTURE_LABELS = _texture_labels()
RING = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]  # in order


def texture_histograms(hsv: np.ndarray, tile: int, bins: int) -> np.ndarray:
    """Per tile the share of pixels of each brightness texture: (tiles, bins), of which the
    first 10 are used. A pixel's texture is which of its 8 neighbours are brighter than it
    by TEXTURE_STEP or more, counted so that turning or mirroring the photo does not change
    it (rotation-invariant uniform local binary patterns): 0 a bright spot or flat area,
    8 a dark spot, 1-7 edges and corners, 9 the rest. Petals, fur, food and walls differ
    here where their colours do not."""
    value = np.ascontiguousarray(hsv[..., 2])
    height, width = value.shape
    padded = cv2.copyMakeBorder(value, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    level = value + TEXTURE_STEP
    code = np.zeros((height, width), np.uint8)
    for bit, (dy, dx) in enumerate(RING):
        brighter = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] >= level
        code |= brighter.view(np.uint8) << bit
    labels = cut_tiles(np.take(TEXTURE_LABELS, code), tile).reshape(-1, tile * tile)
    rows = labels.shape[0]
    index = (labels + np.arange(rows)[:, None] * bins).ravel()
    counts = np.bincount(index, minlength=rows * bins).reshape(rows, bins)
    return (counts / (tile * tile)).astype(np.float32)


CUES = ("sharpness", "saturation", "sharpness - border", "saturation - border")  # rows


def _border(grid: int) -> np.ndarray:
    """(grid * grid,) True for the tiles of the outer ring."""
    ring = np.ones((grid, grid), bool)
    ring[1:-1, 1:-1] = False
    return ring.ravel()


def subject_cues(hsv: np.ndarray, tile: int, bins: int) -> np.ndarray:
    """What tells a flower subject from a colourful scene, per tile: (tiles, bins), the CUES
    in the first rows and 0 in the rest (the column has as many rows as the histograms).

    Sharpness is the log variance of the brightness Laplacian, saturation the tile's mean;
    the "- border" rows are the tile's value minus the mean over the outer ring of tiles,
    so a sharp, saturated centre over a soft background stands out whatever the photo's
    overall sharpness (which depends on the camera and the compression more than on the
    subject)."""
    return _subject_cues(hsv, brightness_laplacian(hsv), tile, bins)


def brightness_laplacian(hsv: np.ndarray) -> np.ndarray:
    """The Laplacian of the brightness plane, which the sharpness cues measure."""
    return cv2.Laplacian(np.ascontiguousarray(hsv[..., 2]), cv2.CV_32F, ksize=1)


def _subject_cues(hsv: np.ndarray, lap: np.ndarray, tile: int, bins: int) -> np.ndarray:
    sharp = np.log(cut_tiles(lap, tile).reshape(-1, tile * tile).var(axis=1) + 1e-5)  # (T,)
    sat = cut_tiles(np.ascontiguousarray(hsv[..., 1]), tile).reshape(-1, tile * tile).mean(1)
    border = _border(round(np.sqrt(len(sharp))))
    cues = np.zeros((len(sharp), bins), np.float32)
    cues[:, : len(CUES)] = np.stack(
        [sharp, sat, sharp - sharp[border].mean(), sat - sat[border].mean()], axis=1
    )
    return cues


MORE_CUES = (
    "sharpness spread of the quarter tiles",
    "sharpness around (3 x 3 tiles)",
    "saturation around (3 x 3 tiles)",
    "brightness - border",
)  # rows after CUES in hue-sat-subject


def more_cues(hsv: np.ndarray, tile: int, bins: int) -> np.ndarray:
    """subject_cues plus the MORE_CUES rows: (tiles, bins). The spread is the largest minus
    the smallest log Laplacian variance of the tile's four quarters (a finer scale: a petal
    edge in one corner, a uniform texture in all four); "around" is the mean over the tile
    and its neighbours (a coarser scale, edge tiles repeated); the last row is the tile's
    mean brightness minus that of the outer ring (a lit subject over a darker ground)."""
    lap = brightness_laplacian(hsv)  # once for both scales
    cues = _subject_cues(hsv, lap, tile, bins)
    grid = hsv.shape[0] // tile
    value = hsv[..., 2]
    half = max(tile // 2, 1)
    quarters = np.log(cut_tiles(lap, half).reshape(-1, half * half).var(axis=1) + 1e-5)
    quarters = quarters.reshape(grid, 2, grid, 2).transpose(0, 2, 1, 3).reshape(grid * grid, 4)
    around = [
        cv2.blur(cues[:, row].reshape(grid, grid), (3, 3), borderType=cv2.BORDER_REPLICATE)
        for row in (0, 1)
    ]
    bright = cut_tiles(value, tile).reshape(-1, tile * tile).mean(axis=1)
    n = len(CUES)
    cues[:, n] = quarters.max(axis=1) - quarters.min(axis=1)
    cues[:, n + 1] = around[0].ravel()
    cues[:, n + 2] = around[1].ravel()
    cues[:, n + 3] = bright - bright[_border(grid)].mean()
    return cues
