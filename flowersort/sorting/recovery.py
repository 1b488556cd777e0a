"""Recovery of the moves a crash cut short: each interrupted move whose sources had
started to go is finished, every other one rolled back, so that each photo exists exactly
once and no temporary file is left (`recover`, called as `Journal.recover`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from flowersort.base.records import MoveAction, MoveState, Step, StepKind
from flowersort.safefs import attrs, identity, seams, transfer
from flowersort.sorting.entries import decode_paths, decode_steps, encode_paths, paths_metadata

if TYPE_CHECKING:
    from flowersort.sorting.journal import Journal


log = logging.getLogger("flowersort")


def record_parses(sources: str, steps: str, twins: str) -> bool:
    """Whether a move's record is what the journal writes: lists of paths and of steps
    ([step, path, details?])."""

    try:
        paths, twins, steps = json.loads(sources), json.loads(twins), json.loads(steps)
    except (TypeError, ValueError):
        return False
    return (
        isinstance(paths, list)
        and isinstance(twins, list)
        and paths != []
        and all(isinstance(p, str) for p in paths + twins)
        and isinstance(steps, list)
        and all(Step.parses(step) for step in steps)
    )


def recover_one(
    sources: list[Path], keep_source: bool, steps: list[Step], failed: bool = False
) -> tuple[MoveState, list[Path]]:
    """One interrupted (or `failed`) move put right from its steps: finished if its
    sources had started to go (and were not being put back), else rolled back; its
    temporaries removed. Returns its new state and its final names."""
    temps = _paths_of(steps, StepKind.TMP)
    claimed = _paths_of(steps, StepKind.CLAIMED)
    noted = {Path(s.path): s.details for s in steps if s.kind == StepKind.CLAIMED and s.details}
    # a last try cut short by the crash: linked or not (an earlier try followed by another
    # one failed: that name was never ours)
    cut_short = [Path(steps[-1].path)] if steps and steps[-1].kind == StepKind.CLAIM else []
    created = _created(steps)
    # sources had started to go, and were not being put back
    removing = bool(_paths_of(steps, StepKind.UNLINK)) and not _paths_of(steps, StepKind.ROLLBACK)
    stand_ins = [p for p in sources + temps if p.exists()]

    def linked_to_ours(path: Path) -> bool:  # a link to one of our own files, by inode
        return path.exists() and any(os.path.samefile(path, s) for s in stand_ins)

    def ours(path: Path) -> bool:
        """A name this move took: still the file noted when it was taken (its temporary
        may be gone) and the same bytes as a source still there, so removing it loses
        nothing; or, cut short, a link to one of our files."""
        if linked_to_ours(path):
            return True
        if path in created and path.exists():  # ours: empty, or our copy renamed over it
            return path.stat().st_size == 0 or any(identity.same_bytes(path, s) for s in stand_ins)
        if path not in noted or not path.exists():
            return False
        same = {k: v for k, v in identity.identity(path).items() if k in noted[path]}
        return same == noted[path] and any(identity.same_bytes(path, s) for s in stand_ins)

    if not removing or keep_source:
        # no source is gone for good: put back those removed before a rollback, take back
        # every name we took, and the temporaries
        for source, final in zip(sources, claimed[-len(sources) :]):
            if source in _paths_of(steps, StepKind.UNLINK):
                if not os.path.lexists(source) and final.exists():
                    transfer.put_back(final, source)
        stand_ins = [p for p in sources + temps if p.exists()]
        for path in set(claimed + cut_short + created):
            if path not in sources and ours(path):
                seams.remove(path)
        state = MoveState.FAILED_CLEAN if failed else MoveState.ROLLED_BACK
        finals = []
    else:
        finals = _finish(sources, claimed, failed)
        state = MoveState.DONE
    for tmp in temps:
        if tmp.exists():
            seams.remove(tmp)
    return state, finals


def _created(steps: list[Step]) -> list[Path]:
    """Without hard links: names taken with an empty file, and one perhaps taken that way
    as the crash came (only an empty file made since it was noted can be that one)."""
    created = _paths_of(steps, StepKind.CREATED)
    if steps and steps[-1].kind == StepKind.CREATE:
        path, at = Path(steps[-1].path), steps[-1].details["at"]
        if _empty_since(path, at - 2_000_000_000):  # FAT times are 2 s coarse
            created.append(path)
    return created


def _finish(sources: list[Path], claimed: list[Path], failed: bool) -> list[Path]:
    """Sources had started to go, so every final name was taken: finish the job."""
    finals = claimed[-len(sources) :]
    for source, final in zip(sources, finals):
        if source.exists() and final.exists() and identity.same_file(source, final):
            seams.remove(source)
        elif not final.exists() and not failed:
            log.error("journal: %s is missing at %s", source, final)
    return finals


def _empty_since(path: Path, since_ns: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_size == 0 and st.st_mtime_ns >= since_ns


def _recover_dedupe(
    sources: list[Path], twins: list[Path], steps: list[Step], failed: bool = False
) -> tuple[MoveState, list[Path]]:
    """A dedupe cut short: finish it if sources had started to go (never removing one that
    is no longer its twin's copy), else give back any source removed from its twin."""
    unlinked = _paths_of(steps, StepKind.UNLINK)
    if unlinked and not failed and not _paths_of(steps, StepKind.ROLLBACK):
        for source, twin in zip(sources, twins):
            if source.exists() and twin.exists() and not os.path.samefile(source, twin):
                if identity.same_bytes(source, twin):
                    seams.remove(source)
        return MoveState.DONE, twins
    kept = {Path(s.path): s.details["kept"] for s in steps if kept_unlink(s)}
    for source, twin in zip(sources, twins):
        if source in unlinked and not source.exists() and twin.exists():
            transfer.put_back(twin, source, link=False)
            if source in kept:
                attrs.set_metadata(source, kept[source])
    for tmp in _paths_of(steps, StepKind.TMP):
        if tmp.exists():
            seams.remove(tmp)
    return (MoveState.FAILED_CLEAN if failed else MoveState.ROLLED_BACK), []


def _paths_of(steps: list[Step], kind: StepKind) -> list[Path]:
    return [Path(s.path) for s in steps if s.kind == kind]


def kept_unlink(step: Step) -> bool:
    """A dedupe's unlink that recorded the removed file's metadata (newer journals)."""
    return step.kind == StepKind.UNLINK and "kept" in step.details


def recover(journal: Journal) -> int:
    """Finish or roll back every move a crash interrupted; returns how many. One that
    cannot be (an I/O error) is said and left for the next run."""
    rows = journal.db.execute(
        "SELECT id, sources, keep_source, steps, action, finals, state, metadata FROM moves "
        "WHERE state IN ('started', 'failed')"
    ).fetchall()
    recovered = 0
    for move_id, sources, keep_source, steps, action, twins, was, recorded in rows:
        # a failed move cleaned up after itself unless something stopped that too (a
        # full disk, an I/O error): look again for anything it left
        if not record_parses(sources, steps, twins if action == MoveAction.DEDUPE else "[]"):
            _set_aside_row(journal, move_id)
            continue
        try:
            failed = was == MoveState.FAILED
            if action == MoveAction.DEDUPE:
                state, finals = _recover_dedupe(
                    decode_paths(sources), decode_paths(twins), decode_steps(steps), failed=failed
                )
            else:
                state, finals = recover_one(
                    decode_paths(sources), bool(keep_source), decode_steps(steps), failed=failed
                )
        except OSError as e:  # left as it is, to be tried again by the next run
            log.error(
                "could not recover the move of %s (%s); the next run tries again",
                json.loads(sources)[0],
                e.strerror or e,
            )
            continue
        if recorded and state == MoveState.DONE:  # as transfer records a move it finished
            recorded = json.dumps({**json.loads(recorded), "landed": paths_metadata(finals)})
        journal.db.execute(
            "UPDATE moves SET state = ?, finals = ?, metadata = ? WHERE id = ?",
            (state.value, encode_paths(finals), recorded, move_id),
        )
        if was == MoveState.STARTED:
            recovered += 1
            log.warning("recovered an interrupted move of %s: %s", json.loads(sources)[0], state)
    return recovered


def _set_aside_row(journal: Journal, move_id: int) -> None:
    """A move whose record does not parse (the journal damaged by hand or by a disk) is
    never acted on: its state becomes 'damaged', kept for a person to look at."""
    journal.set_state(move_id, MoveState.DAMAGED)
    log.warning(
        "warning: move %d of the journal %s is damaged and set aside (not finished, "
        "not undone): look for .flowersort-tmp-* files in its target",
        move_id,
        journal.db.path,
    )
