"""The flowersort command line: parse, call the library, print, map errors to exit codes.

Exit codes (a contract: scripts rely on them):
  0  all done (skipped unreadable files are reported, not failures)
  1  some moves failed
  2  usage, model or configuration error
  3  another run holds the lock
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

from flowersort.archive import display, walk
from flowersort.cache import ScoreCache, default_cache_path
from flowersort.errors import FlowersortError
from flowersort.featcache import default_feature_cache
from flowersort.images import MODES, FeatureConfig
from flowersort.model import default_model_path, load_model, model_digest
from flowersort.train import TrainConfig

DEFAULTS = TrainConfig()

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
EPILOG = "Exit codes: 0 all done, 1 some moves failed, 2 usage/model error, 3 locked."

log = logging.getLogger("flowersort")


class CliError(click.ClickException):
    """A FlowersortError shown as one line, with its own exit code."""

    def __init__(self, error: FlowersortError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


def run_library(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except FlowersortError as e:
        raise CliError(e) from None


def setup_logging(quiet: bool, verbose: bool, log_file: Path | None) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(level)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.DEBUG)
        handlers.append(file_handler)
    log.handlers[:] = handlers
    log.setLevel(logging.DEBUG)
    log.propagate = False


def report_skip(path: Path, reason: str) -> None:
    log.warning("skipped: %s: %s", display(path), reason)


def progress(quiet: bool, **kwargs) -> tqdm:
    """A bar on a terminal; nothing under cron (stderr not a TTY) or with --quiet."""
    return tqdm(disable=True if quiet else None, leave=False, dynamic_ncols=True, **kwargs)


def open_model(path: Path | None):
    return run_library(load_model, path or default_model_path())


def logging_options(fn):
    fn = click.option(
        "--log-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write every message, with times, to this file.",
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


@cli.command(epilog=EPILOG)
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
    "cues; without textures; without edges either; plain hue histograms; or the raw hue "
    "matrix.",
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
    help="Output rows of each tile-net layer.",
)
@click.option(
    "--head-layers",
    default=",".join(map(str, DEFAULTS.head_layers)),
    show_default=True,
    callback=int_list,
    help="Output rows of each head-net layer (must end with 1,1).",
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
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True)
@click.option("--learning-rate", default=DEFAULTS.learning_rate, show_default=True)
@click.option(
    "--val-fraction",
    default=DEFAULTS.val_fraction,
    show_default=True,
    help="Share of the examples in each validation fold, which stops a net's training; "
    "the threshold is chosen on the validation folds.",
)
@click.option(
    "--members",
    default=DEFAULTS.members,
    show_default=True,
    help="Nets trained, each with its own validation fold; the score is their mean. "
    "At most 1 / val-fraction.",
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
    "the held-out folds, else the one with the best F0.5.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
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
    as_json,
    workers,
    quiet,
    verbose,
    log_file,
):
    """Learn flowers from two folders of example photos, FLOWERS and NOFLOWERS.

    Both nets are trained end to end. The examples are cut into folds; each member net
    keeps one fold aside and stops training when its loss there stops improving. The
    decision threshold is chosen on those held-out folds, each photo scored by the net
    that never learnt from it. The model file holds every member; a photo's score is
    their mean probability.
    """
    from flowersort.train import fit, load_examples

    setup_logging(quiet, verbose, log_file)
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
    log.info("%d photos read, %d skipped", len(examples.y), len(examples.skipped))
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
        report_path, entries, model, f"flowersort train: held-out folds ({model_path})", workers
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


@cli.command(epilog=EPILOG)
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


@cli.command(epilog=EPILOG)
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
@model_option
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object a line per photo: {"path", "score", "flower", "action"}.',
)
@click.option(
    "--on-conflict",
    type=click.Choice(["rename", "skip", "dedupe"]),
    default="rename",
    show_default=True,
    help="When a byte-identical copy is already in the target: add it under a new name, "
    "leave it where it is, or remove the source (after a byte compare).",
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
    help="Skip files and folders matching GLOB; may be repeated.",
)
@workers_option
@logging_options
def classify(
    src,
    move_to,
    copy_to,
    dry_run,
    model_path,
    threshold,
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
    last run's moves back. Only one moving run at a time (exit 3 otherwise).
    """
    from flowersort.sorter import classify as run_classify

    setup_logging(quiet, verbose, log_file)
    if move_to and copy_to:
        raise click.UsageError("use either --move-to or --copy-to, not both")
    dest = move_to or copy_to
    model_file = model_path or default_model_path()
    model = open_model(model_file)
    cache = (
        None
        if no_cache
        else ScoreCache(cache_path or default_cache_path(), model_digest(model_file))
    )
    counts: Counter = Counter()
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
    )
    total = None
    if not quiet and sys.stderr.isatty():  # a terminal: count first, for the bar's ETA
        total = sum(
            1
            for _ in walk(
                src,
                prune=[dest] if dest else [],
                include_hidden=include_hidden,
                follow_symlinks=follow_symlinks,
                exclude=exclude,
            )
        )
    try:
        with progress(quiet, desc="classifying", unit="photo", total=total) as bar:
            seen = [] if report_path else None
            run_library(show_outcomes, outcomes, bar, counts, as_json, quiet, seen)
    finally:
        if cache is not None:
            cache.close()
    if report_path:
        from flowersort.report import Entry

        moved = ("moved", "deduplicated")
        entries = [
            Entry(
                os.fspath(o.path),
                o.score,
                o.flower,
                o.action,
                o.detail,
                shown_from=o.detail if o.action in moved else None,
            )
            for o in seen
        ]
        write_html(report_path, entries, model, f"flowersort classify {src}", workers)
        log.info("report written to %s", report_path)
    log.info(summary_line(counts))
    if counts["failed"]:
        sys.exit(EXIT_FAILED)


