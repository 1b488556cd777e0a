"""Seed photos and the mutations of the fuzzer (tests/test_bad_input.py, benchmarks/fuzz.py)."""

import cv2
import numpy as np


def photo(h=60, w=80) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)  # left half red, right half black
    return img


def encode(img, ext=".jpg", params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(0, 4)
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, len(buf)))
            buf[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncation
        buf = buf[: int(rng.integers(0, len(buf)))]
    elif kind == 2:  # an inserted chunk of noise
        i = int(rng.integers(0, len(buf)))
        buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 500)), dtype=np.uint8).tobytes()
    else:  # overwritten header bytes (sizes, markers)
        i = int(rng.integers(0, min(len(buf), 300)))
        buf[i : i + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(buf)
