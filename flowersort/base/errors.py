"""Exceptions raised by the library and the exit codes they map to; the CLI turns each
into one line and its code."""

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes, a contract scripts rely on (stopped by a signal: 128 + its number)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 3
    BUG = 4
    EMPTY_SOURCE = 5  # SRC is an empty folder: an unmounted disk's mount point, say
    OUTPUT_FAILED = 6  # stdout cannot be written: a full disk behind `> FILE`, say
    PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a program killed by it


# what each code means, as --help and the README say it; "130/143" are SIGINT and SIGTERM
EXIT_MEANING = {
    "0": "all done (unreadable files are reported as skipped, not failures)",
    "1": "some photos could not be moved or put back, or were not attempted (a full target)",
    "2": "usage, model, data or state error, or nothing to undo",
    "3": "another run holds the lock",
    "4": "stopped by an unexpected error (a bug, not a bad photo; --verbose shows where)",
    "5": "SRC is an empty folder (a disk not mounted?): nothing was done or created",
    "6": "stopped because the output could not be written (a full disk behind > FILE)",
    "130/143": "stopped by SIGINT/SIGTERM (a move in hand is finished, no other started)",
    "141": "stopped because the program reading the output went away (| head)",
}


# what a code means for a command that moves nothing (train, evaluate, corrections)
READ_ONLY_MEANING = {
    "0": "all done (unreadable files are reported as skipped)",
    "2": "usage, model, data or state error",
    "130/143": "stopped by SIGINT/SIGTERM (no model is written)",
}

# where a command's own words differ from EXIT_MEANING's: each --help says only what that
# command does (classify has nothing to undo, undo reads no photo, evaluate writes no model)
COMMAND_MEANING: dict[str, dict[str, str]] = {
    "train": READ_ONLY_MEANING,
    "evaluate": {**READ_ONLY_MEANING, "130/143": "stopped by SIGINT/SIGTERM"},
    "classify": {
        "1": "some photos could not be moved or copied, or were not attempted (a full target)",
        "2": "usage, model, data or state error",
    },
    "undo": {
        "0": "all done",
        "1": "some photos could not be put back",
        "2": "usage or state error, or nothing to undo",
    },
    "ask": {
        "1": "some photos could not be moved into the review folder, or were not attempted "
        "(a full target)",
        "2": "usage, model, data or state error",
        "130/143": "stopped by SIGINT/SIGTERM",
    },
    "adapt": {"2": "usage, model, data or state error", "130/143": "stopped by SIGINT/SIGTERM"},
    "corrections": {"0": "all done", "2": "usage or state error"},
}


def exit_codes_text(codes: tuple[str, ...], command: str | None = None) -> str:
    """'Exit codes: 0 all done (...), 2 usage ...' for a command's --help, in that command's
    own words (COMMAND_MEANING); without a command, the whole table's."""
    meaning = {**EXIT_MEANING, **COMMAND_MEANING.get(command or "", {})}
    return "Exit codes: " + ", ".join(f"{code} {meaning[code]}" for code in codes) + "."


class FlowersortError(Exception):
    """Base class: a problem the user can act on, shown without a traceback."""

    exit_code = ExitCode.USAGE


class BadImage(FlowersortError):
    """A file that cannot be classified: it is skipped and the run goes on.

    lasting: the reason lies in the file's bytes (empty, damaged, not an image), so the
    score cache remembers it; not for reasons that can pass ("Permission denied", a HEIC
    skipped for want of pillow-heif: installing it must bring the photo back)."""

    def __init__(self, reason: str, lasting: bool = False):
        super().__init__(reason)
        self.lasting = lasting

    def __reduce__(self):  # keep `lasting` on the way back from a worker process
        return (type(self), (str(self), self.lasting))


class ModelError(FlowersortError):
    """A model file that is missing, corrupt or incompatible."""


class TrainingError(FlowersortError):
    """Training examples that cannot train a model (too few, one class only)."""


class LockHeld(FlowersortError):
    """Another run holds the lock on this archive or target."""

    exit_code = ExitCode.LOCKED


class EmptySource(FlowersortError):
    """SRC is an empty folder: most often the mount point of a disk that is not mounted."""

    exit_code = ExitCode.EMPTY_SOURCE


class UnexpectedError(FlowersortError):
    """Anything that is not a bad photo (a bug, a failing library): the run stops.

    args: (one-line message, traceback text for the log); both survive the trip back from
    a worker process."""

    exit_code = ExitCode.BUG

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unexpected error"

    @property
    def details(self) -> str:
        return self.args[1] if len(self.args) > 1 else ""


class StateError(FlowersortError):
    """The journal, the run lock or the score cache cannot be used (a full disk, a folder
    that cannot be written, a damaged journal, no HOME)."""


class CacheError(StateError):
    """The score cache cannot be opened or written: a run can go on without it."""
