"""Training examples from what the user taught: marks files a report saved, and the
corrections store's vetoes and confirmations (`training_examples`, for train
--with-corrections).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from flowersort.base.errors import FlowersortError
from flowersort.photos.archive import OnSkip
from flowersort.safefs.identity import Key, content_key
from flowersort.sorting.corrections import Label, Store


def _file_size(path: str | os.PathLike) -> int | None:
    """The size of a regular file (a folder or a FIFO named in a marks file is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


MARKS_FORMAT = "flowersort-marks"  # the "format" of the JSON the report's button saves


@dataclass
class Example:
    path: Path
    label: Label
    source: str  # "corrections" or the marks file


def read_marks(path: Path) -> list[dict]:
    """The marks a report saved: [{"path", "size", "label", ...}] (see report.py)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FlowersortError(f"cannot read marks file {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != MARKS_FORMAT:
        raise FlowersortError(f"{path} is not a marks file saved from a flowersort report")
    marks = doc.get("marks")
    if not isinstance(marks, list) or not all(
        isinstance(m, dict) and isinstance(m.get("path"), str) and m.get("label") in LABELS
        for m in marks
    ):
        raise FlowersortError(f"{path}: marks must be a list of {{path, label}}")
    return marks


LABELS = ("flower", "not-flower")


def training_examples(
    store: Store, marks_files: list[Path], on_skip: OnSkip, *, stored: bool = True
) -> list[Example]:
    """The photos named by marks files and (with `stored`) by the store's corrections,
    found where they were last seen and checked by content. Marks are recorded in the store
    too (content-keyed), so a photo marked "not a flower" is held by later runs."""
    examples: dict[Key, Example] = {}
    for marks_file in marks_files:
        for mark in read_marks(marks_file):
            path = Path(os.path.abspath(mark["path"]))
            size = _file_size(path)
            key = None
            if size is not None and mark.get("size") in (None, size):
                try:
                    key = content_key(path)
                except OSError:
                    pass
            if key is None:
                on_skip(mark["path"], f"marked in {marks_file}, but no longer there as it was")
                continue
            store.note(key, mark["label"], "mark", path)
            examples[key] = Example(path, mark["label"], os.fspath(marks_file))
    for c in store.corrections() if stored else ():
        if c.key in examples:
            continue
        try:
            there = _file_size(c.path) == c.size and content_key(c.path) == c.key
        except OSError:
            there = False
        if not there:
            on_skip(os.fspath(c.path), "a correction, but the photo is no longer there")
            continue
        examples[c.key] = Example(c.path, c.label, "corrections")
    return list(examples.values())
