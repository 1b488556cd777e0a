"""Exceptions raised by the library; the CLI turns each into one line and an exit code."""


class FlowersortError(Exception):
    """Base class: a problem the user can act on, shown without a traceback."""

    exit_code = 2


class BadImage(FlowersortError):
    """A file that cannot be classified: it is skipped and the run goes on."""


class ModelError(FlowersortError):
    """A model file that is missing, corrupt or incompatible."""


class TrainingError(FlowersortError):
    """Training examples that cannot train a model (too few, one class only)."""


class MoveError(FlowersortError):
    """A move that could not be completed; the source is left in place."""

    exit_code = 1


class LockHeld(FlowersortError):
    """Another run holds the lock on this archive or target."""

    exit_code = 3
