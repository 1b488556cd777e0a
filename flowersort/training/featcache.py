"""Decoded training features remembered between `train` runs, one .npy file per photo.

Decoding and cutting ~6,000 photos (and their crops) costs more than fitting the nets, and
the same folders are trained on again and again while settings are tried. A photo's
features are kept under a name made of its real path, size and mtime and of everything
that shapes them (the feature config, the number of crops, FEATURES_VERSION), so a changed
photo or a changed setting is simply a miss. Files are written to a temporary name and
renamed into place, so two runs can share the folder; an unreadable entry is a miss.
Lives in $XDG_CACHE_HOME/flowersort/features (else ~/.cache/flowersort/features).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from flowersort.model.features import FEATURES_VERSION, FeatureConfig


def default_feature_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flowersort" / "features"


class FeatureCache:
    """get/put of one photo's feature array (with its crops) for one feature setting."""

    def __init__(self, folder: str | os.PathLike, cfg: FeatureConfig, copies: int):
        setting = json.dumps([cfg.to_dict(), copies, FEATURES_VERSION], sort_keys=True)
        self.folder = Path(folder) / hashlib.sha256(setting.encode()).hexdigest()[:16]
        self.shape = ((1 + copies,) if copies else ()) + (cfg.grid**2, *cfg.tile_shape)

    def _file(self, path: str | os.PathLike) -> Path | None:
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            return None
        key = b"\0".join([os.fsencode(real), b"%d" % st.st_size, b"%d" % st.st_mtime_ns])
        digest = hashlib.sha256(key).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, path: str | os.PathLike) -> np.ndarray | None:
        file = self._file(path)
        if file is None:
            return None
        try:
            x = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return x if x.shape == self.shape and x.dtype == np.float32 else None

    def put(self, path: str | os.PathLike, x: np.ndarray) -> None:
        """Remember x for path; a cache that cannot be written is skipped silently."""
        file = self._file(path)
        if file is None or x.shape != self.shape:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".npy")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, x.astype(np.float32, copy=False), allow_pickle=False)
            os.replace(tmp, file)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
