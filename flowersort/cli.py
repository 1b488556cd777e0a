"""The flowersort command line: parse, call the library, print, map errors to exit codes.

Exit codes (a contract: scripts rely on them):
  0  all done (skipped unreadable files are reported, not failures)
  1  some moves failed (or were not attempted: the target was full)
  2  usage, model or configuration error
  3  another run holds the lock
  4  the run stopped on an unexpected error (a bug, not a bad photo; --verbose shows where)
  130, 143  stopped by Ctrl-C (SIGINT) or SIGTERM (`kill PID`): classify and undo finish
            the photo in hand, start no other, stop the workers and print the summary
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

from flowersort import safefs
from flowersort.archive import VIDEO_SUFFIXES, display, walk
from flowersort.cache import ScoreCache, default_cache_path
from flowersort.corrections import DEFAULT_REVIEW_BAND
from flowersort.errors import CacheError, FlowersortError, StateError, UnexpectedError
from flowersort.featcache import default_feature_cache
from flowersort.heic import MISSING as HEIC_MISSING
from flowersort.images import MODES, FeatureConfig
from flowersort.model import default_model_path, load_model, model_digest
from flowersort.train import TrainConfig

DEFAULTS = TrainConfig()

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_BUG = 0, 1, 2, 3, 4
EPILOG = (
    "Exit codes: 0 all done, 1 some moves failed, 2 usage/model/state error, 3 locked, "
    "4 stopped by an unexpected error, 130/143 stopped by SIGINT/SIGTERM (the photo in "
    "hand finished, no other started)."
)
# each command lists the exit codes it can give
EXIT_CODES = {
    "train": "Exit codes: 0 model written, 2 usage, model or training-data error, "
    "4 stopped by an unexpected error.",
    "evaluate": "Exit codes: 0 done, 2 usage, model or data error, 4 stopped by an "
    "unexpected error.",
    "classify": "Exit codes: 0 all done (skipped unreadable files are reported, not failures), "
    "1 some moves failed or were not attempted (a full target), 2 usage, model, "
    "configuration or state error, 3 another run holds the lock, 4 stopped by an unexpected "
    "error, 130/143 stopped by SIGINT/SIGTERM (the photo in hand finished, no other started).",
    "undo": "Exit codes: 0 all put back, 1 some photos could not go back, 2 usage or state "
    "error, or nothing to undo, 3 another run holds the lock, 130/143 stopped by "
    "SIGINT/SIGTERM.",
}

log = logging.getLogger("flowersort")
once_per_run: Counter = Counter()  # skip reasons said once, in the summary, not per file


class CliError(click.ClickException):
    """A FlowersortError shown as one line, with its own exit code."""

    def __init__(self, error: FlowersortError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class OneLineUsageError(click.ClickException):
    """A usage problem shown as one line with exit 2 (click's UsageError adds the usage)."""

    exit_code = EXIT_USAGE


def run_library(fn, *args, **kwargs):
    """Call the library; any error becomes one line and its exit code. Only FlowersortError
    is expected: anything else is a bug, whose traceback goes to the debug log."""
    try:
        return fn(*args, **kwargs)
    except UnexpectedError as e:
        log.debug("%s", e.details)
        raise CliError(e) from None
    except FlowersortError as e:
        raise CliError(e) from None
    except Exception as e:
        log.debug("%s", "".join(traceback.format_exception(e)))
        raise CliError(UnexpectedError(f"unexpected {type(e).__name__}: {e}")) from None


class Interrupted:
    """SIGINT (Ctrl-C) and SIGTERM (`kill PID`) while a command moves photos: remembered,
    not raised, so the move in hand is finished; the library asks before each photo and
    starts no other, and the command exits 128 + the signal's number."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def _note(self, signum, frame) -> None:
        self.signum = signum

    @classmethod
    def install(cls) -> Interrupted:
        """Catch the signals until the command ends (click's context closes)."""
        self = cls()
        previous = {s: signal.signal(s, self._note) for s in cls.SIGNALS}

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        click.get_current_context().call_on_close(restore)
        return self

    def exit_if_stopped(self) -> None:
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            log.warning("stopped by %s: the photos above are done; no other was started", name)
            sys.exit(128 + self.signum)


# log records with this extra go to the log file only: their text is already on stdout
FILE_ONLY = {"file_only": True}


def setup_logging(quiet: bool, verbose: bool, log_file: Path | None) -> None:
    """Messages on stderr by --quiet/--verbose. The log file gets, with times, every
    move, copy, dedupe and undo (INFO, even under --quiet), warnings and errors, and the
    photos kept only with --verbose."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handlers: list[logging.Handler] = [BarSafeHandler(sys.stderr)]
    handlers[0].setLevel(level)
    handlers[0].addFilter(lambda record: not getattr(record, "file_only", False))
    if log_file:
        file_handler = open_log_file(log_file)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(file_handler)
    log.handlers[:] = handlers
    log.setLevel(logging.DEBUG)
    log.propagate = False
    once_per_run.clear()


class BarSafeHandler(logging.StreamHandler):
    """Writes through tqdm: on a terminal the bar is cleared, the message written, the bar
    drawn again below it, so no message lands in the middle of the bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def say(line: str) -> None:
    """A line on stdout, written through the bar like the messages on stderr."""
    tqdm.write(line, file=sys.stdout)


def open_log_file(path: Path) -> logging.FileHandler:
    """Append to the log file, creating its folder (cron's $HOME/.cache may not exist
    yet); a path that cannot be written is one line and exit 2."""
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            pass  # a file in the way: opening the log says "Not a directory"
        return logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        message = f"cannot write the log file {display(path)}: {e.strerror or e}"
        raise OneLineUsageError(message) from None


def report_skip(path: Path, reason: str) -> None:
    if reason == HEIC_MISSING:  # the same remedy for every file: a line each unless --quiet
        once_per_run[reason] += 1
        log.info("skipped: %s: %s", display(path), reason)
        return
    log.warning("skipped: %s: %s", display(path), reason)


def report_once_per_run() -> None:
    """'12 photos skipped: HEIC/HEIF photo: pillow-heif is not installed (...)'."""
    for reason, n in once_per_run.items():
        log.warning("%d photo%s skipped: %s", n, "" if n == 1 else "s", reason)


def progress(quiet: bool, **kwargs) -> tqdm:
    """A bar on a terminal; nothing under cron (stderr not a TTY) or with --quiet."""
    return tqdm(disable=True if quiet else None, leave=False, dynamic_ncols=True, **kwargs)


def open_model(path: Path | None):
    return run_library(load_model, path or default_model_path())


def logging_options(fn):
    fn = click.option(
        "--log-file",
        type=click.Path(path_type=Path),
        help="Also write, with times, every move, copy and undo (from -> to, with "
        "sidecars), warnings and errors to this file, even with --quiet; kept photos only "
        "with --verbose. Its folder is created.",
    )(fn)
    fn = click.option("-v", "--verbose", is_flag=True, help="Say more, e.g. every photo kept.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no bar.")(fn)
    return fn


model_option = click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="Model file (.npz). Default: the model shipped with flowersort.",
)
report_option = click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML contact sheet with the network's heat map.",
)
workers_option = click.option(
    "--workers", type=click.IntRange(1), help="Processes decoding photos. Default: one per core."
)


