"""HEIC photos: read upright, from the embedded thumbnail when it is large enough, and
classified like JPEGs in train, evaluate, classify and the report; damaged ones skipped
with a reason; without pillow-heif, skipped with one line per run naming the extra."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from flowersort.base.errors import BadImage
from flowersort.model.features import FeatureConfig
from flowersort.photos import heic
from flowersort.photos.decode import read_image
from tests.conftest import make_photo, run
from tests.heif_files import HEIC_HEADER, heic_bytes, needs_pillow_heif, portrait_heic
from tests.report_page import data_of

CFG = FeatureConfig(image_size=48, grid=4, bins=12)


def camera_photo(rng: np.random.Generator, flower: bool, size=(640, 480)) -> np.ndarray:
    """A generated photo (see conftest) blown up to a camera-like size."""
    return cv2.resize(make_photo(rng, flower), size, interpolation=cv2.INTER_CUBIC)


def upright_portrait() -> np.ndarray:
    """400 x 300, red sky on top, a green stem on the left, blue below: any turn shows."""
    img = np.full((400, 300, 3), (200, 60, 20), np.uint8)
    img[:100] = (30, 30, 220)
    img[:, :50] = (40, 200, 40)
    return img


def close(img: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference from the reference scaled to img's size."""
    h, w = img.shape[:2]
    scaled = cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)
    return float(np.abs(img.astype(int) - scaled).mean())


@needs_pillow_heif
def test_a_portrait_heic_is_read_upright(tmp_path):
    upright = upright_portrait()
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(portrait_heic(upright, thumbnail=320))
    from_thumbnail, full = read_image(path, 96), read_image(path, 300)
    assert from_thumbnail.shape == (320, 240, 3) and full.shape == (400, 300, 3)
    for img in (from_thumbnail, full):
        assert close(img, upright) < 10  # not turned a second time by EXIF orientation 6


@needs_pillow_heif
@pytest.mark.parametrize("thumbnail", [None, 256])
def test_the_thumbnail_is_decoded_only_when_it_has_enough_pixels(tmp_path, thumbnail):
    photo = camera_photo(np.random.default_rng(1), True)
    path = tmp_path / "IMG_0002.heic"
    path.write_bytes(heic_bytes(photo, thumbnail, tile=256))
    small, large = read_image(path, 96), read_image(path, 103)
    assert small.shape == ((192, 256, 3) if thumbnail else (480, 640, 3))  # twice 96 a side
    assert large.shape == (480, 640, 3)  # the thumbnail has less than 1.875 times 103
    assert close(small, photo) < 10 and close(large, photo) < 10


@needs_pillow_heif
def test_a_16_9_photo_is_decoded_from_the_320_x_180_thumbnail_an_iphone_writes(tmp_path):
    photo = camera_photo(np.random.default_rng(3), True, size=(1280, 720))
    path = tmp_path / "IMG_0005.HEIC"
    path.write_bytes(heic_bytes(photo, 320, tile=512))
    img = read_image(path, 96)
    assert img.shape == (180, 320, 3)  # not the 1280 x 720 grid: 70 times slower on 12 MP
    assert close(img, photo) < 10


@needs_pillow_heif
def test_a_preview_may_be_just_large_enough(tmp_path):
    photo = camera_photo(np.random.default_rng(1), True)
    path = tmp_path / "IMG_0003.heic"
    path.write_bytes(heic_bytes(photo, 160))
    assert read_image(path, 96).shape == (480, 640, 3)
    assert read_image(path, 96, thumbnail=True).shape == (120, 160, 3)  # the report, --thumbnails
    assert read_image(path, 121, thumbnail=True).shape == (480, 640, 3)


