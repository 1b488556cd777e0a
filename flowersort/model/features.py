"""The network's input: a photo shrunk to a square of ``image_size`` pixels, converted to
HSV and cut into a ``grid`` x ``grid`` map of tiles, each tile a small matrix of
histograms and cues (FeatureConfig.mode); and the augmented copies used in training."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np

from flowersort.base.errors import BadImage
from flowersort.photos.decode import cv2, read_image  # cv2 after decode's pixel-count guard

# the first mode is the default of `train --mode`
Mode = Literal[
    "hue-sat-cues",
    "hue-sat-texture",
    "hue-sat-edges",
    "hue-sat-hist",
    "hue-hist",
    "hue",
    "hue-sat-subject",
    "hue-sat-cues-edge-hue",
]
MODES: tuple[str, ...] = get_args(Mode)
Binning = Literal["soft", "hard", "unweighted"]
BINNINGS: tuple[str, ...] = get_args(Binning)
FEATURES_VERSION = 2  # bump when a mode's features change: remembered features then miss
EDGE_HUE = "hue-sat-cues-edge-hue"
MAX_IMAGE_SIZE = 1024  # pixels a side; far above any useful size (the default is 96)
MAX_BINS = 256  # as many as an 8-bit channel has values (the default is 12)
GREY = 0.2  # pixels less saturated than this have no meaningful hue
VIVID = 0.55  # saturation from which a colour counts as vivid
CROP_SIDE = (0.75, 1.0)  # augmentation: a crop keeps this share of each side
TEXTURE_STEP = 0.02  # a neighbour this much brighter (of full scale) counts as brighter
HUE_SHIFT = 0.02  # augmentation: hues turn by up to this share of the circle (7 degrees)


# the columns of a tile's matrix in each histogram mode (each column has `bins` rows; see
# features()); "hue" mode is the tile's raw hue matrix instead
_COLOUR = ("hue", "vivid hue", "grey brightness")
COLUMNS: dict[str, tuple[str, ...]] = {
    "hue-hist": ("hue",),
    "hue-sat-hist": _COLOUR,
    "hue-sat-edges": (*_COLOUR, "edge directions"),
    "hue-sat-texture": (*_COLOUR, "edge directions", "textures"),
    "hue-sat-cues": (*_COLOUR, "edge directions", "textures", "cues"),
    "hue-sat-subject": (*_COLOUR, "edge directions", "textures", "cues"),
    EDGE_HUE: (*_COLOUR, "edge directions", "textures", "cues", "edge hue"),
}


@dataclass(frozen=True)
class FeatureConfig:
    """How a photo becomes the network's input; saved in the model file."""

    mode: Mode = "hue-sat-cues"
    image_size: int = 96  # the photo is resized to image_size x image_size
    grid: int = 6  # tiles per side: the tile map is grid x grid
    bins: int = 12  # bins of each histogram of a tile
    # how a pixel votes in the histograms: split between the two nearest bins, weighted
    # (soft); or, for the ablations in benchmarks/accuracy.py, whole to one bin (hard) or
    # with weight 1 (unweighted)
    binning: Binning = "soft"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown input mode {self.mode!r}")
        if self.binning not in BINNINGS:
            raise ValueError(f"unknown binning {self.binning!r}")
        if not 1 <= self.grid <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"the image size must be at least the grid ({self.grid}) and at most "
                f"{MAX_IMAGE_SIZE} pixels, the grid at least 1"
            )
        if not 2 <= self.bins <= MAX_BINS:
            raise ValueError(f"histograms have at least 2 and at most {MAX_BINS} bins")
        if self.image_size % self.grid:
            raise ValueError("image_size must be a multiple of grid")
        if "textures" in COLUMNS.get(self.mode, ()) and self.bins < TEXTURE_PATTERNS:
            raise ValueError(f"{self.mode} needs at least {TEXTURE_PATTERNS} bins")
        if self.mode == "hue-sat-subject" and self.tile % 2:
            raise ValueError("hue-sat-subject needs tiles of an even number of pixels")

    @property
    def tile(self) -> int:
        return self.image_size // self.grid

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Shape of one tile's input matrix."""
        if self.mode == "hue":
            return (self.tile, self.tile)
        return (self.bins, len(COLUMNS[self.mode]))

    def to_dict(self) -> dict:
        """As saved in a model file; the default binning is left out, so files (and the
        feature cache's keys) stay as they were before binning was a setting."""
        out = asdict(self)
        if self.binning == "soft":
            del out["binning"]
        return out


def to_hsv(bgr: np.ndarray, side: int) -> np.ndarray:
    """Resize to side x side and convert to float HSV: hue in [0, 1), S and V in [0, 1]."""
    small = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[..., 0] /= 360.0  # float input gives hue in degrees
    return hsv  # (side, side, 3)


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


