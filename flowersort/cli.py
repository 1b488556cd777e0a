"""The flowersort command line: parse, call the library, print, map errors to exit codes
(the table is errors.EXIT_MEANING; each command's --help lists its own)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import shlex
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from flowersort import safefs
from flowersort.base import rights
from flowersort.base.errors import (
    EXIT_MEANING,
    ExitCode,
    FlowersortError,
    UnexpectedError,
    exit_codes_text,
)
from flowersort.base.outcomes import Action, Outcome, counted
from flowersort.model.features import MODES, FeatureConfig
from flowersort.model.file import default_model_path, load_model
from flowersort.model.metrics import DEFAULT_REVIEW_BAND
from flowersort.photos.archive import VIDEO_SUFFIXES, display
from flowersort.photos.heic import MISSING as HEIC_MISSING
from flowersort.scoring.cache import open_score_cache
from flowersort.training.featcache import default_feature_cache
from flowersort.training.train import TrainConfig

DEFAULTS = TrainConfig()

# the exit codes each command can give
COMMAND_EXIT_CODES = {
    "train": ("0", "2", "4", "130/143"),
    "evaluate": ("0", "2", "4", "130/143"),
    "classify": ("0", "1", "2", "3", "4", "5", "6", "130/143", "141"),
    "undo": ("0", "1", "2", "3", "4", "6", "130/143", "141"),
    "ask": ("0", "1", "2", "3", "4", "5", "130/143", "141"),
    "adapt": ("0", "2", "4", "130/143"),
}
ALL_EXIT_CODES = exit_codes_text(tuple(EXIT_MEANING))
CORRECTIONS_EXIT_CODES = exit_codes_text(("0", "2", "4"), "corrections")

log = logging.getLogger("flowersort")
# (what happened, why) said once, in the summary, not per file: skips with one remedy,
# and what to do about photos not moved as private by their folder
once_per_run: Counter[tuple[str, str]] = Counter()
PRIVATE_BY_FOLDER = (
    "their folders keep other people out, and the target would let them read them: sort "
    "them into a folder only you can open (chmod 700 it first) or onto a stick mounted with "
    "umask=077"
)


class CliError(click.ClickException):
    """A FlowersortError shown as one line, with its own exit code."""

    def __init__(self, error: FlowersortError):
        super().__init__(str(error))
        # click declares exit_code on the class and reads it from the instance
        self.exit_code = error.exit_code  # type: ignore[misc, unused-ignore]


class PipeClosed(click.ClickException):
    """The program reading our output has gone (`| head`): stop after the photo in hand."""

    exit_code = ExitCode.PIPE_CLOSED

    def __init__(self) -> None:
        super().__init__("the output pipe was closed: stopped; the photos above are done")


class OutputFailed(click.ClickException):
    """Standard output cannot be written (a full disk behind `> FILE`, an I/O error): stop
    after the photo in hand, whose line is lost; the journal still knows every move."""

    exit_code = ExitCode.OUTPUT_FAILED

    def __init__(self, error: OSError) -> None:
        why = error.strerror or str(error)
        super().__init__(
            f"cannot write the output ({why}): stopped; every move so far is done and in "
            "the journal (flowersort undo --list)"
        )


class OneLineUsageError(click.ClickException):
    """A usage problem shown as one line with exit 2 (click's UsageError adds the usage)."""

    exit_code = ExitCode.USAGE


def run_library(fn, *args, **kwargs):
    """Call the library; any error becomes one line and its exit code. Only FlowersortError
    is expected: anything else is a bug, whose traceback goes to the debug log."""
    try:
        return fn(*args, **kwargs)
    except BrokenPipeError:  # `flowersort classify ... --json | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        raise PipeClosed() from None
    except click.ClickException:  # already one line and its exit code (OutputFailed)
        raise
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


class Stopped(BaseException):
    """SIGINT or SIGTERM during a command that moves nothing (train): it stops at once."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stops_on_signals(command):
    """A command that Ctrl-C or SIGTERM stop at once, with one line and exit 130 or 143
    (no traceback, no click "Aborted!"); its worker processes die with it."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        received: list[int] = []

        def stop(signum, frame):
            received.append(signum)
            if len(received) == 1:  # a second one must not cut short what the first
                raise Stopped(signum)  # started: killing the workers, shutting the pool

        previous = {s: signal.signal(s, stop) for s in Interrupted.SIGNALS}
        try:
            result = command(*args, **kwargs)
        except BaseException as e:
            if not received:
                raise
            # Stopped, or what it broke on its way out (a queue's connection cut in the
            # middle of a message: EBADF): either way the signal is the reason
            for s in Interrupted.SIGNALS:  # a second Ctrl-C while we stop changes nothing
                signal.signal(s, signal.SIG_IGN)
            if not isinstance(e, Stopped):
                log.debug("while stopping: %s", e)
            log.warning("stopped by %s", signal.Signals(received[0]).name)
            sys.exit(128 + received[0])
        finally:
            if signal.getsignal(signal.SIGINT) is stop:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        return result

    return wrapper


# log records with this extra go to the log file only: their text is already on stdout
FILE_ONLY = {"file_only": True}
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# the running command's log file (setup_logging): the error that ends it is written there too
log_file_handler: logging.Handler | None = None


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
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(file_handler)
    global log_file_handler
    log_file_handler = handlers[-1] if log_file else None
    log.handlers[:] = handlers
    # as low as a handler takes, no lower: a record no handler takes costs ~10 us to drop,
    # and a nightly rerun makes one (debug) for each photo kept
    log.setLevel(min(h.level for h in handlers))
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
    try:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()  # now, so that a full disk is seen at this photo, not at exit
    except BrokenPipeError:
        raise
    except OSError as e:  # ENOSPC, EIO: the lines still buffered cannot be written either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputFailed(e) from None


def open_log_file(path: Path) -> logging.StreamHandler:
    """Append to the log file, creating its folder (cron's $HOME/.cache may not exist
    yet); a path that cannot be written is one line and exit 2."""
    try:
        # a root run acting as a user opens it with their rights, unless only root can
        # change its folder (/var/log)
        with rights.root_where_only_root_writes(path.parent):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                pass  # a file in the way: opening the log says "Not a directory"
            # never through a link: a root run's log in a folder another user writes must
            # not append to a file that user points it at
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            stream = open(os.open(path, flags, 0o644), "a", encoding="utf-8")
        return logging.StreamHandler(stream)
    except OSError as e:
        why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror or e
        message = f"cannot write the log file {display(path)}: {why}"
        raise OneLineUsageError(message) from None


# skips the score cache remembered: said the first night, then only counted (INFO: the log)
SKIPPED_BEFORE = ("skipped as on an earlier run", "unchanged since; --verbose lists them")


def report_skip(path: Path, reason: str, before: bool = False) -> None:
    if before:  # a file that could not be read last night either: cron mails it once
        once_per_run[SKIPPED_BEFORE] += 1
        log.debug("skipped: %s: %s", display(path), reason)
        return
    if reason == HEIC_MISSING:  # the same remedy for every file: a line each unless --quiet
        once_per_run["skipped", reason] += 1
        log.info("skipped: %s: %s", display(path), reason)
        return
    log.warning("skipped: %s: %s", display(path), reason)


def report_once_per_run() -> None:
    """'12 photos skipped: HEIC/HEIF photo: pillow-heif is not installed (...)'."""
    for (what, why), n in once_per_run.items():
        tell = log.info if (what, why) == SKIPPED_BEFORE else log.warning
        tell("%d photo%s %s: %s", n, "" if n == 1 else "s", what, why)
    once_per_run.clear()  # said once, also where a command fails after saying it


def progress(quiet: bool, **kwargs) -> tqdm:
    """A bar on a terminal; nothing under cron (stderr not a TTY) or with --quiet."""
    return tqdm(disable=True if quiet else None, leave=False, dynamic_ncols=True, **kwargs)


def open_model(path: Path | None):
    """The model; a root run acting as a user reads it with their rights, unless only root
    can change its folder (/opt/flowersort, /root)."""
    path = path or default_model_path()
    with rights.root_where_only_root_writes(Path(os.path.abspath(path)).parent):
        return run_library(load_model, path)


LOG_FILE_HELP = {
    "moves": "Also write, with times, every move, copy and dedupe (from -> to, with sidecars), "
    "warnings and errors to this file, even with --quiet; kept photos only with --verbose. "
    "Its folder is created.",
    "puts back": "Also write, with times, every photo put back and every copy removed "
    "(from -> to, with sidecars), warnings and errors to this file, even with --quiet. Its "
    "folder is created.",
    "reads": "Also write, with times, the messages (photos read and skipped, warnings, "
    "errors) to this file, even with --quiet. Its folder is created.",
    "asks": "Also write, with times, every photo put into the review folder (from -> to, with "
    "sidecars), warnings and errors to this file, even with --quiet. Its folder is created.",
}
VERBOSE_HELP = {
    "moves": "Say more, e.g. every photo kept and every photo already in the target.",
    "puts back": "Say more, e.g. where an unexpected error came from (its traceback).",
    "reads": "Say more, e.g. where an unexpected error came from (its traceback).",
    "asks": "Say more, e.g. where an unexpected error came from (its traceback).",
}


def logging_options(what: str):
    """--log-file, --verbose and --quiet; `what` the log file holds: "moves" (classify),
    "puts back" (undo), "asks" (ask) or "reads"."""

    def add(fn):
        fn = click.option("--log-file", type=click.Path(path_type=Path), help=LOG_FILE_HELP[what])(
            fn
        )
        fn = click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP[what])(fn)
        return click.option(
            "-q", "--quiet", is_flag=True, help="Only warnings and errors; no bar."
        )(fn)

    return add


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
run_as_option = click.option(
    "--run-as",
    metavar="USER",
    help="Started by root: act with USER's rights (uid, groups) for every file it touches; "
    "'root' keeps root's rights. Default: the owner of SRC when that is not root (for undo: "
    "of the run's SRC), else root; a root run over a folder another user can change is "
    "refused unless this says whose rights to use. The journal and caches stay root's.",
)


