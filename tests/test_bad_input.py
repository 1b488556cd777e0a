"""Every odd file gets a clear reason and the run goes on; nothing hangs or explodes."""

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowersort.base.errors import BadImage
from flowersort.cli.app import cli
from flowersort.model.features import FeatureConfig, load_features
from flowersort.photos.decode import read_image
from flowersort.photos.exif import read_exif
from tests.fuzzing import encode, mutate, photo

CFG = FeatureConfig(image_size=24, grid=2, bins=10)
SAMPLES = Path(__file__).resolve().parents[1] / "sample_photos"


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 EXIF segment holding only the orientation tag."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff
    return jpeg[:2] + app1 + jpeg[2:]


@pytest.mark.parametrize("need", [0, 10, 1000])  # reduced and full-size decoding
def test_exif_orientation_is_applied(tmp_path, need):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(with_orientation(encode(photo(40, 80)), 6))  # stored sideways
    assert read_exif(path.read_bytes()).orientation == 6
    img = read_image(path, need)
    h, w = img.shape[:2]
    assert h > w  # displayed upright: 90 degrees clockwise
    assert img[: h // 4, :, 2].mean() > 200 and img[-h // 4 :, :, 2].mean() < 50  # red on top


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_opencv_full_size(tmp_path, orientation):
    path = tmp_path / "o.jpg"
    img = np.random.default_rng(orientation).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    path.write_bytes(
        with_orientation(
            encode(cv2.resize(img, (48, 32)), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100]), orientation
        )
    )
    expected = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)  # OpenCV orients here
    assert np.array_equal(read_image(path, 1000), expected)


def write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_decodable_variants_are_classified(tmp_path):
    img = photo()
    cases = {
        "png16.png": encode((img.astype(np.uint16) * 257), ".png"),
        "grey.png": encode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), ".png"),
        "alpha.png": encode(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA), ".png"),
        "photo.webp": encode(img, ".webp"),
        "photo.tiff": encode(img, ".tiff"),
        "photo.bmp": encode(img, ".bmp"),
        "tiny.png": encode(np.full((1, 1, 3), 200, np.uint8), ".png"),
        "panorama.png": encode(np.full((10, 100_000, 3), 90, np.uint8), ".png"),
    }
    for name, data in cases.items():
        x = load_features(write(tmp_path, name, data), CFG)
        assert x.shape == (4, *CFG.tile_shape) and np.isfinite(x).all(), name


def test_gif_and_heic_are_classified_or_clearly_skipped(tmp_path):
    gif = tmp_path / "anim.gif"
    if cv2.imwrite(str(gif), photo()):
        assert load_features(gif, CFG).shape == (4, *CFG.tile_shape)
    heic = write(
        tmp_path, "phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64
    )
    with pytest.raises(BadImage, match="HEIC"):
        load_features(heic, CFG)