def int_list(ctx, param, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter("expected numbers separated by commas, e.g. 16,4,1") from None


@click.group(epilog=EPILOG)
@click.version_option(package_name="flowersort")
def cli() -> None:
    """Find the flower photos in a photo archive and move them into a folder.

    Teach it with two folders of examples (train), check it (evaluate), then let it sort
    an archive (classify). Start with classify --dry-run: it shows the plan and touches
    nothing.
    """


@cli.command(epilog=EXIT_CODES["train"])
@click.argument("flowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("noflowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="model.npz",
    show_default=True,
    help="Where to write the model.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=MODES[0],
    show_default=True,
    help="Network input per tile: hue histograms split by saturation, the brightness of "
    "grey pixels, the directions of brightness edges, brightness textures and subject cues "
    "(sharpness, saturation and their contrast with the border tiles); the same without "
    "cues; without textures; without edges either; plain hue histograms; the raw hue "
    "matrix; or the first with four more cues (two tile scales, brightness against the "
    "border).",
)
@click.option(
    "--image-size",
    default=FeatureConfig.image_size,
    show_default=True,
    help="Photos are shrunk to this many pixels a side.",
)
@click.option(
    "--grid", default=FeatureConfig.grid, show_default=True, help="Tiles per side of the tile map."
)
@click.option(
    "--bins",
    default=FeatureConfig.bins,
    show_default=True,
    help="Bins of each per-tile histogram (histogram modes; at least 10 with textures).",
)
@click.option(
    "--tile-layers",
    default=",".join(map(str, DEFAULTS.tile_layers)),
    show_default=True,
    callback=int_list,
    help="The tile net, which turns each tile's matrix of histograms (bins x columns) into "
    "the few numbers of the tile map: one number per layer, the rows it makes. Each layer "
    "mixes one side of the matrix and turns it, so 16,4,1 on a 12 x 5 tile gives 5 x 16, "
    "then 16 x 4, then 4 x 1: 4 numbers per tile.",
)
@click.option(
    "--head-layers",
    default=",".join(map(str, DEFAULTS.head_layers)),
    show_default=True,
    callback=int_list,
    help="The head net over the tile map (tiles x numbers per tile), in the same way: "
    "8,1,1 on a 36 x 4 map gives 4 x 8, then 8 x 1, then the score's 1 x 1 (so it must "
    "end with 1,1).",
)
@click.option(
    "--epochs", default=DEFAULTS.epochs, show_default=True, help="Most passes over the data."
)
@click.option(
    "--patience",
    default=DEFAULTS.patience,
    show_default=True,
    help="Stop after this many epochs without a better validation loss.",
)
@click.option(
    "--batch-size",
    default=DEFAULTS.batch_size,
    show_default=True,
    help="Photos per training step (one weight update).",
)
@click.option(
    "--learning-rate",
    default=DEFAULTS.learning_rate,
    show_default=True,
    help="Step size of the optimiser (Adam): larger learns faster but less steadily.",
)
@click.option(
    "--val-fraction",
    default=DEFAULTS.val_fraction,
    show_default=True,
    help="Share of the examples in the validation fold, which stops the nets' training; "
    "the threshold is chosen on it.",
)
@click.option(
    "--members",
    default=DEFAULTS.members,
    show_default=True,
    help="Nets trained, each from its own seed; the score is their mean.",
)
@click.option(
    "--seed", default=DEFAULTS.seed, show_default=True, help="Same data and seed: same model."
)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="Random left-right flips, crops and small hue shifts while training.",
)
@click.option(
    "--crops",
    default=DEFAULTS.crops,
    show_default=True,
    type=click.IntRange(0),
    help="Augmented copies read per photo (random crops with small hue shifts).",
)
@click.option(
    "--flower-share",
    default=DEFAULTS.flower_share,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Share of flower photos in the archives the model is meant for: the threshold is "
    "chosen for the precision it would have there.",
)
@click.option(
    "--min-precision",
    default=DEFAULTS.min_precision,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="The threshold is the lowest whose precision reaches this (at --flower-share) on "
    "the held-out fold, else the one with the best F0.5.",
)
@click.option(
    "--feature-cache",
    "feature_cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of features remembered between training runs. "
    "Default: $XDG_CACHE_HOME/flowersort/features.",
)
@click.option("--no-feature-cache", is_flag=True, help="Decode every photo; remember no features.")
@click.option(
    "--freeze-tile-net",
    is_flag=True,
    help="Leave the tile net random and train only the head (the original design).",
)
@click.option(
    "--review-band",
    default=DEFAULT_REVIEW_BAND,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Saved in the model: classify calls scores this close to the threshold borderline "
    "(sent to --review-to, else left in place).",
)
@click.option(
    "--with-corrections",
    is_flag=True,
    help="Also learn from your corrections (see 'flowersort corrections'): photos you took "
    "out of the target folder as not flowers, photos you put into it as flowers.",
)
@click.option(
    "--marks",
    "marks_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A marks file saved from a report's 'save marks' button; may be repeated. The "
    "marks are also kept as corrections.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
@click.option("--force", is_flag=True, help="Replace the model file if it exists.")
@workers_option
@logging_options
def train(
    flowers,
    noflowers,
    model_path,
    mode,
    image_size,
    grid,
    bins,
    tile_layers,
    head_layers,
    epochs,
    patience,
    batch_size,
    learning_rate,
    val_fraction,
    members,
    seed,
    augment,
    crops,
    flower_share,
    min_precision,
    feature_cache,
    no_feature_cache,
    freeze_tile_net,
    review_band,
    with_corrections,
    marks_files,
    as_json,
    force,
    workers,
    quiet,
    verbose,
    log_file,
):
    """Learn flowers from two folders of example photos, FLOWERS and NOFLOWERS.

    Both nets are trained end to end. The examples are cut into folds; one fold is kept
    aside from every member net, each stops training when its loss there stops improving,
    and the decision threshold is chosen on that fold as the model scores it (the mean of
    the members, none of which learnt from it). The model file holds every member; a
    photo's score is their mean probability.
    """
    from flowersort.train import check_example_folders, fit, load_examples

    setup_logging(quiet, verbose, log_file)
    if model_path.exists() and not force:
        message = f"{display(model_path)} exists: use --force to replace it, or another --model"
        raise OneLineUsageError(message)
    run_library(check_example_folders, flowers, noflowers)
    try:
        feature_cfg = FeatureConfig(mode=mode, image_size=image_size, grid=grid, bins=bins)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            val_fraction=val_fraction,
            members=members,
            augment=augment,
            crops=crops,
            seed=seed,
            flower_share=flower_share,
            min_precision=min_precision,
            tile_layers=tile_layers,
            head_layers=head_layers,
            train_tile_net=not freeze_tile_net,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with progress(quiet, desc="reading photos", unit="photo") as bar:
        examples = run_library(
            load_examples,
            flowers,
            noflowers,
            feature_cfg,
            report_skip,
            workers,
            on_photo=lambda: bar.update(1),
            copies=cfg.copies,
            cache_folder=None if no_feature_cache else feature_cache or default_feature_cache(),
        )
    if with_corrections or marks_files:
        examples, corrected = run_library(
            add_corrections,
            examples,
            list(marks_files),
            with_corrections,
            feature_cfg,
            cfg.copies,
            workers,
        )
    log.info("%d photos read, %d skipped", len(examples.y), len(examples.skipped))
    report_once_per_run()
    with progress(quiet, total=epochs * members, desc="training", unit="epoch") as bar:

        def on_epoch(epoch, stats):
            bar.update(1)
            bar.set_postfix(
                net=f"{stats['member'] + 1}/{members}",
                loss=f"{stats['loss']:.3f}",
                val_acc=f"{stats['val_acc']:.3f}",
            )

        try:
            model, fitted = run_library(
                fit,
                examples.x,
                examples.y,
                feature_cfg,
                cfg,
                on_epoch,
                examples.augmented,
                workers,
            )
        except AssertionError as e:
            raise click.UsageError(f"bad network shape: {e}") from None
    model.summary["skipped"] = len(examples.skipped)
    model.summary["review_band"] = review_band
    if with_corrections or marks_files:
        model.summary["corrections"] = corrected
    model.save(model_path)
    from flowersort.report import Entry

    report_path = model_path.with_name(model_path.stem + ".validation.html")
    entries = [
        Entry(
            examples.paths[i],
            float(s),
            bool(s >= model.threshold),
            "validation",
            truth=bool(examples.y[i] > 0.5),
        )
        for i, s in zip(fitted["val_idx"], fitted["val_scores"])
    ]
    write_html(
        report_path, entries, model, f"flowersort train: held-out fold ({model_path})", workers
    )
    val = model.summary["validation"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model_path),
                    "report": str(report_path),
                    "threshold": model.threshold,
                    **model.summary,
                }
            )
        )
    else:
        click.echo(
            f"model written to {model_path}: validation accuracy {val['accuracy']:.3f}, "
            f"F1 {val['f1']:.3f}, threshold {model.threshold:.3f}, "
            f"{members} nets, {model.summary['epochs_run']} epochs, "
            f"{model.summary['seconds']} s"
        )
        click.echo(f"validation report written to {report_path}")


