"""Only a photo that cannot be read or decoded is a skip; any other error stops the run."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flowersort.cli.app import cli
from flowersort.model import features as features_module
from flowersort.model.features import MODES, FeatureConfig, features
from tests.conftest import census, make_archive, make_photo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bug_in_the_feature_code_stops_the_run(tmp_path, trained_model, monkeypatch, workers):
    src = make_archive(tmp_path / "Pictures", 6, seed=3)
    before = census(src)

    def broken(*args):
        raise TypeError("broken() takes 3 positional arguments but 6 were given")

    monkeypatch.setattr(features_module, "hue_sat_histograms", broken)  # forked workers inherit it
    dest = tmp_path / "Flowers"
    result = CliRunner().invoke(
        cli,
        ["classify", str(src), "--move-to", str(dest), "--threshold", "0"]
        + ["--model", str(trained_model), "--workers", str(workers)],
    )
    assert result.exit_code == 4, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "unexpected TypeError while reading" in errors[0]
    assert "broken() takes" in errors[0]
    assert "p0" not in "".join(line for line in result.stderr.splitlines() if "skipped" in line)
    assert "Traceback" not in result.output
    assert census(src) == before and not any(dest.iterdir())


def test_hard_bins_put_each_vote_in_one_bin():
    from flowersort.model.columns import _hard_histograms

    values = np.array([[0.0, 0.99, 0.5, 0.3]])
    weight = np.array([[1.0, 2.0, 4.0, 8.0]])
    hist = _hard_histograms(values, weight, 4)
    assert np.allclose(hist * 4, [[1, 8, 4, 2]])
    hist = _hard_histograms(values, weight, 4, np.array([0, 1, 2, 0]), 3)
    assert hist.shape == (1, 4, 3)
    assert np.allclose(hist[0] * 4, [[1, 0, 0], [8, 0, 0], [0, 0, 4], [0, 2, 0]])


@pytest.mark.parametrize("mode", [m for m in MODES if m != "hue"])
@pytest.mark.parametrize("binning", ["hard", "unweighted"])
def test_the_binning_ablations_change_the_histograms_only(mode, binning):
    cfg = FeatureConfig(mode=mode, image_size=48, grid=4)
    img = make_photo(np.random.default_rng(5), True, size=48)
    soft = features(img, cfg)
    changed = features(img, replace(cfg, binning=binning))
    assert changed.shape == soft.shape and not np.allclose(changed, soft)
    if binning == "hard":  # the same votes, only binned differently
        assert np.allclose(changed.sum(axis=1), soft.sum(axis=1), atol=1e-5)
    assert cfg.to_dict() == replace(cfg, binning="soft").to_dict()  # saved as before
    assert replace(cfg, binning=binning).to_dict()["binning"] == binning
