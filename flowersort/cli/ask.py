"""`flowersort ask` (the least sure photos into review) and `flowersort adapt`."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

import click

from flowersort.base.errors import (
    ExitCode,
    exit_codes_text,
)
from flowersort.base.outcomes import Action, counted
from flowersort.cli.console import (
    OneLineCommand,
    OneLineUsageError,
    log,
    progress,
    report_skip,
    run_library,
    setup_logging,
)
from flowersort.cli.options import (
    COMMAND_EXIT_CODES,
    acting_user,
    logging_options,
    model_option,
    open_model,
    run_as_option,
    workers_option,
)
from flowersort.cli.output import show_outcomes
from flowersort.model.file import default_model_path
from flowersort.photos.archive import display
from flowersort.scoring.cache import open_score_cache


@click.command(cls=OneLineCommand, epilog=exit_codes_text(COMMAND_EXIT_CODES["ask"], "ask"))
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--move-to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The target folder of your nightly classify: moving a photo there answers 'flower'.",
)
@click.option(
    "--review-to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the photos to answer are put, e.g. Flowers/Review (created if missing).",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1),
    default=25,
    show_default=True,
    help="How many photos to ask about.",
)
@click.option("--dry-run", is_flag=True, help="Say which photos would be asked about; move none.")
@model_option
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Skip these files and folders (as classify)."
)
@click.option("--wait", is_flag=True, help="Wait for another run to finish instead of exit 3.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line per photo asked.")
@workers_option
@run_as_option
@logging_options("asks")
def ask(
    src,
    move_to,
    review_to,
    count,
    dry_run,
    model_path,
    exclude,
    wait,
    as_json,
    workers,
    run_as,
    quiet,
    verbose,
    log_file,
):
    """Put the photos of SRC whose answers would teach flowersort most into --review-to.

    They are the photos the model is least sure of, taken from many folders, no two alike
    (scores the nightly classify cached with the same model are not computed again).
    Answer by moving files: a flower into the --move-to folder, anything else back into
    the archive (any folder). Then 'flowersort adapt' fits a model to your answers. Each
    move is journalled: 'flowersort undo' puts the photos back. Photos you answered before
    are not asked again.
    """
    from flowersort.sorting.adapt import AskOptions
    from flowersort.sorting.adapt import ask as run_ask

    folder = src if src.is_dir() else src.parent
    acting_user(run_as, folder, [folder, move_to, review_to], log_file)
    setup_logging(quiet, verbose, log_file)
    if os.path.realpath(review_to) == os.path.realpath(move_to):
        raise click.UsageError("--review-to must be another folder than the target")
    model_file = model_path or default_model_path()
    model = open_model(model_file)
    cache = run_library(open_score_cache, None, model_file, not dry_run)
    counts: Counter = Counter()
    outcomes = run_ask(
        model,
        src,
        move_to,
        review_to,
        count,
        AskOptions(dry_run=dry_run, workers=workers, exclude=exclude, wait=wait, cache=cache),
    )
    with progress(quiet, desc="choosing", unit="photo") as bar:
        try:
            run_library(show_outcomes, outcomes, bar, counts, as_json, quiet)
        finally:
            outcomes.close()
            if cache is not None:
                cache.close()
    asked = counts[Action.REVIEW] + counts[Action.WOULD_REVIEW]
    verb = "would be put" if dry_run else "put"
    adapt = [src, "--move-to", move_to, "--review-to", review_to]
    adapt += ["--model", model_path] if model_path else []
    adapt_line = " ".join(shlex.quote(display(a)) for a in adapt)
    log.info(
        f"{counted(asked, 'photo')} {verb} into {display(review_to)} for you to "
        f"answer: move each flower into {display(move_to)} and the others back into the "
        f"archive, then run 'flowersort adapt {adapt_line} --out ADAPTED.npz'"
    )
    if counts[Action.FAILED] or counts[Action.NOT_ATTEMPTED]:
        sys.exit(ExitCode.FAILED)


@click.command(cls=OneLineCommand, epilog=exit_codes_text(COMMAND_EXIT_CODES["adapt"], "adapt"))
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--move-to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The target folder of your nightly classify: the photos you moved there are flowers.",
)
@click.option(
    "--review-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="The review folder 'ask' and classify put photos into.",
)
@model_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the adapted model (replaced if it exists); then classify with "
    "--model OUT.",
)
@click.option("--dry-run", is_flag=True, help="Fit the model and say how; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@workers_option
@logging_options("reads")
def adapt(
    src,
    move_to,
    review_to,
    model_path,
    out_path,
    dry_run,
    as_json,
    workers,
    quiet,
    verbose,
    log_file,
):
    """Fit a model to your answers: the photos of SRC you moved into --move-to are flowers,
    the ones you took out of it or out of the review folder are not.

    The model's head nets are fitted to every answer given so far, started from --model
    (default: the shipped one) and held close to it and to its scores of the archive's
    other photos; the threshold is set so that the new model moves as many of them as
    --model did, the ones it now ranks highest. The file has the same format. Run it
    after answering, with the same --model each time, and give the new file to the nightly
    classify (--model OUT).
    """
    from flowersort.sorting.adapt import AdaptOptions
    from flowersort.sorting.adapt import adapt as run_adapt

    setup_logging(quiet, verbose, log_file)
    model_file = model_path or default_model_path()
    if os.path.realpath(out_path) == os.path.realpath(model_file):
        raise OneLineUsageError("--out must be another file than the model it starts from")
    model = open_model(model_file)
    result = run_library(
        run_adapt,
        model,
        src,
        move_to,
        review_to,
        out_path,
        on_skip=report_skip,
        source=os.fspath(model_file),
        options=AdaptOptions(dry_run=dry_run, workers=workers),
    )
    if as_json:
        out = {"model": None if dry_run else os.fspath(out_path), "flowers": result.flowers}
        click.echo(json.dumps({**out, "noflowers": result.noflowers, "seconds": result.seconds}))
        return
    what = "would be written to" if dry_run else "written to"
    log.info(
        f"model {what} {display(out_path)}: adapted to {counted(result.flowers, 'flower')} "
        f"and {counted(result.noflowers, 'not flower')} of yours in {result.seconds:.1f} s"
    )