def acting_user(run_as: str | None, src: Path | None, written, log_file: Path | None):
    """Whom a root run acts as (rights.acting_user), and from now on acts as: until the
    command ends. Refused: one line, exit 2, and nothing written, not even the log file."""
    folders = [Path(f) for f in written if f is not None]
    if log_file is not None:
        folders.append(Path(os.path.abspath(log_file)).parent)
    try:
        user = rights.acting_user(run_as, src, folders)
    except FlowersortError as e:
        error = CliError(e)
        error.logged = True  # type: ignore[attr-defined]  # the log file is not to be touched
        raise error from None
    click.get_current_context().with_resource(rights.acting(user))
    return user


workers_option = click.option(
    "--workers", type=click.IntRange(1), help="Processes decoding photos. Default: one per core."
)


def int_list(ctx, param, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter("expected numbers separated by commas, e.g. 16,4,1") from None


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2 on


@contextmanager
def one_line_usage(where: str = "flowersort") -> Iterator[None]:
    """click's usage errors as one line, naming where to read more (click prints the
    usage and a hint on lines of their own first); exit 2 as before. `where`: the
    command, for an error that names no context (an option given no value)."""
    try:
        yield
    except NO_ARGS_IS_HELP:
        raise  # no command given: the help, as click shows it
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else where
        raise OneLineUsageError(f"{e.format_message()} (see '{where} --help')") from None


def _command_path(info_name: str | None, parent: click.Context | None) -> str:
    """What click's Context.command_path will say for this command, before it exists."""
    name = info_name or "flowersort"
    return f"{parent.command_path} {name}" if parent else name


def named_log_file(args: list[str]) -> Path | None:
    """The --log-file given in a command's arguments, read before click has parsed them."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--log-file" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--log-file="):
            return Path(arg.split("=", 1)[1])
    return None


def log_error(error: click.ClickException, args: list[str] | None = None) -> None:
    """Write the line that ends a command to its --log-file too (cron mails stderr; the log
    is what is kept): the log file the command opened or, for an error before it opened one
    (SRC does not exist), the one named in its arguments."""
    if getattr(error, "logged", False):
        return
    error.logged = True  # type: ignore[attr-defined]  # an enclosing group: said already
    handler, opened = log_file_handler, False
    path = named_log_file(args) if handler is None and args else None
    if path is not None and os.geteuid() == 0 and rights.writer(path.parent) is not None:
        return  # root's run, refused or stopped before it knew whose rights: not touched
    if path is not None:
        try:
            handler, opened = open_log_file(path), True
        except click.ClickException:
            return  # the error in hand is the one to show
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if handler is None:
        return
    args_ = (error.format_message(),)
    handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "Error: %s", args_, None))
    if opened:
        handler.close()


class OneLineCommand(click.Command):
    """A command whose own usage errors are one line naming its --help (and go to the
    --log-file it names, too)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        named = list(args)  # click consumes the list
        try:
            with one_line_usage(_command_path(info_name, parent)):
                return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            log_error(e, named)
            raise


class OneLineGroup(OneLineCommand, click.Group):
    """A command group whose commands (and itself) report usage errors in one line, and
    write the error that ends a command to its --log-file too."""

    group_class = type  # its subgroups too
    command_class = OneLineCommand

    def invoke(self, ctx: click.Context) -> Any:
        global log_file_handler
        log_file_handler = None  # an earlier command's (in the same process) is not ours
        try:
            with one_line_usage():
                return super().invoke(ctx)
        except click.ClickException as e:
            log_error(e)
            raise


@click.group(cls=OneLineGroup, epilog=ALL_EXIT_CODES)
@click.version_option(package_name="flowersort")
def cli() -> None:
    """Find the flower photos in a photo archive and move them into a folder.

    Teach it with two folders of examples (train), check it (evaluate), then let it sort
    an archive (classify). Start with classify --dry-run: it shows the plan and touches
    nothing.
    """


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["train"], "train"))
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
    "matrix; the first with four more cues (two tile scales, brightness against the "
    "border); or the first with a 7th column, the hue of coloured pixels on brightness "
    "edges.",
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
    help="Bins of each per-tile histogram (histogram modes; 2 to 256, at least 10 with textures).",
)
@click.option(
    "--tile-layers",
    default=",".join(map(str, DEFAULTS.tile_layers)),
    show_default=True,
    callback=int_list,
    help="The tile net, which turns each tile's matrix of histograms (bins x columns) into "
    "the few numbers of the tile map: one number per layer, the rows it makes. Each layer "
    "mixes one side of the matrix and turns it, so 32,8,8,1 on a 12 x 6 tile gives 6 x 32, "
    "then 32 x 8, then 8 x 8, then 8 x 1: 8 numbers per tile.",
)
@click.option(
    "--head-layers",
    default=",".join(map(str, DEFAULTS.head_layers)),
    show_default=True,
    callback=int_list,
    help="The head net over the tile map (tiles x numbers per tile), in the same way: "
    "16,1,1 on a 36 x 8 map gives 8 x 16, then 16 x 1, then the score's 1 x 1 (so it must "
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
    "--weight-decay",
    default=DEFAULTS.weight_decay,
    show_default=True,
    type=click.FloatRange(0),
    help="Pull of every weight towards 0 (L2): larger keeps the nets simpler; 1e-3 scored "
    "fewest non-flowers near 1 on the held-out fold.",
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
    type=click.FloatRange(0, 1),
    help="Saved in the model: classify calls scores this close to the threshold borderline "
    "(sent to --review-to, else left in place). Default: with folds of whole sources, "
    "reaching down from the sure side as far as its photos stay half flowers on sources "
    f"the nets never saw; else {DEFAULT_REVIEW_BAND}.",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A CSV file with 'path' and 'source' columns (e.g. a data set's MANIFEST.csv; "
    "paths relative to its folder) saying where each example comes from. Default: each "
    "example's first subfolder below FLOWERS or NOFLOWERS. With 5 or more sources, the "
    "threshold and review band are chosen on scores of sources the nets never saw (folds "
    "of whole sources, each scored by nets trained on the others): five more trainings.",
)
@click.option(
    "--source-folds",
    default=DEFAULTS.source_folds,
    show_default=True,
    type=click.IntRange(0),
    help="Folds of whole sources the threshold is chosen on; 0: on the held-out fold "
    "(one training, a threshold that holds on the examples' own sources).",
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
@logging_options("reads")
@stops_on_signals
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
    weight_decay,
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
    sources_file,
    source_folds,
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
    the members, none of which learnt from it). With 5 or more sources (--sources, else
    subfolders), the threshold and review band are chosen instead on folds of whole
    sources, each scored by the same training on the others, so that the precision asked of
    the photos sure to be flowers (above the band) holds on sources the nets never saw.
    The model file holds every member; a photo's score is their mean probability.
    """
    from flowersort.training.learn import Corrections, train_model

    setup_logging(quiet, verbose, log_file)
    if model_path.exists() and not force:
        message = f"{display(model_path)} exists: use --force to replace it, or another --model"
        raise OneLineUsageError(message)
    try:
        feature_cfg = FeatureConfig(mode=mode, image_size=image_size, grid=grid, bins=bins)
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
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
            source_folds=source_folds,
            review_band=review_band,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with ExitStack() as bars:
        reading = bars.enter_context(progress(quiet, desc="reading photos", unit="photo"))
        training = None

        def on_epoch(epoch, stats):
            nonlocal training
            if training is None:  # the photos are read: one bar after the other
                reading.close()
                total = epochs * members
                training = bars.enter_context(
                    progress(quiet, total=total, desc="training", unit="epoch")
                )
            training.update(1)
            training.set_postfix(
                fold=stats.get("fold", "-"),
                net=f"{stats['member'] + 1}/{members}",
                loss=f"{stats['loss']:.3f}",
                val_acc=f"{stats['val_acc']:.3f}",
            )

        try:
            result = run_library(
                train_model,
                flowers,
                noflowers,
                model_path,
                feature_cfg,
                cfg,
                corrections=Corrections(with_corrections, tuple(marks_files)),
                sources_file=sources_file,
                workers=workers,
                cache_folder=None if no_feature_cache else feature_cache or default_feature_cache(),
                on_skip=report_skip,
                on_photo=lambda: reading.update(1),
                on_epoch=on_epoch,
            )
        finally:  # also before "too few photos": they may all be HEICs without the extra
            report_once_per_run()
    model = result.model
    val = model.summary["validation"]
    if as_json:
        out = {"model": str(model_path), "report": str(result.report_path)}
        click.echo(json.dumps({**out, "threshold": model.threshold, **model.summary}))
    else:
        tell = log.info if quiet else click.echo  # --quiet (cron): the log file only
        tell(
            f"model written to {model_path}: validation accuracy {val['accuracy']:.3f}, "
            f"F1 {val['f1']:.3f}, threshold {model.threshold:.3f}, "
            f"{members} nets, {model.summary['epochs_run']} epochs, "
            f"{model.summary['seconds']} s"
        )
        tell(f"validation report written to {result.report_path}")
        # classify's default is the shipped model: say how to use this one
        tell(f"to sort with it: flowersort classify SRC --model {display(model_path.absolute())}")


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["evaluate"], "evaluate"))
@click.argument("flowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("noflowers", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option
@click.option("--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--sweep", is_flag=True, help="Also show precision and recall at several thresholds.")
@click.option("--by-folder", is_flag=True, help="Also show the errors per sub-folder.")
@report_option
@workers_option
@logging_options("reads")
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
    from flowersort.training.evaluate import evaluate as run_evaluation

    setup_logging(quiet, verbose, log_file)
    model = open_model(model_path)
    try:
        result = run_library(
            run_evaluation, model, flowers, noflowers, threshold, workers, report_skip
        )
    finally:  # also before "no readable photos": they may all be HEICs without the extra
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
            "model": os.fsdecode(model_path or default_model_path()),
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


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["classify"], "classify"))
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
    from flowersort.sorting.sorter import Hooks, SortOptions, SortRun, WalkOptions, count_photos
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

    def counting(outcomes):
        for o in outcomes:
            if listing:
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
            shown = counting(sort_run)
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


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["undo"], "undo"))
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
@run_as_option
@logging_options("puts back")
def undo(run, list_runs, dry_run, wait, as_json, run_as, quiet, verbose, log_file):
    """Put the photos moved by the last classify run (or by run RUN) back where they were.

    Source folders are recreated; a photo whose old place has been taken by a new file
    since is left where it is and reported as failed. Copies made with --copy-to are
    removed, but only while their originals are still there, unchanged. Folders the run
    created (such as the target) are removed when undo leaves them empty. Undoing the
    last run twice is an error: name an earlier run (see --list) to undo it too. Ctrl-C or
    SIGTERM finish the photo in hand and stop (exit 130 or 143).
    """
    from flowersort.sorting.sorter import undo as run_undo
    from flowersort.sorting.sorter import undo_folders

    if not list_runs:  # the run's SRC first: whose rights a root undo acts with
        folders = undo_folders(run)
        acting_user(run_as, folders[0] if folders else None, folders, log_file)
    setup_logging(quiet, verbose, log_file)
    if list_runs:
        if run is not None or dry_run:
            raise click.UsageError("--list takes no RUN and no --dry-run")
        show_runs(as_json)
        return
    interrupted = Interrupted.install()
    counts: Counter = Counter()
    try:
        # closing: an undo stopped half-way releases the lock and journal as the block ends
        with (
            progress(quiet, desc="undoing", unit="photo") as bar,
            closing(run_undo(wait, run_id=run, dry_run=dry_run, stop=interrupted)) as outcomes,
        ):
            run_library(show_outcomes, outcomes, bar, counts, as_json, quiet)
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
    from flowersort.sorting.sorter import list_runs

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


def outcome_line(o: Outcome) -> str:
    """'moved: SRC -> DST (0.912) + .xmp, .CR2': a move, copy or plan with its sidecars
    (their names follow the photo's final name); for undo, where the photo went back."""
    if o.keyword:  # a tag run: the keyword and the sidecar it is in
        return tag_line(o)
    extras = ""
    if o.sidecars:
        beside = o.source if o.action.puts_back else o.target  # the photo they are with
        stem = len(safefs.split_name(os.path.basename(beside))[0])
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


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["ask"], "ask"))
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
        dry_run=dry_run,
        workers=workers,
        exclude=exclude,
        wait=wait,
        cache=cache,
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


