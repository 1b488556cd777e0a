"""The member nets of a model: each built from its seed and trained (fit_member), all of
them on up to one process each (train_members)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from queue import Empty

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.model.network import NetConfig, TwoStageNet
from flowersort.scoring.pipeline import kill_pool, stay_with, worker_pool
from flowersort.training.config import Progress, TrainConfig
from flowersort.training.loop import Split, fit_net


@dataclass
class MemberJob:
    """One member net to train, sent whole to the process that trains it: the (normalised)
    examples, the settings and the member's own seed."""

    split: Split
    feature_cfg: FeatureConfig
    cfg: TrainConfig
    seed: int


def train_members(jobs: list[MemberJob], workers: int, progress: Progress | None) -> list[tuple]:
    """fit_member for every job, on up to `workers` processes, results in job order;
    progress(epoch, stats) is called here, in this process, for each epoch of each member
    (stats["member"] says which)."""

    def report(member: int) -> Progress:
        def on_epoch(epoch: int, stats: dict) -> None:
            if progress:
                progress(epoch, {**stats, "member": member})

        return on_epoch

    if workers <= 1 or len(jobs) <= 1:
        return [fit_member(job, report(m)) for m, job in enumerate(jobs)]
    # here, not at the top: only training on several processes needs it, and the managers'
    # module is a tenth of a run's start-up
    from multiprocessing.managers import SyncManager

    parent, main = os.getpid(), threading.current_thread() is threading.main_thread()
    manager = SyncManager()  # like the workers: leaves the signals to us, dies with us
    manager.start(stay_with, (parent, main))
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


def _fit_member_queued(job: MemberJob, member: int, queue) -> tuple:
    def progress(epoch: int, stats: dict) -> None:
        queue.put((member, epoch, {k: float(v) for k, v in stats.items()}))

    return fit_member(job, progress)


def fit_member(job: MemberJob, progress: Progress) -> tuple[TwoStageNet, list, int]:
    """One net from job.seed: mini-batch Adam on job.split.train_idx, early stopping on the
    loss over its val_idx (fit_net); returns the net at its best epoch, the (loss, val_loss,
    val_acc) history and that epoch."""
    cfg = job.cfg
    net = TwoStageNet(
        NetConfig(
            tile_shape=job.feature_cfg.tile_shape,
            tiles=job.feature_cfg.grid**2,
            tile_layers=list(cfg.tile_layers),
            head_layers=list(cfg.head_layers),
            seed=job.seed,
            sorted_tiles=cfg.sorted_tiles,
        )
    )
    for _, layer in net.layers():  # float32 while training: a third faster (measured)
        layer.w, layer.b = layer.w.astype(np.float32), layer.b.astype(np.float32)
    trainable = [la for name, la in net.layers() if cfg.train_tile_net or name.startswith("head")]
    layers = [la for _, la in net.layers()]
    rng = np.random.default_rng(job.seed)
    history, best_epoch = fit_net(
        net, layers, trainable, job.split, job.feature_cfg, cfg, rng, progress
    )
    return net, history, best_epoch
