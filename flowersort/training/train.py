"""Training the two-stage network end to end on two folders of examples."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty

import numpy as np

from flowersort.base.errors import TrainingError
from flowersort.model.features import FeatureConfig, flip_tiles
from flowersort.model.file import Model, ViewConfig
from flowersort.model.metrics import (
    DEFAULT_REVIEW_BAND,
    Lines,
    choose_lines,
    confusion,
    effective_band,
    precision_threshold,
)
from flowersort.model.network import (
    HEAD_LAYERS,
    TILE_LAYERS,
    NetConfig,
    TwoStageNet,
    bce_with_logits,
    sigmoid,
)
from flowersort.photos.archive import (
    Labelled,
    Skips,
    check_distinct,
    display,
    labelled_photos,
    walk,
)
from flowersort.safefs.identity import content_key
from flowersort.scoring.pipeline import (
    _stay_with,
    default_workers,
    example_scores,
    kill_pool,
    scan,
    worker_pool,
)
from flowersort.training.featcache import FeatureCache
from flowersort.training.sources import source_folds

MIN_PER_CLASS = 4
MAX_LAYER_ROWS = 4096  # far above any useful size; a larger layer would not fit in memory


@dataclass
class TrainConfig:
    """Optimisation settings; saved in the model's summary."""

    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 0.003
    # L2 on the weights, not the biases; 1e-3 since issue 13's wider net (was 1e-4): fewer
    # non-flowers scored near 1 on the held-out fold (see benchmarks/heldout.py)
    weight_decay: float = 1e-3
    patience: int = 30  # epochs without a better validation loss before stopping
    val_fraction: float = 0.2  # the held-out fold: 1 / round(1 / val_fraction) of the examples
    members: int = 2  # nets trained with different seeds, their probabilities averaged
    augment: bool = True  # random left-right flips, and the crops below
    crops: int = 3  # augmented copies read per photo: random crops with small hue shifts
    seed: int = 0
    # the threshold: precision >= min_precision in a collection with this share of flowers
    flower_share: float = 0.08
    min_precision: float = 0.95
    # the loss of each non-flower counts this many times (a class weight), and this much
    # more again in proportion to the flower probability the net gives it at that step
    # (hard non-flowers count most); 1 and 0 leave the plain cross-entropy
    noflower_weight: float = 1.0
    hard_negative_weight: float = 0.0
    tile_layers: list[int] = field(default_factory=lambda: list(TILE_LAYERS))
    head_layers: list[int] = field(default_factory=lambda: list(HEAD_LAYERS))
    train_tile_net: bool = True  # False leaves the tile net random, as the original did
    # a running average of the weights (each step moves it 1 - ema_decay of the way to the
    # weights), validated, kept and saved in their place; 0: the weights themselves
    ema_decay: float = 0.0
    # mixup: each training example blended with another of its batch, both photo and label,
    # by a share drawn from Beta(mixup, mixup); 0: none
    mixup: float = 0.0
    sorted_tiles: bool = False  # see NetConfig.sorted_tiles
    # after this many epochs without a better validation loss the learning rate is cut to
    # lr_drop_factor of itself (again after as many more); 0: a constant learning rate
    lr_drop_patience: int = 0
    lr_drop_factor: float = 0.3
    # each photo that could be a flower is scored over this many crops of it too (see
    # model.ViewConfig); takes effect where fit is given the examples' files
    view_crops: int = 5
    # with the examples' sources (see flowersort.training.sources): this many folds, each source in
    # one, each scored by nets trained on the others; the threshold and the review band are
    # chosen on those scores, so that they hold on sources the model never saw. 0, or too
    # few sources: chosen on the held-out fold, as before
    source_folds: int = 5
    # the review band reaches down as far as its photos stay this share flowers (at
    # flower_share); review_band, when given, is its width instead
    review_precision: float = 0.5
    review_band: float | None = None

    @property
    def copies(self) -> int:
        """Augmented copies to read per photo for this training (none without augment)."""
        return self.crops if self.augment else 0

    @property
    def folds(self) -> int:
        """How many folds the examples are cut into: one per val_fraction."""
        return max(2, round(1 / self.val_fraction))

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be between 0 and 1")
        if not 0 < self.flower_share < 1:
            raise ValueError("flower_share must be between 0 and 1")
        if not 0 < self.min_precision <= 1:
            raise ValueError("min_precision must be above 0 and at most 1")
        if self.members < 1:
            raise ValueError("members must be at least 1")
        if not 0 < self.learning_rate < math.inf:  # also refuses NaN
            raise ValueError("learning_rate must be a finite number above 0")
        if not 0 <= self.weight_decay < math.inf:  # also refuses NaN
            raise ValueError("weight_decay must be a finite number, at least 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be at least 0 and below 1")
        if not self.mixup >= 0:  # also refuses NaN
            raise ValueError("mixup must be at least 0")
        if self.lr_drop_patience < 0 or not 0 < self.lr_drop_factor <= 1:
            raise ValueError("lr_drop_patience must be at least 0, lr_drop_factor in (0, 1]")
        if min(self.tile_layers + self.head_layers, default=0) < 1:
            raise ValueError("tile and head layers need at least 1 row each")
        if max(self.tile_layers + self.head_layers) > MAX_LAYER_ROWS:
            raise ValueError(f"tile and head layers have at most {MAX_LAYER_ROWS} rows each")
        if len(self.head_layers) < 2 or self.head_layers[-2:] != [1, 1]:
            raise ValueError("head_layers must end with 1,1: the score is one number")
        ViewConfig(crops=self.view_crops)  # raises ValueError for an impossible number
        if self.source_folds < 0 or self.source_folds == 1:
            raise ValueError("source_folds must be 0 (none) or at least 2")
        if not 0 < self.review_precision <= 1:
            raise ValueError("review_precision must be above 0 and at most 1")
        if self.review_band is not None and not 0 <= self.review_band <= 1:
            raise ValueError("review_band must be between 0 and 1")


