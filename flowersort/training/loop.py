"""The training loop of one net: mini-batches of augmented examples, Adam, the weighted
loss, a running average of the weights, early stopping and learning-rate cuts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowersort.model.features import FeatureConfig, flip_tiles
from flowersort.model.network import bce_with_logits, sigmoid
from flowersort.training.config import Progress, TrainConfig


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


@dataclass
class Split:
    """What a net learns from: feature maps x (N, tiles, a, b) and their targets, the
    examples it trains on (train_idx) and those that stop it (val_idx), and each photo's
    augmented crops (N, copies, tiles, a, b), None for the photos alone."""

    x: np.ndarray
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    augmented: np.ndarray | None = None


def fit_net(
    net,
    layers: list,
    trainable: list,
    split: Split,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> tuple[list, int]:
    """The training loop of any net with forward() and backward() over `layers`:
    mini-batch Adam on the `trainable` layers over split.train_idx (_epoch), the loss
    weighted as cfg says; early stopping on the loss over split.val_idx. Leaves the net at
    its best epoch; returns the (loss, val_loss, val_acc) history and that epoch."""
    opt = Adam(trainable, cfg.learning_rate, cfg.weight_decay)
    x_val, y_val = split.x[split.val_idx], split.targets[split.val_idx]
    average = _Average(layers, cfg.ema_decay) if cfg.ema_decay else None
    best = (np.inf, _snapshot(layers), 0)
    last_change = 0  # the epoch of the last better validation loss or learning-rate cut
    history = []
    for epoch in range(cfg.epochs):
        losses = _epoch(net, opt, split, feature_cfg, cfg, rng, average)
        if average is not None:
            average.swap()  # validate (and keep) the average
        val_loss, val_acc = _validate(net, x_val, y_val, cfg)
        history.append((float(np.mean(losses)), val_loss, val_acc))
        if progress is not None:
            progress(epoch, {"loss": np.mean(losses), "val_loss": val_loss, "val_acc": val_acc})
        improved = val_loss < best[0] - 1e-5
        if improved:
            best = (val_loss, _snapshot(layers), epoch)
        if average is not None:
            average.swap()  # back to training the weights themselves
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


def _epoch(
    net,
    opt: Adam,
    split: Split,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    rng: np.random.Generator,
    average: _Average | None,
) -> list:
    """One pass over split.train_idx in a random order, one step of opt per batch (and of
    the average, if any); the batches' losses."""
    order = rng.permutation(split.train_idx)
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        xb, yb = _batch(split, order[start : start + cfg.batch_size], feature_cfg, cfg, rng)
        logits = net.forward(xb)
        loss, dlogits = bce_with_logits(logits, yb, _weights(logits, yb, cfg))
        net.backward(dlogits)
        opt.step()
        if average is not None:
            average.update()
        losses.append(loss)
    return losses


def _batch(
    split: Split,
    batch: np.ndarray,
    feature_cfg: FeatureConfig,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A batch's feature maps and targets as a step learns them: each photo as itself or
    as one of its augmented crops, mirrored half the time (cfg.augment), blended with
    another photo of the batch (cfg.mixup)."""
    xb = split.x[batch]
    if split.augmented is not None:  # each photo as itself or as one of its crops
        version = rng.integers(0, split.augmented.shape[1] + 1, len(batch))
        crop = version > 0
        xb[crop] = split.augmented[batch[crop], version[crop] - 1]
    if cfg.augment:
        flip = rng.random(len(batch)) < 0.5
        xb[flip] = flip_tiles(xb[flip], feature_cfg)
    yb = split.targets[batch]
    if cfg.mixup:
        share = rng.beta(cfg.mixup, cfg.mixup, len(batch)).astype(xb.dtype)
        other = rng.permutation(len(batch))
        xb = share[:, None, None, None] * xb + (1 - share[:, None, None, None]) * xb[other]
        yb = share * yb + (1 - share) * yb[other]
    return xb, yb


def _validate(net, x_val: np.ndarray, y_val: np.ndarray, cfg: TrainConfig) -> tuple[float, float]:
    """The net's loss (weighted as in training) and accuracy on the validation examples."""
    logits = net.forward(x_val)
    val_loss, _ = bce_with_logits(logits, y_val, _weights(logits, y_val, cfg))
    return val_loss, float(np.mean((logits > 0) == (y_val > 0.5)))


def _weights(logits: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Each example's weight in the loss (see TrainConfig.noflower_weight); None: all 1."""
    if cfg.noflower_weight == 1 and cfg.hard_negative_weight == 0:
        return None
    other = cfg.noflower_weight * (1 + cfg.hard_negative_weight * sigmoid(logits))
    return np.where(y > 0.5, 1, other).astype(logits.dtype)


def _snapshot(layers: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of the layers' weights (Adam changes them in place)."""
    return [(la.w.copy(), la.b.copy()) for la in layers]


class _Average:
    """A running average of the layers' weights (TrainConfig.ema_decay): each step moves
    it 1 - decay of the way to the weights."""

    def __init__(self, layers: list, decay: float):
        self.layers, self.decay = layers, decay
        self.weights = _snapshot(layers)

    def update(self) -> None:
        for (w, b), layer in zip(self.weights, self.layers):
            w += (1 - self.decay) * (layer.w - w)
            b += (1 - self.decay) * (layer.b - b)

    def swap(self) -> None:
        """The average into the layers and their weights in its place; again: back."""
        for i, layer in enumerate(self.layers):
            self.weights[i], (layer.w, layer.b) = (layer.w, layer.b), self.weights[i]
