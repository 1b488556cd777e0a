"""Folds of whole sources, and the threshold and review band chosen on them."""

import numpy as np

from flowersort.model.features import FeatureConfig
from flowersort.model.metrics import choose_lines, effective_band, lines_for, precision_threshold
from flowersort.training.config import TrainConfig
from flowersort.training.examples import load_examples
from flowersort.training.sources import photo_sources, read_sources, source_folds, source_name
from flowersort.training.train import fit

CFG = FeatureConfig(image_size=48, grid=4, bins=12)


def test_a_manifest_source_is_its_repository():
    value = "github:JoelOscarsson/dl-assignment@e43f770f:data/flowers/daisy/1.jpg"
    assert source_name(value) == "github:JoelOscarsson/dl-assignment"
    assert source_name("debian:lomiri-wallpapers:usr/share/x.jpg") == "debian:lomiri-wallpapers"
    assert source_name("my phone") == "my phone"


def test_sources_come_from_the_file_else_the_first_subfolder(tmp_path):
    flowers, others = tmp_path / "flowers", tmp_path / "noflowers"
    for p in (flowers / "garden" / "a.jpg", flowers / "b.jpg", others / "c.jpg"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "MANIFEST.csv").write_text("path,source\nnoflowers/c.jpg,github:o/r@1:c.jpg\n")
    listed = read_sources(tmp_path / "MANIFEST.csv")
    paths = [str(flowers / "garden" / "a.jpg"), str(flowers / "b.jpg"), str(others / "c.jpg")]
    got = photo_sources(paths, [flowers, others], listed)
    assert list(got) == ["flowers/garden", "flowers", "github:o/r"]


def test_folds_keep_each_source_whole_and_balance_the_flowers():
    rng = np.random.default_rng(0)
    sources = np.array([f"s{i}" for i in rng.integers(0, 23, 600)])
    y = (np.char.replace(sources, "s", "").astype(int) % 3 == 0).astype(float)
    parts = source_folds(sources, y, 5)
    assert sorted(np.concatenate(parts)) == list(range(600))  # each photo once
    for a in range(5):
        for b in range(a + 1, 5):
            assert not set(sources[parts[a]]) & set(sources[parts[b]])
    flowers = [y[p].sum() for p in parts]
    assert max(flowers) - min(flowers) <= max(np.unique(sources[y > 0], return_counts=True)[1])
    assert source_folds(sources[:40], y[:40], 50) is None  # fewer sources than folds


def test_stored_lines_give_classify_the_chosen_move_line():
    for move, low in ((0.9, 0.7), (0.97, 0.5), (0.6, 0.55), (0.3, 0.0)):
        lines = lines_for(move, (move - low) / 2)
        # classify moves at threshold + its effective band: exactly the chosen line
        assert abs(lines.threshold + effective_band(lines.threshold, lines.band) - move) < 1e-9
        assert lines.low >= low - 1e-9 and lines.low <= move


def test_what_moves_keeps_the_precision_and_the_band_holds_mostly_flowers():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(300), np.zeros(900)]
    scores = np.clip(np.r_[rng.normal(0.75, 0.15, 300), rng.normal(0.3, 0.15, 900)], 0, 1)
    lines = choose_lines(scores, y, 0.08, 0.95, 0.5)
    weight = 0.08 / 0.92 * 900 / 300
    moved = scores >= lines.threshold + effective_band(lines.threshold, lines.band)
    tp, fp = y[moved].sum() * weight, (1 - y[moved]).sum()
    assert tp / (tp + fp) >= 0.95
    assert lines.move == precision_threshold(scores, y, 0.08, 0.95)
    band = (scores >= lines.low) & ~moved
    assert band.any()
    tp, fp = y[band].sum() * weight, (1 - y[band]).sum()
    assert tp / (tp + fp) >= 0.5
    # a band given by hand keeps its width (narrowed near 1 as classify narrows it)
    fixed = choose_lines(scores, y, 0.08, 0.95, 0.5, band=0.05)
    assert fixed.band == 0.05 and abs(fixed.threshold + 0.05 - fixed.move) < 1e-9


def test_the_threshold_is_chosen_on_scores_of_sources_the_nets_never_saw(examples):
    ex = load_examples(*examples, CFG, workers=1)
    sources = np.array([f"s{i % 6}" for i in range(len(ex.y))])
    cfg = TrainConfig(epochs=4, members=1, source_folds=3)
    model, report = fit(ex.x, ex.y, CFG, cfg, workers=1, sources=sources)
    plain, plain_report = fit(ex.x, ex.y, CFG, cfg, workers=1)
    # the same nets either way: only the lines differ
    for a, b in zip(model.nets, plain.nets):
        for key, value in a.state().items():
            assert np.array_equal(value, b.state()[key])
    assert plain.threshold == precision_threshold(
        plain_report.val_scores, ex.y[plain_report.val_idx], 0.08, 0.95
    )
    oof = report.oof_scores
    # the out-of-fold scores are not the final model's: each photo was scored by nets
    # trained without its source
    assert not np.allclose(oof, model.scores(ex.x))
    lines = choose_lines(oof, ex.y, 0.08, 0.95, 0.5)
    assert model.threshold == lines.threshold
    assert model.summary["review_band"] == lines.band
    folds = model.summary["source_folds"]
    assert folds["folds"] == 3 and len(folds["fold_thresholds"]) == 3
    per_source = folds["sources"].values()
    assert sum(s["flower"]["photos"] + s["other"]["photos"] for s in per_source) == len(ex.y)
    assert sum(s["flower"]["moved"] for s in per_source) == folds["what_moves"]["tp"]
    assert folds["what_moves"]["tp"] == int(((oof >= lines.move) & (ex.y > 0.5)).sum())


def test_a_sources_file_without_its_columns_is_refused_in_one_line(examples, tmp_path):
    from tests.conftest import run

    bad = tmp_path / "sources.csv"
    bad.write_text("file,origin\na.jpg,phone\n")
    result = run("train", *examples, "--sources", bad, "--model", tmp_path / "m.npz")
    assert result.exit_code != 0 and not (tmp_path / "m.npz").exists()
    assert result.output.splitlines()[-1] == (
        f"Error: the sources file {bad} needs a header with 'path' and 'source' columns (one "
        f"row per photo: its path, relative to the file's folder, and its source)"
    )


def test_train_chooses_the_lines_on_source_folds_when_it_knows_the_sources(examples, tmp_path):
    import json

    from flowersort.photos.archive import walk
    from tests.conftest import run

    listing = tmp_path / "sources.csv"
    photos = sorted(p for folder in examples for p in walk(folder))
    rows = [f"{p},camera{i % 5}" for i, p in enumerate(photos)]
    listing.write_text("path,source\n" + "\n".join(rows) + "\n")
    tiny = ("--epochs", 2, "--members", 1, "--image-size", 48, "--grid", 4, "--bins", 12)
    model = tmp_path / "m.npz"
    result = run("train", *examples, *tiny, "--sources", listing, "--model", model, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["source_folds"]["folds"] == 5
    assert sorted(summary["source_folds"]["sources"]) == [f"camera{i}" for i in range(5)]
    plain = run("train", *examples, *tiny, "--model", tmp_path / "p.npz", "--json")
    assert "source_folds" not in json.loads(plain.output.splitlines()[-1])  # 2 flat folders
