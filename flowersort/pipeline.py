"""Photos to scores, on every core, streaming: memory stays bounded by a window of chunks
in flight, whatever the number of photos; remembered scores skip the decoding."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from flowersort.cache import ScoreCache
from flowersort.errors import BadImage
from flowersort.images import FeatureConfig, load_features, take_decode_note
from flowersort.model import Model

CHUNK = 16  # photos per task: large enough to hide the pool's overhead
BATCH = 64  # photos per network call

Result = np.ndarray | str | tuple  # features, a skip reason, or a remembered (score, reason)


@dataclass
class Noted:
    """The features of a photo the decoder had something to say about (scan(notes=True))."""

    x: np.ndarray
    note: str  # e.g. "decoded in part (Corrupt JPEG data: premature end of data segment)"


def _load_chunk(
    jobs: list[tuple[Path, tuple | None]],
    cfg: FeatureConfig,
    thumbnail: bool,
    copies: int,
    notes: bool = False,
):
    out: list[Result] = []
    for path, known in jobs:
        if known is not None:
            out.append(known)
            continue
        try:
            x = load_features(path, cfg, thumbnail, copies)
            note = take_decode_note()
            out.append(Noted(x, note) if note and notes else x)
        except BadImage as e:
            out.append(str(e))
        except Exception as e:  # a decoder surprise must not stop the run
            out.append(f"unexpected error: {type(e).__name__}: {e}")
    return out


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def scan(
    paths: Iterable[Path | tuple[Path, tuple | None]],
    cfg: FeatureConfig,
    workers: int | None = None,
    thumbnail: bool = False,
    copies: int = 0,
    notes: bool = False,
) -> Iterator[tuple[Path, Result]]:
    """Yield (path, features) or (path, reason it was skipped), in input order.

    An input may be (path, known): then `known` is passed through without decoding. With
    `copies`, the features come with that many augmented copies (see load_features).
    With `notes`, features the decoder warned about come as Noted(features, note).
    """
    workers = workers or default_workers()
    jobs = (p if isinstance(p, tuple) else (p, None) for p in paths)
    chunks = iter(lambda: list(islice(jobs, CHUNK)), [])  # stops at the first empty chunk
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        pending: deque = deque()
        for chunk in chunks:
            if pool is None or all(known is not None for _, known in chunk):
                future = _done(_load_chunk(chunk, cfg, thumbnail, copies, notes))
            else:
                future = pool.submit(_load_chunk, chunk, cfg, thumbnail, copies, notes)
            pending.append((chunk, future))
            while len(pending) >= 4 * workers or (pending and pending[0][1].done()):
                done, future = pending.popleft()
                yield from zip((p for p, _ in done), future.result())
        while pending:
            done, future = pending.popleft()
            yield from zip((p for p, _ in done), future.result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def score_photos(
    model: Model,
    paths: Iterable[Path],
    workers: int | None = None,
    *,
    cache: ScoreCache | None = None,
    thumbnail: bool = False,
) -> Iterator[tuple[Path, float | None, str]]:
    """Yield (path, flower score, note) or (path, None, reason skipped), in input order;
    the note is "" unless the decoder warned (a photo decoded in part)."""
    batch: list[tuple[Path, np.ndarray]] = []
    keys: dict[Path, tuple] = {}
    noted: dict[Path, str] = {}

    def remembered(path: Path):
        if cache is not None and (key := cache.key(path)) is not None:
            keys[path] = key
            return path, cache.get(path, key)
        return path

    def flush() -> Iterator[tuple[Path, float | None, str]]:
        scores = model.scores(np.stack([x for _, x in batch]))
        for (path, _), score in zip(batch, scores):
            yield finish(path, float(score), noted.pop(path, ""))
        batch.clear()

    def finish(path: Path, score: float | None, reason: str):
        if cache is not None and (key := keys.pop(path, None)) is not None:
            cache.put(path, key, score, reason)
        return path, score, reason

    for path, result in scan(
        map(remembered, paths), model.features, workers, thumbnail, notes=True
    ):
        if isinstance(result, Noted):
            noted[path], result = result.note, result.x
        if isinstance(result, np.ndarray):
            batch.append((path, result))
            if len(batch) >= BATCH:
                yield from flush()
            continue
        if batch:  # keep input order: score what came before first
            yield from flush()
        if isinstance(result, tuple):  # remembered from an earlier run
            keys.pop(path, None)
            yield path, result[0], result[1]
        else:
            yield finish(path, None, result)
    if batch:
        yield from flush()
