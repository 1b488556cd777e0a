"""The fast paths must give the same answers: EXIF previews, reduced decoding, the cache."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowersort.cli.app import cli
from flowersort.model import features
from flowersort.photos.decode import read_image
from flowersort.photos.exif import read_exif
from flowersort.scoring import pipeline
from tests.camera import camera_jpeg, exif_block, preview_of
from tests.conftest import make_archive, make_photo


def test_preview_is_found_and_used_without_reading_the_rest(tmp_path):
    img = make_photo(np.random.default_rng(0), True, size=96)
    big = cv2.resize(img, (1200, 800))  # 3:2, so the preview is letterboxed
    path = tmp_path / "camera.jpg"
    path.write_bytes(camera_jpeg(big))
    info = read_exif(path.read_bytes()[:65536])
    assert info.thumbnail is not None
    preview = read_image(path, 96, thumbnail=True)
    assert preview.shape[:2] == (107, 160)  # the black bars are cut away
    # the preview and the frame header are enough: the file may end right after them
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xc0", sum(info.thumbnail)) + 20])
    assert read_image(path, 96, thumbnail=True).shape[:2] == (107, 160)


def test_preview_too_small_falls_back_to_the_photo(tmp_path):
    path = tmp_path / "camera.jpg"
    path.write_bytes(camera_jpeg(np.full((800, 1200, 3), 99, np.uint8)))
    assert read_image(path, 400, thumbnail=True).shape[:2] == (400, 600)


def test_preview_respects_orientation(tmp_path):
    img = np.zeros((800, 1200, 3), np.uint8)
    img[:, :600] = (0, 0, 255)
    path = tmp_path / "camera.jpg"
    path.write_bytes(camera_jpeg(img, orientation=6))
    preview = read_image(path, 96, thumbnail=True)
    assert preview.shape[0] > preview.shape[1]


def test_no_exif_no_preview():
    assert read_exif(b"\xff\xd8" + exif_block(3) + b"\xff\xd9").orientation == 3
    assert read_exif(b"\xff\xd8" + exif_block(3)).thumbnail is None
    assert read_exif(b"not a jpeg").orientation == 1


@pytest.fixture
def archive(tmp_path):
    return make_archive(tmp_path / "Pictures", 12, seed=3)


def classify(archive, model, *extra):
    result = CliRunner().invoke(
        cli,
        [
            "classify",
            str(archive),
            "--json",
            "--workers",
            "1",
            "--model",
            str(model),
            *map(str, extra),
        ],
    )
    assert result.exit_code == 0, result.output
    return {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}


def count_decodes(monkeypatch):
    calls = []
    real = features.read_image

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(features, "read_image", counting)  # train's way in
    monkeypatch.setattr(pipeline, "read_image", counting)  # classify's
    return calls


def test_rerun_over_unchanged_archive_decodes_nothing(archive, trained_model, monkeypatch):
    calls = count_decodes(monkeypatch)
    first = classify(archive, trained_model)
    assert len(calls) == 13
    second = classify(archive, trained_model)
    assert len(calls) == 13  # nothing decoded again, the bad file included
    assert second == first
    (archive / "p03.jpg").write_bytes((archive / "p04.jpg").read_bytes())  # a changed file
    third = classify(archive, trained_model)
    assert calls[13:] == [str(archive / "p03.jpg")]
    assert third[str(archive / "p03.jpg")]["score"] == first[str(archive / "p04.jpg")]["score"]
    classify(archive, trained_model, "--no-cache")
    assert len(calls) == 27


def test_another_model_classifies_again(archive, trained_model, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    classify(archive, trained_model)
    other = tmp_path / "other.npz"
    other.write_bytes(trained_model.read_bytes() + b"")  # same bytes: same digest
    classify(archive, other)
    assert len(calls) == 13
    from flowersort.model.file import load_model

    model = load_model(trained_model)
    model.threshold = 0.42  # a different model file
    model.save(other)
    classify(archive, other)
    assert len(calls) == 26


def test_corrupt_cache_is_rebuilt_with_a_warning(archive, trained_model, tmp_path):
    cache = tmp_path / "scores.sqlite"
    cache.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(
        cli,
        [
            "classify",
            str(archive),
            "--cache",
            str(cache),
            "--model",
            str(trained_model),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rebuilding it" in result.stderr
    assert cache.read_bytes()[:16] == b"SQLite format 3\x00"


def test_thumbnail_path_agrees_with_full_decoding(tmp_path, trained_model):
    rng = np.random.default_rng(9)
    root = tmp_path / "camera"
    root.mkdir()
    for i in range(10):
        img = cv2.resize(make_photo(rng, i % 2 == 0, size=96), (1600, 1200))
        (root / f"IMG_{i:04d}.jpg").write_bytes(camera_jpeg(img))
    # a fixed threshold well away from both classes' scores: the decisions compare the paths,
    # not where the fixture model's threshold happens to fall
    full = classify(root, trained_model, "--no-cache", "--no-thumbnails", "--threshold", "0.5")
    thumbs = classify(root, trained_model, "--no-cache", "--thumbnails", "--threshold", "0.5")
    assert [r["flower"] for r in full.values()] == [r["flower"] for r in thumbs.values()]
    diffs = [abs(full[p]["score"] - thumbs[p]["score"]) for p in full]
    assert max(diffs) < 0.2


def stale_preview_folder(tmp_path):
    """A folder with one photo whose EXIF preview shows a flower and whose pixels do not:
    a stale preview, an editor's work."""
    rng = np.random.default_rng(4)
    root = tmp_path / "camera"
    root.mkdir()
    flower = cv2.resize(make_photo(rng, True, size=96), (1600, 1200))
    other = cv2.resize(make_photo(rng, False, size=96), (1600, 1200))
    body = cv2.imencode(".jpg", other)[1].tobytes()
    (root / "IMG_0001.jpg").write_bytes(body[:2] + exif_block(1, preview_of(flower)) + body[2:])
    return root


