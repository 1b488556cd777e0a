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
from flowersort.model.columns import (
    BINNINGS,
    TEXTURE_PATTERNS,
    Binning,
    brightness_edges,
    cut_tiles,
    edge_hue_histograms,
    edge_orientations,
    hue_histograms,
    hue_sat_histograms,
    more_cues,
    subject_cues,
    texture_histograms,
)
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
FEATURES_VERSION = 2  # bump when a mode's features change: remembered features then miss
EDGE_HUE = "hue-sat-cues-edge-hue"
MAX_IMAGE_SIZE = 1024  # pixels a side; far above any useful size (the default is 96)
MAX_BINS = 256  # as many as an 8-bit channel has values (the default is 12)
CROP_SIDE = (0.75, 1.0)  # augmentation: a crop keeps this share of each side
HUE_SHIFT = 0.02  # augmentation: hues turn by up to this share of the circle (7 degrees)


# the columns of a tile's matrix in each histogram mode (each column has `bins` rows; see
# features() and flowersort.model.columns); "hue" mode is the tile's raw hue matrix instead
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
