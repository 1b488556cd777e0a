import json
from pathlib import Path

import numpy as np
import pytest

from flowersort.base.errors import ModelError
from flowersort.model.features import FeatureConfig
from flowersort.model.file import ViewConfig, load_model, probability
from flowersort.training.config import TrainConfig
from flowersort.training.train import fit


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    cfg = FeatureConfig(mode="hue-hist", image_size=24, grid=2, bins=6)
    x = rng.random((24, 4, 6, 1)).astype(np.float32)
    y = np.tile([0.0, 1.0], 12)
    x[y == 1, :, 0] += 0.5
    m, _ = fit(x, y, cfg, TrainConfig(epochs=3))
    return m, x


def test_save_load_gives_the_same_scores_to_the_bit(model, tmp_path):
    m, x = model
    m.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert np.array_equal(loaded.scores(x), m.scores(x))
    assert loaded.threshold == m.threshold
    assert loaded.features == m.features
    assert loaded.summary["validation"] == m.summary["validation"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left


def test_format_1_single_net_files_still_load(model, tmp_path):
    m, x = model
    net = m.nets[0]
    np.savez(
        tmp_path / "v1.npz",
        format=np.array(1),
        features=np.array(json.dumps(m.features.to_dict())),
        net=np.array(net.cfg.to_json()),
        threshold=np.array(0.4),
        input_mean=m.input_mean,
        input_std=m.input_std,
        summary=np.array("{}"),
        **net.state(),
    )
    loaded = load_model(tmp_path / "v1.npz")
    assert len(loaded.nets) == 1 and loaded.threshold == 0.4
    assert np.allclose(loaded.scores(x), probability([net], m.normalize(x), m.features))


def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.npz")


def test_truncated_model(model, tmp_path):
    m, _ = model
    m.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "m.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(tmp_path / "m.npz")


def rewrite(path, drop=None, replace=None):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != drop}
    arrays.update(replace or {})
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "drop,replace,match",
    [
        ("net0.head.0.w", None, "incomplete"),
        (None, {"net0.tile.0.w": np.zeros((3, 3))}, "incompatible"),
        (None, {"format": np.array(99)}, "format 99"),
        (None, {"features": np.array("{not json")}, "incompatible"),
        # crops that are not a whole number were read, then every photo at the gate
        # stopped classify with exit 4, "unexpected TypeError while reading ..."
        (None, {"views": np.array('{"crops": 5.0, "side": 0.85, "gate": 0.3}')}, "crops"),
        (None, {"views": np.array('{"crops": 2.5, "side": 0.85, "gate": 0.3}')}, "crops"),
        (None, {"views": np.array('{"crops": true, "side": 0.85, "gate": 0.3}')}, "crops"),
        (None, {"views": np.array('{"crops": 5, "side": true, "gate": 0.3}')}, "shares"),
        (None, {"views": np.array('{"crops": 5, "side": 0.85, "gate": NaN}')}, "shares"),
        (None, {"views": np.array('{"crops": 9, "side": 0.85, "gate": 0.3}')}, "crops"),
        (None, {"views": np.array('{"crops": 5, "side": 0.85, "x": 1}')}, "incompatible"),
        (None, {"views": np.array("not json")}, "incompatible"),
        # JSON nested deeper than Python recurses: exit 4, "unexpected RecursionError"
        (None, {"views": np.array("[" * 100000 + "]" * 100000)}, "incompatible"),
        (None, {"summary": np.array("[" * 100000 + "]" * 100000)}, "incompatible"),
        ("views", None, "incomplete"),
    ],
)
def test_broken_model_files(model, tmp_path, drop, replace, match):
    m, _ = model
    m.save(tmp_path / "m.npz")
    rewrite(tmp_path / "m.npz", drop, replace)
    with pytest.raises(ModelError, match=match):
        load_model(tmp_path / "m.npz")