@cli.command(epilog=exit_codes_text(COMMAND_EXIT_CODES["adapt"], "adapt"))
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
        dry_run=dry_run,
        workers=workers,
        on_skip=report_skip,
        source=os.fspath(model_file),
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


@cli.group(epilog=CORRECTIONS_EXIT_CODES)
def corrections() -> None:
    """What flowersort learnt from you, kept by content (size and SHA-256).

    A photo flowersort moved into the target that you took back out, under any name and
    into any folder, is never moved again (a non-flower example for train
    --with-corrections); a photo you put into the target yourself, or sorted from the
    review folder into it, is a flower example. They live in corrections.sqlite beside the
    journal ($XDG_STATE_HOME/flowersort).
    """


@corrections.command("list", epilog=CORRECTIONS_EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line per correction.")
def list_corrections(as_json):
    """List every correction: label, how it was learnt, where the photo was last seen."""
    from flowersort.sorting.corrections import KIND_TEXT, Store, weak_confirmations

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
            f"{counted(len(rows), 'correction')}: {counted(vetoes, 'not flower')}, "
            f"{counted(len(rows) - vetoes, 'flower')}; {counted(weak, 'photo')} moved by "
            "flowersort left in the target for 14 days or more"
        )


@corrections.command(epilog=CORRECTIONS_EXIT_CODES)
@click.argument("target")
def forget(target):
    """Forget the correction for TARGET: a photo (found by content), a SHA-256 prefix, or a
    folder (every photo in it now, or last seen there).

    A forgotten veto lets the photo be moved again on the next run; a forgotten flower
    still in the target is not learnt again.
    """
    from flowersort.sorting.corrections import Store, find, in_folder, unlabel

    store = run_library(Store)
    try:
        if os.path.isdir(target):
            found = run_library(in_folder, store, target)
            if not found:
                raise CliError(FlowersortError(f"no correction for a photo in {target}"))
        else:
            found = run_library(find, store, target)
            if not found:
                raise CliError(FlowersortError(f"no correction for {target}"))
            if len(found) > 1:
                raise CliError(FlowersortError(f"{target} matches {len(found)} corrections"))
        for c in found:
            run_library(unlabel, store, c, c.path.parent)
    finally:
        store.close()
    for c in found:
        click.echo(f"forgot: {c.label}: {display(c.path)}")


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
    for o in outcomes:
        if seen is not None:
            seen.append(o)
        bar.update(1)
        counts[o.action] += 1
        if o.action is Action.KEPT and not (o.flower or o.note or as_json):
            if debugging:  # most photos of a rerun: said only with -v, no line built else
                log.debug("%s: %s (score %.3f)", o.action, display(o.source), o.score)
            continue
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


def main() -> None:
    cli()
