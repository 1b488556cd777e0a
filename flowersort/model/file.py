"""The model file: weights plus everything needed to use them, in one .npz.

Keys: ``format`` (version), ``features``, ``views`` and ``nets`` (JSON configs, one per
member net), ``threshold``, ``summary`` (JSON: how it was trained and its validation
figures) and one array per weight of each member (``net0.tile.0.w``, ``net2.head.1.b``,
...). Format 2 (no ``views``: each photo scored alone) and format 1 (one net: ``net`` and
``tile.0.w``, ...) are still read. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from flowersort.base.errors import ModelError
from flowersort.base.xdg import current_umask
from flowersort.model.features import (
    VIEW_CROPS,
    FeatureConfig,
    features,
    flip_tiles,
    processing,
    view_features,
)
from flowersort.model.network import NetConfig, TwoStageNet, sigmoid

FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
DEFAULT_MODEL_NAME = "default.npz"


@dataclass(frozen=True)
class ViewConfig:
    """How a photo is looked at when scored; saved in the model file. With `crops`, a photo
    that scores `gate` or more on its own is looked at again in that many crops of it
    (features.VIEW_CROPS, each keeping `side` of each side), and its score is the mean
    over the photo and its crops: a steadier ranking than one look (benchmarks/views.py),
    paid for only by the photos that could be flowers."""

    crops: int = 0  # 0: each photo scored alone (models before format 3)
    side: float = 0.85
    gate: float = 0.3

    def __post_init__(self) -> None:
        # read from a model file's JSON: 5.0 or true would pass the comparisons below
        whole = isinstance(self.crops, int) and not isinstance(self.crops, bool)
        if not whole or not 0 <= self.crops <= len(VIEW_CROPS):
            raise ValueError(f"a photo has 0 to {len(VIEW_CROPS)} crops, not {self.crops}")
        flags = isinstance(self.side, bool) or isinstance(self.gate, bool)
        if flags or not 0 < self.side <= 1 or not 0 <= self.gate <= 1:
            raise ValueError("a crop's side and the gate are shares between 0 and 1")


def library_versions() -> dict[str, str]:
    """The versions a model's scores depend on: a new OpenCV decodes and resizes a photo to
    other pixels, a new numpy may sum in another order. Saved in a trained model's summary
    and in models/default.reference.json beside the shipped model's reference scores."""
    import platform

    import cv2

    return {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}


@dataclass
class Model:
    """Member two-stage nets over the same input; the score is their mean probability."""

    features: FeatureConfig
    nets: list[TwoStageNet]
    input_mean: np.ndarray  # (a, b): per-entry mean of a tile's input over the examples
    input_std: np.ndarray  # (a, b): and its standard deviation
    threshold: float = 0.5
    summary: dict = field(default_factory=dict)
    views: ViewConfig = field(default_factory=ViewConfig)

    @property
    def review_band(self) -> float | None:
        """The review band train chose (kept in the file's summary), None in a model
        trained before it was."""
        band = self.summary.get("review_band")
        return None if band is None else float(band)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Feature maps (N, tiles, a, b) scaled to zero mean and unit variance per entry."""
        return (x - self.input_mean) / self.input_std

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Each photo's flower probability in [0, 1] over the photo alone, for feature maps
        (N, tiles, a, b), as score_image takes it first: the mean of the member nets'
        probabilities (see `probability`), one network call per photo, so a score is the
        same to the last bit whatever it was scored with."""
        x = self.normalize(x)
        alone = [probability(self.nets, x[i : i + 1], self.features)[0] for i in range(len(x))]
        return np.array(alone, np.float64)

    def score_image(self, bgr: np.ndarray) -> float:
        """A decoded photo's flower score in [0, 1], as classify and evaluate give it and
        train chooses the threshold on: the photo alone, and with self.views, the mean over
        the photo and its crops for a photo that scores views.gate or more alone. Raises
        BadImage for an image that cannot be processed; an error of the nets is not the
        photo's, so it is not one."""
        with processing():
            x = features(bgr, self.features)[None]
        alone = float(self.scores(x)[0])
        if not self.views.crops or alone < self.views.gate:
            return alone
        with processing():
            crops = view_features(bgr, self.features, self.views.crops, self.views.side)
        total = float(probability(self.nets, self.normalize(crops), self.features).sum())
        return (alone + total) / (1 + len(crops))

    def flower_evidence(self, x: np.ndarray) -> np.ndarray:
        """Where the network saw flowers: per tile, gradient x input of each member's logit
        with respect to its tile map, positive part, averaged over the members and scaled
        so the strongest tile is 1. (N, grid, grid) in [0, 1], for the report's heat map."""
        g = self.features.grid
        x = self.normalize(x)
        evidence = np.zeros(x.shape[:2])
        for net in self.nets:
            tmap = net.tile_map(x)  # (N, T, c)
            net.head_forward(tmap)
            dmap = net.head_backward(np.ones(x.shape[0]))  # d logit / d tile map
            evidence += np.maximum((dmap * tmap).sum(axis=-1), 0)  # (N, T)
        peak = evidence.max(axis=1, keepdims=True)
        return (evidence / np.where(peak > 0, peak, 1)).reshape(-1, g, g)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same folder, then os.replace."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "format": np.array(FORMAT_VERSION),
            "features": np.array(json.dumps(self.features.to_dict())),
            "views": np.array(json.dumps(asdict(self.views))),
            "nets": np.array([net.cfg.to_json() for net in self.nets]),
            "threshold": np.array(self.threshold),
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "summary": np.array(json.dumps(self.summary)),
            **{
                f"net{i}.{key}": value
                for i, net in enumerate(self.nets)
                for key, value in net.state().items()
            },
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp makes it private
                # numpy's later stubs take **arrays for its allow_pickle: bool as well
                np.savez(f, **arrays)  # type: ignore[arg-type, unused-ignore]
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def probability(nets: list[TwoStageNet], x: np.ndarray, features: FeatureConfig) -> np.ndarray:
    """The nets' mean flower probability for normalised feature maps, in one call of the
    nets, each net over the photo and its mirror image, both of which it learnt from.

    A float32 matrix product's last digits depend on its size, so a photo is always scored
    in calls of the same size (Model.scores: the photo alone; score_image: its crops
    together): its score is then the same to the last bit whatever it was scored with."""
    mirrored = flip_tiles(x, features)
    total = sum(sigmoid(net.forward(x)) + sigmoid(net.forward(mirrored)) for net in nets)
    return total / (2 * len(nets))


