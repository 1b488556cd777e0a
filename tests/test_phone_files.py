"""Other files a phone or camera leaves: AVIF is classified (through OpenCV), upright;
RAW files without a twin photo and videos are passed over without a skip line and
counted once in the summary."""

import io
import json

import cv2
import numpy as np
import pytest

from flowersort.photos import heic
from flowersort.photos.archive import walk
from flowersort.photos.decode import read_image
from tests.conftest import make_photo, run, write_photo


def avif_with_orientation(bgr: np.ndarray, orientation: int) -> bytes:
    """An AVIF written by Pillow, which turns the EXIF orientation into irot/imir."""
    image = pytest.importorskip("PIL.Image")
    features = pytest.importorskip("PIL.features")
    if not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF")
    img = image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    exif = img.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, "AVIF", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def opencv_reads_avif() -> bool:
    try:  # OpenCV before 4.9 raises for an extension it has no encoder for
        ok, data = cv2.imencode(".avif", np.zeros((16, 16, 3), np.uint8))
    except cv2.error:
        return False
    return bool(ok) and cv2.imdecode(data, cv2.IMREAD_COLOR) is not None


@pytest.mark.skipif(not opencv_reads_avif(), reason="this OpenCV build has no AVIF codec")
def test_an_avif_is_read_upright_by_opencv(tmp_path):
    upright = np.full((400, 300, 3), (200, 60, 20), np.uint8)
    upright[:100] = (30, 30, 220)  # red on top
    upright[:, :50] = (40, 200, 40)  # green on the left
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a phone held upright stores it
    data = avif_with_orientation(stored, 6)
    assert heic.kind(data[:64]) == "avif" and heic.transformations(data) == [("irot", 3)]
    path = tmp_path / "PXL_0001.avif"
    path.write_bytes(data)
    assert list(walk(tmp_path)) == [str(path)]
    img = read_image(path, 96)
    assert img.shape == (400, 300, 3)
    assert np.abs(img.astype(int) - upright).mean() < 8


@pytest.mark.skipif(not opencv_reads_avif(), reason="this OpenCV build has no AVIF codec")
def test_a_damaged_avif_is_called_damaged_not_undecodable_by_this_build(tmp_path):
    ok, data = cv2.imencode(".avif", make_photo(np.random.default_rng(4), True, 128))
    assert ok
    path = tmp_path / "PXL_0002.avif"
    path.write_bytes(data.tobytes()[: len(data) // 2])  # cut short, as by a failed sync
    result = run("classify", tmp_path, "--json", "--no-cache", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["detail"] == "damaged image: AVIF: OpenCV cannot decode it"


def test_transformations_of_a_malformed_file_are_none():
    assert heic.transformations(b"\x00\x00\x00\x18ftypavif" + b"\xff" * 40) == []
    assert heic.transformations(b"") == []


@pytest.fixture
def phone_folder(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "DCIM"
    write_photo(root / "IMG_0002.JPG", make_photo(rng, True))
    write_photo(root / "IMG_0003.JPG", make_photo(rng, True))
    write_photo(root / "IMG_0004.png", make_photo(rng, True))
    for name in ("IMG_0001.CR2", "IMG_0002.CR2", "clip.MP4", "IMG_0003.MOV", "IMG_0004.MOV"):
        (root / name).write_bytes(b"not a photo to classify: " + name.encode())
    return root


def test_videos_and_raws_without_a_photo_are_passed_over(phone_folder):
    passed = []
    photos = list(walk(phone_folder, on_pass=passed.append))
    assert [p.rsplit("/", 1)[1] for p in photos] == ["IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.png"]
    # IMG_0002.CR2 is a RAW twin, IMG_0003.MOV a Live Photo's motion: companions
    assert sorted(p.rsplit("/", 1)[1] for p in passed) == [
        "IMG_0001.CR2",
        "IMG_0004.MOV",
        "clip.MP4",
    ]


@pytest.mark.parametrize("quiet", [False, True])
def test_passed_over_files_are_counted_once_in_the_summary(phone_folder, trained_model, quiet):
    args = ["classify", phone_folder, "--model", trained_model, "--workers", 1, "--json"]
    result = run(*args, *(["--quiet"] if quiet else []))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3  # one JSON line per photo, none for the others
    assert all(json.loads(line)["action"] != "skipped" for line in result.stdout.splitlines())
    assert "skipped: " not in result.stderr
    summary = (
        "3 photos: 0 moved, 0 copied, 3 kept, 0 skipped, 0 failed; 3 flowers; 2 videos, 1 RAW "
        f"file passed over; model {trained_model}"
    )
    assert result.stderr.splitlines() == ([] if quiet else [summary])


@pytest.mark.parametrize(
    "brands,expected",
    [
        (b"heic\x00\x00\x00\x00mif1heic", "heic"),  # an iPhone
        (b"mif1\x00\x00\x00\x00mif1heic", "heic"),
        (b"msf1\x00\x00\x00\x00msf1hevc", "heic"),  # a burst or sequence
        (b"avif\x00\x00\x00\x00avifmif1", "avif"),
        (b"mif1\x00\x00\x00\x00mif1avif", "avif"),  # generic HEIF holding AV1
        (b"qt  \x00\x00\x00\x00qt  ", None),  # a QuickTime video named .heic
        (b"isom\x00\x00\x00\x00isomavc1", None),  # an MP4
    ],
)
def test_the_kind_of_heif_file_comes_from_its_brands(brands, expected):
    head = (8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + b"\x00" * 16
    assert heic.kind(head) == expected
