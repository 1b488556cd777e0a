"""Gradients of every layer and of the whole two-stage net against finite differences."""

import numpy as np
import pytest

from flowersort.model.network import MatrixLayer, NetConfig, TwoStageNet, bce_with_logits


def numerical_grad(f, x, eps=1e-4):
    """Centred differences of the scalar f() with respect to every entry of x (in place)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


@pytest.mark.parametrize("act", ["leaky_relu", "sigmoid", "linear"])
def test_matrix_layer_gradients(act):
    rng = np.random.default_rng(1)
    layer = MatrixLayer(5, 3, act, rng)
    layer.b = rng.normal(size=layer.b.shape)  # off the ReLU kink
    x = rng.normal(size=(2, 4, 5, 6))  # images x tiles x n_in x k
    dout = rng.normal(size=(2, 4, 6, 3))
    out = layer.forward(x)
    assert out.shape == (2, 4, 6, 3)
    dx = layer.backward(dout)

    def f():
        return float(np.sum(layer.forward(x) * dout))

    assert rel_error(dx, numerical_grad(f, x)) < 1e-6
    assert rel_error(layer.dw, numerical_grad(f, layer.w)) < 1e-6
    assert rel_error(layer.db, numerical_grad(f, layer.b)) < 1e-6


@pytest.mark.parametrize(
    "tile_shape,tile_layers,sorted_tiles",
    [
        ((6, 1), [5, 3, 1], False),
        ((4, 4), [3, 1, 1], False),
        ((4, 4), [3, 2, 2], False),
        ((4, 4), [3, 2, 2], True),
    ],
)
def test_two_stage_gradients(tile_shape, tile_layers, sorted_tiles):
    cfg = NetConfig(tile_shape, 9, tile_layers, [4, 1, 1], sorted_tiles=sorted_tiles)
    net = TwoStageNet(cfg)
    rng = np.random.default_rng(2)
    for _, layer in net.layers():
        layer.b = rng.normal(scale=0.5, size=layer.b.shape)
    x = rng.random((3, 9, *tile_shape))
    y = np.array([1.0, 0.0, 1.0])

    def f():
        return bce_with_logits(net.forward(x), y)[0] * 1000  # scaled: tiny gradients

    _, dlogits = bce_with_logits(net.forward(x), y)
    dx = net.backward(dlogits * 1000)
    # six layers deep with leaky-ReLU kinks: cs231n's guidance allows more than for one layer
    assert rel_error(dx, numerical_grad(f, x)) < 1e-5
    for name, layer in net.layers():
        analytic = (layer.dw.copy(), layer.db.copy())  # numerical_grad reruns forward
        assert rel_error(analytic[0], numerical_grad(f, layer.w)) < 1e-5, name
        assert rel_error(analytic[1], numerical_grad(f, layer.b)) < 1e-5, name


def test_sorted_tiles_make_the_score_blind_to_where_tiles_are():
    """With sorted_tiles the head sees each channel's values in order, so shuffling the
    tiles leaves the logit; by position (the default) it moves it."""
    rng = np.random.default_rng(3)
    x = rng.random((2, 9, 4, 4))
    shuffled = x[:, rng.permutation(9)]
    for sorted_tiles, blind in ((True, True), (False, False)):
        net = TwoStageNet(NetConfig((4, 4), 9, [3, 2, 2], [4, 1, 1], sorted_tiles=sorted_tiles))
        assert np.allclose(net.forward(x), net.forward(shuffled)) == blind


def test_initial_loss_is_about_ln2():
    net = TwoStageNet(NetConfig(tile_shape=(6, 1), tiles=16))
    x = np.random.default_rng(3).random((200, 16, 6, 1)) * 0.1
    y = np.tile([0.0, 1.0], 100)
    loss, _ = bce_with_logits(net.forward(x), y)
    assert abs(loss - np.log(2)) < 0.2


def test_weighted_loss_counts_each_example_as_often_as_its_weight():
    logits = np.array([2.0, -1.0, 0.5])
    y = np.array([1.0, 0.0, 0.0])
    # weight 2 on the last example is that example twice (the mean still over 3)
    loss, grad = bce_with_logits(logits, y, np.array([1.0, 1.0, 2.0]))
    twice, grad_twice = bce_with_logits(logits[[0, 1, 2, 2]], y[[0, 1, 2, 2]])
    assert np.isclose(loss, twice * 4 / 3)
    assert np.allclose(grad * 3, grad_twice[[0, 1, 2]] * 4 * [1, 1, 2])
    plain, plain_grad = bce_with_logits(logits, y)
    ones, ones_grad = bce_with_logits(logits, y, np.ones(3))
    assert np.isclose(plain, ones) and np.allclose(plain_grad, ones_grad)
