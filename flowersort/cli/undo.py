"""`flowersort undo`: put a run's photos back; `undo --list`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from contextlib import closing
from typing import Any

import click

from flowersort.base.errors import ExitCode
from flowersort.base.outcomes import Action
from flowersort.cli.console import (
    Interrupted,
    log,
    progress,
    run_library,
)
from flowersort.cli.options import (
    Options,
    act_as,
    dry_run_option,
    flowersort_command,
    json_option,
    logging_options,
    run_as_option,
    start_logging,
    wait_option,
)
from flowersort.cli.output import UNDO_ALWAYS, show_outcomes, summary_line
from flowersort.photos.archive import display


@flowersort_command("undo")
@click.argument("run", type=click.IntRange(1), required=False)
@click.option(
    "--list",
    "list_runs",
    is_flag=True,
    help="List the runs that moved photos (undone ones too), oldest first.",
)
@dry_run_option("Say what would be put back; touch nothing.")
@wait_option
@json_option(
    "One JSON object a line per photo (with --list: per run, with the keys run, kind, "
    "started, photos, state, src, dest)."
)
@run_as_option
@logging_options("puts back")
def undo(**options: Any) -> None:
    """Put the photos moved by the last classify or ask run (or by run RUN) back.

    They go back where they were, their folders recreated; a photo whose old place has
    been taken by a new file since is left where it is and reported as failed. Copies
    made with --copy-to are removed, but only while their originals are still there,
    unchanged. Folders the run created (such as the target) are removed when undo leaves
    them empty. Undoing the
    last run twice is an error: name an earlier run (see --list) to undo it too. Ctrl-C or
    SIGTERM finish the photo in hand and stop (exit 130 or 143).
    """
    from flowersort.sorting.undo import undo_folders

    if not options["list_runs"]:  # the run's SRC first: whose rights a root undo acts with
        folders = undo_folders(options["run"])
        act_as(options, folders[0] if folders else None, folders)
    start_logging(options)
    if options["list_runs"]:
        if options["run"] is not None or options["dry_run"]:
            raise click.UsageError("--list takes no RUN and no --dry-run")
        show_runs(options["as_json"])
    else:
        put_back(options)


def put_back(options: Options) -> None:
    """Undo the run, showing each photo put back; exit 1 if one could not be."""
    from flowersort.sorting.undo import undo as run_undo

    interrupted = Interrupted.install()
    counts: Counter = Counter()
    undoing = run_undo(
        options["wait"], run_id=options["run"], dry_run=options["dry_run"], stop=interrupted
    )
    try:
        # closing: an undo stopped half-way releases the lock and journal as the block ends
        with (
            progress(options["quiet"], desc="undoing", unit="photo") as bar,
            closing(undoing) as outcomes,
        ):
            run_library(show_outcomes, outcomes, bar, counts, options["as_json"], options["quiet"])
    except click.ClickException:
        if counts:  # what was done before the run stopped
            log.info(summary_line(counts, always=UNDO_ALWAYS))
        raise
    log.info(summary_line(counts, always=UNDO_ALWAYS))
    interrupted.exit_if_stopped()
    if counts[Action.FAILED]:
        sys.exit(ExitCode.FAILED)


def show_runs(as_json: bool) -> None:
    """undo --list: one line per run that moved photos, oldest first."""
    from flowersort.sorting.undo import list_runs

    runs = run_library(list_runs)
    if as_json:
        for info in runs:
            click.echo(json.dumps(info.to_json()))
        return
    if not runs:
        log.info("no run has moved photos")
        return
    click.echo(f"{'run':>5}  {'started':19}  kind  {'photos':>6}  {'state':13}  from -> to")
    for info in runs:
        row = info.to_json()
        click.echo(
            f"{info.id:5d}  {row['started']}  {row['kind']:4}  {info.photos:6d}  "
            f"{info.state:13}  {display(info.src or '')} -> {display(info.dest or '')}"
        )
