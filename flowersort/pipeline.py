"""Photos to feature maps, on every core, streaming: memory stays bounded by a window of
chunks in flight, whatever the number of photos."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from flowersort.errors import BadImage
from flowersort.images import FeatureConfig, load_features
from flowersort.model import Model

CHUNK = 16  # photos per task: large enough to hide the pool's overhead


def _load_chunk(paths: list[Path], cfg: FeatureConfig) -> list[np.ndarray | str]:
    out: list[np.ndarray | str] = []
    for path in paths:
        try:
            out.append(load_features(path, cfg))
        except BadImage as e:
            out.append(str(e))
        except Exception as e:  # a decoder surprise must not stop the run
            out.append(f"unexpected error: {type(e).__name__}: {e}")
    return out


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def scan(
    paths: Iterable[Path], cfg: FeatureConfig, workers: int | None = None
) -> Iterator[tuple[Path, np.ndarray | str]]:
    """Yield (path, features) or (path, reason it was skipped), in input order."""
    workers = workers or default_workers()
    source = iter(paths)
    chunks = iter(lambda: list(islice(source, CHUNK)), [])  # stops at the first empty chunk
    if workers <= 1:
        for chunk in chunks:
            yield from zip(chunk, _load_chunk(chunk, cfg))
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_load_chunk, chunk, cfg)))
            if len(pending) >= 4 * workers:
                done, future = pending.popleft()
                yield from zip(done, future.result())
        while pending:
            done, future = pending.popleft()
            yield from zip(done, future.result())


BATCH = 64  # photos per network call


def score_photos(
    model: Model, paths: Iterable[Path], workers: int | None = None
) -> Iterator[tuple[Path, float | None, str]]:
    """Yield (path, flower score, "") or (path, None, reason skipped), in input order."""
    batch: list[tuple[Path, np.ndarray]] = []

    def flush() -> Iterator[tuple[Path, float | None, str]]:
        scores = model.scores(np.stack([x for _, x in batch]))
        for (path, _), score in zip(batch, scores):
            yield path, float(score), ""
        batch.clear()

    for path, result in scan(paths, model.features, workers):
        if isinstance(result, str):
            if batch:  # keep input order: score what came before the bad file first
                yield from flush()
            yield path, None, result
            continue
        batch.append((path, result))
        if len(batch) >= BATCH:
            yield from flush()
    if batch:
        yield from flush()
