import os
import shutil
from pathlib import Path

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.training.examples import load_examples
from flowersort.training.featcache import FeatureCache

CFG = FeatureConfig(image_size=48, grid=4, bins=12)


def copy_examples(examples, root):
    flowers, noflowers = root / "flowers", root / "noflowers"
    shutil.copytree(examples[0], flowers)
    shutil.copytree(examples[1], noflowers)
    return flowers, noflowers


def test_remembered_features_are_used_until_the_photo_changes(examples, tmp_path):
    flowers, noflowers = copy_examples(examples, tmp_path / "data")
    cache = tmp_path / "features"
    first = load_examples(flowers, noflowers, CFG, workers=1, copies=2, cache_folder=cache)
    photo = flowers / "fl_000.jpg"
    st = photo.stat()
    # same size and mtime, other bytes: only a remembered entry can still give features
    photo.write_bytes(b"\0" * st.st_size)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_examples(flowers, noflowers, CFG, workers=1, copies=2, cache_folder=cache)
    assert again.paths == first.paths and not again.skipped
    assert np.array_equal(again.x, first.x)
    assert np.array_equal(again.augmented, first.augmented)
    # a new mtime is a miss: the photo is decoded again, and now it is not a photo
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load_examples(flowers, noflowers, CFG, workers=1, copies=2, cache_folder=cache)
    assert [p for p, _ in changed.skipped] == [str(photo)]


def test_cached_features_equal_decoded_ones_for_each_setting(examples, tmp_path):
    cache = tmp_path / "features"
    plain = load_examples(*examples, CFG, workers=1)
    load_examples(*examples, CFG, workers=1, cache_folder=cache)
    cached = load_examples(*examples, CFG, workers=1, cache_folder=cache)
    assert np.array_equal(cached.x, plain.x)
    # another setting never reads these entries
    other = FeatureConfig(image_size=48, grid=4, bins=10, mode="hue-sat-hist")
    assert FeatureCache(cache, other, 0).get(plain.paths[0]) is None
    assert FeatureCache(cache, CFG, 1).get(plain.paths[0]) is None
    assert FeatureCache(cache, CFG, 0).get(plain.paths[0]) is not None


def test_a_damaged_entry_is_a_miss(examples, tmp_path):
    cache = FeatureCache(tmp_path / "features", CFG, 0)
    path = next(examples[0].iterdir())
    x = np.ones((CFG.grid**2, *CFG.tile_shape), np.float32)
    cache.put(path, x)
    assert np.array_equal(cache.get(path), x)
    for entry in (tmp_path / "features").rglob("*.npy"):
        entry.write_bytes(entry.read_bytes()[:60])
    assert cache.get(path) is None


def test_train_remembers_features_unless_told_not_to(examples, tmp_path):
    from click.testing import CliRunner

    from flowersort.cli.app import cli

    base = ["train", *map(str, examples), "--epochs", "2", "--members", "1"]
    base += ["--image-size", "48", "--grid", "4", "--crops", "1"]
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "flowersort" / "features"
    result = CliRunner().invoke(
        cli, [*base, "--model", str(tmp_path / "a.npz"), "--no-feature-cache"]
    )
    assert result.exit_code == 0, result.output
    assert not cache.exists()
    result = CliRunner().invoke(cli, [*base, "--model", str(tmp_path / "b.npz")])
    assert result.exit_code == 0, result.output
    assert len(list(cache.rglob("*.npy"))) == 60  # one entry per photo
    mine = tmp_path / "mine"
    result = CliRunner().invoke(
        cli, [*base, "--model", str(tmp_path / "c.npz"), "--feature-cache", str(mine)]
    )
    assert result.exit_code == 0, result.output
    assert len(list(mine.rglob("*.npy"))) == 60