def features(bgr: np.ndarray, cfg: FeatureConfig, hue_shift: float = 0.0) -> np.ndarray:
    """The network's input for one photo: (tiles, *cfg.tile_shape), float32. `hue_shift`
    (a fraction of the hue circle) turns every hue, for augmentation.

    In ``hue`` mode each tile is the raw hue matrix in [0, 1], as in the original article:
    linear, so red sits at both ends, and grey pixels carry OpenCV's hue 0 (the same as
    red). The tile net must learn around both; the histogram modes handle them explicitly
    (see ``hue_histograms``).
    """
    hsv = to_hsv(bgr, cfg.image_size)
    if hue_shift:
        hsv[..., 0] = (hsv[..., 0] + hue_shift) % 1.0
    if cfg.mode == "hue":
        return cut_tiles(np.ascontiguousarray(hsv[..., 0]), cfg.tile)  # (T, t, t)
    if cfg.mode == "hue-hist":
        return hue_histograms(hsv, cfg.tile, cfg.bins, cfg.binning)[..., None]  # (T, bins, 1)
    colour = hue_sat_histograms(hsv, cfg.tile, cfg.bins, cfg.binning)  # (T, bins, 3)
    if cfg.mode == "hue-sat-hist":
        return colour
    magnitude, degrees = brightness_edges(hsv)
    edges = edge_orientations(magnitude, degrees, cfg.tile, cfg.bins, cfg.binning)[..., None]
    if cfg.mode == "hue-sat-edges":
        return np.concatenate([colour, edges], axis=-1)  # (T, bins, 4)
    texture = texture_histograms(hsv, cfg.tile, cfg.bins)[..., None]
    if cfg.mode == "hue-sat-texture":
        return np.concatenate([colour, edges, texture], axis=-1)  # (T, bins, 5)
    more = cfg.mode == "hue-sat-subject"
    cues = (more_cues if more else subject_cues)(hsv, cfg.tile, cfg.bins)[..., None]
    if cfg.mode == EDGE_HUE:
        edge_hue = edge_hue_histograms(hsv, magnitude, cfg.tile, cfg.bins, cfg.binning)
        return np.concatenate(
            [colour, edges, texture, cues, edge_hue[..., None]], axis=-1
        )  # (T, bins, 7)
    return np.concatenate([colour, edges, texture, cues], axis=-1)  # (T, bins, 6)


def load_features(
    path: str | os.PathLike, cfg: FeatureConfig, thumbnail: bool = False, copies: int = 0
) -> np.ndarray:
    """read_image + features: raises BadImage for anything that is not a usable photo.

    With `copies`, (1 + copies, tiles, *tile_shape): the photo's features, then that many
    augmented ones (augmented_features) from the one decoded image. The crops depend only
    on the file's name, so a training run is the same whichever process reads which photo
    and however the folders were spelt on the command line."""
    img = read_image(path, cfg.image_size, thumbnail)
    with processing():
        if not copies:
            return features(img, cfg)
        rng = np.random.default_rng(zlib.crc32(os.fsencode(os.path.basename(path))))
        return np.concatenate([features(img, cfg)[None], augmented_features(img, cfg, copies, rng)])


@contextmanager
def processing() -> Iterator[None]:
    """A decoded image that OpenCV or numpy cannot process is not a usable photo."""
    try:
        yield
    except (cv2.error, ValueError) as e:
        raise BadImage(f"cannot process the decoded image ({e})") from None


# where view_features cuts its crops, in this order
VIEW_CROPS = ("centre", "top left", "top right", "bottom left", "bottom right")


def view_features(bgr: np.ndarray, cfg: FeatureConfig, crops: int, side: float) -> np.ndarray:
    """Feature maps of the first `crops` crops of VIEW_CROPS, each keeping `side` of each
    side of the photo: (crops, tiles, *cfg.tile_shape), for Model.score_image."""
    height, width = bgr.shape[:2]
    h, w = max(1, round(height * side)), max(1, round(width * side))
    spots = [((height - h) // 2, (width - w) // 2), (0, 0), (0, width - w)]
    spots += [(height - h, 0), (height - h, width - w)]
    return np.stack([features(bgr[t : t + h, s : s + w], cfg) for t, s in spots[:crops]])


def augmented_features(
    bgr: np.ndarray, cfg: FeatureConfig, copies: int, rng: np.random.Generator
) -> np.ndarray:
    """`copies` feature maps of random crops of the photo (each side 75-100 % of the
    photo's, anywhere in it), each with a small hue shift (up to 7 degrees either way):
    (copies, tiles, *cfg.tile_shape). Flips are left to training, which does them for free
    on the features."""
    height, width = bgr.shape[:2]
    out = []
    for _ in range(copies):
        side = rng.uniform(*CROP_SIDE)
        h, w = max(1, round(height * side)), max(1, round(width * side))
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        crop = bgr[top : top + h, left : left + w]
        out.append(features(crop, cfg, rng.uniform(-HUE_SHIFT, HUE_SHIFT)))
    return np.stack(out)


def flip_tiles(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mirror a batch of feature maps (N, T, a, b) left to right, for augmentation."""
    n = x.shape[0]
    grid = x.reshape(n, cfg.grid, cfg.grid, *x.shape[2:])[:, :, ::-1]
    if cfg.mode == "hue":
        grid = grid[..., ::-1]  # mirror the pixels inside each tile too
    if "edge directions" in COLUMNS.get(cfg.mode, ()):  # edge angle a -> 180 - a
        column = COLUMNS[cfg.mode].index("edge directions")
        grid = grid.copy()
        grid[..., column] = grid[..., ::-1, column]
    return np.ascontiguousarray(grid.reshape(x.shape))
