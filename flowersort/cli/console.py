"""What every command shares on the terminal: one-line errors and their exit codes,
signals, logging and the log file, progress bars."""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from flowersort.base import rights
from flowersort.base.errors import (
    ExitCode,
    FlowersortError,
    UnexpectedError,
)
from flowersort.photos.archive import display
from flowersort.photos.heic import MISSING as HEIC_MISSING

log = logging.getLogger("flowersort")


# (what happened, why) said once, in the summary, not per file: skips with one remedy,
# and what to do about photos not moved as private by their folder
once_per_run: Counter[tuple[str, str]] = Counter()


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


def report_skip(path: str | Path, reason: str, before: bool = False) -> None:
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
