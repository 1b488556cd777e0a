"""Journals of older versions brought up to date: moves recorded with relative paths
made absolute again, from the folder their run was started in.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from flowersort.base.records import Step, StepKind
from flowersort.sorting.entries import decode_steps
from flowersort.sorting.recovery import record_parses

if TYPE_CHECKING:
    from flowersort.sorting.journal import JournalDb


TAKES_A_NAME = (StepKind.CLAIM, StepKind.CLAIMED, StepKind.TMP)  # a name in the target


def _absolute(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def _started_in(
    src: str | None, sources: list[Path], dest: str | None, steps: list[Step]
) -> str | None:
    """The folder a run was started in, from its src (that folder + the src argument, as
    Path.absolute made it) and a source relative to that folder (the src argument + the
    rest): the prefix of src left when the argument is taken off its end. The dest and
    the names the move took must agree, when there are any."""
    if not src or not sources or sources[0].is_absolute():
        return None
    found = []
    parts, first = Path(src).parts, sources[0].parts
    for k in range(len(first)):  # the src argument: the first k parts of the source
        if k and parts[-k:] != first[:k]:
            continue
        base = Path(*parts[: len(parts) - k]) if k else Path(src)
        taken = [Path(s.path) for s in steps if s.kind in TAKES_A_NAME]
        if (
            dest
            and taken
            and not all(
                os.path.commonpath([os.path.normpath(base / t), os.path.normpath(dest)])
                == os.path.normpath(dest)
                for t in taken
                if not t.is_absolute()
            )
        ):
            continue
        found.append(str(base))
    return found[0] if len(found) == 1 else None


def absolute_paths(db: JournalDb) -> None:
    """Journals written before paths were absolute hold a move of a run given relative
    folders relative to the folder it was started in: recovery or undo started in
    another folder (cron's) took its files for missing. That folder is found again
    from the run's src and dest, which were recorded as the folder + the argument."""
    rows = db.execute(
        "SELECT moves.id, sources, steps, finals, src, dest FROM moves "
        "JOIN runs ON runs.id = moves.run WHERE substr(sources, 3, 1) != '/'"
    ).fetchall()
    for move_id, sources, text, finals, src, dest in rows:
        if not record_parses(sources, text, finals or "[]"):
            continue  # damaged: recover sets it aside
        steps = decode_steps(text)
        started_in = _started_in(src, [Path(p) for p in json.loads(sources)], dest, steps)
        if started_in is None:
            continue
        absolute = functools.partial(_absolute, started_in)
        steps = [Step(s.kind, absolute(s.path), s.details) for s in steps]
        db.execute(
            "UPDATE moves SET sources = ?, steps = ?, finals = ? WHERE id = ?",
            (
                json.dumps([absolute(p) for p in json.loads(sources)]),
                json.dumps([s.to_json() for s in steps]),
                finals and json.dumps([absolute(p) for p in json.loads(finals)]),
                move_id,
            ),
        )
