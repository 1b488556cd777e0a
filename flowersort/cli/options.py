"""Options and texts several commands share: exit codes per command, the options and
arguments declared once for every command that has them, and the helpers that read them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from flowersort.base import rights
from flowersort.base.errors import (
    EXIT_MEANING,
    FlowersortError,
    exit_codes_text,
)
from flowersort.cli.console import CliError, OneLineCommand, run_library, setup_logging
from flowersort.model.file import default_model_path, load_model
from flowersort.training.config import TrainConfig

DEFAULTS = TrainConfig()

# a click command's options by parameter name, as it is called with them
Options = Mapping[str, Any]
Config = TypeVar("Config")
FC = TypeVar("FC", bound="Callable[..., Any] | click.Command")  # what click.option decorates


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


def flowersort_command(name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A command whose usage errors are one line and whose --help ends with its exit codes."""
    return click.command(cls=OneLineCommand, epilog=exit_codes_text(COMMAND_EXIT_CODES[name], name))


def config_from(
    cls: type[Config], options: Options, *, unset: tuple[str, ...] = (), **others: Any
) -> Config:
    """A settings dataclass with each field named as one of the command's options filled
    from it; `others` give the fields no option of the same name gives, and `unset` names
    the fields that keep their defaults. Any other field is a mistake (an option renamed
    would otherwise leave its setting at the default without a word): TypeError."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    missing = names - set(options) - set(others) - set(unset)
    if missing:
        raise TypeError(f"{cls.__name__}: no option gives {', '.join(sorted(missing))}")
    return cls(**{**{n: v for n, v in options.items() if n in names}, **others})


PRIVATE_BY_FOLDER = (
    "their folders keep other people out, and the target would let them read them: sort "
    "them into a folder only you can open (chmod 700 it first) or onto a stick mounted with "
    "umask=077"
)


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


def start_logging(options: Options) -> None:
    """Logging as the command's logging_options say."""
    setup_logging(options["quiet"], options["verbose"], options["log_file"])


src_argument = click.argument("src", type=click.Path(exists=True, path_type=Path))


def example_folders(fn: FC) -> FC:
    """FLOWERS and NOFLOWERS, the folders of labelled examples."""
    for name in ("noflowers", "flowers"):  # the argument added last comes first
        fn = click.argument(name, type=click.Path(exists=True, file_okay=False, path_type=Path))(fn)
    return fn


def folder_option(name: str, help: str, required: bool = False) -> Callable[[FC], FC]:
    """A folder photos go to: --move-to, --copy-to, --review-to."""
    return click.option(
        name, required=required, type=click.Path(file_okay=False, path_type=Path), help=help
    )


def json_option(help: str) -> Callable[[FC], FC]:
    return click.option("--json", "as_json", is_flag=True, help=help)


def dry_run_option(help: str) -> Callable[[FC], FC]:
    return click.option("--dry-run", is_flag=True, help=help)


def exclude_option(help: str) -> Callable[[FC], FC]:
    return click.option("--exclude", multiple=True, metavar="GLOB", help=help)


wait_option = click.option(
    "--wait", is_flag=True, help="Wait for another run to finish instead of exit 3."
)


threshold_option = click.option(
    "--threshold", type=click.FloatRange(0, 1), help="Override the model's threshold."
)


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


def act_as(options: Options, src: Path | None, written: Iterable[Path | None]) -> None:
    """acting_user, from the command's --run-as and --log-file."""
    acting_user(options["run_as"], src, written, options["log_file"])


workers_option = click.option(
    "--workers", type=click.IntRange(1), help="Processes decoding photos. Default: one per core."
)


def int_list(ctx, param, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter("expected numbers separated by commas, e.g. 16,4,1") from None
