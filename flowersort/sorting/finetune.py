"""Fine-tuning a model to the user's answers (`fine_tune`): its member nets' heads
refitted, held to their own scores on the archive's other photos; and the threshold that
moves as many photos as the model did (`same_count_threshold`). adapt.py's `adapt` calls
both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowersort.model.features import flip_tiles
from flowersort.model.file import Model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND, lines_for
from flowersort.model.network import bce_with_logits, sigmoid
from flowersort.scoring.pipeline import score_photos
from flowersort.sorting.decide import move_line
from flowersort.training.loop import Adam


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
    weight = _answer_weights(y, cfg)
    if keep is not None and len(keep) and cfg.keep_weight:
        k = model.normalize(keep).astype(np.float32)
        k = np.concatenate([k, flip_tiles(k, model.features)])
        weight = np.concatenate([weight, np.full(len(k), cfg.keep_weight / len(k), np.float32)])
    else:
        k = x[:0]
    inputs = np.concatenate([x, k])
    nets = [_fit_head(member, inputs, y, len(k), weight, cfg) for member in model.nets]
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


def _answer_weights(y: np.ndarray, cfg: AdaptConfig) -> np.ndarray:
    """Each answer's weight in the loss. Each class weighs half: the photos asked about are
    mostly non-flowers near the threshold, and answers of one kind alone would pull every
    score that way."""
    n_flowers = y.sum()
    weight = np.full(len(y), cfg.answer_weight / len(y), np.float32)
    if 0 < n_flowers < len(y):
        weight *= np.where(y > 0.5, len(y) / (2 * n_flowers), len(y) / (2 * (len(y) - n_flowers)))
    return weight


def _fit_head(
    member, inputs: np.ndarray, y: np.ndarray, kept: int, weight: np.ndarray, cfg: AdaptConfig
):
    """A copy of one member net with its head's last cfg.layers fitted: to the answers y
    (the first len(y) inputs) and, for the `kept` photos after them, to its own
    probabilities; the tile map stays the member's."""
    net = type(member)(member.cfg)
    net.load_state(member.state())
    tmap = net.tile_map(inputs)  # (N, T, c): fixed, only the head learns
    targets = y
    if kept:  # each member's own probabilities for the kept photos
        targets = np.concatenate([y, sigmoid(net.head_forward(tmap[len(y) :]))])
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
    return net


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
    line = move_line(model)
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
