"""`undo`: a run's photos put back (`Undoing`), the runs that can be undone."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Generator, Iterator
from contextlib import nullcontext
from pathlib import Path

from flowersort.base.errors import FlowersortError
from flowersort.base.outcomes import Action, Outcome, counted
from flowersort.base.records import MoveAction, RunKind
from flowersort.photos.archive import display
from flowersort.safefs import attrs, identity, seams
from flowersort.sorting.checks import link_in_the_way
from flowersort.sorting.corrections import take_back
from flowersort.sorting.folders import remove_dir
from flowersort.sorting.history import DoneMove, RunInfo
from flowersort.sorting.journal import Journal
from flowersort.sorting.lock import RunLock
from flowersort.sorting.moves import DEDUPE_SIDECARS, journal_reader, path_names
from flowersort.sorting.state import state_dir
from flowersort.sorting.tagjournal import recover_tags, tag_runs, undo_tags

log = logging.getLogger("flowersort")


def undo(
    wait: bool = False,
    run_id: int | None = None,
    dry_run: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Generator[Outcome, None, None]:
    """Put a classify run's moves back where they were (the last run, or run_id), never
    overwriting; then remove the folders that run created, if now empty. A dry run goes
    the same way and says what would happen (would-restore ...), touching nothing. When
    `stop()` turns true, stop after the photo in hand."""
    folder = state_dir()
    with nullcontext() if dry_run else RunLock(folder, wait):
        journal = Journal(folder)
        restoring: _Restoring | None = None
        run = None
        try:
            if not dry_run:
                journal.recover()
                recover_tags(journal)
            undo_id = run_to_undo(journal, run_id)
            if not dry_run:
                run = journal.start_run(RunKind.UNDO, None, None)
            if tag_runs(journal, undo_id):  # a tag run: its keywords come out, nothing moves
                yield from _untag(journal, undo_id, run, dry_run, stop)
                return
            undoing = Undoing(journal, run, undo_id, dry_run)
            for sources, finals in journal.split_moves(undo_id):  # said, never skipped
                where = ", ".join(os.fsdecode(f) for f in finals if f.exists())
                yield Outcome(sources[0], Action.FAILED, reason=f"left split by its move: {where}")
            restoring = _Restoring(journal, run, undo_id, undoing)
            if (yield from restoring.take_back_all(journal.done_moves(undo_id), stop)):
                return  # stopped
            if run is None:  # a dry run: nothing to record
                return
            if restoring.left:  # the run stays open: the next undo tries what is left
                journal.finish_run(run)
                return
            _undone(journal, undo_id, run, restoring.already)
        except GeneratorExit:  # the reader went away: the run is undone if every move is back
            if restoring is not None and restoring.complete and run is not None:
                _undone(journal, undo_id, run, restoring.already)
            raise
        finally:
            journal.close()


class _Restoring:
    """The moves of one undo being put back, the last first: how many were back already
    and how many failed, which decide whether the run is undone (also when the reader of
    the outcomes goes away at the last line, `| head`)."""

    def __init__(self, journal: Journal, run: int | None, undo_id: int, undoing: Undoing):
        self.journal, self.run, self.undoing = journal, run, undoing
        self.restored = journal.restored_by_undo(undo_id)
        self.already = 0  # put back by an undo that was interrupted: finish quietly
        self.left = 0  # moves that failed to go back
        self.complete = False  # every move put back: a reader gone at the last line is late

    def take_back_all(
        self, moves: list[DoneMove], stop: Callable[[], bool] | None
    ) -> Generator[Outcome, None, bool]:
        """Each move taken back and said; True when `stop()` ended it (the run finished,
        not undone)."""
        held = None  # a dedupe's outcome, until its moved sidecars (the next entry)
        for i, move in enumerate(moves):
            sources, finals, keep_source, action = move
            if action != DEDUPE_SIDECARS:  # a dedupe's group is done: say it
                if held:
                    yield held
                held = None
                if stop is not None and stop():
                    if self.run is not None:
                        self.journal.finish_run(self.run)
                    return True
            if tuple(finals) in self.restored or (
                (keep_source or action == MoveAction.DEDUPE)
                and all(s.exists() for s in sources)
                and not (keep_source and any(f.exists() for f in finals))
            ):
                self.already += action != DEDUPE_SIDECARS
                continue
            out = self.undoing.take_back(move)
            if action == MoveAction.DEDUPE:
                held = out
                self.left += held.action == Action.FAILED
            elif action == DEDUPE_SIDECARS:  # part of the dedupe above: said there
                self.complete = i == len(moves) - 1 and not self.left
                if out.action == Action.FAILED:
                    self.left += 1
                    yield out
                elif held and held.action in (Action.RESTORED, Action.WOULD_RESTORE):
                    held.sidecars = sorted(held.sidecars + path_names(sources))
            else:
                self.left += out.action == Action.FAILED
                self.complete = i == len(moves) - 1 and not self.left
                yield out
        self.complete = not self.left
        if held:
            yield held
        return False


def list_runs() -> list[RunInfo]:
    """The runs undo can take back, oldest first (the journal only read)."""
    journal = Journal.reader(state_dir())
    if journal is None:
        return []
    try:
        return _runs(journal)
    finally:
        journal.close()


def undo_folders(run_id: int | None = None) -> list[Path]:
    """The SRC and target of the run undo would take back (the journal read only), for
    whose rights a root undo acts with; none when there is nothing to undo (undo says so)."""
    journal = journal_reader()
    if journal is None:
        return []
    try:
        infos = _runs(journal, run_to_undo(journal, run_id))
    except (FlowersortError, sqlite3.Error):
        return []
    finally:
        journal.close()
    return [Path(f) for info in infos for f in (info.src, info.dest) if f is not None]


def _runs(journal: Journal, run: int | None = None) -> list[RunInfo]:
    """The move and copy runs, and the tag runs (tagging.py), oldest first."""
    return sorted(journal.runs(run) + tag_runs(journal, run), key=lambda info: info.id)


def _untag(
    journal: Journal,
    undo_id: int,
    run: int | None,
    dry_run: bool,
    stop: Callable[[], bool] | None,
) -> Iterator[Outcome]:
    """The undo of a tag run (run: this undo's, None in a dry run): each keyword it wrote
    comes out; the run is undone once every one has."""
    left = 0  # keywords that could not be taken out: the next undo tries again
    for out in undo_tags(journal, undo_id, dry_run=dry_run):
        left += out.action == Action.FAILED
        yield out
        if stop is not None and stop():  # after the photo in hand
            break
    else:
        if run is not None and not left:
            _undone(journal, undo_id, run, 0)
            return
    if run is not None:
        journal.finish_run(run)


def run_to_undo(journal: Journal, run_id: int | None) -> int:
    """The run an undo takes back: run_id, else the last run that moved photos, if it is
    not undone already (a second undo never walks silently into earlier nights)."""
    hint = "'flowersort undo --list' shows the runs, 'flowersort undo RUN' undoes one"
    runs = _runs(journal, run_id)
    if run_id is not None and not runs:
        raise FlowersortError(f"no run {run_id} moved photos; {hint}")
    if not runs:
        raise FlowersortError("nothing to undo: no run has moved photos")
    info = runs[-1]
    if info.undone:
        which = f"run {info.id}" if run_id is not None else f"the last run ({info.id})"
        raise FlowersortError(
            f"nothing to undo: {which}, {info.when()}, {counted(info.photos, 'photo')}, is "
            "already undone; " + hint
        )
    return info.id


def remove_empty_dirs(folders: list[Path]) -> None:
    """Remove the folders a run created, deepest first, where undo left them empty."""
    for f in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            remove_dir(f)
        except OSError:
            continue  # not empty (or gone): leave it
        log.info("removed empty folder %s", display(f))


def _untouched_since_moved(metadata: dict, finals) -> list[dict] | None:
    """For each file of a move, its mode, owner, times and tags from before the move if
    they are still as the move left them (a disk without them, such as exFAT, made a
    private photo 0777: undo gives it back its own); yours where you changed them since."""
    recorded = metadata.get(tuple(finals))
    if recorded is None:
        return None
    out = []
    for final, before, landed in zip(finals, *recorded):
        # each part on its own: an edit on exFAT changes the bytes and times, never the
        # 0777 the stick gave the photo, which must not come home with it
        now = attrs.metadata(final)
        merged = dict(now)
        for keys in (("mode",), ("uid", "gid"), ("atime_ns", "mtime_ns"), ("xattrs",)):
            if all(now[k] == landed[k] for k in keys if k != "atime_ns"):
                merged.update({k: before[k] for k in keys})
        out.append(merged)
    return out


class Undoing:
    """Takes back the moves of run `run_id`, one journaled move at a time, as undo run
    `run`; in a dry run each is checked the same way and only said (would-restore ...)."""

    def __init__(self, journal: Journal, run: int | None, run_id: int, dry_run: bool):
        self.journal, self.run, self.run_id, self.dry_run = journal, run, run_id, dry_run
        self.metadata = journal.moved_metadata(run_id)  # all at once: not a query per photo

    def _run(self) -> int:
        if self.run is None:
            raise AssertionError("a dry run changes no file")
        return self.run

    def said(self, action: Action) -> Action:
        if not self.dry_run:
            return action
        return {
            Action.RESTORED: Action.WOULD_RESTORE,
            Action.REMOVED_COPY: Action.WOULD_REMOVE_COPY,
        }[action]

    def take_back(self, move: DoneMove) -> Outcome:
        if move.action == MoveAction.DEDUPE:
            return self.dedupe(move.sources, move.finals)
        keep_source = move.keep_source and move.action != DEDUPE_SIDECARS
        if keep_source:
            return self.remove_copy(move.sources, move.finals)
        return self.move_back(move.sources, move.finals)

    def remove_copy(self, sources: list[Path], finals: list[Path]) -> Outcome:
        """A copy: removed only while the original is still there, unchanged."""
        photo = sources[0]
        if not all(
            s.exists() and f.exists() and identity.same_bytes(s, f) for s, f in zip(sources, finals)
        ):
            return Outcome(photo, Action.FAILED, reason="the copy or its original has changed")
        if not self.dry_run:
            for f in finals:
                seams.remove(f)
        target, sides = os.fsdecode(finals[0]), path_names(sources[1:])
        return Outcome(photo, self.said(Action.REMOVED_COPY), target=target, sidecars=sides)

    def move_back(self, sources: list[Path], finals: list[Path]) -> Outcome:
        photo = sources[0]
        if not all(f.exists() for f in finals):
            return Outcome(photo, Action.FAILED, reason=f"{finals[0]} is no longer there")
        if refused := link_in_the_way(photo):
            return refused
        if self.dry_run and any(os.path.lexists(s) for s in sources):  # as transfer finds
            return Outcome(photo, Action.FAILED, reason=APPEARED)

        def move() -> None:
            untouched = _untouched_since_moved(self.metadata, finals)
            photo.parent.mkdir(parents=True, exist_ok=True)
            self.journal.transfer(
                self._run(),
                finals,
                photo.parent,
                exact_names=[s.name for s in sources],
                metadata=untouched,
                undoing=True,
            )
            for source, before in zip(sources, untouched or []):
                if before is not None:
                    attrs.set_metadata(source, before)

        return self._put_back(sources, finals[0], move)

    def dedupe(self, sources: list[Path], twins: list[Path]) -> Outcome:
        """A removed duplicate comes back as a copy of the twin that stayed, with its own
        mode, times and tags (where the run journaled them)."""
        photo = sources[0]
        gone = [(s, t) for s, t in zip(sources, twins) if not s.exists()]
        if not all(t.exists() for _, t in gone):
            return Outcome(photo, Action.FAILED, reason=f"{twins[0]} is no longer there")
        if refused := link_in_the_way(photo):
            return refused

        def copy_back() -> None:
            if not gone:
                return
            photo.parent.mkdir(parents=True, exist_ok=True)
            self.journal.transfer(
                self._run(),
                [t for _, t in gone],
                photo.parent,
                keep_source=True,
                exact_names=[s.name for s, _ in gone],
                undoing=True,
            )
            own = self.journal.removed_duplicates(self.run_id, sources)
            for source, _ in gone:
                if source in own:  # the copy has the twin's mode, times and tags
                    attrs.set_metadata(source, own[source])

        return self._put_back(sources, twins[0], copy_back)

    def _put_back(self, sources: list[Path], target: Path, act: Callable[[], None]) -> Outcome:
        """act() (not in a dry run), and the photo is restored (would be); a name taken
        since, or an I/O error, and it stays where it is."""
        photo = sources[0]
        try:
            if not self.dry_run:
                act()
        except FileExistsError:
            return Outcome(photo, Action.FAILED, reason=APPEARED)
        except OSError as e:
            return Outcome(photo, Action.FAILED, reason=e.strerror or str(e))
        sides = path_names(sources[1:])
        return Outcome(
            photo, self.said(Action.RESTORED), target=os.fsdecode(target), sidecars=sides
        )


APPEARED = "a file of that name has appeared since"


def _undone(journal: Journal, run_id: int, run: int, already: int) -> None:
    """Every move of run_id is back: mark it, remove the folders it made, if now empty."""
    if already:
        log.info(
            "%s had already been put back by an undo that was interrupted; the rest are done now",
            counted(already, "photo"),
        )
    journal.mark_undone(run_id)
    info = journal.runs(run_id)
    if labels := take_back(run_id, info[0].dest if info else None):
        log.info("%d flower label%s learnt by that run taken back", labels, "s"[: labels != 1])
    remove_empty_dirs(journal.created_dirs(run_id))
    journal.finish_run(run)
