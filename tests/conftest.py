"""Small generated photos whose hue separates the classes, and helpers to census files."""

import hashlib
import os
import shutil
import subprocess
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import flowersort  # noqa: F401  first: it limits BLAS threads before numpy loads

# isort: split

import cv2
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def flowersort_logger_as_it_was():
    """A CLI run sets up the "flowersort" logger (its own handlers, no propagation): put it
    back after each test, so that caplog sees the library's messages whatever ran before."""
    import logging

    logger = logging.getLogger("flowersort")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def make_photo(rng: np.random.Generator, flower: bool, size: int = 96) -> np.ndarray:
    """A BGR photo: flowers are saturated magenta/yellow blobs on green; others are
    blue or cyan scenes, often greyish. Noise and blob placement vary with rng."""
    hsv = np.zeros((size, size, 3), np.uint8)
    if flower:
        hsv[..., 0] = 60 + rng.integers(-5, 5)  # green background (OpenCV hue 0-180)
        hsv[..., 1] = 150
        hsv[..., 2] = 120
        for _ in range(rng.integers(2, 5)):
            cx, cy = rng.integers(size // 8, size - size // 8, 2)
            r = int(rng.integers(size // 16 + 1, size // 6 + 2))
            hue = int(rng.choice([165, 25, 0]))  # magenta, yellow, red
            cv2.circle(hsv, (int(cx), int(cy)), r, (hue, 230, 230), -1)
    else:
        hsv[..., 0] = rng.choice([110, 120, 95])  # blues and cyan: sea, sky, dusk
        hsv[..., 1] = rng.integers(20, 120)
        hsv[..., 2] = rng.integers(80, 220)
        y0 = int(rng.integers(size // 4, size - size // 4))
        hsv[y0:, :, 2] //= 2  # a darker ground
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.int16)
    bgr += rng.integers(-8, 9, bgr.shape, dtype=np.int16)
    return np.clip(bgr, 0, 255).astype(np.uint8)


def write_photo(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix or ".jpg", img)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def make_folders(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    flowers, noflowers = root / "flowers", root / "noflowers"
    for i in range(n):
        write_photo(flowers / f"fl_{i:03d}.jpg", make_photo(rng, True))
        write_photo(noflowers / f"no_{i:03d}.jpg", make_photo(rng, False))
    return flowers, noflowers


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> tuple[Path, Path]:
    """30 generated flowers and 30 non-flowers, for training."""
    return make_folders(tmp_path_factory.mktemp("examples"), 30, seed=0)


@pytest.fixture(scope="session")
def trained_model(examples, tmp_path_factory) -> Path:
    from flowersort.model.features import FeatureConfig
    from flowersort.training.config import TrainConfig
    from flowersort.training.examples import load_examples
    from flowersort.training.train import fit

    cfg = FeatureConfig(image_size=48, grid=4, bins=12)
    ex = load_examples(*examples, cfg, workers=1)
    # the small net of the first default: the wider default learns 60 generated photos less
    # cleanly, and the tests of heat maps and decoding paths need a clean simple rule
    small = {"tile_layers": [16, 4, 1], "head_layers": [8, 1, 1]}
    model, _ = fit(ex.x, ex.y, cfg, TrainConfig(epochs=150, patience=40, flower_share=0.5, **small))
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return path


def make_archive(root: Path, n: int, seed: int, bad_name: str = "bad.jpg") -> Path:
    """n generated photos (flowers at even numbers) and one file that is not a photo."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_photo(root / f"p{i:02d}.jpg", make_photo(rng, i % 2 == 0))
    (root / bad_name).write_bytes(b"not a photo")
    return root


def census(*roots: Path) -> Counter:
    """sha256 of every file under the roots: equal before and after means nothing lost
    and nothing duplicated."""
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if p.is_file()
    )


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own journal, lock and score cache (never the user's)."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return state


@contextmanager
def mounted(folder: Path, *command: str):
    """`command folder` mounts a real filesystem there for the test (root only); skips the
    test where the machine cannot; always unmounts."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which(command[0]) is None:
        pytest.skip(f"needs root and {command[0]}")
    done = subprocess.run([*command, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def small_tmpfs(folder: Path, size: str):
    return mounted(folder, "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


# exfat-fuse mounts a stick for every user (allow_other, every file 0777): a root run onto one
# keeps root's rights only when told so (a run as a user ignores it)
ROOT_ON_A_STICK = ("--run-as", "root")


@contextmanager
def exfat(folder: Path, size: str = "16M", options: str = ""):
    """A real exFAT filesystem (no hard links, case-insensitive) through FUSE on a loop
    device, as a USB stick; skips the test where the machine cannot. Without `options`
    every file there reads 0777; "umask=077" makes them 0700."""
    tools = ("mkfs.exfat", "mount.exfat-fuse", "losetup", "truncate")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        pytest.skip("needs root, mkfs.exfat, mount.exfat-fuse and losetup")
    image = folder.with_name(folder.name + ".img")
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    if subprocess.run(["mkfs.exfat", str(image)], capture_output=True).returncode != 0:
        pytest.skip("mkfs.exfat failed")
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device: {loop.stderr.strip()}")
    try:
        mount = ["mount.exfat-fuse", *(["-o", options] if options else []), loop.stdout.strip()]
        with mounted(folder, *mount) as mnt:
            yield mnt
    finally:
        subprocess.run(["losetup", "-d", loop.stdout.strip()], check=False)


def nested_archive(tmp_path: Path) -> Path:
    """Pictures/ with 6 flowers in 2024/garden and 6 others in 2023."""
    import shutil

    flowers, noflowers = make_folders(tmp_path / "gen", 6, seed=7)
    root = tmp_path / "Pictures"
    shutil.copytree(flowers, root / "2024" / "garden")
    shutil.copytree(noflowers, root / "2023")
    shutil.rmtree(tmp_path / "gen")
    return root


def run(*args):
    """Run the CLI in-process; arguments may be paths or numbers."""
    from click.testing import CliRunner

    from flowersort.cli.app import cli

    return CliRunner().invoke(cli, [str(a) for a in args])
