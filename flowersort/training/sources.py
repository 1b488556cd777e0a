"""Where each training photo comes from, and folds that keep each source whole.

A user's archive holds cameras, places and subjects that no example folder has. A threshold
chosen on photos from the sources the nets learnt from holds on those sources only; chosen
on photos of sources no net saw, it holds on unseen ones too. A photo's source is, in this
order: its row in a sources file (`train --sources`: a CSV with `path` and `source` columns,
paths relative to the file's folder or absolute, as a data set's MANIFEST.csv gives them),
else the first folder below FLOWERS or NOFLOWERS that holds it (flowers/garden/x.jpg:
"garden"), else the example folder itself.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowersort.base.errors import TrainingError


def source_name(value: str) -> str:
    """The source a sources file's value names. A value `KIND:NAME@VERSION:PATH` or
    `KIND:NAME:PATH` (one photo's original file, as in a manifest) is its `KIND:NAME`: the
    photos of one repository or package are one source, whatever their path or version."""
    parts = value.strip().split(":")
    if len(parts) >= 3:
        return f"{parts[0]}:{parts[1].split('@', 1)[0]}"
    return value.strip()


def read_sources(file: Path) -> dict[str, str]:
    """real path of each photo the CSV file lists -> its source name."""
    try:
        with open(file, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TrainingError(f"cannot read the sources file {file}: {e}") from None
    if not rows or not {"path", "source"} <= set(rows[0]):
        raise TrainingError(
            f"the sources file {file} needs a header with 'path' and 'source' columns "
            f"(one row per photo: its path, relative to the file's folder, and its source)"
        )
    base = Path(file).resolve().parent
    return {
        os.path.realpath(base / r["path"]): source_name(r["source"])
        for r in rows
        if r["path"] and r["source"]
    }


def photo_sources(
    paths: Sequence[str], roots: Sequence[Path], listed: dict[str, str] | None = None
) -> np.ndarray:
    """Each photo's source (see the module's docstring); roots are the example folders."""
    real_roots = [os.path.realpath(r) for r in roots]
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if listed and real in listed:
            out.append(listed[real])
            continue
        name = Path(roots[0]).name
        for root, real_root in zip(roots, real_roots):
            if os.path.commonpath([real, real_root]) == real_root:
                inside = Path(os.path.relpath(real, real_root)).parts
                name = f"{Path(root).name}/{inside[0]}" if len(inside) > 1 else Path(root).name
                break
        out.append(name)
    return np.array(out)


def source_folds(sources: np.ndarray, y: np.ndarray, k: int) -> list[np.ndarray] | None:
    """k disjoint folds of indices, each source whole in one of them, dealt so that the
    folds hold about as many flowers and as many photos as each other: the largest sources
    first, each into the fold that has the smallest share of both so far. None when there
    are fewer than k sources, or a fold would leave the others without one class."""
    names, index = np.unique(sources, return_inverse=True)
    if len(names) < k:
        return None
    flowers = np.bincount(index, weights=y > 0.5, minlength=len(names))
    photos = np.bincount(index, minlength=len(names)).astype(float)
    load = np.zeros((k, 2))  # per fold: flowers, photos
    total = np.array([max(flowers.sum(), 1), photos.sum()])
    fold_of = np.empty(len(names), int)
    for g in sorted(range(len(names)), key=lambda g: (-flowers[g], -photos[g], names[g])):
        share = (load + [flowers[g], photos[g]]) / total
        fold = int(np.argmin(share.sum(axis=1)))
        fold_of[g] = fold
        load[fold] += [flowers[g], photos[g]]
    parts = [np.flatnonzero(fold_of[index] == f) for f in range(k)]
    for part in parts:
        rest = np.ones(len(y), bool)
        rest[part] = False
        if len(part) == 0 or len(set(y[rest] > 0.5)) < 2:
            return None
    return parts
