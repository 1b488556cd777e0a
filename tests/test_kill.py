"""Real crashes: a classify run killed with SIGKILL at many moments, then a recovery run."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from flowersort import safefs
from tests.conftest import census, make_photo, write_photo

ROOT = Path(__file__).resolve().parents[1]


def make_archive(root: Path, n: int) -> None:
    rng = np.random.default_rng(11)
    for i in range(n):
        sub = root / f"{i % 7:02d}"
        write_photo(sub / f"IMG_{i % 50:04d}.jpg", make_photo(rng, i % 2 == 0, size=32))
        if i % 10 == 0:
            (sub / f"IMG_{i % 50:04d}.xmp").write_text(f"<xmp id='{i}'/>")


def classify_cmd(src: Path, dest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flowersort",
        "classify",
        str(src),
        "--move-to",
        str(dest),
        "--threshold",
        "0",
        "--workers",
        "1",
        "--quiet",
    ]


def other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if (
        shm.is_dir()
        and os.access(shm, os.W_OK)
        and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev
    ):
        return shm
    return None


def env_with(state: Path) -> dict:
    return {**os.environ, "XDG_STATE_HOME": str(state), "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_sigkill_at_many_moments_loses_nothing(tmp_path, across, state_home):
    if across and other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    src = tmp_path / "Pictures"
    make_archive(src, 200)
    dest_parent = Path(tempfile.mkdtemp(dir=other_filesystem())) if across else tmp_path
    dest = dest_parent / "Flowers"
    before = census(src)
    rng = np.random.default_rng(1)
    env = env_with(state_home)
    try:
        for _ in range(6):
            proc = subprocess.Popen(classify_cmd(src, dest), env=env, stderr=subprocess.DEVNULL)
            time.sleep(float(rng.uniform(0.6, 1.6)))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = subprocess.run(classify_cmd(src, dest), env=env, capture_output=True, text=True)
        assert final.returncode == 0, final.stderr
        assert census(src, dest) == before  # every photo exactly once, byte-identical
        leftovers = [p for p in dest.rglob("*") if p.name.startswith(safefs.TMP_PREFIX)]
        assert leftovers == []
        assert not [p for p in src.rglob("*.jpg")]  # all moved in the end (threshold 0)
    finally:
        if across:
            import shutil

            shutil.rmtree(dest_parent)


def test_two_concurrent_runs_never_interleave(tmp_path, state_home):
    src = tmp_path / "Pictures"
    make_archive(src, 200)
    before = census(src)
    env = env_with(state_home)
    procs = [
        subprocess.Popen(
            classify_cmd(src, tmp_path / "Flowers"), env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    codes = sorted(p.wait() for p in procs)
    errors = [p.stderr.read() for p in procs]
    assert codes in ([0, 0], [0, 3]), errors
    if codes == [0, 3]:
        assert any("another flowersort run" in e for e in errors)
    rerun = subprocess.run(classify_cmd(src, tmp_path / "Flowers"), env=env)
    assert rerun.returncode == 0
    assert census(src, tmp_path / "Flowers") == before
