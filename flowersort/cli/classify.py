"""`flowersort classify`: sort an archive (move, copy or tag the flower photos)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from flowersort.base.errors import (
    ExitCode,
    exit_codes_text,
)
from flowersort.base.outcomes import Action
from flowersort.cli.console import (
    Interrupted,
    OneLineCommand,
    log,
    progress,
    report_once_per_run,
    run_library,
    setup_logging,
)
from flowersort.cli.options import (
    COMMAND_EXIT_CODES,
    acting_user,
    logging_options,
    model_option,
    open_model,
    report_option,
    run_as_option,
    workers_option,
)
from flowersort.cli.output import TAG_ALWAYS, elapsed_words, show_outcomes, summary_line, write_html
from flowersort.model.file import default_model_path
from flowersort.model.metrics import DEFAULT_REVIEW_BAND
from flowersort.scoring.cache import open_score_cache


@click.command(
    cls=OneLineCommand, epilog=exit_codes_text(COMMAND_EXIT_CODES["classify"], "classify")
)
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--move-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Move the flower photos into this folder.",
)
@click.option(
    "--copy-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the flower photos into this folder instead; the archive is untouched.",
)
@click.option(
    "--tag",
    metavar="KEYWORD",
    help="Instead of moving: write KEYWORD (e.g. Flowers, or a hierarchy such as "
    "'flowersort|Flowers') into each flower photo's XMP sidecar, where digiKam, darktable, "
    "Lightroom and Immich read keywords; no photo is moved, renamed or changed. 'undo' "
    "takes the keyword out again; a keyword you remove is a veto, a photo you give it "
    "is a flower example.",
)
@click.option(
    "--review-tag",
    metavar="KEYWORD",
    help="With --tag: the keyword of photos with a borderline score (default: KEYWORD "
    "followed by '?', e.g. 'Flowers?').",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and touch nothing.")
@click.option(
    "--keep-structure",
    is_flag=True,
    help="Keep each photo's folder below SRC under the target (Pictures/2020/07 Trip/x.jpg "
    "goes to Flowers/2020/07 Trip/x.jpg). Default: all in the target folder itself.",
)
@model_option
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold.")
@click.option(
    "--review-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Move (or copy) photos with a borderline score here, e.g. Flowers/Review, for you "
    "to sort by hand: into the target folder means flower, back into the archive means not. "
    "Without it they stay where they are.",
)
@click.option(
    "--review-band",
    type=click.FloatRange(0, 1),
    help="Scores closer than this to the threshold are borderline. Default: the model's "
    f"setting, else {DEFAULT_REVIEW_BAND}, narrowed near 0 or 1 to half the room between the "
    "threshold and the nearer end; none with --threshold; 0 turns the band off.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object a line per photo: {"path", "score", "flower", "action", "detail", '
    '"sidecars", "note", "model"}; detail is where the photo went (or why it was skipped or '
    "failed), note what the decoder said (a photo decoded in part), model the model file "
    "that scored it; where the name is not UTF-8, also path_bytes: its bytes in base64 "
    "(and detail_bytes for the target's name).",
)
@click.option(
    "--on-conflict",
    type=click.Choice(["rename", "skip", "dedupe"]),
    default="rename",
    show_default=True,
    help="When a byte-identical copy is already in the target: add it under a new name, "
    "leave it where it is, or remove the source (after a byte compare). A photo an earlier "
    "run moved or copied there, still unchanged, is always left alone ('already there').",
)
@click.option("--wait", is_flag=True, help="Wait for another run to finish instead of exit 3.")
@click.option(
    "--thumbnails/--no-thumbnails",
    default=False,
    show_default=True,
    help="Classify JPEGs from their embedded EXIF preview when it is large enough: reads "
    "only the first 80 KiB of each file, about 7x faster; with the default model it was "
    "measured to cost about 1 point of accuracy (see the README). An editor may leave "
    "stale previews in edited photos.",
)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score cache file. Default: $XDG_CACHE_HOME/flowersort/scores.sqlite.",
)
@click.option("--no-cache", is_flag=True, help="Decode every photo, remember nothing.")
@report_option
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links (loops are cut).")
@click.option(
    "--include-hidden",
    is_flag=True,
    help="Also enter hidden files and folders and thumbnail caches (@eaDir ...).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Skip files and folders whose name or path relative to SRC matches GLOB "
    "('2020/*', 'Screenshots', '*.png'; '/...' matches the absolute path; case matters); may "
    "be repeated. A Live Photo's .MOV and a photo's sidecars go with their photo.",
)
@workers_option
@run_as_option
@logging_options("moves")
def classify(
    src,
    move_to,
    copy_to,
    tag,
    review_tag,
    dry_run,
    keep_structure,
    model_path,
    threshold,
    review_to,
    review_band,
    as_json,
    on_conflict,
    wait,
    thumbnails,
    cache_path,
    no_cache,
    report_path,
    follow_symlinks,
    include_hidden,
    exclude,
    workers,
    run_as,
    quiet,
    verbose,
    log_file,
):
    """Find the flower photos under SRC; with --move-to, move them there.

    SRC is searched recursively (never inside the target folder). A file at the target
    is never overwritten: a clash gets a new name such as 'IMG_0001 (1).jpg'. Files that
    are not usable photos are reported as skipped and the run goes on. Sidecars (.xmp,
    .aae, .json, RAW twins) move with their photo. Every move is journalled: a run killed
    half-way is finished or rolled back by the next one, and 'flowersort undo' puts the
    last run's moves back. Only one moving run at a time (exit 3 otherwise). Ctrl-C or
    SIGTERM finish the photo in hand and stop (exit 130 or 143).

    flowersort learns from what you do with the files: a photo it moved that you took
    back out of the target (under any name, into any folder) is never moved again; a photo
    you put into the target yourself is a flower example (see 'flowersort corrections').

    With --tag KEYWORD nothing is moved: each flower photo gets KEYWORD in its XMP sidecar
    (merged into one there, else a new NAME.ext.xmp), journaled so 'flowersort undo' takes
    it out again; a keyword you remove is a veto, one you add by hand a flower example.
    """
    from flowersort.sorting.options import Hooks, SortOptions, WalkOptions
    from flowersort.sorting.sorter import SortRun, count_photos
    from flowersort.sorting.tagging import review_keyword

    folder = src if src.is_dir() else src.parent
    written = [folder, move_to or copy_to, review_to, report_path and report_path.parent]
    acting_user(run_as, folder, written, log_file)
    setup_logging(quiet, verbose, log_file)
    interrupted = Interrupted.install()
    if move_to and copy_to:
        raise click.UsageError("use either --move-to or --copy-to, not both")
    dest = move_to or copy_to
    if tag is not None and dest:
        raise click.UsageError("use either --tag or --move-to/--copy-to, not both")
    if review_tag is not None and tag is None:
        raise click.UsageError("--review-tag needs --tag")
    if tag is not None and (review_to or keep_structure):
        raise click.UsageError("--review-to and --keep-structure need --move-to or --copy-to")
    if tag is not None and review_tag is None:
        review_tag = review_keyword(tag)
    if review_to and not dest:
        raise click.UsageError("--review-to needs --move-to or --copy-to")
    if review_to and os.path.realpath(review_to) == os.path.realpath(dest):
        raise click.UsageError("--review-to must be another folder than the target")
    model_file = model_path or default_model_path()
    model = open_model(model_file)
    cache = None
    if not no_cache:
        changes_files = (dest is not None or tag is not None) and not dry_run
        cache = run_library(open_score_cache, cache_path, model_file, changes_files, thumbnails)
    counts: Counter = Counter()
    passed_over: Counter = Counter()  # videos and RAW files, by suffix
    said: dict[str, Any] = {"model": model_file}  # for the summary line
    listing = dest is None and tag is None
    if listing:  # no target: the flowers listed are counted too
        said["flowers"] = 0
    if tag is not None:
        said["always"] = TAG_ALWAYS

    def counting(outcomes):  # without a target: the flowers listed
        for o in outcomes:
            said["flowers"] += bool(o.flower)
            yield o

    options = SortOptions(
        dest=dest,
        copy=copy_to is not None,
        dry_run=dry_run,
        threshold=threshold,
        review=review_to,
        review_band=review_band,
        on_conflict=on_conflict,
        keep_structure=keep_structure,
        wait=wait,
        workers=workers,
        thumbnail=thumbnails,
        walk=WalkOptions(include_hidden, follow_symlinks, tuple(exclude)),
        tag=tag,
        review_tag=review_tag,
    )
    hooks = Hooks(
        stop=interrupted,
        on_passed_over=lambda path: passed_over.update([os.path.splitext(path)[1].lower()]),
        on_stopped=lambda n: said.update(not_looked_at=n),
    )
    total = None
    on_terminal = not quiet and sys.stderr.isatty()
    if on_terminal:  # count first, for the bar's ETA
        total = count_photos(src, options.targets, options.walk)
    started = time.monotonic()
    try:
        # a run stopped half-way releases the lock and journal as the with block ends
        with (
            SortRun(model, src, options, cache=cache, hooks=hooks) as sort_run,
            progress(quiet, desc="classifying", unit="photo", total=total) as bar,
        ):
            seen = [] if report_path else None
            copying = copy_to is not None
            model_key = {"model": os.fsdecode(model_file)}
            shown = counting(sort_run) if listing else sort_run
            run_library(show_outcomes, shown, bar, counts, as_json, quiet, seen, copying, model_key)
    except click.ClickException:
        if counts:  # what was done before the run stopped
            log.info(summary_line(counts, **said))
        raise
    finally:
        if cache is not None:
            cache.close()
    if report_path:
        from flowersort.report import outcome_entries

        entries = outcome_entries(seen)
        title = f"flowersort classify {src}"
        write_html(report_path, entries, model, title, workers, thumbnails)
        log.info("report written to %s", report_path)
    if on_terminal:  # the bar is gone: say how long it took
        log.info("classifying took %s", elapsed_words(time.monotonic() - started))
    if counts[Action.BORDERLINE] and not quiet:
        n = counts[Action.BORDERLINE]
        log.info(
            "%d borderline photo%s left in place: --review-to FOLDER puts them aside for you "
            "to sort by hand (and flowersort learns from how you sort them)",
            n,
            " was" if n == 1 else "s were",
        )
    log.info(summary_line(counts, passed_over, **said))
    report_once_per_run()
    interrupted.exit_if_stopped()
    if counts[Action.FAILED] or counts[Action.NOT_ATTEMPTED]:
        sys.exit(ExitCode.FAILED)
