"""Where flowersort keeps its state and its cache (the XDG base directories), and the
umask its files are made with."""

from __future__ import annotations

import os
from pathlib import Path

from flowersort.base.errors import StateError


def base_dir(variable: str, fallback: str) -> Path:
    """$variable if it is an absolute path (the XDG rule), else ~/fallback. Without HOME,
    the home folder of the user's passwd entry; without either, a StateError."""
    base = os.environ.get(variable, "")
    if os.path.isabs(base):
        return Path(base)
    home = os.environ.get("HOME")
    if home is None:
        home = os.path.expanduser("~")  # the passwd entry, if there is one
    if not os.path.isabs(home):
        raise StateError(
            f"HOME is not set (nor {variable}): set one to say where flowersort keeps its files"
        )
    return Path(home) / fallback


def current_umask() -> int:
    """This process's umask, read without setting it (os.umask would, for a moment, for
    every thread)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        return 0o022
