"""How a training is set: TrainConfig, its limits, and the progress callback's type."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from flowersort.model.file import ViewConfig
from flowersort.model.network import HEAD_LAYERS, TILE_LAYERS

MIN_PER_CLASS = 4
MAX_LAYER_ROWS = 4096  # far above any useful size; a larger layer would not fit in memory


@dataclass
class TrainConfig:
    """Optimisation settings; saved in the model's summary."""

    epochs: int = 300
    batch_size: int = 64
    learning_rate: float = 0.003
    # L2 on the weights, not the biases; 1e-3 since the wider net (was 1e-4): fewer
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


Progress = Callable[[int, dict], None]  # (epoch, stats), once per epoch of each net
