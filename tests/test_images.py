import os

import cv2
import numpy as np
import pytest

from flowersort.base.errors import BadImage
from flowersort.model.columns import (
    _soft_histograms,
    cut_tiles,
    edge_orientations,
    hue_histograms,
    more_cues,
    subject_cues,
)
from flowersort.model.features import (
    MODES,
    FeatureConfig,
    features,
    flip_tiles,
    load_features,
    to_hsv,
)
from flowersort.photos.decode import header_size, read_image


def tiles_loop(img, t):
    """The slow reference: one tile at a time, row by row."""
    rows, cols = img.shape[0] // t, img.shape[1] // t
    return np.stack(
        [img[r * t : (r + 1) * t, c * t : (c + 1) * t] for r in range(rows) for c in range(cols)]
    )


@pytest.mark.parametrize("shape,t", [((12, 12), 4), ((13, 17), 4), ((12, 12, 3), 3)])
def test_cut_tiles_matches_loop(shape, t):
    img = np.arange(np.prod(shape)).reshape(shape)
    assert np.array_equal(cut_tiles(img, t), tiles_loop(img, t))


def solid(hue_deg, sat=1.0, val=1.0, size=8):
    hsv = np.zeros((size, size, 3), np.float32)
    hsv[..., 0], hsv[..., 1], hsv[..., 2] = hue_deg / 360, sat, val
    return hsv


def test_red_at_both_ends_of_hue_lands_in_the_same_bins():
    low = hue_histograms(solid(2), 8, 12)[0]
    high = hue_histograms(solid(358), 8, 12)[0]
    assert set(np.flatnonzero(low)) == set(np.flatnonzero(high)) == {0, 11}
    assert low.sum() == pytest.approx(1.0)


def test_grey_pixels_do_not_vote():
    assert hue_histograms(solid(200, sat=0.0), 8, 12).sum() == 0
    assert hue_histograms(solid(200, sat=1.0, val=0.0), 8, 12).sum() == 0
    half = hue_histograms(solid(200, sat=0.5), 8, 12).sum()
    assert half == pytest.approx(0.5)


def test_hue_histogram_peaks_at_the_colour():
    green = hue_histograms(solid(120), 8, 12)[0]
    assert green.argmax() in (3, 4) and green.sum() == pytest.approx(1.0)


def test_to_hsv_hue_in_unit_range():
    bgr = np.zeros((10, 10, 3), np.uint8)
    bgr[..., 2] = 255  # pure red
    hsv = to_hsv(bgr, 10)
    assert hsv.shape == (10, 10, 3)
    assert np.allclose(hsv[..., 0], 0) and np.allclose(hsv[..., 1], 1)


@pytest.mark.parametrize(
    "mode,shape",
    [
        ("hue", (16, 8, 8)),
        ("hue-hist", (16, 12, 1)),
        ("hue-sat-hist", (16, 12, 3)),
        ("hue-sat-edges", (16, 12, 4)),
        ("hue-sat-texture", (16, 12, 5)),
        ("hue-sat-cues", (16, 12, 6)),
        ("hue-sat-subject", (16, 12, 6)),
        ("hue-sat-cues-edge-hue", (16, 12, 7)),
    ],
)
def test_feature_shapes(mode, shape):
    cfg = FeatureConfig(mode=mode, image_size=32, grid=4, bins=12)
    x = features(np.zeros((50, 70, 3), np.uint8), cfg)
    assert x.shape == shape and x.dtype == np.float32
    assert cfg.tile_shape == shape[1:]


@pytest.mark.parametrize("mode", MODES)  # every mode: hue-hist and hue-sat-hist were left out
def test_flip_tiles_is_a_mirror(mode):
    """Flipping the features equals the features of the mirrored photo: tiles swap
    sides, pixels inside hue tiles mirror, and edge directions a become 180 - a."""
    cfg = FeatureConfig(mode=mode, image_size=32, grid=4)
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    flipped = flip_tiles(features(img, cfg)[None], cfg)[0]
    assert np.allclose(flipped, features(img[:, ::-1].copy(), cfg), atol=1e-5)