@cli.command(epilog=EXIT_CODES["evaluate"])
@click.argument("flowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("noflowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--sweep", is_flag=True, help="Also show precision and recall at several thresholds.")
@click.option("--by-folder", is_flag=True, help="Also show the errors per sub-folder.")
@report_option
@workers_option
@logging_options
def evaluate(
    flowers,
    noflowers,
    model_path,
    threshold,
    as_json,
    sweep,
    by_folder,
    report_path,
    workers,
    quiet,
    verbose,
    log_file,
):
    """Measure the model on labelled folders FLOWERS and NOFLOWERS.

    Prints accuracy, precision, recall, F1, the confusion counts and the misclassified
    files.
    """
    from flowersort.evaluate import evaluate as run_evaluation

    setup_logging(quiet, verbose, log_file)
    model = open_model(model_path)
    result = run_library(run_evaluation, model, flowers, noflowers, threshold, workers, report_skip)
    report_once_per_run()
    if report_path:
        write_html(
            report_path,
            result.report_entries(),
            model,
            f"flowersort evaluate {flowers} {noflowers}",
            workers,
        )
        log.info("report written to %s", report_path)
    m = result.metrics()
    wrong = result.misclassified()
    if as_json:
        out = {
            **m,
            "misclassified": wrong,
            "threshold": result.threshold,
            "skipped": len(result.skipped),
        }
        if sweep:
            out["sweep"] = result.sweep()
        if by_folder:
            out["by_folder"] = result.by_folder()
        click.echo(json.dumps(out))
        return
    click.echo(
        f"accuracy {m['accuracy']:.3f}  precision {m['precision']:.3f}  "
        f"recall {m['recall']:.3f}  F1 {m['f1']:.3f}  (threshold {result.threshold:.3f})"
    )
    click.echo(
        f"tp {m['tp']}  fp {m['fp']}  tn {m['tn']}  fn {m['fn']}  skipped {len(result.skipped)}"
    )
    if sweep:
        click.echo("threshold  precision  recall  accuracy")
        for row in result.sweep():
            click.echo(
                f"{row['threshold']:9.2f}  {row['precision']:9.3f}  {row['recall']:6.3f}"
                f"  {row['accuracy']:8.3f}"
            )
    if by_folder:
        for folder, row in result.by_folder().items():
            click.echo(f"{folder}: {row['errors']} wrong of {row['n']}")
    for row in wrong:
        kind = "missed flower" if row["flower"] else "false flower"
        click.echo(f"{kind}: {display(row['path'])} (score {row['score']:.3f})")


@cli.command(epilog=EXIT_CODES["classify"])
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
    f"setting, else {DEFAULT_REVIEW_BAND}; none with --threshold; 0 turns the band off.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object a line per photo: {"path", "score", "flower", "action", "detail", '
    '"sidecars", "note"}; detail is where the photo went (or why it was skipped or failed), '
    "note what the decoder said (a photo decoded in part).",
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
    "('2020/*', 'Screenshots', '*.png'; '/...' matches the absolute path); may be repeated.",
)
@workers_option
@logging_options
def classify(
    src,
    move_to,
    copy_to,
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
    """
    from flowersort.sorter import classify as run_classify

    setup_logging(quiet, verbose, log_file)
    interrupted = Interrupted.install()
    if move_to and copy_to:
        raise click.UsageError("use either --move-to or --copy-to, not both")
    dest = move_to or copy_to
    if review_to and not dest:
        raise click.UsageError("--review-to needs --move-to or --copy-to")
    if review_to and os.path.realpath(review_to) == os.path.realpath(dest):
        raise click.UsageError("--review-to must be another folder than the target")
    model_file = model_path or default_model_path()
    model = open_model(model_file)
    cache = None
    if not no_cache:
        try:
            cache = ScoreCache(cache_path or default_cache_path(), model_digest(model_file))
        except StateError as e:  # no HOME, or a cache that cannot be used
            if dest is not None and not dry_run:
                hint = " (--no-cache runs without one)" if isinstance(e, CacheError) else ""
                raise CliError(StateError(f"{e}{hint}")) from None
            log.warning("warning: %s; running without the score cache", e)  # a plan needs no state
    counts: Counter = Counter()
    passed_over: Counter = Counter()  # videos and RAW files, by suffix
    outcomes = run_classify(
        model,
        src,
        dest,
        threshold=threshold,
        dry_run=dry_run,
        copy=copy_to is not None,
        follow_symlinks=follow_symlinks,
        include_hidden=include_hidden,
        exclude=exclude,
        workers=workers,
        on_conflict=on_conflict,
        wait=wait,
        cache=cache,
        thumbnail=thumbnails,
        review=review_to,
        review_band=review_band,
        stop=interrupted,
        keep_structure=keep_structure,
        on_passed_over=lambda path: passed_over.update([os.path.splitext(path)[1].lower()]),
    )
    total = None
    if not quiet and sys.stderr.isatty():  # a terminal: count first, for the bar's ETA
        total = sum(
            1
            for _ in walk(
                src,
                prune=[p for p in (dest, review_to) if p],
                include_hidden=include_hidden,
                follow_symlinks=follow_symlinks,
                exclude=exclude,
            )
        )
    try:
        with progress(quiet, desc="classifying", unit="photo", total=total) as bar:
            seen = [] if report_path else None
            run_library(show_outcomes, outcomes, bar, counts, as_json, quiet, seen)
    except click.ClickException:
        if counts:  # what was done before the run stopped
            log.info(summary_line(counts))
        raise
    finally:
        if cache is not None:
            cache.close()
    if report_path:
        from flowersort.report import Entry

        moved = ("moved", "deduplicated", "review")
        entries = [
            Entry(
                os.fspath(o.path),
                o.score,
                o.flower,
                o.action,
                "; ".join(filter(None, [o.detail, o.note])),
                shown_from=o.detail if o.action in moved else None,
            )
            for o in seen
        ]
        write_html(report_path, entries, model, f"flowersort classify {src}", workers)
        log.info("report written to %s", report_path)
    log.info(summary_line(counts, passed_over))
    report_once_per_run()
    interrupted.exit_if_stopped()
    if counts["failed"] or counts["not-attempted"]:
        sys.exit(EXIT_FAILED)


def add_corrections(
    examples, marks_files, stored: bool, feature_cfg, copies, workers
) -> tuple[object, dict]:
    """The training examples with the user's corrections and marks folded in."""
    from flowersort.corrections import Store, training_examples, with_corrections

    store = Store()
    try:
        found = training_examples(store, marks_files, report_skip, stored=stored)
    finally:
        store.close()
    flowers = sum(e.label == "flower" for e in found)
    counts = {"flowers": flowers, "noflowers": len(found) - flowers}
    log.info("corrections: %d flowers, %d not flowers", flowers, len(found) - flowers)
    return with_corrections(examples, found, feature_cfg, report_skip, workers, copies), counts


def write_html(path: Path, entries, model, title: str, workers: int | None) -> None:
    from flowersort.pipeline import default_workers
    from flowersort.report import write_report

    write_report(path, entries, model, title, workers or default_workers())


def summary_line(counts: Counter, passed_over: Counter | None = None) -> str:
    """'12 photos: 3 moved, 0 copied, 9 kept, 1 skipped, 0 failed': the counts always shown,
    the others when they happened; then the videos and RAW files passed over (counted by
    suffix), if any: '; 2 videos, 1 RAW file passed over'."""
    always = ("moved", "copied", "skipped", "failed")
    order = (
        "moved",
        "copied",
        "deduplicated",
        "already-there",
        "would-move",
        "would-copy",
        "review",
        "would-review",
        "borderline",
        "vetoed",
        "restored",
        "removed-copy",
        "would-restore",
        "would-remove-copy",
        "kept",
        "skipped",
        "failed",
        "not-attempted",
    )
    words = {"vetoed": "kept by your earlier choice", "review": "for review"}
    parts = [
        f"{counts[k]} {words.get(k, k.replace('-', ' '))}"
        for k in order
        if counts[k] or k in always
    ]
    line = f"{sum(counts.values())} photos: " + ", ".join(parts)
    if passed_over:
        videos = sum(n for suffix, n in passed_over.items() if suffix in VIDEO_SUFFIXES)
        raws = sum(passed_over.values()) - videos
        kinds = [
            f"{n} {kind}{'' if n == 1 else 's'}"
            for n, kind in ((videos, "video"), (raws, "RAW file"))
            if n
        ]
        line += f"; {', '.join(kinds)} passed over"
    return line


@cli.command(epilog=EXIT_CODES["undo"])
@click.argument("run", type=click.IntRange(1), required=False)
@click.option("--list", "list_runs", is_flag=True, help="List the runs that can be undone.")
@click.option("--dry-run", is_flag=True, help="Say what would be put back; touch nothing.")
@click.option("--wait", is_flag=True, help="Wait for another run to finish instead of exit 3.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object a line per photo (with --list: per run, with the keys run, kind, "
    "started, photos, state, src, dest).",
)
@logging_options
def undo(run, list_runs, dry_run, wait, as_json, quiet, verbose, log_file):
    """Put the photos moved by the last classify run (or by run RUN) back where they were.

    Source folders are recreated; a photo whose old place has been taken by a new file
    since is left where it is and reported as failed. Copies made with --copy-to are
    removed, but only while their originals are still there, unchanged. Folders the run
    created (such as the target) are removed when undo leaves them empty. Undoing the
    last run twice is an error: name an earlier run (see --list) to undo it too. Ctrl-C or
    SIGTERM finish the photo in hand and stop (exit 130 or 143).
    """
    from flowersort.sorter import undo as run_undo

    setup_logging(quiet, verbose, log_file)
    if list_runs:
        if run is not None or dry_run:
            raise click.UsageError("--list takes no RUN and no --dry-run")
        show_runs(as_json)
        return
    interrupted = Interrupted.install()
    counts: Counter = Counter()
    try:
        with progress(quiet, desc="undoing", unit="photo") as bar:
            outcomes = run_undo(wait, run_id=run, dry_run=dry_run, stop=interrupted)
            run_library(show_outcomes, outcomes, bar, counts, as_json, quiet)
    except click.ClickException:
        if counts:  # what was done before the run stopped
            log.info(summary_line(counts))
        raise
    log.info(summary_line(counts))
    interrupted.exit_if_stopped()
    if counts["failed"]:
        sys.exit(EXIT_FAILED)


def show_runs(as_json: bool) -> None:
    """undo --list: one line per run that moved photos, oldest first."""
    from flowersort.sorter import list_runs

    runs = run_library(list_runs)
    if as_json:
        for info in runs:
            click.echo(json.dumps(info.to_json()))
        return
    if not runs:
        log.info("no run has moved photos")
        return
    click.echo(f"{'run':>5}  {'started':19}  kind  {'photos':>6}  {'state':11}  from -> to")
    for info in runs:
        row = info.to_json()
        click.echo(
            f"{info.id:5d}  {row['started']}  {row['kind']:4}  {info.photos:6d}  "
            f"{info.state:11}  {display(info.src or '')} -> {display(info.dest or '')}"
        )


# actions that changed files: each is logged (to the log file) with where it went
LOGGED_ACTIONS = ("moved", "copied", "deduplicated", "review", "restored", "removed-copy")


def outcome_line(o) -> str:
    """'moved: SRC -> DST (0.912) + .xmp, .CR2': a move, copy or plan with its sidecars
    (their names follow the photo's final name); for undo, where the photo went back."""
    verb = o.action.replace("-", " ")
    extras = ""
    if o.sidecars:
        beside = o.path if o.score is None else o.detail  # the photo the sidecars are with
        stem = len(safefs.split_name(os.path.basename(beside))[0])
        extras = " + " + ", ".join(display(os.path.basename(s)[stem:]) for s in o.sidecars)
    if o.score is None:  # undo: the photo goes back from detail to path
        return f"{verb}: {display(o.detail)} -> {display(o.path)}{extras}"
    return f"{verb}: {display(o.path)} -> {display(o.detail)} ({o.score:.3f}){extras}"


@cli.group(epilog=EPILOG)
def corrections() -> None:
    """What flowersort learnt from you, kept by content (size and SHA-256).

    A photo flowersort moved into the target that you took back out, under any name and
    into any folder, is never moved again (a non-flower example for train
    --with-corrections); a photo you put into the target yourself, or sorted from the
    review folder into it, is a flower example. They live in corrections.sqlite beside the
    journal ($XDG_STATE_HOME/flowersort).
    """


@corrections.command("list", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line per correction.")
def list_corrections(as_json):
    """List every correction: label, how it was learnt, where the photo was last seen."""
    from flowersort.corrections import KIND_TEXT, Store, weak_confirmations

    store = run_library(Store, dry_run=True)  # read only: listing writes nothing
    try:
        rows, weak = store.corrections(), sum(1 for _ in weak_confirmations(store))
    finally:
        store.close()
    for c in rows:
        if as_json:
            click.echo(json.dumps(c.to_json()))
        else:
            click.echo(f"{c.label}: {display(c.path)} ({KIND_TEXT[c.kind]}, {c.sha256[:12]})")
    if not as_json:
        vetoes = sum(c.label == "not-flower" for c in rows)
        click.echo(
            f"{len(rows)} corrections: {vetoes} not flowers, {len(rows) - vetoes} flowers; "
            f"{weak} photos moved by flowersort left in the target for 14 days or more"
        )


@corrections.command(epilog=EPILOG)
@click.argument("target")
def forget(target):
    """Forget the correction for TARGET: a photo (found by content) or a SHA-256 prefix.

    A forgotten veto lets the photo be moved again on the next run.
    """
    from flowersort.corrections import Store, find

    store = run_library(Store)
    try:
        found = run_library(find, store, target)
        if not found:
            raise CliError(FlowersortError(f"no correction for {target}"))
        if len(found) > 1:
            raise CliError(FlowersortError(f"{target} matches {len(found)} corrections"))
        store.forget(found[0].key)
    finally:
        store.close()
    click.echo(f"forgot: {found[0].label}: {display(found[0].path)}")


def show_outcomes(outcomes, bar, counts: Counter, as_json: bool, quiet: bool, seen=None) -> None:
    """Print each photo's outcome as it streams in: JSON or a line on stdout (none with
    --quiet), skips and failures on stderr; every move also goes to the log file; keep
    them in `seen` for a report."""
    for o in outcomes:
        if seen is not None:
            seen.append(o)
        bar.update(1)
        counts[o.action] += 1
        if o.action in LOGGED_ACTIONS:
            log.info(outcome_line(o), extra=FILE_ONLY)
        if o.note:
            log.info("note: %s: %s", display(o.path), o.note)
        if as_json:
            say(json.dumps(o.to_json()))
        elif o.action == "skipped":
            report_skip(o.path, o.detail)
        elif o.action in ("failed", "not-attempted"):
            log.error("%s: %s: %s", o.action.replace("-", " "), display(o.path), o.detail)
        elif o.action == "kept" and o.flower and not quiet:  # no target folder: list them
            say(f"flower: {display(o.path)} ({o.score:.3f})")
        elif o.action in ("kept", "vetoed"):
            log.debug("%s: %s (score %.3f)", o.action, display(o.path), o.score)
        elif o.action == "already-there":  # every night for every photo: only with -v
            log.debug("already there: %s = %s", display(o.path), display(o.detail))
        elif o.action == "borderline" and not quiet:
            say(f"borderline, left for you: {display(o.path)} ({o.score:.3f})")
        elif quiet:
            pass
        else:
            say(outcome_line(o))
        if as_json and o.action == "skipped":
            report_skip(o.path, o.detail)
        elif as_json and o.action in ("failed", "not-attempted"):
            log.warning("%s: %s: %s", o.action, display(o.path), o.detail)


def main() -> None:
    cli()