@dataclass
class Examples:
    x: np.ndarray  # (N, tiles, a, b) float32
    y: np.ndarray  # (N,) 1.0 = flower
    paths: list[str]
    skipped: list[tuple[str, str]]
    augmented: np.ndarray | None = None  # (N, copies, tiles, a, b): crops of each photo


Progress = Callable[[int, dict], None]


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


def folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint stratified folds of indices (each class dealt round the folds), fixed by
    the seed; together they hold every example once."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(k)]
    for label in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == label))
        for i in range(k):
            parts[i].append(idx[i::k])
    return [np.concatenate(p) for p in parts]


class Adam:
    """Adam over the given layers' w and b; weight decay on w only."""

    def __init__(self, layers: list, lr: float, weight_decay: float):
        self.layers = layers
        self.lr, self.wd, self.t = lr, weight_decay, 0
        self.m = [(np.zeros_like(la.w), np.zeros_like(la.b)) for la in self.layers]
        self.v = [(np.zeros_like(la.w), np.zeros_like(la.b)) for la in self.layers]

    def step(self) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for layer, m, v in zip(self.layers, self.m, self.v):
            grads = (layer.dw + self.wd * layer.w, layer.db)
            for param, g, mi, vi in zip((layer.w, layer.b), grads, m, v):
                mi *= b1
                mi += (1 - b1) * g
                vi *= b2
                vi += (1 - b2) * g * g
                mhat = mi / (1 - b1**self.t)
                vhat = vi / (1 - b2**self.t)
                param -= self.lr * mhat / (np.sqrt(vhat) + eps)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    progress: Progress | None = None,
    augmented: np.ndarray | None = None,
    workers: int | None = None,
    paths: Sequence[str] | None = None,
    sources: np.ndarray | None = None,
) -> tuple[Model, dict]:
    """Train cfg.members nets on the same examples, each from its own seed, and return the
    model (their average) and a report. `augmented` (N, copies, tiles, a, b)
    holds crops of each photo; with cfg.augment each training step draws one version of
    each photo (itself or a crop) and flips half of them. Members train on up to
    `workers` processes (default: one per core); each depends only on its own seed.

    One fold of k = round(1 / val_fraction) stratified folds is held out from every
    member: it stops their training. Without `sources` (each example's source), the
    threshold is chosen on the scores the model itself (the members' mean) gives that
    fold. The mean of several nets is less often extreme than one net's probability, so a
    threshold chosen on single nets' scores does not give the model the precision and
    recall it was chosen for.

    With `sources` and cfg.source_folds, the examples are also cut into that many folds,
    each source whole in one (sources.source_folds); for each fold the same training on
    the other folds scores it, and the threshold and review band are chosen on those
    out-of-fold scores, all photos scored by nets that never saw their source
    (metrics.choose_lines): the precision asked of what moves then holds on sources the
    model never saw, where a threshold chosen on the held-out fold, whose sources the nets
    learnt, is too high for them. The model's nets are the same either way.

    With `paths` (each example's file), the model scores photos over cfg.view_crops crops
    too, and the held-out photos are scored that way (their files decoded again where
    crops are needed); without, each photo alone.
    """
    n_flowers, n_other = int(y.sum()), int(len(y) - y.sum())
    if min(n_flowers, n_other) == 0:
        raise TrainingError("training needs photos of both classes (flowers and noflowers)")
    if min(n_flowers, n_other) < MIN_PER_CLASS:
        raise TrainingError(f"too few photos: each class needs at least {MIN_PER_CLASS}")
    t0 = time.perf_counter()
    parts = None
    if sources is not None and cfg.source_folds:
        parts = source_folds(np.asarray(sources), y, cfg.source_folds)
    oof = None
    fold_thresholds = []
    if parts is not None:
        oof = np.zeros(len(y))
        for f, part in enumerate(parts):
            rest = np.setdiff1d(np.arange(len(y)), part)
            inner, _, inner_t = _fit_model(
                x[rest],
                y[rest],
                feature_cfg,
                cfg,
                _fold_progress(progress, f + 1),
                None if augmented is None else augmented[rest],
                workers,
                None if paths is None else [paths[i] for i in rest],
            )
            part_paths = [paths[i] for i in part] if paths is not None else []
            oof[part] = example_scores(inner, x[part], part_paths, workers)
            fold_thresholds.append(inner_t)
    model, fitted, heldout_threshold = _fit_model(
        x, y, feature_cfg, cfg, progress, augmented, workers, paths
    )
    val_idx, val_scores = fitted["val_idx"], fitted["val_scores"]
    y_val = y[val_idx]
    summary = {
        "train_config": asdict(cfg),
        "examples": {"flowers": n_flowers, "noflowers": n_other},
        "train_size": len(y) - len(val_idx),
        "val_size": len(val_idx),
        "epochs_run": sum(m["epochs_run"] for m in fitted["members"]),
        "members": fitted["members"],
    }
    if oof is None:
        model.threshold = heldout_threshold
        summary["review_band"] = DEFAULT_REVIEW_BAND if cfg.review_band is None else cfg.review_band
    else:
        assert parts is not None  # out-of-fold scores come from the folds
        lines = choose_lines(
            oof, y, cfg.flower_share, cfg.min_precision, cfg.review_precision, cfg.review_band
        )
        model.threshold = lines.threshold
        summary["review_band"] = lines.band
        summary["source_folds"] = _fold_summary(
            oof, y, np.asarray(sources), parts, lines, heldout_threshold, fold_thresholds, cfg
        )
        fitted["oof_scores"] = oof
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["validation"] = confusion(y_val > 0.5, val_scores >= model.threshold)
    model.summary = summary
    return model, fitted


