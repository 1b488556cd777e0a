"""The fuzzer of tests/test_bad_input.py, run longer: mutated JPEG and PNG bytes (bit flips,
truncations, inserted noise, overwritten headers) through the real loading code. Prints how
many cases ran, how they ended, and the slowest. With --heic, mutated HEICs instead (tiled,
with a thumbnail, one portrait; needs pillow-heif): a crash of the native decoder would end
this process, so it shows as a missing last line and the exit status.

usage: python benchmarks/fuzz.py [CASES] [--heic]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowersort.base.errors import BadImage  # noqa: E402
from flowersort.model.features import FeatureConfig, load_features  # noqa: E402
from tests.fuzzing import encode, mutate, photo  # noqa: E402

# ----------------------------------------------------------------------------- settings
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
CASES = int(ARGS[0]) if ARGS else 20_000
HEIC = "--heic" in sys.argv
SEED = 7
CFG = FeatureConfig()
# ------------------------------------------------------------------------------------


def main() -> None:
    rng = np.random.default_rng(SEED)
    if HEIC:
        from tests.heif_files import heic_bytes, portrait_heic

        seeds = [
            heic_bytes(photo(600, 800), 400, tile=256),
            heic_bytes(photo(300, 400)),
            portrait_heic(photo(400, 300), 320),
        ]
    else:
        seeds = [encode(photo(600, 800)), encode(photo(600, 800), ".png")]
        seeds += [p.read_bytes() for p in sorted((ROOT / "sample_photos").rglob("*.[jp][pn]g"))]
    outcomes: Counter = Counter()
    reasons: Counter = Counter()
    slowest = (0.0, -1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.jpg"
        for case in range(CASES):
            path.write_bytes(mutate(seeds[case % len(seeds)], rng))
            start = time.perf_counter()
            try:
                load_features(path, CFG)
                outcomes["classified"] += 1
            except BadImage as e:
                outcomes["skipped"] += 1
                reasons[str(e).split(" (")[0]] += 1
            except Exception as e:  # a finding: anything but BadImage escaping
                outcomes["escaped"] += 1
                print(f"case {case}: {type(e).__name__}: {e}", flush=True)
            slowest = max(slowest, (time.perf_counter() - start, case))
    print(
        f"{CASES} cases from {len(seeds)} seed files: {outcomes['classified']} classified, "
        f"{outcomes['skipped']} skipped, {outcomes['escaped']} exceptions escaped; "
        f"slowest case {slowest[1]} took {slowest[0] * 1000:.0f} ms"
    )
    for reason, n in reasons.most_common():
        print(f"  skipped: {reason}: {n}")


if __name__ == "__main__":
    main()
