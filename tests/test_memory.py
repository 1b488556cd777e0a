"""Huge files: decided from their header first, and never held twice in memory."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_photo, write_photo

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
SIZE = 64 * MB

# peak RSS growth (KiB) while read_image reads one file, in a fresh process (VmHWM, not
# ru_maxrss: that one carries the parent's peak over fork and exec)
MEASURE = """
import sys
from flowersort.base.errors import BadImage
from flowersort.photos.decode import read_image
def peak():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])
before = peak()
try:
    print(read_image(sys.argv[1], 96).shape)
except BadImage as e:
    print(e)
print(peak() - before)
"""


def peak_growth(path: Path) -> tuple[str, int]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the peak memory")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result, kib = out.stdout.splitlines()
    return result, int(kib) * 1024


@pytest.fixture
def noise(tmp_path) -> bytes:
    return np.random.default_rng(0).integers(0, 256, SIZE, np.uint8).tobytes()


def test_a_huge_non_photo_is_refused_from_its_header(tmp_path, noise):
    path = tmp_path / "random.jpg"
    path.write_bytes(noise)
    result, growth = peak_growth(path)
    assert result == "not an image OpenCV can decode"
    assert growth < 8 * MB  # only the header was read (before: the file, twice)


def test_a_photo_with_a_huge_tail_is_held_once(tmp_path, noise):
    # like a motion photo: a JPEG with a video appended after its end
    path = write_photo(tmp_path / "motion.jpg", make_photo(np.random.default_rng(1), True, 200))
    with open(path, "ab") as f:
        f.write(noise)
    result, growth = peak_growth(path)
    assert result == "(100, 100, 3)"  # decoded at half size
    assert growth < 1.3 * SIZE  # one copy of the file (before: two)