@needs_pillow_heif
def test_heic_photos_score_as_their_jpegs_and_are_moved_and_reported(trained_model, tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "Pictures"
    src.mkdir()
    for i in range(6):
        photo = camera_photo(rng, i % 2 == 0)
        (src / f"IMG_{i:04d}.HEIC").write_bytes(heic_bytes(photo, 160))
        cv2.imwrite(str(src / f"IMG_{i:04d}.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    result = run("classify", src, "--model", trained_model, "--json", "--workers", 1)
    assert result.exit_code == 0, result.output
    rows = {r["path"].rsplit("/", 1)[1]: r for r in map(json.loads, result.stdout.splitlines())}
    assert len(rows) == 12 and all(r["score"] is not None for r in rows.values())
    for i in range(6):  # the same decision; scores differ a little (other pixels decoded)
        as_heic, as_jpeg = rows[f"IMG_{i:04d}.HEIC"], rows[f"IMG_{i:04d}.jpg"]
        assert as_heic["flower"] == as_jpeg["flower"] == (i % 2 == 0)
        assert abs(as_heic["score"] - as_jpeg["score"]) < 0.15

    for name in list(rows):  # keep the HEICs only: move the flowers, with a report
        if name.endswith(".jpg"):
            (src / name).unlink()
    dest, report = tmp_path / "Flowers", tmp_path / "report.html"
    result = run(
        "classify", src, "--model", trained_model, "--move-to", dest, "--report", report,
        "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dest.iterdir()) == [
        "IMG_0000.HEIC",
        "IMG_0002.HEIC",
        "IMG_0004.HEIC",
    ]
    rows = data_of(report.read_text())
    assert len(rows) == 6 and all(row["thumb"] and row["heat"] for row in rows)


@needs_pillow_heif
def test_heic_examples_train_and_evaluate(trained_model, tmp_path):
    from flowersort.training.examples import load_examples

    rng = np.random.default_rng(3)
    for folder, flower in (("flowers", True), ("noflowers", False)):
        (tmp_path / folder).mkdir()
        for i in range(4):
            data = heic_bytes(camera_photo(rng, flower), 160 if i % 2 else None)
            (tmp_path / folder / f"IMG_{i:04d}.heic").write_bytes(data)
    flowers, noflowers = tmp_path / "flowers", tmp_path / "noflowers"
    examples = load_examples(flowers, noflowers, CFG, workers=1)
    assert len(examples.y) == 8 and examples.skipped == []
    result = run("evaluate", flowers, noflowers, "--model", trained_model, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["skipped"] == 0 and metrics["accuracy"] >= 0.75


def damaged_heics(tmp_path) -> dict:
    data = heic_bytes(camera_photo(np.random.default_rng(4), True), 160, tile=256)
    mdat = data.index(b"mdat")
    rng = np.random.default_rng(5)
    noise = bytes(rng.integers(0, 256, 3000, dtype=np.uint8))
    cases = {
        "half.heic": data[: len(data) // 2],
        "header-only.heic": data[:200],
        "no-meta.heic": HEIC_HEADER + b"\0" * 64,
        "noisy-meta.heic": data[:40] + noise[:200] + data[240:],
        "noisy-tiles.heic": data[: mdat + 600] + noise + data[mdat + 3600 :],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    return cases


@needs_pillow_heif
def test_damaged_heics_are_skipped_with_a_reason_without_crash_or_hang(tmp_path):
    damaged_heics(tmp_path)
    # in a child process: a crash in the native decoder must show here, not kill the tests
    script = (
        "import json, sys\n"
        "from flowersort.base.errors import BadImage\n"
        "from flowersort.model.features import read_image\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        out[path] = list(read_image(path, 96).shape)\n"
        "    except BadImage as e:\n"
        "        out[path] = str(e)\n"
        "print(json.dumps(out))\n"
    )
    paths = sorted(str(p) for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = {k.rsplit("/", 1)[1]: v for k, v in json.loads(proc.stdout).items()}
    for name in ("header-only.heic", "no-meta.heic", "noisy-meta.heic"):
        assert out[name].startswith("damaged image: HEIC/HEIF: "), out[name]
    for name in ("half.heic", "noisy-tiles.heic"):  # skipped, or what decodes is used
        assert isinstance(out[name], list) or out[name].startswith("damaged image"), out[name]


def test_without_pillow_heif_the_reason_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(heic, "_module", False)  # as when the extra is not installed
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(HEIC_HEADER + b"\0" * 64)
    with pytest.raises(BadImage) as caught:
        read_image(path, 96)
    assert str(caught.value) == heic.MISSING
    assert "pip install 'flowersort[heic]'" in heic.MISSING


@pytest.mark.parametrize("quiet", [True, False])
def test_without_pillow_heif_one_line_per_run(trained_model, tmp_path, monkeypatch, quiet):
    monkeypatch.setattr(heic, "_module", False)
    src = tmp_path / "Pictures"
    src.mkdir()
    for i in range(3):
        (src / f"IMG_{i:04d}.HEIC").write_bytes(HEIC_HEADER + b"\0" * 64)
    cv2.imwrite(str(src / "IMG_0100.jpg"), make_photo(np.random.default_rng(6), True))
    args = ["classify", src, "--model", trained_model, "--workers", 1]
    result = run(*args, *(["--quiet"] if quiet else []))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "pillow-heif" in line]
    per_file = [line for line in lines if line.startswith("skipped: ")]
    assert len(per_file) == (0 if quiet else 3)  # a line each only when not --quiet
    assert [line for line in lines if line not in per_file] == [f"3 photos skipped: {heic.MISSING}"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_without_pillow_heif_a_failing_train_or_evaluate_says_why(tmp_path, monkeypatch, command):
    """An iPhone-only example folder: 'too few photos' alone, under --quiet (cron), would
    not tell that every photo was a HEIC skipped for want of the extra."""
    monkeypatch.setattr(heic, "_module", False)
    for j, label in enumerate(("flowers", "noflowers")):
        (tmp_path / label).mkdir()
        for i in range(4):  # other bytes each: no file shared between the classes
            (tmp_path / label / f"IMG_{i:04d}.HEIC").write_bytes(HEIC_HEADER + bytes([j, i]) * 32)
    extra = ["--model", tmp_path / "m.npz"] if command == "train" else []
    result = run(
        command, tmp_path / "flowers", tmp_path / "noflowers", "-q", "--workers", 1, *extra
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"8 photos skipped: {heic.MISSING}"
    assert result.stderr.count("pillow-heif") == 1


@needs_pillow_heif
def test_a_heic_skipped_for_want_of_pillow_heif_is_not_remembered(tmp_path, monkeypatch):
    from flowersort.scoring.cache import ScoreCache

    cache = ScoreCache(tmp_path / "scores.sqlite", "model-digest")
    damaged, missing = tmp_path / "x.heic", tmp_path / "IMG_0001.HEIC"
    for path in (damaged, missing):
        path.write_bytes(HEIC_HEADER)
    key = cache.key(missing)
    for path in (damaged, missing):
        if path == missing:
            monkeypatch.setattr(heic, "library", lambda: None)
        with pytest.raises(BadImage) as skip:
            read_image(path, 64)
        cache.put(path, key, None, str(skip.value), skip.value.lasting)
    assert cache.get(missing, key) is None  # after installing the extra, it is read
    reason = cache.get(damaged, key)[1]
    assert reason.startswith("damaged image: HEIC/HEIF: ")  # the bytes will not change