def test_damaged_jpegs(tmp_path):
    data = encode(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    truncated = write(tmp_path, "half.jpg", data[: len(data) // 2])
    garbage = write(tmp_path, "garbage.jpg", data[:600] + os.urandom(2000) + data[2600:])
    for path in (truncated, garbage):  # decodable in part, or skipped with a reason
        try:
            assert load_features(path, CFG).shape == (4, *CFG.tile_shape)
        except BadImage as e:
            assert "damaged" in str(e)
    headless = write(tmp_path, "headless.jpg", data[:20])
    with pytest.raises(BadImage):
        load_features(headless, CFG)


def test_a_jpeg_cut_short_is_classified_from_the_part_that_decodes(tmp_path):
    """A copy or sync that stopped leaves a JPEG without its end marker: OpenCV 5 refuses
    the whole file, where libjpeg decodes the part that is there (as the README says)."""
    from tests.conftest import make_photo

    data = encode(cv2.resize(make_photo(np.random.default_rng(5), True), (640, 480)))
    cut = write(tmp_path, "IMG_0001.jpg", data[: len(data) * 3 // 5])
    img = read_image(cut, 96)
    assert img.shape == (120, 160, 3)  # at a reduced size (1/4), as any JPEG
    result = CliRunner().invoke(cli, ["classify", str(tmp_path), "--json", "--workers", "1"])
    row = json.loads(result.stdout)
    assert result.exit_code == 0 and row["action"] == "kept" and row["score"] is not None
    assert row["note"].startswith("decoded in part (Corrupt JPEG data")


def test_huge_jpeg_header_is_refused_without_decoding(tmp_path):
    data = bytearray(encode(photo(8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 50_000, 50_000)
    with pytest.raises(BadImage, match="too large"):
        read_image(write(tmp_path, "huge.jpg", bytes(data)))


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "locked.jpg", encode(photo()))
    path.chmod(0)
    if os.geteuid() == 0:  # root reads everything: refuse the open as the kernel would
        from flowersort.photos import decode

        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(decode, "open", refused, raising=False)
    with pytest.raises(BadImage, match="Permission denied"):
        read_image(path)


def test_cmyk_jpeg_is_classified(tmp_path):
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "print.jpg"
    image.fromarray(photo()[..., ::-1].copy()).convert("CMYK").save(path, "JPEG")
    img = read_image(path, 1000)  # full size
    assert img.shape == (60, 80, 3)
    assert img[:, :30, 2].mean() > 150 and img[:, :30, 0].mean() < 100  # still red on the left


def test_device_file_is_never_opened(tmp_path):
    import stat as st

    path = tmp_path / "zero.jpg"
    try:
        os.mknod(path, st.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero: endless
    except PermissionError:
        pytest.skip("creating a device file needs root")
    with pytest.raises(BadImage, match="not a regular file"):
        read_image(path)


@pytest.fixture
def odd_archive(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    good = encode(photo())
    names = [
        "with space.jpg",
        "quote'\".jpg",
        "new\nline.jpg",
        "写真.jpg",
        "Фото.jpg",
        "🌷.jpg",
        "x" * 240 + ".jpg",
    ]
    for name in names:
        write(root, name, good)
    os.close(os.open(os.fsencode(root) + b"/bad\xff\xfename.jpg", os.O_WRONLY | os.O_CREAT))
    with open(os.fsencode(root) + b"/latin1-\xe9t\xe9.jpg", "wb") as f:
        f.write(good)
    write(root, "empty.jpg", b"")
    write(root, "notes.jpg", b"just text")
    (root / "holiday.jpg").mkdir()
    write(root / "holiday.jpg", "inside.jpg", good)
    os.mkfifo(root / "pipe.jpg")
    (root / "loop").symlink_to(root)
    (root / "broken.jpg").symlink_to(root / "nowhere.jpg")
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside, "elsewhere.jpg", good)
    (root / "out").symlink_to(outside)
    return root


def test_odd_archive_never_stops_the_run(odd_archive, trained_model):
    result = CliRunner().invoke(
        cli,
        ["classify", str(odd_archive), "--json", "--model", str(trained_model), "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    classified = [r for r in rows if r["action"] == "kept"]
    assert len(classified) == 9  # 7 odd names, latin-1 bytes, the one inside holiday.jpg
    assert by_name["empty.jpg"]["action"] == "skipped"
    assert by_name["pipe.jpg"]["detail"] == "not a regular file"
    assert by_name["notes.jpg"]["detail"] == "not an image OpenCV can decode"
    assert "symbolic link" in by_name["broken.jpg"]["detail"]
    assert "symbolic link" in by_name["out"]["detail"]
    assert not any("elsewhere" in r["path"] for r in rows)
    for line in result.stderr.splitlines():
        assert line.startswith(("skipped: ", "failed: ")) or "photos:" in line, line
    assert by_name[os.fsdecode(b"bad\xff\xfename.jpg")]["detail"] == "empty file"


def test_follow_symlinks_with_loop_protection(odd_archive, trained_model):
    result = CliRunner().invoke(
        cli,
        [
            "classify",
            str(odd_archive),
            "--json",
            "--model",
            str(trained_model),
            "--workers",
            "1",
            "--follow-symlinks",
        ],
    )
    assert result.exit_code == 0, result.output
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert any(p.endswith("out/elsewhere.jpg") for p in paths)
    assert sum(p.endswith("写真.jpg") for p in paths) == 1  # the loop is entered once at most


def test_skip_lines_are_one_printable_line(odd_archive, trained_model):
    result = CliRunner().invoke(
        cli, ["classify", str(odd_archive), "--model", str(trained_model), "--workers", "1"]
    )
    assert result.exit_code == 0
    skips = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skips) >= 5
    assert any("bad\\xff\\xfename.jpg" in line for line in skips)  # invalid UTF-8, escaped


def test_train_skips_and_counts_bad_files(examples, tmp_path):
    import shutil

    flowers = tmp_path / "flowers"
    shutil.copytree(examples[0], flowers)
    write(flowers, "broken.jpg", b"\xff\xd8 not really")
    write(flowers, "empty.jpg", b"")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(flowers),
            str(examples[1]),
            "--model",
            str(tmp_path / "m.npz"),
            "--epochs",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped"] == 2
    assert "skipped: " in result.stderr and "broken.jpg" in result.stderr


def test_train_with_too_few_photos_is_exit_2(tmp_path):
    from tests.conftest import make_folders

    flowers, noflowers = make_folders(tmp_path, 2)
    result = CliRunner().invoke(
        cli, ["train", str(flowers), str(noflowers), "--model", str(tmp_path / "m.npz")]
    )
    assert result.exit_code == 2 and "too few photos" in result.stderr


def test_fuzzed_jpeg_and_png_never_raise_anything_but_bad_image(tmp_path):
    rng = np.random.default_rng(2026)
    seeds = [
        encode(photo(300, 400)),
        encode(photo(300, 400), ".png"),
        (SAMPLES / "noflowers" / "noflower_coffee.jpg").read_bytes(),
    ]
    path = tmp_path / "fuzz.jpg"
    outcomes = {"classified": 0, "skipped": 0}
    for case in range(300):
        path.write_bytes(mutate(seeds[case % len(seeds)], rng))
        try:
            load_features(path, CFG)
            outcomes["classified"] += 1
        except BadImage:
            outcomes["skipped"] += 1
    assert outcomes["classified"] > 0 and outcomes["skipped"] > 0
