"""Learning the user's own archive from a few answers.

`ask` puts into the review folder the photos whose answers would teach the model most: the
most uncertain scores, spread over the archive's folders, no two near-duplicates of each
other. The user answers as with any review: a photo moved into the target folder is a
flower, one moved back into the archive is not (corrections.Watch records both). `adapt`
then fine-tunes a model's head nets on those answers, started from the model's own weights
and held close to them and to the model's own scores of the archive's other photos, sets
the threshold so that it moves as many of them as the model did, and writes a model file
of the same format.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from flowersort.base.errors import BadImage, EmptySource, FlowersortError
from flowersort.base.outcomes import Action, Outcome
from flowersort.model.features import flip_tiles
from flowersort.model.file import Model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, effective_band, lines_for
from flowersort.model.network import bce_with_logits, sigmoid
from flowersort.photos.archive import OnSkip, walk
from flowersort.photos.decode import read_image
from flowersort.safefs import Key, content_key
from flowersort.scoring.cache import ScoreCache
from flowersort.scoring.pipeline import scan, score_photos
from flowersort.sorting.checks import check_target, is_empty_folder
from flowersort.sorting.folders import make_dirs
from flowersort.sorting.moves import Mover, identity
from flowersort.sorting.watch import Watch
from flowersort.training.train import Adam

log = logging.getLogger("flowersort")

NEAR_DUPLICATE = 2  # 8 x 8 average hashes this close (Hamming distance) are one photo twice
POOL = 4  # the n photos are picked among the POOL * n most uncertain


@dataclass
class AdaptConfig:
    """How the head nets are fitted to the answers."""

    epochs: int = 200  # full-batch Adam steps over the answers
    learning_rate: float = 0.003
    # L2 pull towards the starting weights: what the model learnt from its examples is kept
    # where the answers say nothing
    anchor: float = 0.01
    layers: int = 3  # the head's last this many layers learn; the others stay the model's
    answer_weight: float = 1.0  # each answer's weight in the loss (the mean is over answers)
    # photos of the archive not answered, which the adapted nets must go on scoring as the
    # model did (each member's own probability is their target): answers teach where they
    # speak and nothing moves elsewhere. Without them a few answers near the threshold,
    # most of them "not a flower", pulled every score down: fewer flowers moved after
    # 25 answers than before any (benchmarks/unseen.py)
    keep_photos: int = 400
    keep_weight: float = 1.0  # their loss's weight against the answers' (each a mean)


@dataclass
class AdaptResult:
    model: Model
    flowers: int  # answers: flowers
    noflowers: int  # answers: not flowers
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


def uncertainty(scores: np.ndarray, threshold: float) -> np.ndarray:
    """How far each score is from the threshold, in logits: 0 is a coin toss."""
    eps = 1e-6
    s = np.clip(scores, eps, 1 - eps)
    t = min(max(threshold, eps), 1 - eps)
    return np.abs(np.log(s / (1 - s)) - np.log(t / (1 - t)))


def average_hash(path: str | os.PathLike) -> int | None:
    """The 8 x 8 grey average hash of a photo (None if it cannot be read)."""
    try:
        bgr = read_image(path, 64)
    except BadImage:
        return None
    grey = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (8, 8), interpolation=cv2.INTER_AREA)
    bits = (grey > grey.mean()).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def pick(
    scored: list[tuple[str, float]],
    threshold: float,
    n: int,
    hashes: dict[str, int | None] | None = None,
) -> list[str]:
    """The n photos whose answers teach most: among the POOL * n most uncertain, taken in
    turn from each folder (the folder with the most uncertain photo first), each no
    near-duplicate of one already taken. `hashes` maps paths to average hashes; by default
    they are computed for the pool."""
    if n <= 0 or not scored:
        return []
    scores = np.array([s for _, s in scored])
    order = np.argsort(uncertainty(scores, threshold), kind="stable")[: POOL * n]
    pool = [scored[i][0] for i in order]
    if hashes is None:
        hashes = {p: average_hash(p) for p in pool}
    by_folder: dict[str, list[str]] = {}
    for path in pool:  # most uncertain first, in each folder and across them
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    queues = list(by_folder.values())
    chosen: list[str] = []
    taken: list[int] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            while queue:
                path = queue.pop(0)
                h = hashes.get(path)
                if h is not None and any(bin(h ^ t).count("1") <= NEAR_DUPLICATE for t in taken):
                    continue
                chosen.append(path)
                if h is not None:
                    taken.append(h)
                break
            if len(chosen) == n:
                break
    return chosen


def ask(
    model: Model,
    src: Path,
    dest: Path,
    review: Path,
    n: int,
    *,
    dry_run: bool = False,
    workers: int | None = None,
    exclude: Iterable[str] = (),
    wait: bool = False,
    cache: ScoreCache | None = None,
) -> Iterator[Outcome]:
    """Move the n photos under src whose answers would teach the model most into the review
    folder (journalled, as classify moves borderline photos: `undo` puts them back). Photos
    the user already answered are not asked again. With dry_run nothing changes: each
    chosen photo comes back as `would-review`. With `cache` (the nightly classify's), the
    photos it scored already are not decoded again."""
    src, dest, review = Path(src), Path(dest), Path(review)
    if not src.exists():
        raise FlowersortError(f"no such file or folder: {src}")
    if is_empty_folder(src):  # a disk not mounted: no folder is made in its mount point
        raise EmptySource(f"{src} is empty: nothing to do, nothing created (is it mounted?)")
    check_target(src, dest)
    check_target(src, review)
    mover = Mover(dest, False, "rename", wait, src, dry_run)  # a dry run only says
    if not dry_run:
        try:
            created = make_dirs(review)
        except OSError as e:
            mover.close()
            raise FlowersortError(f"cannot create {e.filename}: {e.strerror}") from None
        mover.note_created_dirs(created)
    watch = None
    try:
        watch = Watch(dest, review, dry_run=dry_run)
        watch.start()
        skipped: list[Outcome] = []
        photos = walk(
            src,
            prune=[dest, review],
            exclude=exclude,
            on_skip=lambda p, why: skipped.append(Outcome(p, Action.SKIPPED, reason=why)),
        )
        candidates: list[tuple[str, float]] = []
        was: dict[str, tuple | None] = {}
        for scored in score_photos(model, (Path(p) for p in photos), workers, cache=cache):
            path = os.fspath(scored.path)
            if scored.score is None:
                skipped.append(Outcome(path, Action.SKIPPED, reason=scored.skip_reason))
            elif watch.held(path) is None and not watch.confirmed(path):
                was[path] = identity(path)
                candidates.append((path, scored.score))
        watch.finish()
        yield from skipped
        score_of = dict(candidates)
        for path in pick(candidates, model.threshold, n):
            flower = score_of[path] >= model.threshold
            outcome = mover.move(path, score_of[path], was[path], folder=review)
            outcome.flower = flower
            if outcome.action is Action.MOVED:
                watch.placed(outcome.target, "review", mover.run)
            if outcome.action in (Action.MOVED, Action.WOULD_MOVE):
                outcome.action = mover.said(Action.REVIEW)
            yield outcome
    except GeneratorExit:  # closed before its last photo (`| head` went away): stopped
        mover.stopped = True
        raise
    finally:
        if watch:
            watch.close()
        mover.close()


def answers(
    src: Path, dest: Path, review: Path | None, *, dry_run: bool = False, exclude=()
) -> list[tuple[Path, bool]]:
    """Every answer the user gave by moving files (photo, is a flower), as classify learns
    them at the start of a run and along its walk, and recorded (not with dry_run); only
    photos still there with the same bytes."""
    watch = Watch(dest, review, dry_run=dry_run)
    try:
        watch.start()
        seen: dict[Key, Path] = {}  # where a photo is now, if the walk met it
        prune = [p for p in (dest, review) if p is not None]
        for name in walk(src, prune=prune, exclude=exclude):
            if (c := watch.held(name)) is not None:
                seen[c.key] = Path(name)
        watch.finish()
        found = []
        for c in watch.by_key.values():
            path = seen.get(c.key, c.path)
            try:
                there = os.path.isfile(path) and content_key(path) == c.key
            except OSError:
                there = False
            if there:
                found.append((path, c.label == "flower"))
        return found
    finally:
        watch.close()


def fine_tune(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    cfg: AdaptConfig | None = None,
    keep: np.ndarray | None = None,
) -> Model:
    """A copy of model whose member nets' heads are fitted to the feature maps x (N, tiles,
    a, b) with labels y (1.0 = flower), each photo also seen mirrored, while on the feature
    maps `keep` (photos not answered) each member is held to its own probabilities; the
    tile nets, the input scaling, the threshold and the views stay the model's."""
    cfg = cfg or AdaptConfig()
    x = model.normalize(x).astype(np.float32)
    x = np.concatenate([x, flip_tiles(x, model.features)])  # as the model scores
    y = np.concatenate([y, y]).astype(np.float32)
    # each class weighs half: the photos asked about are mostly non-flowers near the
    # threshold, and answers of one kind alone would pull every score that way
    n_flowers = y.sum()
    weight = np.full(len(y), cfg.answer_weight / len(y), np.float32)
    if 0 < n_flowers < len(y):
        weight *= np.where(y > 0.5, len(y) / (2 * n_flowers), len(y) / (2 * (len(y) - n_flowers)))
    if keep is not None and len(keep) and cfg.keep_weight:
        k = model.normalize(keep).astype(np.float32)
        k = np.concatenate([k, flip_tiles(k, model.features)])
        weight = np.concatenate([weight, np.full(len(k), cfg.keep_weight / len(k), np.float32)])
    else:
        k = x[:0]
    inputs = np.concatenate([x, k])
    nets = []
    for member in model.nets:
        net = type(member)(member.cfg)
        net.load_state(member.state())
        tmap = net.tile_map(inputs)  # (N, T, c): fixed, only the head learns
        targets = y
        if len(k):  # each member's own probabilities for the kept photos
            targets = np.concatenate([y, sigmoid(net.head_forward(tmap[len(x) :]))])
        targets = targets.astype(np.float32)
        heads = net.head.layers[-cfg.layers :]
        start = [(la.w.copy(), la.b.copy()) for la in heads]
        opt = Adam(heads, cfg.learning_rate, 0.0)
        for _ in range(cfg.epochs):
            logits = net.head_forward(tmap)
            # bce_with_logits averages over its rows: the weights (summing to the answers'
            # and the kept photos' shares) are scaled back by that count
            _, grad = bce_with_logits(logits, targets, weight * len(targets))
            net.head_backward(grad)
            for la, (w0, b0) in zip(heads, start):
                la.dw += cfg.anchor * (la.w - w0)
                la.db += cfg.anchor * (la.b - b0)
            opt.step()
        nets.append(net)
    summary = dict(model.summary)
    summary["adapted"] = {
        "answers": {"flowers": int(y.sum() // 2), "noflowers": int((len(y) - y.sum()) // 2)},
        "kept_photos": len(k) // 2,
        "config": cfg.__dict__,
        "from": model.summary.get("adapted", {}).get("from"),
    }
    return Model(
        model.features,
        nets,
        model.input_mean,
        model.input_std,
        model.threshold,
        summary,
        model.views,
    )


def same_count_threshold(
    model: Model, adapted: Model, base: list[tuple[str, float]], workers: int | None = None
) -> int:
    """Set the adapted model's threshold so that it moves as many of the archive's photos
    (`base`: each with the model's score) as the model did, with the model's review band:
    the photos it now ranks highest. A few answers, most of them "not a flower" near the
    threshold, shift every score of the refitted head, so the model's own threshold no
    longer means what it was chosen for (precision on sources the nets never saw), while
    the ranking gets better (benchmarks/unseen.py). Returns that count."""
    band = model.summary.get("review_band", DEFAULT_REVIEW_BAND)
    line = model.threshold + effective_band(model.threshold, band)
    count = sum(s >= line for _, s in base)
    if not count:
        return 0  # nothing to match: the model's own threshold
    scored = score_photos(adapted, (Path(p) for p, _ in base), workers)
    scores = np.sort([s.score for s in scored if s.score is not None])[::-1]
    if count >= len(scores):
        return count
    move = float(scores[count - 1] + scores[count]) / 2
    adapted.threshold = lines_for(move, band).threshold
    return count


def adapt(
    model: Model,
    src: Path,
    dest: Path,
    review: Path | None,
    out: Path | None,
    *,
    cfg: AdaptConfig | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    on_skip: OnSkip,
    source: str = "",
    cache: ScoreCache | None = None,
) -> AdaptResult:
    """Fit model to the answers the user gave under src (into dest: flowers; back into
    the archive: not), held to its own scores on the archive's other photos, with the
    threshold that moves as many of them as the model did (same_count_threshold), and write
    it to `out` (nothing written with dry_run). With `cache` (the nightly classify's), the
    model's scores of the archive are taken from there."""
    t0 = time.perf_counter()
    found = answers(Path(src), Path(dest), review, dry_run=dry_run)
    if not found:
        raise FlowersortError(
            f"no answers yet: sort the photos in the review folder (into {dest} if a flower, "
            f"back into the archive if not), then run adapt again; 'flowersort ask' puts "
            f"the photos worth answering there"
        )
    label = {os.fspath(p): flower for p, flower in found}
    xs, ys, skipped = [], [], []
    for photo in scan([p for p, _ in found], model.features, workers):
        if photo.skipped:
            skipped.append((os.fspath(photo.path), photo.skip_reason))
            on_skip(os.fspath(photo.path), photo.skip_reason)
            continue
        assert photo.features is not None  # not skipped, and scan was given no scores
        xs.append(photo.features)
        ys.append(float(label[os.fspath(photo.path)]))
    if not xs:
        raise FlowersortError("none of the answered photos could be read")
    y = np.array(ys)
    cfg = cfg or AdaptConfig()
    # the archive's other photos: the head is held to the model's own scores on a spread
    # of them, and the adapted model moves as many of them as the model did
    prune = [p for p in (dest, review) if p is not None]
    archive = sorted(p for p in walk(Path(src), prune=prune) if p not in label)
    scored = score_photos(model, map(Path, archive), workers, cache=cache)
    base = [(os.fspath(s.path), s.score) for s in scored if s.score is not None]
    step = max(1, len(base) // cfg.keep_photos) if cfg.keep_photos else 0
    spread = [Path(p) for p, _ in base[::step][: cfg.keep_photos]] if step else []
    keep = [
        photo.features
        for photo in scan(spread, model.features, workers)
        if photo.features is not None
    ]
    adapted = fine_tune(model, np.stack(xs), y, cfg, np.stack(keep) if keep else None)
    adapted.summary["adapted"]["from"] = source
    if base:
        moved = same_count_threshold(model, adapted, base, workers)
        adapted.summary["adapted"]["archive"] = {"photos": len(base), "moved": moved}
    if not dry_run and out is not None:
        adapted.save(out)
    flowers = int(y.sum())
    return AdaptResult(adapted, flowers, len(y) - flowers, time.perf_counter() - t0, skipped)
