"""The original decision rule against a threshold chosen on validation, on one net.

The original article's second net ends in four outputs trained towards [1, 0, 1, 0] and calls
a photo a flower when std(|[1, 0, 1, 0] - out|) < 0.2. flowersort's head ends in one logit, so
this benchmark trains one two-stage net whose head ends in four outputs instead (targets
[1, 0, 1, 0] for flowers, [0, 1, 0, 1] for other photos, cross-entropy on each, the default
input, flips, early stopping on a validation fold of train), then decides on dev both ways:
with the original rule, and with a threshold on the mean evidence
(out0 + (1 - out1) + out2 + (1 - out3)) / 4 chosen on the validation fold.

usage: python benchmarks/decision_rule.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.model.metrics import best_threshold, confusion
from flowersort.model.network import MatrixNet, sigmoid
from flowersort.training.config import TrainConfig
from flowersort.training.crossval import folds
from flowersort.training.examples import load_examples
from flowersort.training.loop import Split, fit_net

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TARGET = np.array([1.0, 0.0, 1.0, 0.0])
CFG = FeatureConfig()


class FourOutputNet:
    """The two-stage net with the original's four-output head."""

    def __init__(self, rng: np.random.Generator):
        self.tile_net = MatrixNet(CFG.tile_shape, [16, 4, 1], "sigmoid", rng)
        self.channels = int(np.prod(self.tile_net.out_shape))
        self.head = MatrixNet((CFG.grid**2, self.channels), [8, 4, 1], "linear", rng)
        assert self.head.out_shape == (4, 1)
        self.layers = self.tile_net.layers + self.head.layers

    def forward(self, x: np.ndarray) -> np.ndarray:
        tmap = self.tile_net.forward(x).reshape(x.shape[0], -1, self.channels)
        return self.head.forward(tmap).reshape(-1, 4)  # logits

    def backward(self, dlogits: np.ndarray) -> None:
        dmap = self.head.backward(dlogits.reshape(-1, 4, 1))
        self.tile_net.backward(dmap.reshape(*dmap.shape[:2], *self.tile_net.out_shape))


def train(x, targets, train_idx, val_idx, seed=0):
    """flowersort's own training loop (loop.fit_net, default settings: flips, Adam, early
    stopping on the validation fold), on the four-output net."""
    rng = np.random.default_rng(seed)
    net = FourOutputNet(rng)
    split = Split(x, targets, train_idx, val_idx)
    fit_net(net, net.layers, net.layers, split, CFG, TrainConfig(), rng)
    return net


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: nothing to measure")
    tr = load_examples(DATA / "train" / "flowers", DATA / "train" / "noflowers", CFG)
    dev = load_examples(DATA / "dev" / "flowers", DATA / "dev" / "noflowers", CFG)
    mean, std = tr.x.mean(axis=(0, 1)), tr.x.std(axis=(0, 1)) + 1e-6
    x, x_dev = (tr.x - mean) / std, (dev.x - mean) / std
    targets = np.where(tr.y[:, None] > 0.5, TARGET, 1 - TARGET)
    parts = folds(tr.y, 5, 0)
    val_idx, train_idx = parts[0], np.concatenate(parts[1:])
    net = train(x, targets, train_idx, val_idx)

    def evidence(xs):
        out = sigmoid(net.forward(xs))
        return out, (out * (2 * TARGET - 1) + (1 - TARGET)).mean(axis=1)

    _, val_score = evidence(x[val_idx])
    threshold = best_threshold(val_score, tr.y[val_idx])
    out, score = evidence(x_dev)
    truth = dev.y > 0.5
    rows = [
        ("original rule: std(|[1,0,1,0] - out|) < 0.2", np.std(np.abs(TARGET - out), axis=1) < 0.2),
        (f"threshold chosen on validation ({threshold:.3f})", score >= threshold),
    ]
    print("| decision (same net, four outputs) | accuracy | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    for name, pred in rows:
        m = confusion(truth, pred)
        print(
            f"| {name} | {m['accuracy']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {m['f1']:.3f} |"
        )


if __name__ == "__main__":
    main()
