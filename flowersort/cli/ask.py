"""`flowersort ask` (the photos worth answering into review) and `flowersort adapt`."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowersort.base.errors import ExitCode
from flowersort.base.outcomes import Action, counted
from flowersort.cli.console import (
    OneLineUsageError,
    log,
    progress,
    report_skip,
    run_library,
)
from flowersort.cli.options import (
    Options,
    act_as,
    config_from,
    dry_run_option,
    exclude_option,
    flowersort_command,
    folder_option,
    json_option,
    logging_options,
    model_option,
    open_model,
    run_as_option,
    src_argument,
    start_logging,
    wait_option,
    workers_option,
)
from flowersort.cli.output import show_outcomes
from flowersort.model.file import default_model_path
from flowersort.photos.archive import display
from flowersort.scoring.cache import open_score_cache

if TYPE_CHECKING:
    from flowersort.sorting.adapt import AdaptResult


@flowersort_command("ask")
@src_argument
@folder_option(
    "--move-to",
    "The target folder of your nightly classify: moving a photo there answers 'flower'.",
    required=True,
)
@folder_option(
    "--review-to",
    "Where the photos to answer are put, e.g. Flowers/Review (created if missing).",
    required=True,
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1),
    default=25,
    show_default=True,
    help="How many photos to ask about.",
)
@dry_run_option("Say which photos would be asked about; move none.")
@model_option
@exclude_option("Skip these files and folders (as classify).")
@wait_option
@json_option("One JSON object a line per photo asked.")
@workers_option
@run_as_option
@logging_options("asks")
def ask(**options: Any) -> None:
    """Put the photos of SRC whose answers would teach flowersort most into --review-to.

    They are the likeliest flowers that do not move yet, no two alike (scores the nightly
    classify cached with the same model are not computed again).
    Answer by moving files: a flower into the --move-to folder, anything else back into
    the archive (any folder). Then 'flowersort adapt' fits a model to your answers. Each
    move is journalled: 'flowersort undo' puts the photos back. Photos you answered before
    are not asked again.
    """
    from flowersort.sorting.adapt import AskOptions
    from flowersort.sorting.adapt import ask as run_ask

    src, move_to, review_to = options["src"], options["move_to"], options["review_to"]
    folder = src if src.is_dir() else src.parent
    act_as(options, folder, [folder, move_to, review_to])
    start_logging(options)
    if os.path.realpath(review_to) == os.path.realpath(move_to):
        raise click.UsageError("--review-to must be another folder than the target")
    model_file = options["model_path"] or default_model_path()
    model = open_model(model_file)
    cache = run_library(open_score_cache, None, model_file, not options["dry_run"])
    counts: Counter = Counter()
    ask_options = config_from(AskOptions, options, cache=cache)
    outcomes = run_ask(model, src, move_to, review_to, options["count"], ask_options)
    with progress(options["quiet"], desc="choosing", unit="photo") as bar:
        try:
            run_library(show_outcomes, outcomes, bar, counts, options["as_json"], options["quiet"])
        finally:
            outcomes.close()
            if cache is not None:
                cache.close()
    log.info(what_next(counts[Action.REVIEW] + counts[Action.WOULD_REVIEW], options))
    if counts[Action.FAILED] or counts[Action.NOT_ATTEMPTED]:
        sys.exit(ExitCode.FAILED)


def what_next(asked: int, options: Options) -> str:
    """How many photos were put into review, and what to do with them: the adapt to run."""
    move_to, review_to = options["move_to"], options["review_to"]
    verb = "would be put" if options["dry_run"] else "put"
    adapt = [options["src"], "--move-to", move_to, "--review-to", review_to]
    adapt += ["--model", options["model_path"]] if options["model_path"] else []
    adapt_line = " ".join(shlex.quote(display(a)) for a in adapt)
    return (
        f"{counted(asked, 'photo')} {verb} into {display(review_to)} for you to "
        f"answer: move each flower into {display(move_to)} and the others back into the "
        f"archive, then run 'flowersort adapt {adapt_line} --out ADAPTED.npz'"
    )


@flowersort_command("adapt")
@src_argument
@folder_option(
    "--move-to",
    "The target folder of your nightly classify: the photos you moved there are flowers.",
    required=True,
)
@folder_option("--review-to", "The review folder 'ask' and classify put photos into.")
@model_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the adapted model (replaced if it exists); then classify with "
    "--model OUT.",
)
@dry_run_option("Fit the model and say how; write nothing.")
@json_option("Print the summary as one JSON object.")
@workers_option
@logging_options("reads")
def adapt(**options: Any) -> None:
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

    start_logging(options)
    model_file, out_path = options["model_path"] or default_model_path(), options["out_path"]
    if os.path.realpath(out_path) == os.path.realpath(model_file):
        raise OneLineUsageError("--out must be another file than the model it starts from")
    model = open_model(model_file)
    result = run_library(
        run_adapt,
        model,
        options["src"],
        options["move_to"],
        options["review_to"],
        out_path,
        on_skip=report_skip,
        source=os.fspath(model_file),
        options=config_from(AdaptOptions, options, unset=("cache", "cfg")),
    )
    show_adapted(result, out_path, options["dry_run"], options["as_json"])


def show_adapted(result: AdaptResult, out_path: Path, dry_run: bool, as_json: bool) -> None:
    if as_json:
        out: dict[str, object] = {"model": None if dry_run else os.fspath(out_path)}
        out["flowers"] = result.flowers
        out |= {"noflowers": result.noflowers, "seconds": result.seconds, "moves": result.moves}
        click.echo(json.dumps(out))
        return
    what = "would be written to" if dry_run else "written to"
    log.info(
        f"model {what} {display(out_path)}: adapted to {counted(result.flowers, 'flower')} "
        f"and {counted(result.noflowers, 'not flower')} of yours in {result.seconds:.1f} s"
    )
    if result.moves is not None:
        log.info(f"it moves {counted(result.moves, 'photo')} of the archive, as the model did")