class _Touch:
    """Unpickling this creates a file: the proof that a model file's pickle was run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_content_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pickle-ran"
    np.savez(tmp_path / "m.npz", format=np.array([_Touch(marker)], dtype=object))
    with pytest.raises(ModelError):
        load_model(tmp_path / "m.npz")
    assert not marker.exists()


def test_flower_evidence_points_at_the_flower_tiles(trained_model, tmp_path):
    """Half a flower photo beside half of another: the evidence lies on the flower half."""
    from flowersort.model.features import load_features
    from tests.conftest import make_photo, write_photo

    model = load_model(trained_model)
    g = model.features.grid
    rng = np.random.default_rng(7)
    lefts = []
    for i in range(6):
        flower, other = make_photo(rng, True, 192), make_photo(rng, False, 192)
        left = i % 2 == 0  # the flower's side
        photo = np.concatenate([flower, other] if left else [other, flower], axis=1)
        lefts.append(left)
        write_photo(tmp_path / f"half_{i}.png", photo[:, ::2])  # square again: 192 x 192
    x = np.stack([load_features(tmp_path / f"half_{i}.png", model.features) for i in range(6)])
    evidence = model.flower_evidence(x)
    assert evidence.shape == (6, g, g)
    assert evidence.min() >= 0 and np.allclose(evidence.reshape(6, -1).max(axis=1), 1)
    for e, left in zip(evidence, lefts):
        flower_half, other_half = (e[:, : g // 2], e[:, g - g // 2 :])
        if not left:
            flower_half, other_half = other_half, flower_half
        assert flower_half.mean() > 1.5 * other_half.mean()


def test_a_score_is_the_same_to_the_bit_whatever_it_is_scored_with(tmp_path):
    """A float32 matrix product's last digits depend on its size: scored in batches of 2, 7,
    16 and 33, 1, 3, 8 and 11 of those photos got scores an ulp or two (up to 1.2e-7) off
    their scores among 64 (so evaluate, which scores both folders in one stream, gave other
    digits than classify, and a rerun other digits than the first run). The nets now see
    each photo alone."""
    from flowersort.model.file import default_model_path
    from flowersort.training.evaluate import evaluate
    from tests.conftest import make_folders

    model = load_model(default_model_path())
    rng = np.random.default_rng(1)
    x = rng.random((100, model.features.grid**2, *model.features.tile_shape)).astype(np.float32)
    together = model.scores(x)
    for start, size in [(0, 1), (5, 2), (10, 7), (40, 33), (30, 64), (1, 99)]:
        assert np.array_equal(model.scores(x[start : start + size]), together[start : start + size])
    flowers, noflowers = make_folders(tmp_path, 21, seed=4)
    from flowersort.photos.archive import walk
    from flowersort.scoring.pipeline import score_photos

    alone = [
        s.score
        for folder in (flowers, noflowers)
        for photo in walk(folder)
        for s in score_photos(model, [photo], workers=1)
    ]
    assert evaluate(model, flowers, noflowers, workers=1).scores == alone


def crop_model():
    from flowersort.model.file import default_model_path

    model = load_model(default_model_path())
    model.views = ViewConfig(crops=5)
    return model


def test_a_photo_that_could_be_a_flower_is_scored_over_its_crops_too(tmp_path):
    from flowersort.model.features import features, view_features
    from flowersort.photos.archive import walk
    from flowersort.photos.decode import read_image
    from tests.conftest import make_folders

    model = crop_model()
    make_folders(tmp_path, 12, seed=3)
    images = [read_image(photo, model.features.image_size) for photo in sorted(walk(tmp_path))]
    # a gate among these photos' own scores, whatever the shipped model scores them: some
    # photos below it, some at or above
    alone_scores = [model.scores(features(img, model.features)[None])[0] for img in images]
    model.views = ViewConfig(crops=5, gate=float(np.median(alone_scores)))
    gated = 0
    for img, alone in zip(images, alone_scores):
        if alone < model.views.gate:
            assert model.score_image(img) == pytest.approx(alone, abs=1e-6)
            continue
        gated += 1
        crops = view_features(img, model.features, 5, model.views.side)
        assert crops.shape == (5, model.features.grid**2, *model.features.tile_shape)
        mean = (alone + model.scores(crops).sum()) / 6
        assert model.score_image(img) == pytest.approx(mean, abs=1e-6)
        assert abs(mean - alone) > 1e-4  # the crops changed the score
    assert 0 < gated < 24


def test_a_score_is_its_own_whatever_was_scored_with_it_and_a_rerun_decodes_only_new_photos(
    tmp_path, monkeypatch
):
    """Each photo is scored on its own where it is decoded: alone, among 150 others on two
    workers, and in a nightly rerun where 3 new photos are scattered among remembered ones
    (only those 3 decoded), it gets the same score to the bit."""
    from flowersort.photos.archive import walk
    from flowersort.scoring import pipeline
    from flowersort.scoring.cache import ScoreCache
    from flowersort.scoring.pipeline import score_photos
    from tests.conftest import make_folders

    model = crop_model()
    flowers, noflowers = make_folders(tmp_path / "photos", 78, seed=5)
    photos = sorted([*walk(flowers), *walk(noflowers)])
    # the gate at the median score alone, so that half the photos are scored over crops
    # whatever scores a given build of numpy and OpenCV gives these generated photos
    model.views = ViewConfig(crops=0)
    plain = {s.path: s.score for s in score_photos(model, photos, workers=1)}
    model.views = ViewConfig(crops=5, gate=float(np.median(list(plain.values()))))
    new = [photos[10], photos[80], photos[150]]
    cache = ScoreCache(tmp_path / "scores.sqlite", "model")
    old = [p for p in photos if p not in new]
    together = {s.path: s.score for s in score_photos(model, old, workers=2, cache=cache)}
    decoded = []
    real = pipeline.read_image
    monkeypatch.setattr(pipeline, "read_image", lambda p, *a: decoded.append(p) or real(p, *a))
    rerun = list(score_photos(model, photos, workers=1, cache=cache))
    assert sorted(decoded) == new
    assert [s.path for s in rerun] == photos
    alone = {p: next(score_photos(model, [p], workers=1)).score for p in photos}
    assert {s.path: s.score for s in rerun} == alone
    assert together == {p: alone[p] for p in old}
    gated = [p for p in photos if plain[p] >= model.views.gate]
    assert len(gated) >= len(photos) // 2
    assert all(alone[p] != plain[p] for p in gated)  # crops were used for each of them
    assert all(alone[p] == plain[p] for p in photos if p not in gated)


def test_a_model_file_gets_the_mode_the_umask_gives_a_new_file(model, tmp_path):
    import os
    import stat

    m, _ = model
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            m.save(tmp_path / f"m{mask:o}.npz")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / f"m{mask:o}.npz").stat().st_mode) == mode