def stripes(horizontal: bool, size=32):
    """Black and white stripes 4 px wide: edges all one way."""
    band = (np.arange(size) // 4 % 2 * 255).astype(np.uint8)
    grey = np.tile(
        band[:, None] if horizontal else band[None, :], (1, size) if horizontal else (size, 1)
    )
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def test_edge_orientations_point_across_the_stripes():
    cfg = FeatureConfig(mode="hue-sat-edges", image_size=32, grid=2, bins=12)
    vertical_edges = features(stripes(horizontal=False), cfg)[..., 3]  # gradient along x
    horizontal_edges = features(stripes(horizontal=True), cfg)[..., 3]  # gradient along y
    # bin 0 and 11 straddle a horizontal gradient (0 degrees), bins 5 and 6 a vertical one
    assert set(vertical_edges.argmax(axis=1)) <= {0, 11}
    assert set(horizontal_edges.argmax(axis=1)) <= {5, 6}
    flat = features(np.full((32, 32, 3), 128, np.uint8), cfg)[..., 3]
    assert flat.sum() == 0  # no edges, no votes


@pytest.mark.parametrize("binning", ["soft", "hard", "unweighted"])
def test_edge_directions_a_full_turn_and_a_half_turn_are_no_turn(binning):
    """Directions are taken modulo 180 degrees by subtraction (cheaper than a remainder):
    cartToPolar gives 360 for a gradient just below the horizontal, which must vote as 0
    and 180 do; nothing just short of 360 may wrap."""
    magnitude = np.ones((4, 4), np.float32)

    def hist(degrees):
        return edge_orientations(magnitude, np.full((4, 4), degrees, np.float32), 4, 12, binning)

    assert cv2.cartToPolar(np.float32([[1]]), np.float32([[-1e-9]]), angleInDegrees=True)[1] == 360
    assert np.array_equal(hist(360.0), hist(0.0)) and np.array_equal(hist(180.0), hist(0.0))
    below = np.nextafter(np.float32(360), np.float32(0))  # 180 less is exact in float32
    assert np.array_equal(hist(below), hist(below - np.float32(180)))
    assert not np.array_equal(hist(below), hist(0.0))


@pytest.mark.parametrize("circular", [False, True, np.array([[False]]), np.array([[True]])])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_line_histograms_keep_their_ends_circular_ones_wrap(circular, value):
    """_soft_histograms sends only the out-of-range neighbour of a value at 0 or 1 to the
    other end (circular) or back to its own end (not), by comparison, not by a remainder or
    a clip: on a line the value votes whole in its end bin, on a circle it splits between
    the two end bins; `circular` may be said per value."""
    one = np.ones((1, 1), np.float32)
    hist = _soft_histograms(one * value, one, 12, circular)[0]
    expected = np.zeros(12, np.float32)
    if np.all(circular):
        expected[[0, -1]] = 0.5
    else:
        expected[0 if value == 0 else -1] = 1
    assert np.array_equal(hist, expected)


def test_edge_hue_counts_the_colour_of_outlines():
    """hue-sat-cues-edge-hue's 7th column: the hue of coloured pixels on brightness edges.
    Magenta stripes on black vote in the magenta bins; a flat magenta photo (no edges) and
    white stripes on black (no colour) do not vote at all."""
    cfg = FeatureConfig(mode="hue-sat-cues-edge-hue", image_size=32, grid=2, bins=12)
    magenta = np.array([255, 0, 255], np.uint8)  # BGR; hue 300 degrees: bins 9 and 10
    striped = (stripes(horizontal=False) // 255) * magenta
    edge_hue = features(striped.astype(np.uint8), cfg)[..., 6]
    assert set(edge_hue.argmax(axis=1)) <= {9, 10} and (edge_hue.sum(axis=1) > 0).all()
    flat = np.broadcast_to(magenta, (32, 32, 3)).copy()
    assert features(flat, cfg)[..., 6].sum() == 0
    assert features(stripes(horizontal=False), cfg)[..., 6].sum() == 0


def test_header_size_png_and_jpeg():
    img = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, img)
        assert header_size(buf.tobytes()) == (53, 37)
    assert header_size(b"GIF89a....") is None


def test_huge_declared_size_is_refused_before_decoding(tmp_path):
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = (50_000).to_bytes(4, "big") * 2  # IHDR width and height
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="too large"):
        read_image(path)


