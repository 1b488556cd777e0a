"""The two-stage patch network, all of it in numpy: layers, nets, forward and backward.

A matrix-network layer maps (..., n_in, k) to (..., k, n_out): ``act(W @ x + b)`` and then
a transpose, so a stack of them maps any input shape to any output shape. The tile net
(the same weights for every tile) turns each tile into ``channels`` numbers; these form the
tile map, (tiles, channels) per image; the head net maps the tile map to one logit. The
leading axes are images x tiles, so a whole batch goes through in a few matrix products.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

ACTIVATIONS = ("leaky_relu", "sigmoid", "linear")
# the default shape (wider and one layer deeper than the first 16,4,1 / 8,1,1, for a tile
# map of 8 numbers per tile; see benchmarks/heldout.py and docs/experiments.md)
TILE_LAYERS = (32, 8, 8, 1)
HEAD_LAYERS = (16, 1, 1)
LEAK = 0.05  # a leaky ReLU: width-1 layers of a matrix net would otherwise die easily


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


class MatrixLayer:
    """act(W @ x + b), transposed: (..., n_in, k) -> (..., k, n_out)."""

    def __init__(self, n_in: int, n_out: int, act: str, rng: np.random.Generator):
        assert act in ACTIVATIONS, f"unknown activation {act}"
        self.act = act
        scale = np.sqrt(2.0 / n_in) if act == "leaky_relu" else np.sqrt(1.0 / n_in)
        self.w = rng.normal(0.0, scale, (n_out, n_in))
        self.b = np.zeros((n_out, 1))

    def params(self) -> dict[str, np.ndarray]:
        return {"w": self.w, "b": self.b}

    def forward(self, x: np.ndarray) -> np.ndarray:
        # act(W @ x + b) transposed is act(x^T @ W^T + b^T): with every matrix of the batch
        # stacked as rows, the whole batch is one BLAS product, not one small product each
        n_out, n_in = self.w.shape
        self.shape = x.shape  # (..., n_in, k)
        self.xt = x.swapaxes(-1, -2).reshape(-1, n_in)  # (... * k, n_in)
        z = self.xt @ self.w.T + self.b.T  # (... * k, n_out)
        if self.act == "leaky_relu":
            self.y = np.maximum(z, LEAK * z)  # the same as np.where(z > 0, z, LEAK * z)
        elif self.act == "sigmoid":
            self.y = sigmoid(z)
        else:
            self.y = z
        return self.y.reshape(*x.shape[:-2], x.shape[-1], n_out)  # (..., k, n_out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dy = dout.reshape(self.y.shape)  # (... * k, n_out), rows as in forward
        if self.act == "leaky_relu":
            dz = np.where(self.y > 0, dy, LEAK * dy)  # stays in dy's dtype (float32 training)
        elif self.act == "sigmoid":
            dz = dy * self.y * (1 - self.y)
        else:
            dz = dy
        # shared weights: the gradient summed over every image and tile in one product
        self.dw = dz.T @ self.xt  # (n_out, n_in)
        self.db = dz.sum(axis=0)[:, None]  # (n_out, 1)
        dx = dz @ self.w  # (... * k, n_in)
        *lead, n_in, k = self.shape
        return dx.reshape(*lead, k, n_in).swapaxes(-1, -2)  # (..., n_in, k)


class MatrixNet:
    """A stack of MatrixLayers: leaky ReLU inside, `last_act` on the last layer."""

    def __init__(self, in_shape: tuple[int, int], sizes: list[int], last_act: str, rng):
        self.layers = []
        rows, cols = in_shape
        for i, n_out in enumerate(sizes):
            act = last_act if i == len(sizes) - 1 else "leaky_relu"
            self.layers.append(MatrixLayer(rows, n_out, act, rng))
            rows, cols = cols, n_out
        self.out_shape = (rows, cols)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


@dataclass(frozen=True)
class NetConfig:
    """The shape of the two-stage network; saved in the model file to rebuild it."""

    tile_shape: tuple[int, int]  # one tile's input matrix
    tiles: int  # tiles per image
    tile_layers: list[int] = field(default_factory=lambda: list(TILE_LAYERS))
    head_layers: list[int] = field(default_factory=lambda: list(HEAD_LAYERS))
    seed: int = 0
    # the head sees each tile-map channel's values in descending order, not tile by tile:
    # it can judge what is in the photo but not where (a benchmark option, off by default)
    sorted_tiles: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> NetConfig:
        d = json.loads(text)
        d["tile_shape"] = tuple(d["tile_shape"])
        return cls(**d)


class TwoStageNet:
    """Tile net on every tile, then the head net over the tile map; one logit per image."""

    def __init__(self, cfg: NetConfig):
        rng = np.random.default_rng(cfg.seed)
        self.cfg = cfg
        self.tile_net = MatrixNet(
            (cfg.tile_shape[0], cfg.tile_shape[1]), cfg.tile_layers, "sigmoid", rng
        )
        self.channels = int(np.prod(self.tile_net.out_shape))
        self.head = MatrixNet((cfg.tiles, self.channels), cfg.head_layers, "linear", rng)
        assert self.head.out_shape == (1, 1), "head_layers must end with 1, 1"

    def layers(self) -> list[tuple[str, MatrixLayer]]:
        named = [(f"tile.{i}", layer) for i, layer in enumerate(self.tile_net.layers)]
        return named + [(f"head.{i}", layer) for i, layer in enumerate(self.head.layers)]

    def tile_map(self, x: np.ndarray) -> np.ndarray:
        """(N, tiles, a, b) -> (N, tiles, channels): what the tile net sees in each tile."""
        out = self.tile_net.forward(x)  # (N, T, p, q)
        return out.reshape(x.shape[0], self.cfg.tiles, self.channels)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, tiles, a, b) -> logits (N,)."""
        return self.head_forward(self.tile_map(x))

    def head_forward(self, tmap: np.ndarray) -> np.ndarray:
        """Tile map (N, T, c) -> logits (N,), through the sort if the net has one."""
        if self.cfg.sorted_tiles:
            self.order = np.argsort(-tmap, axis=1, kind="stable")
            tmap = np.take_along_axis(tmap, self.order, axis=1)
        return self.head.forward(tmap).reshape(-1)  # (N, 1, 1) -> (N,)

    def head_backward(self, dlogits: np.ndarray) -> np.ndarray:
        """Gradients of the head's layers; returns d logit / d tile map (N, T, c), each
        tile's gradient back in its own place."""
        dmap = self.head.backward(dlogits.reshape(-1, 1, 1))
        if self.cfg.sorted_tiles:
            unsorted = np.empty_like(dmap)
            np.put_along_axis(unsorted, self.order, dmap, axis=1)
            dmap = unsorted
        return dmap

    def backward(self, dlogits: np.ndarray) -> np.ndarray:
        """Gradients of every layer, through the tile map into the tile net."""
        dmap = self.head_backward(dlogits)  # (N, T, c)
        p, q = self.tile_net.out_shape
        dtiles = dmap.reshape(*dmap.shape[:2], p, q)  # (N, T, p, q)
        return self.tile_net.backward(dtiles)  # (N, T, a, b)

    def state(self) -> dict[str, np.ndarray]:
        return {
            f"{name}.{k}": v for name, layer in self.layers() for k, v in layer.params().items()
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Set every weight from `state`, as float32: scoring in float32 is faster, and
        training keeps its weights in float32 too."""
        for name, layer in self.layers():
            for key in ("w", "b"):
                value = state[f"{name}.{key}"]
                if value.shape != getattr(layer, key).shape:
                    raise ValueError(f"{name}.{key} has shape {value.shape}")
                setattr(layer, key, value.astype(np.float32))


def bce_with_logits(
    logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy and its gradient with respect to the logits; with
    `weight`, each example's term counts that many times (the mean is still over N)."""
    terms = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    grad = (sigmoid(logits) - y) / len(y)
    if weight is None:
        return float(np.mean(terms)), grad
    return float(np.mean(weight * terms)), weight * grad