def _fit_model(
    x: np.ndarray,
    y: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    progress: Progress | None,
    augmented: np.ndarray | None,
    workers: int | None,
    paths: Sequence[str] | None,
) -> tuple[Model, dict, float]:
    """The members trained on all folds but the first, stopped on it; the model, the
    report (val_idx, val_scores, history, members) and the threshold chosen on that fold."""
    parts = folds(y, cfg.folds, cfg.seed)
    val_idx, train_idx = parts[0], np.concatenate(parts[1:])
    model = Model(feature_cfg, [], x.mean(axis=(0, 1)), x.std(axis=(0, 1)) + 1e-6)
    if paths is not None:
        model.views = ViewConfig(crops=cfg.view_crops)
    raw, x = x, model.normalize(x)  # once, here; the model applies the same scaling when it scores
    if augmented is not None and cfg.augment:
        augmented = model.normalize(augmented)
    else:
        augmented = None
    jobs = [
        {
            "x": x,
            "augmented": augmented,
            "y": y,
            "train_idx": train_idx,
            "val_idx": val_idx,
            "feature_cfg": feature_cfg,
            "cfg": cfg,
            "seed": cfg.seed + member,
        }
        for member in range(cfg.members)
    ]
    try:
        trained = _train_members(jobs, workers or default_workers(), progress)
    except MemoryError:
        raise TrainingError(
            f"not enough memory to train nets of layers {cfg.tile_layers} / {cfg.head_layers} "
            f"on batches of {cfg.batch_size}: use smaller layers or a smaller batch size"
        ) from None
    members, history = [], []
    for net, log, best_epoch in trained:
        model.nets.append(net)
        members.append({"epochs_run": len(log), "best_epoch": best_epoch})
        history += log
    val_paths = [paths[i] for i in val_idx] if paths is not None else []
    val_scores = example_scores(model, raw[val_idx], val_paths, workers)  # as classify
    threshold = precision_threshold(val_scores, y[val_idx], cfg.flower_share, cfg.min_precision)
    model.threshold = threshold
    report = {"val_idx": val_idx, "val_scores": val_scores, "history": history, "members": members}
    return model, report, threshold


