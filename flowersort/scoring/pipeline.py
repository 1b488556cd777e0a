"""Photos to scores, on every core, streaming: memory stays bounded by a window of chunks
in flight, whatever the number of photos; remembered scores skip the decoding. Photos are
scored where they are decoded, each on its own (see Model.score_image)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from flowersort.base import rights
from flowersort.base.errors import BadImage, UnexpectedError
from flowersort.model.features import FeatureConfig, load_features
from flowersort.model.file import Model
from flowersort.photos import decode, heic
from flowersort.photos.archive import display
from flowersort.photos.decode import read_image, take_decode_note
from flowersort.scoring.cache import Key as CacheKey
from flowersort.scoring.cache import ScoreCache

CHUNK = 16  # photos per task: large enough to hide the pool's overhead
# a photo's path as its caller gave it, and as it comes back: str from the walk (for speed),
# Path from elsewhere
PathName = str | Path


@dataclass
class Scanned:
    """One photo read by scan: its features (or its score, when scan was given the model),
    or why it was skipped (with whether that reason lies in the file's bytes), or what the
    caller already knew of it (passed through undecoded)."""

    path: PathName
    features: np.ndarray | None = None
    score: float | None = None
    skip_reason: str = ""
    lasting: bool = False  # the skip reason belongs to the bytes (see BadImage.lasting)
    note: str = ""  # what the decoder said, e.g. "decoded in part (Corrupt JPEG data: ...)"
    known: Any = None  # the caller's own record of the photo: nothing was decoded

    @property
    def skipped(self) -> bool:
        return self.features is None and self.score is None and self.known is None


@dataclass
class Scored:
    """One photo's flower score, or why it was skipped."""

    path: PathName
    score: float | None  # None: skipped
    skip_reason: str = ""
    note: str = ""  # what the decoder said (a photo decoded in part)
    remembered: bool = False  # a skip the cache remembered: reported on an earlier run


def _load_chunk(
    jobs: list[tuple[PathName, Any]],
    cfg: FeatureConfig,
    thumbnail: bool,
    copies: int,
    model: Model | None,
) -> list[Scanned]:
    out: list[Scanned] = []
    for path, known in jobs:
        if known is not None:
            out.append(Scanned(path, known=known))
            continue
        try:
            if model is not None:
                score = model.score_image(read_image(path, cfg.image_size, thumbnail))
                out.append(Scanned(path, score=score, note=take_decode_note()))
            else:
                x = load_features(path, cfg, thumbnail, copies)
                out.append(Scanned(path, x, note=take_decode_note()))
        except BadImage as e:  # only a photo that cannot be read or decoded is a skip
            out.append(Scanned(path, skip_reason=str(e), lasting=e.lasting))
        except Exception as e:  # anything else is a bug: stop, don't call it a skip
            message = f"unexpected {type(e).__name__} while reading {display(path)}: {e}"
            raise UnexpectedError(message, traceback.format_exc()) from None
    return out


_given: tuple = ()  # in a worker: what worker_pool gave it, once (scan: its settings, the model)


def _load_given_chunk(jobs: list[tuple[PathName, Any]]) -> list[Scanned]:
    return _load_chunk(jobs, *_given)


def _decoders() -> None:
    """What a worker imports to decode a photo (OpenCV, pillow-heif when installed)."""
    decode.cv2.imread  # noqa: B018  # its first use imports it
    heic.library()


def stay_with(parent: int, from_main_thread: bool, given: tuple = ()) -> None:
    """Pool initializer: a worker leaves SIGINT and SIGTERM to the main process, which
    stops the pool itself, and dies with it, even when it is killed outright (SIGKILL,
    the OOM killer): the kernel's parent-death signal where the main process is the
    direct parent (Linux, fork; the signal comes when the forking *thread* ends, so only
    when that is the main thread), else a thread that looks for it every second. It keeps
    `given` for the tasks it will run."""
    global _given
    _given = given
    rights.settle_worker(_decoders)  # first: a change of ids clears the parent-death signal
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
            if os.getppid() != parent:  # (a worker acting as a user may not signal root)
                os._exit(1)


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now and shut it down without waiting (a start that failed,
    Ctrl-C in training). ProcessPoolExecutor has no public way: its _processes are read
    here only."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def worker_pool(workers: int, given: tuple = ()) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process and ignore Ctrl-C; they are
    started at once, with SIGINT and SIGTERM held back meanwhile, so none can catch
    one before its initializer ran. Each worker gets `given` once (see _load_given_chunk),
    not with every task."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    main = threading.current_thread() is threading.main_thread()
    try:
        args = (os.getpid(), main, given)
        pool = ProcessPoolExecutor(workers, initializer=stay_with, initargs=args)
        try:
            pool.submit(int).result()  # a pool forks its workers at the first task
        except BaseException:  # such as no memory for its thread: its forked workers would
            kill_pool(pool)  # would hold up our exit forever
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pool


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


Pending = list[Scanned] | Future  # a chunk read here (done), or one a worker is reading


def _ready(chunk: Pending) -> bool:
    return isinstance(chunk, list) or chunk.done()


def _result(chunk: Pending) -> list[Scanned]:
    return chunk if isinstance(chunk, list) else chunk.result()


def _chunks(
    jobs: Iterable[tuple[PathName, Any]],
    cfg: FeatureConfig,
    workers: int | None,
    thumbnail: bool,
    copies: int,
    model: Model | None,
) -> Iterator[tuple[list[tuple[PathName, Any]], list[Scanned] | None]]:
    """Each chunk of jobs (path, known: None to read it) with what was read of it, in input
    order; None for a chunk of known photos only (a rerun's: nothing to read, and nothing
    made per photo)."""
    workers = workers or default_workers()
    jobs = iter(jobs)
    chunks = iter(lambda: list(islice(jobs, CHUNK)), [])  # stops at the first empty chunk
    pool = None
    try:
        pending: deque[tuple[list, Pending | None]] = deque()
        for chunk in chunks:
            if all(known is not None for _, known in chunk):  # a rerun's: nothing to read
                pending.append((chunk, None))
            elif workers == 1:
                pending.append((chunk, _load_chunk(chunk, cfg, thumbnail, copies, model)))
            else:
                # not before it is needed (a rerun needs none); the model goes once per worker
                pool = pool or worker_pool(workers, (cfg, thumbnail, copies, model))
                pending.append((chunk, pool.submit(_load_given_chunk, chunk)))
            while len(pending) >= 4 * workers or (pending and _done(pending[0][1])):
                chunk, read = pending.popleft()
                yield chunk, None if read is None else _result(read)
        while pending:
            chunk, read = pending.popleft()
            yield chunk, None if read is None else _result(read)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _done(read: Pending | None) -> bool:
    return read is None or _ready(read)


def scan(
    paths: Iterable[PathName | tuple[PathName, Any]],
    cfg: FeatureConfig,
    workers: int | None = None,
    thumbnail: bool = False,
    copies: int = 0,
    model: Model | None = None,
) -> Iterator[Scanned]:
    """Read each photo's features on every core; one record per photo, in input order.

    An input may be (path, known): then `known` comes back as Scanned.known, nothing
    decoded. With `copies`, the features come with that many augmented copies (see
    load_features). With `model`, each photo comes with its score instead of features.
    """
    jobs = (p if isinstance(p, tuple) else (p, None) for p in paths)
    for chunk, read in _chunks(jobs, cfg, workers, thumbnail, copies, model):
        if read is None:
            yield from (Scanned(path, known=known) for path, known in chunk)
        else:
            yield from read


def score_photos(
    model: Model,
    paths: Iterable[PathName],
    workers: int | None = None,
    *,
    cache: ScoreCache | None = None,
    thumbnail: bool = False,
    key_of: Callable[[PathName], CacheKey | None] | None = None,
) -> Iterator[Scored]:
    """Each photo's score (or why it was skipped), in input order; remembered scores
    are not decoded again. The cache must have been opened for the same reading
    (`thumbnail`): a preview's score is not the photo's. `key_of`: each photo's cache key
    from a stat the caller made already (default: ScoreCache.key stats it), so that a rerun
    stats each photo once. A remembered photo is one record (its Scored, made at the
    lookup) from the cache to the caller."""
    if cache is not None and cache.thumbnail != thumbnail:
        raise ValueError("the score cache was opened for the other reading (--thumbnails)")
    keys: dict[PathName, tuple] = {}
    key_of = key_of or ScoreCache.key

    def remembered(path: PathName) -> tuple[PathName, Scored | None]:
        if cache is not None and (key := key_of(path)) is not None:
            if (known := cache.get(path, key)) is None:  # decode it, and remember its score
                keys[path] = key
                return path, None
            score, reason = known
            if score is None:
                return path, Scored(path, None, skip_reason=reason, remembered=True)
            return path, Scored(path, score, note=reason)
        return path, None

    def finish(scored: Scored, lasting: bool = False) -> Scored:
        if cache is not None and (key := keys.pop(scored.path, None)) is not None:
            reason = scored.note if scored.score is not None else scored.skip_reason
            cache.put(scored.path, key, scored.score, reason, lasting)
        return scored

    jobs = map(remembered, paths)
    for chunk, read in _chunks(jobs, model.features, workers, thumbnail, 0, model):
        if read is None:  # all remembered
            for _, known in chunk:
                yield known
            continue
        for photo in read:
            if photo.known is not None:  # remembered from an earlier run
                yield photo.known
            elif photo.score is not None:
                yield finish(Scored(photo.path, photo.score, note=photo.note))
            else:
                yield finish(Scored(photo.path, None, skip_reason=photo.skip_reason), photo.lasting)


def example_scores(
    model: Model, x: np.ndarray, paths: Sequence[str | Path], workers: int | None = None
) -> np.ndarray:
    """The scores score_photos gives photos whose features x are in hand (training
    examples): each photo alone from its features, and only a photo at the model's gate
    decoded again for its crops. A photo that can no longer be read keeps its own score."""
    scores = model.scores(x)
    if not model.views.crops:
        return scores
    again = np.flatnonzero(scores >= model.views.gate)
    for i, scored in zip(again, score_photos(model, [Path(paths[int(i)]) for i in again], workers)):
        if scored.score is not None:
            scores[i] = scored.score
    return scores