def write_html(path: Path, entries, model, title: str, workers: int | None) -> None:
    from flowersort.pipeline import default_workers
    from flowersort.report import write_report

    write_report(path, entries, model, title, workers or default_workers())


def summary_line(counts: Counter) -> str:
    """'12 photos: 3 moved, 0 copied, 9 kept, 1 skipped, 0 failed': the counts always shown,
    the others when they happened."""
    always = ("moved", "copied", "skipped", "failed")
    order = (
        "moved",
        "copied",
        "deduplicated",
        "would-move",
        "would-copy",
        "restored",
        "removed-copy",
        "kept",
        "skipped",
        "failed",
    )
    parts = [f"{counts[k]} {k.replace('-', ' ')}" for k in order if counts[k] or k in always]
    return f"{sum(counts.values())} photos: " + ", ".join(parts)


@cli.command(epilog=EPILOG)
@click.option("--wait", is_flag=True, help="Wait for another run to finish instead of exit 3.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line per photo.")
@logging_options
def undo(wait, as_json, quiet, verbose, log_file):
    """Put the photos moved by the last classify run back where they were.

    Source folders are recreated; a photo whose old place has been taken by a new file
    since is left where it is and reported as failed. Copies made with --copy-to are
    removed, but only while their originals are still there, unchanged.
    """
    from flowersort.sorter import undo as run_undo

    setup_logging(quiet, verbose, log_file)
    counts: Counter = Counter()
    with progress(quiet, desc="undoing", unit="photo") as bar:
        run_library(show_outcomes, run_undo(wait), bar, counts, as_json, quiet)
    log.info(summary_line(counts))
    if counts["failed"]:
        sys.exit(EXIT_FAILED)


def show_outcomes(outcomes, bar, counts: Counter, as_json: bool, quiet: bool, seen=None) -> None:
    """Print each photo's outcome as it streams in: JSON or a line on stdout (none with
    --quiet), skips and failures on stderr; keep them in `seen` for a report."""
    for o in outcomes:
        if seen is not None:
            seen.append(o)
        bar.update(1)
        counts[o.action] += 1
        if as_json:
            click.echo(json.dumps(o.to_json()))
        elif o.action == "skipped":
            report_skip(o.path, o.detail)
        elif o.action == "failed":
            log.error("failed: %s: %s", display(o.path), o.detail)
        elif o.action == "kept" and o.flower and not quiet:  # no target folder: list them
            click.echo(f"flower: {display(o.path)} ({o.score:.3f})")
        elif o.action == "kept":
            log.debug("kept: %s (score %.3f)", display(o.path), o.score)
        elif quiet:
            pass
        elif o.score is None:  # undo: the photo goes back from detail to path
            verb = o.action.replace("-", " ")
            click.echo(f"{verb}: {display(o.detail)} -> {display(o.path)}")
        else:
            verb = o.action.replace("-", " ")
            click.echo(f"{verb}: {display(o.path)} -> {display(o.detail)} ({o.score:.3f})")
        if as_json and o.action in ("skipped", "failed"):
            log.warning("%s: %s: %s", o.action, display(o.path), o.detail)


def main() -> None:
    cli()
