"""How the journal writes paths, steps and folders into its rows, and reads them
back: absolute paths as JSON, names that are not UTF-8 kept whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from flowersort.base.errors import StateError
from flowersort.base.records import Step
from flowersort.safefs import attrs


def paths_metadata(paths: list[Path]) -> list[dict] | None:
    """attrs.metadata of each path, as a move records it; None if one is gone."""
    try:
        return [attrs.metadata(p) for p in paths]
    except OSError:  # gone meanwhile: the move says so itself
        return None


def decode_paths(text: str) -> list[Path]:
    return [Path(p) for p in json.loads(text)]


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT made (always one: the journal's tables have ids)."""
    if cursor.lastrowid is None:
        raise StateError("the journal made no row")
    return cursor.lastrowid


def decode_steps(text: str) -> list[Step]:
    return [Step.from_json(item) for item in json.loads(text)]


def encode_paths(paths: Iterable[str | os.PathLike]) -> str:
    """Absolute: recovery and undo may run from another folder (cron starts in $HOME)."""
    return json.dumps([os.path.abspath(p) for p in paths])  # lone surrogates survive as \\udcxx


def encode_folder(folder: Path | None) -> str | bytes | None:
    """A run's src or dest as stored: text, or its bytes where the name is not UTF-8 (a
    Latin-1 album: SQLite's text cannot hold a lone surrogate)."""
    if folder is None:
        return None
    name = os.fspath(folder)
    try:
        name.encode()
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def decode_folder(value: str | bytes | None) -> str | None:
    return None if value is None else os.fsdecode(value)


def first_path_is(column: str, path: str | os.PathLike) -> tuple[str, tuple]:
    """SQL (and its parameters) for "the first path in this JSON column is path", by the
    column's index (moves_first_source, moves_first_final): a journal of many moves is not
    read whole. A name that is not UTF-8 is compared as JSON text, without the index."""
    path = os.path.abspath(path)
    try:
        path.encode()
        return f"json_extract({column}, '$[0]') = ?", (path,)
    except UnicodeEncodeError:
        first = "[" + json.dumps(path)  # the first path, whole: a quote ends it
        return f"substr({column}, 1, ?) = ?", (len(first), first)