def _fold_progress(progress: Progress | None, fold: int) -> Progress | None:
    """progress, told which source fold (1, 2, ...) an epoch belongs to."""
    if progress is None:
        return None
    return lambda epoch, stats: progress(epoch, {**stats, "fold": fold})


def _fold_summary(
    oof: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    parts: list[np.ndarray],
    lines: Lines,
    heldout_threshold: float,
    fold_thresholds: list[float],
    cfg: TrainConfig,
) -> dict:
    """What the out-of-fold scores say: the lines, what moves and what each source's
    photos would do, at these lines and at the threshold each fold's own training chose on
    its held-out fold (the rule without sources) with the same band rule."""
    truth = y > 0.5
    fold_of = np.empty(len(y), int)
    for f, part in enumerate(parts):
        fold_of[part] = f
    own = np.array(fold_thresholds)[fold_of]
    band = cfg.review_band if cfg.review_band is not None else DEFAULT_REVIEW_BAND
    own_move = np.array([t + effective_band(t, band) for t in fold_thresholds])[fold_of]
    moves, own_moves = oof >= lines.move, oof >= own_move
    per_source = {}
    for name in np.unique(sources):
        at = sources == name
        entry: dict = {"fold": int(fold_of[at][0])}
        for kind, of_kind in (("flower", truth), ("other", ~truth)):
            sel = at & of_kind
            entry[kind] = {
                "photos": int(sel.sum()),
                "called": int((oof[sel] >= lines.threshold).sum()),
                "moved": int(moves[sel].sum()),
                "held_back": int(((oof[sel] >= lines.low) & ~moves[sel]).sum()),
                "own_called": int((oof[sel] >= own[sel]).sum()),
                "own_moved": int(own_moves[sel].sum()),
            }
        per_source[str(name)] = entry
    return {
        "folds": len(parts),
        "move_line": lines.move,
        "review_low": lines.low,
        "heldout_threshold": heldout_threshold,
        "fold_thresholds": fold_thresholds,
        "what_moves": confusion(truth, moves),
        "own_lines_move": confusion(truth, own_moves),
        "sources": per_source,
    }


def _train_members(jobs: list[dict], workers: int, progress: Progress | None) -> list[tuple]:
    """_fit_member for every job, on up to `workers` processes, results in job order;
    progress(epoch, stats) is called here, in this process, for each epoch of each member
    (stats["member"] says which)."""

    def report(member: int) -> Progress:
        def on_epoch(epoch: int, stats: dict) -> None:
            if progress:
                progress(epoch, {**stats, "member": member})

        return on_epoch

    if workers <= 1 or len(jobs) <= 1:
        return [_fit_member(**job, progress=report(m)) for m, job in enumerate(jobs)]
    # here, not at the top: every command imports this module (cli's defaults), and the
    # managers' module is a tenth of a run's start-up
    from multiprocessing.managers import SyncManager

    parent, main = os.getpid(), threading.current_thread() is threading.main_thread()
    manager = SyncManager()  # like the workers: leaves the signals to us, dies with us
    manager.start(_stay_with, (parent, main))
    with manager:
        queue = manager.Queue()  # epochs reported by the workers
        pool = worker_pool(min(workers, len(jobs)))
        try:
            futures = [pool.submit(_fit_member_queued, job, m, queue) for m, job in enumerate(jobs)]
            while not all(f.done() for f in futures) or not queue.empty():
                try:
                    member, epoch, stats = queue.get(timeout=0.2)
                except Empty:
                    continue
                report(member)(epoch, stats)
            results = [f.result() for f in futures]
        except BaseException:  # Ctrl-C, SIGTERM: stop the nets in training now, not after
            kill_pool(pool)
            raise
        pool.shutdown()
        return results


def _fit_member_queued(job: dict, member: int, queue) -> tuple:
    def progress(epoch: int, stats: dict) -> None:
        queue.put((member, epoch, {k: float(v) for k, v in stats.items()}))

    return _fit_member(**job, progress=progress)