def load_model(path: str | os.PathLike) -> Model:
    """Load a model file, or raise ModelError saying in one line what is wrong."""
    path = Path(path)
    _check_model_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(
            f"model file {path} is corrupt ({e}): train it again or restore it from a backup"
        ) from None
    if "format" not in arrays:
        held = ", ".join(sorted(arrays)[:5]) or "nothing"
        raise ModelError(
            f"model file {path} is a numpy archive of another program (it holds {held}), "
            f"not a flowersort model: give a model written by 'flowersort train'"
        )
    try:
        version = int(arrays["format"])
        if version > max(READABLE_FORMATS):
            raise ModelError(
                f"model file {path} was written by a newer flowersort (model format {version}; "
                f"this version reads formats {', '.join(map(str, READABLE_FORMATS))}): "
                f"upgrade flowersort to use it"
            )
        if version not in READABLE_FORMATS:
            raise ModelError(
                f"model file {path} has format {version}; this flowersort reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}: retrain it with 'flowersort train'"
            )
        features = FeatureConfig(**json.loads(str(arrays["features"])))
        nets = _load_nets(arrays) if version >= 2 else _load_nets_v1(arrays)
        if not nets:
            raise ValueError("no member nets")
        threshold = float(arrays["threshold"])
        mean, std = arrays["input_mean"], arrays["input_std"]
        if mean.shape != features.tile_shape or std.shape != features.tile_shape:
            raise ValueError("input normalisation does not match the tile shape")
        numbers = [a for a in arrays.values() if np.issubdtype(a.dtype, np.number)]
        if not all(np.isfinite(a).all() for a in numbers) or not np.isfinite(threshold):
            raise ValueError("it holds NaN or infinite numbers")
        summary = json.loads(str(arrays["summary"]))
        views = ViewConfig(**json.loads(str(arrays["views"]))) if version >= 3 else ViewConfig()
    except ModelError:
        raise
    except (KeyError, ValueError, TypeError, AssertionError, RecursionError) as e:
        raise ModelError(
            f"model file {path} is incomplete or incompatible ({e}): train it again with "
            f"'flowersort train'"
        ) from None
    return Model(features, nets, mean, std, threshold, summary, views)


def _check_model_file(path: Path) -> None:
    """Say what the file is when it cannot be a model: a folder, a text file, an image,
    a single numpy array, or anything else that is not a .npz (zip) archive."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.npz"))
        hint = f" such as {path / inside[0]}" if inside else " (.npz) written by 'flowersort train'"
        raise ModelError(f"model file {path} is a folder: give the model file{hint}")
    if not path.is_file():
        raise ModelError(
            f"model file not found: {path} (train one with 'flowersort train', or leave out "
            f"--model for the model shipped with flowersort)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read: {e.strerror}") from None
    if head.startswith(b"PK"):
        return
    if not head:
        what = "is empty"
    elif head.startswith(b"\x93NUMPY"):
        what = "is a single numpy array (.npy)"
    elif head.startswith((b"\xff\xd8\xff", b"\x89PNG")):
        what = "is an image"
    elif head.startswith(b"\x80") and head.rstrip().endswith(b"."):
        what = "is a Python pickle"
    else:
        try:
            head.decode("utf-8")
            what = "is a text file"
        except UnicodeDecodeError:
            what = "holds unknown binary data"
    raise ModelError(
        f"model file {path} {what}, not a flowersort model: give the .npz file written by "
        f"'flowersort train'"
    )


def _load_nets(arrays: dict) -> list[TwoStageNet]:
    nets = []
    for i, config in enumerate(arrays["nets"].reshape(-1)):
        net = TwoStageNet(NetConfig.from_json(str(config)))
        prefix = f"net{i}."
        net.load_state({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
        nets.append(net)
    return nets


def _load_nets_v1(arrays: dict) -> list[TwoStageNet]:
    net = TwoStageNet(NetConfig.from_json(str(arrays["net"])))
    net.load_state(arrays)
    return [net]


def default_model_path() -> Path:
    """The model shipped with flowersort: in the installed package, else in the checkout."""
    packaged = resources.files("flowersort").joinpath("models").joinpath(DEFAULT_MODEL_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
