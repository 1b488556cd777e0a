"""`flowersort classify`: sort an archive (move, copy or tag the flower photos)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowersort.base.errors import ExitCode
from flowersort.base.outcomes import Action, Outcome
from flowersort.cli.console import Interrupted, log, progress, report_once_per_run, run_library
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
    report_option,
    run_as_option,
    src_argument,
    start_logging,
    threshold_option,
    wait_option,
    workers_option,
)
from flowersort.cli.output import TAG_ALWAYS, elapsed_words, show_outcomes, summary_line, write_html
from flowersort.model.file import default_model_path
from flowersort.model.metrics import DEFAULT_REVIEW_BAND
from flowersort.scoring.cache import ScoreCache, open_score_cache

if TYPE_CHECKING:
    from flowersort.model.file import Model
    from flowersort.sorting.options import Hooks, SortOptions


@flowersort_command("classify")
@src_argument
@folder_option("--move-to", "Move the flower photos into this folder.")
@folder_option(
    "--copy-to", "Copy the flower photos into this folder instead; the archive is untouched."
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
@dry_run_option("Print the plan and touch nothing.")
@click.option(
    "--keep-structure",
    is_flag=True,
    help="Keep each photo's folder below SRC under the target (Pictures/2020/07 Trip/x.jpg "
    "goes to Flowers/2020/07 Trip/x.jpg). Default: all in the target folder itself.",
)
@model_option
@threshold_option
@folder_option(
    "--review-to",
    "Move (or copy) photos with a borderline score here, e.g. Flowers/Review, for you to sort "
    "by hand: into the target folder means flower, back into the archive means not. Without "
    "it they stay where they are.",
)
@click.option(
    "--review-band",
    type=click.FloatRange(0, 1),
    help="Scores closer than this to the threshold are borderline. Default: the model's "
    f"setting, else {DEFAULT_REVIEW_BAND}, narrowed near 0 or 1 to half the room between the "
    "threshold and the nearer end; none with --threshold; 0 turns the band off.",
)
@json_option(
    'One JSON object a line per photo: {"path", "score", "flower", "action", "detail", '
    '"sidecars", "note", "model"}; detail is where the photo went (or why it was skipped or '
    "failed), note what the decoder said (a photo decoded in part), model the model file "
    "that scored it; where the name is not UTF-8, also path_bytes: its bytes in base64 "
    "(and detail_bytes for the target's name)."
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
@wait_option
@click.option(
    "--thumbnails/--no-thumbnails",
    default=False,
    show_default=True,
    help="Classify JPEGs from their embedded EXIF preview when it is large enough: reads "
    "only the first 80 KiB of each file, about 7x faster; with the default model it was "
    "measured to cost about 1 point of accuracy (see docs/experiments.md). An editor may leave "
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
@exclude_option(
    "Skip files and folders whose name or path relative to SRC matches GLOB "
    "('2020/*', 'Screenshots', '*.png'; '/...' matches the absolute path; case matters); may "
    "be repeated. A Live Photo's .MOV and a photo's sidecars go with their photo."
)
@workers_option
@run_as_option
@logging_options("moves")
def classify(**options: Any) -> None:
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
    src = options["src"]
    folder = src if src.is_dir() else src.parent
    act_as(options, folder, written_folders(options, folder))
    start_logging(options)
    interrupted = Interrupted.install()
    sort = sort_options(options)
    model_file = options["model_path"] or default_model_path()
    model = open_model(model_file)
    cache = None if options["no_cache"] else open_cache(options, model_file, sort)
    tally = Tally(model_file, sort)
    on_terminal = not options["quiet"] and sys.stderr.isatty()
    total = photos_to_look_at(src, sort) if on_terminal else None  # for the bar's ETA
    started = time.monotonic()
    seen = sort_and_show(model, src, sort, cache, tally.hooks(interrupted), tally, options, total)
    if seen is not None:
        write_report(options, model, seen)
    if on_terminal:  # the bar is gone: say how long it took
        log.info("classifying took %s", elapsed_words(time.monotonic() - started))
    if tally.counts[Action.BORDERLINE] and not options["quiet"]:
        tell_borderline(tally.counts[Action.BORDERLINE])
    log.info(summary_line(tally.counts, tally.passed_over, **tally.said))
    report_once_per_run()
    interrupted.exit_if_stopped()
    if tally.counts[Action.FAILED] or tally.counts[Action.NOT_ATTEMPTED]:
        sys.exit(ExitCode.FAILED)


def written_folders(options: Options, folder: Path) -> list[Path | None]:
    """The folders the run may write into: whose rights a root run needs there."""
    report = options["report_path"]
    targets = [options["move_to"] or options["copy_to"], options["review_to"]]
    return [folder, *targets, report and report.parent]


def sort_options(options: Options) -> SortOptions:
    """What classify's options ask the run to do; a usage error where they do not go
    together."""
    from flowersort.sorting.options import SortOptions, WalkOptions
    from flowersort.sorting.tagging import review_keyword

    move_to, copy_to, review_to = options["move_to"], options["copy_to"], options["review_to"]
    tag, review_tag = options["tag"], options["review_tag"]
    if move_to and copy_to:
        raise click.UsageError("use either --move-to or --copy-to, not both")
    dest = move_to or copy_to
    if tag is not None and dest:
        raise click.UsageError("use either --tag or --move-to/--copy-to, not both")
    if review_tag is not None and tag is None:
        raise click.UsageError("--review-tag needs --tag")
    if tag is not None and (review_to or options["keep_structure"]):
        raise click.UsageError("--review-to and --keep-structure need --move-to or --copy-to")
    if tag is not None and review_tag is None:
        review_tag = review_keyword(tag)
    if review_to and not dest:
        raise click.UsageError("--review-to needs --move-to or --copy-to")
    if review_to and os.path.realpath(review_to) == os.path.realpath(dest):
        raise click.UsageError("--review-to must be another folder than the target")
    return config_from(
        SortOptions,
        options,
        dest=dest,
        copy=copy_to is not None,
        review=review_to,
        thumbnail=options["thumbnails"],
        walk=config_from(WalkOptions, options),
        review_tag=review_tag,
    )


def open_cache(options: Options, model_file: Path, sort: SortOptions) -> ScoreCache | None:
    """The score cache of model_file's scores; a run that changes files needs it."""
    changes_files = (sort.dest is not None or sort.tag is not None) and not sort.dry_run
    return run_library(
        open_score_cache, options["cache_path"], model_file, changes_files, sort.thumbnail
    )