def test_reduced_decoding_keeps_enough_pixels(tmp_path):
    path = tmp_path / "big.jpg"
    ok, buf = cv2.imencode(".jpg", np.full((800, 1200, 3), 128, np.uint8))
    path.write_bytes(buf.tobytes())
    assert read_image(path, 96).shape[:2] == (100, 150)  # 1/8 still >= 96
    assert read_image(path, 300).shape[:2] == (400, 600)  # 1/2
    assert read_image(path, 0).shape[:2] == (100, 150)
    assert read_image(path, 1000).shape[:2] == (800, 1200)


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty"),
        (b"hello, not a photo", "OpenCV can decode"),
        (b"\xff\xd8\xff\xe0garbage", "damaged image"),
    ],
)
def test_bad_files_raise_bad_image(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        read_image(path)


def test_directory_and_fifo_are_never_opened(tmp_path):
    (tmp_path / "holiday.jpg").mkdir()
    with pytest.raises(BadImage, match="directory"):
        read_image(tmp_path / "holiday.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(BadImage, match="not a regular file"):
        read_image(tmp_path / "pipe.jpg")
    with pytest.raises(BadImage, match="vanished"):
        read_image(tmp_path / "gone.jpg")


@pytest.mark.parametrize("name", ["花 の 写真.jpg", "Цветы.png", "🌸 'quote\".jpg", "a\nb.jpg"])
def test_names_in_any_script(tmp_path, name):
    img = np.zeros((40, 40, 3), np.uint8)
    img[..., 1] = 200
    path = tmp_path / name
    ok, buf = cv2.imencode(path.suffix, img)
    path.write_bytes(buf.tobytes())
    assert load_features(path, FeatureConfig(image_size=24, grid=2)).shape == (4, 12, 6)


def test_hue_sat_histograms_split_soft_vivid_and_grey():
    from flowersort.model.columns import hue_sat_histograms

    hsv = np.concatenate([solid(120, sat=0.4), solid(120, sat=0.9), solid(0, sat=0.0, val=1.0)])
    hist = hue_sat_histograms(hsv, 8, 12)  # three tiles stacked vertically
    soft, vivid, grey = hist[..., 0], hist[..., 1], hist[..., 2]
    assert soft[0].sum() == pytest.approx(1.0) and vivid[0].sum() == 0 and grey[0].sum() == 0
    assert vivid[1].sum() == pytest.approx(1.0) and soft[1].sum() == 0
    assert grey[2].sum() == pytest.approx(1.0) and grey[2].argmax() == 11  # white: brightest bin
    assert soft[2].sum() == 0 and vivid[2].sum() == 0


def test_augmented_copies_are_crops_with_small_hue_shifts():
    from flowersort.model.features import augmented_features

    cfg = FeatureConfig(mode="hue-hist", image_size=32, grid=2, bins=36)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = cv2.cvtColor(np.uint8([[[60, 255, 255]]]), cv2.COLOR_HSV2BGR)  # green left
    img[:, 32:] = cv2.cvtColor(np.uint8([[[0, 255, 255]]]), cv2.COLOR_HSV2BGR)  # red right
    original = features(img, cfg)
    copies = augmented_features(img, cfg, 8, np.random.default_rng(0))
    assert copies.shape == (8, *original.shape)
    assert not any(np.allclose(c, original) for c in copies)  # every copy is changed
    whole = copies.sum(axis=(1, 3))  # hue histogram of the whole crop: (8, 36)
    for hist in whole:
        peaks = set(np.flatnonzero(hist > 0.05 * hist.sum()))
        # green (120 degrees, between bins 11 and 12) and red (0, between 35 and 0) move
        # by at most 7 degrees: into the next bin at most
        assert peaks <= {10, 11, 12, 13, 34, 35, 0, 1}


def test_training_features_are_the_same_for_the_same_file(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    img = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())
    cfg = FeatureConfig(image_size=24, grid=2)
    a, b = load_features(path, cfg, copies=3), load_features(path, cfg, copies=3)
    assert a.shape == (4, 4, *cfg.tile_shape) and np.array_equal(a, b)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.png").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)  # the same photo named another way: the same crops
    assert np.array_equal(a, load_features("sub/../p.png", cfg, copies=3))
    assert np.array_equal(a[0], load_features(path, cfg))  # the first is the photo itself


def texture(grey: np.ndarray) -> np.ndarray:
    """The whole image's texture histogram (10 labels) for a grey uint8 image."""
    from flowersort.model.columns import texture_histograms

    hsv = to_hsv(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), grey.shape[0])
    return texture_histograms(hsv, grey.shape[0], 12)[0]


def test_texture_labels_flat_spots_and_edges():
    flat = texture(np.full((16, 16), 120, np.uint8))
    assert flat[0] == 1  # no neighbour is brighter anywhere
    dark_spot = np.full((16, 16), 200, np.uint8)
    dark_spot[8, 8] = 20
    hist = texture(dark_spot) * 256
    assert hist[8] == 1 and hist[0] == 255  # the spot sees 8 brighter neighbours
    bright_spot = np.full((16, 16), 20, np.uint8)
    bright_spot[8, 8] = 200
    assert texture(bright_spot)[1] * 256 == 8  # its 8 neighbours see one brighter pixel
    step = np.zeros((16, 16), np.uint8)
    step[:, 8:] = 200
    assert texture(step)[3] * 256 == 16  # a straight edge: 3 brighter neighbours, one column
    assert texture(step)[10:].sum() == 0  # bins past the 10 labels stay empty


def test_texture_does_not_change_when_the_photo_turns():
    grey = np.random.default_rng(3).integers(0, 255, (32, 32), dtype=np.uint8)
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    assert np.allclose(texture(grey), texture(np.rot90(grey).copy()))
    assert np.allclose(texture(grey), texture(grey[:, ::-1].copy()))


def test_texture_mode_needs_ten_bins():
    with pytest.raises(ValueError, match="10 bins"):
        FeatureConfig(mode="hue-sat-texture", bins=8)


def test_subject_cues_find_a_sharp_vivid_centre_over_a_soft_background():
    """A vivid, finely textured square in the middle of a blurred, dull photo: the centre
    tiles are sharper and more saturated than the border ring; the border tiles are level
    with their own mean."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(90, 140, (96, 96, 3), dtype=np.uint8), (9, 9), 3)
    petals = rng.integers(0, 2, (32, 32)).astype(bool)
    img[32:64, 32:64] = np.where(petals[..., None], [0, 0, 255], [0, 0, 120])  # red
    cues = subject_cues(to_hsv(img, 96), 16, 12).reshape(6, 6, 12)
    assert (cues[2:4, 2:4, 2] > 2).all()  # log variance: far sharper than the border
    assert (cues[2:4, 2:4, 3] > 0.5).all()  # and more saturated
    ring = np.ones((6, 6), bool)
    ring[1:-1, 1:-1] = False
    assert np.allclose(cues[ring, 2:4].mean(axis=0), 0, atol=1e-5)
    assert np.array_equal(
        cues[..., 2] - cues[..., 0], np.full((6, 6), cues[0, 0, 2] - cues[0, 0, 0])
    )
    assert not cues[..., 4:].any()


def test_more_cues_add_two_scales_and_a_lit_centre():
    """hue-sat-subject: the hue-sat-cues rows unchanged, then the quarter tiles' sharpness
    spread (large where only part of the tile is textured), the 3 x 3 mean of sharpness and
    saturation, and brightness against the border (a lit centre over a dark ground)."""
    rng = np.random.default_rng(1)
    img = np.full((96, 96, 3), 40, np.uint8)  # dark, flat ground
    img[32:64, 32:64] = np.where(rng.integers(0, 2, (32, 32, 1)), [60, 200, 250], [40, 120, 200])
    img[0:8, 0:8] = rng.integers(0, 255, (8, 8, 3))  # one textured quarter of a corner tile
    hsv = to_hsv(img, 96)
    more = more_cues(hsv, 16, 12).reshape(6, 6, 12)
    assert np.array_equal(more[..., :4], subject_cues(hsv, 16, 12).reshape(6, 6, 12)[..., :4])
    assert more[0, 0, 4] > 5 and more[1, 1, 4] < 1e-3  # textured corner against flat
    padded = np.pad(more[..., 0], 1, mode="edge")
    around = np.mean([padded[i : i + 6, j : j + 6] for i in range(3) for j in range(3)], axis=0)
    assert np.allclose(more[..., 5], around, atol=1e-4)
    assert (more[2:4, 2:4, 7] > 0.3).all() and abs(more[5, 5, 7]) < 0.05
    assert not more[..., 8:].any()


def test_subject_mode_needs_tiles_of_even_side():
    with pytest.raises(ValueError, match="even"):
        FeatureConfig(mode="hue-sat-subject", image_size=90, grid=6)