def test_a_score_read_from_the_preview_is_not_remembered_for_a_full_decoding(
    tmp_path, trained_model
):
    """The score cache was keyed by the model alone: after a --thumbnails run, a run
    without took each photo's remembered preview score, not the score of its pixels."""
    root = stale_preview_folder(tmp_path)
    cache = tmp_path / "scores.sqlite"
    full = classify(root, trained_model, "--no-cache", "--no-thumbnails")
    thumbs = classify(root, trained_model, "--cache", cache, "--thumbnails")
    assert [r["flower"] for r in thumbs.values()] != [r["flower"] for r in full.values()]
    assert classify(root, trained_model, "--cache", cache, "--no-thumbnails") == full
    assert classify(root, trained_model, "--cache", cache, "--thumbnails") == thumbs


def test_a_cache_written_before_previews_had_their_own_key_is_not_trusted(tmp_path, trained_model):
    """A cache from before the fix above holds preview scores under the plain key: a run
    without --thumbnails would take them for good. Its older layout version drops them."""
    import sqlite3

    root = stale_preview_folder(tmp_path)
    cache = tmp_path / "scores.sqlite"
    full = classify(root, trained_model, "--no-cache", "--no-thumbnails")
    thumbs = classify(root, trained_model, "--cache", cache, "--thumbnails")
    assert thumbs != full
    with sqlite3.connect(cache) as db:  # as the code before that fix wrote it: one key
        db.execute("UPDATE scores SET model = replace(model, ' thumbnails', '')")
        db.execute("PRAGMA user_version = 2")
    assert classify(root, trained_model, "--cache", cache, "--no-thumbnails") == full


def test_a_cache_opened_for_one_reading_is_refused_for_the_other(tmp_path, trained_model):
    """The library took any cache: one opened for full decodings, given to a --thumbnails
    scoring, stored preview scores under the photo's key (the fault above, by another way
    in). The cache now keys the reading itself, and a mismatch is refused."""
    from flowersort.model.file import load_model
    from flowersort.scoring.cache import ScoreCache
    from flowersort.scoring.pipeline import score_photos

    model = load_model(trained_model)
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(camera_jpeg(make_photo(np.random.default_rng(4), True, size=96)))
    plain = ScoreCache(tmp_path / "scores.sqlite", "digest")
    with pytest.raises(ValueError, match="other reading"):
        list(score_photos(model, [photo], 1, cache=plain, thumbnail=True))
    previews = ScoreCache(tmp_path / "scores.sqlite", "digest", thumbnail=True)
    assert previews.model != plain.model
    assert [s.score for s in score_photos(model, [photo], 1, cache=previews, thumbnail=True)]


def test_two_runs_share_the_cache_without_harm(tmp_path):
    import sqlite3
    import subprocess
    import sys

    cache = tmp_path / "scores.sqlite"
    script = (
        "import sys; from flowersort.scoring.cache import ScoreCache\n"
        "c = ScoreCache(sys.argv[1], 'model')\n"
        "for i in range(3000):\n"
        "    c.put(f'/archive/{sys.argv[2]}/p{i}.jpg', (i, i, i), i / 3000, '')\n"
        "c.close()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(cache), name], stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b", "c")
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not any("rebuilding" in e for e in errors)
    db = sqlite3.connect(cache)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM scores").fetchone()[0] == 9000
