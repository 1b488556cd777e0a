"""The training examples read from the two example folders (FLOWERS, NOFLOWERS): refused
when the folders share a photo, read (with augmented crops, through the feature cache) into
arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowersort.base.errors import TrainingError
from flowersort.model.features import FeatureConfig
from flowersort.photos.archive import (
    Labelled,
    Skips,
    check_distinct,
    display,
    labelled_photos,
    walk,
)
from flowersort.safefs.identity import content_key
from flowersort.scoring.pipeline import scan
from flowersort.training.featcache import FeatureCache


@dataclass
class Examples:
    """The readable photos of the two folders, one row each, with their labels."""

    x: np.ndarray  # (N, tiles, a, b) float32
    y: np.ndarray  # (N,) 1.0 = flower
    paths: list[str]
    skipped: list[tuple[str, str]]
    augmented: np.ndarray | None = None  # (N, copies, tiles, a, b): crops of each photo


def check_example_folders(flowers: Path, noflowers: Path) -> None:
    """Raise TrainingError when the two folders cannot be two classes: the same folder,
    one inside the other, or files in both (the same file linked twice, or the same
    bytes): such a photo would teach the net both answers."""
    check_distinct(flowers, noflowers)
    shared = _shared_files(flowers, noflowers)
    if shared:
        first, second = shared[0]
        raise TrainingError(
            f"FLOWERS and NOFLOWERS share {len(shared)} file{'s' if len(shared) > 1 else ''} "
            f"(e.g. {display(first)} and {display(second)}): a photo cannot teach both "
            f"classes; keep it in one folder"
        )


def _shared_files(flowers: Path, noflowers: Path) -> list[tuple[str, str]]:
    """Pairs of paths, one in each folder, that are the same file (hard links) or hold
    the same bytes (only files of equal size are read)."""

    def index(folder: Path) -> dict[tuple[int, int, int], str]:
        out = {}
        for path in walk(folder):
            try:
                st = os.stat(path)
            except OSError:
                continue  # reported when the photos are read
            out[(st.st_size, st.st_dev, st.st_ino)] = path
        return out

    digests: dict[str, str] = {}

    def digest(path: str) -> str:
        if path not in digests:
            try:
                digests[path] = content_key(path)[1]
            except OSError:
                digests[path] = path  # unreadable: reported when the photos are read
        return digests[path]

    a, b = index(flowers), index(noflowers)
    shared = [(a[k], b[k]) for k in a.keys() & b.keys()]
    by_size: dict[int, list[tuple[tuple, str]]] = {}
    for key, path in a.items():
        by_size.setdefault(key[0], []).append((key, path))
    for key, path in b.items():
        for other_key, other in by_size.get(key[0], []):
            if other_key != key and digest(other) == digest(path):
                shared.append((other, path))
    return sorted(shared)


def load_examples(
    flowers: Path,
    noflowers: Path,
    cfg: FeatureConfig,
    on_skip=None,
    workers: int | None = None,
    on_photo=None,
    copies: int = 0,
    cache_folder: Path | None = None,
) -> Examples:
    """Feature maps of every readable photo in the two folders (searched recursively),
    with `copies` augmented copies of each (random crops, small hue shifts) when asked;
    on_photo() is called once per file read, for a progress bar. With `cache_folder`,
    features decoded by an earlier run are taken from there (see featcache) and new ones
    are added to it."""
    xs, ys, paths = [], [], []
    cache = FeatureCache(cache_folder, cfg, copies) if cache_folder is not None else None
    skips = Skips(on_skip)
    labels: dict[str, float] = {}

    def lookup(photo: Labelled):
        labels[photo.path] = float(photo.flower)
        if cache is not None and (x := cache.get(photo.path)) is not None:
            return photo.path, x
        return photo.path

    photos = labelled_photos(Path(flowers), Path(noflowers), skips)
    for photo in scan(map(lookup, photos), cfg, workers, copies=copies):
        path = os.fspath(photo.path)  # as lookup gave it
        if on_photo:
            on_photo()
        if photo.skipped:
            skips(path, photo.skip_reason)
            continue
        x = photo.known if photo.features is None else photo.features
        if cache is not None and photo.known is None:
            cache.put(path, x)
        xs.append(x)
        ys.append(labels[path])
        paths.append(path)
    skipped = skips.found
    if not xs:
        raise TrainingError("no readable photos in the example folders")
    x = np.stack(xs)
    if copies:
        return Examples(x[:, 0], np.array(ys), paths, skipped, x[:, 1:])
    return Examples(x, np.array(ys), paths, skipped)
