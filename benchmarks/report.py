"""How big and how fast the HTML report is for 10,000 photos: time to write it, its size,
and the time headless Chromium takes to open it and take a screenshot.

usage: python benchmarks/report.py [PHOTOS]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# ----------------------------------------------------------------------------- settings
PHOTOS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.report_page import CHROMIUM_FLAGS as HEADLESS  # noqa: E402

CHROMIUM_FLAGS = [*HEADLESS, "--window-size=1200,900"]
# ------------------------------------------------------------------------------------


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(PHOTOS):
            folder = tmp / "photos" / f"{i // 1000:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
            img = cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC)
            (folder / f"p{i:05d}.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
        report = tmp / "report.html"
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "flowersort",
                "classify",
                str(tmp / "photos"),
                "--report",
                str(report),
                "--quiet",
                "--no-cache",
            ],
            cwd=ROOT,
            check=True,
        )
        written = time.perf_counter() - start
        size = report.stat().st_size / 2**20
        print(
            f"{PHOTOS} photos: classify --report took {written:.1f} s; "
            f"the page is {size:.1f} MB ({size * 2**20 / PHOTOS / 1024:.1f} KB a photo)"
        )
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            print("chromium is not installed: opening time not measured")
            return
        start = time.perf_counter()
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp / 'profile'}",
                f"--screenshot={tmp / 'shot.png'}",
                report.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        opened = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp / 'profile2'}",
                f"--screenshot={tmp / 'blank.png'}",
                "about:blank",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        blank = time.perf_counter() - start
        print(
            f"headless Chromium: open the page and take a screenshot {opened:.1f} s "
            f"(about:blank: {blank:.1f} s)"
        )


if __name__ == "__main__":
    main()