def photos_to_look_at(src: Path, sort: SortOptions) -> int:
    from flowersort.sorting.sorter import count_photos

    return count_photos(src, sort.targets, sort.walk)


class Tally:
    """What a run has done, for its summary line: the outcomes by action, the videos and
    RAW files passed over (by suffix), and the line's other words (`said`: the model, the
    flowers listed, the photos not looked at)."""

    def __init__(self, model_file: Path, sort: SortOptions) -> None:
        self.counts: Counter = Counter()
        self.passed_over: Counter = Counter()
        self.said: dict[str, Any] = {"model": model_file}
        self.listing = sort.dest is None and sort.tag is None
        if self.listing:  # no target: the flowers listed are counted too
            self.said["flowers"] = 0
        if sort.tag is not None:
            self.said["always"] = TAG_ALWAYS

    def hooks(self, stop: Callable[[], bool]) -> Hooks:
        from flowersort.sorting.options import Hooks

        return Hooks(
            stop=stop,
            on_passed_over=self.pass_over,
            on_stopped=lambda n: self.said.update(not_looked_at=n),
        )

    def pass_over(self, path: str) -> None:
        self.passed_over.update([os.path.splitext(path)[1].lower()])

    def counting(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        """The outcomes, the flowers among them counted (a listing run: no target)."""
        for o in outcomes:
            self.said["flowers"] += bool(o.flower)
            yield o


def sort_and_show(
    model: Model,
    src: Path,
    sort: SortOptions,
    cache: ScoreCache | None,
    hooks: Hooks,
    tally: Tally,
    options: Options,
    total: int | None,
) -> list[Outcome] | None:
    """Run the sort, showing each outcome as it comes, then close the cache; with --report,
    the outcomes. A run stopped by an error says what it did before."""
    from flowersort.sorting.sorter import SortRun

    try:
        # a run stopped half-way releases the lock and journal as the with block ends
        with (
            SortRun(model, src, sort, cache=cache, hooks=hooks) as sort_run,
            progress(options["quiet"], desc="classifying", unit="photo", total=total) as bar,
        ):
            seen: list[Outcome] | None = [] if options["report_path"] else None
            model_key = {"model": os.fsdecode(tally.said["model"])}
            shown = tally.counting(sort_run) if tally.listing else sort_run
            as_json, quiet = options["as_json"], options["quiet"]
            run_library(
                show_outcomes, shown, bar, tally.counts, as_json, quiet, seen, sort.copy, model_key
            )
    except click.ClickException:
        if tally.counts:  # what was done before the run stopped
            log.info(summary_line(tally.counts, **tally.said))
        raise
    finally:
        if cache is not None:
            cache.close()
    return seen


def write_report(options: Options, model: Model, seen: list[Outcome]) -> None:
    from flowersort.report import outcome_entries

    report_path, title = options["report_path"], f"flowersort classify {options['src']}"
    entries = outcome_entries(seen)
    write_html(report_path, entries, model, title, options["workers"], options["thumbnails"])
    log.info("report written to %s", report_path)


def tell_borderline(n: int) -> None:
    log.info(
        "%d borderline photo%s left in place: --review-to FOLDER puts them aside for you "
        "to sort by hand (and flowersort learns from how you sort them)",
        n,
        " was" if n == 1 else "s were",
    )