def _fit_member(
    x: np.ndarray,
    augmented: np.ndarray | None,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    seed: int,
    progress: Progress,
) -> tuple[TwoStageNet, list, int]:
    """One net: mini-batch Adam on train_idx, early stopping on the loss over val_idx;
    returns the net at its best epoch, the (loss, val_loss, val_acc) history and that epoch."""
    net = TwoStageNet(
        NetConfig(
            tile_shape=feature_cfg.tile_shape,
            tiles=feature_cfg.grid**2,
            tile_layers=list(cfg.tile_layers),
            head_layers=list(cfg.head_layers),
            seed=seed,
            sorted_tiles=cfg.sorted_tiles,
        )
    )
    for _, layer in net.layers():  # float32 while training: a third faster (measured)
        layer.w, layer.b = layer.w.astype(np.float32), layer.b.astype(np.float32)
    trainable = [la for name, la in net.layers() if cfg.train_tile_net or name.startswith("head")]
    history, best_epoch = fit_net(
        net,
        [la for _, la in net.layers()],
        trainable,
        x,
        y.astype(np.float32),
        train_idx,
        val_idx,
        feature_cfg,
        cfg,
        np.random.default_rng(seed),
        progress,
        augmented,
    )
    return net, history, best_epoch


def fit_net(
    net,
    layers: list,
    trainable: list,
    x: np.ndarray,
    targets: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    rng: np.random.Generator,
    progress: Progress | None = None,
    augmented: np.ndarray | None = None,
) -> tuple[list, int]:
    """The training loop of any net with forward() and backward() over `layers`:
    mini-batch Adam on the `trainable` layers over train_idx, each photo as itself or one
    of its `augmented` crops, mirrored half the time (cfg.augment), the loss weighted as
    cfg says; early stopping on the loss over val_idx. Leaves the net at its best epoch;
    returns the (loss, val_loss, val_acc) history and that epoch."""
    opt = Adam(trainable, cfg.learning_rate, cfg.weight_decay)
    x_val, y_val = x[val_idx], targets[val_idx]

    def snapshot() -> list[tuple[np.ndarray, np.ndarray]]:  # Adam works in place
        return [(la.w.copy(), la.b.copy()) for la in layers]

    def swap(weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for i, layer in enumerate(layers):
            weights[i], (layer.w, layer.b) = (layer.w, layer.b), weights[i]

    average = snapshot() if cfg.ema_decay else None
    best = (np.inf, snapshot(), 0)
    last_change = 0  # the epoch of the last better validation loss or learning-rate cut
    history = []
    for epoch in range(cfg.epochs):
        order = rng.permutation(train_idx)
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            xb = x[batch]
            if augmented is not None:  # each photo as itself or as one of its crops
                version = rng.integers(0, augmented.shape[1] + 1, len(batch))
                crop = version > 0
                xb[crop] = augmented[batch[crop], version[crop] - 1]
            if cfg.augment:
                flip = rng.random(len(batch)) < 0.5
                xb[flip] = flip_tiles(xb[flip], feature_cfg)
            yb = targets[batch]
            if cfg.mixup:
                share = rng.beta(cfg.mixup, cfg.mixup, len(batch)).astype(xb.dtype)
                other = rng.permutation(len(batch))
                xb = share[:, None, None, None] * xb + (1 - share[:, None, None, None]) * xb[other]
                yb = share * yb + (1 - share) * yb[other]
            logits = net.forward(xb)
            loss, dlogits = bce_with_logits(logits, yb, _weights(logits, yb, cfg))
            net.backward(dlogits)
            opt.step()
            if average is not None:
                for (w, b), layer in zip(average, layers):
                    w += (1 - cfg.ema_decay) * (layer.w - w)
                    b += (1 - cfg.ema_decay) * (layer.b - b)
            losses.append(loss)
        if average is not None:
            swap(average)  # validate (and keep) the average
        logits = net.forward(x_val)
        val_loss, _ = bce_with_logits(logits, y_val, _weights(logits, y_val, cfg))
        val_acc = float(np.mean((logits > 0) == (y_val > 0.5)))
        history.append((float(np.mean(losses)), val_loss, val_acc))
        if progress is not None:
            progress(epoch, {"loss": np.mean(losses), "val_loss": val_loss, "val_acc": val_acc})
        improved = val_loss < best[0] - 1e-5
        if improved:
            best = (val_loss, snapshot(), epoch)
        if average is not None:
            swap(average)  # back to training the weights themselves
        if not improved and epoch - best[2] >= cfg.patience:
            break
        if improved:
            last_change = epoch
        elif cfg.lr_drop_patience and epoch - last_change >= cfg.lr_drop_patience:
            opt.lr *= cfg.lr_drop_factor
            last_change = epoch
    for layer, (w, b) in zip(layers, best[1]):
        layer.w, layer.b = w, b
    return history, best[2]


def _weights(logits: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Each example's weight in the loss (see TrainConfig.noflower_weight); None: all 1."""
    if cfg.noflower_weight == 1 and cfg.hard_negative_weight == 0:
        return None
    other = cfg.noflower_weight * (1 + cfg.hard_negative_weight * sigmoid(logits))
    return np.where(y > 0.5, 1, other).astype(logits.dtype)
