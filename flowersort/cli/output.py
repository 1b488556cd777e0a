"""A run's lines, summary and report: what classify, undo and ask print."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

from flowersort.base.outcomes import Action, Outcome
from flowersort.cli.console import FILE_ONLY, log, once_per_run, report_skip, say
from flowersort.cli.options import PRIVATE_BY_FOLDER
from flowersort.photos.archive import VIDEO_SUFFIXES, display
from flowersort.safefs.names import split_name


def write_html(
    path: Path, entries, model, title: str, workers: int | None, thumbnail: bool = False
) -> None:
    from flowersort.report import write_report
    from flowersort.scoring.pipeline import default_workers

    write_report(path, entries, model, title, workers or default_workers(), thumbnail)


CLASSIFY_ALWAYS = (Action.MOVED, Action.COPIED, Action.SKIPPED, Action.FAILED)


TAG_ALWAYS = (Action.TAGGED, Action.SKIPPED, Action.FAILED)  # classify --tag


UNDO_ALWAYS = (Action.FAILED,)


def elapsed_words(seconds: float) -> str:
    """'4.2 s', '3 min 05 s', '1 h 02 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def summary_line(
    counts: Counter,
    passed_over: Counter | None = None,
    always=CLASSIFY_ALWAYS,
    model: Path | None = None,
    flowers: int | None = None,
    not_looked_at: int | None = None,
) -> str:
    """'12 photos: 3 moved, 0 copied, 9 kept, 1 skipped, 0 failed': the counts `always`
    shown, the others when they happened; then, without a target, '; 7 flowers'; the
    videos and RAW files passed over (counted by suffix), if any: '; 2 videos, 1 RAW file
    passed over'; after a stop, '; 120 photos not looked at (stopped)'; then the model
    that scored them: '; model models/mine.npz'."""
    words = {Action.VETOED: "kept by your earlier choice", Action.REVIEW: "for review"}
    parts = [
        f"{counts[action]} {words.get(action, action.words)}"
        for action in Action
        if counts[action] or action in always
    ]
    n = sum(counts.values())
    line = f"{n} photo{'' if n == 1 else 's'}: " + ", ".join(parts)
    if flowers is not None:
        line += f"; {flowers} flower{'' if flowers == 1 else 's'}"
    if passed_over:
        videos = sum(n for suffix, n in passed_over.items() if suffix in VIDEO_SUFFIXES)
        raws = sum(passed_over.values()) - videos
        kinds = [
            f"{n} {kind}{'' if n == 1 else 's'}"
            for n, kind in ((videos, "video"), (raws, "RAW file"))
            if n
        ]
        line += f"; {', '.join(kinds)} passed over"
    if not_looked_at is not None:
        plural = "" if not_looked_at == 1 else "s"
        line += f"; {not_looked_at} photo{plural} not looked at (stopped)"
    if model is not None:
        line += f"; model {display(model)}"
    return line


def outcome_line(o: Outcome) -> str:
    """'moved: SRC -> DST (0.912) + .xmp, .CR2': a move, copy or plan with its sidecars
    (their names follow the photo's final name); for undo, where the photo went back."""
    if o.keyword:  # a tag run: the keyword and the sidecar it is in
        return tag_line(o)
    extras = ""
    if o.sidecars:
        beside = o.source if o.action.puts_back else o.target  # the photo they are with
        stem = len(split_name(os.path.basename(beside))[0])
        extras = " + " + ", ".join(display(os.path.basename(s)[stem:]) for s in o.sidecars)
    if o.action.puts_back:  # undo: the photo goes back from target to source
        return f"{o.action.words}: {display(o.target)} -> {display(o.source)}{extras}"
    return f"{o.action.words}: {display(o.source)} -> {display(o.target)} ({o.score:.3f}){extras}"


def tag_line(o: Outcome) -> str:
    """'tagged: Pictures/IMG_0001.jpg (0.912) + Flowers in IMG_0001.jpg.xmp'; for undo,
    'untagged: Pictures/IMG_0001.jpg - Flowers from IMG_0001.jpg.xmp'."""
    score = "" if o.score is None else f" ({o.score:.3f})"
    sidecar = display(os.path.basename(o.target))
    if o.action in (Action.UNTAGGED, Action.WOULD_UNTAG, Action.NOT_TAGGED):
        return f"{o.action.words}: {display(o.source)} - {o.keyword} from {sidecar}"
    return f"{o.action.words}: {display(o.source)}{score} + {o.keyword} in {sidecar}"


def show_outcomes(
    outcomes,
    bar,
    counts: Counter,
    as_json: bool,
    quiet: bool,
    seen=None,
    copying: bool = False,
    json_extra: dict | None = None,
) -> None:
    """Print each photo's outcome as it streams in: JSON (with the keys of `json_extra`
    too) or a line on stdout (none with --quiet), skips and failures on stderr; every move
    also goes to the log file; keep them in `seen` for a report."""
    debugging = log.isEnabledFor(logging.DEBUG)
    updating = not getattr(bar, "disable", False)  # no bar (cron, --quiet): no call a photo
    kept = 0  # most photos of a rerun: counted here, into counts as the loop ends
    try:
        for o in outcomes:
            if seen is not None:
                seen.append(o)
            if updating:
                bar.update(1)
            if o.action is Action.KEPT and not (o.flower or o.note or as_json):
                kept += 1
                if debugging:  # said only with -v, no line built else
                    log.debug("%s: %s (score %.3f)", o.action, display(o.source), o.score)
                continue
            counts[o.action] += 1
            _show(o, as_json, quiet, copying, json_extra)
    finally:
        if kept:
            counts[Action.KEPT] += kept


def _show(o: Outcome, as_json: bool, quiet: bool, copying: bool, json_extra: dict | None) -> None:
    """One outcome that has something to say (see show_outcomes)."""
    if o.action.changed_files:
        log.info(outcome_line(o), extra=FILE_ONLY)
    if o.note:
        log.info("note: %s: %s", display(o.source), o.note)
    if o.private_by_folder:
        once_per_run["not copied" if copying else "not moved", PRIVATE_BY_FOLDER] += 1
    if as_json:
        say(json.dumps({**o.to_json(), **(json_extra or {})}))
    elif o.action == Action.SKIPPED:
        report_skip(o.source, o.reason, o.skipped_before)
    elif o.action.is_failure:
        log.error("%s: %s: %s", o.action.words, display(o.source), o.reason)
    elif o.action == Action.KEPT and o.flower and not quiet:  # no target: list them
        say(f"flower: {display(o.source)} ({o.score:.3f})")
    elif o.action in (Action.KEPT, Action.VETOED):
        log.debug("%s: %s (score %.3f)", o.action, display(o.source), o.score)
    elif o.action == Action.ALREADY_THERE:  # every night for every photo: only with -v
        log.debug("already there: %s = %s", display(o.source), display(o.target))
    elif o.action in (Action.ALREADY_TAGGED, Action.NOT_TAGGED):  # likewise
        log.debug(outcome_line(o))
    elif o.action == Action.BORDERLINE and not quiet:
        say(f"borderline, left for you: {display(o.source)} ({o.score:.3f})")
    elif quiet:
        pass
    else:
        say(outcome_line(o))
    if as_json and o.action == Action.SKIPPED:
        report_skip(o.source, o.reason, o.skipped_before)
    elif as_json and o.action.is_failure:
        log.warning("%s: %s: %s", o.action, display(o.source), o.reason)
