"""Photos to scores, on every core, streaming: memory stays bounded by a window of chunks
in flight, whatever the number of photos; remembered scores skip the decoding."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from flowersort.archive import display
from flowersort.cache import ScoreCache
from flowersort.errors import BadImage, UnexpectedError
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
        except BadImage as e:  # only a photo that cannot be read or decoded is a skip
            out.append(str(e))
        except Exception as e:  # anything else is a bug: stop, don't call it a skip
            message = f"unexpected {type(e).__name__} while reading {display(path)}: {e}"
            raise UnexpectedError(message, traceback.format_exc()) from None
    return out


def _stay_with(parent: int, from_main_thread: bool) -> None:
    """Pool initializer: a worker leaves SIGINT and SIGTERM to the main process, which
    stops the pool itself, and dies with it, even when it is killed outright (SIGKILL,
    the OOM killer): the kernel's parent-death signal where the main process is the
    direct parent (Linux, fork; the signal comes when the forking *thread* ends, so only
    when that is the main thread), else a thread that looks for it every second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if from_main_thread and os.getppid() == parent and _parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent:  # it died before the signal was set
            os._exit(1)
        return
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()


def _parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(1, int(signum), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(1)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # a pid taken by someone else's process: ours is gone
            os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process and ignore Ctrl-C; they are
    started at once, with SIGINT and SIGTERM held back meanwhile, so none can catch
    one before its initializer ran."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    main = threading.current_thread() is threading.main_thread()
    try:
        pool = ProcessPoolExecutor(workers, initializer=_stay_with, initargs=(os.getpid(), main))
        pool.submit(int).result()  # a pool forks its workers at the first task
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pool


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
    pool = None
    try:
        pending: deque = deque()
        for chunk in chunks:
            if workers == 1 or all(known is not None for _, known in chunk):
                future = _done(_load_chunk(chunk, cfg, thumbnail, copies, notes))
            else:
                pool = pool or worker_pool(workers)  # not before it is needed: a rerun needs none
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
