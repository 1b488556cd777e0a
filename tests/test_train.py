import numpy as np
import pytest

from flowersort.errors import TrainingError
from flowersort.images import FeatureConfig
from flowersort.network import bce_with_logits
from flowersort.train import TrainConfig, fit, load_examples

CFG = FeatureConfig(image_size=48, grid=4, bins=12)


@pytest.fixture(scope="module")
def data(examples):
    ex = load_examples(*examples, CFG, workers=1)
    return ex.x, ex.y


def test_learns_generated_photos(data):
    x, y = data
    model, report = fit(x, y, CFG, TrainConfig(epochs=150, patience=40))
    assert np.mean((model.scores(x) >= model.threshold) == (y > 0.5)) >= 0.95
    assert model.summary["validation"]["accuracy"] >= 0.9
    assert 0 < model.threshold < 1
    assert report["history"][-1][0] < report["history"][0][0]  # the loss went down


def test_tile_net_is_trained_end_to_end(data):
    x, y = data
    model, _ = fit(x, y, CFG, TrainConfig(epochs=5))
    frozen, _ = fit(x, y, CFG, TrainConfig(epochs=5, train_tile_net=False))
    from flowersort.network import NetConfig, TwoStageNet

    init = TwoStageNet(NetConfig(tile_shape=CFG.tile_shape, tiles=16)).state()
    assert not np.allclose(model.net.state()["tile.0.w"], init["tile.0.w"])
    assert np.array_equal(frozen.net.state()["tile.0.w"], init["tile.0.w"])
    assert not np.allclose(frozen.net.state()["head.0.w"], init["head.0.w"])


def test_same_seed_same_weights(data):
    x, y = data
    a, _ = fit(x, y, CFG, TrainConfig(epochs=4, seed=3))
    b, _ = fit(x, y, CFG, TrainConfig(epochs=4, seed=3))
    c, _ = fit(x, y, CFG, TrainConfig(epochs=4, seed=4))
    for key, value in a.net.state().items():
        assert np.array_equal(value, b.net.state()[key])
    assert not np.array_equal(a.net.state()["tile.0.w"], c.net.state()["tile.0.w"])


def test_overfits_twenty_examples(data):
    x, y = data
    idx = np.r_[0:10, 30:40]
    cfg = TrainConfig(epochs=300, patience=300, val_fraction=0.1, augment=False, weight_decay=0)
    model, _ = fit(x[idx], y[idx], CFG, cfg)
    loss, _ = bce_with_logits(model.net.forward(model.normalize(x[idx])), y[idx])
    assert loss < 0.05


def test_one_class_or_too_few_is_an_error(data):
    x, y = data
    with pytest.raises(TrainingError, match="both classes"):
        fit(x[y == 1], y[y == 1], CFG, TrainConfig(epochs=1))
    with pytest.raises(TrainingError, match="too few"):
        fit(x[[0, 1, 30, 31]], y[[0, 1, 30, 31]], CFG, TrainConfig(epochs=1))
